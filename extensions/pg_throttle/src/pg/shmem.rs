//! The shared memory pg_throttle keeps when it is in
//! `shared_preload_libraries`: statistics per throttled user and one slot
//! per backend (what it is throttled at, whether it sleeps and since when).
//! Loaded only through `session_preload_libraries`, the library cannot
//! reserve shared memory, and these are simply absent ([`shared`] is None).
//!
//! Everything in it is an atomic: each backend writes only its own slot,
//! user entries are claimed with a compare-and-swap and counted with
//! atomic additions, so no lock is ever taken (readers may see a backend
//! slot mid-update; [`BackendSlot`] carries a change counter for that).
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use pgrx::pg_sys;
use pgsupport::hook::Previous;

/// How many distinct users are counted between resets (further ones are
/// counted only in [`Header::untracked_statements`]).
pub const USER_SLOTS: usize = 1024;

const MAGIC: u64 = 0x7067_7468_726f_7431; // "pgthrot1"

#[repr(C)]
pub struct Header {
    magic: AtomicU64,
    /// Statements of users beyond [`USER_SLOTS`].
    pub untracked_statements: AtomicU64,
    /// When the table was last reset as a whole (PostgreSQL timestamp).
    pub stats_reset: AtomicI64,
    pub warned_full: AtomicU32,
    backends: AtomicU32,
}

/// Counters of one throttled user. `role` 0 is a free slot.
#[repr(C)]
pub struct UserSlot {
    pub role: AtomicU32,
    pub statements: AtomicU64,
    pub tuples: AtomicU64,
    pub slept_us: AtomicU64,
    /// PostgreSQL timestamp of the last throttled statement's start (0:
    /// none since the reset).
    pub last_throttled: AtomicI64,
    pub stats_reset: AtomicI64,
}

/// What one backend is doing, written only by that backend.
#[repr(C)]
pub struct BackendSlot {
    /// Odd while the owner is writing (readers retry).
    pub changes: AtomicU32,
    pub pid: AtomicI32,
    pub role: AtomicU32,
    /// The leader's pid for a parallel worker, else 0.
    pub leader_pid: AtomicI32,
    /// Throttled queries running now (nested queries and cursors add up).
    pub active: AtomicU32,
    /// While sleeping: the node kind's code (0: the query's one budget).
    pub kind: AtomicU32,
    /// While sleeping: 1 per-node mode, 2 query mode.
    pub mode: AtomicU32,
    /// While sleeping: the `Counting` code.
    pub counting: AtomicU32,
    /// While sleeping: the rate it is held to.
    pub rate: AtomicU64,
    /// PostgreSQL timestamp the current sleep began at (0: not sleeping).
    pub sleeping_since: AtomicI64,
    /// PostgreSQL timestamp the outermost running throttled query began at.
    pub active_since: AtomicI64,
}

/// The shared memory, once attached.
pub struct Shared {
    pub header: &'static Header,
    pub users: &'static [UserSlot],
    pub backends: &'static [BackendSlot],
}

fn size_for(backends: usize) -> usize {
    std::mem::size_of::<Header>()
        + USER_SLOTS * std::mem::size_of::<UserSlot>()
        + backends * std::mem::size_of::<BackendSlot>()
}

static PREV_REQUEST: Previous<pg_sys::shmem_request_hook_type> = Previous::new();
static PREV_STARTUP: Previous<pg_sys::shmem_startup_hook_type> = Previous::new();
/// The segment's address in this process (0: none). Set by the startup
/// hook in the postmaster, inherited by every child; set again when the
/// postmaster re-creates shared memory after a crash.
static BASE: AtomicUsize = AtomicUsize::new(0);
static BACKENDS: AtomicUsize = AtomicUsize::new(0);

/// Installs the request and startup hooks (`_PG_init` while loading
/// `shared_preload_libraries` only).
pub fn install() {
    // SAFETY: _PG_init in the postmaster, before shared memory exists;
    // each hook variable is saved and replaced once.
    unsafe {
        PREV_REQUEST.install(
            std::ptr::addr_of_mut!(pg_sys::shmem_request_hook),
            Some(request),
        );
        PREV_STARTUP.install(
            std::ptr::addr_of_mut!(pg_sys::shmem_startup_hook),
            Some(startup),
        );
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn request() {
    if let Some(prev) = PREV_REQUEST.get().flatten() {
        // SAFETY: the previous hook, called as PostgreSQL would.
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| prev()) };
    }
    let backends = pgsupport::process::max_backends();
    BACKENDS.store(backends, Ordering::Relaxed);
    // SAFETY: inside shmem_request_hook, where requests are allowed.
    unsafe { pg_sys::RequestAddinShmemSpace(size_for(backends)) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn startup() {
    if let Some(prev) = PREV_STARTUP.get().flatten() {
        // SAFETY: the previous hook, called as PostgreSQL would.
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| prev()) };
    }
    let backends = BACKENDS.load(Ordering::Relaxed);
    let size = size_for(backends);
    let mut found = false;
    // SAFETY: the space was requested in `request`; ShmemInitStruct takes
    // its own lock on the shared memory index. A new segment is zeroed,
    // which is a valid state for every atomic in it.
    unsafe {
        let base = pg_sys::ShmemInitStruct(c"pg_throttle".as_ptr(), size, &mut found).cast::<u8>();
        if !found {
            std::ptr::write_bytes(base, 0, size);
            let header = &*base.cast::<Header>();
            header.magic.store(MAGIC, Ordering::Relaxed);
            header
                .backends
                .store(u32::try_from(backends).unwrap_or(0), Ordering::Relaxed);
            header
                .stats_reset
                .store(pg_sys::GetCurrentTimestamp(), Ordering::Relaxed);
        }
        BASE.store(base as usize, Ordering::Release);
    }
}

/// The shared memory, if the library was preloaded into the postmaster.
pub fn shared() -> Option<Shared> {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return None;
    }
    let base = base as *const u8;
    // SAFETY: `base` is the segment initialised in `startup`, which lives as
    // long as the server; its header says how many backend slots follow the
    // user slots, and every field of every slot is an atomic (valid when
    // zeroed, shared between processes by design).
    unsafe {
        let header = &*base.cast::<Header>();
        if header.magic.load(Ordering::Relaxed) != MAGIC {
            return None;
        }
        let backends = header.backends.load(Ordering::Relaxed) as usize;
        let users_at = base.add(std::mem::size_of::<Header>()).cast::<UserSlot>();
        let backends_at = users_at.add(USER_SLOTS).cast::<BackendSlot>();
        Some(Shared {
            header,
            users: std::slice::from_raw_parts(users_at, USER_SLOTS),
            backends: std::slice::from_raw_parts(backends_at, backends),
        })
    }
}

/// Runs `f` when this process exits (to clear its backend slot).
pub fn at_exit(f: unsafe extern "C-unwind" fn(i32, pg_sys::Datum)) {
    // SAFETY: registers a callback run by proc_exit; it receives our
    // unused argument.
    unsafe { pg_sys::before_shmem_exit(Some(f), pg_sys::Datum::from(0usize)) };
}
