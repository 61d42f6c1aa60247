//! The disk-aware cap: how large `max_wal_size` may be on the filesystem
//! that holds `pg_wal`.
//!
//! The cap is `walrus.max_wal_disk_fraction` of the space WAL can have there:
//! what `pg_wal` holds now plus the space still available, at most the
//! filesystem's size. Counting what WAL already holds keeps the cap steady
//! while WAL itself grows into it; anything else filling the filesystem
//! lowers the available space and with it the cap, and the sizer then
//! brings `max_wal_size` down (recorded as `capped`).

use super::MB;

/// The filesystem holding `pg_wal`, read with `statvfs`, and what `pg_wal`
/// holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WalDisk {
    /// The filesystem's size (`f_blocks * f_frsize`).
    pub total_bytes: u64,
    /// Space available to the server's OS user (`f_bavail * f_frsize`).
    pub available_bytes: u64,
    /// What the files in `pg_wal` take now.
    pub wal_bytes: u64,
}

impl WalDisk {
    /// From `statvfs` fields (block counts and the fragment size),
    /// saturating instead of overflowing.
    #[must_use]
    pub fn from_statvfs(blocks: u64, available_blocks: u64, fragment: u64, wal_bytes: u64) -> Self {
        WalDisk {
            total_bytes: blocks.saturating_mul(fragment),
            available_bytes: available_blocks.saturating_mul(fragment),
            wal_bytes,
        }
    }

    /// The space WAL can have: what `pg_wal` holds plus what is available,
    /// at most the filesystem's size.
    #[must_use]
    pub fn usable_bytes(&self) -> u64 {
        self.wal_bytes
            .saturating_add(self.available_bytes)
            .min(self.total_bytes)
    }
}

/// The largest `max_wal_size` (MB) the cap allows: `fraction` of
/// [`WalDisk::usable_bytes`], rounded down to whole WAL segments and never
/// below two segments (PostgreSQL's own minimum for `max_wal_size`). None
/// when the cap is off: `fraction` is 0 (or not a number), or the
/// filesystem could not be read (a size of 0).
#[must_use]
pub fn cap_mb(disk: &WalDisk, fraction: f64, segment_mb: u64) -> Option<u64> {
    if !fraction.is_finite() || fraction <= 0.0 || disk.total_bytes == 0 {
        return None;
    }
    let fraction = fraction.min(1.0);
    let segment_mb = segment_mb.max(1);
    let allowed = disk.usable_bytes() as f64 * fraction;
    let mb = (allowed / MB as f64).floor() as u64;
    let whole = mb / segment_mb * segment_mb;
    Some(whole.max(segment_mb.saturating_mul(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1024 * MB;

    #[test]
    fn statvfs_fields_multiply_out_and_saturate() {
        let d = WalDisk::from_statvfs(1000, 250, 4096, 7);
        assert_eq!(d.total_bytes, 4_096_000);
        assert_eq!(d.available_bytes, 1_024_000);
        assert_eq!(d.wal_bytes, 7);
        let huge = WalDisk::from_statvfs(u64::MAX, u64::MAX, 4096, u64::MAX);
        assert_eq!(huge.total_bytes, u64::MAX);
        assert_eq!(huge.usable_bytes(), u64::MAX);
    }

    #[test]
    fn the_cap_is_a_fraction_of_what_wal_holds_plus_what_is_free() {
        // 100 GB filesystem, 30 GB available, 2 GB of WAL: WAL can have 32 GB.
        let d = WalDisk {
            total_bytes: 100 * GB,
            available_bytes: 30 * GB,
            wal_bytes: 2 * GB,
        };
        assert_eq!(d.usable_bytes(), 32 * GB);
        assert_eq!(cap_mb(&d, 0.5, 16), Some(16 * 1024));
        // WAL growing into the available space leaves the cap where it was.
        let grown = WalDisk {
            available_bytes: 20 * GB,
            wal_bytes: 12 * GB,
            ..d
        };
        assert_eq!(cap_mb(&grown, 0.5, 16), cap_mb(&d, 0.5, 16));
        // Something else filling the filesystem lowers it.
        let filled = WalDisk {
            available_bytes: 10 * GB,
            ..d
        };
        assert_eq!(cap_mb(&filled, 0.5, 16), Some(6 * 1024));
    }

    #[test]
    fn whole_segments_and_at_least_two() {
        let d = WalDisk {
            total_bytes: 256 * MB,
            available_bytes: 200 * MB,
            wal_bytes: 0,
        };
        // 0.3 x 200 MB = 60 MB: 48 MB in 16 MB segments, 60 in 1 MB ones.
        assert_eq!(cap_mb(&d, 0.3, 16), Some(48));
        assert_eq!(cap_mb(&d, 0.3, 1), Some(60));
        let full = WalDisk {
            available_bytes: 0,
            ..d
        };
        assert_eq!(cap_mb(&full, 0.5, 16), Some(32));
        // A usable space larger than the filesystem (a reading taken while
        // files changed) counts as the filesystem's size.
        let odd = WalDisk {
            total_bytes: 100 * MB,
            available_bytes: 100 * MB,
            wal_bytes: 100 * MB,
        };
        assert_eq!(cap_mb(&odd, 1.0, 1), Some(100));
    }

    #[test]
    fn off_when_the_fraction_is_zero_or_the_filesystem_unknown() {
        let d = WalDisk {
            total_bytes: 10 * GB,
            available_bytes: 5 * GB,
            wal_bytes: 0,
        };
        assert_eq!(cap_mb(&d, 0.0, 16), None);
        assert_eq!(cap_mb(&d, f64::NAN, 16), None);
        assert_eq!(cap_mb(&d, -1.0, 16), None);
        assert_eq!(cap_mb(&WalDisk::default(), 0.5, 16), None);
        // Fractions above 1 count as 1.
        assert_eq!(cap_mb(&d, 7.0, 16), cap_mb(&d, 1.0, 16));
    }
}
