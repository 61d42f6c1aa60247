//! Errors raised to users, in PostgreSQL message style.
use governance::budget::admission::Reason;
use governance::budget::policy::{ArgError, Mode};
use pgrx::PgLogLevel;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

fn raise(code: PgSqlErrorCode, message: String, detail: String, hint: String) -> ! {
    ErrorReport::new(code, message, "pg_wal_budget")
        .set_detail(detail)
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
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

/// An internal failure with pwb.fail_open off.
pub fn internal_failure(policy_id: i32) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
        "pg_wal_budget could not account for this statement".into(),
        format!("Policy {policy_id} has no budget bucket: the shared bucket table is full."),
        "Raise pwb.budget_bucket_capacity and restart, remove unused policies, or set pwb.fail_open = on.".into(),
    )
}
