//! Reading the checkpointer counters, the WAL insert position and the server
//! settings the sizing depends on (through SPI; inside a transaction).
use crate::guc::ServerSettings;
use governance::sizing::Counters;
use pgrx::prelude::*;

/// Checkpointer statistics view and columns: `pg_stat_bgwriter` with
/// `checkpoints_req`/`checkpoints_timed` up to 16 (`requested_checkpoints`
/// in `PgStat_CheckpointerStats`), `pg_stat_checkpointer` with
/// `num_requested`/`num_timed` from 17.
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
const COUNTERS_SQL: &str = "SELECT checkpoints_req, checkpoints_timed, \
     COALESCE((pg_catalog.date_part('epoch', stats_reset) OPERATOR(pg_catalog.*) 1000)::bigint, 0) \
     FROM pg_catalog.pg_stat_bgwriter";
#[cfg(any(feature = "pg17", feature = "pg18"))]
const COUNTERS_SQL: &str = "SELECT num_requested, num_timed, \
     COALESCE((pg_catalog.date_part('epoch', stats_reset) OPERATOR(pg_catalog.*) 1000)::bigint, 0) \
     FROM pg_catalog.pg_stat_checkpointer";

/// Current counters; `None` during recovery (a standby has no insert position
/// and its checkpoints are restartpoints). `fresh` drops this transaction's
/// cached statistics snapshot first (the worker; SQL functions leave the
/// caller's snapshot alone).
pub fn counters_with(fresh: bool) -> Result<Option<Counters>, pgrx::spi::Error> {
    if fresh {
        Spi::run("SELECT pg_catalog.pg_stat_clear_snapshot()")?;
    }
    if Spi::get_one::<bool>("SELECT pg_catalog.pg_is_in_recovery()")?.unwrap_or(false) {
        return Ok(None);
    }
    let (req, timed, reset) = Spi::get_three::<i64, i64, i64>(COUNTERS_SQL)?;
    let lsn = Spi::get_one::<i64>(
        "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), '0/0')::bigint",
    )?;
    Ok(Some(Counters {
        requested: req.unwrap_or(0).max(0) as u64,
        timed: timed.unwrap_or(0).max(0) as u64,
        wal_lsn: lsn.unwrap_or(0).max(0) as u64,
        stats_reset: reset.unwrap_or(0),
    }))
}

/// Counters as the caller's transaction sees them.
pub fn counters() -> Result<Option<Counters>, pgrx::spi::Error> {
    counters_with(false)
}

/// Settings of the server this process sees now.
pub fn server() -> Result<ServerSettings, pgrx::spi::Error> {
    let (max_wal, timeout, seg) = Spi::get_three::<i64, i64, i64>(
        "SELECT (SELECT s.setting::bigint FROM pg_catalog.pg_settings s \
                 WHERE s.name OPERATOR(pg_catalog.=) 'max_wal_size'), \
                (SELECT s.setting::bigint FROM pg_catalog.pg_settings s \
                 WHERE s.name OPERATOR(pg_catalog.=) 'checkpoint_timeout'), \
                pg_catalog.pg_size_bytes(pg_catalog.current_setting('wal_segment_size'))",
    )?;
    let target = Spi::get_one::<f64>(
        "SELECT pg_catalog.current_setting('checkpoint_completion_target')::float8",
    )?;
    Ok(ServerSettings {
        max_wal_size_mb: max_wal.unwrap_or(1024).max(1) as u64,
        checkpoint_timeout_s: timeout.unwrap_or(300).max(1) as u64,
        completion_target: target.unwrap_or(0.9),
        segment_bytes: seg.unwrap_or(16 * 1024 * 1024).max(1) as u64,
    })
}

/// Where `max_wal_size` comes from, if from somewhere `ALTER SYSTEM` cannot
/// override (the command line or the environment).
pub fn max_wal_size_locked_source() -> Result<Option<String>, pgrx::spi::Error> {
    let source = Spi::get_one::<String>(
        "SELECT s.source FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) 'max_wal_size'",
    )?;
    Ok(source.filter(|s| s == "command line" || s == "environment variable"))
}
