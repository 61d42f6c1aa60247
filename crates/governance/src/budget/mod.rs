//! `pg_wal_budget` domain logic: scopes, policy matching, WAL prediction,
//! admission decisions and reconciliation. Pure Rust; time is passed in.
//!
//! - [`scope`]: scope kinds, classification order, canonical composite value,
//!   scope hashes.
//! - [`policy`]: modes, argument validation/normalisation, policy matching.
//! - [`predict`]: EWMA WAL profiles and the prediction fallback chain.
//! - [`admission`]: the per-mode decision on top of the token bucket, and the
//!   reconciliation of prediction against measured WAL.
//! - [`buckets`]: a policy's enforcement bucket and shadow copy, and every
//!   admission and settlement against them.
//! - [`feedback`]: the replica-lag and WAL-disk control law.
//! - [`text_hash`]: the hash of a statement's text (`query_hash`).
pub mod admission;
pub mod buckets;
pub mod feedback;
pub mod policy;
pub mod predict;
pub mod scope;
pub mod text_hash;
