//! pg_walrus under faults and bad input, on a real server: the worker
//! terminated, bad arguments to every function (each refused with its
//! SQLSTATE, nothing changed), and an upgraded installation that must match
//! a fresh one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_tests::{Client, Cluster, sqlstate, wait_for};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn cluster(settings: &[(&str, &str)]) -> Cluster {
    let mut b = Cluster::builder()
        .shared_preload("pg_walrus")
        .setting("max_wal_size", "32MB")
        .setting("min_wal_size", "32MB")
        .setting("checkpoint_timeout", "30s")
        .setting("walrus.naptime_override_ms", "1000")
        .setting("walrus.min_size", "32MB")
        .setting("walrus.cooldown_sec", "0")
        .setting("walrus.max_changes_per_hour", "0");
    for (k, v) in settings {
        b = b.setting(k, v);
    }
    let c = b.start();
    c.connect()
        .batch_execute("CREATE EXTENSION pg_walrus")
        .unwrap();
    c
}

fn worker_pid(client: &mut Client) -> i32 {
    let mut pid = 0;
    wait_for(WAIT, "the worker to run", || {
        pid = client
            .query_one(
                "SELECT coalesce((walrus.status()->'worker'->>'pid')::int, 0)",
                &[],
            )
            .unwrap()
            .get(0);
        pid > 0
    });
    pid
}

fn checkpoints(client: &mut Client, n: usize) {
    for _ in 0..n {
        client.batch_execute("CHECKPOINT").unwrap();
    }
}

/// Everything a bad call could change.
fn state(client: &mut Client) -> (i64, i64, String, String) {
    let r = client
        .query_one(
            "SELECT (SELECT count(*) FROM walrus.history),
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'max_wal_size'),
                    coalesce(pg_read_file('postgresql.auto.conf'), ''),
                    (walrus.status()->'counters')::text",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// A worker terminated with pg_terminate_backend is seen as not running at
/// once, comes back after walrus' restart delay, takes a fresh baseline
/// (the forced checkpoints made while it was away cause no grow), and then
/// acts on new ones.
#[test]
fn a_terminated_worker_is_reported_and_comes_back_on_a_fresh_baseline() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.threshold", "1"),
        ("walrus.max", "64GB"),
    ]);
    let mut client = c.connect();
    let pid = worker_pid(&mut client);
    let terminated: bool = client
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(terminated);
    wait_for(WAIT, "the worker to be reported gone", || {
        let r = client
            .query_one(
                "SELECT (s->>'worker_running')::bool, s->'worker'->>'state' FROM walrus.status() s",
                &[],
            )
            .unwrap();
        !r.get::<_, bool>(0)
    });
    let metrics: String = client
        .query_one("SELECT walrus.metrics()", &[])
        .unwrap()
        .get(0);
    assert!(metrics.contains("\nwalrus_worker_up 0\n"), "{metrics}");
    // Forced checkpoints while it is away.
    checkpoints(&mut client, 4);
    // The postmaster restarts it after bgw_restart_time (60 s).
    let mut new_pid = 0;
    wait_for(Duration::from_secs(150), "the worker to come back", || {
        new_pid = client
            .query_one(
                "SELECT coalesce((walrus.status()->'worker'->>'pid')::int, 0)",
                &[],
            )
            .unwrap()
            .get(0);
        new_pid > 0 && new_pid != pid
    });
    wait_for(WAIT, "a fresh baseline", || {
        client
            .query_one(
                "SELECT (walrus.status()->'worker'->>'baseline_taken')::bool",
                &[],
            )
            .unwrap()
            .get(0)
    });
    // Two full intervals after the fresh baseline: it looked, and did not grow.
    let start: i64 = client
        .query_one(
            "SELECT (walrus.status()->'counters'->>'intervals')::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    wait_for(WAIT, "two intervals", || {
        client
            .query_one(
                "SELECT (walrus.status()->'counters'->>'intervals')::bigint",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            >= start + 2
    });
    let grown: i64 = client
        .query_one(
            "SELECT count(*) FROM walrus.history WHERE action = 'increase'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(grown, 0, "no grow on checkpoints from before the restart");
    wait_for(WAIT, "a grow on new forced checkpoints", || {
        checkpoints(&mut client, 2);
        client
            .query_one(
                "SELECT count(*) FROM walrus.history WHERE action = 'increase'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
    });
    assert!(
        c.log().contains("pg_walrus worker stopping on SIGTERM"),
        "{}",
        c.log()
    );
}

/// Every function with every kind of bad argument: the right SQLSTATE, a
/// message, and no change to the history, the size, postgresql.auto.conf
/// or the worker's counters. Privileges are checked before anything else.
#[test]
fn bad_input_to_every_function_changes_nothing() {
    let c = cluster(&[("walrus.enable", "off")]);
    let mut su = c.connect();
    su.batch_execute(
        "CREATE ROLE watcher LOGIN IN ROLE walrus_monitor;
         CREATE ROLE operator LOGIN IN ROLE walrus_admin;
         INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints,
                                     checkpoint_timeout_sec, reason)
         VALUES ('increase', 32, 64, 2, 30, 'kept')",
    )
    .unwrap();
    let before = state(&mut su);
    let long = "x".repeat(10_000);
    let cases: Vec<(&str, String, &str)> = vec![
        ("postgres", "SELECT walrus.analyze(NULL)".into(), "22004"),
        ("postgres", "SELECT walrus.analyze(apply => NULL)".into(), "22004"),
        ("postgres", "SELECT walrus.reset(NULL)".into(), "22004"),
        ("operator", "SELECT walrus.reset(clear_history => NULL)".into(), "22004"),
        ("postgres", "SELECT walrus.analyze('maybe')".into(), "22P02"),
        ("postgres", format!("SELECT walrus.reset('{long}')"), "22P02"),
        ("postgres", "SELECT walrus.analyze(2)".into(), "42883"),
        ("postgres", "SELECT walrus.status(true)".into(), "42883"),
        ("postgres", "SELECT walrus.metrics(NULL::int)".into(), "42883"),
        ("postgres", "SELECT walrus.cleanup_history(-1)".into(), "42883"),
        ("postgres", "SELECT * FROM walrus.history(0)".into(), "42883"),
        ("postgres", "SELECT walrus.recommendation('')".into(), "42883"),
        ("postgres", "SELECT * FROM walrus.pending_history(1)".into(), "42883"),
        // Privileges first: a monitor's bad call is refused as unprivileged.
        ("watcher", "SELECT walrus.reset(NULL)".into(), "42501"),
        ("watcher", "SELECT walrus.reset(true)".into(), "42501"),
        ("watcher", "SELECT walrus.analyze(true)".into(), "42501"),
        ("watcher", "SELECT walrus.cleanup_history()".into(), "42501"),
        ("watcher", "DELETE FROM walrus.history".into(), "42501"),
        ("postgres", "ALTER SYSTEM SET walrus.max_wal_disk_fraction = 'Infinity'".into(), "22023"),
        ("postgres", "ALTER SYSTEM SET walrus.max_wal_disk_fraction = 2".into(), "22023"),
        ("postgres", "ALTER SYSTEM SET walrus.cooldown_sec = 9223372036854775807".into(), "22023"),
        ("postgres", format!("ALTER SYSTEM SET walrus.algorithm = '{long}'"), "22023"),
        ("postgres", "ALTER SYSTEM SET walrus.threshold = 0".into(), "22023"),
        ("postgres", "SET walrus.max_wal_disk_fraction = 0.1".into(), "55P02"),
        ("postgres", "SET walrus.maximum = '1GB'".into(), "42602"),
        (
            "postgres",
            "INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints, checkpoint_timeout_sec)
             VALUES ('shrunk', 64, 32, 0, 30)"
                .into(),
            "23514",
        ),
    ];
    for (user, sql, code) in &cases {
        let mut client = c.connect_as(user, "postgres");
        let err = client.batch_execute(sql).unwrap_err();
        let short: String = sql.chars().take(80).collect();
        assert_eq!(sqlstate(&err), Some(*code), "{user}: {short}: {err}");
        let db = err.as_db_error().unwrap();
        assert!(!db.message().is_empty());
        assert!(!db.message().contains("panicked"), "{db:?}");
    }
    assert_eq!(state(&mut su), before);
}

/// The catalog of an extension: members, functions (with privileges),
/// columns, constraints, indexes, the version.
const CATALOG_SNAPSHOT: &str = "
SELECT string_agg(item, E'\\n' ORDER BY item) FROM (
  SELECT 'member ' || pg_describe_object(classid, objid, objsubid) AS item
    FROM pg_depend
   WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
     AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_walrus')
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, 'default')
    FROM pg_proc p WHERE p.pronamespace = 'walrus'::regnamespace
  UNION ALL
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
   WHERE c.relnamespace = 'walrus'::regnamespace
  UNION ALL
  SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' acl ' || coalesce(c.relacl::text, 'default')
    FROM pg_class c WHERE c.relnamespace = 'walrus'::regnamespace
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'walrus'::regnamespace
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'walrus'::regnamespace
  UNION ALL
  SELECT 'version ' || extversion FROM pg_extension WHERE extname = 'pg_walrus'
) s";

/// `ALTER EXTENSION pg_walrus UPDATE` from 0.2.0 keeps the rows and gives
/// the same catalog as a fresh 0.3.0 installation.
#[test]
fn update_from_0_2_0_matches_a_fresh_install() {
    let c = cluster(&[("walrus.enable", "off")]);
    let mut admin = c.connect();
    admin.batch_execute("CREATE DATABASE upgraded").unwrap();
    admin.batch_execute("CREATE DATABASE fresh").unwrap();
    let mut upgraded = c.connect_as("postgres", "upgraded");
    upgraded
        .batch_execute("CREATE EXTENSION pg_walrus VERSION '0.2.0'")
        .unwrap();
    let old = upgraded
        .query_one(
            "SELECT extversion, pg_get_function_arguments('walrus.reset'::regproc),
                    to_regprocedure('walrus.pending_history()') IS NULL,
                    to_regclass('walrus.history_timestamp_idx') IS NOT NULL,
                    (SELECT count(*) FROM pg_constraint
                     WHERE conrelid = 'walrus.history'::regclass AND contype = 'c')
             FROM pg_extension WHERE extname = 'pg_walrus'",
            &[],
        )
        .unwrap();
    assert_eq!(old.get::<_, String>(0), "0.2.0");
    assert_eq!(
        old.get::<_, String>(1),
        "",
        "0.2.0's reset() takes no argument"
    );
    assert!(old.get::<_, bool>(2) && old.get::<_, bool>(3));
    assert_eq!(old.get::<_, i64>(4), 0);
    // A 0.2.0 history row survives the update.
    upgraded
        .batch_execute(
            "INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints,
                                         checkpoint_timeout_sec, reason)
             VALUES ('increase', 32, 96, 3, 300, 'from 0.2.0')",
        )
        .unwrap();
    upgraded
        .batch_execute("ALTER EXTENSION pg_walrus UPDATE")
        .unwrap();
    let reason: String = upgraded
        .query_one("SELECT reason FROM walrus.history()", &[])
        .unwrap()
        .get(0);
    assert_eq!(reason, "from 0.2.0");
    upgraded
        .batch_execute("DELETE FROM walrus.history")
        .unwrap();
    let mut fresh = c.connect_as("postgres", "fresh");
    fresh.batch_execute("CREATE EXTENSION pg_walrus").unwrap();
    let a: String = upgraded.query_one(CATALOG_SNAPSHOT, &[]).unwrap().get(0);
    let b: String = fresh.query_one(CATALOG_SNAPSHOT, &[]).unwrap().get(0);
    assert!(a.contains("walrus_history_timestamp_idx"), "{a}");
    assert!(a.contains("history_action_check"), "{a}");
    assert!(a.contains("version 0.3.0"), "{a}");
    assert_eq!(a, b);
    // A 0.2.0 row the new constraints refuse stops the update, which then
    // changes nothing.
    let mut refused = {
        admin.batch_execute("CREATE DATABASE refused").unwrap();
        c.connect_as("postgres", "refused")
    };
    refused
        .batch_execute(
            "CREATE EXTENSION pg_walrus VERSION '0.2.0';
             INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints,
                                         checkpoint_timeout_sec)
             VALUES ('grew', 32, 96, 3, 300)",
        )
        .unwrap();
    let err = refused
        .batch_execute("ALTER EXTENSION pg_walrus UPDATE")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("23514"), "{err}");
    let version: String = refused
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_walrus'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, "0.2.0");
}

/// `walrus.reset(clear_history => true)` deletes as the bootstrap superuser
/// (as `cleanup_history()` does): a walrus_admin member's shadowing
/// `count(*)` aggregate and `=` operator on a hostile search_path never run
/// there, and nobody becomes superuser. `pending_history()` and the new
/// `history()` run nothing of the caller's either.
#[test]
fn reset_clearing_history_runs_no_object_of_the_caller() {
    let c = cluster(&[("walrus.enable", "off")]);
    let mut su = c.connect();
    su.batch_execute(
        "CREATE ROLE mallory LOGIN IN ROLE walrus_admin;
         CREATE SCHEMA evil AUTHORIZATION mallory;
         CREATE TABLE evil.ran (who text, what text);
         ALTER TABLE evil.ran OWNER TO mallory;
         GRANT INSERT ON evil.ran TO PUBLIC;
         GRANT USAGE ON SCHEMA evil TO PUBLIC;
         INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints,
                                     checkpoint_timeout_sec)
         VALUES ('increase', 32, 64, 2, 30), ('decrease', 64, 48, 0, 30);",
    )
    .unwrap();
    let mut mallory = c.connect_as("mallory", "postgres");
    mallory
        .batch_execute(
            "CREATE FUNCTION evil.note(what text) RETURNS void LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO evil.ran VALUES (current_user, what);
                 BEGIN EXECUTE 'ALTER ROLE mallory SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
             END $$;
             CREATE FUNCTION evil.step(bigint) RETURNS bigint LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('count step'); RETURN $1 OPERATOR(pg_catalog.+) 1; END $$;
             CREATE AGGREGATE evil.count(*) (SFUNC = evil.step, STYPE = bigint, INITCOND = '0');
             CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('text ='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
             CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
             CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('to_regclass'); RETURN pg_catalog.to_regclass($1); END $$;
             SET search_path = evil, pg_catalog;",
        )
        .unwrap();
    mallory
        .batch_execute(
            "SELECT * FROM walrus.pending_history();
             SELECT * FROM walrus.history();",
        )
        .unwrap();
    let cleared: bool = mallory
        .query_one("SELECT walrus.reset(clear_history => true)", &[])
        .unwrap()
        .get(0);
    assert!(cleared);
    let rows: i64 = su
        .query_one("SELECT count(*) FROM walrus.history", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    let ran: i64 = su
        .query_one("SELECT count(*) FROM evil.ran", &[])
        .unwrap()
        .get(0);
    assert_eq!(ran, 0, "a planted object ran");
    let superuser: bool = su
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!superuser);
}
