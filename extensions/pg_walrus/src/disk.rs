//! The disk cap's reading: the filesystem holding `pg_wal` (`statvfs`) and
//! what the files in `pg_wal` take. The arithmetic is
//! `governance::sizing::disk`.
use crate::guc;
use crate::pg::shmem;
use crate::state::DiskState;
use governance::sizing::WalDisk;
use governance::sizing::disk::cap_mb;

/// Bytes the regular files directly in `pg_wal` take (segments, history
/// files, partial segments; not `archive_status/`).
fn pg_wal_bytes() -> std::io::Result<u64> {
    let mut total = 0_u64;
    for entry in std::fs::read_dir("pg_wal")? {
        let Ok(entry) = entry else { continue };
        // A segment recycled or removed meanwhile is simply not counted.
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
        {
            total = total.saturating_add(meta.len());
        }
    }
    Ok(total)
}

/// Reads the disk and the cap it gives now (None: the cap is off, or the
/// filesystem could not be read: then a WARNING says why and nothing is
/// capped). Publishes the reading in shared memory.
pub fn read_cap(segment_mb: u64, now_ms: u64) -> Option<u64> {
    let fraction = guc::MAX_WAL_DISK_FRACTION.get();
    let reading = pgsupport::disk::pg_wal().and_then(|(blocks, avail, fragment)| {
        Ok(WalDisk::from_statvfs(
            blocks,
            avail,
            fragment,
            pg_wal_bytes()?,
        ))
    });
    match reading {
        Ok(disk) => {
            let cap = cap_mb(&disk, fraction, segment_mb);
            let mut sh = shmem::SHARED.exclusive();
            sh.disk = DiskState {
                read: true,
                disk,
                cap_mb: cap.unwrap_or(0),
                read_ms: now_ms,
            };
            cap
        }
        Err(e) => {
            let mut sh = shmem::SHARED.exclusive();
            sh.disk_errors += 1;
            sh.disk.read = false;
            sh.disk.cap_mb = 0;
            drop(sh);
            if fraction > 0.0 {
                pgrx::warning!(
                    "pg_walrus: could not read the filesystem holding pg_wal, no disk cap this interval: {e}"
                );
            }
            None
        }
    }
}
