//! Monitoring: pg_wal_budget's Prometheus exposition on a real server,
//! validated by a real parser (`promtool check metrics`, from Debian's
//! prometheus package), with label values that need escaping, and who may
//! read it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_tests::{PWB_WRITER_SETUP, promtool_check_metrics, pwb_server, sqlstate};

/// The value of the first sample of `metric` whose line contains every one
/// of `labels` (label fragments such as `policy_id="1"`).
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
#[cfg_attr(
    not(has_promtool),
    ignore = "promtool is not installed (scripts/setup installs Debian's prometheus package)"
)]
fn pwb_metrics_pass_promtool_and_escape_label_values() {
    let (cluster, mut admin) = pwb_server(&[], PWB_WRITER_SETUP);
    // A scope value needing every escape: quote, backslash, newline.
    let odd = "we\"ird\\tenant\nname";
    admin
        .execute(
            "SELECT pwb.create_policy('tenant', $1, 1000000, 2000000, 'queue')",
            &[&odd],
        )
        .unwrap();
    admin
        .batch_execute(
            "SELECT pwb.create_policy('tenant', NULL, 500000, 1000000, 'pace');
             CREATE ROLE setter LOGIN; GRANT pwb_tenant_setter TO setter;
             GRANT ALL ON t, t_id_seq TO setter;",
        )
        .unwrap();
    let mut odd_tenant = cluster.connect_as("setter", "postgres");
    odd_tenant
        .execute("SELECT pwb.set_tenant($1)", &[&odd])
        .unwrap();
    odd_tenant
        .batch_execute("INSERT INTO t (payload) SELECT 'x' FROM generate_series(1, 100)")
        .unwrap();
    let mut setter = cluster.connect_as("setter", "postgres");
    setter
        .batch_execute(
            "SELECT pwb.set_tenant('acme'); INSERT INTO t (payload) VALUES ('tenant row')",
        )
        .unwrap();
    let text: String = admin.query_one("SELECT pwb.metrics()", &[]).unwrap().get(0);
    promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(
        text.contains(r#"scope_value="we\"ird\\tenant\nname""#),
        "escaped label value:\n{text}"
    );
    assert_eq!(
        sample(
            &text,
            "pwb_policy_statements_total",
            &[r#"policy_id="1""#, r#"outcome="accepted""#]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "pwb_policy_rate_bytes_per_second",
            &[r#"scope_value="acme""#]
        ),
        Some(500000.0),
        "the template's value has its own series"
    );
    assert!(sample(&text, "pwb_actual_wal_bytes_total", &[]).unwrap_or(0.0) > 0.0);
}

#[test]
fn pwb_metrics_are_for_monitors_only() {
    let (cluster, mut admin) = pwb_server(&[], PWB_WRITER_SETUP);
    admin
        .batch_execute(
            "CREATE ROLE watcher LOGIN; GRANT pg_monitor TO watcher;
             CREATE ROLE nobody LOGIN;",
        )
        .unwrap();
    let mut watcher = cluster.connect_as("watcher", "postgres");
    let text: String = watcher
        .query_one("SELECT pwb.metrics()", &[])
        .unwrap()
        .get(0);
    assert!(text.contains("# TYPE pwb_statements_accepted_total counter"));
    let mut nobody = cluster.connect_as("nobody", "postgres");
    let err = nobody
        .query_one("SELECT pwb.metrics()", &[])
        .expect_err("not a monitor");
    assert_eq!(sqlstate(&err), Some("42501"));
    let mut writer = cluster.connect_as("writer", "postgres");
    assert!(writer.query_one("SELECT pwb.metrics()", &[]).is_err());
}
