//! `pg_throttle` domain logic: tuple pacing.
//!
//! - [`config`]: which node kinds a user's configuration throttles, at what
//!   rate, in which mode (per node or one budget per query).
//! - [`pacer`]: a token bucket with a small burst that says how long to sleep
//!   before the next tuple may be returned.
//! - [`registry`]: the per-backend bookkeeping of running queries, their
//!   pacers and the plan nodes wrapped for them, keyed by opaque addresses.
pub mod config;
pub mod pacer;
pub mod registry;

pub use config::{Mode, NodeKind, ThrottleConfig};
pub use pacer::Pacer;
pub use registry::Registry;
