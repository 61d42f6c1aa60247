//! `walrus.metrics()` against Prometheus' own linter (`promtool check
//! metrics`, from Debian's `prometheus` package that `scripts/setup`
//! installs), on a primary after a real resize and on a standby, with the
//! series a dashboard needs present and plausible.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(not(has_promtool), allow(dead_code, unused_imports))]

use cluster_tests::{
    Client, Cluster, REPLICATION_WAIT, promtool_check_metrics, wait_for, write_wal_mb,
};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

/// Samples by series (name with labels) and each family's type.
fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            types.insert(
                it.next().unwrap().to_string(),
                it.next().unwrap().to_string(),
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            samples.insert(series.to_string(), value.parse::<f64>().unwrap());
        }
    }
    (samples, types)
}

fn metrics(client: &mut Client) -> String {
    client
        .query_one("SELECT walrus.metrics()", &[])
        .unwrap()
        .get(0)
}

#[test]
#[cfg_attr(
    not(has_promtool),
    ignore = "promtool (Debian package prometheus) is not installed"
)]
fn metrics_pass_promtool_on_a_primary_and_a_standby_with_the_dashboard_series() {
    let p = Cluster::builder()
        .shared_preload("pg_walrus")
        .setting("max_wal_size", "32MB")
        .setting("min_wal_size", "32MB")
        .setting("checkpoint_timeout", "30s")
        .setting("walrus.naptime_override_ms", "1000")
        .setting("walrus.min_size", "32MB")
        .setting("walrus.max", "64GB")
        .setting("walrus.cooldown_sec", "0")
        .setting("walrus.max_wal_disk_fraction", "0")
        // One forced checkpoint per interval is enough to grow: a loaded
        // machine can spread a write's checkpoints over several intervals.
        .setting("walrus.threshold", "1")
        .start();
    let mut client = p.connect();
    client.batch_execute("CREATE EXTENSION pg_walrus").unwrap();
    let s = p.start_standby("metrics");
    wait_for(WAIT, "a resize", || {
        write_wal_mb(&mut client, 48);
        client
            .query_one(
                "SELECT count(*) FROM walrus.history WHERE action = 'increase'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
    });
    let new_mb: i64 = client
        .query_one(
            "SELECT new_size_mb::bigint FROM walrus.history WHERE action = 'increase' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    wait_for(WAIT, "the new size in use", || {
        let (samples, _) = parse(&metrics(&mut client));
        samples.get("walrus_max_wal_size_bytes") == Some(&((new_mb * 1_048_576) as f64))
    });
    let text = metrics(&mut client);
    promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (samples, types) = parse(&text);
    for (name, kind) in &types {
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{name} is a {kind}"
        );
    }
    // What a dashboard plots, with values that fit what happened.
    let get = |series: &str| -> f64 {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
    };
    assert!(get("walrus_checkpoints_requested_total") >= 2.0);
    assert!(get("walrus_decisions_total{action=\"increase\"}") >= 1.0);
    assert!(get("walrus_changes_total") >= 1.0);
    assert!(get("walrus_last_change_timestamp_seconds") > 1.7e9);
    assert!(get("walrus_wal_rate_bytes_per_second") >= 0.0);
    assert_eq!(get("walrus_in_recovery"), 0.0);
    assert_eq!(get("walrus_worker_up"), 1.0);
    assert_eq!(get("walrus_disk_cap_bytes"), 0.0, "the cap is off here");
    assert!(get("walrus_wal_filesystem_size_bytes") > 0.0);
    assert!(get("walrus_wal_directory_bytes") >= 16.0 * 1_048_576.0);
    assert_eq!(get("walrus_pending_decisions"), 0.0);
    assert!(samples.contains_key("walrus_interval_forced_checkpoints"));
    assert!(samples.contains_key("walrus_cooldown_remaining_seconds"));
    assert!(!samples.contains_key("walrus_restartpoints_requested_total"));

    // The standby: restartpoint series, in recovery, lint-clean.
    p.wait_for_replay(&s, REPLICATION_WAIT);
    let mut standby = s.connect();
    wait_for(WAIT, "the standby's worker", || {
        let (samples, _) = parse(&metrics(&mut standby));
        samples.get("walrus_worker_up") == Some(&1.0)
    });
    let text = metrics(&mut standby);
    promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (samples, _) = parse(&text);
    assert_eq!(samples.get("walrus_in_recovery"), Some(&1.0), "{text}");
    assert!(samples.contains_key("walrus_restartpoints_requested_total"));
    assert!(samples.contains_key("walrus_restartpoints_timed_total"));
}
