//! pg_wal_budget in a real server: several sessions, queueing, cancellation,
//! restarts, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use cluster_tests::{
    Client, Cluster, ClusterBuilder, PWB_WRITER_SETUP, PgError, sqlstate, wait_for,
};
use std::thread;
use std::time::{Duration, Instant};

/// A server preloading pg_wal_budget with query ids on, not yet started.
fn budget_builder() -> ClusterBuilder {
    Cluster::builder()
        .shared_preload("pg_wal_budget")
        .setting("compute_query_id", "on")
}

fn budget_cluster() -> Cluster {
    budget_builder().start()
}

fn setup(client: &mut Client) {
    client
        .batch_execute(&format!(
            "CREATE EXTENSION pg_wal_budget; {PWB_WRITER_SETUP}"
        ))
        .unwrap();
}

/// A preloaded server set up as in [`setup`], and a superuser session on it.
fn budget_cluster_with_admin() -> (Cluster, Client) {
    set_up_with_admin(budget_builder())
}

/// Starts `builder`'s server and sets it up as in [`setup`]; returns it with
/// a superuser session on it.
fn set_up_with_admin(builder: ClusterBuilder) -> (Cluster, Client) {
    let cluster = builder.start();
    let mut admin = cluster.connect();
    setup(&mut admin);
    (cluster, admin)
}

fn available(client: &mut Client, policy_id: i32) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT available_bytes, debt_bytes FROM pwb.scope_stats() WHERE policy_id = $1",
            &[&policy_id],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn alter_system(client: &mut Client, setting: &str) {
    client
        .batch_execute(&format!("ALTER SYSTEM SET {setting}"))
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    thread::sleep(Duration::from_millis(300));
}

fn create_policy(client: &mut Client, sql: &str) -> i32 {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// Runs `sql`, which must fail with SQLSTATE `code`; returns the error.
fn assert_refused(client: &mut Client, sql: &str, code: &str) -> PgError {
    let err = client.execute(sql, &[]).unwrap_err();
    assert_eq!(sqlstate(&err), Some(code), "{sql}: {err}");
    err
}

fn fail_open_count(client: &mut Client) -> i64 {
    client
        .query_one("SELECT internal_fail_open_count FROM pwb.counters()", &[])
        .unwrap()
        .get(0)
}

/// Makes the writer's bucket owe about `bytes` of WAL: one statement under an
/// observe policy would not charge, so this runs under the queue policy with a
/// small prediction and a large actual.
fn write_wal(client: &mut Client, rows: i32) {
    client
        .execute(
            "INSERT INTO t (payload) SELECT repeat('x', 200) FROM generate_series(1, $1)",
            &[&rows],
        )
        .unwrap();
}

#[test]
fn without_preload_sql_installs_and_shared_memory_functions_hint_to_preload() {
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
    for f in [
        "SELECT * FROM pwb.counters()",
        "SELECT * FROM pwb.scope_stats()",
        "SELECT * FROM pwb.query_profiles()",
        "SELECT * FROM pwb.recent_decisions(10)",
        "SELECT * FROM pwb.scope_names()",
        "SELECT pwb.reset_stats()",
        "SELECT pwb.reset_profiles()",
        "SELECT pwb.flush_profiles()",
    ] {
        let err = client.query(f, &[]).unwrap_err();
        assert_eq!(sqlstate(&err), Some("55000"), "{f}: {err}");
        let db = err.as_db_error().unwrap();
        assert!(
            db.hint().unwrap_or("").contains("shared_preload_libraries"),
            "{f}: {db:?}"
        );
    }
    // Policies are durable SQL objects and can still be managed.
    let id: i32 = client
        .query_one("SELECT pwb.create_policy('role', 'x', 1000, 2000)", &[])
        .unwrap()
        .get(0);
    assert!(id > 0);
    client
        .batch_execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
        .unwrap();
}

#[test]
fn reject_mode_refuses_with_53400_and_detail_then_admits_after_refill() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    // Burst 100 kB, rate 50 kB/s; the class default prediction (16 kB) fits.
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 50000, 100000, 'reject')",
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    // ~1 MB of WAL: admitted on a 16 kB prediction, the rest becomes debt.
    write_wal(&mut writer, 4000);
    let (avail, debt) = available(&mut admin, id);
    assert_eq!(avail, 0);
    assert!(debt > 100_000, "debt {debt}");
    let err = assert_refused(&mut writer, "INSERT INTO t (payload) VALUES ('y')", "53400");
    let db = err.as_db_error().unwrap();
    let detail = db.detail().unwrap_or("");
    assert!(detail.contains("Predicted WAL is"), "{detail}");
    assert!(detail.contains(&format!("Policy {id}")), "{detail}");
    assert!(db.hint().is_some());
    let (rejected, decisions): (i64, i64) = {
        let r = admin
            .query_one(
                "SELECT (SELECT rejected_statements FROM pwb.counters()),
                        (SELECT count(*) FROM pwb.recent_decisions(1000) WHERE decision_kind = 'rejected' AND policy_id = $1)",
                &[&id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(rejected >= 1 && decisions >= 1);
    // A statement larger than the burst can never fit, in queue mode too.
    admin
        .batch_execute(&format!("SELECT pwb.set_policy_mode({id}, 'queue')"))
        .unwrap();
    alter_system(&mut admin, "pwb.default_utility_wal_bytes = '1MB'");
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let err = writer
        .batch_execute("CREATE TABLE writer_owned (a int)")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("53400"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "rejected at once, not queued"
    );
}

#[test]
fn commit_records_after_the_last_statement_are_charged_to_its_policy() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    // Refill of 1 B/s is negligible for the few seconds the test runs.
    let burst: i64 = 10_000_000;
    let id = create_policy(
        &mut admin,
        &format!("SELECT pwb.create_policy('role', 'writer', 1, {burst}, 'reject')"),
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    let commits: i64 = 50;
    for _ in 0..commits {
        writer
            .execute("INSERT INTO t (payload) VALUES ('y')", &[])
            .unwrap();
    }
    let statements_wal: i64 = admin
        .query_one(
            "SELECT sum(actual_wal_bytes)::bigint FROM pwb.recent_decisions(1000) WHERE policy_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    let (avail, debt) = available(&mut admin, id);
    assert_eq!(debt, 0);
    // Each autocommit statement is followed by a commit record (at least a
    // 24-byte record header plus its body) that no statement measured.
    let tail = burst - avail - statements_wal;
    assert!(
        tail >= commits * 32 && tail <= commits * 200,
        "charged beyond the statements: {tail} bytes for {commits} commits"
    );
}

#[test]
fn queued_statement_waits_visibly_and_runs_when_budget_refills() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 400000, 400000, 'queue')",
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    let writer_pid: i32 = writer
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    // About 1.2 MB of WAL: the debt takes ~2-3 s to pay at 400 kB/s.
    write_wal(&mut writer, 5000);
    let (_, debt) = available(&mut admin, id);
    assert!(debt > 400_000, "debt {debt}");
    let started = Instant::now();
    let handle = thread::spawn(move || {
        writer
            .execute("INSERT INTO t (payload) VALUES ('queued')", &[])
            .unwrap();
        Instant::now()
    });
    let mut seen_wait = false;
    wait_for(
        Duration::from_secs(5),
        "the writer to wait for budget",
        || {
            let row = admin
            .query_one(
                "SELECT coalesce(wait_event_type, ''), coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1",
                &[&writer_pid],
            )
            .unwrap();
            let (t, e): (String, String) = (row.get(0), row.get(1));
            seen_wait = t == "Extension" && (e == "Extension" || e == "WalBudgetQueue");
            seen_wait
        },
    );
    let finished = handle.join().unwrap();
    let waited = finished - started;
    assert!(seen_wait);
    assert!(
        waited >= Duration::from_millis(500),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");
    let queued: i64 = admin
        .query_one(
            "SELECT count(*) FROM pwb.recent_decisions(100) WHERE decision_kind = 'queued' AND policy_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(queued >= 1);
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t WHERE payload = 'queued'", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

/// A writer thread's statement result and how long it took.
type QueuedWriter = thread::JoinHandle<(Result<u64, cluster_tests::PgError>, Duration)>;

/// Starts a statement that will queue for a long time (huge debt, slow rate)
/// and returns the writer's pid and the thread running it.
fn start_long_queue(cluster: &Cluster, admin: &mut Client, prelude: &str) -> (i32, QueuedWriter) {
    let mut writer = cluster.connect_as("writer", "postgres");
    if !prelude.is_empty() {
        writer.batch_execute(prelude).unwrap();
    }
    let pid: i32 = writer
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let handle = thread::spawn(move || {
        let start = Instant::now();
        let r = writer.execute("INSERT INTO t (payload) VALUES ('never')", &[]);
        (r, start.elapsed())
    });
    wait_for(Duration::from_secs(5), "the writer to queue", || {
        admin
            .query_one(
                "SELECT coalesce(wait_event_type, '') = 'Extension' FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false)
    });
    (pid, handle)
}

#[test]
fn cancel_terminate_and_statement_timeout_end_a_queued_wait_without_leaking_budget() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    // 1 kB/s with 100 kB burst: after ~1 MB of WAL the debt lasts ~15 minutes.
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1000, 100000, 'queue')",
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    write_wal(&mut writer, 4000);
    drop(writer);
    let (_, debt_before) = available(&mut admin, id);
    assert!(debt_before > 500_000);

    // pg_cancel_backend.
    let (pid, handle) = start_long_queue(&cluster, &mut admin, "");
    admin
        .execute("SELECT pg_cancel_backend($1)", &[&pid])
        .unwrap();
    let (result, elapsed) = handle.join().unwrap();
    let err = result.unwrap_err();
    assert_eq!(sqlstate(&err), Some("57014"), "{err}");
    assert!(elapsed < Duration::from_secs(10));

    // statement_timeout.
    let (_, handle) = start_long_queue(&cluster, &mut admin, "SET statement_timeout = '400ms'");
    let (result, elapsed) = handle.join().unwrap();
    let err = result.unwrap_err();
    assert_eq!(sqlstate(&err), Some("57014"), "{err}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // pg_terminate_backend.
    let (pid, handle) = start_long_queue(&cluster, &mut admin, "");
    let t0 = Instant::now();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let (result, _) = handle.join().unwrap();
    assert!(result.is_err());
    assert!(t0.elapsed() < Duration::from_secs(5));

    // Nothing was charged for the three statements that never ran: the
    // debt only went down (refill), never up.
    let (_, debt_after) = available(&mut admin, id);
    assert!(debt_after <= debt_before, "{debt_after} > {debt_before}");
    let never: i64 = admin
        .query_one("SELECT count(*) FROM t WHERE payload = 'never'", &[])
        .unwrap()
        .get(0);
    assert_eq!(never, 0);
}

#[test]
fn aborted_statements_are_charged_only_for_the_wal_they_wrote() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    alter_system(&mut admin, "pwb.default_write_wal_bytes = '1MB'");
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1, 4000000, 'reject')",
    );
    admin
        .batch_execute(
            "CREATE TABLE owned (id int); ALTER TABLE owned OWNER TO writer;
             GRANT CREATE ON SCHEMA public TO writer;
             INSERT INTO owned SELECT generate_series(1, 1000);",
        )
        .unwrap();
    let mut writer = cluster.connect_as("writer", "postgres");
    let (before, _) = available(&mut admin, id);
    // Governed utility statements (predicted at the 1 MB utility default)
    // that fail inside PostgreSQL's utility code, at the top level and in a
    // savepoint: the error reaches the client with its own SQLSTATE and the
    // statement's reservation is refunded.
    let err = writer
        .batch_execute("CREATE INDEX ON owned ((1 / (id - 500)))")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("22012"), "{err}");
    writer
        .batch_execute("BEGIN; SAVEPOINT u; SELECT 1;")
        .unwrap();
    let err = writer
        .batch_execute("ALTER TABLE owned ADD CONSTRAINT c CHECK (id < 10)")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("23514"), "{err}");
    writer
        .batch_execute("ROLLBACK TO SAVEPOINT u; COMMIT;")
        .unwrap();
    // Errors after writing a few rows; in a fresh statement each time so the
    // 1 MB class default is the prediction.
    for i in 0..3 {
        let err = writer
            .execute(
                &format!("INSERT INTO t (payload) SELECT (1 / (g - 5))::text || '{i}' FROM generate_series(1, 8) g"),
                &[],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&err), Some("22012"));
    }
    // A transaction rolled back after a successful statement.
    writer
        .batch_execute("BEGIN; INSERT INTO t (payload) VALUES ('rolled back'); ROLLBACK;")
        .unwrap();
    // A savepoint rolled back around a failing statement.
    writer
        .batch_execute("BEGIN; SAVEPOINT s; SELECT 1;")
        .unwrap();
    let _ = writer.batch_execute("INSERT INTO t (id, payload) VALUES (1, 'a'), (1, 'dup')");
    writer
        .batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT;")
        .unwrap();
    let (after, debt) = available(&mut admin, id);
    // Seven statements predicted at 1 MB each; a leak would show megabytes.
    assert!(before - after < 200_000, "before {before}, after {after}");
    assert_eq!(debt, 0);
    let aborted: i64 = admin
        .query_one("SELECT aborted_after_charge_count FROM pwb.counters()", &[])
        .unwrap()
        .get(0);
    assert!(aborted >= 4, "aborted_after_charge_count {aborted}");
    // The session goes on: a utility statement and a write both run.
    writer
        .batch_execute("CREATE INDEX ON owned (id); INSERT INTO t (payload) VALUES ('after')")
        .unwrap();
}

#[test]
fn policies_survive_restart_and_crash_and_profiles_survive_clean_restart() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1000000, 2000000, 'shadow', 150)",
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    for _ in 0..5 {
        write_wal(&mut writer, 10);
    }
    drop(writer);
    let learned: i64 = admin
        .query_one(
            "SELECT count(*) FROM pwb.query_profiles() WHERE calls >= 5",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(learned >= 1);
    drop(admin);

    cluster.restart();
    let mut admin = cluster.connect();
    let row = admin
        .query_one(
            "SELECT mode, priority FROM pwb.policies() WHERE policy_id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i32>(1)),
        ("shadow".into(), 150)
    );
    let accepted: i64 = admin
        .query_one("SELECT accepted_statements FROM pwb.counters()", &[])
        .unwrap()
        .get(0);
    assert_eq!(accepted, 0, "statistics reset on restart");
    wait_for(
        Duration::from_secs(20),
        "profiles to be loaded back",
        || {
            admin
                .query_one(
                    "SELECT count(*) FROM pwb.query_profiles() WHERE calls >= 5",
                    &[],
                )
                .unwrap()
                .get::<_, i64>(0)
                >= 1
        },
    );
    // The policy governs again after the restart.
    let mut writer = cluster.connect_as("writer", "postgres");
    write_wal(&mut writer, 10);
    drop(writer);
    let governed: i64 = admin
        .query_one(
            "SELECT count(*) FROM pwb.recent_decisions(100) WHERE policy_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(governed >= 1);
    drop(admin);

    cluster.crash_restart();
    let mut admin = cluster.connect();
    let count: i64 = admin
        .query_one(
            "SELECT count(*) FROM pwb.policy WHERE policy_id = $1 AND mode = 'shadow'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
    let mut writer = cluster.connect_as("writer", "postgres");
    write_wal(&mut writer, 10);
    let governed: i64 = admin
        .query_one(
            "SELECT count(*) FROM pwb.recent_decisions(100) WHERE policy_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(governed >= 1);
}

#[test]
fn bad_input_matrix_errors_and_changes_nothing() {
    let (_cluster, mut admin) = budget_cluster_with_admin();
    create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1000, 2000)",
    );
    let snapshot = |c: &mut Client| -> String {
        c.query_one(
            "SELECT coalesce(string_agg(p::text, ';' ORDER BY policy_id), '') FROM pwb.policy p",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = snapshot(&mut admin);
    let long = "x".repeat(300);
    // (A NULL or blank scope_value is not bad input: it makes a template
    // policy; see templates.rs.)
    let cases: Vec<(String, &str)> = vec![
        ("SELECT pwb.create_policy(NULL, 'a', 1, 1)".into(), "22023"),
        ("SELECT pwb.create_policy('role', 'a', NULL, 1)".into(), "22023"),
        ("SELECT pwb.create_policy('role', 'a', 1, NULL)".into(), "22023"),
        ("SELECT pwb.create_policy('role', 'a', 1, 1, NULL)".into(), "22023"),
        ("SELECT pwb.create_policy('role', 'a', 1, 1, 'observe', NULL)".into(), "22023"),
        ("SELECT pwb.create_policy('role', 'a', -1, 1)".into(), "22023"),
        ("SELECT pwb.create_policy('role', 'a', 0, 0)".into(), "22023"),
        ("SELECT pwb.create_policy('role', 'a', 10, 9)".into(), "22023"),
        ("SELECT pwb.create_policy('role', 'a', 9223372036854775807, 1)".into(), "22023"),
        ("SELECT pwb.create_policy('user', 'a', 1, 1)".into(), "22023"),
        ("SELECT pwb.create_policy('role', 'a', 1, 1, 'block')".into(), "22023"),
        (format!("SELECT pwb.create_policy('role', '{long}', 1, 1)"), "22023"),
        ("SELECT pwb.update_policy(NULL, 1, 1)".into(), "22023"),
        ("SELECT pwb.update_policy(0, 1, 1)".into(), "22023"),
        ("SELECT pwb.update_policy(-5, 1, 1)".into(), "22023"),
        ("SELECT pwb.update_policy(1, 0, 1)".into(), "22023"),
        ("SELECT pwb.update_policy(1, 5, 4)".into(), "22023"),
        ("SELECT pwb.update_policy(424242, 1, 1)".into(), "42704"),
        ("SELECT pwb.set_policy_mode(1, 'fast')".into(), "22023"),
        ("SELECT pwb.set_policy_mode(1, NULL)".into(), "22023"),
        ("SELECT pwb.set_policy_mode(424242, 'queue')".into(), "42704"),
        ("SELECT pwb.disable_policy(NULL)".into(), "22023"),
        ("SELECT pwb.disable_policy(424242)".into(), "42704"),
        ("SELECT pwb.set_tenant(NULL)".into(), "22023"),
        ("SELECT pwb.set_tenant('  ')".into(), "22023"),
        (format!("SELECT pwb.set_tenant('{long}')"), "22023"),
        ("SELECT * FROM pwb.recent_decisions(-1)".into(), "22023"),
        ("SELECT * FROM pwb.recent_decisions(NULL)".into(), "22023"),
        ("INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes) VALUES ('role', 'a', 10, 5)".into(), "23514"),
        ("INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes, mode) VALUES ('role', 'a', 10, 50, 'nope')".into(), "23514"),
    ];
    for (sql, code) in &cases {
        let err = admin.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&err), Some(*code), "{sql}: {err}");
        if *code == "22023" {
            let db = err.as_db_error().unwrap();
            assert!(
                db.detail().is_some() && db.hint().is_some(),
                "{sql}: {db:?}"
            );
        }
    }
    assert_eq!(snapshot(&mut admin), before);
    let tenant: Option<String> = admin
        .query_one("SELECT pwb.current_tenant()", &[])
        .unwrap()
        .get(0);
    assert_eq!(tenant, None);
}

#[test]
fn internal_failure_fails_open_or_errors_per_guc() {
    let (cluster, mut admin) =
        set_up_with_admin(budget_builder().setting("pwb.budget_bucket_capacity", "1"));
    // Two policies, one bucket: the higher-priority one has no bucket.
    // (create_policy refuses a policy the table cannot hold; direct DML
    // cannot be refused, so the second one is inserted directly.)
    create_policy(
        &mut admin,
        "SELECT pwb.create_policy('database', 'postgres', 1000, 2000000, 'observe', 1)",
    );
    insert_policy(&mut admin, "'role', 'writer', 1000, 2000000, 'reject', 500");
    let mut writer = cluster.connect_as("writer", "postgres");
    write_wal(&mut writer, 1);
    assert!(fail_open_count(&mut admin) >= 1);
    alter_system(&mut admin, "pwb.fail_open = off");
    let mut writer = cluster.connect_as("writer", "postgres");
    assert_refused(&mut writer, "INSERT INTO t (payload) VALUES ('x')", "53000");

    // Deleting the policy that holds the only bucket lets the next reload
    // give it to the policy that had none: the writer is governed again.
    admin
        .batch_execute("DELETE FROM pwb.policy WHERE scope_kind = 'database'")
        .unwrap();
    write_wal(&mut writer, 1);
    let listed: Vec<String> = admin
        .query(
            "SELECT p.scope_value FROM pwb.scope_stats() s JOIN pwb.policy p USING (policy_id)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(listed, ["writer"]);
}

#[test]
fn dropping_a_database_frees_its_budget_buckets() {
    let cluster = Cluster::builder()
        .shared_preload("pg_wal_budget")
        .setting("pwb.budget_bucket_capacity", "1")
        .start();
    let mut admin = cluster.connect();
    setup(&mut admin);
    admin.batch_execute("CREATE DATABASE tenant_db").unwrap();
    {
        let mut tenant = cluster.connect_as("postgres", "tenant_db");
        tenant
            .batch_execute("CREATE EXTENSION pg_wal_budget")
            .unwrap();
        let id = create_policy(
            &mut tenant,
            "SELECT pwb.create_policy('database', 'tenant_db', 1000, 2000000, 'observe')",
        );
        assert_eq!(listed_policies(&mut tenant), [id]);
    }
    // The only bucket belongs to tenant_db.
    let id = insert_policy(&mut admin, "'role', 'writer', 1000, 2000000, 'queue', 100");
    assert_eq!(listed_policies(&mut admin), Vec::<i32>::new());
    wait_for(
        Duration::from_secs(10),
        "tenant_db's session to end",
        || admin.batch_execute("DROP DATABASE tenant_db").is_ok(),
    );
    assert_eq!(listed_policies(&mut admin), [id]);
}

/// Inserts a policy row directly (as DML can, past create_policy's checks):
/// `values` are scope_kind, scope_value, rate, burst, mode, priority.
fn insert_policy(client: &mut Client, values: &str) -> i32 {
    client
        .query_one(
            &format!(
                "INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, \
                 wal_burst_bytes, mode, priority) VALUES ({values}) RETURNING policy_id"
            ),
            &[],
        )
        .unwrap()
        .get(0)
}

fn listed_policies(client: &mut Client) -> Vec<i32> {
    client
        .query("SELECT policy_id FROM pwb.scope_stats() ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_session_that_cannot_see_a_policy_leaves_its_bucket_alone() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    let mut other = cluster.connect();
    // An uncommitted policy governs its own session at once (prediction
    // 16 kB, burst 1000 bytes).
    admin.batch_execute("BEGIN").unwrap();
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'postgres', 1000, 1000, 'reject')",
    );
    assert_eq!(listed_policies(&mut admin), [id]);
    // Another session reloads (the generation moved) without seeing it...
    assert_eq!(listed_policies(&mut other), Vec::<i32>::new());
    // ...and the policy keeps its bucket in the session that created it.
    assert_eq!(listed_policies(&mut admin), [id]);
    assert_refused(&mut admin, "INSERT INTO t (payload) VALUES ('x')", "53400");
    admin.batch_execute("ROLLBACK").unwrap();
    assert_eq!(listed_policies(&mut admin), Vec::<i32>::new());
    assert_eq!(fail_open_count(&mut admin), 0);

    // A repeatable-read transaction whose snapshot predates a policy is
    // governed by it all the same: policies are read with a fresh snapshot.
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t")
        .unwrap();
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1000, 1000, 'reject')",
    );
    assert_refused(&mut writer, "INSERT INTO t (payload) VALUES ('x')", "53400");
    writer.batch_execute("ROLLBACK").unwrap();

    // A deleted policy stops governing and is no longer listed.
    admin
        .batch_execute(&format!("DELETE FROM pwb.policy WHERE policy_id = {id}"))
        .unwrap();
    assert_eq!(listed_policies(&mut admin), Vec::<i32>::new());
    write_wal(&mut writer, 1);
}

#[test]
fn policy_changes_reach_other_sessions_and_emergency_disable_works() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    let mut writer = cluster.connect_as("writer", "postgres");
    write_wal(&mut writer, 1);
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1000, 1000, 'reject')",
    );
    // Prediction (learned or 16 kB default) exceeds the 1000-byte burst.
    assert_refused(&mut writer, "INSERT INTO t (payload) VALUES ('x')", "53400");
    admin
        .batch_execute(&format!("SELECT pwb.set_policy_mode({id}, 'observe')"))
        .unwrap();
    writer
        .execute("INSERT INTO t (payload) VALUES ('x')", &[])
        .unwrap();
    admin
        .batch_execute(&format!("SELECT pwb.set_policy_mode({id}, 'reject')"))
        .unwrap();
    // A statement without a learned profile is predicted at the 16 kB
    // class default, beyond the burst.
    assert_refused(&mut writer, "INSERT INTO t (payload) SELECT 'z'", "53400");
    // The documented emergency switch, by a superuser governed by a policy
    // that would reject everything.
    create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'postgres', 1, 1, 'reject')",
    );
    alter_system(&mut admin, "pwb.enabled = off");
    writer
        .execute("INSERT INTO t (payload) VALUES ('x')", &[])
        .unwrap();
    admin
        .execute("INSERT INTO t (payload) VALUES ('x')", &[])
        .unwrap();
}

fn policy_generation(client: &mut Client) -> i64 {
    client
        .query_one("SELECT policy_generation FROM pwb.counters()", &[])
        .unwrap()
        .get(0)
}

/// A policy change makes the other sessions reload once, when it commits
/// (they could not see it before); the changing session sees it at once.
#[test]
fn other_sessions_reload_a_policy_change_when_it_commits() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    let mut writer = cluster.connect_as("writer", "postgres");
    let mut monitor = cluster.connect();
    write_wal(&mut writer, 1);
    let before = policy_generation(&mut monitor);
    admin
        .batch_execute(
            "BEGIN; SELECT pwb.create_policy('role', 'writer', 1000, 1000, 'reject'); SAVEPOINT s",
        )
        .unwrap();
    assert_eq!(
        policy_generation(&mut monitor),
        before,
        "nobody is told before the commit"
    );
    // Its own transaction is governed by it at once.
    let err = admin
        .batch_execute("SET LOCAL ROLE writer; INSERT INTO t (payload) VALUES ('x')")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("53400"), "{err}");
    admin.batch_execute("ROLLBACK TO s").unwrap();
    // Others cannot see it yet.
    writer
        .execute("INSERT INTO t (payload) VALUES ('x')", &[])
        .unwrap();
    admin.batch_execute("COMMIT").unwrap();
    assert!(policy_generation(&mut monitor) > before);
    // A statement never measured is predicted at the 16 kB class default,
    // beyond the burst (the one above is learned now).
    assert_refused(&mut writer, "INSERT INTO t (payload) SELECT 'z'", "53400");
}

/// A policy change rolled back to a savepoint stops governing the session
/// that made it at once, before its transaction ends.
#[test]
fn a_policy_change_rolled_back_to_a_savepoint_stops_at_once() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    let mut writer = cluster.connect_as("writer", "postgres");
    write_wal(&mut writer, 1);
    drop(writer);
    admin
        .batch_execute(
            "BEGIN; SAVEPOINT s; SELECT pwb.create_policy('role', 'writer', 1000, 1000, 'reject')",
        )
        .unwrap();
    let err = admin
        .batch_execute("SAVEPOINT t; SET LOCAL ROLE writer; INSERT INTO t (payload) VALUES ('x')")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("53400"), "{err}");
    admin
        .batch_execute(
            "ROLLBACK TO s; SET LOCAL ROLE writer; INSERT INTO t (payload) VALUES ('x'); COMMIT",
        )
        .unwrap();
}

/// A session that must reload its policies while another transaction holds
/// a lock on pwb.policy that conflicts with reading it does not wait: it
/// keeps the policies it has and reloads at a later statement.
#[test]
fn a_policy_reload_never_waits_for_a_lock_on_the_policy_table() {
    let (cluster, mut admin) =
        set_up_with_admin(budget_builder().setting("max_prepared_transactions", "2"));
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1000, 1000, 'reject')",
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .batch_execute("SET statement_timeout = '5s'")
        .unwrap();
    assert_refused(&mut writer, "INSERT INTO t (payload) VALUES ('x')", "53400");
    let mut locker = cluster.connect();
    locker
        .batch_execute("BEGIN; LOCK TABLE pwb.policy IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    // Any COMMIT/ROLLBACK PREPARED tells every session to reload.
    admin
        .batch_execute("BEGIN; SELECT 1; PREPARE TRANSACTION 'p'")
        .unwrap();
    admin.batch_execute("ROLLBACK PREPARED 'p'").unwrap();
    // Refused at once by the policy it had (not cancelled by statement_timeout).
    assert_refused(&mut writer, "INSERT INTO t (payload) VALUES ('x')", "53400");
    locker
        .batch_execute(&format!(
            "UPDATE pwb.policy SET mode = 'observe' WHERE policy_id = {id}; COMMIT"
        ))
        .unwrap();
    writer
        .execute("INSERT INTO t (payload) VALUES ('x')", &[])
        .unwrap();
}

/// Everything the extension owns, described so two databases can be compared:
/// member objects, function definitions and ACLs, table columns, constraints
/// and ACLs, the view definition.
const CATALOG_SNAPSHOT: &str = "
SELECT string_agg(item, E'\\n' ORDER BY item) FROM (
  SELECT 'member ' || pg_describe_object(classid, objid, objsubid) AS item
    FROM pg_depend
   WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
     AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_wal_budget')
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, 'default')
    FROM pg_proc p WHERE p.pronamespace = 'pwb'::regnamespace
  UNION ALL
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
   WHERE c.relnamespace = 'pwb'::regnamespace
  UNION ALL
  SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' acl ' || coalesce(c.relacl::text, 'default')
    FROM pg_class c WHERE c.relnamespace = 'pwb'::regnamespace
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'pwb'::regnamespace
  UNION ALL
  SELECT 'trigger ' || tgname || ' ' || pg_get_triggerdef(oid)
    FROM pg_trigger WHERE tgrelid = 'pwb.policy'::regclass
  UNION ALL
  SELECT 'view ' || pg_get_viewdef('pwb.active_policy_precedence'::regclass)
  UNION ALL
  SELECT 'version ' || extversion FROM pg_extension WHERE extname = 'pg_wal_budget'
) s";

#[test]
fn update_from_previous_version_matches_a_fresh_install() {
    let cluster = budget_cluster();
    let mut admin = cluster.connect();
    admin.batch_execute("CREATE DATABASE upgraded").unwrap();
    admin.batch_execute("CREATE DATABASE fresh").unwrap();
    let mut upgraded = cluster.connect_as("postgres", "upgraded");
    upgraded
        .batch_execute("CREATE EXTENSION pg_wal_budget VERSION '0.2.1'")
        .unwrap();
    let version: String = upgraded
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_wal_budget'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, "0.2.1");
    let has_new: bool = upgraded
        .query_one(
            "SELECT to_regprocedure('pwb.current_tenant()') IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!has_new, "0.2.1 has no current_tenant()");
    // A 0.2.1 policy with untrimmed scope value and a queue policy survive the update.
    upgraded
        .batch_execute(
            "INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes, mode)
             VALUES ('role', ' padded ', 10, 20, 'queue')",
        )
        .unwrap();
    upgraded
        .batch_execute("ALTER EXTENSION pg_wal_budget UPDATE")
        .unwrap();
    let value: String = upgraded
        .query_one("SELECT scope_value || '/' || mode FROM pwb.policy", &[])
        .unwrap()
        .get(0);
    assert_eq!(value, "padded/queue");
    upgraded.batch_execute("DELETE FROM pwb.policy").unwrap();
    let mut fresh = cluster.connect_as("postgres", "fresh");
    fresh
        .batch_execute("CREATE EXTENSION pg_wal_budget")
        .unwrap();
    let a: String = upgraded.query_one(CATALOG_SNAPSHOT, &[]).unwrap().get(0);
    let b: String = fresh.query_one(CATALOG_SNAPSHOT, &[]).unwrap().get(0);
    assert!(a.contains("function CREATE OR REPLACE FUNCTION pwb.current_tenant()"));
    assert_eq!(a, b);
}

#[test]
fn switching_a_queue_policy_to_observe_releases_waiting_statements() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1000, 100000, 'queue')",
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    write_wal(&mut writer, 4000);
    drop(writer);
    // The debt would take ~15 minutes to repay; the timeout only bounds a
    // failing run.
    let (_, handle) = start_long_queue(&cluster, &mut admin, "SET statement_timeout = '20s'");
    admin
        .batch_execute(&format!("SELECT pwb.set_policy_mode({id}, 'observe')"))
        .unwrap();
    let (result, elapsed) = handle.join().unwrap();
    assert_eq!(result.unwrap(), 1);
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn observe_only_records_and_shadow_drains_only_its_copy_of_the_bucket() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    // Rate 1 B/s: nothing refills during the test; burst 100 kB.
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1, 100000, 'observe')",
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    let decisions = |admin: &mut Client| -> Vec<(String, String)> {
        admin
            .query(
                "SELECT decision_kind, reason_code FROM pwb.recent_decisions(100)
                  WHERE policy_id = $1 ORDER BY timestamp_epoch_ms",
                &[&id],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };

    // Observe: ~1 MB of WAL, twice, and the bucket is still full.
    write_wal(&mut writer, 4000);
    write_wal(&mut writer, 4000);
    assert_eq!(available(&mut admin, id), (100_000, 0));
    let observed = decisions(&mut admin);
    assert_eq!(observed.len(), 2);
    assert!(
        observed
            .iter()
            .all(|(kind, reason)| kind == "allowed" && reason == "observe_mode")
    );

    // Shadow: the first write fits its copy of the bucket (a fresh statement
    // text, so the 16 kB class default is predicted) and drains it; the next
    // one would be rejected. Both run, and the enforcement bucket is untouched.
    admin
        .batch_execute(&format!("SELECT pwb.set_policy_mode({id}, 'shadow')"))
        .unwrap();
    writer
        .batch_execute(
            "INSERT INTO t (payload) SELECT repeat('s', 200) FROM generate_series(1, 4000)",
        )
        .unwrap();
    writer
        .batch_execute("INSERT INTO t (payload) VALUES ('after the drain')")
        .unwrap();
    let shadowed = &decisions(&mut admin)[2..];
    assert_eq!(shadowed.len(), 2, "{shadowed:?}");
    assert_eq!(shadowed[0], ("allowed".into(), "shadow_mode".into()));
    assert_eq!(shadowed[1].0, "would_reject", "{shadowed:?}");
    assert_eq!(available(&mut admin, id), (100_000, 0));
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 12_001, "shadow never stops a statement");

    // Switching to reject starts from the full, never-charged bucket.
    admin
        .batch_execute(&format!("SELECT pwb.set_policy_mode({id}, 'reject')"))
        .unwrap();
    writer
        .batch_execute("INSERT INTO t (payload) VALUES ('enforced')")
        .unwrap();
}

/// Statements that charge nothing are written to shared memory when their
/// transaction ends (every 32 in a long one), so the session that ran them
/// sees them at once and other sessions at the latest when it ends, committed
/// or not.
#[test]
fn observed_statements_reach_other_sessions_when_their_transaction_ends() {
    let (cluster, mut admin) = budget_cluster_with_admin();
    admin.batch_execute("GRANT pwb_monitor TO writer").unwrap();
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1000000, 4000000, 'observe')",
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    let seen = |client: &mut Client| -> (i64, i64) {
        let row = client
            .query_one(
                "SELECT count(*), coalesce(sum(actual_wal_bytes), 0)::bigint
                   FROM pwb.recent_decisions(1000) WHERE policy_id = $1",
                &[&id],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let accepted = |client: &mut Client| -> i64 {
        client
            .query_one("SELECT accepted_statements FROM pwb.counters()", &[])
            .unwrap()
            .get(0)
    };
    let accepted_before = accepted(&mut admin);

    writer.batch_execute("BEGIN").unwrap();
    write_wal(&mut writer, 10);
    let (own, own_wal) = seen(&mut writer);
    assert_eq!(
        own, 1,
        "the session sees its own statement inside its transaction"
    );
    assert!(own_wal > 0, "measured: {own_wal}");
    assert_eq!(seen(&mut admin).0, 1, "reading wrote it for everyone");

    for _ in 0..40 {
        write_wal(&mut writer, 1);
    }
    let (midway, _) = seen(&mut admin);
    assert!(
        (32..41).contains(&midway),
        "a long transaction publishes as it goes, not all at its end: {midway}"
    );

    writer.batch_execute("ROLLBACK").unwrap();
    let (all, wal) = seen(&mut admin);
    assert_eq!(
        all, 41,
        "an aborted transaction's statements are recorded too"
    );
    assert!(wal > own_wal);
    assert_eq!(accepted(&mut admin) - accepted_before, 41);
    let calls: i64 = admin
        .query_one(
            "SELECT max(calls) FROM pwb.query_profiles() WHERE NOT is_global",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(calls, 41, "every statement that ran to its end was learned");

    // Autocommit statements are visible as soon as they return.
    write_wal(&mut writer, 1);
    assert_eq!(seen(&mut admin).0, 42);
}

/// A prepared transaction's statements are written when it is prepared: its
/// session is done with it, and another session may commit it much later.
#[test]
fn a_prepared_transaction_writes_its_statements_at_prepare() {
    let (cluster, mut admin) =
        set_up_with_admin(budget_builder().setting("max_prepared_transactions", "2"));
    let id = create_policy(
        &mut admin,
        "SELECT pwb.create_policy('role', 'writer', 1000000, 4000000, 'observe')",
    );
    let mut writer = cluster.connect_as("writer", "postgres");
    let observed = |admin: &mut Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pwb.recent_decisions(100) WHERE policy_id = $1",
                &[&id],
            )
            .unwrap()
            .get(0)
    };

    writer
        .batch_execute("BEGIN; INSERT INTO t (payload) VALUES ('prepared')")
        .unwrap();
    write_wal(&mut writer, 5);
    writer
        .batch_execute("PREPARE TRANSACTION 'pwb_p1'")
        .unwrap();
    assert_eq!(observed(&mut admin), 2);
    admin.batch_execute("COMMIT PREPARED 'pwb_p1'").unwrap();
    assert_eq!(observed(&mut admin), 2);
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 6);
    // The writer's session goes on normally.
    write_wal(&mut writer, 1);
    assert_eq!(observed(&mut admin), 3);
}
