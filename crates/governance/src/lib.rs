//! Policy core shared by the three extensions. Pure Rust: no pgrx, no FFI, no
//! `unsafe`, no clock. Callers pass time in explicitly so every algorithm here
//! is deterministic and unit-testable.
//!
//! - [`token_bucket`]: the refill/charge/refund arithmetic both `pg_wal_budget`
//!   (bytes of WAL) and `pg_throttle` (tuples) build on.
//! - [`budget`]: `pg_wal_budget` policy matching, scopes, WAL prediction.
//! - [`sizing`]: `pg_walrus` `max_wal_size` sizing strategies.
//! - [`pacing`]: `pg_throttle` tuple pacing.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

#[macro_use]
pub mod codes;
pub mod budget;
pub mod pacing;
pub mod sizing;
pub mod token_bucket;
