//! The PostgreSQL-facing layer the three extensions share. Everything here
//! talks to the server through pgrx; the policy arithmetic lives in the pure
//! `governance` crate, and each extension keeps its own hooks and SQL surface
//! and calls these pieces.
//!
//! - [`error`]: raising an ERROR (or a WARNING) in PostgreSQL's message style,
//!   with a SQLSTATE, a DETAIL and a HINT.
//! - [`roles`]: role lookups and "has the privileges of" checks.
//! - [`privileged`]: running a closure as the bootstrap superuser, or just
//!   with a pinned `search_path`, restoring everything afterwards.
//! - [`wait`]: sleeping on the process latch while honouring cancel,
//!   `statement_timeout`, termination and postmaster death, under a named
//!   wait event where the server supports them.
//! - [`catalog`]: extension oids and schemas, the recovery state, reading a
//!   catalog or table with a systable scan.
//! - [`disk`]: free space on the filesystem holding `pg_wal`.
//! - [`hook`]: saving a previous hook and installing ours.
//! - [`exec_node`]: walking a started executor's plan-state tree and
//!   replacing a node's `ExecProcNode` so EXPLAIN ANALYZE still counts it.
//! - [`subxact`]: running a closure in an internal subtransaction that turns
//!   an ERROR into a `Result`.
//! - [`local`]: backend-local state without `thread_local!`'s lookup cost.
//! - [`guc`]: reading a setting without pgrx's per-read thread check, and
//!   reserving a prefix.
//! - [`time`]: the server clock, the Unix epoch, the monotonic clock every
//!   process shares.
//! - [`process`]: what kind of process this is (client backend, parallel
//!   worker and its leader, background worker) and its slot number.
//! - [`dsm`]: dynamic shared memory segments made for one query.
//! - [`prometheus`]: the Prometheus text exposition every `metrics()`
//!   function returns.
//! - [`spi`]: read-only queries that assign no transaction id (they work on
//!   a hot standby).
//! - [`text`]: copying C strings (catalog names, string settings) into Rust.
//!
//! Every `unsafe` block carries a `// SAFETY:` line; the extensions allow
//! `unsafe` only in their own `src/pg/` folder.
pub mod catalog;
pub mod disk;
pub mod dsm;
pub mod error;
pub mod exec_node;
pub mod guc;
pub mod hook;
pub mod local;
pub mod privileged;
pub mod process;
pub mod prometheus;
pub mod roles;
pub mod spi;
pub mod subxact;
pub mod text;
pub mod time;
pub mod wait;
