//! SQL functions in schema `pwb`.
use pgrx::prelude::*;

/// The extension's version, as installed in this library.
#[pg_extern(immutable, parallel_safe)]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `preloaded` when loaded through `shared_preload_libraries`, else
/// `not_preloaded` (SQL objects exist but admission control is inactive).
#[pg_extern(stable, parallel_safe)]
fn preload_status() -> &'static str {
    if crate::preload::is_preloaded() {
        "preloaded"
    } else {
        "not_preloaded"
    }
}
