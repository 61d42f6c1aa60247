//! Behind a real connection pooler (Debian's PgBouncer): consecutive clients
//! of one server connection must not inherit each other's tenant. Every
//! statement goes through the simple query protocol, which transaction
//! pooling supports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_tests::{Client, Cluster, Pgbouncer, sqlstate};
use postgres::SimpleQueryMessage;

/// The first column of the first row a simple query returns.
fn one(client: &mut Client, sql: &str) -> Option<String> {
    client
        .simple_query(sql)
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten()
}

/// A server with pg_wal_budget, a tenant setter `alice`, a table she may
/// write, and a reject policy for tenant `acme` that refuses every write.
fn server() -> Cluster {
    let cluster = Cluster::builder()
        .shared_preload("pg_wal_budget")
        .setting("compute_query_id", "on")
        .start();
    cluster
        .connect()
        .batch_execute(
            "CREATE EXTENSION pg_wal_budget;
             CREATE ROLE alice LOGIN;
             GRANT pwb_tenant_setter TO alice;
             CREATE TABLE t (a int, b text);
             GRANT ALL ON t TO alice;
             SELECT pwb.create_policy('tenant', 'acme', 1, 1, 'reject');",
        )
        .unwrap();
    cluster
}

/// Writes as the pooled client; Ok when not governed as `acme`.
fn write(client: &mut Client) -> Result<(), String> {
    match client.simple_query("INSERT INTO t VALUES (1, 'x')") {
        Ok(_) => Ok(()),
        Err(e) => {
            assert_eq!(sqlstate(&e), Some("53400"), "{e}");
            Err(e.to_string())
        }
    }
}

#[test]
#[cfg_attr(
    not(has_pgbouncer),
    ignore = "pgbouncer is not installed (scripts/setup installs Debian's package)"
)]
fn transaction_pooling_does_not_carry_a_tenant_to_the_next_client() {
    let cluster = server();
    let bouncer = Pgbouncer::start(&cluster, "transaction", &["default_pool_size = 1"]);
    let mut first = bouncer.connect_as("alice", "postgres");
    let mut second = bouncer.connect_as("alice", "postgres");

    // The local form: the tenant ends with the client's transaction.
    first
        .batch_execute("BEGIN; SELECT pwb.set_tenant('acme', is_local => true)")
        .unwrap();
    let first_pid = one(&mut first, "SELECT pg_backend_pid()");
    assert!(write(&mut first).is_err(), "governed as acme inside");
    first.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        one(&mut second, "SELECT pg_backend_pid()"),
        first_pid,
        "both clients use the one server connection"
    );
    assert_eq!(one(&mut second, "SELECT pwb.current_tenant()"), None);
    write(&mut second).expect("the next client is not acme");

    // The session form in a transaction that rolls back is undone too.
    first
        .batch_execute("BEGIN; SELECT pwb.set_tenant('acme'); ROLLBACK")
        .unwrap();
    assert_eq!(one(&mut second, "SELECT pwb.current_tenant()"), None);
    write(&mut second).expect("a rolled-back set_tenant does not hold");

    // Committed in the local form, it still ends with the transaction.
    first
        .batch_execute("BEGIN; SELECT pwb.set_tenant('acme', true); COMMIT")
        .unwrap();
    assert_eq!(one(&mut second, "SELECT pwb.current_tenant()"), None);
    write(&mut second).expect("the local form ended at COMMIT");
}

#[test]
#[cfg_attr(
    not(has_pgbouncer),
    ignore = "pgbouncer is not installed (scripts/setup installs Debian's package)"
)]
fn the_poolers_discard_all_clears_a_session_tenant() {
    let cluster = server();
    // Transaction pooling that resets the server connection after every
    // transaction, and session pooling (which resets it when a client
    // leaves): both run DISCARD ALL.
    let transaction = Pgbouncer::start(
        &cluster,
        "transaction",
        &["default_pool_size = 1", "server_reset_query_always = 1"],
    );
    let mut first = transaction.connect_as("alice", "postgres");
    let mut second = transaction.connect_as("alice", "postgres");
    first
        .batch_execute("SELECT pwb.set_tenant('acme')")
        .unwrap();
    let pid = one(&mut first, "SELECT pg_backend_pid()");
    assert_eq!(one(&mut second, "SELECT pg_backend_pid()"), pid);
    assert_eq!(one(&mut second, "SELECT pwb.current_tenant()"), None);
    write(&mut second).expect("DISCARD ALL cleared the tenant");

    let session = Pgbouncer::start(&cluster, "session", &["default_pool_size = 1"]);
    let mut first = session.connect_as("alice", "postgres");
    first
        .batch_execute("SELECT pwb.set_tenant('acme')")
        .unwrap();
    assert!(write(&mut first).is_err(), "governed as acme");
    let pid = one(&mut first, "SELECT pg_backend_pid()");
    drop(first);
    let mut second = session.connect_as("alice", "postgres");
    assert_eq!(one(&mut second, "SELECT pg_backend_pid()"), pid);
    assert_eq!(one(&mut second, "SELECT pwb.current_tenant()"), None);
    write(&mut second).expect("the next client of the connection is not acme");
}
