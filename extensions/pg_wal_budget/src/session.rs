//! This backend's own state: the stack of admitted statements, the settled
//! statements not yet written to shared memory, its copy of its database's
//! policies, the cached scope resolution, and the transaction's tail.
//!
//! Functions marked "never panics" are used outside pgrx's guard (see
//! `pg::hooks`): they give up, changing nothing, when the state is in use
//! further up the stack or memory is short.
use crate::types::{CachedPolicy, Entry, Measured, Resolution, Tail};
use pgrx::pg_sys;
use pgsupport::local::BackendCell;
use std::sync::Arc;

struct State {
    stack: Vec<Entry>,
    /// Statements that charged nothing, measured and not yet written to
    /// shared memory (see `settlement`).
    measured: Vec<Measured>,
    policies: Vec<CachedPolicy>,
    loaded_generation: u64,
    loaded_db: u32,
    /// The current user's oid and name (looked up once per role).
    role: Option<(pg_sys::Oid, String)>,
    database: Option<String>,
    /// Bumped whenever the loaded policies change, so a cached
    /// [`Resolution`] knows it is stale.
    epoch: u64,
    resolution: Option<Arc<Resolution>>,
    /// Set while this backend runs its own internal queries.
    internal: bool,
    tail: Option<Tail>,
}

static STATE: BackendCell<State> = BackendCell::new(State {
    stack: Vec::new(),
    measured: Vec::new(),
    policies: Vec::new(),
    loaded_generation: 0,
    loaded_db: 0,
    role: None,
    database: None,
    epoch: 0,
    resolution: None,
    internal: false,
    tail: None,
});

/// Reads the state without panicking; `unreadable` is the answer when it is
/// in use further up the stack.
fn peek<R>(unreadable: R, read: impl FnOnce(&State) -> R) -> R {
    STATE.try_with(|s| read(s)).unwrap_or(unreadable)
}

/// True when no governed statement is open and we are not inside our own
/// internal queries: nested statements are part of the outer one. Never
/// panics.
pub fn is_idle_for_admission() -> bool {
    peek(false, |s| s.stack.is_empty() && !s.internal)
}

fn set_internal(on: bool) -> bool {
    STATE.with(|s| std::mem::replace(&mut s.internal, on))
}

/// Marks this backend as running pg_wal_budget's own statements until
/// dropped, also when an error unwinds through the caller.
pub struct InternalScope(bool);

impl InternalScope {
    pub fn enter() -> InternalScope {
        InternalScope(set_internal(true))
    }
}

impl Drop for InternalScope {
    fn drop(&mut self) {
        set_internal(self.0);
    }
}

/// Marks the whole process as internal (the profile writer).
pub fn set_process_internal() {
    set_internal(true);
}

/// Pushes an admitted statement. Never panics: false (nothing changed) when
/// the state is in use or memory is short.
pub fn try_push(entry: Entry) -> bool {
    STATE
        .try_with(|s| {
            if s.stack.try_reserve(1).is_err() {
                return false;
            }
            // Cannot reallocate, so cannot panic: capacity was reserved above.
            s.stack.push(entry);
            true
        })
        .unwrap_or(false)
}

pub fn push(entry: Entry) {
    STATE.with(|s| s.stack.push(entry));
}

/// Whether the statement `marker` opened is the innermost open one. Never
/// panics.
pub fn is_top(marker: usize) -> bool {
    peek(false, |s| {
        s.stack.last().is_some_and(|e| e.marker == marker)
    })
}

/// Whether the statement `marker` opened is still open. Never panics.
pub fn is_open(marker: usize) -> bool {
    peek(false, |s| s.stack.iter().any(|e| e.marker == marker))
}

/// Whether a governed statement is still open (for the transaction
/// callback). Never panics.
pub fn has_open_statements() -> bool {
    peek(true, |s| !s.stack.is_empty())
}

/// Adds `bytes` to what the open statement `marker` was charged (a paced
/// statement's further chunks).
pub fn add_charged(marker: usize, bytes: u64) {
    STATE.with(|s| {
        if let Some(e) = s.stack.iter_mut().rev().find(|e| e.marker == marker) {
            e.charged = e.charged.saturating_add(bytes);
        }
    });
}

pub fn pop_if_top(marker: usize) -> Option<Entry> {
    STATE.with(|s| {
        if s.stack.last().is_some_and(|e| e.marker == marker) {
            s.stack.pop()
        } else {
            None
        }
    })
}

/// Holds a measured statement until it is written; returns how many are
/// held.
pub fn hold_measured(measured: Measured) -> usize {
    STATE.with(|s| {
        s.measured.push(measured);
        s.measured.len()
    })
}

/// Ends the statement `marker` opened when it charged nothing and ran to
/// completion: moves its entry to the held measurements with the WAL written
/// since it started. Never panics. False, with nothing changed, when the
/// full settlement must run instead: it is another kind of statement, or
/// holding it would reach `limit`, at which point the held statements are
/// written.
pub fn try_hold_completed(marker: usize, wal_end: u64, limit: usize) -> bool {
    STATE
        .try_with(|s| {
            let uncharged_on_top = s
                .stack
                .last()
                .is_some_and(|e| e.marker == marker && e.deferred.is_some());
            if !uncharged_on_top
                || s.measured.len() + 1 >= limit
                || s.measured.try_reserve(1).is_err()
            {
                return false;
            }
            let Some(entry) = s.stack.pop() else {
                return false;
            };
            let actual = wal_end.saturating_sub(entry.wal_start);
            // Cannot reallocate, so cannot panic: capacity was reserved above.
            s.measured.push(Measured {
                entry,
                actual,
                completed: true,
            });
            true
        })
        .unwrap_or(false)
}

/// Whether a transaction that just ended left statements to write or a tail
/// to charge. Never panics.
pub fn has_unwritten() -> bool {
    peek(true, |s| !s.measured.is_empty() || s.tail.is_some())
}

pub fn has_measured() -> bool {
    STATE.with(|s| !s.measured.is_empty())
}

pub fn take_measured() -> Vec<Measured> {
    STATE.with(|s| std::mem::take(&mut s.measured))
}

// The drains below leave the stack's allocation in place, so a stream of
// statements does not allocate a new stack for each one.

pub fn drain_all() -> Vec<Entry> {
    STATE.with(|s| s.stack.drain(..).collect())
}

/// Removes the statements opened by the executor (utility statements may
/// span internal commits and stay).
pub fn drain_executor_entries() -> Vec<Entry> {
    STATE.with(|s| {
        let mut executor = Vec::new();
        let mut i = 0;
        while i < s.stack.len() {
            if s.stack[i].utility {
                i += 1;
            } else {
                executor.push(s.stack.remove(i));
            }
        }
        executor
    })
}

/// Removes the statements opened inside subtransaction `subxid` or later.
pub fn drain_from_subxact(subxid: pg_sys::SubTransactionId) -> Vec<Entry> {
    STATE.with(|s| {
        let keep = s.stack.iter().take_while(|e| e.subxid < subxid).count();
        s.stack.drain(keep..).collect()
    })
}

pub fn set_tail(tail: Tail) {
    STATE.with(|s| s.tail = Some(tail));
}

pub fn take_tail() -> Option<Tail> {
    STATE.with(|s| s.tail.take())
}

/// Starts accounting from `tail.wal_mark` unless the transaction already
/// has a tail (whose earlier mark stays). Never panics; false when the state
/// is in use.
pub fn try_mark_unsettled(tail: Tail) -> bool {
    STATE
        .try_with(|s| {
            if s.tail.is_none() {
                s.tail = Some(tail);
            }
        })
        .is_some()
}

/// Whether the cached policies are current for `generation` in this
/// database. Never panics.
pub fn policies_current(generation: u64, dboid: u32) -> bool {
    peek(false, |s| {
        s.loaded_generation == generation && s.loaded_db == dboid
    })
}

/// Makes this backend reload its policies at its next statement (its own
/// transaction changed them). Never panics.
pub fn invalidate_policies() {
    let _ = STATE.try_with(|s| s.loaded_db = 0);
}

pub fn install_policies(policies: Vec<CachedPolicy>, generation: u64, dboid: u32) {
    STATE.with(|s| {
        s.policies = policies;
        s.loaded_generation = generation;
        s.loaded_db = dboid;
        s.epoch += 1;
    });
}

/// How many loaded policies have no bucket in shared memory.
pub fn count_policies_without_bucket() -> i64 {
    STATE.with(|s| s.policies.iter().filter(|p| p.slot.is_none()).count() as i64)
}

/// The scope value of each loaded specific policy, by policy id.
pub fn policy_values() -> Vec<(i32, String)> {
    STATE.with(|s| {
        s.policies
            .iter()
            .filter_map(|p| p.scope_value.clone().map(|v| (p.key.policy_id, v)))
            .collect()
    })
}

/// The ids of the policies this backend has loaded.
pub fn loaded_policy_ids() -> Vec<i32> {
    STATE.with(|s| s.policies.iter().map(|p| p.key.policy_id).collect())
}

/// The cached resolution, if `fresh` accepts it. Never panics.
pub fn cached_resolution(fresh: impl FnOnce(&Resolution, u64) -> bool) -> Option<Arc<Resolution>> {
    peek(None, |s| {
        s.resolution.as_ref().filter(|r| fresh(r, s.epoch)).cloned()
    })
}

/// Runs `f` with the loaded policies, the current user's name (looked up by
/// `lookup_role` when the role changed) and the database's name (looked up
/// once by `lookup_database`), and caches the resolution it returns.
pub fn resolve_with(
    role_oid: pg_sys::Oid,
    lookup_role: impl FnOnce(pg_sys::Oid) -> Option<String>,
    lookup_database: impl FnOnce() -> Option<String>,
    f: impl FnOnce(&[CachedPolicy], Option<&str>, Option<&str>, u64) -> Resolution,
) -> Arc<Resolution> {
    STATE.with(|s| {
        if s.role.as_ref().is_none_or(|(oid, _)| *oid != role_oid) {
            s.role = lookup_role(role_oid).map(|n| (role_oid, n));
        }
        if s.database.is_none() {
            s.database = lookup_database();
        }
        let role = s.role.as_ref().map(|(_, n)| n.as_str());
        let resolution = Arc::new(f(&s.policies, role, s.database.as_deref(), s.epoch));
        s.resolution = Some(Arc::clone(&resolution));
        resolution
    })
}
