//! `walrus.metrics()`: Prometheus text exposition (format 0.0.4) of the
//! worker's state. Names follow Prometheus conventions: base units in the
//! name (`_bytes`, `_seconds`), counters end in `_total`, every family has
//! HELP and TYPE; `promtool check metrics` accepts the output (a cluster
//! test runs it). On a standby the restartpoint counters the worker sizes
//! from are exposed beside the checkpoint counters.
use crate::api::preview;
use crate::pg::{server, shmem};
use crate::state::WorkerState;
use crate::stats;
use governance::sizing::{Action, MB};
use pgsupport::prometheus::{Exposition, Kind};
use pgsupport::time::unix_ms;

/// Writes `walrus_`-prefixed families with the shared exposition writer.
struct Out(Exposition);

impl Out {
    fn family(&mut self, name: &str, kind: Kind, help: &str, samples: &[(&[(&str, &str)], f64)]) {
        let name = format!("walrus_{name}");
        self.0.family(&name, kind, help);
        for (labels, value) in samples {
            self.0.sample(&name, labels, *value);
        }
    }

    fn one(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.0.single(&format!("walrus_{name}"), kind, help, value);
    }
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

fn bytes_of_mb(mb: u64) -> f64 {
    mb.saturating_mul(MB) as f64
}

/// The exposition text.
pub fn exposition() -> String {
    let p = preview();
    let mut out = Out(Exposition::new());
    let standby = p.standby;
    let current = p.server.max_wal_size_mb;
    out.one(
        "max_wal_size_bytes",
        Kind::Gauge,
        "Current max_wal_size.",
        bytes_of_mb(current),
    );
    out.one(
        "max_setting_bytes",
        Kind::Gauge,
        "walrus.max, the largest max_wal_size pg_walrus sets.",
        bytes_of_mb(p.settings.max_mb),
    );
    out.one(
        "at_ceiling",
        Kind::Gauge,
        "1 if max_wal_size is at or above walrus.max.",
        flag(current >= p.settings.max_mb),
    );
    if let Ok((requested, timed)) = stats::checkpoint_counters() {
        out.one(
            "checkpoints_requested_total",
            Kind::Counter,
            "Requested checkpoints (forced by WAL volume or asked for) since the statistics reset; up to PostgreSQL 16 a standby counts its restartpoints here.",
            requested as f64,
        );
        out.one(
            "checkpoints_timed_total",
            Kind::Counter,
            "Timed checkpoints since the statistics reset; up to PostgreSQL 16 a standby counts its restartpoints here.",
            timed as f64,
        );
    }
    out.one(
        "in_recovery",
        Kind::Gauge,
        "1 on a standby (the worker sizes max_wal_size for restartpoints there).",
        flag(standby),
    );
    if standby && let Ok(c) = stats::counters_for(true, false) {
        out.one(
            "restartpoints_requested_total",
            Kind::Counter,
            "Requested restartpoints on this standby (what the worker sizes from) since the statistics reset.",
            c.requested as f64,
        );
        out.one(
            "restartpoints_timed_total",
            Kind::Counter,
            "Timed restartpoints on this standby since the statistics reset.",
            c.timed as f64,
        );
    }
    out.one(
        "enabled",
        Kind::Gauge,
        "1 if walrus.enable is on.",
        flag(p.settings.enabled),
    );
    out.one(
        "dry_run",
        Kind::Gauge,
        "1 if walrus.dry_run is on.",
        flag(p.settings.dry_run),
    );
    if !shmem::available() {
        out.one(
            "worker_up",
            Kind::Gauge,
            "1 if the pg_walrus worker is running.",
            0.0,
        );
        return out.0.finish();
    }
    let sh = p.shared;
    let now = unix_ms();
    let recommended = p
        .eval
        .as_ref()
        .and_then(|e| e.decision.as_ref().map(|d| d.new_mb))
        .unwrap_or(current);
    out.one(
        "recommended_size_bytes",
        Kind::Gauge,
        "max_wal_size pg_walrus would set now.",
        bytes_of_mb(recommended),
    );
    out.one(
        "needed_size_bytes",
        Kind::Gauge,
        "max_wal_size the measured WAL needs (0: not measured, or the multiplicative strategy).",
        bytes_of_mb(sh.last_needed_mb),
    );
    out.one(
        "worker_up",
        Kind::Gauge,
        "1 if the pg_walrus worker is running.",
        flag(
            sh.worker_pid > 0
                && sh.state != WorkerState::Stopped
                && server::backend_alive(sh.worker_pid),
        ),
    );
    out.one(
        "interval_forced_checkpoints",
        Kind::Gauge,
        "Forced checkpoints (restartpoints on a standby) in the last full interval.",
        sh.last_forced as f64,
    );
    out.one(
        "wal_rate_bytes_per_second",
        Kind::Gauge,
        "WAL written (replayed on a standby) per second over the last full interval.",
        sh.last_wal_rate_bps as f64,
    );
    out.one(
        "cycle_wal_bytes",
        Kind::Gauge,
        "WAL of the last interval scaled to one checkpoint_timeout.",
        sh.last_cycle_bytes as f64,
    );
    out.one(
        "intervals_total",
        Kind::Counter,
        "Full intervals evaluated.",
        sh.intervals as f64,
    );
    out.one(
        "quiet_intervals",
        Kind::Gauge,
        "Consecutive intervals without forced checkpoints.",
        f64::from(sh.sizer.quiet_intervals()),
    );
    let action_labels: Vec<[(&str, &str); 1]> = Action::ALL
        .iter()
        .map(|a| [("action", a.as_str())])
        .collect();
    let per_action: Vec<(&[(&str, &str)], f64)> = Action::ALL
        .iter()
        .zip(&action_labels)
        .map(|(a, labels)| (&labels[..], sh.count_of(*a) as f64))
        .collect();
    out.family(
        "decisions_total",
        Kind::Counter,
        "Recorded decisions by action.",
        &per_action,
    );
    out.one(
        "changes_total",
        Kind::Counter,
        "Changes of max_wal_size applied.",
        sh.changes_applied as f64,
    );
    out.one(
        "skips_total",
        Kind::Counter,
        "Changes skipped by rate limits or a refused ALTER SYSTEM.",
        sh.count_of(Action::Skipped) as f64,
    );
    out.one(
        "alter_system_failures_total",
        Kind::Counter,
        "Changes ALTER SYSTEM refused (recorded as skipped).",
        sh.alter_errors as f64,
    );
    out.one(
        "history_failures_total",
        Kind::Counter,
        "Decisions that could not be written to walrus.history.",
        sh.history_errors as f64,
    );
    out.one(
        "changes_last_hour",
        Kind::Gauge,
        "Changes applied in the last hour (walrus.max_changes_per_hour counts these).",
        f64::from(sh.sizer.changes_last_hour(now)),
    );
    let cooldown_remaining_ms = match sh.sizer.last_change_ms() {
        Some(t) if p.settings.cooldown_ms > 0 => (t + p.settings.cooldown_ms).saturating_sub(now),
        _ => 0,
    };
    out.one(
        "cooldown_remaining_seconds",
        Kind::Gauge,
        "Seconds until walrus.cooldown_sec allows the next change (0: none pending).",
        cooldown_remaining_ms as f64 / 1000.0,
    );
    out.one(
        "last_decision_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last recorded decision (0 = none).",
        sh.last.at_ms as f64 / 1000.0,
    );
    out.one(
        "last_change_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last applied change (0 = none).",
        sh.last_change_ms as f64 / 1000.0,
    );
    out.one(
        "pending_decisions",
        Kind::Gauge,
        "Decisions made as a standby, not yet written to walrus.history.",
        sh.pending().len() as f64,
    );
    out.one(
        "promotions_total",
        Kind::Counter,
        "Promotions of this server the worker has seen.",
        sh.promotions as f64,
    );
    out.one(
        "disk_cap_bytes",
        Kind::Gauge,
        "The disk cap on max_wal_size (walrus.max_wal_disk_fraction; 0: off or unread).",
        bytes_of_mb(sh.disk.cap_mb),
    );
    out.one(
        "wal_filesystem_size_bytes",
        Kind::Gauge,
        "Size of the filesystem holding pg_wal (0: unread).",
        sh.disk.disk.total_bytes as f64,
    );
    out.one(
        "wal_filesystem_available_bytes",
        Kind::Gauge,
        "Space available on the filesystem holding pg_wal.",
        sh.disk.disk.available_bytes as f64,
    );
    out.one(
        "wal_directory_bytes",
        Kind::Gauge,
        "Bytes the files in pg_wal take.",
        sh.disk.disk.wal_bytes as f64,
    );
    out.one(
        "disk_read_failures_total",
        Kind::Counter,
        "Failed readings of the filesystem holding pg_wal.",
        sh.disk_errors as f64,
    );
    out.0.finish()
}
