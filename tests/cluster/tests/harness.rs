//! The harness itself: restart, crash restart and backend kill really happen,
//! and several connections work at once.
use cluster_tests::Cluster;
use std::thread;

#[test]
fn clean_restart_keeps_committed_data() {
    let cluster = Cluster::builder().start();
    cluster
        .connect()
        .batch_execute("CREATE TABLE t AS SELECT 1 AS x")
        .unwrap();
    let before: i32 = cluster
        .connect()
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    cluster.restart();
    let mut client = cluster.connect();
    let x: i32 = client.query_one("SELECT x FROM t", &[]).unwrap().get(0);
    assert_eq!(x, 1);
    let after: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_ne!(before, after, "a restart gives new backends");
}

#[test]
fn crash_restart_recovers() {
    let cluster = Cluster::builder().start();
    cluster
        .connect()
        .batch_execute("CREATE TABLE t AS SELECT 1 AS x")
        .unwrap();
    cluster.crash_restart();
    let x: i32 = cluster
        .connect()
        .query_one("SELECT x FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(x, 1);
    assert!(
        cluster
            .log()
            .contains("database system was not properly shut down")
    );
}

#[test]
fn killing_a_backend_resets_every_session() {
    let cluster = Cluster::builder().start();
    let mut victim = cluster.connect();
    let mut bystander = cluster.connect();
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    cluster.kill_backend(pid);
    assert!(
        bystander.simple_query("SELECT 1").is_err(),
        "postmaster reset all backends"
    );
    assert!(cluster.log().contains("terminated by signal 9"));
    cluster.connect().simple_query("SELECT 1").unwrap();
}

#[test]
fn concurrent_connections() {
    let cluster = Cluster::builder().setting("max_connections", "20").start();
    let pids: Vec<i32> = thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = cluster.connect();
                    client
                        .query_one("SELECT pg_backend_pid()", &[])
                        .unwrap()
                        .get(0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = pids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 8);
}

#[test]
fn dropping_the_cluster_stops_the_server() {
    let cluster = Cluster::builder().start();
    let port = cluster.port();
    let data = cluster.data_dir();
    drop(cluster);
    assert!(!data.exists(), "cluster directory removed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server stopped"
    );
}

/// A streaming standby replays the primary's WAL, a paused standby holds
/// back while the primary goes on, resuming catches it up, and a promoted
/// standby accepts writes; two standbys of one primary each get their slot.
#[test]
fn standbys_stream_pause_resume_and_promote() {
    use cluster_tests::REPLICATION_WAIT;
    let primary = Cluster::builder().start();
    let one = primary.start_standby("one");
    let two = primary.start_standby("two");
    assert!(!primary.in_recovery());
    assert!(one.in_recovery() && two.in_recovery());
    assert_eq!(one.standby_name(), Some("one"));
    let slots: i64 = primary
        .connect()
        .query_one(
            "SELECT count(*) FROM pg_replication_slots
             WHERE slot_type = 'physical' AND active AND slot_name IN ('one', 'two')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(slots, 2);

    let mut writer = primary.connect();
    writer
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .unwrap();
    primary.wait_for_replay(&one, REPLICATION_WAIT);
    let count = |c: &Cluster| -> i64 {
        c.connect()
            .query_one("SELECT count(*) FROM t", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(count(&one), 1);

    // Paused: the primary's new rows reach the standby (streamed) but are
    // not replayed.
    one.pause_replay();
    let paused_at = one.replay_lsn();
    writer
        .batch_execute("INSERT INTO t SELECT generate_series(2, 1000)")
        .unwrap();
    let written = primary.current_wal_lsn();
    assert!(written > paused_at);
    primary.wait_for_replay(&two, REPLICATION_WAIT);
    assert_eq!(count(&two), 1000);
    // The WAL is received while replay stays where it paused.
    let mut standby = one.connect();
    cluster_tests::wait_for(REPLICATION_WAIT, "the paused standby to receive", || {
        let received: i64 = standby
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint",
                &[],
            )
            .unwrap()
            .get(0);
        received as u64 >= written
    });
    assert_eq!(one.replay_lsn(), paused_at);
    assert_eq!(count(&one), 1);
    one.resume_replay();
    one.wait_for_replay_of(written, REPLICATION_WAIT);
    assert_eq!(count(&one), 1000);

    // Promotion: the standby leaves recovery and takes writes.
    one.promote();
    assert!(!one.in_recovery());
    one.connect()
        .batch_execute("INSERT INTO t VALUES (1001)")
        .unwrap();
    assert_eq!(count(&one), 1001);
    // The other standby still follows the old primary.
    assert!(two.in_recovery());
}
