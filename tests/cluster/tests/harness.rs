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
