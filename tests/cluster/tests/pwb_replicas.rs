//! pg_wal_budget with real streaming standbys: replica-lag feedback engaging
//! while a standby's replay is paused and releasing when it resumes, an
//! exempt policy unaffected, the WAL-disk floor, a standby that disconnects,
//! bad values for the settings, and the extension on a hot standby and after
//! promotion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_tests::{Client, Cluster, pwb_server, sqlstate, wait_for};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

fn primary(settings: &[(&str, &str)]) -> (Cluster, Client) {
    let mut all = vec![("max_wal_senders", "5"), ("max_replication_slots", "5")];
    all.extend_from_slice(settings);
    pwb_server(
        &all,
        "CREATE ROLE tenant_a LOGIN; CREATE ROLE exempt_b LOGIN;
         CREATE TABLE t (id bigserial PRIMARY KEY, payload text);
         GRANT ALL ON t, t_id_seq TO tenant_a, exempt_b;
         GRANT pwb_monitor TO tenant_a;",
    )
}

/// (factor, limiting) as pg_wal_budget's worker last published them.
fn feedback(client: &mut Client) -> (f64, String) {
    let row = client
        .query_one("SELECT factor, limiting FROM pwb.feedback() LIMIT 1", &[])
        .unwrap();
    (row.get(0), row.get(1))
}

/// Loops 100 kB inserts as `role` until `stop`; counts the inserts.
fn writer(
    cluster: &Cluster,
    role: &str,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> thread::JoinHandle<()> {
    let mut c = cluster.connect_as(role, "postgres");
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if c.batch_execute(
                "INSERT INTO t (payload) SELECT repeat('x', 200) FROM generate_series(1, 300)",
            )
            .is_err()
            {
                break;
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[test]
fn replica_lag_holds_back_a_tenant_while_replay_is_paused_and_releases_after() {
    let (cluster, mut admin) = primary(&[("pwb.max_replica_lag", "4MB")]);
    admin
        .batch_execute(
            "SELECT pwb.create_policy('role', 'tenant_a', 2000000, 2000000, 'pace', 100);
             SELECT pwb.create_policy('role', 'exempt_b', 2000000, 2000000, 'pace', 100);
             SELECT pwb.set_policy_feedback_exempt(2, true);",
        )
        .unwrap();
    let standby = cluster.start_standby("s1");
    assert_eq!(feedback(&mut admin).0, 1.0);
    standby.pause_replay();
    let stop = Arc::new(AtomicBool::new(false));
    let (a_done, b_done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let a = writer(&cluster, "tenant_a", stop.clone(), a_done.clone());
    let b = writer(&cluster, "exempt_b", stop.clone(), b_done.clone());
    wait_for(WAIT, "replica-lag feedback to engage", || {
        let (factor, limiting) = feedback(&mut admin);
        factor < 0.5 && limiting == "replica_lag"
    });
    assert!(cluster.log().contains("replica_lag feedback engaged"));
    // While held back, tenant_a's rate is scaled down; exempt_b's is not.
    let metrics: String = admin.query_one("SELECT pwb.metrics()", &[]).unwrap().get(0);
    let effective = |who: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("pwb_policy_effective_rate_bytes_per_second{")
                    && l.contains(&format!("scope_value=\"{who}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    assert!(effective("tenant_a") < 1_000_000.0, "{metrics}");
    assert_eq!(effective("exempt_b"), 2_000_000.0);
    // The exempt writer keeps writing while tenant_a is held.
    let (a0, b0) = (
        a_done.load(Ordering::Relaxed),
        b_done.load(Ordering::Relaxed),
    );
    thread::sleep(Duration::from_secs(3));
    let (a1, b1) = (
        a_done.load(Ordering::Relaxed),
        b_done.load(Ordering::Relaxed),
    );
    eprintln!(
        "while held back: tenant_a {} inserts, exempt_b {} inserts",
        a1 - a0,
        b1 - b0
    );
    assert!(b1 - b0 > 2 * (a1 - a0).max(1), "exempt_b is not held back");
    let lag: i64 = admin
        .query_one(
            "SELECT replay_lag_bytes FROM pwb.feedback() WHERE standby = 's1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(lag > 4 * 1_048_576);

    standby.resume_replay();
    wait_for(WAIT, "feedback to release once replay catches up", || {
        feedback(&mut admin).0 == 1.0
    });
    assert!(cluster.log().contains("feedback released"));
    stop.store(true, Ordering::Relaxed);
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn a_standby_that_disconnects_is_no_longer_counted() {
    let (cluster, mut admin) = primary(&[("pwb.max_replica_lag", "2MB")]);
    admin
        .batch_execute("SELECT pwb.create_policy('role', 'tenant_a', 2000000, 2000000, 'pace')")
        .unwrap();
    let standby = cluster.start_standby("s1");
    standby.pause_replay();
    // The writer is held back once feedback engages: it runs on its own.
    let stop = Arc::new(AtomicBool::new(false));
    let a = writer(
        &cluster,
        "tenant_a",
        stop.clone(),
        Arc::new(AtomicU64::new(0)),
    );
    wait_for(WAIT, "feedback to engage", || feedback(&mut admin).0 < 1.0);
    drop(standby);
    wait_for(WAIT, "feedback to release after the standby left", || {
        feedback(&mut admin).0 == 1.0
    });
    stop.store(true, Ordering::Relaxed);
    a.join().unwrap();
    let listed: i64 = admin
        .query_one("SELECT count(standby) FROM pwb.feedback()", &[])
        .unwrap()
        .get(0);
    assert_eq!(listed, 0);
}

#[test]
fn the_wal_disk_floor_holds_policies_back() {
    let (cluster, mut admin) = primary(&[]);
    admin
        .batch_execute("SELECT pwb.create_policy('role', 'tenant_a', 1000000, 1500000, 'reject')")
        .unwrap();
    wait_for(WAIT, "the worker to read the WAL disk", || {
        admin
            .query_one("SELECT wal_disk_free_bytes > 0 FROM pwb.feedback()", &[])
            .unwrap()
            .get::<_, Option<bool>>(0)
            == Some(true)
    });
    // A floor above any disk's free space: engaged.
    admin
        .batch_execute("ALTER SYSTEM SET pwb.min_wal_disk_free = '2000TB'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(WAIT, "the disk floor to engage", || {
        let (factor, limiting) = feedback(&mut admin);
        factor < 0.1 && limiting == "wal_disk"
    });
    let mut a = cluster.connect_as("tenant_a", "postgres");
    a.batch_execute(
        "INSERT INTO t (payload) SELECT repeat('x', 200) FROM generate_series(1, 3000)",
    )
    .unwrap();
    let err = a
        .batch_execute(
            "INSERT INTO t (payload) SELECT repeat('x', 200) FROM generate_series(1, 3000)",
        )
        .expect_err("held back: the bucket refills at a fraction of its rate");
    assert_eq!(sqlstate(&err), Some("53400"));
    let reason: String = admin
        .query_one("SELECT reason_code FROM pwb.recent_decisions(1)", &[])
        .unwrap()
        .get(0);
    assert_eq!(reason, "wal_disk_feedback");
    admin
        .batch_execute("ALTER SYSTEM RESET pwb.min_wal_disk_free")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(WAIT, "the floor to release", || {
        feedback(&mut admin).0 == 1.0
    });
}

#[test]
fn bad_values_for_the_feedback_settings_are_refused() {
    let (cluster, mut admin) = primary(&[]);
    for (setting, value) in [
        ("pwb.replica_lag_standbys", "''"),
        ("pwb.replica_lag_standbys", "'s1,,s2'"),
        ("pwb.replica_lag_standbys", "'*, s1'"),
        ("pwb.max_replica_lag", "'-1'"),
        ("pwb.max_replica_lag", "'lots'"),
        ("pwb.min_wal_disk_free", "'-5MB'"),
    ] {
        let err = admin
            .batch_execute(&format!("ALTER SYSTEM SET {setting} = {value}"))
            .expect_err("refused");
        assert!(
            matches!(sqlstate(&err), Some("22023") | Some("22P02")),
            "{setting} = {value}: {err}"
        );
    }
    admin
        .batch_execute("ALTER SYSTEM SET pwb.replica_lag_standbys = 's1, s2'")
        .unwrap();
    let err = cluster
        .connect_as("tenant_a", "postgres")
        .batch_execute("SET pwb.max_replica_lag = '1GB'")
        .expect_err("a reload setting");
    assert_eq!(sqlstate(&err), Some("55P02"));
}

#[test]
fn on_a_standby_everything_reads_and_after_promotion_the_replicated_policies_govern() {
    let (cluster, mut admin) = primary(&[]);
    admin
        .batch_execute("SELECT pwb.create_policy('role', 'tenant_a', 1, 1, 'reject')")
        .unwrap();
    let standby = cluster.start_standby("s1");
    cluster.wait_for_replay(&standby, WAIT);
    let mut s = standby.connect();
    for f in [
        "SELECT count(*) FROM pwb.counters()",
        "SELECT count(*) FROM pwb.scope_stats()",
        "SELECT count(*) FROM pwb.recent_decisions(10)",
        "SELECT count(*) FROM pwb.query_profiles()",
        "SELECT count(*) FROM pwb.scope_names()",
        "SELECT count(*) FROM pwb.waits()",
        "SELECT count(*) FROM pwb.feedback()",
        "SELECT length(pwb.metrics())",
        "SELECT count(*) FROM pwb.policies()",
        "SELECT pwb.preload_status()",
    ] {
        s.query_one(f, &[])
            .unwrap_or_else(|e| panic!("{f} on a standby: {e}"));
    }
    // Reads pass through; the worker runs there too.
    let mut a = standby.connect_as("tenant_a", "postgres");
    a.query_one("SELECT count(*) FROM t", &[]).unwrap();
    wait_for(WAIT, "the worker on the standby", || {
        s.query_one("SELECT updated_epoch_ms > 0 FROM pwb.feedback()", &[])
            .unwrap()
            .get(0)
    });
    assert!(!standby.log().contains("ERROR"), "{}", standby.log());
    drop(cluster);
    standby.promote();
    let started = Instant::now();
    let mut a = standby.connect_as("tenant_a", "postgres");
    let err = a
        .batch_execute("INSERT INTO t (payload) VALUES ('after promotion')")
        .expect_err("the replicated reject policy governs");
    assert_eq!(sqlstate(&err), Some("53400"));
    assert!(started.elapsed() < WAIT);
}
