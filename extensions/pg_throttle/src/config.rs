//! The session user's throttling configuration, read from the `throttlings`
//! table and cached until something invalidates it.
//!
//! The row is read directly from the heap by the extension's own code, with
//! no permission check and no row-level security: this is the privileged path
//! that lets sessions be throttled without any grant on `throttlings`, and it
//! only ever returns the session user's row. No SPI is involved, so it works
//! inside `ExecutorStart`, in parallel workers and without recursion.
//!
//! Reading never waits for a lock: when somebody holds a lock on
//! `throttlings` that conflicts with reading it (`LOCK TABLE throttlings`,
//! `ALTER TABLE`, `VACUUM FULL`), the session keeps the configuration it
//! knew last (a new session: none, so it is not throttled) and reads the
//! table again at its next statement.
//!
//! The cache is dropped when
//! - the table changes: a statement-level trigger on `throttlings` sends a
//!   relcache invalidation for it, which every backend receives at its next
//!   statement (see [`crate::api::throttlings_changed`]);
//! - any `pg_class` or `pg_authid` entry changes (extension created or
//!   dropped, roles renamed), which is rare;
//! - the session user changes (`SET SESSION AUTHORIZATION`).
use std::ops::ControlFlow;

use governance::pacing::{NodeKind, ThrottleConfig};
use pgrx::pg_sys;
use pgsupport::catalog::{self, Unreadable};
use pgsupport::local::BackendCell;

#[derive(Clone, Copy)]
struct Cache {
    /// False once something invalidated the entry (it is still the last
    /// known configuration, used while the table cannot be read).
    valid: bool,
    user: pg_sys::Oid,
    relid: pg_sys::Oid,
    config: ThrottleConfig,
}

static CACHE: BackendCell<Cache> = BackendCell::new(Cache {
    valid: false,
    user: pg_sys::InvalidOid,
    relid: pg_sys::InvalidOid,
    config: ThrottleConfig::UNTHROTTLED,
});

/// The configuration of the session user, from the cache when it is valid.
pub fn current() -> ThrottleConfig {
    let user = pgsupport::roles::session_user();
    let cached = CACHE.get();
    if cached.valid && cached.user == user {
        return cached.config;
    }
    match load(user) {
        Ok((relid, config)) => {
            CACHE.set(Cache {
                valid: true,
                user,
                relid,
                config,
            });
            config
        }
        // Locked: the last configuration known for this user (none for
        // another user), re-read at the next statement.
        Err(Unreadable::Locked) if cached.user == user => cached.config,
        Err(_) => ThrottleConfig::UNTHROTTLED,
    }
}

/// Drops the cache (the next statement re-reads the table).
pub fn invalidate() {
    // A callback may arrive while the cache is in use further up the
    // stack (catalog access inside `load`); `load` then stores a fresh
    // entry anyway, and the next statement re-reads if it was stale.
    let _ = CACHE.try_with(|c| c.valid = false);
}

/// Drops the cache if `relid` is the configuration table or "all relations".
pub fn invalidate_relation(relid: pg_sys::Oid) {
    let _ = CACHE.try_with(|c| {
        if relid == pg_sys::InvalidOid || relid == c.relid {
            c.valid = false;
        }
    });
}

/// Reads `user`'s row. Returns the table's oid (InvalidOid when the
/// extension is not installed in this database) and the configuration.
fn load(user: pg_sys::Oid) -> Result<(pg_sys::Oid, ThrottleConfig), Unreadable> {
    let unthrottled = ThrottleConfig::UNTHROTTLED;
    let Some(schema) = catalog::extension_oid(c"pg_throttle").and_then(catalog::extension_schema)
    else {
        return Ok((pg_sys::InvalidOid, unthrottled));
    };
    let Some(relid) = catalog::relation_oid(c"throttlings", schema) else {
        return Ok((pg_sys::InvalidOid, unthrottled));
    };
    let Some(user_name) = pgsupport::roles::role_name(user) else {
        return Ok((relid, unthrottled));
    };
    let names: Vec<String> = std::iter::once("username".to_string())
        .chain(NodeKind::table_rate_columns())
        .collect();
    let columns: Vec<&str> = names.iter().map(String::as_str).collect();
    let found = catalog::read_table(relid, &columns, |row, at| {
        if row.text(at[0]).as_deref() != Some(user_name.as_str()) {
            return ControlFlow::Continue(());
        }
        let rate = |i: usize| row.int4(at[i]).map(i64::from);
        let per_node: [Option<i64>; NodeKind::COUNT] = std::array::from_fn(|k| rate(k + 2));
        ControlFlow::Break(ThrottleConfig::new(rate(1), per_node))
    })?;
    Ok((relid, found.unwrap_or(unthrottled)))
}
