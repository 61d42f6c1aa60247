//! SQL functions in schema `walrus`.
//!
//! The reading functions (`status`, `recommendation`, `analyze(false)`,
//! `history`, `pending_history`, `metrics`) work the same on a primary and
//! on a hot standby: they run read-only queries that assign no transaction
//! id, and they say which role the server has (`server_role`).
use crate::engine::{self, Context};
use crate::guc::{self, ServerSettings};
use crate::metrics;
use crate::pg::{server, shmem};
use crate::state::{Record, Shared};
use crate::stats;
use governance::sizing::{Action, Counters, Evaluation, Origin, Settings};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use pgsupport::privileged::{as_superuser, with_safe_search_path};
use pgsupport::roles;
use pgsupport::time::{PG_EPOCH_OFFSET_US, iso8601_utc, unix_ms};
use serde_json::{Value, json};

/// Role allowed to apply changes manually, reset, and clean up history.
pub const ADMIN_ROLE: &std::ffi::CStr = c"walrus_admin";

/// Raise an ERROR with a DETAIL and a HINT.
fn raise(code: PgSqlErrorCode, message: String, detail: String, hint: &str) -> ! {
    pgsupport::error::raise("pg_walrus", code, message, detail, hint)
}

fn require_preloaded(what: &str) {
    if !shmem::available() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("pg_walrus must be loaded via shared_preload_libraries to use {what}"),
            String::from(
                "The worker and its shared state exist only when the library is preloaded.",
            ),
            "Add pg_walrus to shared_preload_libraries and restart the server.",
        );
    }
}

fn require_admin(what: &str) {
    if !roles::current_user_has_privs_of(ADMIN_ROLE) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what}"),
            format!(
                "Only superusers and members of role \"walrus_admin\" may {what}; current user is \"{}\".",
                roles::current_user_name()
            ),
            "GRANT walrus_admin TO the role that needs it.",
        );
    }
}

/// A NULL argument is refused before anything happens.
fn require_not_null<T>(value: Option<T>, function: &str, argument: &str, hint: &str) -> T {
    match value {
        Some(v) => v,
        None => raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("argument \"{argument}\" of {function} must not be null"),
            format!("{function} was called with {argument} => NULL."),
            hint,
        ),
    }
}

/// A write a standby cannot make is refused before anything happens.
fn require_primary(what: &str) {
    if stats::in_recovery() {
        raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot {what} on a standby"),
            String::from(
                "walrus.history is replicated from the primary; a standby cannot change it.",
            ),
            "Run it on the primary.",
        );
    }
}

/// What the server is, for `server_role`.
pub fn role_name(standby: bool) -> &'static str {
    if standby { "standby" } else { "primary" }
}

/// The server settings and the counters for the server's role, read-only.
pub fn read_server_and_counters(standby: bool) -> (ServerSettings, Counters) {
    with_safe_search_path(|| {
        let server =
            stats::server().unwrap_or_else(|e| error!("pg_walrus: could not read settings: {e}"));
        let counters = stats::counters_for(standby, false)
            .unwrap_or_else(|e| error!("pg_walrus: could not read statistics: {e}"));
        (server, counters)
    })
}

/// ISO-8601 UTC text of a Unix time in milliseconds (null for 0).
fn iso(ms: u64) -> Value {
    if ms == 0 {
        Value::Null
    } else {
        Value::String(iso8601_utc(ms))
    }
}

/// Confidence (0-100) in a recommendation: 20 points per full interval seen
/// (up to four) plus up to 20 for how much of the current interval passed.
fn confidence(sh: &Shared, eval: Option<&Evaluation>, settings: &Settings) -> u64 {
    let Some(e) = eval else { return 0 };
    let full = sh.sizer.full_intervals().min(4) * 20;
    let partial = (e.elapsed_ms.min(settings.interval_ms) * 20) / settings.interval_ms.max(1);
    (full + partial).min(100)
}

/// The sizer's view now, as if the current interval ended now.
pub struct Preview {
    pub server: ServerSettings,
    pub settings: Settings,
    pub eval: Option<Evaluation>,
    pub shared: Shared,
    pub standby: bool,
}

/// Previews the current interval. Without the preloaded library there is
/// no worker state: no evaluation.
pub fn preview() -> Preview {
    let standby = stats::in_recovery();
    let (server, counters) = read_server_and_counters(standby);
    let shared = if shmem::available() {
        *shmem::SHARED.share()
    } else {
        Shared::default()
    };
    let cap = (shared.disk.cap_mb > 0).then_some(shared.disk.cap_mb);
    let settings = guc::settings_for(&server, standby, cap);
    // A baseline taken in the other role measures other counters.
    let eval = if shared.in_recovery == standby {
        shared
            .sizer
            .preview(&settings, unix_ms(), counters, server.max_wal_size_mb)
    } else {
        None
    };
    Preview {
        server,
        settings,
        eval,
        shared,
        standby,
    }
}

fn recommendation_json(p: &Preview) -> Value {
    let current = p.server.max_wal_size_mb;
    let (action, recommended, reason) = match &p.eval {
        None => (
            "none",
            current,
            String::from("no baseline yet: the worker has not taken its first look"),
        ),
        Some(e) if !p.settings.enabled => (
            "none",
            current,
            format!(
                "walrus.enable is off ({} forced {} so far)",
                e.forced,
                if p.standby {
                    "restartpoints"
                } else {
                    "checkpoints"
                }
            ),
        ),
        Some(e) => match &e.decision {
            None => ("none", current, e.keep_reason.clone()),
            Some(d) => (d.intended.as_str(), d.new_mb, d.reason.clone()),
        },
    };
    let mut v = json!({
        "current_size_mb": current,
        "recommended_size_mb": recommended,
        "action": action,
        "reason": reason,
        "confidence": confidence(&p.shared, p.eval.as_ref(), &p.settings),
        "algorithm": p.settings.algorithm.name(),
        "server_role": role_name(p.standby),
    });
    if let Some(e) = &p.eval {
        v["forced_checkpoints"] = json!(e.forced);
        v["interval_elapsed_ms"] = json!(e.elapsed_ms);
        v["cycle_wal_bytes"] = json!(e.cycle_bytes);
        v["needed_size_mb"] = json!(e.needed_mb);
        if let Some(d) = &e.decision {
            v["would_record"] = json!(d.action.as_str());
        }
    }
    v
}

/// What pg_walrus would do now, and why.
#[pg_extern(volatile, parallel_unsafe)]
fn recommendation() -> JsonB {
    require_preloaded("walrus.recommendation()");
    JsonB(recommendation_json(&preview()))
}

/// `{"analyzed": ..., "recommendation": {...}, "applied": ...}`; with
/// `apply => true` (walrus_admin) also carry the recommendation out under
/// the worker's rules (dry run, cooldown, hourly limit), recorded in
/// walrus.history (on a standby: kept until promotion, as the worker's).
#[pg_extern(volatile, parallel_unsafe)]
fn analyze(apply: default!(Option<bool>, false)) -> JsonB {
    let apply = require_not_null(
        apply,
        "walrus.analyze()",
        "apply",
        "Use apply => false to see the recommendation, apply => true to carry it out.",
    );
    require_preloaded("walrus.analyze()");
    if apply {
        require_admin("apply a max_wal_size change");
    }
    let p = preview();
    let recommendation = recommendation_json(&p);
    let mut v = json!({
        "analyzed": p.settings.enabled,
        "recommendation": recommendation,
        "applied": false,
        "server_role": role_name(p.standby),
    });
    if !p.settings.enabled {
        v["reason"] = json!("walrus.enable is off");
        return JsonB(v);
    }
    if !apply {
        return JsonB(v);
    }
    let Some(eval) = p.eval.clone() else {
        return JsonB(v);
    };
    let Some(decision) = eval.decision.clone() else {
        return JsonB(v);
    };
    let ctx = Context {
        settings: &p.settings,
        server: &p.server,
        origin: Origin::Analyze,
    };
    let recorded = engine::carry_out(decision, &eval, ctx);
    // The manual decision ends the worker's current interval.
    if let Ok(c) = stats::counters_for(p.standby, false) {
        shmem::SHARED.exclusive().sizer.rebaseline(c, unix_ms());
    }
    v["applied"] = json!(recorded.action.changes_size() && recorded.new_mb != recorded.old_mb);
    v["recorded_action"] = json!(recorded.action.as_str());
    v["new_size_mb"] = json!(recorded.new_mb);
    JsonB(v)
}

/// Settings, worker state, last check, last change, counters, and the keys
/// monitoring written for the public pg_walrus reads (at the top level).
#[pg_extern(volatile, parallel_unsafe)]
fn status() -> JsonB {
    let standby = stats::in_recovery();
    let (server, counters) = read_server_and_counters(standby);
    let sh = if shmem::available() {
        *shmem::SHARED.share()
    } else {
        Shared::default()
    };
    let cap = (sh.disk.cap_mb > 0).then_some(sh.disk.cap_mb);
    let settings = guc::settings_for(&server, standby, cap);
    let now = unix_ms();
    let current = server.max_wal_size_mb;
    let worker_running = shmem::available()
        && sh.worker_pid > 0
        && sh.state != crate::state::WorkerState::Stopped
        && server::backend_alive(sh.worker_pid);
    let cooldown_remaining_ms = match sh.sizer.last_change_ms() {
        Some(t) if settings.cooldown_ms > 0 => (t + settings.cooldown_ms).saturating_sub(now),
        _ => 0,
    };
    let changes_this_hour = sh.sizer.changes_last_hour(now);
    let mut v = json!({
        // The public pg_walrus' keys, same meanings and units.
        "enabled": settings.enabled,
        "current_max_wal_size_mb": current,
        "configured_maximum_mb": settings.max_mb,
        "threshold": settings.threshold,
        "checkpoint_timeout_sec": server.checkpoint_timeout_s,
        "shrink_enabled": settings.shrink_enable,
        "shrink_factor": settings.shrink_factor,
        "shrink_intervals": settings.shrink_intervals,
        "min_size_mb": settings.min_mb,
        "worker_running": worker_running,
        "last_check_time": iso(sh.last_check_ms),
        "last_adjustment_time": iso(sh.last_change_ms),
        "total_adjustments": sh.changes_applied,
        "quiet_intervals": sh.sizer.quiet_intervals(),
        "at_ceiling": current >= settings.max_mb,
        "cooldown_sec": settings.cooldown_ms / 1000,
        "max_changes_per_hour": settings.max_changes_per_hour,
        "cooldown_active": cooldown_remaining_ms > 0,
        "cooldown_remaining_sec": cooldown_remaining_ms.div_ceil(1000),
        "changes_this_hour": changes_this_hour,
        "hourly_window_start": iso(sh.sizer.hour_window_start(now).unwrap_or(0)),
        "hourly_limit_reached": settings.max_changes_per_hour > 0
            && changes_this_hour >= settings.max_changes_per_hour,
        // Ours.
        "loaded": shmem::available(),
        "dry_run": settings.dry_run,
        "algorithm": settings.algorithm.name(),
        "current_size_mb": current,
        "in_recovery": standby,
        "server_role": role_name(standby),
    });
    v["settings"] = json!({
        "walrus.enable": settings.enabled,
        "walrus.max_mb": settings.max_mb,
        "walrus.min_size_mb": settings.min_mb,
        "walrus.threshold": settings.threshold,
        "walrus.shrink_enable": settings.shrink_enable,
        "walrus.shrink_factor": settings.shrink_factor,
        "walrus.shrink_intervals": settings.shrink_intervals,
        "walrus.history_retention_days": guc::HISTORY_RETENTION_DAYS.get(),
        "walrus.database": guc::database(),
        "walrus.dry_run": settings.dry_run,
        "walrus.cooldown_sec": settings.cooldown_ms / 1000,
        "walrus.max_changes_per_hour": settings.max_changes_per_hour,
        "walrus.algorithm": settings.algorithm.name(),
        "walrus.max_wal_disk_fraction": guc::MAX_WAL_DISK_FRACTION.get(),
        "walrus.naptime_override_ms": guc::NAPTIME_OVERRIDE_MS.get(),
        "checkpoint_timeout_sec": server.checkpoint_timeout_s,
        "checkpoint_completion_target": server.completion_target,
        "wal_segment_size_mb": settings.segment_mb,
        "interval_ms": settings.interval_ms,
    });
    let points = if standby {
        "restartpoints"
    } else {
        "checkpoints"
    };
    v[points] = json!({"requested": counters.requested, "timed": counters.timed});
    if !shmem::available() {
        v["worker"] = json!({"state": "not_loaded", "pid": null});
        return JsonB(v);
    }
    v["worker"] = json!({
        "state": sh.state.name(),
        "pid": if worker_running { json!(sh.worker_pid) } else { Value::Null },
        "started_at": iso(sh.started_ms),
        "baseline_taken": sh.sizer.has_baseline(),
    });
    v["last_check"] = iso(sh.last_check_ms);
    v["last_change"] = iso(sh.last_change_ms);
    v["last_decision"] = match sh.last.action() {
        None => Value::Null,
        Some(action) => json!({
            "at": iso(sh.last.at_ms),
            "action": action.as_str(),
            "old_size_mb": sh.last.old_mb,
            "new_size_mb": sh.last.new_mb,
            "forced_checkpoints": sh.last.forced,
            "origin": sh.last.origin().map(Origin::as_str),
            "server_role": role_name(sh.last.standby),
        }),
    };
    v["last_interval"] = json!({
        "elapsed_ms": sh.last_interval_ms,
        "forced_checkpoints": sh.last_forced,
        "timed_checkpoints": sh.last_timed,
        "wal_bytes_per_second": sh.last_wal_rate_bps,
        "cycle_wal_bytes": sh.last_cycle_bytes,
        "needed_size_mb": sh.last_needed_mb,
    });
    v["standby"] = json!({
        "pending_decisions": sh.pending().len(),
        "pending_dropped": sh.pending_dropped,
        "promotions": sh.promotions,
        "last_promotion": iso(sh.last_promotion_ms),
    });
    v["disk"] = json!({
        "read": sh.disk.read,
        "filesystem_bytes": sh.disk.disk.total_bytes,
        "available_bytes": sh.disk.disk.available_bytes,
        "pg_wal_bytes": sh.disk.disk.wal_bytes,
        "cap_mb": if sh.disk.cap_mb > 0 { json!(sh.disk.cap_mb) } else { Value::Null },
        "at_cap": sh.disk.cap_mb > 0 && current >= sh.disk.cap_mb,
        "read_at": iso(sh.disk.read_ms),
    });
    let mut counters = serde_json::Map::new();
    counters.insert("intervals".into(), json!(sh.intervals));
    counters.insert("decisions".into(), json!(sh.decisions));
    for action in Action::ALL {
        counters.insert(action.as_str().into(), json!(sh.count_of(*action)));
    }
    counters.insert("changes_applied".into(), json!(sh.changes_applied));
    counters.insert("changes_last_hour".into(), json!(changes_this_hour));
    counters.insert("quiet_intervals".into(), json!(sh.sizer.quiet_intervals()));
    counters.insert("alter_system_failures".into(), json!(sh.alter_errors));
    counters.insert("history_failures".into(), json!(sh.history_errors));
    counters.insert("disk_read_failures".into(), json!(sh.disk_errors));
    v["counters"] = Value::Object(counters);
    JsonB(v)
}

/// Forget the worker's baseline, window, quiet count, rate-limit history and
/// counters; the next wake-up takes a fresh baseline. `walrus.history` is
/// kept unless `clear_history` (then every row is deleted, as the public
/// pg_walrus' reset() does, and so are a standby's kept decisions).
#[pg_extern(volatile, parallel_unsafe)]
fn reset(clear_history: default!(Option<bool>, false)) -> bool {
    let clear = require_not_null(
        clear_history,
        "walrus.reset()",
        "clear_history",
        "Use clear_history => false to keep walrus.history, true to delete it too.",
    );
    require_admin("reset pg_walrus");
    if clear {
        require_primary("clear walrus.history");
        let deleted = delete_all_history()
            .unwrap_or_else(|e| error!("pg_walrus: clearing history failed: {e}"));
        pgrx::log!("pg_walrus: walrus.reset(clear_history => true) deleted {deleted} history rows");
    }
    if !shmem::available() {
        return false;
    }
    let mut sh = shmem::SHARED.exclusive();
    let kept = *sh;
    *sh = Shared::default();
    sh.worker_pid = kept.worker_pid;
    sh.state = kept.state;
    sh.started_ms = kept.started_ms;
    sh.in_recovery = kept.in_recovery;
    sh.disk = kept.disk;
    if !clear {
        sh.pending = kept.pending;
        sh.pending_len = kept.pending_len;
        sh.pending_dropped = kept.pending_dropped;
    }
    true
}

/// Delete history rows older than walrus.history_retention_days. Runs as
/// the bootstrap superuser (a walrus_admin member need not own the table)
/// with a pinned search_path, and every function and operator in it is
/// schema-qualified.
pub fn delete_expired_history() -> Result<i64, pgrx::spi::Error> {
    let days = guc::HISTORY_RETENTION_DAYS.get();
    as_superuser(|| {
        Spi::get_one_with_args::<i64>(
            "WITH gone AS (DELETE FROM walrus.history AS h \
               WHERE h.\"timestamp\" OPERATOR(pg_catalog.<) \
                     (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1)) \
               RETURNING 1) \
             SELECT pg_catalog.count(*) FROM gone",
            &[days.into()],
        )
        .map(|n| n.unwrap_or(0))
    })
}

/// Delete every history row (`walrus.reset(clear_history => true)`), as
/// [`delete_expired_history`] does for expired ones.
fn delete_all_history() -> Result<i64, pgrx::spi::Error> {
    as_superuser(|| {
        Spi::get_one::<i64>(
            "WITH gone AS (DELETE FROM walrus.history AS h RETURNING 1) \
             SELECT pg_catalog.count(*) FROM gone",
        )
        .map(|n| n.unwrap_or(0))
    })
}

/// Delete history rows older than the retention period; returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn cleanup_history() -> i64 {
    require_admin("clean up walrus.history");
    require_primary("clean up walrus.history");
    delete_expired_history().unwrap_or_else(|e| error!("pg_walrus: history cleanup failed: {e}"))
}

/// The decisions a standby made that are not yet in walrus.history (they
/// are written there after promotion), oldest first. Empty on a primary
/// once they are written.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)]
fn pending_history() -> TableIterator<
    'static,
    (
        name!(timestamp, Option<TimestampWithTimeZone>),
        name!(action, String),
        name!(old_size_mb, i32),
        name!(new_size_mb, i32),
        name!(forced_checkpoints, i64),
        name!(checkpoint_timeout_sec, i32),
        name!(reason, String),
        name!(metadata, JsonB),
    ),
> {
    let records: Vec<Record> = if shmem::available() {
        shmem::SHARED.share().pending().to_vec()
    } else {
        Vec::new()
    };
    TableIterator::new(records.into_iter().map(|r| {
        let micros = i64::try_from(r.at_ms)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000)
            .saturating_sub(PG_EPOCH_OFFSET_US);
        (
            TimestampWithTimeZone::try_from(micros).ok(),
            r.action()
                .map(Action::as_str)
                .unwrap_or("skipped")
                .to_string(),
            i32::try_from(r.old_mb).unwrap_or(i32::MAX),
            i32::try_from(r.new_mb).unwrap_or(i32::MAX),
            i64::try_from(r.forced).unwrap_or(i64::MAX),
            i32::try_from(r.checkpoint_timeout_s).unwrap_or(i32::MAX),
            r.reason().to_string(),
            JsonB(engine::payload(&r)),
        )
    }))
}

/// Prometheus text exposition of pg_walrus' state.
#[pg_extern(volatile, parallel_unsafe)]
fn metrics() -> String {
    metrics::exposition()
}
