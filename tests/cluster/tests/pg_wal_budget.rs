//! pg_wal_budget in a real server.
use cluster_tests::Cluster;

#[test]
fn loads_through_shared_preload_and_creates_schema() {
    let cluster = Cluster::builder().shared_preload("pg_wal_budget").start();
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE EXTENSION pg_wal_budget")
        .unwrap();
    let status: String = client
        .query_one("SELECT pwb.preload_status()", &[])
        .unwrap()
        .get(0);
    assert_eq!(status, "preloaded");
    let schema: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'pwb'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(schema, 1);
}

#[test]
fn without_preload_reports_not_preloaded() {
    let cluster = Cluster::builder().start();
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE EXTENSION pg_wal_budget")
        .unwrap();
    let status: String = client
        .query_one("SELECT pwb.preload_status()", &[])
        .unwrap()
        .get(0);
    assert_eq!(status, "not_preloaded");
}
