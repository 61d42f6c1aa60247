//! SQL functions in schema `walrus`.
use crate::engine::{self, Origin};
use crate::guc::{self, ServerSettings};
use crate::pg::shmem;
use crate::state::Shared;
use crate::stats;
use governance::sizing::{Action, Counters, Evaluation, Settings};
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use pgsupport::privileged::{as_superuser, with_safe_search_path};
use pgsupport::roles;
use pgsupport::time::unix_ms;
use serde_json::{Value, json};
use std::fmt::Write as _;

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

fn read_server_and_counters() -> (ServerSettings, Option<Counters>) {
    with_safe_search_path(|| {
        let server =
            stats::server().unwrap_or_else(|e| error!("pg_walrus: could not read settings: {e}"));
        let counters = stats::counters()
            .unwrap_or_else(|e| error!("pg_walrus: could not read statistics: {e}"));
        (server, counters)
    })
}

/// ISO-8601 UTC text of a Unix time in milliseconds (null for 0).
fn iso(ms: u64) -> Value {
    if ms == 0 {
        return Value::Null;
    }
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Value::String(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    ))
}

/// Confidence (0-100) in a recommendation: 20 points per full interval seen
/// (up to four) plus up to 20 for how much of the current interval passed.
fn confidence(sh: &Shared, eval: Option<&Evaluation>, settings: &Settings) -> u64 {
    let Some(e) = eval else { return 0 };
    let full = sh.sizer.full_intervals().min(4) * 20;
    let partial = (e.elapsed_ms.min(settings.interval_ms) * 20) / settings.interval_ms.max(1);
    (full + partial).min(100)
}

struct Preview {
    server: ServerSettings,
    settings: Settings,
    eval: Option<Evaluation>,
    shared: Shared,
    standby: bool,
}

fn preview() -> Preview {
    let (server, counters) = read_server_and_counters();
    let settings = guc::settings(&server);
    let shared = *shmem::SHARED.share();
    let eval = counters.and_then(|c| {
        shared
            .sizer
            .preview(&settings, unix_ms(), c, server.max_wal_size_mb)
    });
    Preview {
        server,
        settings,
        eval,
        shared,
        standby: counters.is_none(),
    }
}

fn recommendation_json(p: &Preview) -> Value {
    let current = p.server.max_wal_size_mb;
    let (action, recommended, reason) = match &p.eval {
        None if p.standby => (
            "none",
            current,
            String::from("server is in recovery: pg_walrus does not size a standby"),
        ),
        None => (
            "none",
            current,
            String::from("no baseline yet: the worker has not taken its first look"),
        ),
        Some(e) if !p.settings.enabled => (
            "none",
            current,
            format!(
                "walrus.enable is off ({} forced checkpoints so far)",
                e.forced
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

/// The recommendation; with `apply => true` (walrus_admin) also carry it out
/// under the worker's rules (dry run, cooldown, hourly limit), recorded in
/// walrus.history.
#[pg_extern(volatile, parallel_unsafe)]
fn analyze(apply: default!(bool, false)) -> JsonB {
    require_preloaded("walrus.analyze()");
    if apply {
        require_admin("apply a max_wal_size change");
    }
    let p = preview();
    let mut v = recommendation_json(&p);
    v["applied"] = json!(false);
    if !apply {
        return JsonB(v);
    }
    let Some(eval) = p.eval.clone() else {
        return JsonB(v);
    };
    let Some(decision) = eval.decision.clone().filter(|_| p.settings.enabled) else {
        return JsonB(v);
    };
    let recorded = engine::carry_out(decision, &eval, &p.settings, &p.server, Origin::Manual);
    // The manual decision ends the worker's current interval.
    if let Ok(Some(c)) = stats::counters() {
        shmem::SHARED.exclusive().sizer.rebaseline(c, unix_ms());
    }
    v["applied"] = json!(recorded.action.changes_size() && recorded.new_mb != recorded.old_mb);
    v["recorded_action"] = json!(recorded.action.as_str());
    v["new_size_mb"] = json!(recorded.new_mb);
    JsonB(v)
}

/// Settings, worker state, last check, last change and counters.
#[pg_extern(volatile, parallel_unsafe)]
fn status() -> JsonB {
    let (server, counters) = read_server_and_counters();
    let settings = guc::settings(&server);
    let mut v = json!({
        "loaded": shmem::available(),
        "enabled": settings.enabled,
        "dry_run": settings.dry_run,
        "algorithm": settings.algorithm.name(),
        "current_size_mb": server.max_wal_size_mb,
        "in_recovery": counters.is_none(),
        "settings": {
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
            "walrus.naptime_override_ms": guc::NAPTIME_OVERRIDE_MS.get(),
            "checkpoint_timeout_sec": server.checkpoint_timeout_s,
            "checkpoint_completion_target": server.completion_target,
            "wal_segment_size_mb": settings.segment_mb,
            "interval_ms": settings.interval_ms,
        },
    });
    if let Some(c) = counters {
        v["checkpoints"] = json!({"requested": c.requested, "timed": c.timed});
    }
    if !shmem::available() {
        v["worker"] = json!({"state": "not_loaded", "pid": null});
        return JsonB(v);
    }
    let sh = *shmem::SHARED.share();
    let now = unix_ms();
    v["worker"] = json!({
        "state": sh.state.name(),
        "pid": if sh.worker_pid > 0 { json!(sh.worker_pid) } else { Value::Null },
        "started_at": iso(sh.started_ms),
        "baseline_taken": sh.sizer.has_baseline(),
    });
    v["last_check"] = iso(sh.last_check_ms);
    v["last_change"] = iso(sh.last_change_ms);
    v["last_decision"] = if sh.last.action == 0 {
        Value::Null
    } else {
        json!({
            "at": iso(sh.last.at_ms),
            "action": sh.last.action().map(Action::as_str),
            "old_size_mb": sh.last.old_mb,
            "new_size_mb": sh.last.new_mb,
            "forced_checkpoints": sh.last.forced,
        })
    };
    v["last_interval"] = json!({
        "elapsed_ms": sh.last_interval_ms,
        "forced_checkpoints": sh.last_forced,
        "timed_checkpoints": sh.last_timed,
        "wal_bytes_per_second": sh.last_wal_rate_bps,
        "cycle_wal_bytes": sh.last_cycle_bytes,
        "needed_size_mb": sh.last_needed_mb,
    });
    let mut counters = serde_json::Map::new();
    counters.insert("intervals".into(), json!(sh.intervals));
    counters.insert("decisions".into(), json!(sh.decisions));
    for action in Action::ALL {
        counters.insert(action.as_str().into(), json!(sh.count_of(*action)));
    }
    counters.insert("changes_applied".into(), json!(sh.changes_applied));
    counters.insert(
        "changes_last_hour".into(),
        json!(sh.sizer.changes_last_hour(now)),
    );
    counters.insert("quiet_intervals".into(), json!(sh.sizer.quiet_intervals()));
    counters.insert("alter_system_failures".into(), json!(sh.alter_errors));
    counters.insert("history_failures".into(), json!(sh.history_errors));
    v["counters"] = Value::Object(counters);
    JsonB(v)
}

/// Forget the worker's baseline, window, quiet count, rate-limit history and
/// counters; the next wake-up takes a fresh baseline.
#[pg_extern(volatile, parallel_unsafe)]
fn reset() -> bool {
    require_admin("reset pg_walrus");
    if !shmem::available() {
        return false;
    }
    let mut sh = shmem::SHARED.exclusive();
    let (pid, state, started) = (sh.worker_pid, sh.state, sh.started_ms);
    *sh = Shared::default();
    sh.worker_pid = pid;
    sh.state = state;
    sh.started_ms = started;
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

/// Delete history rows older than the retention period; returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn cleanup_history() -> i64 {
    require_admin("clean up walrus.history");
    delete_expired_history().unwrap_or_else(|e| error!("pg_walrus: history cleanup failed: {e}"))
}

/// Prometheus text exposition of pg_walrus' state.
#[pg_extern(volatile, parallel_unsafe)]
fn metrics() -> String {
    let (server, counters) = read_server_and_counters();
    let settings = guc::settings(&server);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP walrus_{name} {help}");
        let _ = writeln!(out, "# TYPE walrus_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "walrus_{name}{labels} {value}");
        }
    };
    metric(
        "max_wal_size_bytes",
        "gauge",
        "Current max_wal_size.",
        &[("", (server.max_wal_size_mb * 1_048_576) as f64)],
    );
    if let Some(c) = counters {
        metric(
            "checkpoints_requested_total",
            "counter",
            "Requested (forced) checkpoints since the statistics reset.",
            &[("", c.requested as f64)],
        );
        metric(
            "checkpoints_timed_total",
            "counter",
            "Timed checkpoints since the statistics reset.",
            &[("", c.timed as f64)],
        );
    }
    metric(
        "enabled",
        "gauge",
        "1 if walrus.enable is on.",
        &[("", f64::from(u8::from(settings.enabled)))],
    );
    metric(
        "dry_run",
        "gauge",
        "1 if walrus.dry_run is on.",
        &[("", f64::from(u8::from(settings.dry_run)))],
    );
    if !shmem::available() {
        metric(
            "worker_up",
            "gauge",
            "1 if the pg_walrus worker is running.",
            &[("", 0.0)],
        );
        return out;
    }
    let sh = *shmem::SHARED.share();
    let recommended = counters
        .and_then(|c| {
            sh.sizer
                .preview(&settings, unix_ms(), c, server.max_wal_size_mb)
        })
        .and_then(|e| e.decision.map(|d| d.new_mb))
        .unwrap_or(server.max_wal_size_mb);
    metric(
        "recommended_size_bytes",
        "gauge",
        "max_wal_size pg_walrus would set now.",
        &[("", (recommended * 1_048_576) as f64)],
    );
    metric(
        "worker_up",
        "gauge",
        "1 if the pg_walrus worker is running.",
        &[("", f64::from(u8::from(sh.worker_pid > 0)))],
    );
    metric(
        "wal_rate_bytes_per_second",
        "gauge",
        "WAL written per second over the last full interval.",
        &[("", sh.last_wal_rate_bps as f64)],
    );
    metric(
        "cycle_wal_bytes",
        "gauge",
        "WAL of the last interval scaled to one checkpoint_timeout.",
        &[("", sh.last_cycle_bytes as f64)],
    );
    metric(
        "intervals_total",
        "counter",
        "Full intervals evaluated.",
        &[("", sh.intervals as f64)],
    );
    metric(
        "quiet_intervals",
        "gauge",
        "Consecutive intervals without forced checkpoints.",
        &[("", f64::from(sh.sizer.quiet_intervals()))],
    );
    let labels: Vec<(String, u64)> = Action::ALL
        .iter()
        .map(|a| (format!("{{action=\"{}\"}}", a.as_str()), sh.count_of(*a)))
        .collect();
    let samples: Vec<(&str, f64)> = labels
        .iter()
        .map(|(l, n)| (l.as_str(), *n as f64))
        .collect();
    metric(
        "decisions_total",
        "counter",
        "Recorded decisions by action.",
        &samples,
    );
    metric(
        "changes_total",
        "counter",
        "Changes of max_wal_size applied.",
        &[("", sh.changes_applied as f64)],
    );
    metric(
        "skips_total",
        "counter",
        "Changes skipped by rate limits or a refused ALTER SYSTEM.",
        &[("", sh.count_of(Action::Skipped) as f64)],
    );
    metric(
        "last_decision_timestamp_seconds",
        "gauge",
        "Unix time of the last recorded decision (0 = none).",
        &[("", sh.last.at_ms as f64 / 1000.0)],
    );
    metric(
        "last_change_timestamp_seconds",
        "gauge",
        "Unix time of the last applied change (0 = none).",
        &[("", sh.last_change_ms as f64 / 1000.0)],
    );
    out
}
