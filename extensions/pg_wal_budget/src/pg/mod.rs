//! pg_wal_budget's FFI: the hooks, the shared-memory layout, what the
//! statement path reads from this process, and the profile writer's entry
//! point. The only place in the crate with `unsafe`;
//! shared helpers come from `pgsupport`.
pub mod hooks;
pub mod pace;
pub mod process;
pub mod settings;
pub mod shmem;
mod unguarded;
mod worker_main;
