//! What kind of process this is: a client backend, a parallel worker (and
//! whose), a background worker of some extension, autovacuum; and its slot
//! among the server's processes.
use pgrx::pg_sys;

/// Whether this process serves a client connection (not a background
/// worker, autovacuum, a WAL sender or an auxiliary process).
pub fn is_client_backend() -> bool {
    // SAFETY: a plain per-process global set at process start.
    unsafe { pg_sys::MyBackendType == pg_sys::BackendType::B_BACKEND }
}

/// Whether this process is a parallel worker of some query.
pub fn is_parallel_worker() -> bool {
    // SAFETY: a plain per-process global (IsParallelWorker() in C).
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

/// The pid of the leader of this process's lock group, when this process is
/// a parallel worker (None otherwise, or for the leader itself).
pub fn parallel_leader_pid() -> Option<i32> {
    // SAFETY: MyProc is this process's own PGPROC (or NULL before it has
    // one); its lock group leader is set when a parallel worker joins the
    // leader's group and stays valid while the worker runs.
    unsafe {
        let me = pg_sys::MyProc;
        if me.is_null() {
            return None;
        }
        let leader = (*me).lockGroupLeader;
        if leader.is_null() || leader == me {
            return None;
        }
        Some((*leader).pid)
    }
}

/// This process's index among the server's `PGPROC`s (0-based, below
/// [`max_backends`] for backends and background workers), if it has one.
pub fn proc_number() -> Option<usize> {
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    {
        // SAFETY: a plain per-process global; -1 until the process has one.
        usize::try_from(unsafe { pg_sys::MyProcNumber }).ok()
    }
    #[cfg(not(any(feature = "pg17", feature = "pg18")))]
    {
        // SAFETY: MyProc is this process's own PGPROC, or NULL.
        unsafe {
            let me = pg_sys::MyProc;
            if me.is_null() {
                return None;
            }
            usize::try_from((*me).pgprocno).ok()
        }
    }
}

/// `MaxBackends`: how many backends and background workers the server
/// allows at once (valid from `shmem_request_hook` on).
pub fn max_backends() -> usize {
    // SAFETY: a plain global, set before shared memory is sized.
    usize::try_from(unsafe { pg_sys::MaxBackends }).unwrap_or(0)
}
