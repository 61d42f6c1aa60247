//! PostgreSQL's rule for checkpoints forced by WAL volume, and the
//! `max_wal_size` a checkpoint cycle needs to stay clear of it.
//!
//! PostgreSQL (`CalculateCheckpointSegments` in `xlog.c`) converts
//! `max_wal_size` to whole segments, divides by `1 + checkpoint_completion_target`
//! and truncates: that is `CheckPointSegments`, at least 1. The WAL writer then
//! requests a checkpoint as soon as it opens a segment whose number is at least
//! `redo segment + CheckPointSegments - 1` (`XLogCheckpointNeeded`). Because the
//! redo point can sit anywhere inside its segment, the WAL a cycle can write
//! without forcing a checkpoint is only guaranteed to be
//! `(CheckPointSegments - 2)` whole segments.

/// One mebibyte, the unit of `max_wal_size`.
pub const MB: u64 = 1024 * 1024;

/// The largest `max_wal_size` PostgreSQL accepts, in MB (`MAX_KILOBYTES`-style
/// limit of an `int` GUC with `GUC_UNIT_MB`).
pub const MAX_SIZE_MB: u64 = i32::MAX as u64;

/// `CheckPointSegments` for a `max_wal_size` of `max_wal_mb`, WAL segments of
/// `segment_mb` and the given `checkpoint_completion_target`.
#[must_use]
pub fn checkpoint_segments(max_wal_mb: u64, segment_mb: u64, completion_target: f64) -> u64 {
    let segment_mb = segment_mb.max(1);
    let segments = max_wal_mb / segment_mb;
    let target = sanitize_target(completion_target);
    // Truncation, as PostgreSQL's `(int) target`. `as` saturates on f64 -> u64.
    let cps = (segments as f64 / (1.0 + target)) as u64;
    cps.max(1)
}

/// The WAL, in bytes, that one checkpoint cycle is guaranteed to hold without a
/// forced checkpoint at this size.
#[must_use]
pub fn cycle_capacity_bytes(max_wal_mb: u64, segment_mb: u64, completion_target: f64) -> u64 {
    let cps = checkpoint_segments(max_wal_mb, segment_mb, completion_target);
    cps.saturating_sub(2)
        .saturating_mul(segment_mb.max(1))
        .saturating_mul(MB)
}

/// The smallest `max_wal_size` (MB, a whole number of segments) whose cycle
/// capacity holds `cycle_bytes * headroom`, clamped to [`MAX_SIZE_MB`].
#[must_use]
pub fn required_size_mb(
    cycle_bytes: u64,
    segment_mb: u64,
    completion_target: f64,
    headroom: f64,
) -> u64 {
    let segment_mb = segment_mb.max(1);
    let segment_bytes = segment_mb.saturating_mul(MB);
    let headroom = if headroom.is_finite() && headroom >= 1.0 {
        headroom
    } else {
        1.0
    };
    let wanted = (cycle_bytes as f64 * headroom).ceil();
    // Whole segments the cycle must hold, then the two segments lost to the
    // redo point's offset and the "- 1" in XLogCheckpointNeeded.
    let needed_segments = (wanted / segment_bytes as f64).ceil() as u64;
    let cps = needed_segments.saturating_add(2);
    let target = sanitize_target(completion_target);
    let segments = (cps as f64 * (1.0 + target)).ceil() as u64;
    let mut size = segments.saturating_mul(segment_mb).min(MAX_SIZE_MB);
    // Guard against floating-point rounding: step up until the truncated
    // CheckPointSegments really reaches `cps`.
    while size < MAX_SIZE_MB && checkpoint_segments(size, segment_mb, target) < cps {
        size = size.saturating_add(segment_mb).min(MAX_SIZE_MB);
    }
    size
}

fn sanitize_target(completion_target: f64) -> f64 {
    if completion_target.is_finite() {
        completion_target.clamp(0.0, 1.0)
    } else {
        0.9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_truncate_like_postgres() {
        // 32 MB of 16 MB segments with target 0.9: 2 / 1.9 = 1.05 -> 1.
        assert_eq!(checkpoint_segments(32, 16, 0.9), 1);
        // 1 GB default: 64 / 1.9 = 33.68 -> 33.
        assert_eq!(checkpoint_segments(1024, 16, 0.9), 33);
        // 96 MB: 6 / 1.9 = 3.15 -> 3; 72 MB: 4 / 1.9 = 2.1 -> 2.
        assert_eq!(checkpoint_segments(96, 16, 0.9), 3);
        assert_eq!(checkpoint_segments(72, 16, 0.9), 2);
        // Never below one.
        assert_eq!(checkpoint_segments(0, 16, 0.9), 1);
        // Partial segments of max_wal_size do not count.
        assert_eq!(checkpoint_segments(47, 16, 0.0), 2);
    }

    #[test]
    fn required_size_holds_the_cycle() {
        for &(cycle_mb, seg, target) in &[
            (30_u64, 16_u64, 0.9_f64),
            (1, 16, 0.9),
            (500, 16, 0.5),
            (4096, 64, 0.9),
            (7, 1, 0.0),
        ] {
            let cycle = cycle_mb * MB;
            let size = required_size_mb(cycle, seg, target, 1.0);
            assert_eq!(size % seg, 0, "whole segments");
            assert!(cycle_capacity_bytes(size, seg, target) >= cycle);
            // One segment less would not hold it: the answer is the smallest.
            if size > seg {
                assert!(cycle_capacity_bytes(size - seg, seg, target) < cycle || size - seg < seg);
            }
        }
    }

    #[test]
    fn headroom_grows_the_answer() {
        let plain = required_size_mb(100 * MB, 16, 0.9, 1.0);
        let roomy = required_size_mb(100 * MB, 16, 0.9, 1.5);
        assert!(roomy > plain);
        assert!(cycle_capacity_bytes(roomy, 16, 0.9) >= 150 * MB);
    }

    #[test]
    fn huge_inputs_saturate_instead_of_overflowing() {
        assert_eq!(required_size_mb(u64::MAX, 16, 0.9, 10.0), MAX_SIZE_MB);
        assert_eq!(
            required_size_mb(u64::MAX, u64::MAX, f64::NAN, f64::INFINITY),
            MAX_SIZE_MB
        );
        assert_eq!(cycle_capacity_bytes(u64::MAX, 1, 0.0), u64::MAX);
        assert!(checkpoint_segments(u64::MAX, 0, f64::NAN) >= 1);
    }
}
