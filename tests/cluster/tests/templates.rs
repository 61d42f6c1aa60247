//! Template policies (no scope value: every value of the kind, each value
//! with its own bucket) and fresh buckets for new policies, on a real server
//! with concurrent tenants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_tests::{Client, Cluster, pwb_server, sqlstate};
use std::thread;
use std::time::{Duration, Instant};

/// A role `app` that may set tenants, and a table `t` it may write.
const SETUP: &str = "CREATE ROLE app LOGIN;
     GRANT pwb_tenant_setter TO app;
     CREATE TABLE t (id bigserial PRIMARY KEY, tenant text, payload text);
     GRANT ALL ON t, t_id_seq TO app;";

fn as_tenant(cluster: &Cluster, tenant: &str) -> Client {
    let mut c = cluster.connect_as("app", "postgres");
    c.batch_execute(&format!("SELECT pwb.set_tenant('{tenant}')"))
        .unwrap();
    c
}

/// About `rows` x 230 bytes of WAL.
fn write(client: &mut Client, rows: i32) -> Result<(), cluster_tests::PgError> {
    client.batch_execute(&format!(
        "INSERT INTO t (tenant, payload) SELECT pwb.current_tenant(), repeat('x', 200) \
         FROM generate_series(1, {rows})"
    ))
}

#[test]
fn a_template_gives_every_value_its_own_bucket() {
    let (cluster, mut admin) = pwb_server(&[], SETUP);
    admin
        .batch_execute(
            "SELECT pwb.create_policy('tenant', NULL, 300000, 300000, 'reject');
             SELECT pwb.create_policy('tenant', '', 300000, 300000, 'reject', 50);
             SELECT pwb.create_policy('tenant', 'vip', 1000000000, 1000000000, 'reject');",
        )
        .unwrap();
    let templates: i64 = admin
        .query_one(
            "SELECT count(*) FROM pwb.policy WHERE scope_value IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(templates, 2, "NULL and empty both make a template");
    // acme exhausts its own bucket...
    let mut acme = as_tenant(&cluster, "acme");
    write(&mut acme, 500).unwrap();
    let err = write(&mut acme, 500).expect_err("acme's bucket is empty");
    assert_eq!(sqlstate(&err), Some("53400"));
    // ...which leaves globex's alone, and vip's specific policy wins over
    // the template of the same priority.
    let mut globex = as_tenant(&cluster, "globex");
    write(&mut globex, 500).expect("globex has its own bucket");
    let mut vip = as_tenant(&cluster, "vip");
    for _ in 0..5 {
        write(&mut vip, 500).expect("vip's own policy");
    }
    let rows = admin
        .query(
            "SELECT s.policy_id, s.scope_value, p.scope_value IS NULL AS template
               FROM pwb.scope_stats() s JOIN pwb.policy p USING (policy_id)
              ORDER BY s.scope_value",
            &[],
        )
        .unwrap();
    let listed: Vec<(Option<String>, bool)> = rows.iter().map(|r| (r.get(1), r.get(2))).collect();
    assert_eq!(
        listed,
        [
            (Some("acme".into()), true),
            (Some("globex".into()), true),
            (Some("vip".into()), false)
        ]
    );
    let precedence: Vec<(i32, bool)> = admin
        .query(
            "SELECT policy_id, enabled FROM pwb.active_policy_precedence ORDER BY precedence",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(precedence, [(3, true), (1, true), (2, true)]);
    admin.batch_execute("SELECT pwb.disable_policy(3)").unwrap();
    let listed: i64 = admin
        .query_one(
            "SELECT count(*) FROM pwb.active_policy_precedence WHERE NOT enabled",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(listed, 1, "disabled policies are listed too");
}

/// Four tenants under one paced template policy write at the same time:
/// each is held to the template's rate on its own, none waits for another.
#[test]
fn concurrent_tenants_are_each_held_to_the_template_rate() {
    let (cluster, mut admin) = pwb_server(&[], SETUP);
    admin
        .batch_execute("SELECT pwb.create_policy('tenant', NULL, 300000, 300000, 'pace')")
        .unwrap();
    let mut handles = Vec::new();
    for tenant in ["t1", "t2", "t3", "t4"] {
        let mut c = as_tenant(&cluster, tenant);
        handles.push(thread::spawn(move || {
            let started = Instant::now();
            write(&mut c, 6000).unwrap();
            started.elapsed()
        }));
    }
    let took: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wal: Vec<i64> = admin
        .query(
            "SELECT actual_wal_bytes FROM pwb.recent_decisions(10)
              WHERE decision_kind = 'paced' ORDER BY scope_hash",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(wal.len(), 4);
    let ideal = (wal.iter().min().copied().unwrap() as f64 - 300_000.0) / 300_000.0;
    eprintln!("per-tenant durations {took:?}, ideal about {ideal:.2} s each");
    for d in &took {
        let s = d.as_secs_f64();
        assert!(s >= 0.8 * ideal, "{s:.2} s for an ideal {ideal:.2} s");
        // Sharing one bucket would take four times as long.
        assert!(s <= 3.0 * ideal, "{s:.2} s for an ideal {ideal:.2} s");
    }
    let values: i64 = admin
        .query_one("SELECT count(*) FROM pwb.scope_stats()", &[])
        .unwrap()
        .get(0);
    assert_eq!(values, 4, "one bucket per tenant");
}

/// The per-value table is bounded: a new value finds it full (every bucket
/// busy) and is admitted without accounting (fail_open on) or refused (off),
/// counted either way; an idle value's bucket is reused.
#[test]
fn a_full_value_table_behaves_as_documented() {
    let (cluster, mut admin) = pwb_server(&[("pwb.template_bucket_capacity", "2")], SETUP);
    admin
        .batch_execute("SELECT pwb.create_policy('tenant', NULL, 1, 1000000, 'reject')")
        .unwrap();
    // Two tenants leave their buckets busy (rate 1 B/s: they stay in use).
    for tenant in ["busy1", "busy2"] {
        write(&mut as_tenant(&cluster, tenant), 100).unwrap();
    }
    let mut third = as_tenant(&cluster, "third");
    write(&mut third, 10).expect("fails open by default");
    let exhausted: i64 = admin
        .query_one(
            "SELECT bucket_capacity_exhausted_count FROM pwb.counters()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(exhausted >= 1);
    admin
        .batch_execute("ALTER SYSTEM SET pwb.fail_open = off")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let mut third = as_tenant(&cluster, "third");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match write(&mut third, 10) {
            Err(e) => {
                assert_eq!(sqlstate(&e), Some("53000"), "{e}");
                break;
            }
            Ok(()) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Ok(()) => panic!("still failing open after the reload"),
        }
    }
}

/// A new policy never inherits an old policy's bucket: after TRUNCATE ...
/// RESTART IDENTITY reuses policy ids, a new 1 GiB reject policy admits what
/// the old 1-byte one refused, and so does a new shadow policy.
#[test]
fn a_new_policy_starts_with_a_full_bucket() {
    let (cluster, mut admin) = pwb_server(&[], SETUP);
    admin
        .batch_execute("SELECT pwb.create_policy('role', 'app', 1, 1, 'reject')")
        .unwrap();
    let mut app = cluster.connect_as("app", "postgres");
    assert!(write(&mut app, 10).is_err());
    admin
        .batch_execute(
            "TRUNCATE pwb.policy RESTART IDENTITY;
             SELECT pwb.create_policy('role', 'app', 1073741824, 1073741824, 'reject');",
        )
        .unwrap();
    write(&mut app, 10).expect("the new policy starts full");
    app.batch_execute("CREATE TEMP TABLE scratch (a int)")
        .unwrap();
    admin
        .batch_execute(
            "TRUNCATE pwb.policy RESTART IDENTITY;
             SELECT pwb.create_policy('role', 'app', 1, 1, 'shadow');
             TRUNCATE pwb.policy RESTART IDENTITY;
             SELECT pwb.create_policy('role', 'app', 1073741824, 1073741824, 'shadow');",
        )
        .unwrap();
    write(&mut app, 10).unwrap();
    let kind: String = admin
        .query_one("SELECT decision_kind FROM pwb.recent_decisions(1)", &[])
        .unwrap()
        .get(0);
    assert_eq!(kind, "allowed", "no would_reject from an old shadow bucket");

    // Raising the limits of an exhausted bucket applies from now on: the
    // debt is repaid at the new rate (and any beyond the new burst is
    // forgiven), not at the old one.
    admin
        .batch_execute(
            "TRUNCATE pwb.policy RESTART IDENTITY;
             SELECT pwb.create_policy('role', 'app', 1000, 100000, 'reject');",
        )
        .unwrap();
    write(&mut app, 2000).expect("admitted on its prediction, then in debt");
    assert!(
        write(&mut app, 10).is_err(),
        "in debt for minutes at 1 kB/s"
    );
    admin
        .batch_execute("SELECT pwb.update_policy(1, 10000000, 10000000)")
        .unwrap();
    let raised = Instant::now();
    while write(&mut app, 10).is_err() {
        assert!(
            raised.elapsed() < Duration::from_secs(10),
            "the new rate repays the debt in well under a second"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
