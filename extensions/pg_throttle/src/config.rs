//! The session user's throttling configuration, read from the `throttlings`
//! table and cached until something invalidates it.
//!
//! The row is read directly from the heap by the extension's own code, with
//! no permission check and no row-level security: this is the privileged path
//! that lets sessions be throttled without any grant on `throttlings`, and it
//! only ever returns the session user's row. No SPI is involved, so it works
//! inside `ExecutorStart`, in parallel workers and without recursion.
//!
//! The cache is dropped when
//! - the table changes: a statement-level trigger on `throttlings` sends a
//!   relcache invalidation for it, which every backend receives at its next
//!   statement (see [`crate::api::throttlings_changed`]);
//! - any `pg_class` or `pg_authid` entry changes (extension created or
//!   dropped, roles renamed), which is rare;
//! - the session user changes (`SET SESSION AUTHORIZATION`).
use std::cell::RefCell;

use governance::pacing::{NodeKind, ThrottleConfig};
use pgrx::prelude::*;
use pgrx::{FromDatum, PgTupleDesc};

#[derive(Clone, Copy)]
struct Cache {
    valid: bool,
    user: pg_sys::Oid,
    relid: pg_sys::Oid,
    config: ThrottleConfig,
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache {
            valid: false,
            user: pg_sys::InvalidOid,
            relid: pg_sys::InvalidOid,
            config: ThrottleConfig::UNTHROTTLED,
        })
    };
}

/// The configuration of the session user, from the cache when it is valid.
pub fn current() -> ThrottleConfig {
    // SAFETY: plain accessor of backend-local state, valid in any backend.
    let user = unsafe { pg_sys::GetSessionUserId() };
    let cached = CACHE.with(|c| *c.borrow());
    if cached.valid && cached.user == user {
        return cached.config;
    }
    let (relid, config) = load(user);
    CACHE.with(|c| {
        *c.borrow_mut() = Cache {
            valid: true,
            user,
            relid,
            config,
        }
    });
    config
}

/// Drops the cache (the next statement re-reads the table).
pub fn invalidate() {
    CACHE.with(|c| c.borrow_mut().valid = false);
}

/// Drops the cache if `relid` is the configuration table or "all relations".
pub fn invalidate_relation(relid: pg_sys::Oid) {
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if relid == pg_sys::InvalidOid || relid == cache.relid {
            cache.valid = false;
        }
    });
}

/// The schema pg_throttle is installed in, if it is installed in this
/// database. (`get_extension_schema` only exists from PostgreSQL 16.)
fn extension_schema() -> Option<pg_sys::Oid> {
    // SAFETY: catalog lookups in a valid transaction (we run inside
    // ExecutorStart); `missing_ok` makes an absent extension return InvalidOid.
    let ext = unsafe { pg_sys::get_extension_oid(c"pg_throttle".as_ptr(), true) };
    if ext == pg_sys::InvalidOid {
        return None;
    }
    let mut schema = None;
    // SAFETY: pg_extension is opened with a lock, scanned with the catalog
    // snapshot and closed; each tuple is a valid pg_extension heap tuple, so
    // reading it as FormData_pg_extension is sound.
    unsafe {
        let rel = pg_sys::table_open(
            pg_sys::ExtensionRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::InvalidOid,
            false,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_extension>(tuple);
            if (*form).oid == ext {
                schema = Some((*form).extnamespace);
                break;
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
    schema
}

/// Reads `user`'s row. Returns the table's oid (InvalidOid when the
/// extension is not installed in this database) and the configuration.
fn load(user: pg_sys::Oid) -> (pg_sys::Oid, ThrottleConfig) {
    let unthrottled = ThrottleConfig::unthrottled();
    let Some(schema) = extension_schema() else {
        return (pg_sys::InvalidOid, unthrottled);
    };
    // SAFETY: syscache lookup by name in a valid transaction.
    let relid = unsafe { pg_sys::get_relname_relid(c"throttlings".as_ptr(), schema) };
    if relid == pg_sys::InvalidOid {
        return (pg_sys::InvalidOid, unthrottled);
    }
    // SAFETY: syscache lookup; noerr makes a vanished role return NULL.
    let name_ptr = unsafe { pg_sys::GetUserNameFromId(user, true) };
    if name_ptr.is_null() {
        return (relid, unthrottled);
    }
    // SAFETY: GetUserNameFromId returns a palloc'd NUL-terminated string.
    let user_name = unsafe { std::ffi::CStr::from_ptr(name_ptr) }
        .to_string_lossy()
        .into_owned();

    let mut config = unthrottled;
    // SAFETY: the relation is opened with a lock and closed below; tuples come
    // from a scan with the catalog snapshot and are deformed with the
    // relation's own descriptor into arrays of its length.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let tupdesc = PgTupleDesc::from_pg_unchecked((*rel).rd_att);
        let natts = tupdesc.len();
        // Column positions by name, so the reader does not depend on order.
        let position = |name: &str| {
            tupdesc
                .iter()
                .position(|att| !att.attisdropped && att.name() == name)
        };
        let user_col = position("username");
        let query_col = position("query_throttle");
        let node_cols = NodeKind::ALL.map(|kind| position(kind.column()));
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::InvalidOid,
            false,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        let mut values = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![true; natts];
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            pg_sys::heap_deform_tuple(
                tuple,
                (*rel).rd_att,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            );
            let text_at =
                |col: Option<usize>| col.and_then(|i| String::from_datum(values[i], nulls[i]));
            if text_at(user_col).as_deref() != Some(user_name.as_str()) {
                continue;
            }
            let int_at = |col: Option<usize>| {
                col.and_then(|i| i32::from_datum(values[i], nulls[i]))
                    .map(i64::from)
            };
            config = ThrottleConfig::new(int_at(query_col), node_cols.map(int_at));
            break;
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
    (relid, config)
}
