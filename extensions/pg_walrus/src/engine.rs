//! Carrying out a sizing decision: apply it (`ALTER SYSTEM` + reload), log
//! it, record it in `walrus.history`, NOTIFY it, publish it in shared memory.
//! Used by the worker and by `walrus.analyze(true)`.
use crate::guc::{self, ServerSettings};
use crate::pg::{server, shmem};
use crate::state::LastDecision;
use crate::stats;
use governance::sizing::{Action, Decision, Evaluation, Settings};
use pgrx::JsonB;
use pgrx::prelude::*;
use pgsupport::privileged::as_superuser;
use pgsupport::subxact::in_subtransaction;
use serde_json::{Value, json};

/// The NOTIFY channel every decision is announced on.
pub const CHANNEL: &str = "walrus";

/// Who made the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Worker,
    Manual,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Manual => "analyze",
        }
    }
}

/// Apply (unless dry run / rate limited), log, record and announce `d`.
/// Returns the decision as finally recorded (an apply failure turns it into
/// `skipped`). Must run inside a transaction.
pub fn carry_out(
    mut d: Decision,
    eval: &Evaluation,
    settings: &Settings,
    server: &ServerSettings,
    origin: Origin,
) -> Decision {
    let now = pgsupport::time::unix_ms();
    log_decision(&d, eval, settings);
    if d.action.changes_size() && d.new_mb != d.old_mb {
        match apply(d.new_mb) {
            Ok(()) => {
                let mut sh = shmem::SHARED.exclusive();
                sh.sizer.record_change(now);
                sh.last_change_ms = now;
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
    let payload = payload(&d, eval, settings, server, origin, now);
    if let Err(why) = record(&d, eval, server, &payload) {
        shmem::SHARED.exclusive().history_errors += 1;
        pgrx::warning!("pg_walrus: could not record the decision in walrus.history: {why}");
    }
    publish(&d, eval, now);
    d
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

fn log_decision(d: &Decision, eval: &Evaluation, settings: &Settings) {
    let secs = eval.elapsed_ms / 1000;
    match d.intended {
        Action::Increase | Action::Capped => {
            pgrx::log!(
                "detected {} forced checkpoints over {} seconds",
                eval.forced,
                secs
            );
            pgrx::log!(
                "WAL request threshold ({}) met, resizing max_wal_size",
                settings.threshold
            );
        }
        _ => pgrx::log!(
            "no forced checkpoints for {} intervals, shrinking max_wal_size",
            settings.shrink_intervals
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
            pgrx::log!("pg_walrus: max_wal_size already at walrus.max")
        }
        _ => {}
    }
}

fn payload(
    d: &Decision,
    eval: &Evaluation,
    settings: &Settings,
    server: &ServerSettings,
    origin: Origin,
    now: u64,
) -> Value {
    json!({
        "action": d.action.as_str(),
        "intended_action": d.intended.as_str(),
        "old_size_mb": d.old_mb,
        "new_size_mb": d.new_mb,
        "forced_checkpoints": eval.forced,
        "timed_checkpoints": eval.timed,
        "interval_ms": eval.elapsed_ms,
        "wal_bytes": eval.wal_bytes,
        "cycle_wal_bytes": eval.cycle_bytes,
        "needed_size_mb": eval.needed_mb,
        "algorithm": settings.algorithm.name(),
        "dry_run": settings.dry_run,
        "checkpoint_timeout_sec": server.checkpoint_timeout_s,
        "origin": origin.name(),
        "reason": d.reason,
        "epoch_ms": now,
    })
}

/// Insert the history row and send the NOTIFY (one subtransaction: a missing
/// table or a full disk costs the row, never the worker).
fn record(
    d: &Decision,
    eval: &Evaluation,
    server: &ServerSettings,
    payload: &Value,
) -> Result<(), String> {
    let action = d.action.as_str().to_string();
    let old = i32::try_from(d.old_mb).unwrap_or(i32::MAX);
    let new = i32::try_from(d.new_mb).unwrap_or(i32::MAX);
    let forced = i64::try_from(eval.forced).unwrap_or(i64::MAX);
    let timeout = i32::try_from(server.checkpoint_timeout_s).unwrap_or(i32::MAX);
    let reason = d.reason.clone();
    let meta = payload.clone();
    let text = payload.to_string();
    let exists =
        Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('walrus.history') IS NOT NULL")
            .map_err(|e| e.to_string())?
            .unwrap_or(false);
    let result = in_subtransaction(move || {
        as_superuser(|| {
            if exists {
                Spi::run_with_args(
                    "INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints, \
                     checkpoint_timeout_sec, reason, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        action.into(),
                        old.into(),
                        new.into(),
                        forced.into(),
                        timeout.into(),
                        reason.into(),
                        JsonB(meta).into(),
                    ],
                )?;
            }
            Spi::run_with_args(
                "SELECT pg_catalog.pg_notify($1, $2)",
                &[CHANNEL.into(), text.into()],
            )
        })
    });
    match result {
        Ok(Ok(())) if exists => Ok(()),
        Ok(Ok(())) => Err(format!(
            "walrus.history does not exist in database \"{}\" (run CREATE EXTENSION pg_walrus there)",
            guc::database()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e),
    }
}

fn publish(d: &Decision, eval: &Evaluation, now: u64) {
    let mut sh = shmem::SHARED.exclusive();
    sh.count(d.action);
    sh.last = LastDecision {
        at_ms: now,
        action: d.action.code(),
        old_mb: d.old_mb,
        new_mb: d.new_mb,
        forced: eval.forced,
    };
}
