//! pg_wal_budget's pace mode and fair queue on a real server: a bulk
//! statement held to its rate while it runs, waits that end at once on
//! cancel, timeout and termination and leave nothing behind, a crash while
//! paced, arrival order in the queue, COPY charged as debt, subtransactions,
//! prepared statements and PL/pgSQL loops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_tests::{Client, Cluster, PWB_WRITER_SETUP, pwb_server, sqlstate, wait_for};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const MIB: i64 = 1_048_576;

/// The writer set-up, and `writer` may read pg_wal_budget's telemetry.
fn server() -> (Cluster, Client) {
    pwb_server(
        &[],
        &format!("{PWB_WRITER_SETUP} GRANT pwb_monitor TO writer;"),
    )
}

fn policy(admin: &mut Client, rate: i64, burst: i64, mode: &str) -> i32 {
    admin
        .query_one(
            "SELECT pwb.create_policy('role', 'writer', $1, $2, $3)",
            &[&rate, &burst, &mode],
        )
        .unwrap()
        .get(0)
}

/// The last decision: kind and measured WAL.
fn last_decision(client: &mut Client) -> (String, Option<i64>) {
    let row = client
        .query_one(
            "SELECT decision_kind, actual_wal_bytes FROM pwb.recent_decisions(1)",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn waiting(client: &mut Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM pwb.waits()", &[])
        .unwrap()
        .get(0)
}

/// About `mb` MB of WAL in one INSERT ... SELECT.
fn bulk_insert(mb: i64) -> String {
    format!(
        "INSERT INTO t (payload) SELECT repeat('x', 200) FROM generate_series(1, {})",
        mb * 3300
    )
}

#[test]
fn pace_holds_one_bulk_insert_to_the_rate() {
    let (cluster, mut admin) = server();
    let id = policy(&mut admin, MIB, MIB, "pace");
    let mut writer = cluster.connect_as("writer", "postgres");
    let started = Instant::now();
    writer.batch_execute(&bulk_insert(6)).unwrap();
    let took = started.elapsed().as_secs_f64();
    let (kind, wal) = last_decision(&mut admin);
    assert_eq!(kind, "paced");
    let wal = wal.unwrap() as f64;
    // Without pacing this takes well under a second.
    let ideal = (wal - MIB as f64) / MIB as f64;
    eprintln!("paced insert: {wal} bytes of WAL in {took:.2} s (ideal {ideal:.2} s)");
    assert!(ideal > 3.0, "the statement wrote {wal} bytes");
    assert!(took >= 0.8 * ideal, "{took:.2} s for an ideal {ideal:.2} s");
    assert!(took <= 3.0 * ideal, "{took:.2} s for an ideal {ideal:.2} s");
    let row = admin
        .query_one(
            "SELECT mode, paced_statements, pace_wait_ms FROM pwb.scope_stats() WHERE policy_id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pace");
    assert_eq!(row.get::<_, i64>(1), 1);
    assert!(row.get::<_, i64>(2) as f64 >= 0.8 * ideal * 1000.0);
    assert_eq!(waiting(&mut admin), 0);
}

/// Starts a paced bulk insert in a thread; returns its pid and handle once it
/// waits for budget.
fn start_paced(
    cluster: &Cluster,
    admin: &mut Client,
    setup: &str,
) -> (i32, thread::JoinHandle<Result<(), cluster_tests::PgError>>) {
    let mut writer = cluster.connect_as("writer", "postgres");
    writer.batch_execute(setup).unwrap();
    let pid: i32 = writer
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let handle = thread::spawn(move || writer.batch_execute(&bulk_insert(20)));
    wait_for(WAIT, "the insert to wait for budget", || {
        admin
            .query_one(
                "SELECT count(*) > 0 FROM pwb.waits() WHERE pid = $1 AND wait_kind = 'pace'",
                &[&pid],
            )
            .unwrap()
            .get(0)
    });
    (pid, handle)
}

#[test]
fn cancel_timeout_and_terminate_end_a_paced_statement_at_once_and_leave_nothing() {
    let (cluster, mut admin) = server();
    let id = policy(&mut admin, 200_000, 200_000, "pace");

    let (pid, handle) = start_paced(&cluster, &mut admin, "SELECT 1");
    let asked = Instant::now();
    admin
        .batch_execute(&format!("SELECT pg_cancel_backend({pid})"))
        .unwrap();
    let err = handle.join().unwrap().expect_err("cancelled");
    assert_eq!(sqlstate(&err), Some("57014"));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(waiting(&mut admin), 0);

    let (_, handle) = start_paced(&cluster, &mut admin, "SET statement_timeout = '1500ms'");
    let err = handle.join().unwrap().expect_err("timed out");
    assert_eq!(sqlstate(&err), Some("57014"));
    assert_eq!(waiting(&mut admin), 0);

    let (pid, handle) = start_paced(&cluster, &mut admin, "SELECT 1");
    admin
        .batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    assert!(handle.join().unwrap().is_err(), "terminated");
    wait_for(WAIT, "the terminated backend to leave the line", || {
        waiting(&mut admin) == 0
    });

    // What the aborted statements wrote was charged, and nothing more: the
    // bucket is in debt by about their WAL, which the next statement repays
    // at the rate, then it runs.
    let debt: i64 = admin
        .query_one(
            "SELECT debt_bytes FROM pwb.scope_stats() WHERE policy_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(debt < 20 * MIB, "debt {debt}");
    admin
        .batch_execute(&format!(
            "SELECT pwb.update_policy({id}, 10000000, 10000000)"
        ))
        .unwrap();
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .batch_execute("INSERT INTO t (payload) VALUES ('after')")
        .unwrap();
    assert_eq!(last_decision(&mut admin).0, "paced");
}

#[test]
fn a_backend_killed_while_paced_leaves_a_server_that_paces_again() {
    let (cluster, mut admin) = server();
    policy(&mut admin, 200_000, 200_000, "pace");
    let (pid, handle) = start_paced(&cluster, &mut admin, "SELECT 1");
    drop(admin);
    cluster.kill_backend(pid);
    assert!(handle.join().unwrap().is_err());
    let mut admin = cluster.connect();
    assert_eq!(waiting(&mut admin), 0);
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .batch_execute("INSERT INTO t (payload) VALUES ('after the crash')")
        .unwrap();
    assert_eq!(last_decision(&mut admin).0, "paced");
}

/// Under a queue policy, statements are admitted in arrival order: a large
/// statement that arrives while small ones wait is not overtaken by those
/// that arrive after it.
#[test]
fn the_queue_admits_in_arrival_order() {
    let (cluster, mut admin) = server();
    // Learn the large statement's size first (observe), then enforce.
    let id = policy(&mut admin, 1_000_000_000, 1_000_000_000, "observe");
    let big =
        "INSERT INTO t (payload) SELECT repeat('y', 200) FROM generate_series(1, 3000) /* big */";
    {
        let mut writer = cluster.connect_as("writer", "postgres");
        writer.batch_execute(big).unwrap();
        writer.batch_execute(big).unwrap();
    }
    admin
        .batch_execute(&format!(
            "SELECT pwb.update_policy({id}, 200000, 1500000); SELECT pwb.set_policy_mode({id}, 'queue')"
        ))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for n in 0..4 {
        let mut writer = cluster.connect_as("writer", "postgres");
        let stop = stop.clone();
        loops.push(thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let sql = format!(
                    "INSERT INTO t (payload) VALUES ((SELECT string_agg(md5(g::text), '') \
                     FROM generate_series(1, 600) g)) /* {n}-{i} */"
                );
                if writer.batch_execute(&sql).is_err() {
                    break;
                }
            }
        }));
    }
    wait_for(WAIT, "small statements to queue", || {
        waiting(&mut admin) >= 2
    });
    let mut writer = cluster.connect_as("writer", "postgres");
    writer.batch_execute(big).unwrap();
    // Let statements that arrived after it be admitted too.
    thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }
    // Decisions oldest first, with their text hashes: each waiting statement
    // has a `queued` row when it arrived and an admission row later.
    let decisions: Vec<(String, i64)> = admin
        .query(
            "SELECT decision_kind, query_hash FROM pwb.recent_decisions(100000) WHERE policy_id = $1",
            &[&id],
        )
        .unwrap()
        .iter()
        .rev()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let big_hash: i64 = admin
        .query_one(
            "SELECT query_hash FROM pwb.recent_decisions(100000)
              WHERE policy_id = $1 AND predicted_wal_bytes > 500000 AND decision_kind = 'queued'
              ORDER BY timestamp_epoch_ms DESC LIMIT 1",
            &[&id],
        )
        .unwrap()
        .get(0);
    let arrived = |hash: i64| {
        decisions
            .iter()
            .position(|(k, h)| k == "queued" && *h == hash)
    };
    let admitted = |hash: i64| {
        decisions
            .iter()
            .position(|(k, h)| k == "allowed" && *h == hash)
    };
    let big_arrived = arrived(big_hash).expect("the big statement queued");
    let big_admitted = admitted(big_hash).expect("the big statement was admitted");
    let mut later = 0;
    let mut overtakes = 0;
    for (i, (kind, hash)) in decisions.iter().enumerate() {
        if kind != "queued" || i <= big_arrived || *hash == big_hash {
            continue;
        }
        later += 1;
        if admitted(*hash).is_some_and(|a| a < big_admitted) {
            overtakes += 1;
        }
    }
    eprintln!("statements arriving after the large one: {later}; overtakes: {overtakes}");
    assert!(later >= 1, "some statements arrived while it waited");
    assert_eq!(overtakes, 0);
}

#[test]
fn copy_from_is_charged_as_debt_that_the_next_statement_repays() {
    let (cluster, mut admin) = server();
    let id = policy(&mut admin, 500_000, 500_000, "pace");
    let mut writer = cluster.connect_as("writer", "postgres");
    let data: String = (0..20000)
        .map(|i| format!("row {i} {}\n", "z".repeat(150)))
        .collect();
    let mut copy = writer.copy_in("COPY t (payload) FROM STDIN").unwrap();
    std::io::Write::write_all(&mut copy, data.as_bytes()).unwrap();
    copy.finish().unwrap();
    let debt: i64 = admin
        .query_one(
            "SELECT debt_bytes FROM pwb.scope_stats() WHERE policy_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(
        debt > 1_000_000,
        "COPY's WAL beyond its first chunk is debt: {debt}"
    );
    let started = Instant::now();
    writer
        .batch_execute("INSERT INTO t (payload) VALUES ('after copy')")
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    let ideal = debt as f64 / 500_000.0;
    assert!(
        took >= 0.8 * ideal,
        "{took:.2} s to repay {debt} bytes (ideal {ideal:.2} s)"
    );
    assert!(
        took <= 3.0 * ideal + 1.0,
        "{took:.2} s for an ideal {ideal:.2} s"
    );
}

#[test]
fn subtransactions_prepared_statements_and_loops_are_paced_statement_by_statement() {
    let (cluster, mut admin) = server();
    policy(&mut admin, 10 * MIB, 10 * MIB, "pace");
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .batch_execute(&format!(
            "BEGIN; SAVEPOINT s; {}; ROLLBACK TO SAVEPOINT s;
             INSERT INTO t (payload) VALUES ('kept'); COMMIT;",
            bulk_insert(2)
        ))
        .unwrap();
    assert_eq!(waiting(&mut admin), 0);
    let paced_before: i64 = admin
        .query_one("SELECT paced_statements FROM pwb.counters()", &[])
        .unwrap()
        .get(0);
    writer
        .batch_execute(
            "PREPARE ins(text) AS INSERT INTO t (payload) VALUES ($1);
             EXECUTE ins('a'); EXECUTE ins('b'); EXECUTE ins('c');
             DO $$ BEGIN FOR i IN 1..5 LOOP INSERT INTO t (payload) VALUES ('loop'); END LOOP; END $$;",
        )
        .unwrap();
    let paced_after: i64 = admin
        .query_one("SELECT paced_statements FROM pwb.counters()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        paced_after - paced_before,
        8,
        "3 executions and 5 loop iterations"
    );
}

#[test]
fn pace_takes_the_same_argument_checks_as_the_other_modes() {
    let (_cluster, mut admin) = server();
    for (sql, code) in [
        (
            "SELECT pwb.create_policy('role', 'writer', 0, 10, 'pace')",
            "22023",
        ),
        (
            "SELECT pwb.create_policy('role', 'writer', 10, -1, 'pace')",
            "22023",
        ),
        (
            "SELECT pwb.create_policy('role', 'writer', 10, 5, 'pace')",
            "22023",
        ),
        (
            "SELECT pwb.create_policy('role', 'writer', 10, 10, 'PACE ')",
            "",
        ),
        ("SELECT pwb.set_policy_mode(1, 'paced')", "22023"),
    ] {
        let r = admin.batch_execute(sql);
        if code.is_empty() {
            r.unwrap();
        } else {
            assert_eq!(sqlstate(&r.expect_err(sql)), Some(code), "{sql}");
        }
    }
    let mode: String = admin
        .query_one("SELECT mode FROM pwb.policy", &[])
        .unwrap()
        .get(0);
    assert_eq!(mode, "pace");
}
