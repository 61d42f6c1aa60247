//! The FFI of pg_walrus: shared memory registration, the server-side actions
//! the worker takes (`ALTER SYSTEM`, reload, WAL position) and the worker's
//! entry point. Shared helpers come from
//! `pgsupport`.
pub mod server;
pub mod shmem;
mod worker_main;
