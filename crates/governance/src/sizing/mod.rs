//! `pg_walrus` domain logic: `max_wal_size` sizing strategies.
//!
//! Everything here is pure arithmetic over numbers the caller passes in (the
//! checkpointer counters, the WAL insert position, the clock, the settings), so
//! the background worker and the SQL functions share one deterministic engine.
//!
//! - [`checkpoint`]: PostgreSQL's `CheckPointSegments` rule and the size a
//!   checkpoint cycle of a given WAL volume needs.
//! - [`strategy`]: the three sizing strategies (multiplicative, WAL rate,
//!   percentile) and shrinking.
//! - [`disk`]: the disk-aware cap from the filesystem holding `pg_wal`.
//! - [`sizer`]: interval bookkeeping (baseline, full intervals, WAL window),
//!   rate limiting, and the decision the worker records.
//! - [`simulate`]: a small checkpoint simulator used by tests and the docs to
//!   show convergence without oscillation.

pub mod checkpoint;
pub mod disk;
pub mod simulate;
pub mod sizer;
pub mod strategy;

pub use checkpoint::{MB, checkpoint_segments, required_size_mb};
pub use disk::WalDisk;
pub use sizer::{
    Action, CarrySource, Counters, Decision, Evaluation, KnownSize, Origin, Settings, SizerState,
    Tick,
};
pub use strategy::{Algorithm, Proposal};
