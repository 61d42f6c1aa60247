//! `COPY table TO ...` reads the table through the table access method
//! directly, with no executor plan and so no scan node to pace. For a
//! throttled session it is run in its query form instead,
//! `COPY (SELECT columns FROM ONLY table) TO ...`, the way PostgreSQL
//! itself runs it for a table with row-level security: the same rows, the
//! same columns (those `COPY table TO` writes: every column, or the listed
//! ones), read by a Seq Scan that is paced like any other.
use pgrx::pg_sys;
use pgrx::prelude::*;

use pgsupport::hook::{Previous, UtilityCall, UtilityHook};

use crate::throttle;

static PREV: Previous<UtilityHook> = Previous::new();

/// Installs the ProcessUtility hook; `_PG_init` only.
pub fn install() {
    // SAFETY: _PG_init, once per process, before any statement.
    unsafe {
        PREV.install(
            std::ptr::addr_of_mut!(pg_sys::ProcessUtility_hook),
            Some(process_utility),
        )
    };
}

#[allow(clippy::too_many_arguments)] // PostgreSQL's hook signature
#[pg_guard]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let mut call = UtilityCall {
        pstmt,
        query_string,
        read_only_tree,
        context,
        params,
        query_env,
        dest,
        qc,
    };
    // SAFETY: a utility statement's PlannedStmt, valid for this call.
    if unsafe { copy_to_table(pstmt) }.is_some() && throttle::paces_copy_to() {
        // SAFETY: as above; inside a transaction (utility statements run in
        // one), where the relation may be looked up and opened.
        if let Some(rewritten) = unsafe { as_query_form(pstmt, read_only_tree) } {
            call.pstmt = rewritten;
            call.read_only_tree = false;
        }
    }
    // SAFETY: our hook's arguments (the statement possibly replaced by an
    // equivalent one) and the hook we replaced.
    unsafe { call.chain(&PREV) };
}

/// The CopyStmt of `pstmt` if it is `COPY <relation> TO ...`.
///
/// # Safety
/// `pstmt` must be a valid PlannedStmt.
unsafe fn copy_to_table(pstmt: *mut pg_sys::PlannedStmt) -> Option<*mut pg_sys::CopyStmt> {
    // SAFETY: the caller guarantees a valid PlannedStmt; the cast follows
    // the tag check.
    unsafe {
        let stmt = (*pstmt).utilityStmt;
        if stmt.is_null() || (*stmt).type_ != pg_sys::NodeTag::T_CopyStmt {
            return None;
        }
        let copy = stmt.cast::<pg_sys::CopyStmt>();
        if (*copy).relation.is_null() || (*copy).is_from || !(*copy).query.is_null() {
            None
        } else {
            Some(copy)
        }
    }
}

/// `pstmt` (a `COPY <relation> TO`) in its query form, or None when the
/// relation is not a plain table (COPY then reports its own error as
/// usual).
///
/// # Safety
/// `pstmt` must be a valid `COPY <relation> TO` PlannedStmt, inside a
/// transaction.
unsafe fn as_query_form(
    pstmt: *mut pg_sys::PlannedStmt,
    read_only_tree: bool,
) -> Option<*mut pg_sys::PlannedStmt> {
    // SAFETY: see the contract. Every node built here is palloc'd in the
    // current (statement) memory context, as the parser's are.
    unsafe {
        let copy = copy_to_table(pstmt)?;
        let relid = pg_sys::RangeVarGetRelidExtended(
            (*copy).relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if relid == pg_sys::InvalidOid
            || pg_sys::get_rel_relkind(relid) as u8 != pg_sys::RELKIND_RELATION
        {
            return None;
        }
        // The columns COPY would write: the listed ones, else every column
        // that is neither dropped nor generated.
        let mut names: Vec<*mut std::ffi::c_char> = Vec::new();
        if (*copy).attlist.is_null() {
            let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
            let rel = pg_sys::relation_open(relid, lock);
            let desc = pgrx::PgTupleDesc::from_pg_unchecked((*rel).rd_att);
            for att in desc.iter() {
                if att.attisdropped || att.attgenerated != 0 {
                    continue;
                }
                names.push(pg_sys::pstrdup(att.attname.data.as_ptr()));
            }
            drop(desc);
            // Keep the lock: COPY takes the same one.
            pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        } else {
            let list = pgrx::PgList::<pg_sys::String>::from_pg((*copy).attlist);
            for name in list.iter_ptr() {
                names.push(pg_sys::pstrdup((*name).sval));
            }
        }
        let pstmt = if read_only_tree {
            pg_sys::copyObjectImpl(pstmt.cast()).cast::<pg_sys::PlannedStmt>()
        } else {
            pstmt
        };
        let copy = (*pstmt).utilityStmt.cast::<pg_sys::CopyStmt>();
        let mut targets: *mut pg_sys::List = std::ptr::null_mut();
        for name in names {
            let column = node::<pg_sys::ColumnRef>(pg_sys::NodeTag::T_ColumnRef);
            (*column).fields =
                pg_sys::lappend(std::ptr::null_mut(), pg_sys::makeString(name).cast());
            (*column).location = -1;
            let target = node::<pg_sys::ResTarget>(pg_sys::NodeTag::T_ResTarget);
            (*target).val = column.cast();
            (*target).location = -1;
            targets = pg_sys::lappend(targets, target.cast());
        }
        let from = pg_sys::copyObjectImpl((*copy).relation.cast()).cast::<pg_sys::RangeVar>();
        (*from).inh = false; // COPY table TO copies that table only
        let select = node::<pg_sys::SelectStmt>(pg_sys::NodeTag::T_SelectStmt);
        (*select).targetList = targets;
        (*select).fromClause = pg_sys::lappend(std::ptr::null_mut(), from.cast());
        (*copy).query = select.cast();
        (*copy).relation = std::ptr::null_mut();
        (*copy).attlist = std::ptr::null_mut();
        Some(pstmt)
    }
}

/// A zeroed node of type `T` tagged `tag` (`makeNode`).
///
/// # Safety
/// `tag` must be `T`'s tag; inside a memory context.
unsafe fn node<T>(tag: pg_sys::NodeTag) -> *mut T {
    // SAFETY: palloc0 returns zeroed memory of the size asked for; every
    // parse node starts with its NodeTag.
    unsafe {
        let p = pg_sys::palloc0(std::mem::size_of::<T>()).cast::<pg_sys::Node>();
        (*p).type_ = tag;
        p.cast()
    }
}
