//! `pg_throttle` domain logic: tuple pacing.
//!
//! - [`config`]: the node kinds (one list: columns, arguments, codes),
//!   which kinds a user's configuration throttles, at what rate, in which
//!   mode (per node or one budget per query), and what is counted.
//! - [`pacer`]: a token bucket kept as one number (GCRA), private to a
//!   process or shared by a parallel query's processes, that says how long
//!   to wait before the next tuple may pass.
//! - [`registry`]: the per-process bookkeeping of running queries, their
//!   buckets and the plan nodes and filters wrapped for them, keyed by
//!   opaque addresses.
pub mod config;
pub mod pacer;
pub mod registry;

pub use config::{Counting, Mode, NodeKind, ThrottleConfig};
pub use pacer::{Gcra, Grant, Pacer};
pub use registry::{Bucket, Ended, QueryTotals, Registry};
