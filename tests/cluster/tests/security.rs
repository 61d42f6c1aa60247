//! Attacks on a running server, each of which worked once: a user who may
//! call one of our functions, or who owns a database one of our workers
//! connects to, plants objects that shadow built-in functions and operators
//! and points `search_path` at them, hoping our code runs them with more
//! privileges (or outside its own budget); a role created ahead of
//! `CREATE EXTENSION` to be adopted as an admin role; a tenant identity that
//! outlives its transaction. Each test asserts the attack fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_tests::{Client, Cluster, PWB_WRITER_SETUP, pwb_server, sqlstate, wait_for};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Creates, in the current database, a schema `evil` owned by `owner` with
/// a log table and `evil.note()`, which records who it ran as and tries to
/// make `owner` a superuser. Shadowing objects call it.
fn plant_evil_schema(superuser: &mut Client, owner: &str) {
    superuser
        .batch_execute(&format!(
            "CREATE SCHEMA evil AUTHORIZATION {owner};
             CREATE TABLE evil.ran (who text, what text);
             ALTER TABLE evil.ran OWNER TO {owner};
             GRANT INSERT ON evil.ran TO PUBLIC;
             GRANT USAGE ON SCHEMA evil TO PUBLIC;
             CREATE FUNCTION evil.note(what text) RETURNS void LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO evil.ran VALUES (current_user, what);
                 BEGIN
                     EXECUTE 'ALTER ROLE {owner} SUPERUSER';
                 EXCEPTION WHEN others THEN NULL;
                 END;
             END $$;
             ALTER FUNCTION evil.note(text) OWNER TO {owner};"
        ))
        .unwrap();
}

/// Shadows, as `owner`, the functions, operators and aggregates our
/// internal SQL uses (or used before it was schema-qualified).
fn plant_shadows(client: &mut Client) {
    client
        .batch_execute(
            "CREATE FUNCTION evil.step(bigint) RETURNS bigint LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('count step'); RETURN $1 OPERATOR(pg_catalog.+) 1; END $$;
             CREATE FUNCTION evil.done(bigint) RETURNS bigint LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('count'); RETURN $1; END $$;
             CREATE AGGREGATE evil.count(*) (SFUNC = evil.step, STYPE = bigint,
                                             FINALFUNC = evil.done, INITCOND = '0');
             CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('now'); RETURN pg_catalog.now(); END $$;
             CREATE FUNCTION evil.lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('<'); RETURN $1 OPERATOR(pg_catalog.<) $2; END $$;
             CREATE OPERATOR evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.lt);
             CREATE FUNCTION evil.minus(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('-'); RETURN $1 OPERATOR(pg_catalog.-) $2; END $$;
             CREATE OPERATOR evil.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = evil.minus);
             CREATE FUNCTION evil.int_eq(integer, integer) RETURNS boolean LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
             CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.int_eq);
             CREATE FUNCTION evil.name_eq(name, name) RETURNS boolean LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('name ='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
             CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.name_eq);
             CREATE FUNCTION evil.text_name_eq(text, name) RETURNS boolean LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('text = name'); RETURN $1 OPERATOR(pg_catalog.=) $2::text; END $$;
             CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = name, FUNCTION = evil.text_name_eq);
             CREATE FUNCTION evil.num_mul(numeric, integer) RETURNS numeric LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('*'); RETURN $1 OPERATOR(pg_catalog.*) $2; END $$;
             CREATE OPERATOR evil.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = evil.num_mul);
             CREATE FUNCTION evil.lsn_minus(pg_lsn, pg_lsn) RETURNS numeric LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('lsn -'); RETURN $1 OPERATOR(pg_catalog.-) $2; END $$;
             CREATE OPERATOR evil.- (LEFTARG = pg_lsn, RIGHTARG = pg_lsn, FUNCTION = evil.lsn_minus);
             CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM evil.note('to_regclass'); RETURN pg_catalog.to_regclass($1); END $$;",
        )
        .unwrap();
}

/// What the planted objects recorded: (who they ran as, what).
fn evil_ran(client: &mut Client) -> Vec<(String, String)> {
    client
        .query("SELECT who, what FROM evil.ran ORDER BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A superuser connection to `dbname` that does not use the database's
/// (hostile) search_path: the test's own queries must not run the planted
/// objects either.
fn safe_connection(cluster: &Cluster, dbname: &str) -> Client {
    let mut client = cluster.connect_as("postgres", dbname);
    client
        .batch_execute("SET search_path = pg_catalog, public")
        .unwrap();
    client
}

fn is_superuser(client: &mut Client, role: &str) -> bool {
    client
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
        .unwrap()
        .get(0)
}

fn all_three(settings: &[(&str, &str)]) -> Cluster {
    let mut b = Cluster::builder()
        .shared_preload("pg_wal_budget")
        .shared_preload("pg_walrus")
        .session_preload("pg_throttle")
        .setting("compute_query_id", "on")
        .setting("walrus.naptime_override_ms", "1000");
    for (k, v) in settings {
        b = b.setting(k, v);
    }
    b.start()
}

/// A walrus_admin member used to become superuser: cleanup_history() ran
/// its DELETE as the bootstrap superuser with the caller's search_path, so
/// an aggregate count(*) in the caller's schema ran as superuser.
#[test]
fn walrus_admin_cannot_escalate_through_cleanup_history() {
    let cluster = all_three(&[]);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION pg_walrus;
             CREATE ROLE mallory LOGIN;
             GRANT walrus_admin TO mallory;
             INSERT INTO walrus.history (timestamp, action, old_size_mb, new_size_mb,
                 forced_checkpoints, checkpoint_timeout_sec)
             VALUES (now() - interval '30 days', 'increase', 64, 128, 3, 300);",
        )
        .unwrap();
    plant_evil_schema(&mut admin, "mallory");
    let mut mallory = cluster.connect_as("mallory", "postgres");
    plant_shadows(&mut mallory);
    mallory
        .batch_execute("SET search_path = evil, pg_catalog")
        .unwrap();
    let deleted: i64 = mallory
        .query_one("SELECT walrus.cleanup_history()", &[])
        .unwrap()
        .get(0);
    assert_eq!(deleted, 1);
    assert!(!is_superuser(&mut admin, "mallory"));
    assert_eq!(evil_ran(&mut admin), vec![]);
}

/// The walrus worker runs as the bootstrap superuser in walrus.database. The
/// owner of that database may set its search_path; before the worker pinned
/// its own, its statistics queries ran the owner's operators as superuser.
#[test]
fn walrus_worker_ignores_a_hostile_database_search_path() {
    let cluster = all_three(&[]);
    let mut admin = cluster.connect();
    admin.batch_execute("CREATE ROLE dbowner LOGIN").unwrap();
    admin
        .batch_execute("CREATE DATABASE tenantdb OWNER dbowner")
        .unwrap();
    let mut tenant_admin = cluster.connect_as("postgres", "tenantdb");
    tenant_admin
        .batch_execute("CREATE EXTENSION pg_walrus")
        .unwrap();
    plant_evil_schema(&mut tenant_admin, "dbowner");
    let mut owner = cluster.connect_as("dbowner", "tenantdb");
    plant_shadows(&mut owner);
    owner
        .batch_execute("ALTER DATABASE tenantdb SET search_path = evil, pg_catalog")
        .unwrap();
    drop((owner, tenant_admin, admin));
    cluster.restart_with_options("-c walrus.database=tenantdb");
    let mut tenant_admin = safe_connection(&cluster, "tenantdb");
    // A positive signal: the worker evaluated intervals in tenantdb.
    wait_for(WAIT, "the walrus worker to evaluate two intervals", || {
        tenant_admin
            .query_one(
                "SELECT coalesce((walrus.status()->'counters'->>'intervals')::int, 0) >= 2",
                &[],
            )
            .unwrap()
            .get(0)
    });
    assert!(!is_superuser(&mut tenant_admin, "dbowner"));
    assert_eq!(evil_ran(&mut tenant_admin), vec![]);
}

/// The same for pg_wal_budget's profile writer in pwb.profile_database.
#[test]
fn profile_writer_ignores_a_hostile_database_search_path() {
    let cluster = all_three(&[("pwb.profile_flush_interval", "1")]);
    let mut admin = cluster.connect();
    admin.batch_execute("CREATE ROLE dbowner LOGIN").unwrap();
    admin
        .batch_execute("CREATE DATABASE tenantdb OWNER dbowner")
        .unwrap();
    let mut tenant_admin = cluster.connect_as("postgres", "tenantdb");
    tenant_admin
        .batch_execute("CREATE EXTENSION pg_wal_budget")
        .unwrap();
    plant_evil_schema(&mut tenant_admin, "dbowner");
    let mut owner = cluster.connect_as("dbowner", "tenantdb");
    plant_shadows(&mut owner);
    owner
        .batch_execute(
            "CREATE FUNCTION evil.unnest(bigint[], bigint[], bigint[], float8[], bigint[], bigint[])
                 RETURNS TABLE (a bigint, b bigint, c bigint, d float8, e bigint, f bigint)
                 LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.note('unnest'); END $$;
             ALTER DATABASE tenantdb SET search_path = evil, pg_catalog;",
        )
        .unwrap();
    drop((owner, tenant_admin, admin));
    cluster.restart_with_options("-c pwb.profile_database=tenantdb");
    let mut tenant_admin = safe_connection(&cluster, "tenantdb");
    // Learn a profile, then wait for the writer to store it.
    tenant_admin
        .batch_execute("CREATE TABLE public.t (a int); INSERT INTO public.t SELECT g FROM generate_series(1, 100) g;")
        .unwrap();
    wait_for(WAIT, "the profile writer to store profiles", || {
        tenant_admin
            .query_one("SELECT count(*) > 0 FROM pwb.query_profile", &[])
            .unwrap()
            .get(0)
    });
    assert!(!is_superuser(&mut tenant_admin, "dbowner"));
    assert_eq!(evil_ran(&mut tenant_admin), vec![]);
}

/// pg_wal_budget's policy functions run their own statements with
/// admission control off for the caller; a pwb_admin member's shadowing
/// objects must not run inside them (they would write outside any budget).
/// The policy cache reload runs as the bootstrap superuser.
#[test]
fn policy_functions_run_no_object_of_the_caller() {
    let cluster = all_three(&[]);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION pg_wal_budget;
             CREATE ROLE mallory LOGIN;
             GRANT pwb_admin TO mallory;",
        )
        .unwrap();
    plant_evil_schema(&mut admin, "mallory");
    let mut mallory = cluster.connect_as("mallory", "postgres");
    plant_shadows(&mut mallory);
    mallory
        .batch_execute(
            "SET search_path = evil, pg_catalog;
             SELECT pwb.create_policy('role', 'mallory', 1000000, 2000000, 'observe');
             SELECT pwb.update_policy(1, 2000000, 4000000, 50);
             SELECT pwb.set_policy_mode(1, 'shadow');
             SELECT pwb.disable_policy(1);
             SELECT pwb.flush_profiles();
             SELECT * FROM pwb.scope_stats();
             SELECT * FROM pwb.counters();",
        )
        .unwrap();
    assert!(!is_superuser(&mut admin, "mallory"));
    assert_eq!(evil_ran(&mut admin), vec![]);
}

/// walrus.analyze(), status() and metrics() read statistics with the
/// caller's privileges but a pinned search_path; pg_throttle's
/// current_throttling() is SECURITY DEFINER with a pinned search_path.
#[test]
fn monitoring_functions_run_no_object_of_the_caller() {
    let cluster = all_three(&[]);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION pg_walrus;
             CREATE EXTENSION pg_throttle;
             CREATE ROLE mallory LOGIN;
             GRANT walrus_admin TO mallory;",
        )
        .unwrap();
    plant_evil_schema(&mut admin, "mallory");
    let mut mallory = cluster.connect_as("mallory", "postgres");
    plant_shadows(&mut mallory);
    mallory
        .batch_execute(
            "SET search_path = evil, pg_catalog;
             SELECT walrus.status();
             SELECT walrus.recommendation();
             SELECT walrus.analyze(true);
             SELECT walrus.metrics();
             SELECT * FROM walrus.history();
             SELECT * FROM public.current_throttling();",
        )
        .unwrap();
    assert!(!is_superuser(&mut admin, "mallory"));
    assert_eq!(evil_ran(&mut admin), vec![]);
}

/// A role created ahead of CREATE EXTENSION (by any CREATEROLE holder) is
/// not adopted as an admin or monitor role: the install is refused with a
/// hint, unless the role carries the extension's marker comment.
#[test]
fn pre_existing_admin_roles_are_refused() {
    let cluster = Cluster::builder()
        .shared_preload("pg_wal_budget")
        .shared_preload("pg_walrus")
        .start();
    let mut admin = cluster.connect();
    for (extension, role, marker) in [
        ("pg_walrus", "walrus_admin", "pg_walrus operational role"),
        ("pg_walrus", "walrus_monitor", "pg_walrus operational role"),
        (
            "pg_throttle",
            "throttle_admin",
            "pg_throttle operational role",
        ),
        (
            "pg_wal_budget",
            "pwb_admin",
            "pg_wal_budget operational role",
        ),
    ] {
        admin
            .batch_execute(&format!("CREATE ROLE {role} NOLOGIN"))
            .unwrap();
        let err = admin
            .batch_execute(&format!("CREATE EXTENSION {extension}"))
            .expect_err("an unmarked role must stop the install");
        assert_eq!(sqlstate(&err), Some("42710"), "{extension}/{role}: {err}");
        let message = err.as_db_error().map(|e| e.message().to_string());
        assert!(
            message.as_deref().is_some_and(|m| m.contains(role)),
            "{message:?}"
        );
        let installed: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_extension WHERE extname = $1",
                &[&extension],
            )
            .unwrap()
            .get(0);
        assert_eq!(installed, 0, "nothing of {extension} stays behind");
        // Marked as the extension's own, it is accepted.
        admin
            .batch_execute(&format!(
                "COMMENT ON ROLE {role} IS '{marker}'; CREATE EXTENSION {extension};
                 DROP EXTENSION {extension};
                 DROP SCHEMA IF EXISTS walrus CASCADE; DROP SCHEMA IF EXISTS pwb CASCADE;
                 DO $$ DECLARE r text; BEGIN
                     FOREACH r IN ARRAY ARRAY['walrus_admin', 'walrus_monitor', 'throttle_admin',
                                              'pwb_admin', 'pwb_monitor', 'pwb_tenant_setter'] LOOP
                         IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                             EXECUTE format('DROP OWNED BY %I', r);
                             EXECUTE format('DROP ROLE %I', r);
                         END IF;
                     END LOOP;
                 END $$;"
            ))
            .unwrap();
    }
}

/// The tenant follows SET semantics: undone by ROLLBACK, gone at the end of
/// the transaction in its local form, cleared by DISCARD ALL and RESET ALL
/// (what poolers run between clients), and not settable directly by a
/// session that is not a superuser.
#[test]
fn tenant_follows_transaction_semantics_and_is_cleared_by_discard_all() {
    let cluster = all_three(&[]);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION pg_wal_budget;
             CREATE ROLE setter LOGIN;
             GRANT pwb_tenant_setter TO setter;
             CREATE TABLE t (a int, b text);
             GRANT ALL ON t TO setter;
             SELECT pwb.create_policy('tenant', 'acme', 1, 1, 'reject');",
        )
        .unwrap();
    let mut setter = cluster.connect_as("setter", "postgres");
    let tenant = |c: &mut Client| -> Option<String> {
        c.query_one("SELECT pwb.current_tenant()", &[])
            .unwrap()
            .get(0)
    };

    setter
        .batch_execute("BEGIN; SELECT pwb.set_tenant('acme'); ROLLBACK;")
        .unwrap();
    assert_eq!(tenant(&mut setter), None, "ROLLBACK undoes set_tenant");

    setter
        .batch_execute("BEGIN; SELECT pwb.set_tenant('acme', is_local => true);")
        .unwrap();
    assert_eq!(tenant(&mut setter).as_deref(), Some("acme"));
    setter.batch_execute("COMMIT").unwrap();
    assert_eq!(tenant(&mut setter), None, "the local form ends with COMMIT");

    setter
        .batch_execute("SELECT pwb.set_tenant('acme')")
        .unwrap();
    let err = setter
        .batch_execute("INSERT INTO t VALUES (1, 'x')")
        .expect_err("acme's reject policy applies");
    assert_eq!(sqlstate(&err), Some("53400"));
    setter.batch_execute("DISCARD ALL").unwrap();
    assert_eq!(tenant(&mut setter), None, "DISCARD ALL clears the tenant");
    setter
        .batch_execute("INSERT INTO t VALUES (1, 'x')")
        .expect("no longer governed as acme");

    setter
        .batch_execute("SELECT pwb.set_tenant('acme')")
        .unwrap();
    setter.batch_execute("RESET ALL").unwrap();
    assert_eq!(tenant(&mut setter), None, "RESET ALL clears the tenant");

    setter
        .batch_execute(
            "SELECT pwb.set_tenant('outer'); BEGIN; SELECT pwb.set_tenant('inner', true); COMMIT;",
        )
        .unwrap();
    assert_eq!(tenant(&mut setter).as_deref(), Some("outer"));

    // Setting pwb.tenant directly takes superuser: a setter must go through
    // the function (which checks its membership), anybody else cannot.
    let err = setter
        .batch_execute("SET pwb.tenant = 'other'")
        .expect_err("pwb.tenant is superuser-only");
    assert_eq!(sqlstate(&err), Some("42501"));
    admin.batch_execute("CREATE ROLE nobody LOGIN").unwrap();
    let mut nobody = cluster.connect_as("nobody", "postgres");
    let err = nobody
        .batch_execute("SET pwb.tenant = 'acme'")
        .expect_err("pwb.tenant is superuser-only");
    assert_eq!(sqlstate(&err), Some("42501"));
    let err = nobody
        .batch_execute("SELECT pwb.set_tenant('acme')")
        .expect_err("only tenant setters");
    assert_eq!(sqlstate(&err), Some("42501"));
}

// ---- Budget escapes (pg_wal_budget) ----

fn debt(admin: &mut Client, policy_id: i32) -> i64 {
    admin
        .query_one(
            "SELECT debt_bytes FROM pwb.scope_stats() WHERE policy_id = $1",
            &[&policy_id],
        )
        .unwrap()
        .get(0)
}

/// Functions called from a SELECT that write WAL (logical messages, large
/// objects) used to escape a reject policy entirely; what they write is now
/// charged as debt, which the writer's next statements must repay.
#[test]
fn wal_written_by_read_only_statements_is_charged() {
    let (cluster, mut admin) = pwb_server(&[], PWB_WRITER_SETUP);
    let id: i32 = admin
        .query_one(
            "SELECT pwb.create_policy('role', 'writer', 1000, 100000, 'reject')",
            &[],
        )
        .unwrap()
        .get(0);
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .batch_execute("SELECT pg_logical_emit_message(false, 'p', repeat('x', 2000000))")
        .expect("a read-only statement is not refused");
    let owed = debt(&mut admin, id);
    assert!(owed > 1_500_000, "logical message charged as debt: {owed}");
    let err = writer
        .batch_execute("INSERT INTO t (payload) VALUES ('x')")
        .expect_err("the debt must be repaid first");
    assert_eq!(sqlstate(&err), Some("53400"));

    // A new policy starts without debt; then a large object.
    admin.batch_execute("DELETE FROM pwb.policy").unwrap();
    let id: i32 = admin
        .query_one(
            "SELECT pwb.create_policy('role', 'writer', 1000, 100000, 'reject')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(debt(&mut admin, id), 0);
    writer
        .batch_execute(
            "SELECT lo_from_bytea(0, decode(string_agg(md5(g::text), ''), 'hex'))
               FROM generate_series(1, 50000) g",
        )
        .unwrap();
    let owed = debt(&mut admin, id);
    assert!(owed > 500_000, "large object charged as debt: {owed}");
}

/// A session cannot choose a looser policy through what it sets itself:
/// application_name, or SET ROLE to a role it belongs to.
#[test]
fn a_session_cannot_pick_a_looser_policy() {
    let (cluster, mut admin) = pwb_server(&[], PWB_WRITER_SETUP);
    admin
        .batch_execute(
            "CREATE ROLE helper NOLOGIN; GRANT helper TO writer; GRANT ALL ON t, t_id_seq TO helper;
             SELECT pwb.create_policy('role', 'writer', 1, 1, 'reject', 100);
             SELECT pwb.create_policy('application', 'loose', 1000000000, 1000000000, 'reject', 1000);",
        )
        .unwrap();
    let mut writer = cluster.connect_as("writer", "postgres");
    let err = writer
        .batch_execute("INSERT INTO t (payload) VALUES ('x')")
        .expect_err("the role's reject policy applies");
    assert_eq!(sqlstate(&err), Some("53400"));

    writer
        .batch_execute("SET application_name = 'loose'")
        .unwrap();
    let err = writer
        .batch_execute("INSERT INTO t (payload) VALUES ('x')")
        .expect_err("a generous application policy does not lift the role's");
    assert_eq!(sqlstate(&err), Some("53400"));
    writer.batch_execute("RESET application_name").unwrap();

    writer.batch_execute("SET ROLE helper").unwrap();
    let err = writer
        .batch_execute("INSERT INTO t (payload) VALUES ('x')")
        .expect_err("SET ROLE to a role without a policy does not escape");
    assert_eq!(sqlstate(&err), Some("53400"));
    writer.batch_execute("RESET ROLE").unwrap();

    // A stricter application policy does tighten an observed role.
    admin
        .batch_execute(
            "UPDATE pwb.policy SET mode = 'observe' WHERE scope_kind = 'role';
             SELECT pwb.create_policy('application', 'tight', 1, 1, 'reject', 1000);",
        )
        .unwrap();
    writer
        .batch_execute("INSERT INTO t (payload) VALUES ('x')")
        .expect("the role's policy now only observes");
    writer
        .batch_execute("SET application_name = 'tight'")
        .unwrap();
    let err = writer
        .batch_execute("INSERT INTO t (payload) VALUES ('x')")
        .expect_err("a stricter application policy applies");
    assert_eq!(sqlstate(&err), Some("53400"));
}

fn policy_generation(client: &mut Client) -> i64 {
    client
        .query_one("SELECT policy_generation FROM pwb.counters()", &[])
        .unwrap()
        .get(0)
}

/// Any user could make every backend reload its policies (under the
/// extension's exclusive lock) by dropping a temporary table.
#[test]
fn unrelated_ddl_does_not_invalidate_the_policy_cache() {
    let (cluster, mut admin) = pwb_server(&[], PWB_WRITER_SETUP);
    admin
        .batch_execute(
            "GRANT pwb_monitor TO writer; GRANT CREATE ON SCHEMA public TO writer;
             GRANT CREATE ON DATABASE postgres TO writer;
             SELECT pwb.create_policy('role', 'writer', 1000000, 2000000, 'observe');",
        )
        .unwrap();
    let mut writer = cluster.connect_as("writer", "postgres");
    let before = policy_generation(&mut writer);
    writer
        .batch_execute(
            "CREATE TEMP TABLE scratch (a int); DROP TABLE scratch;
             CREATE SCHEMA mine; DROP SCHEMA mine; CREATE TABLE public.w (a int); DROP TABLE public.w;",
        )
        .unwrap();
    assert_eq!(policy_generation(&mut writer), before);
    admin
        .batch_execute("SELECT pwb.create_policy('role', 'other', 1000, 2000, 'observe')")
        .unwrap();
    assert!(
        policy_generation(&mut writer) > before,
        "a policy change does"
    );
}

/// A policy change committed with COMMIT PREPARED reaches a session that
/// reloaded its policies while the transaction was prepared.
#[test]
fn a_prepared_policy_change_reaches_long_lived_sessions() {
    let (cluster, mut admin) = pwb_server(&[("max_prepared_transactions", "5")], PWB_WRITER_SETUP);
    let id: i32 = admin
        .query_one(
            "SELECT pwb.create_policy('role', 'writer', 1, 1, 'observe')",
            &[],
        )
        .unwrap()
        .get(0);
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .batch_execute("INSERT INTO t (payload) VALUES ('observed')")
        .unwrap();
    admin
        .batch_execute(&format!(
            "BEGIN; SELECT pwb.set_policy_mode({id}, 'reject'); PREPARE TRANSACTION 'p1';"
        ))
        .unwrap();
    // The writer reloads during the prepared window and still sees observe.
    writer
        .batch_execute("INSERT INTO t (payload) VALUES ('still observed')")
        .unwrap();
    let mut other = cluster.connect();
    other.batch_execute("COMMIT PREPARED 'p1'").unwrap();
    let err = writer
        .batch_execute("INSERT INTO t (payload) VALUES ('rejected')")
        .expect_err("the committed reject policy applies");
    assert_eq!(sqlstate(&err), Some("53400"));
}

/// A full bucket table is loud: create_policy refuses, a policy inserted
/// directly is counted and warned about once, and statements it governs are
/// counted as admitted without accounting.
#[test]
fn a_full_bucket_table_is_refused_counted_and_warned_about() {
    let (cluster, mut admin) = pwb_server(&[("pwb.budget_bucket_capacity", "2")], PWB_WRITER_SETUP);
    admin
        .batch_execute(
            "SELECT pwb.create_policy('role', 'a', 1000, 2000);
             SELECT pwb.create_policy('role', 'b', 1000, 2000);",
        )
        .unwrap();
    let err = admin
        .batch_execute("SELECT pwb.create_policy('role', 'writer', 1, 1, 'reject')")
        .expect_err("no bucket left");
    assert_eq!(sqlstate(&err), Some("53400"));
    let message = err
        .as_db_error()
        .unwrap()
        .detail()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("pwb.budget_bucket_capacity"), "{message}");
    assert_eq!(
        admin
            .query_one("SELECT count(*) FROM pwb.policy", &[])
            .unwrap()
            .get::<_, i64>(0),
        2,
        "nothing inserted"
    );
    admin
        .batch_execute(
            "INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes, mode)
             VALUES ('role', 'writer', 1, 1, 'reject')",
        )
        .unwrap();
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .batch_execute("INSERT INTO t (payload) VALUES ('x'); INSERT INTO t (payload) VALUES ('y')")
        .expect("fails open (pwb.fail_open = on)");
    let row = admin
        .query_one(
            "SELECT policies_without_bucket, bucket_capacity_exhausted_count FROM pwb.counters()",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert!(row.get::<_, i64>(1) >= 2);
    wait_for(WAIT, "the capacity warning in the log", || {
        cluster
            .log()
            .contains("has no budget bucket: the bucket table is full")
    });
    assert_eq!(
        cluster
            .log()
            .matches("has no budget bucket: the bucket table is full")
            .count(),
        1,
        "warned once"
    );
}

/// A statement queued for budget holds the locks its transaction took; a
/// session waiting for one of them makes it give up (55P03) instead of
/// queueing behind it, and lock_timeout bounds the wait.
#[test]
fn a_queued_statement_does_not_convoy_lock_waiters() {
    let (cluster, mut admin) = pwb_server(&[], PWB_WRITER_SETUP);
    admin
        .batch_execute("SELECT pwb.create_policy('role', 'writer', 100, 20000, 'queue')")
        .unwrap();
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .batch_execute(
            "BEGIN; INSERT INTO t (payload) SELECT repeat('x', 200) FROM generate_series(1, 100)",
        )
        .unwrap();
    // The first insert wrote more than the burst; the next waits minutes.
    let queued = std::thread::spawn(move || {
        let r = writer.batch_execute("INSERT INTO t (payload) VALUES ('queued')");
        (r, writer)
    });
    wait_for(WAIT, "the insert to queue", || {
        admin
            .query_one(
                "SELECT count(*) > 0 FROM pg_stat_activity
                  WHERE usename = 'writer' AND wait_event_type = 'Extension'",
                &[],
            )
            .unwrap()
            .get(0)
    });
    let mut ddl = cluster.connect();
    ddl.batch_execute("SET lock_timeout = '60s'; ALTER TABLE t ADD COLUMN extra int")
        .expect("the ALTER gets its lock once the queued statement gives up");
    let (result, mut writer) = queued.join().unwrap();
    let err = result.expect_err("the queued statement gave up");
    assert_eq!(sqlstate(&err), Some("55P03"), "{err}");
    writer.batch_execute("ROLLBACK").unwrap();

    // lock_timeout bounds a queued wait even when nobody waits behind it.
    writer.batch_execute("SET lock_timeout = '1s'").unwrap();
    let started = std::time::Instant::now();
    let err = writer
        .batch_execute("INSERT INTO t (payload) VALUES ('queued again')")
        .expect_err("gives up after lock_timeout");
    assert_eq!(sqlstate(&err), Some("55P03"));
    assert!(started.elapsed() < Duration::from_secs(30));
    let gave_up: i64 = admin
        .query_one("SELECT queue_gave_up_count FROM pwb.counters()", &[])
        .unwrap()
        .get(0);
    assert!(gave_up >= 2);
}
