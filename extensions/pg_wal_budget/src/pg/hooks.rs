//! The executor, utility and transaction hooks, kept thin: a statement's
//! path is in `admission` (before it runs) and `settlement` (after).
use super::{shmem, unguarded};
use crate::admission::{self, Statement};
use crate::{pacing, policies, session, settlement};
use governance::budget::predict::StatementClass;
use governance::budget::text_hash::query_text_hash;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgsupport::hook::{Previous, UtilityCall, UtilityHook};

static PREV_EXECUTOR_START: Previous<pg_sys::ExecutorStart_hook_type> = Previous::new();
static PREV_EXECUTOR_END: Previous<pg_sys::ExecutorEnd_hook_type> = Previous::new();
static PREV_PROCESS_UTILITY: Previous<UtilityHook> = Previous::new();

/// Installs the hooks. `_PG_init` only, while preloading.
pub fn init() {
    // SAFETY: _PG_init runs single-threaded in the postmaster; we save each
    // previous hook and chain to it.
    unsafe {
        PREV_EXECUTOR_START.install(
            std::ptr::addr_of_mut!(pg_sys::ExecutorStart_hook),
            Some(executor_start),
        );
        PREV_EXECUTOR_END.install(
            std::ptr::addr_of_mut!(pg_sys::ExecutorEnd_hook),
            Some(executor_end),
        );
        PREV_PROCESS_UTILITY.install(
            std::ptr::addr_of_mut!(pg_sys::ProcessUtility_hook),
            Some(process_utility),
        );
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
        pg_sys::RegisterResourceReleaseCallback(
            Some(resource_release_callback),
            std::ptr::null_mut(),
        );
    }
}

/// `queryId` is `uint64` before PostgreSQL 18 and `int64` from 18 on; both
/// are the same 64 bits.
fn query_id_of<T: QueryIdBits>(raw: T) -> i64 {
    i64::from_ne_bytes(raw.bits())
}

trait QueryIdBits {
    fn bits(self) -> [u8; 8];
}

impl QueryIdBits for u64 {
    fn bits(self) -> [u8; 8] {
        self.to_ne_bytes()
    }
}

impl QueryIdBits for i64 {
    fn bits(self) -> [u8; 8] {
        self.to_ne_bytes()
    }
}

/// The statement text's hash (the `query_hash` column of
/// `pwb.recent_decisions()`); 0 without text.
fn query_hash(text: *const std::ffi::c_char) -> i64 {
    if text.is_null() {
        return 0;
    }
    // SAFETY: PostgreSQL hands us a NUL-terminated string valid for the call.
    let bytes = unsafe { std::ffi::CStr::from_ptr(text) }.to_bytes();
    query_text_hash(bytes)
}

/// The query id of an executor statement that writes, None for the others.
/// Writes are INSERT, UPDATE, DELETE, MERGE and SELECT with data-modifying
/// CTEs.
fn writing_query_id(query_desc: *mut pg_sys::QueryDesc, eflags: i32) -> Option<i64> {
    if explain_only(eflags) {
        return None;
    }
    // SAFETY: the executor hands us a valid QueryDesc with a PlannedStmt.
    let (operation, pstmt) = unsafe { ((*query_desc).operation, (*query_desc).plannedstmt) };
    let write = match operation {
        pg_sys::CmdType::CMD_INSERT | pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE => {
            true
        }
        #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
        pg_sys::CmdType::CMD_MERGE => true,
        // SAFETY: pstmt is valid when non-null.
        pg_sys::CmdType::CMD_SELECT => !pstmt.is_null() && unsafe { (*pstmt).hasModifyingCTE },
        _ => false,
    };
    if !write || pstmt.is_null() {
        return None;
    }
    // SAFETY: pstmt checked non-null above.
    Some(query_id_of(unsafe { (*pstmt).queryId }))
}

// The executor entry points run for every statement, read-only ones
// included, so they are not wrapped in pgrx's guard: they make a few checks
// that cannot panic, hand governed statements to guarded functions, and chain
// to the previous hook or the standard implementation directly, as a C
// extension would (see `unguarded`). An ERROR raised further down longjmps
// over their frames, which hold nothing that needs dropping. A statement that
// charges nothing (observe mode, or no policy) is usually admitted and ended
// without a guard too (`admission::try_begin_uncharged`,
// `settlement::try_end_uncharged`):
// it only stamps an entry, inside the transaction's row-lock window.

unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    if admission::should_govern()
        && !explain_only(eflags)
        && let Some(query_id) = writing_query_id(query_desc, eflags)
    {
        let statement = Statement {
            class: StatementClass::Write,
            query_id,
            // SAFETY: sourceText is the statement's NUL-terminated text or NULL.
            query_hash: query_hash(unsafe { (*query_desc).sourceText }),
            marker: query_desc as usize,
        };
        if !admission::try_begin_uncharged(statement) {
            // SAFETY: a guarded Rust function; it may raise an ERROR (reject
            // mode, cancel while queued), which PostgreSQL handles.
            unsafe {
                admit_executor_statement(statement.query_id, statement.query_hash, statement.marker)
            };
        }
    } else if admission::should_govern()
        && !explain_only(eflags)
        && !admission::try_mark_unadmitted()
    {
        // SAFETY: a guarded Rust function (it may load the policies).
        unsafe { mark_unadmitted_statement() };
    }
    // SAFETY: chaining with the arguments we were given; this frame holds
    // nothing that needs dropping if the callee raises an ERROR.
    unsafe {
        match PREV_EXECUTOR_START.get().flatten() {
            Some(prev) => prev(query_desc, eflags),
            None => unguarded::standard_ExecutorStart(query_desc, eflags),
        }
    }
    // A paced statement: wrap what feeds its writes, now that the plan-state
    // tree exists. (One atomic load when nothing is paced.)
    if pacing::limit() != u64::MAX && !explain_only(eflags) {
        if pacing::is_paced(query_desc as usize) {
            // SAFETY: the executor of `query_desc` has just been started.
            unsafe { super::pace::wrap_writers(query_desc) };
        } else if pacing::take_root_request() {
            // SAFETY: as above.
            unsafe { super::pace::wrap_root(query_desc) };
        }
    }
}

fn explain_only(eflags: i32) -> bool {
    eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0
}

#[pg_guard]
unsafe extern "C-unwind" fn mark_unadmitted_statement() {
    admission::mark_unadmitted();
}

#[pg_guard]
unsafe extern "C-unwind" fn admit_executor_statement(
    query_id: i64,
    query_hash: i64,
    marker: usize,
) {
    admission::begin_statement(Statement {
        class: StatementClass::Write,
        query_id,
        query_hash,
        marker,
    });
}

unsafe extern "C-unwind" fn executor_end(query_desc: *mut pg_sys::QueryDesc) {
    let ours = session::is_top(query_desc as usize);
    if pacing::limit() != u64::MAX {
        // The wrapped nodes end with their executor; a paced write statement
        // is paced no further (it is settled below).
        super::pace::clear();
        pacing::stop_if(query_desc as usize);
    }
    // SAFETY: as in executor_start.
    unsafe {
        match PREV_EXECUTOR_END.get().flatten() {
            Some(prev) => prev(query_desc),
            None => unguarded::standard_ExecutorEnd(query_desc),
        }
    }
    // Measured after the standard end, so parallel workers' WAL is included.
    if ours && !settlement::try_end_uncharged(query_desc as usize) {
        // SAFETY: a guarded Rust function.
        unsafe { settle_executor_statement(query_desc) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn settle_executor_statement(query_desc: *mut pg_sys::QueryDesc) {
    settlement::end_statement(query_desc as usize);
}

/// The class of a utility statement, or None for statements that write no
/// WAL of their own (transaction control, SET/SHOW, EXPLAIN, cursors,
/// PREPARE/EXECUTE, CALL/DO whose statements are governed one by one, COPY TO,
/// and ALTER SYSTEM so the emergency switch `pwb.enabled = off` always works).
fn utility_class(pstmt: *mut pg_sys::PlannedStmt) -> Option<StatementClass> {
    // SAFETY: ProcessUtility hands us a valid PlannedStmt whose utilityStmt
    // is a Node.
    let node = unsafe { (*pstmt).utilityStmt };
    if node.is_null() {
        return None;
    }
    // SAFETY: node is non-null.
    let tag = unsafe { (*node).type_ };
    use pg_sys::NodeTag::*;
    match tag {
        T_TransactionStmt | T_VariableSetStmt | T_VariableShowStmt | T_ExplainStmt
        | T_PrepareStmt | T_ExecuteStmt | T_DeallocateStmt | T_DeclareCursorStmt | T_FetchStmt
        | T_ClosePortalStmt | T_ListenStmt | T_UnlistenStmt | T_NotifyStmt | T_LockStmt
        | T_DiscardStmt | T_CallStmt | T_DoStmt | T_CheckPointStmt | T_LoadStmt
        | T_ConstraintsSetStmt | T_AlterSystemStmt => None,
        T_CopyStmt => {
            // SAFETY: the tag says this is a CopyStmt.
            let from = unsafe { (*node.cast::<pg_sys::CopyStmt>()).is_from };
            from.then_some(StatementClass::Copy)
        }
        _ => Some(StatementClass::Utility),
    }
}

fn utility_tag(pstmt: *mut pg_sys::PlannedStmt) -> Option<pg_sys::NodeTag> {
    // SAFETY: as in utility_class.
    let node = unsafe { (*pstmt).utilityStmt };
    // SAFETY: node is non-null when dereferenced.
    (!node.is_null()).then(|| unsafe { (*node).type_ })
}

/// Whether a utility statement may change which policies a backend sees:
/// DDL on this extension (CREATE / ALTER / DROP EXTENSION pg_wal_budget, or
/// a DROP that may cascade to it: of a schema or of the extension), and
/// COMMIT PREPARED / ROLLBACK PREPARED (a prepared transaction's change to
/// `pwb.policy` becomes visible only then, in whatever session runs it).
/// Every other statement, a DROP TABLE of a temporary table included, leaves
/// the policy cache alone: a reload costs every backend a query.
fn changes_policy_visibility(pstmt: *mut pg_sys::PlannedStmt) -> bool {
    use pg_sys::NodeTag::*;
    let Some(tag) = utility_tag(pstmt) else {
        return false;
    };
    // SAFETY: utility_tag checked that utilityStmt is a non-null Node; each
    // cast below matches the tag it is under.
    unsafe {
        let node = (*pstmt).utilityStmt;
        match tag {
            T_CreateExtensionStmt => {
                names_us((*node.cast::<pg_sys::CreateExtensionStmt>()).extname)
            }
            T_AlterExtensionStmt => names_us((*node.cast::<pg_sys::AlterExtensionStmt>()).extname),
            T_AlterExtensionContentsStmt => {
                names_us((*node.cast::<pg_sys::AlterExtensionContentsStmt>()).extname)
            }
            T_DropStmt => {
                let drop = node.cast::<pg_sys::DropStmt>();
                let ours = match (*drop).removeType {
                    pg_sys::ObjectType::OBJECT_EXTENSION => c"pg_wal_budget",
                    pg_sys::ObjectType::OBJECT_SCHEMA => c"pwb",
                    _ => return false,
                };
                drops_name((*drop).objects, ours)
            }
            T_TransactionStmt => matches!(
                (*node.cast::<pg_sys::TransactionStmt>()).kind,
                pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED
                    | pg_sys::TransactionStmtKind::TRANS_STMT_ROLLBACK_PREPARED
            ),
            _ => false,
        }
    }
}

/// Whether a DROP's object list (of names, as `String` nodes) holds `name`.
///
/// # Safety
/// `objects` is the `objects` list of a valid DropStmt of an extension or
/// schema.
unsafe fn drops_name(objects: *mut pg_sys::List, name: &std::ffi::CStr) -> bool {
    // SAFETY: see the function's contract: every element is a String node.
    unsafe {
        pgrx::PgList::<pg_sys::Node>::from_pg(objects)
            .iter_ptr()
            .any(|n| {
                !n.is_null()
                    && (*n).type_ == pg_sys::NodeTag::T_String
                    && names(((*n.cast::<pg_sys::String>()).sval).cast_const(), name)
            })
    }
}

fn names(value: *const std::ffi::c_char, name: &std::ffi::CStr) -> bool {
    // SAFETY: a parse tree's name is a NUL-terminated string or NULL.
    !value.is_null() && unsafe { std::ffi::CStr::from_ptr(value) } == name
}

/// Whether an extension name in a parse tree is ours.
fn names_us(name: *const std::ffi::c_char) -> bool {
    names(name, c"pg_wal_budget")
}

fn is_drop_database(pstmt: *mut pg_sys::PlannedStmt) -> bool {
    utility_tag(pstmt) == Some(pg_sys::NodeTag::T_DropdbStmt)
}

/// The database a DROP DATABASE statement names, if it exists.
fn database_to_drop(pstmt: *mut pg_sys::PlannedStmt) -> Option<pg_sys::Oid> {
    if !is_drop_database(pstmt) {
        return None;
    }
    // SAFETY: the tag says utilityStmt is a DropdbStmt, whose dbname is a
    // valid string; get_database_oid with missing_ok = true only looks up.
    let oid = unsafe {
        let stmt = (*pstmt).utilityStmt.cast::<pg_sys::DropdbStmt>();
        pg_sys::get_database_oid((*stmt).dbname, true)
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// Like the executor entry points, runs unguarded for the utility statements
/// it leaves alone (transaction control is one of them, so every explicit
/// transaction passes here twice).
#[allow(clippy::too_many_arguments)]
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
    let call = UtilityCall {
        pstmt,
        query_string,
        read_only_tree,
        context,
        params,
        query_env,
        dest,
        qc,
    };
    let class = if admission::should_govern() {
        utility_class(pstmt)
    } else {
        None
    };
    if class.is_none() && !changes_policy_visibility(pstmt) && !is_drop_database(pstmt) {
        // SAFETY: our hook's arguments and the hook we replaced; this frame
        // holds nothing to drop.
        unsafe { call.chain_unguarded(&PREV_PROCESS_UTILITY) };
        return;
    }
    // SAFETY: a guarded Rust function; the class travels as its code (0 for
    // an ungoverned statement).
    unsafe { govern_utility(call, class.map_or(0, StatementClass::code)) };
}

/// A governed utility statement, one that may change this extension's
/// objects (which makes every backend reload its policies), or DROP DATABASE
/// (which frees the dropped database's budget buckets).
#[pg_guard]
unsafe extern "C-unwind" fn govern_utility(call: UtilityCall, class_code: u8) {
    let class = StatementClass::from_code(class_code);
    let dropped_database = database_to_drop(call.pstmt);
    if let Some(class) = class {
        // SAFETY: pstmt is valid for the duration of the call.
        let query_id = query_id_of(unsafe { (*call.pstmt).queryId });
        admission::begin_statement(Statement {
            class,
            query_id,
            query_hash: query_hash(call.query_string),
            marker: call.pstmt as usize,
        });
    }
    // SAFETY: our hook's arguments and the hook we replaced. Guarded: an
    // ERROR below unwinds through this guarded frame back to PostgreSQL.
    unsafe { call.chain(&PREV_PROCESS_UTILITY) };
    if class.is_some() {
        pacing::stop_if(call.pstmt as usize);
        settlement::end_statement(call.pstmt as usize);
    }
    if changes_policy_visibility(call.pstmt) {
        shmem::bump_policy_generation();
        policies::wake_waiters();
    }
    if let Some(dboid) = dropped_database {
        // DROP DATABASE cannot run in a transaction block, so it commits as
        // soon as it returns. Policies that found the bucket table full get
        // another chance at the next reload.
        policies::release_database_slots(dboid.to_u32());
        shmem::bump_policy_generation();
    }
}

/// Runs at every transaction event; like the executor entry points, it is
/// not guarded itself and does its work in a guarded function only when this
/// backend has something to settle.
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    let at_end = matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PARALLEL_ABORT
            | XACT_EVENT_PREPARE
    );
    if at_end && (session::has_open_statements() || policies::bump_pending()) {
        // SAFETY: a guarded Rust function.
        unsafe { close_transaction(event) };
    }
}

/// Settles the statements still open when the transaction commits or
/// aborts. What the transaction leaves to write is written after its locks
/// are released (see `resource_release_callback`).
#[pg_guard]
unsafe extern "C-unwind" fn close_transaction(event: pg_sys::XactEvent::Type) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            pacing::stop();
            super::pace::clear();
            settlement::abort_all();
            policies::at_transaction_end();
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            settlement::commit();
            policies::at_transaction_end();
        }
        // A prepared transaction's policy change becomes visible at COMMIT
        // PREPARED, which bumps again (see `changes_policy_visibility`).
        pg_sys::XactEvent::XACT_EVENT_PREPARE => policies::at_transaction_end(),
        _ => {}
    }
}

/// Runs at each phase of every resource owner's release. Once a top-level
/// transaction (committed, aborted or prepared) has released its locks, the
/// statements it held are written and its tail is charged
/// (`settlement::end_transaction`). Transaction callbacks run while the
/// transaction still holds its row locks, so work done there makes every
/// transaction waiting for those rows (pgbench's branch rows, any hot row)
/// wait that much longer. Like the other entry points, unguarded until there
/// is something to do.
unsafe extern "C-unwind" fn resource_release_callback(
    phase: pg_sys::ResourceReleasePhase::Type,
    _is_commit: bool,
    is_top_level: bool,
    _arg: *mut std::ffi::c_void,
) {
    if is_top_level
        && phase == pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_AFTER_LOCKS
        && session::has_unwritten()
    {
        // SAFETY: a guarded Rust function.
        unsafe { write_after_transaction() };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn write_after_transaction() {
    settlement::end_transaction();
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        settlement::abort_subxact(my_subid);
        pacing::stop_unless_open();
        // A policy change rolled back to a savepoint: this backend's cache
        // may hold it; read the table again at the next statement.
        if policies::bump_pending() {
            session::invalidate_policies();
        }
    }
}
