//! Catalog lookups: extensions and their schemas, relations, the recovery
//! state, and reading a table's rows directly from the heap (no SPI, no
//! permission check: for an extension's own configuration).
use pgrx::pg_sys;
use pgrx::{FromDatum, PgTupleDesc};
use std::ffi::CStr;
use std::ops::ControlFlow;

/// Whether the server is a standby (in recovery). Valid in any process
/// attached to shared memory; needs no transaction.
pub fn in_recovery() -> bool {
    // SAFETY: reads shared XLog state under its own spinlock.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// The oid of extension `name` in this database, if it is installed.
pub fn extension_oid(name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: a catalog lookup inside a transaction; missing_ok = true.
    let oid = unsafe { pg_sys::get_extension_oid(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The schema extension `ext` is installed in (`get_extension_schema` only
/// exists from PostgreSQL 16).
pub fn extension_schema(ext: pg_sys::Oid) -> Option<pg_sys::Oid> {
    let mut schema = None;
    // SAFETY: pg_extension is opened with a lock, scanned with the catalog
    // snapshot and closed; each tuple is a valid pg_extension heap tuple, so
    // reading it as FormData_pg_extension is sound.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(pg_sys::ExtensionRelationId, lock);
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
        pg_sys::table_close(rel, lock);
    }
    schema
}

/// The oid of relation `name` in schema `schema`, if it exists.
pub fn relation_oid(name: &CStr, schema: pg_sys::Oid) -> Option<pg_sys::Oid> {
    // SAFETY: a syscache lookup by name inside a transaction.
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), schema) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The current database's oid.
pub fn database_oid() -> pg_sys::Oid {
    // SAFETY: a plain per-process global.
    unsafe { pg_sys::MyDatabaseId }
}

/// The name of the current database.
pub fn database_name() -> Option<String> {
    // SAFETY: NULL for an unknown database, else a palloc'd NUL-terminated
    // string in the current context, copied out at once.
    unsafe { crate::text::to_owned(pg_sys::get_database_name(pg_sys::MyDatabaseId)) }
}

/// One row of a table being read by [`read_table`], deformed into datums.
pub struct Row<'a> {
    values: &'a [pg_sys::Datum],
    nulls: &'a [bool],
}

impl Row<'_> {
    pub fn text(&self, col: Option<usize>) -> Option<String> {
        // SAFETY: the column holds a text datum (the caller names a column
        // of that type), valid while the row is.
        col.and_then(|i| unsafe { String::from_datum(self.values[i], self.nulls[i]) })
    }

    pub fn int4(&self, col: Option<usize>) -> Option<i32> {
        // SAFETY: as in `text`, for an int4 column.
        col.and_then(|i| unsafe { i32::from_datum(self.values[i], self.nulls[i]) })
    }

    pub fn int8(&self, col: Option<usize>) -> Option<i64> {
        // SAFETY: as in `text`, for an int8 column.
        col.and_then(|i| unsafe { i64::from_datum(self.values[i], self.nulls[i]) })
    }

    pub fn bool(&self, col: Option<usize>) -> Option<bool> {
        // SAFETY: as in `text`, for a boolean column.
        col.and_then(|i| unsafe { bool::from_datum(self.values[i], self.nulls[i]) })
    }
}

/// Why [`read_table`] read nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Another transaction holds a lock that conflicts with reading (e.g.
    /// `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`): we do not wait for it.
    Locked,
    /// The relation is gone.
    Missing,
}

/// Reads every visible row of table `relid` with the catalog snapshot,
/// calling `each` with a [`Row`] and a column lookup by name, until it
/// returns `Break`. Never waits for a lock: when the table is locked against
/// reading, returns `Err(Unreadable::Locked)` at once. Must run inside a
/// transaction.
pub fn read_table<B>(
    relid: pg_sys::Oid,
    columns: &[&str],
    each: impl FnMut(&Row<'_>, &[Option<usize>]) -> ControlFlow<B>,
) -> Result<Option<B>, Unreadable> {
    scan_table(relid, columns, std::ptr::null_mut(), each)
}

/// As [`read_table`], with the latest committed snapshot instead of the
/// catalog snapshot: rows committed since this transaction's snapshot was
/// taken are seen (also in a repeatable-read transaction), and so are this
/// transaction's own changes.
pub fn read_table_latest<B>(
    relid: pg_sys::Oid,
    columns: &[&str],
    each: impl FnMut(&Row<'_>, &[Option<usize>]) -> ControlFlow<B>,
) -> Result<Option<B>, Unreadable> {
    // SAFETY: inside a transaction; the latest snapshot is copied and
    // registered with the current resource owner (which releases it if an
    // ERROR escapes the scan), and unregistered below.
    let snapshot = unsafe { pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot()) };
    let result = scan_table(relid, columns, snapshot, each);
    // SAFETY: registered above.
    unsafe { pg_sys::UnregisterSnapshot(snapshot) };
    result
}

/// [`read_table`]'s scan, with `snapshot` (null: the catalog snapshot).
fn scan_table<B>(
    relid: pg_sys::Oid,
    columns: &[&str],
    snapshot: pg_sys::Snapshot,
    mut each: impl FnMut(&Row<'_>, &[Option<usize>]) -> ControlFlow<B>,
) -> Result<Option<B>, Unreadable> {
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: a conditional lock request returns at once either way.
    if !unsafe { pg_sys::ConditionalLockRelationOid(relid, lock) } {
        return Err(Unreadable::Locked);
    }
    // SAFETY: we hold the lock; try_table_open returns NULL for a relation
    // dropped meanwhile (then we release the lock we took).
    let rel = unsafe { pg_sys::try_table_open(relid, pg_sys::NoLock as pg_sys::LOCKMODE) };
    if rel.is_null() {
        // SAFETY: releases the lock taken above.
        unsafe { pg_sys::UnlockRelationOid(relid, lock) };
        return Err(Unreadable::Missing);
    }
    let mut result = None;
    // SAFETY: the relation is open and locked; tuples come from a scan with
    // `snapshot` (registered by the caller) or the catalog snapshot, and are
    // deformed with the relation's own
    // descriptor into arrays of its length; the scan is ended and the
    // relation closed (releasing our lock) before returning.
    unsafe {
        let tupdesc = PgTupleDesc::from_pg_unchecked((*rel).rd_att);
        let natts = tupdesc.len();
        let positions: Vec<Option<usize>> = columns
            .iter()
            .map(|name| {
                tupdesc
                    .iter()
                    .position(|att| !att.attisdropped && att.name() == *name)
            })
            .collect();
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::InvalidOid,
            false,
            snapshot,
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
            let row = Row {
                values: &values,
                nulls: &nulls,
            };
            if let ControlFlow::Break(b) = each(&row, &positions) {
                result = Some(b);
                break;
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, lock);
    }
    Ok(result)
}

/// The name of schema `oid`, if it exists.
pub fn schema_name(oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup inside a transaction; NULL for an unknown
    // schema, else a palloc'd NUL-terminated string, copied out at once.
    unsafe { crate::text::to_owned(pg_sys::get_namespace_name(oid)) }
}

/// `name` quoted as a SQL identifier (always double-quoted, inner quotes
/// doubled), for building statements from catalog names.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
