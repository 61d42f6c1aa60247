//! pg_throttle in a real server.
use cluster_tests::Cluster;

#[test]
fn loads_through_session_preload_and_creates_table() {
    let cluster = Cluster::builder().session_preload("pg_throttle").start();
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE EXTENSION pg_throttle")
        .unwrap();
    let rls: bool = client
        .query_one(
            "SELECT relrowsecurity FROM pg_class WHERE relname = 'throttlings'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(rls, "throttlings has row-level security");
}
