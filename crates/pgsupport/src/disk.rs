//! The filesystem that holds `pg_wal`, read with `statvfs`.
use std::ffi::CStr;

/// `statvfs` of `pg_wal` (relative to the data directory, every server
/// process's working directory; a symbolic link to a separate WAL directory
/// is followed): `(f_blocks, f_bavail, f_frsize)`, or the OS error.
pub fn pg_wal() -> Result<(u64, u64, u64), std::io::Error> {
    statvfs(c"pg_wal")
}

/// Bytes available to the server's OS user on the filesystem holding
/// `pg_wal`.
pub fn pg_wal_available_bytes() -> Result<u64, std::io::Error> {
    pg_wal().map(|(_, available, fragment)| available.saturating_mul(fragment))
}

fn statvfs(path: &CStr) -> Result<(u64, u64, u64), std::io::Error> {
    // SAFETY: statvfs only writes the struct we pass; an all-zero statvfs
    // is a valid value of this plain C struct.
    let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `buf` is a valid, writable
    // statvfs; the call does not keep either pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fragment = if buf.f_frsize > 0 {
        buf.f_frsize
    } else {
        buf.f_bsize
    };
    #[allow(clippy::useless_conversion)] // the field types differ by platform
    Ok((
        u64::from(buf.f_blocks),
        u64::from(buf.f_bavail),
        u64::from(fragment),
    ))
}
