//! What is never throttled, whoever runs it:
//!
//! - processes that serve no client: background workers (pg_walrus's
//!   worker, pg_wal_budget's profile writer, any other extension's),
//!   autovacuum, WAL senders, auxiliary processes. A parallel worker is
//!   throttled exactly when its leader's query is (the leader tells it
//!   through the shared segment, see [`crate::parallel`]);
//! - the internal statements our extensions run as the bootstrap superuser
//!   (pg_wal_budget's policy reload, pg_walrus's history writes from SQL
//!   functions): they run inside `pgsupport::privileged::as_superuser`,
//!   which this detects in any extension built on pgsupport.
use pgsupport::{privileged, process};

/// Whether statements this process starts now are exempt from throttling.
pub fn statement_is_exempt() -> bool {
    !process::is_client_backend() || privileged::in_superuser_section()
}
