//! Backend-local state: the trusted tenant, the stack of admitted statements,
//! and this backend's copy of its database's policies.
use crate::flow::{Entry, Matched, Measured};
use crate::wal;
use governance::budget::admission::Ledger;
use governance::budget::policy::{self, Mode, PolicyKey};
use governance::budget::scope::{Scope, ScopeContext, ScopeKind};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::rc::Rc;

/// One policy row as this backend knows it.
#[derive(Debug, Clone)]
pub struct CachedPolicy {
    pub key: PolicyKey,
    pub scope_value: String,
    pub slot: Option<usize>,
}

struct State {
    stack: Vec<Entry>,
    /// Statements that charged nothing, measured and not yet written to
    /// shared memory (see `flow::settle`).
    measured: Vec<Measured>,
    policies: Vec<CachedPolicy>,
    loaded_generation: u64,
    loaded_db: u32,
    role: Option<(pg_sys::Oid, String)>,
    database: Option<String>,
    /// Bumped whenever the tenant or the loaded policies change, so a cached
    /// [`Resolution`] knows it is stale.
    inputs_epoch: u64,
    resolution: Option<Rc<Resolution>>,
    /// Set while this backend runs its own internal queries.
    internal: bool,
    tail: Option<Tail>,
}

impl State {
    const fn new() -> State {
        State {
            stack: Vec::new(),
            measured: Vec::new(),
            policies: Vec::new(),
            loaded_generation: 0,
            loaded_db: 0,
            role: None,
            database: None,
            inputs_epoch: 0,
            resolution: None,
            internal: false,
            tail: None,
        }
    }
}

/// Where the WAL written after the last governed statement of a transaction
/// is charged when the transaction ends.
#[derive(Debug, Clone, Copy)]
pub struct Tail {
    /// (slot index, policy id) of the policy that governed the statement.
    pub policy: (usize, i32),
    pub dboid: u32,
    pub ledger: Ledger,
    /// The backend's WAL counter when that statement was settled.
    pub wal_mark: u64,
}

pub fn set_tail(tail: Tail) {
    with_state(|s| s.tail = Some(tail));
}

pub fn take_tail() -> Option<Tail> {
    with_state(|s| s.tail.take())
}

/// Storage for one backend. A PostgreSQL backend is a single-threaded
/// process, so a plain static does the job of `thread_local!` without its
/// per-access lookup (`__tls_get_addr` from a shared library: about 600
/// instructions per tpcb-like transaction, most of them inside the
/// statements' row-lock window).
pub struct BackendLocal<T>(T);

// SAFETY: only the backend's one thread runs this library's code: PostgreSQL
// calls hooks, callbacks and SQL functions from its main thread, this crate
// starts no threads, and pgrx's guard refuses calls from any other thread.
unsafe impl<T> Sync for BackendLocal<T> {}

impl<T> BackendLocal<T> {
    pub const fn new(value: T) -> BackendLocal<T> {
        BackendLocal(value)
    }
}

impl<T> std::ops::Deref for BackendLocal<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

static STATE: BackendLocal<RefCell<State>> = BackendLocal::new(RefCell::new(State::new()));

fn read_state<R>(read: impl FnOnce(&State) -> R) -> R {
    read(&STATE.borrow())
}

fn with_state<R>(change: impl FnOnce(&mut State) -> R) -> R {
    change(&mut STATE.borrow_mut())
}

/// Reads the state without panicking, for the checks that run outside
/// pgrx's guard (see hooks.rs); `unreadable` is the answer when the state
/// cannot be read.
fn peek<R>(unreadable: R, read: impl FnOnce(&State) -> R) -> R {
    STATE.try_borrow().map_or(unreadable, |s| read(&s))
}

/// True when no governed statement is open and we are not inside our own
/// internal queries: nested statements are part of the outer one.
pub fn is_idle_for_admission() -> bool {
    peek(false, |s| s.stack.is_empty() && !s.internal)
}

pub fn set_internal(on: bool) -> bool {
    with_state(|s| std::mem::replace(&mut s.internal, on))
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

pub fn push(entry: Entry) {
    with_state(|s| s.stack.push(entry));
}

/// [`push`] for callers outside pgrx's guard: never panics, and false when
/// the entry could not be pushed (the state is borrowed, or no memory).
pub fn try_push(entry: Entry) -> bool {
    let Ok(mut s) = STATE.try_borrow_mut() else {
        return false;
    };
    if s.stack.try_reserve(1).is_err() {
        return false;
    }
    // Cannot reallocate, so cannot panic: capacity was reserved above.
    s.stack.push(entry);
    true
}

pub fn is_top(marker: usize) -> bool {
    peek(false, |s| {
        s.stack.last().is_some_and(|e| e.marker == marker)
    })
}

/// Whether a governed statement is still open (for the transaction callback).
pub fn has_open_statements() -> bool {
    peek(true, |s| !s.stack.is_empty())
}

/// Holds a measured statement until it is written; returns how many are held.
pub fn hold_measured(measured: Measured) -> usize {
    with_state(|s| {
        s.measured.push(measured);
        s.measured.len()
    })
}

/// Whether a transaction that just ended left statements to write or a tail
/// to charge.
pub fn has_unwritten() -> bool {
    peek(true, |s| !s.measured.is_empty() || s.tail.is_some())
}

pub fn has_measured() -> bool {
    read_state(|s| !s.measured.is_empty())
}

pub fn take_measured() -> Vec<Measured> {
    with_state(|s| std::mem::take(&mut s.measured))
}

/// Ends the statement `marker` opened without pgrx's guard when it charged
/// nothing (observe mode, or no policy) and ran to completion: moves its
/// entry to the held measurements, with the WAL written since it started.
/// Never panics. False, with nothing changed, when the guarded settle must
/// run instead: it is another kind of statement, or holding it would reach
/// `limit`, at which point the held statements are written.
pub fn try_hold_completed(marker: usize, wal_end: u64, limit: usize) -> bool {
    let Ok(mut s) = STATE.try_borrow_mut() else {
        return false;
    };
    let s = &mut *s;
    let uncharged_on_top = s
        .stack
        .last()
        .is_some_and(|e| e.marker == marker && e.deferred.is_some());
    if !uncharged_on_top || s.measured.len() + 1 >= limit || s.measured.try_reserve(1).is_err() {
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
}

pub fn pop_if_top(marker: usize) -> Option<Entry> {
    with_state(|s| {
        if s.stack.last().is_some_and(|e| e.marker == marker) {
            s.stack.pop()
        } else {
            None
        }
    })
}

// The drains below leave the stack's allocation in place, so a stream of
// statements does not allocate a new stack for each one.

pub fn drain_all() -> Vec<Entry> {
    with_state(|s| s.stack.drain(..).collect())
}

pub fn drain_executor_entries() -> Vec<Entry> {
    with_state(|s| {
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

pub fn drain_from_subxact(subxid: pg_sys::SubTransactionId) -> Vec<Entry> {
    with_state(|s| {
        let keep = s.stack.iter().take_while(|e| e.subxid < subxid).count();
        s.stack.drain(keep..).collect()
    })
}

/// Whether the cached policies are current for `generation` in this
/// database. Never panics.
pub fn policies_current(generation: u64, dboid: u32) -> bool {
    peek(false, |s| {
        s.loaded_generation == generation && s.loaded_db == dboid
    })
}

pub fn install_policies(policies: Vec<CachedPolicy>, generation: u64, dboid: u32) {
    with_state(|s| {
        s.policies = policies;
        s.loaded_generation = generation;
        s.loaded_db = dboid;
        s.inputs_epoch += 1;
    });
}

/// The ids of the policies this backend has loaded.
pub fn loaded_policy_ids() -> Vec<i32> {
    read_state(|s| s.policies.iter().map(|p| p.key.policy_id).collect())
}

/// Where a statement comes from and which policy governs it.
#[derive(Debug)]
pub struct Resolution {
    /// The statement's primary scope (the first in classification order).
    pub primary: Option<Scope>,
    pub matched: Option<Matched>,
    // The inputs it was computed from.
    inputs_epoch: u64,
    role_oid: pg_sys::Oid,
    tenant: Option<String>,
    application: Option<String>,
    composite: bool,
}

impl Resolution {
    /// The scope profiles and telemetry are keyed by: the governing policy's
    /// scope, else the statement's primary scope (hash 0 when there is none).
    pub fn profile_scope(&self) -> (i64, ScopeKind, &str) {
        match (&self.matched, &self.primary) {
            (Some(m), _) => (m.scope_hash, m.scope_kind, m.scope_value.as_str()),
            (None, Some(p)) => (p.hash, p.kind, p.value.as_str()),
            (None, None) => (0, ScopeKind::Role, ""),
        }
    }
}

/// The current statement's [`Resolution`]. Classifying and matching
/// allocate, so the result is reused until an input changes: the role, the
/// tenant, application_name, `pwb.composite_scope_enabled` or the loaded
/// policies. A stream of statements from one session then costs a few
/// comparisons each.
pub fn resolve(composite: bool) -> Rc<Resolution> {
    if let Some(resolution) = cached_resolution(composite) {
        return resolution;
    }
    let role_oid = wal::current_user_oid();
    let application = wal::application_name();
    let tenant = crate::guc::tenant();
    with_state(|s| {
        if s.role.as_ref().is_none_or(|(oid, _)| *oid != role_oid) {
            s.role = wal::role_name(role_oid).map(|n| (role_oid, n));
        }
        if s.database.is_none() {
            s.database = wal::database_name();
        }
        let context = ScopeContext {
            tenant: tenant.clone(),
            role: s.role.as_ref().map(|(_, n)| n.clone()),
            database: s.database.clone(),
            application: application.clone(),
        };
        let scopes = context.classify(composite);
        let resolution = Rc::new(Resolution {
            matched: match_policy(&s.policies, &scopes),
            primary: scopes.into_iter().next(),
            inputs_epoch: s.inputs_epoch,
            role_oid,
            tenant,
            application,
            composite,
        });
        s.resolution = Some(Rc::clone(&resolution));
        resolution
    })
}

/// The cached [`Resolution`] when none of its inputs changed since it was
/// made, else None. Never panics.
pub fn cached_resolution(composite: bool) -> Option<Rc<Resolution>> {
    let role_oid = wal::current_user_oid();
    peek(None, |s| {
        s.resolution
            .as_ref()
            .filter(|r| {
                r.inputs_epoch == s.inputs_epoch
                    && r.role_oid == role_oid
                    && r.composite == composite
                    && crate::guc::tenant_is(r.tenant.as_deref())
                    && wal::application_name_is(r.application.as_deref())
            })
            .cloned()
    })
}

/// The governing policy for `scopes` among `policies`.
fn match_policy(policies: &[CachedPolicy], scopes: &[Scope]) -> Option<Matched> {
    let (key, _) = policy::match_policy(policies.iter().map(|p| &p.key), scopes)?;
    let cached = policies.iter().find(|p| p.key.policy_id == key.policy_id)?;
    Some(Matched {
        policy_id: key.policy_id,
        mode: key.mode,
        scope_kind: key.scope_kind,
        scope_value: cached.scope_value.clone(),
        scope_hash: key.scope_hash,
        slot: cached.slot,
    })
}

/// For `recent_decisions`: kinds are stored as codes.
pub fn kind_name(code: u8) -> Option<&'static str> {
    ScopeKind::from_code(code).map(ScopeKind::as_str)
}

pub fn mode_name(code: u8) -> Option<&'static str> {
    Mode::from_code(code).map(Mode::as_str)
}
