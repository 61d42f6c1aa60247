//! SQL-callable Rust functions. The documented functions
//! (`throttle_user_per_node` and friends) are SQL wrappers in `sql/api.sql`
//! around [`throttle_store`].
use governance::pacing::NodeKind;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgsupport::catalog;
use pgsupport::error::{Report, SqlState};
use pgsupport::roles;

use crate::stats;

const ORIGIN: &str = "pg_throttle";

/// Statement-level trigger on `throttlings`: queues a relcache invalidation
/// for the table, delivered to every backend when the change commits, so
/// sessions re-read their configuration at their next statement.
#[pg_trigger]
fn throttlings_changed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    crate::pg::invalidate_relation(trigger.relid()?);
    Ok(None)
}

/// A name as it may appear in a message: at most 64 characters.
fn shown(name: &str) -> String {
    if name.chars().count() <= 64 {
        name.to_string()
    } else {
        let head: String = name.chars().take(64).collect();
        format!("{head}... ({} bytes)", name.len())
    }
}

fn unknown_role(name: &str) -> ! {
    Report::new(
        SqlState::ERRCODE_UNDEFINED_OBJECT,
        format!("role \"{}\" does not exist", shown(name)),
    )
    .detail(format!("username = '{}'", shown(name)))
    .hint("Create the role first, or check the spelling (role names are case-sensitive).")
    .raise(ORIGIN)
}

fn null_username() -> ! {
    Report::new(
        SqlState::ERRCODE_INVALID_PARAMETER_VALUE,
        "username must not be null",
    )
    .hint("Pass the name of an existing role.")
    .raise(ORIGIN)
}

/// The configuration is a table, written on the primary and replicated.
fn refuse_on_standby() {
    if catalog::in_recovery() {
        Report::new(
            SqlState::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            "cannot change the throttling configuration on a standby",
        )
        .detail("throttlings is replicated from the primary.")
        .hint("Run it on the primary; standbys follow once the change is replayed.")
        .raise(ORIGIN);
    }
}

/// The `throttlings` table, schema-qualified and quoted.
fn throttlings_table() -> String {
    let schema = catalog::extension_oid(c"pg_throttle")
        .and_then(catalog::extension_schema)
        .and_then(catalog::schema_name);
    match schema {
        Some(s) => format!("{}.throttlings", catalog::quote_ident(&s)),
        None => Report::new(
            SqlState::ERRCODE_UNDEFINED_OBJECT,
            "extension \"pg_throttle\" is not installed in this database",
        )
        .hint("Run CREATE EXTENSION pg_throttle.")
        .raise(ORIGIN),
    }
}

/// Validates and stores one user's whole configuration (internal: called
/// by the documented functions, which pass the name their caller knows
/// each rate by). `node_max` holds one rate per node kind in
/// `NodeKind::ALL` order, or a single rate for every kind (the short-hand
/// `throttle_user_per_node_all`), or NULL for none; `argument`, when given,
/// is the name every rate is reported under (the short-hands' `max`), else
/// each kind's own argument. The column list is built from `NodeKind`, the
/// one list of kinds.
#[pg_extern]
fn throttle_store(
    username: Option<&str>,
    query_max: Option<i32>,
    node_max: Option<Vec<Option<i32>>>,
    argument: Option<&str>,
) {
    refuse_on_standby();
    let Some(username) = username else {
        null_username()
    };
    if roles::role_oid_by_str(username).is_none() {
        unknown_role(username);
    }
    let node_max = match node_max.as_deref() {
        None => vec![None; NodeKind::COUNT],
        Some([one]) => vec![*one; NodeKind::COUNT],
        Some(all) => all.to_vec(),
    };
    if node_max.len() != NodeKind::COUNT {
        Report::new(
            SqlState::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("node_max must have {} elements", NodeKind::COUNT),
        )
        .detail(format!("node_max has {} elements", node_max.len()))
        .hint(
            "Use throttle_user_per_node(), throttle_user_per_node_all() or throttle_user_query().",
        )
        .raise(ORIGIN);
    }
    let rates: Vec<Option<i32>> = std::iter::once(query_max).chain(node_max).collect();
    let names: Vec<String> = match argument {
        Some(a) => vec![a.to_string(); rates.len()],
        None => std::iter::once("query_max".to_string())
            .chain(NodeKind::ALL.iter().map(|k| k.argument()))
            .collect(),
    };
    for (rate, name) in rates.iter().zip(&names) {
        if let Some(v) = rate
            && *v <= 0
        {
            Report::new(
                SqlState::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid value for {name}: must be positive"),
            )
            .detail(format!("{name} = {v}"))
            .hint("Pass a number of tuples per second greater than zero, or NULL to leave it unthrottled.")
            .raise(ORIGIN);
        }
    }
    let columns = NodeKind::table_rate_columns();
    let placeholders: Vec<String> = (2..=columns.len() + 1).map(|i| format!("${i}")).collect();
    let updates: Vec<String> = columns
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let sql = format!(
        "INSERT INTO {} AS t (username, {}) VALUES ($1, {}) \
         ON CONFLICT (username) DO UPDATE SET {}",
        throttlings_table(),
        columns.join(", "),
        placeholders.join(", "),
        updates.join(", ")
    );
    let mut args: Vec<pgrx::datum::DatumWithOid<'_>> = vec![username.into()];
    args.extend(rates.iter().map(|r| (*r).into()));
    if let Err(e) = Spi::run_with_args(&sql, &args) {
        Report::new(
            SqlState::ERRCODE_INTERNAL_ERROR,
            "could not store the throttling configuration",
        )
        .detail(e.to_string())
        .raise(ORIGIN);
    }
}

/// Whether the current user may see every user's statistics and waits:
/// superusers and members of `pg_monitor` or `throttle_admin`. Others see
/// the rows of roles whose privileges they have (their own).
fn may_see(role: pg_sys::Oid) -> bool {
    let me = roles::current_user();
    roles::has_privs_of_any(me, &[c"pg_monitor", c"throttle_admin"])
        || roles::has_privs_of_oid(me, role)
}

fn timestamp(ts: i64) -> Option<TimestampWithTimeZone> {
    (ts != 0)
        .then(|| TimestampWithTimeZone::try_from(ts).ok())
        .flatten()
}

/// The rows of the `throttle_stats` view.
#[pg_extern]
#[allow(clippy::type_complexity)] // the row type pgrx needs for RETURNS TABLE
fn throttle_stats_rows() -> TableIterator<
    'static,
    (
        name!(username, String),
        name!(statements, i64),
        name!(tuples, i64),
        name!(sleep_time, f64),
        name!(backends, i32),
        name!(last_throttled, Option<TimestampWithTimeZone>),
        name!(stats_reset, Option<TimestampWithTimeZone>),
    ),
> {
    let rows: Vec<_> = stats::user_rows()
        .into_iter()
        .filter(|r| may_see(r.role))
        .filter_map(|r| {
            Some((
                roles::role_name(r.role)?,
                i64::try_from(r.statements).unwrap_or(i64::MAX),
                i64::try_from(r.tuples).unwrap_or(i64::MAX),
                r.slept_us as f64 / 1000.0,
                i32::try_from(r.backends).unwrap_or(i32::MAX),
                timestamp(r.last_throttled),
                timestamp(r.stats_reset),
            ))
        })
        .collect();
    TableIterator::new(rows)
}

/// Zeroes the statistics of `username`, or of every user (NULL).
#[pg_extern]
fn throttle_stats_reset(username: default!(Option<&str>, "NULL")) {
    let role = match username {
        None => None,
        Some(name) => match roles::role_oid_by_str(name) {
            Some(oid) => Some(oid),
            None => unknown_role(name),
        },
    };
    if !stats::reset(role) {
        Report::new(
            SqlState::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_throttle keeps no statistics in this server",
        )
        .detail(
            "Statistics live in shared memory, which only shared_preload_libraries can reserve.",
        )
        .hint("Add pg_throttle to shared_preload_libraries and restart the server.")
        .raise(ORIGIN);
    }
}

/// The statistics as Prometheus text exposition (format 0.0.4), with the
/// conventions of the other extensions' `metrics()` functions.
#[pg_extern]
fn throttle_metrics() -> String {
    use pgsupport::prometheus::{Exposition, Kind};
    let users: Vec<(String, stats::UserRow)> = stats::user_rows()
        .into_iter()
        .filter(|r| may_see(r.role))
        .filter_map(|r| Some((roles::role_name(r.role)?, r)))
        .collect();
    let sleeping = stats::waits()
        .into_iter()
        .filter(|w| may_see(w.role))
        .count();
    let seconds = |ts: i64| (ts != 0).then(|| pgsupport::time::pg_to_unix_ms(ts) as f64 / 1000.0);
    let mut out = Exposition::new();
    out.single(
        "pg_throttle_statistics_enabled",
        Kind::Gauge,
        "1 if statistics are kept (pg_throttle in shared_preload_libraries), else 0.",
        f64::from(u8::from(stats::available())),
    );
    type Value<'a> = &'a dyn Fn(&stats::UserRow) -> Option<f64>;
    let per_user: [(&str, Kind, &str, Value<'_>); 6] = [
        (
            "pg_throttle_statements_total",
            Kind::Counter,
            "Statements throttled since the statistics reset.",
            &|r| Some(r.statements as f64),
        ),
        (
            "pg_throttle_tuples_total",
            Kind::Counter,
            "Tuples that passed throttled nodes (or were examined by throttled filters).",
            &|r| Some(r.tuples as f64),
        ),
        (
            "pg_throttle_sleep_seconds_total",
            Kind::Counter,
            "Time backends slept to hold the rate, summed over processes.",
            &|r| Some(r.slept_us as f64 / 1e6),
        ),
        (
            "pg_throttle_backends",
            Kind::Gauge,
            "Backends (including parallel workers) running a throttled query now.",
            &|r| Some(f64::from(r.backends)),
        ),
        (
            "pg_throttle_last_throttled_timestamp_seconds",
            Kind::Gauge,
            "When a throttled statement last started (Unix time).",
            &|r| seconds(r.last_throttled),
        ),
        (
            "pg_throttle_stats_reset_timestamp_seconds",
            Kind::Gauge,
            "When the user's counters were last reset (Unix time).",
            &|r| seconds(r.stats_reset),
        ),
    ];
    for (name, kind, help, value) in per_user {
        out.family(name, kind, help);
        for (user, row) in &users {
            if let Some(v) = value(row) {
                out.sample(name, &[("username", user)], v);
            }
        }
    }
    out.single(
        "pg_throttle_sleeping_backends",
        Kind::Gauge,
        "Backends sleeping for pg_throttle now.",
        sleeping as f64,
    );
    out.single(
        "pg_throttle_untracked_statements_total",
        Kind::Counter,
        "Throttled statements of users beyond the statistics table's capacity.",
        stats::untracked_statements() as f64,
    );
    out.finish()
}

/// The backends pg_throttle holds asleep now, why, and since when.
#[pg_extern]
#[allow(clippy::type_complexity)] // the row type pgrx needs for RETURNS TABLE
fn throttle_waits() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(leader_pid, Option<i32>),
        name!(username, Option<String>),
        name!(mode, String),
        name!(node, Option<String>),
        name!(rate, i64),
        name!(count, Option<String>),
        name!(since, Option<TimestampWithTimeZone>),
    ),
> {
    let rows: Vec<_> = stats::waits()
        .into_iter()
        .filter(|w| may_see(w.role))
        .map(|w| {
            (
                w.pid,
                w.leader_pid,
                roles::role_name(w.role),
                w.mode.to_string(),
                w.kind.map(|k| k.as_str().to_string()),
                i64::try_from(w.rate).unwrap_or(i64::MAX),
                w.counting.map(|c| c.as_str().to_string()),
                timestamp(w.since),
            )
        })
        .collect();
    TableIterator::new(rows)
}
