//! Carrying out a sizing decision: apply it (`ALTER SYSTEM` + reload), log
//! it, record it, publish it in shared memory. Used by the worker (at the
//! end of an interval, and at promotion) and by `walrus.analyze(true)`.
//!
//! On a primary a decision is recorded in `walrus.history` and announced
//! with NOTIFY in the caller's transaction. A standby cannot write either:
//! its decisions are kept in shared memory (`walrus.history()` and
//! `walrus.pending_history()` show them) and in the server log, and the
//! worker writes them to `walrus.history` after promotion
//! ([`write_pending`]).
use crate::guc::{self, ServerSettings};
use crate::pg::{server, shmem};
use crate::state::Record;
use crate::stats;
use governance::sizing::{Action, Decision, Evaluation, Origin, Settings};
use pgrx::JsonB;
use pgrx::prelude::*;
use pgsupport::privileged::as_superuser;
use pgsupport::subxact::in_subtransaction;
use serde_json::{Value, json};

/// The NOTIFY channel every decision is announced on.
pub const CHANNEL: &str = "walrus";

/// The circumstances of one decision.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub server: &'a ServerSettings,
    pub origin: Origin,
}

/// Apply (unless dry run / rate limited), log, record and publish `d`.
/// Returns the decision as finally recorded (an apply failure turns it into
/// `skipped`). Must run inside a transaction.
pub fn carry_out(mut d: Decision, eval: &Evaluation, ctx: Context<'_>) -> Decision {
    let now = pgsupport::time::unix_ms();
    let standby = ctx.settings.standby;
    log_decision(&d, eval, ctx);
    if d.action.changes_size() && d.new_mb != d.old_mb {
        match apply(d.new_mb) {
            Ok(()) => {
                let mut sh = shmem::SHARED.exclusive();
                sh.sizer.record_change(now);
                sh.last_change_ms = now;
                sh.last_change_mb = d.new_mb;
                sh.last_change_standby = standby;
                sh.changes_applied += 1;
            }
            Err(why) => {
                shmem::SHARED.exclusive().alter_errors += 1;
                pgrx::warning!("pg_walrus: not changing max_wal_size: {why}");
                d.reason = format!("{why}; would have: {}", d.reason);
                d.action = Action::Skipped;
            }
        }
    }
    let record = to_record(&d, eval, ctx, now);
    if standby {
        pgrx::log!(
            "pg_walrus: standby decision kept for walrus.history until promotion: {} {}MB -> {}MB",
            d.action.as_str(),
            d.old_mb,
            d.new_mb
        );
        shmem::SHARED.exclusive().push_pending(record);
    } else if let Err(why) = insert_history(std::slice::from_ref(&record)) {
        shmem::SHARED.exclusive().history_errors += 1;
        pgrx::warning!("pg_walrus: could not record the decision in walrus.history: {why}");
    }
    let mut sh = shmem::SHARED.exclusive();
    sh.count(d.action);
    sh.last = record;
    d
}

/// Writes the decisions a standby kept to `walrus.history` (and announces
/// them), oldest first, then forgets them. Returns how many were written.
/// Only outside recovery, inside a transaction.
pub fn write_pending() -> Result<usize, String> {
    let pending: Vec<Record> = shmem::SHARED.share().pending().to_vec();
    if pending.is_empty() {
        return Ok(0);
    }
    insert_history(&pending)?;
    shmem::SHARED.exclusive().drop_pending(pending.len());
    Ok(pending.len())
}

fn apply(new_mb: u64) -> Result<(), String> {
    match stats::max_wal_size_locked_source() {
        Ok(Some(source)) => {
            return Err(format!(
                "max_wal_size is set by the {source}, which ALTER SYSTEM cannot override"
            ));
        }
        Ok(None) => {}
        Err(e) => return Err(format!("could not read pg_settings: {e}")),
    }
    in_subtransaction(|| as_superuser(|| server::alter_system_max_wal_size(new_mb)))
        .map_err(|m| format!("ALTER SYSTEM failed: {m}"))?;
    if !server::signal_reload() {
        pgrx::warning!("pg_walrus: could not signal the postmaster to reload");
    }
    Ok(())
}

fn log_decision(d: &Decision, eval: &Evaluation, ctx: Context<'_>) {
    let points = if ctx.settings.standby {
        "restartpoints"
    } else {
        "checkpoints"
    };
    let secs = eval.elapsed_ms / 1000;
    match d.intended {
        _ if ctx.origin == Origin::Promotion => pgrx::log!("pg_walrus: {}", d.reason),
        Action::Capped if d.new_mb < d.old_mb => pgrx::log!("pg_walrus: {}", d.reason),
        Action::Increase | Action::Capped => {
            pgrx::log!(
                "detected {} forced {points} over {} seconds",
                eval.forced,
                secs
            );
            pgrx::log!(
                "WAL request threshold ({}) met, resizing max_wal_size",
                ctx.settings.threshold
            );
        }
        _ => pgrx::log!(
            "no forced {points} for {} intervals, shrinking max_wal_size",
            ctx.settings.shrink_intervals
        ),
    }
    pgrx::log!(
        "current max_wal_size is {}, should be {}",
        d.old_mb,
        d.new_mb
    );
    match d.action {
        Action::DryRun => pgrx::log!("pg_walrus: dry run, max_wal_size not changed: {}", d.reason),
        Action::Skipped => pgrx::log!("pg_walrus: change skipped: {}", d.reason),
        Action::Capped if d.new_mb == d.old_mb => {
            pgrx::log!("pg_walrus: max_wal_size already at its ceiling")
        }
        _ => {}
    }
}

fn to_record(d: &Decision, eval: &Evaluation, ctx: Context<'_>, now: u64) -> Record {
    let mut r = Record::default();
    r.at_ms = now;
    r.action = d.action.code();
    r.intended = d.intended.code();
    r.origin = ctx.origin.code();
    r.algorithm = ctx.settings.algorithm.code();
    r.dry_run = ctx.settings.dry_run;
    r.standby = ctx.settings.standby;
    r.old_mb = d.old_mb;
    r.new_mb = d.new_mb;
    r.forced = eval.forced;
    r.timed = eval.timed;
    r.interval_ms = eval.elapsed_ms;
    r.wal_bytes = eval.wal_bytes;
    r.cycle_bytes = eval.cycle_bytes;
    r.needed_mb = eval.needed_mb;
    r.checkpoint_timeout_s = ctx.server.checkpoint_timeout_s;
    r.disk_cap_mb = ctx.settings.disk_cap_mb.unwrap_or(0);
    r.set_reason(&d.reason);
    r
}

/// The NOTIFY payload and `walrus.history.metadata` of a decision.
pub fn payload(r: &Record) -> Value {
    let mut v = json!({
        "action": r.action().map(Action::as_str),
        "intended_action": r.intended().map(Action::as_str),
        "old_size_mb": r.old_mb,
        "new_size_mb": r.new_mb,
        "forced_checkpoints": r.forced,
        "timed_checkpoints": r.timed,
        "interval_ms": r.interval_ms,
        "wal_bytes": r.wal_bytes,
        "cycle_wal_bytes": r.cycle_bytes,
        "needed_size_mb": r.needed_mb,
        "algorithm": r.algorithm().map(|a| a.as_str()),
        "dry_run": r.dry_run,
        "checkpoint_timeout_sec": r.checkpoint_timeout_s,
        "origin": r.origin().map(Origin::as_str),
        "server_role": if r.standby { "standby" } else { "primary" },
        "reason": r.reason(),
        "epoch_ms": r.at_ms,
    });
    if r.disk_cap_mb > 0 {
        v["disk_cap_mb"] = json!(r.disk_cap_mb);
    }
    v
}

/// Insert the history rows and send their NOTIFYs (one subtransaction: a
/// missing table or a full disk costs the rows, never the worker or the
/// caller's transaction).
fn insert_history(records: &[Record]) -> Result<(), String> {
    let exists = pgsupport::spi::select_one::<bool>(
        "SELECT pg_catalog.to_regclass('walrus.history') IS NOT NULL",
        &[],
    )
    .map_err(|e| e.to_string())?
    .unwrap_or(false);
    if !exists {
        return Err(format!(
            "walrus.history does not exist in database \"{}\" (run CREATE EXTENSION pg_walrus there)",
            guc::database()
        ));
    }
    let rows: Vec<_> = records
        .iter()
        .map(|r| {
            let meta = payload(r);
            (
                r.action()
                    .map(Action::as_str)
                    .unwrap_or("skipped")
                    .to_string(),
                i32::try_from(r.old_mb).unwrap_or(i32::MAX).max(1),
                i32::try_from(r.new_mb).unwrap_or(i32::MAX).max(1),
                i64::try_from(r.forced).unwrap_or(i64::MAX),
                i32::try_from(r.checkpoint_timeout_s)
                    .unwrap_or(i32::MAX)
                    .max(1),
                r.reason().to_string(),
                r.at_ms as f64 / 1000.0,
                meta.to_string(),
                meta,
            )
        })
        .collect();
    let result = in_subtransaction(move || {
        as_superuser(|| -> Result<(), pgrx::spi::Error> {
            for (action, old, new, forced, timeout, reason, at, text, meta) in rows {
                Spi::run_with_args(
                    "INSERT INTO walrus.history (\"timestamp\", action, old_size_mb, new_size_mb, \
                     forced_checkpoints, checkpoint_timeout_sec, reason, metadata) \
                     VALUES (pg_catalog.to_timestamp($1), $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        at.into(),
                        action.into(),
                        old.into(),
                        new.into(),
                        forced.into(),
                        timeout.into(),
                        reason.into(),
                        JsonB(meta).into(),
                    ],
                )?;
                Spi::run_with_args(
                    "SELECT pg_catalog.pg_notify($1, $2)",
                    &[CHANNEL.into(), text.into()],
                )?;
            }
            Ok(())
        })
    });
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e),
    }
}
