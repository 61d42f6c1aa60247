//! `pwb.metrics()`: pg_wal_budget's counters and per-policy gauges in the
//! Prometheus text exposition format, for a scraper (postgres_exporter's
//! custom queries, sql_exporter) to pass on. The shared state is copied
//! under the lock and formatted after it is released, so a scrape holds up
//! governed statements only for the copy.
use crate::pg::process;
use crate::pg::shmem::{Counters, PolicySlot, PolicyStats, ValueSlot, WaiterSlot};
use crate::queue::WaitKind;
use crate::{policies, session, settlement};
use governance::budget::buckets::PolicyBuckets;
use governance::budget::policy::Mode;
use governance::budget::scope::ScopeKind;
use pgsupport::prometheus::{Exposition, Kind, LabelSet};
use std::collections::{HashMap, HashSet};

/// One bucket's row: its policy, and the value for a template.
struct Row {
    policy: PolicySlot,
    value_hash: i64,
    value: String,
    buckets: PolicyBuckets,
    stats: PolicyStats,
    waiting: usize,
}

/// A per-bucket gauge: name, help, value at a time.
type Gauge = (&'static str, &'static str, fn(&Row, u64) -> f64);
/// A per-bucket counter: name, help, value from the statistics.
type Total = (&'static str, &'static str, fn(&PolicyStats) -> f64);

struct Snapshot {
    feedback: crate::pg::shmem::FeedbackState,
    counters: Counters,
    rows: Vec<Row>,
    waiters: Vec<WaiterSlot>,
    without_bucket: i64,
}

fn snapshot() -> Option<Snapshot> {
    // Policies are reloaded first (outside the lock): the rows shown are the
    // ones this session sees.
    drop(settlement::lock_current()?);
    policies::refresh_if_stale();
    let visible: HashSet<i32> = session::loaded_policy_ids().into_iter().collect();
    let policy_values: HashMap<i32, String> = session::policy_values().into_iter().collect();
    let without_bucket = policies::without_bucket();
    let dboid = process::database_oid();
    // Under the lock: plain copies of this database's slots, and the names
    // of its template values (one pass over the name table). Everything
    // else is done after the lock is released, so that a scrape holds up
    // governed statements only for the copies.
    let mut shm = settlement::lock_current()?;
    let counters = *shm.counters();
    let feedback = *shm.feedback();
    let slots: Vec<PolicySlot> = shm
        .policies()
        .iter()
        .filter(|s| s.used && s.dboid == dboid)
        .copied()
        .collect();
    let values: Vec<ValueSlot> = shm
        .values()
        .iter()
        .filter(|v| v.used && v.dboid == dboid)
        .copied()
        .collect();
    let waiters: Vec<WaiterSlot> = shm
        .waiters()
        .iter()
        .filter(|w| w.used && w.dboid == dboid)
        .copied()
        .collect();
    let kinds: HashMap<i32, u8> = slots
        .iter()
        .filter(|s| s.scope_hash == 0)
        .map(|s| (s.policy_id, s.scope_kind))
        .collect();
    let wanted: HashSet<(u8, i64)> = values
        .iter()
        .filter_map(|v| Some((*kinds.get(&v.policy_id)?, v.value_hash)))
        .collect();
    let names: HashMap<(u8, i64), String> = if wanted.is_empty() {
        HashMap::new()
    } else {
        shm.names()
            .iter()
            .filter(|n| n.used && wanted.contains(&(n.scope_kind, n.scope_hash)))
            .map(|n| ((n.scope_kind, n.scope_hash), n.value()))
            .collect()
    };
    drop(shm);

    let mut waiting: HashMap<(i32, i64), usize> = HashMap::new();
    for w in &waiters {
        *waiting.entry((w.policy_id, w.value_hash)).or_default() += 1;
    }
    let waiting_for = |policy_id: i32, value_hash: i64| {
        waiting.get(&(policy_id, value_hash)).copied().unwrap_or(0)
    };
    let mut values_of: HashMap<(i32, i64), Vec<&ValueSlot>> = HashMap::new();
    for v in &values {
        values_of
            .entry((v.policy_id, v.incarnation))
            .or_default()
            .push(v);
    }
    let mut rows = Vec::new();
    for policy in slots.into_iter().filter(|s| visible.contains(&s.policy_id)) {
        if policy.scope_hash != 0 {
            rows.push(Row {
                policy,
                value_hash: policy.scope_hash,
                value: policy_values
                    .get(&policy.policy_id)
                    .cloned()
                    .unwrap_or_default(),
                buckets: policy.buckets,
                stats: policy.stats,
                waiting: waiting_for(policy.policy_id, 0),
            });
            continue;
        }
        for v in values_of
            .get(&(policy.policy_id, policy.incarnation))
            .into_iter()
            .flatten()
        {
            rows.push(Row {
                policy,
                value_hash: v.value_hash,
                value: names
                    .get(&(policy.scope_kind, v.value_hash))
                    .cloned()
                    .unwrap_or_default(),
                buckets: v.buckets,
                stats: v.stats,
                waiting: waiting_for(policy.policy_id, v.value_hash),
            });
        }
    }
    rows.sort_by_key(|r| (r.policy.policy_id, r.value_hash));
    Some(Snapshot {
        feedback,
        counters,
        rows,
        waiters,
        without_bucket,
    })
}

/// The exposition, or None without shared memory (not preloaded).
pub fn render() -> Option<String> {
    let snap = snapshot()?;
    let now = process::now_micros();
    let mut e = Exposition::new();
    let c = snap.counters;
    let counters: [(&str, &str, u64); 11] = [
        (
            "pwb_statements_accepted_total",
            "Governed statements admitted (with or without a policy).",
            c.accepted_statements,
        ),
        (
            "pwb_statements_rejected_total",
            "Statements refused for lack of budget (reject mode, or larger than the burst).",
            c.rejected_statements,
        ),
        (
            "pwb_statements_would_reject_total",
            "Statements shadow mode would have refused.",
            c.shadow_would_reject_count,
        ),
        (
            "pwb_statements_paced_total",
            "Statements admitted in pace mode.",
            c.paced_statements,
        ),
        (
            "pwb_queue_gave_up_total",
            "Queued statements that gave up (lock_timeout, or a lock they held was wanted).",
            c.queue_gave_up_count,
        ),
        (
            "pwb_internal_fail_open_total",
            "Statements admitted without accounting after an internal failure.",
            c.internal_fail_open_count,
        ),
        (
            "pwb_bucket_capacity_exhausted_total",
            "Statements governed by a policy or template value that found no bucket.",
            c.bucket_capacity_exhausted_count,
        ),
        (
            "pwb_aborted_after_charge_total",
            "Charged statements that aborted.",
            c.aborted_after_charge_count,
        ),
        (
            "pwb_predicted_wal_bytes_total",
            "WAL predicted for admitted statements.",
            c.predicted_wal_bytes,
        ),
        (
            "pwb_actual_wal_bytes_total",
            "WAL measured for governed statements.",
            c.actual_wal_bytes,
        ),
        (
            "pwb_scope_debt_bytes_total",
            "WAL charged as debt beyond what statements were charged up front.",
            c.scope_debt_bytes,
        ),
    ];
    for (name, help, value) in counters {
        e.single(name, Kind::Counter, help, value as f64);
    }
    e.single(
        "pwb_prediction_error_bytes_total",
        Kind::Counter,
        "Sum of |predicted - measured| WAL over settled statements.",
        c.absolute_prediction_error as f64,
    );
    e.single(
        "pwb_pace_wait_seconds_total",
        Kind::Counter,
        "Time paced statements waited for budget while they ran.",
        c.pace_wait_micros as f64 / 1e6,
    );
    e.single(
        "pwb_policies_without_bucket_slot",
        Kind::Gauge,
        "Policies of this database that found the bucket table full.",
        snap.without_bucket as f64,
    );
    let f = snap.feedback;
    e.single(
        "pwb_feedback_factor",
        Kind::Gauge,
        "The share of their rate policies refill at under replica-lag and WAL-disk feedback (1 = not held back).",
        f64::from(f.factor_ppm) / f64::from(governance::budget::buckets::FULL_SCALE),
    );
    e.family(
        "pwb_feedback_engaged",
        Kind::Gauge,
        "1 while a limit holds policies back, by the limit (replica_lag, wal_disk).",
    );
    let limiting = governance::budget::feedback::Limiting::from_code(f.limiting);
    for l in [
        governance::budget::feedback::Limiting::ReplicaLag,
        governance::budget::feedback::Limiting::WalDisk,
    ] {
        let on = f.factor_ppm < governance::budget::buckets::FULL_SCALE && limiting == l;
        e.sample(
            "pwb_feedback_engaged",
            &[("limit", l.as_str())],
            f64::from(u8::from(on)),
        );
    }
    e.family(
        "pwb_replica_lag_bytes",
        Kind::Gauge,
        "Replay lag of each streaming standby as the worker last read it.",
    );
    let n = usize::try_from(f.n_standbys)
        .unwrap_or(0)
        .min(f.standbys.len());
    for s in f.standbys[..n].iter().filter(|s| s.lag_bytes >= 0) {
        let name = s.name();
        let counted = if s.counted { "true" } else { "false" };
        e.sample(
            "pwb_replica_lag_bytes",
            &[("standby", name.as_str()), ("counted", counted)],
            s.lag_bytes as f64,
        );
    }
    if f.wal_disk_free_bytes >= 0 {
        e.single(
            "pwb_wal_disk_free_bytes",
            Kind::Gauge,
            "Free space on the filesystem holding pg_wal.",
            f.wal_disk_free_bytes as f64,
        );
    }
    e.family(
        "pwb_waiting_statements",
        Kind::Gauge,
        "Statements of this database waiting for budget now.",
    );
    for kind in WaitKind::ALL {
        let n = snap
            .waiters
            .iter()
            .filter(|w| w.kind == kind.code())
            .count();
        e.sample(
            "pwb_waiting_statements",
            &[("wait_kind", kind.as_str())],
            n as f64,
        );
    }

    // Each row's labels, rendered (escaped) once for its 14 series.
    let sets: Vec<LabelSet> = snap
        .rows
        .iter()
        .map(|r| {
            let id = r.policy.policy_id.to_string();
            let kind =
                ScopeKind::from_code(r.policy.scope_kind).map_or("unknown", ScopeKind::as_str);
            let mode = Mode::from_code(r.policy.mode).map_or("unknown", Mode::as_str);
            LabelSet::new(&[
                ("policy_id", &id),
                ("scope_kind", kind),
                ("scope_value", &r.value),
                ("mode", mode),
            ])
        })
        .collect();
    let gauges: [Gauge; 6] = [
        (
            "pwb_policy_rate_bytes_per_second",
            "The policy's WAL rate.",
            |r, _| r.buckets.limits.rate_per_sec as f64,
        ),
        (
            "pwb_policy_effective_rate_bytes_per_second",
            "The rate the bucket refills at now (the policy's rate scaled by replica-lag and disk feedback).",
            |r, _| r.buckets.effective_rate() as f64,
        ),
        (
            "pwb_policy_burst_bytes",
            "The policy's burst (bucket capacity).",
            |r, _| r.buckets.limits.burst as f64,
        ),
        (
            "pwb_policy_available_bytes",
            "WAL the bucket holds now.",
            |r, now| r.buckets.level_at(now) as f64,
        ),
        (
            "pwb_policy_debt_bytes",
            "WAL written beyond what was charged, to be repaid before new charges.",
            |r, _| r.buckets.enforcement.debt() as f64,
        ),
        (
            "pwb_policy_waiting_statements",
            "Statements waiting for this bucket now.",
            |r, _| r.waiting as f64,
        ),
    ];
    for (name, help, value) in gauges {
        e.family(name, Kind::Gauge, help);
        for (r, set) in snap.rows.iter().zip(&sets) {
            e.sample_with(name, set, &[], value(r, now));
        }
    }
    e.family(
        "pwb_policy_statements_total",
        Kind::Counter,
        "Statements governed by the policy, by outcome (queued counts statements that had to wait).",
    );
    for (r, set) in snap.rows.iter().zip(&sets) {
        for (outcome, n) in [
            ("accepted", r.stats.accepted),
            ("queued", r.stats.queued),
            ("rejected", r.stats.rejected),
            ("paced", r.stats.paced),
        ] {
            e.sample_with(
                "pwb_policy_statements_total",
                set,
                &[("outcome", outcome)],
                n as f64,
            );
        }
    }
    let totals: [Total; 2] = [
        (
            "pwb_policy_predicted_wal_bytes_total",
            "WAL predicted for the policy's admitted statements.",
            |s| s.predicted_bytes as f64,
        ),
        (
            "pwb_policy_actual_wal_bytes_total",
            "WAL measured for the policy's statements.",
            |s| s.actual_bytes as f64,
        ),
    ];
    for (name, help, value) in totals {
        e.family(name, Kind::Counter, help);
        for (r, set) in snap.rows.iter().zip(&sets) {
            e.sample_with(name, set, &[], value(&r.stats));
        }
    }
    e.family(
        "pwb_policy_wait_seconds_total",
        Kind::Counter,
        "Time the policy's statements waited for budget: queued before running, paced while running.",
    );
    for (r, set) in snap.rows.iter().zip(&sets) {
        for (kind, micros) in [
            (WaitKind::Queue, r.stats.queue_wait_micros),
            (WaitKind::Pace, r.stats.pace_wait_micros),
        ] {
            e.sample_with(
                "pwb_policy_wait_seconds_total",
                set,
                &[("wait_kind", kind.as_str())],
                micros as f64 / 1e6,
            );
        }
    }
    Some(e.finish())
}
