//! Errors raised to users, in PostgreSQL message style.
use governance::budget::admission::Reason;
use governance::budget::policy::{ArgError, Mode};
use pgrx::prelude::*;

fn raise(code: PgSqlErrorCode, message: String, detail: String, hint: String) -> ! {
    pgsupport::error::raise("pg_wal_budget", code, message, detail, hint)
}

/// A bad argument: 22023.
pub fn bad_argument(e: ArgError) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        e.message,
        e.detail,
        e.hint,
    )
}

/// Shared memory is not there: the library was not preloaded.
pub fn not_preloaded() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pg_wal_budget is not loaded through shared_preload_libraries".into(),
        "This function needs pg_wal_budget's shared memory, which exists only when the library is preloaded.".into(),
        "Add pg_wal_budget to shared_preload_libraries and restart PostgreSQL.".into(),
    )
}

pub fn privilege(what: &str, role: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("permission denied to {what}"),
        format!("Only superusers and members of {role} may {what}."),
        format!("Ask an administrator to GRANT {role} to your role."),
    )
}

pub fn no_such_policy(policy_id: i32) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        "policy does not exist".into(),
        format!("No policy has policy_id {policy_id}."),
        "See pwb.policies() for existing policies.".into(),
    )
}

/// A statement refused for lack of budget: 53400.
#[allow(clippy::too_many_arguments)]
pub fn budget_exceeded(
    policy_id: i32,
    mode: Mode,
    scope: &str,
    predicted: u64,
    available: u64,
    rate: u64,
    burst: u64,
    reason: Reason,
) -> ! {
    let (message, hint) = if reason == Reason::ExceedsBurst {
        (
            "statement exceeds the WAL burst of its pg_wal_budget policy",
            "The statement can never fit: raise wal_burst_bytes with pwb.update_policy(), or split the statement.",
        )
    } else {
        (
            "WAL budget exceeded",
            "Retry later, raise the policy's limits with pwb.update_policy(), or switch it to queue mode with pwb.set_policy_mode().",
        )
    };
    raise(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        message.into(),
        format!(
            "Predicted WAL is {predicted} bytes; {available} bytes are available. Policy {policy_id} ({scope}, mode {}) allows {rate} bytes/s with a burst of {burst} bytes.",
            mode.as_str()
        ),
        hint.into(),
    )
}

/// The log says once per policy that it found the bucket table full.
pub fn warn_without_bucket(policy_id: i32) {
    pgsupport::error::Report::new(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!("pg_wal_budget policy {policy_id} has no budget bucket: the bucket table is full"),
    )
    .detail(format!(
        "The table holds pwb.budget_bucket_capacity = {} policies; statements governed by policy {policy_id} are admitted without accounting (pwb.fail_open = on) or refused (off).",
        crate::guc::capacities().buckets
    ))
    .hint("Raise pwb.budget_bucket_capacity (or pwb.shmem_capacity) and restart, or remove unused policies.")
    .log("pg_wal_budget", pgrx::PgLogLevel::WARNING);
}

/// create_policy when the bucket table is full: 53400.
pub fn bucket_table_full() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        "cannot create the policy: the pg_wal_budget bucket table is full".into(),
        format!(
            "Every one of the pwb.budget_bucket_capacity = {} budget buckets is in use.",
            crate::guc::capacities().buckets
        ),
        "Raise pwb.budget_bucket_capacity (or pwb.shmem_capacity) and restart PostgreSQL, or delete unused policies.".into(),
    )
}

/// A queued statement gave up waiting: 55P03.
pub fn queue_gave_up(policy_id: i32, why: &str, waited_ms: u64) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
        format!("statement gave up waiting for WAL budget: {why}"),
        format!("It waited {waited_ms} ms in the queue of policy {policy_id} while holding its locks."),
        "Retry the transaction; to let queued statements wait longer, raise lock_timeout or set pwb.queue_yields_to_lock_waiters = off.".into(),
    )
}

/// An internal failure with pwb.fail_open off.
pub fn internal_failure(policy_id: i32) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
        "pg_wal_budget could not account for this statement".into(),
        format!("Policy {policy_id} has no budget bucket: the shared bucket table is full."),
        "Raise pwb.budget_bucket_capacity and restart, remove unused policies, or set pwb.fail_open = on.".into(),
    )
}
