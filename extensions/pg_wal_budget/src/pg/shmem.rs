//! Shared-memory layout and accessors. One named LWLock tranche protects the
//! whole state: the policy/bucket table, counters, the recent-decision ring,
//! the query profile cache and the scope-name table. Array sizes come from the
//! postmaster GUCs (see `guc::capacities`).
//!
//! All `unsafe` for shared memory lives here: callers get a [`Locked`] guard
//! that derefs to safe slices.
use super::unguarded;
use crate::guc;
use crate::types::BucketRef;
use governance::budget::buckets::PolicyBuckets;
use pgrx::pg_sys;
use std::sync::atomic::{AtomicU64, Ordering};

const SHMEM_NAME: &std::ffi::CStr = c"pg_wal_budget";
const TRANCHE_NAME: &std::ffi::CStr = c"pg_wal_budget";

/// How many policies without a bucket the warning dedup remembers.
const WARNED_CAPACITY: usize = 64;

/// Longest scope value kept in the scope-name table.
pub const SCOPE_VALUE_BYTES: usize = 256;

/// Probe length for the open-addressing tables.
const PROBE: usize = 32;

#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct Counters {
    pub accepted_statements: u64,
    pub rejected_statements: u64,
    pub shadow_would_reject_count: u64,
    pub predicted_wal_bytes: u64,
    pub actual_wal_bytes: u64,
    pub absolute_prediction_error: u64,
    pub scope_debt_bytes: u64,
    pub missing_actual_wal_count: u64,
    pub internal_fail_open_count: u64,
    pub aborted_after_charge_count: u64,
    pub scope_name_drop_count: u64,
    /// Statements admitted or refused without a bucket because the bucket
    /// table was full (`pwb.budget_bucket_capacity`).
    pub bucket_capacity_exhausted_count: u64,
    /// Queued statements that gave up waiting (lock_timeout, or a lock they
    /// hold was wanted by another session).
    pub queue_gave_up_count: u64,
    /// Statements admitted in pace mode, and the time they waited while
    /// running.
    pub paced_statements: u64,
    pub pace_wait_micros: u64,
}

/// One durable policy mirrored into shared memory, with its buckets.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct PolicySlot {
    pub used: bool,
    pub enabled: bool,
    pub mode: u8,
    pub scope_kind: u8,
    pub dboid: u32,
    pub policy_id: i32,
    pub priority: i32,
    pub scope_hash: i64,
    /// Which row this slot mirrors: the row's `created_at`. A new row that
    /// reuses a policy_id (after TRUNCATE ... RESTART IDENTITY, say) is a
    /// new policy and starts with fresh buckets.
    pub incarnation: i64,
    /// Not scaled by replica-lag and WAL-disk feedback.
    pub feedback_exempt: bool,
    pub buckets: PolicyBuckets,
    pub stats: PolicyStats,
}

/// What one policy (or one value of a template) saw: `pwb.scope_stats()`
/// and `pwb.metrics()`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct PolicyStats {
    pub accepted: u64,
    pub queued: u64,
    pub rejected: u64,
    /// Statements admitted in pace mode.
    pub paced: u64,
    pub predicted_bytes: u64,
    pub actual_bytes: u64,
    /// Time queued statements waited before they ran, and paced statements
    /// while they ran.
    pub queue_wait_micros: u64,
    pub pace_wait_micros: u64,
}

impl PolicySlot {
    pub fn holds(&self, policy_id: i32, dboid: u32) -> bool {
        self.used && self.dboid == dboid && self.policy_id == policy_id
    }
}

#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ProfileSlot {
    pub used: bool,
    pub scope_hash: i64,
    pub query_id: i64,
    pub calls: u64,
    pub ewma_wal_bytes: f64,
    pub max_wal_bytes: u64,
    pub last_seen_epoch_ms: i64,
}

#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct DecisionSlot {
    /// 0 = empty; otherwise the decision's sequence number + 1.
    pub seq: u64,
    pub timestamp_epoch_ms: i64,
    pub decision_kind: u8,
    pub reason: u8,
    pub scope_kind: u8,
    pub statement_class: u8,
    pub mode: u8,
    pub policy_id: i32,
    pub scope_hash: i64,
    pub query_id: i64,
    /// Hash of the statement's source text.
    pub query_hash: i64,
    pub predicted_wal_bytes: i64,
    /// -1 until measured.
    pub actual_wal_bytes: i64,
    pub available_before: i64,
    pub available_after: i64,
}

/// The bucket of one value of a template policy ("every tenant may write
/// 1 MiB/s": one of these per tenant), made on the value's first statement
/// and reused once it is idle (full, without debt: then it is no different
/// from a new one).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ValueSlot {
    pub used: bool,
    pub dboid: u32,
    pub policy_id: i32,
    /// The template row's incarnation (see `PolicySlot::incarnation`).
    pub incarnation: i64,
    pub value_hash: i64,
    pub buckets: PolicyBuckets,
    pub stats: PolicyStats,
}

impl ValueSlot {
    fn idle(&self, now_micros: u64) -> bool {
        let b = &self.buckets;
        b.enforcement.debt() == 0
            && b.shadow.debt() == 0
            && b.enforcement.available_at(b.limits, now_micros) >= b.limits.burst
            && b.shadow.available_at(b.limits, now_micros) >= b.limits.burst
    }
}

/// Most standbys `pwb.feedback()` lists.
pub const MAX_STANDBYS: usize = 16;

/// One standby's replay lag as the worker last read it.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct StandbyLag {
    pub name: [u8; 64],
    pub name_len: u8,
    pub counted: bool,
    pub lag_bytes: i64,
}

impl StandbyLag {
    pub fn name(&self) -> String {
        let len = usize::from(self.name_len).min(self.name.len());
        String::from_utf8_lossy(&self.name[..len]).into_owned()
    }

    pub fn new(name: &str, lag_bytes: i64, counted: bool) -> StandbyLag {
        let bytes = truncate_utf8(name, 64);
        let mut out = StandbyLag {
            name: [0; 64],
            name_len: bytes.len() as u8,
            counted,
            lag_bytes,
        };
        out.name[..bytes.len()].copy_from_slice(bytes);
        out
    }
}

/// Replica-lag and WAL-disk feedback, as the worker last computed it.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct FeedbackState {
    /// The overall factor, in millionths.
    pub factor_ppm: u32,
    /// `feedback::Limiting` code.
    pub limiting: u8,
    pub engaged_since_epoch_ms: i64,
    pub updated_epoch_ms: i64,
    /// Free bytes on the WAL filesystem (-1: unknown).
    pub wal_disk_free_bytes: i64,
    pub n_standbys: u32,
    pub standbys: [StandbyLag; MAX_STANDBYS],
}

/// A statement waiting for budget: queued (before it runs) or paced (while
/// it runs), in arrival order per policy (`ticket`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct WaiterSlot {
    pub used: bool,
    /// `WaitKind` code.
    pub kind: u8,
    pub pid: i32,
    pub dboid: u32,
    pub policy_id: i32,
    /// The template value it waits under (0: the policy's own bucket).
    pub value_hash: i64,
    pub ticket: u64,
    pub since_epoch_ms: i64,
    /// Bytes it waits for (its prediction, or a paced chunk).
    pub wanted: u64,
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct ScopeNameSlot {
    pub used: bool,
    pub scope_kind: u8,
    pub value_len: u16,
    pub scope_hash: i64,
    pub first_seen_epoch_ms: i64,
    pub last_seen_epoch_ms: i64,
    pub seen_count: u64,
    pub value: [u8; SCOPE_VALUE_BYTES],
}

#[repr(C)]
struct Header {
    /// Read by every governed statement.
    policy_generation: AtomicU64,
    /// Keeps the generation off the cache lines of the counters, which every
    /// statement writes, so that reading it does not miss in cache while
    /// other backends settle statements.
    _generation_padding: [u8; 120],
    counters: Counters,
    decision_next: u64,
    /// Policies (database, policy id) already warned about for finding the
    /// bucket table full, so the log says it once per policy.
    warned_without_bucket: [(u32, i32); WARNED_CAPACITY],
    warned_next: usize,
    feedback: FeedbackState,
    next_ticket: u64,
    n_buckets: usize,
    n_profiles: usize,
    n_decisions: usize,
    n_names: usize,
}

/// Where everything lives, computed identically in every process.
#[derive(Clone, Copy)]
struct Layout {
    caps: guc::Capacities,
    buckets_off: usize,
    profiles_off: usize,
    decisions_off: usize,
    names_off: usize,
    values_off: usize,
    waiters_off: usize,
    waiters: usize,
    total: usize,
}

fn align(n: usize) -> usize {
    n.div_ceil(64) * 64
}

fn layout() -> Layout {
    let caps = guc::capacities();
    let buckets_off = align(size_of::<Header>());
    let profiles_off = align(buckets_off + caps.buckets * size_of::<PolicySlot>());
    let decisions_off = align(profiles_off + caps.profiles * size_of::<ProfileSlot>());
    let names_off = align(decisions_off + caps.decisions * size_of::<DecisionSlot>());
    let values_off = align(names_off + caps.scope_names * size_of::<ScopeNameSlot>());
    let waiters_off = align(values_off + caps.template_buckets * size_of::<ValueSlot>());
    // One waiter slot per backend: a backend waits for one statement at a
    // time. MaxBackends is set before shared memory is requested.
    // SAFETY: a plain global, set by the postmaster before it requests
    // shared memory and inherited by every child.
    let waiters = usize::try_from(unsafe { pg_sys::MaxBackends })
        .unwrap_or(0)
        .max(1);
    let total = align(waiters_off + waiters * size_of::<WaiterSlot>());
    Layout {
        caps,
        buckets_off,
        profiles_off,
        decisions_off,
        names_off,
        values_off,
        waiters_off,
        waiters,
        total,
    }
}

struct Shared {
    base: *mut u8,
    lock: *mut pg_sys::LWLock,
    layout: Layout,
}

// Per-process pointers into shared memory, set once in the startup hook (or
// inherited from the postmaster) and never changed afterwards.
static mut SHARED: Option<Shared> = None;
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

/// Installs the shared-memory request and startup hooks. `_PG_init` only,
/// while preloading.
pub fn init() {
    // SAFETY: _PG_init runs single-threaded in the postmaster during
    // shared_preload_libraries processing; saving and replacing the hook
    // globals there is the documented protocol.
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

/// Bytes of shared memory this extension asks for at the current settings.
pub fn requested_bytes() -> usize {
    layout().total
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: called by the postmaster in the shmem request phase; the
    // previous hook was saved in init().
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(layout().total);
        pg_sys::RequestNamedLWLockTranche(TRANCHE_NAME.as_ptr(), 1);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: called in the postmaster (or an EXEC_BACKEND child) after shared
    // memory exists; AddinShmemInitLock serialises the initialisation, and the
    // structure is zeroed and set up only by the first caller (found = false).
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        let layout = layout();
        let init_lock = addin_shmem_init_lock();
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let base =
            pg_sys::ShmemInitStruct(SHMEM_NAME.as_ptr(), layout.total, &mut found).cast::<u8>();
        if !found {
            std::ptr::write_bytes(base, 0, layout.total);
            let header = base.cast::<Header>();
            (*header).policy_generation = AtomicU64::new(1);
            (*header).feedback.factor_ppm = governance::budget::buckets::FULL_SCALE;
            (*header).feedback.wal_disk_free_bytes = -1;
            (*header).n_buckets = layout.caps.buckets;
            (*header).n_profiles = layout.caps.profiles;
            (*header).n_decisions = layout.caps.decisions;
            (*header).n_names = layout.caps.scope_names;
        }
        let lock =
            std::ptr::addr_of_mut!((*pg_sys::GetNamedLWLockTranche(TRANCHE_NAME.as_ptr())).lock);
        pg_sys::LWLockRelease(init_lock);
        SHARED = Some(Shared { base, lock, layout });
    }
}

/// `AddinShmemInitLock`: slot 21 of the main LWLock array on every
/// supported version (lwlocknames.txt / lwlocklist.h); bindgen does not
/// export the C macro.
const ADDIN_SHMEM_INIT_LOCK: usize = 21;

/// # Safety
/// Only after the main LWLock array exists (shmem startup or later).
unsafe fn addin_shmem_init_lock() -> *mut pg_sys::LWLock {
    // SAFETY: MainLWLockArray has NUM_FIXED_LWLOCKS > 21 entries.
    unsafe { std::ptr::addr_of_mut!((*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock) }
}

fn shared() -> Option<&'static Shared> {
    // SAFETY: SHARED is written once per process before any backend code runs
    // (startup hook) and only read afterwards.
    unsafe { (*std::ptr::addr_of!(SHARED)).as_ref() }
}

/// Whether shared memory is attached in this process.
pub fn available() -> bool {
    shared().is_some()
}

/// The policy generation: bumped whenever `pwb.policy` may have changed.
pub fn policy_generation() -> u64 {
    shared().map_or(0, |s| {
        // SAFETY: base points at an initialised Header for the process lifetime.
        unsafe {
            (*s.base.cast::<Header>())
                .policy_generation
                .load(Ordering::Acquire)
        }
    })
}

pub fn bump_policy_generation() {
    if let Some(s) = shared() {
        // SAFETY: as in policy_generation; the field is atomic.
        unsafe {
            (*s.base.cast::<Header>())
                .policy_generation
                .fetch_add(1, Ordering::AcqRel)
        };
    }
}

/// Exclusive access to the whole shared state; the LWLock is released on drop.
pub struct Locked {
    shared: &'static Shared,
}

/// Takes the lock, or `None` when shared memory is not attached.
pub fn lock() -> Option<Locked> {
    let shared = shared()?;
    // SAFETY: the lock pointer came from GetNamedLWLockTranche and lives in
    // shared memory for the postmaster's lifetime; unguarded, as explained in
    // `unguarded`.
    unsafe { unguarded::LWLockAcquire(shared.lock, pg_sys::LWLockMode::LW_EXCLUSIVE) };
    Some(Locked { shared })
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: we hold the lock (taken in lock()).
        unsafe { unguarded::LWLockRelease(self.shared.lock) };
    }
}

impl Locked {
    fn header(&mut self) -> &mut Header {
        // SAFETY: base points at the Header; we hold the exclusive lock.
        unsafe { &mut *self.shared.base.cast::<Header>() }
    }

    fn slice<T>(&mut self, off: usize, len: usize) -> &mut [T] {
        // SAFETY: off/len come from the same layout used to size and zero the
        // segment; all slot types are valid when zeroed; we hold the lock.
        unsafe { std::slice::from_raw_parts_mut(self.shared.base.add(off).cast::<T>(), len) }
    }

    pub fn counters(&mut self) -> &mut Counters {
        &mut self.header().counters
    }

    pub fn policies(&mut self) -> &mut [PolicySlot] {
        let l = self.shared.layout;
        self.slice(l.buckets_off, l.caps.buckets)
    }

    /// The index of the slot holding `policy_id` of database `dboid`: `hint`
    /// (the backend's cached index) when it still does, else wherever another
    /// backend's reload has put the policy since. The search runs only when
    /// the hint is stale, which is rare.
    pub fn policy_slot_index(
        &mut self,
        (hint, policy_id): (usize, i32),
        dboid: u32,
    ) -> Option<usize> {
        let slots = self.policies();
        if slots.get(hint).is_some_and(|s| s.holds(policy_id, dboid)) {
            return Some(hint);
        }
        slots.iter().position(|s| s.holds(policy_id, dboid))
    }

    /// The slot holding `policy_id` of database `dboid` (see
    /// [`Self::policy_slot_index`]).
    pub fn policy_slot(&mut self, policy: (usize, i32), dboid: u32) -> Option<&mut PolicySlot> {
        let index = self.policy_slot_index(policy, dboid)?;
        self.policies().get_mut(index)
    }

    pub fn profiles(&mut self) -> &mut [ProfileSlot] {
        let l = self.shared.layout;
        self.slice(l.profiles_off, l.caps.profiles)
    }

    pub fn decisions(&mut self) -> &mut [DecisionSlot] {
        let l = self.shared.layout;
        self.slice(l.decisions_off, l.caps.decisions)
    }

    pub fn names(&mut self) -> &mut [ScopeNameSlot] {
        let l = self.shared.layout;
        self.slice(l.names_off, l.caps.scope_names)
    }

    pub fn feedback(&mut self) -> &mut FeedbackState {
        &mut self.header().feedback
    }

    pub fn values(&mut self) -> &mut [ValueSlot] {
        let l = self.shared.layout;
        self.slice(l.values_off, l.caps.template_buckets)
    }

    /// The buckets `bref` names in database `dboid`: a policy's own, or a
    /// template value's (whose limits follow the template's).
    pub fn buckets(&mut self, bref: BucketRef, dboid: u32) -> Option<&mut PolicyBuckets> {
        if bref.value_hash == 0 {
            return self
                .policy_slot((bref.slot, bref.policy_id), dboid)
                .map(|s| &mut s.buckets);
        }
        let index = self.value_index(bref, dboid)?;
        Some(&mut self.values()[index].buckets)
    }

    /// Counts into the statistics of the bucket `bref` names: its policy's,
    /// and its template value's.
    pub fn count(&mut self, bref: BucketRef, dboid: u32, mut add: impl FnMut(&mut PolicyStats)) {
        if let Some(slot) = self.policy_slot((bref.slot, bref.policy_id), dboid) {
            add(&mut slot.stats);
        }
        if bref.value_hash != 0
            && let Some(index) = self.value_index(bref, dboid)
        {
            add(&mut self.values()[index].stats);
        }
    }

    fn value_index(&mut self, bref: BucketRef, dboid: u32) -> Option<usize> {
        let holds = |v: &ValueSlot| {
            v.used
                && v.dboid == dboid
                && v.policy_id == bref.policy_id
                && v.value_hash == bref.value_hash
        };
        let values = self.values();
        if values.get(bref.value_slot).is_some_and(holds) {
            return Some(bref.value_slot);
        }
        values.iter().position(holds)
    }

    /// The bucket of `value_hash` under the template policy in slot
    /// `policy_index`: found, or made full (taking a free slot, or an idle
    /// one, in the value's probe window). None when every slot there is
    /// busy: the table is full.
    pub fn value_bucket(
        &mut self,
        policy_index: usize,
        value_hash: i64,
        now_micros: u64,
    ) -> Option<BucketRef> {
        let policy = self.policies()[policy_index];
        let values = self.values();
        let len = values.len();
        if len == 0 {
            return None;
        }
        let start = (mix(
            i64::from(policy.policy_id) ^ i64::from(policy.dboid),
            value_hash,
        ) % len as u64) as usize;
        let mut vacant = None;
        for i in 0..PROBE.min(len) {
            let index = (start + i) % len;
            let v = &mut values[index];
            if v.used
                && v.dboid == policy.dboid
                && v.policy_id == policy.policy_id
                && v.value_hash == value_hash
            {
                if v.incarnation != policy.incarnation {
                    v.incarnation = policy.incarnation;
                    v.buckets = PolicyBuckets::fresh(policy.buckets.limits, now_micros);
                } else {
                    v.buckets.change_limits(policy.buckets.limits, now_micros);
                }
                v.buckets.set_scale(policy.buckets.scale_ppm, now_micros);
                return Some(BucketRef {
                    slot: policy_index,
                    policy_id: policy.policy_id,
                    value_hash,
                    value_slot: index,
                });
            }
            if vacant.is_none() && (!v.used || v.idle(now_micros)) {
                vacant = Some(index);
            }
        }
        let index = vacant?;
        values[index] = ValueSlot {
            used: true,
            dboid: policy.dboid,
            policy_id: policy.policy_id,
            incarnation: policy.incarnation,
            value_hash,
            buckets: {
                let mut b = PolicyBuckets::fresh(policy.buckets.limits, now_micros);
                b.set_scale(policy.buckets.scale_ppm, now_micros);
                b
            },
            stats: PolicyStats::default(),
        };
        Some(BucketRef {
            slot: policy_index,
            policy_id: policy.policy_id,
            value_hash,
            value_slot: index,
        })
    }

    pub fn waiters(&mut self) -> &mut [WaiterSlot] {
        let l = self.shared.layout;
        self.slice(l.waiters_off, l.waiters)
    }

    /// The next arrival ticket.
    pub fn take_ticket(&mut self) -> u64 {
        let header = self.header();
        header.next_ticket += 1;
        header.next_ticket
    }

    /// Whether the bucket table has a free slot.
    pub fn has_free_policy_slot(&mut self) -> bool {
        self.policies().iter().any(|s| !s.used)
    }

    /// Records that policy `policy_id` of `dboid` has no bucket; true the
    /// first time (the caller then warns), false when it already was.
    pub fn first_without_bucket(&mut self, dboid: u32, policy_id: i32) -> bool {
        let header = self.header();
        if header.warned_without_bucket.contains(&(dboid, policy_id)) {
            return false;
        }
        let next = header.warned_next % WARNED_CAPACITY;
        header.warned_without_bucket[next] = (dboid, policy_id);
        header.warned_next = next + 1;
        true
    }

    /// Appends a decision to the ring; returns its sequence number.
    pub fn push_decision(&mut self, mut d: DecisionSlot) -> u64 {
        let seq = self.header().decision_next;
        self.header().decision_next = seq + 1;
        d.seq = seq + 1;
        let ring = self.decisions();
        let len = ring.len() as u64;
        ring[(seq % len) as usize] = d;
        seq
    }

    /// The decision with sequence number `seq`, if not yet overwritten.
    pub fn decision_mut(&mut self, seq: u64) -> Option<&mut DecisionSlot> {
        let ring = self.decisions();
        let len = ring.len() as u64;
        let slot = &mut ring[(seq % len) as usize];
        (slot.seq == seq + 1).then_some(slot)
    }

    /// Decisions newest first.
    pub fn recent_decisions(&mut self, limit: usize) -> Vec<DecisionSlot> {
        let next = self.header().decision_next;
        let ring = self.decisions();
        let len = ring.len() as u64;
        let mut out = Vec::new();
        let mut seq = next;
        while seq > 0 && out.len() < limit && next - seq < len {
            seq -= 1;
            let slot = ring[(seq % len) as usize];
            if slot.seq == seq + 1 {
                out.push(slot);
            }
        }
        out
    }

    pub fn clear_decisions(&mut self) {
        self.header().decision_next = 0;
        for d in self.decisions() {
            d.seq = 0;
        }
    }

    /// The profile for (scope_hash, query_id), optionally created (evicting
    /// the least recently seen entry in its probe window when full).
    pub fn profile(
        &mut self,
        scope_hash: i64,
        query_id: i64,
        create: bool,
    ) -> Option<&mut ProfileSlot> {
        let table = self.profiles();
        let victim = match find_profile(table, scope_hash, query_id) {
            Ok(found) => return Some(&mut table[found]),
            Err(victim) => victim,
        };
        if !create {
            return None;
        }
        let idx = victim?;
        table[idx] = ProfileSlot {
            used: true,
            scope_hash,
            query_id,
            calls: 0,
            ewma_wal_bytes: 0.0,
            max_wal_bytes: 0,
            last_seen_epoch_ms: 0,
        };
        Some(&mut table[idx])
    }

    /// Records that a scope was seen; returns false when the table is full.
    pub fn note_scope(&mut self, kind: u8, hash: i64, value: &str, now_ms: i64) -> bool {
        let table = self.names();
        let len = table.len();
        let start = (mix(hash, i64::from(kind)) % len as u64) as usize;
        for i in 0..PROBE.min(len) {
            let slot = &mut table[(start + i) % len];
            if slot.used && slot.scope_hash == hash && slot.scope_kind == kind {
                slot.last_seen_epoch_ms = now_ms;
                slot.seen_count = slot.seen_count.saturating_add(1);
                return true;
            }
            if !slot.used {
                let bytes = truncate_utf8(value, SCOPE_VALUE_BYTES);
                slot.used = true;
                slot.scope_kind = kind;
                slot.scope_hash = hash;
                slot.first_seen_epoch_ms = now_ms;
                slot.last_seen_epoch_ms = now_ms;
                slot.seen_count = 1;
                slot.value_len = bytes.len() as u16;
                slot.value[..bytes.len()].copy_from_slice(bytes);
                return true;
            }
        }
        false
    }
}

/// Probes the profile table: `Ok(index)` of the entry for (scope_hash,
/// query_id), or `Err` with where a new one would go (a free slot, else the
/// least recently seen in the probe window).
fn find_profile(
    table: &[ProfileSlot],
    scope_hash: i64,
    query_id: i64,
) -> Result<usize, Option<usize>> {
    let len = table.len();
    let start = (mix(scope_hash, query_id) % len as u64) as usize;
    let mut free = None;
    let mut oldest: Option<(usize, i64)> = None;
    for i in 0..PROBE.min(len) {
        let idx = (start + i) % len;
        let slot = &table[idx];
        if slot.used && slot.scope_hash == scope_hash && slot.query_id == query_id {
            return Ok(idx);
        }
        if !slot.used {
            if free.is_none() {
                free = Some(idx);
            }
        } else if oldest.is_none_or(|(_, t)| slot.last_seen_epoch_ms < t) {
            oldest = Some((idx, slot.last_seen_epoch_ms));
        }
    }
    Err(free.or(oldest.map(|(i, _)| i)))
}

fn truncate_utf8(value: &str, max: usize) -> &[u8] {
    let mut end = value.len().min(max);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value.as_bytes()[..end]
}

fn mix(a: i64, b: i64) -> u64 {
    let mut h = (a as u64) ^ (b as u64).rotate_left(29);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

impl ScopeNameSlot {
    pub fn value(&self) -> String {
        let len = usize::from(self.value_len).min(SCOPE_VALUE_BYTES);
        String::from_utf8_lossy(&self.value[..len]).into_owned()
    }
}
