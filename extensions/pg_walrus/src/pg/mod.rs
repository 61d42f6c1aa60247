//! The FFI of pg_walrus: shared memory registration, the server-side actions
//! the worker takes (`ALTER SYSTEM`, reload, WAL position), `statvfs` of the
//! WAL directory, and the worker's entry point. Shared helpers come from
//! `pgsupport`.
pub mod server;
pub mod shmem;
pub mod statvfs;
mod worker_main;
