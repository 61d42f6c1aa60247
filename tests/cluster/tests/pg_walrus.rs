//! pg_walrus in a real server.
use cluster_tests::Cluster;

#[test]
fn loads_through_shared_preload_and_creates_history() {
    let cluster = Cluster::builder().shared_preload("pg_walrus").start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION pg_walrus").unwrap();
    let loaded: bool = client
        .query_one("SELECT 'pg_walrus' = ANY(string_to_array(current_setting('shared_preload_libraries'), ','))", &[])
        .unwrap()
        .get(0);
    assert!(loaded);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM walrus.history", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}
