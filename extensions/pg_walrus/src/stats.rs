//! Reading the checkpointer counters, the WAL position and the server
//! settings the sizing depends on (through read-only SPI, inside a
//! transaction: nothing here assigns a transaction id, so it all works on a
//! hot standby).
//!
//! On a primary the counters are checkpoints and the WAL position is the
//! insert position; on a standby they are restartpoints and the replay
//! position (`pg_last_wal_replay_lsn()`). Up to PostgreSQL 16,
//! `pg_stat_bgwriter.checkpoints_req` and `checkpoints_timed` count a
//! standby's restartpoints; from 17, `pg_stat_checkpointer` has
//! `restartpoints_req` and `restartpoints_timed` beside `num_requested` and
//! `num_timed`.
use crate::guc::ServerSettings;
use governance::sizing::Counters;
use pgsupport::spi::{select_one, select_run, select_three};

/// The epoch of the statistics reset in milliseconds (0 when never reset).
const RESET_MS: &str =
    "COALESCE((pg_catalog.date_part('epoch', stats_reset) OPERATOR(pg_catalog.*) 1000)::bigint, 0)";

#[cfg(any(feature = "pg15", feature = "pg16"))]
fn counters_sql(standby: bool) -> String {
    // The same columns count checkpoints on a primary and restartpoints on
    // a standby.
    let _ = standby;
    format!(
        "SELECT checkpoints_req, checkpoints_timed, {RESET_MS} FROM pg_catalog.pg_stat_bgwriter"
    )
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
fn counters_sql(standby: bool) -> String {
    if standby {
        format!(
            "SELECT restartpoints_req, restartpoints_timed, {RESET_MS} FROM pg_catalog.pg_stat_checkpointer"
        )
    } else {
        format!("SELECT num_requested, num_timed, {RESET_MS} FROM pg_catalog.pg_stat_checkpointer")
    }
}

/// Whether the server is a standby (in recovery).
pub fn in_recovery() -> bool {
    pgsupport::catalog::in_recovery()
}

/// Current counters for the server's role (`standby`: restartpoints and the
/// replay position). `fresh` drops this transaction's cached statistics
/// snapshot first (the worker; SQL functions leave the caller's snapshot
/// alone).
pub fn counters_for(standby: bool, fresh: bool) -> Result<Counters, pgrx::spi::Error> {
    if fresh {
        select_run("SELECT pg_catalog.pg_stat_clear_snapshot()", &[])?;
    }
    let (req, timed, reset) = select_three::<i64, i64, i64>(&counters_sql(standby), &[])?;
    let lsn_sql = if standby {
        "SELECT COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_replay_lsn(), '0/0')::bigint, 0)"
    } else {
        "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), '0/0')::bigint"
    };
    let lsn = select_one::<i64>(lsn_sql, &[])?;
    Ok(Counters {
        requested: req.unwrap_or(0).max(0) as u64,
        timed: timed.unwrap_or(0).max(0) as u64,
        wal_lsn: lsn.unwrap_or(0).max(0) as u64,
        stats_reset: reset.unwrap_or(0),
    })
}

/// Checkpoint counters of a primary as PostgreSQL reports them (on 15 and
/// 16 a standby's restartpoints are included), for the metrics.
pub fn checkpoint_counters() -> Result<(u64, u64), pgrx::spi::Error> {
    let (req, timed, _) = select_three::<i64, i64, i64>(&counters_sql(false), &[])?;
    Ok((
        req.unwrap_or(0).max(0) as u64,
        timed.unwrap_or(0).max(0) as u64,
    ))
}

/// Settings of the server this process sees now.
pub fn server() -> Result<ServerSettings, pgrx::spi::Error> {
    let (max_wal, timeout, seg) = select_three::<i64, i64, i64>(
        "SELECT (SELECT s.setting::bigint FROM pg_catalog.pg_settings s \
                 WHERE s.name OPERATOR(pg_catalog.=) 'max_wal_size'), \
                (SELECT s.setting::bigint FROM pg_catalog.pg_settings s \
                 WHERE s.name OPERATOR(pg_catalog.=) 'checkpoint_timeout'), \
                pg_catalog.pg_size_bytes(pg_catalog.current_setting('wal_segment_size'))",
        &[],
    )?;
    let target = select_one::<f64>(
        "SELECT pg_catalog.current_setting('checkpoint_completion_target')::float8",
        &[],
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
    let source = select_one::<String>(
        "SELECT s.source FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) 'max_wal_size'",
        &[],
    )?;
    Ok(source.filter(|s| s == "command line" || s == "environment variable"))
}
