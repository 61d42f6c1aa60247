//! Policy modes, argument validation and policy matching.
use super::scope::{Scope, ScopeKind};

crate::sql_enum! {
    /// What a policy does with a statement it matches.
    pub enum Mode {
        Off = 0 => "off",
        Observe = 1 => "observe",
        Shadow = 2 => "shadow",
        Queue = 3 => "queue",
        Reject = 4 => "reject",
    }
}

/// Longest accepted scope value, in bytes.
pub const MAX_SCOPE_VALUE_BYTES: usize = 256;

/// A rejected argument: which one, the offending value, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub message: String,
    pub detail: String,
    pub hint: String,
}

fn arg_error(message: &str, detail: String, hint: &str) -> ArgError {
    ArgError {
        message: message.to_string(),
        detail,
        hint: hint.to_string(),
    }
}

/// Validates and normalises a scope kind: trimmed, lower-cased, known.
pub fn parse_scope_kind(raw: Option<&str>) -> Result<ScopeKind, ArgError> {
    let raw = raw.ok_or_else(|| {
        arg_error(
            "scope_kind must not be null",
            "scope_kind is NULL.".into(),
            "Use one of tenant, role, database, application, composite.",
        )
    })?;
    ScopeKind::parse(&raw.trim().to_lowercase()).ok_or_else(|| {
        arg_error(
            "invalid scope_kind",
            format!("scope_kind \"{}\" is not recognised.", truncate(raw)),
            "Use one of tenant, role, database, application, composite.",
        )
    })
}

/// Validates and normalises a mode: trimmed, lower-cased, known.
pub fn parse_mode(raw: Option<&str>) -> Result<Mode, ArgError> {
    let raw = raw.ok_or_else(|| {
        arg_error(
            "mode must not be null",
            "mode is NULL.".into(),
            "Use one of off, observe, shadow, queue, reject.",
        )
    })?;
    Mode::parse(&raw.trim().to_lowercase()).ok_or_else(|| {
        arg_error(
            "invalid mode",
            format!("mode \"{}\" is not recognised.", truncate(raw)),
            "Use one of off, observe, shadow, queue, reject.",
        )
    })
}

/// Validates a scope value: trimmed, non-empty, at most
/// [`MAX_SCOPE_VALUE_BYTES`] bytes.
pub fn parse_scope_value(raw: Option<&str>) -> Result<String, ArgError> {
    let raw = raw.ok_or_else(|| {
        arg_error(
            "scope_value must not be null",
            "scope_value is NULL.".into(),
            "Pass the tenant, role, database or application name the policy applies to.",
        )
    })?;
    let value = raw.trim();
    if value.is_empty() {
        return Err(arg_error(
            "scope_value must not be empty",
            "scope_value is empty after trimming whitespace.".into(),
            "Pass the tenant, role, database or application name the policy applies to.",
        ));
    }
    if value.len() > MAX_SCOPE_VALUE_BYTES {
        return Err(arg_error(
            "scope_value is too long",
            format!(
                "scope_value has {} bytes; the limit is {MAX_SCOPE_VALUE_BYTES}.",
                value.len()
            ),
            "Use a shorter scope value.",
        ));
    }
    Ok(value.to_string())
}

/// Validates rate and burst: rate > 0, burst >= rate.
pub fn validate_limits(rate: Option<i64>, burst: Option<i64>) -> Result<(u64, u64), ArgError> {
    let rate = rate.ok_or_else(|| {
        arg_error(
            "wal_rate_bytes_per_sec must not be null",
            "wal_rate_bytes_per_sec is NULL.".into(),
            "Pass a positive number of bytes per second.",
        )
    })?;
    let burst = burst.ok_or_else(|| {
        arg_error(
            "wal_burst_bytes must not be null",
            "wal_burst_bytes is NULL.".into(),
            "Pass a number of bytes at least as large as wal_rate_bytes_per_sec.",
        )
    })?;
    if rate <= 0 {
        return Err(arg_error(
            "wal_rate_bytes_per_sec must be positive",
            format!("wal_rate_bytes_per_sec is {rate}."),
            "Pass a positive number of bytes per second.",
        ));
    }
    if burst < rate {
        return Err(arg_error(
            "wal_burst_bytes must be at least wal_rate_bytes_per_sec",
            format!("wal_burst_bytes is {burst}, wal_rate_bytes_per_sec is {rate}."),
            "Pass a burst at least as large as the rate.",
        ));
    }
    Ok((rate.unsigned_abs(), burst.unsigned_abs()))
}

/// Validates a priority (any non-null integer).
pub fn validate_priority(priority: Option<i32>) -> Result<i32, ArgError> {
    priority.ok_or_else(|| {
        arg_error(
            "priority must not be null",
            "priority is NULL.".into(),
            "Pass an integer priority; higher wins.",
        )
    })
}

/// Validates a policy id argument.
pub fn validate_policy_id(policy_id: Option<i32>) -> Result<i32, ArgError> {
    match policy_id {
        None => Err(arg_error(
            "policy_id must not be null",
            "policy_id is NULL.".into(),
            "Pass the id returned by pwb.create_policy(); see pwb.policies().",
        )),
        Some(id) if id <= 0 => Err(arg_error(
            "invalid policy_id",
            format!("policy_id {id} is not positive."),
            "Pass the id returned by pwb.create_policy(); see pwb.policies().",
        )),
        Some(id) => Ok(id),
    }
}

/// Validates a tenant name for `set_tenant`.
pub fn parse_tenant(raw: Option<&str>) -> Result<String, ArgError> {
    let raw = raw.ok_or_else(|| {
        arg_error(
            "tenant must not be null",
            "tenant is NULL.".into(),
            "Use pwb.clear_tenant() to clear the tenant.",
        )
    })?;
    let value = raw.trim();
    if value.is_empty() {
        return Err(arg_error(
            "tenant must not be empty",
            "tenant is empty after trimming whitespace.".into(),
            "Use pwb.clear_tenant() to clear the tenant.",
        ));
    }
    if value.len() > MAX_SCOPE_VALUE_BYTES {
        return Err(arg_error(
            "tenant is too long",
            format!(
                "tenant has {} bytes; the limit is {MAX_SCOPE_VALUE_BYTES}.",
                value.len()
            ),
            "Use a shorter tenant name.",
        ));
    }
    Ok(value.to_string())
}

fn truncate(raw: &str) -> String {
    raw.chars().take(64).collect()
}

/// The facts about a policy that matching needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyKey {
    pub policy_id: i32,
    pub enabled: bool,
    pub mode: Mode,
    pub scope_kind: ScopeKind,
    pub scope_hash: i64,
    pub priority: i32,
}

/// The policy that governs a statement belonging to `scopes`: among enabled
/// policies whose mode is not `off` and whose scope is one of the
/// statement's, the highest priority, ties going to the lowest policy id.
pub fn match_policy<'a>(
    policies: impl IntoIterator<Item = &'a PolicyKey>,
    scopes: &[Scope],
) -> Option<(&'a PolicyKey, usize)> {
    let mut best: Option<(&PolicyKey, usize)> = None;
    for policy in policies {
        if !policy.enabled || policy.mode == Mode::Off {
            continue;
        }
        let Some(index) = scopes
            .iter()
            .position(|s| s.kind == policy.scope_kind && s.hash == policy.scope_hash)
        else {
            continue;
        };
        let better = match best {
            None => true,
            Some((b, _)) => {
                policy.priority > b.priority
                    || (policy.priority == b.priority && policy.policy_id < b.policy_id)
            }
        };
        if better {
            best = Some((policy, index));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::scope::ScopeContext;

    fn key(id: i32, kind: ScopeKind, value: &str, priority: i32) -> PolicyKey {
        PolicyKey {
            policy_id: id,
            enabled: true,
            mode: Mode::Observe,
            scope_kind: kind,
            scope_hash: crate::budget::scope::scope_hash(kind, value),
            priority,
        }
    }

    fn scopes() -> Vec<Scope> {
        ScopeContext {
            tenant: Some("acme".into()),
            role: Some("alice".into()),
            database: Some("app".into()),
            application: Some("psql".into()),
        }
        .classify(false)
    }

    #[test]
    fn highest_priority_wins() {
        let p = [
            key(1, ScopeKind::Role, "alice", 100),
            key(2, ScopeKind::Database, "app", 200),
        ];
        assert_eq!(match_policy(&p, &scopes()).unwrap().0.policy_id, 2);
    }

    #[test]
    fn ties_go_to_lowest_id() {
        let p = [
            key(7, ScopeKind::Application, "psql", 100),
            key(3, ScopeKind::Role, "alice", 100),
            key(5, ScopeKind::Tenant, "acme", 100),
        ];
        assert_eq!(match_policy(&p, &scopes()).unwrap().0.policy_id, 3);
    }

    #[test]
    fn disabled_off_and_foreign_policies_do_not_match() {
        let mut disabled = key(1, ScopeKind::Role, "alice", 500);
        disabled.enabled = false;
        let mut off = key(2, ScopeKind::Role, "alice", 400);
        off.mode = Mode::Off;
        let other = key(3, ScopeKind::Role, "bob", 300);
        let kind_mismatch = key(4, ScopeKind::Tenant, "alice", 300);
        let ok = key(9, ScopeKind::Database, "app", 1);
        let p = [disabled, off, other, kind_mismatch, ok];
        let (m, index) = match_policy(&p, &scopes()).unwrap();
        assert_eq!(m.policy_id, 9);
        assert_eq!(index, 2);
        assert!(match_policy(&p[..4], &scopes()).is_none());
    }

    #[test]
    fn arguments_are_trimmed_and_lowercased() {
        assert_eq!(parse_scope_kind(Some("  ROLE ")), Ok(ScopeKind::Role));
        assert_eq!(parse_mode(Some(" Queue\t")), Ok(Mode::Queue));
        assert_eq!(parse_scope_value(Some("  alice ")), Ok("alice".into()));
    }

    #[test]
    fn bad_arguments_are_refused_with_detail() {
        let e = parse_scope_kind(Some("user")).unwrap_err();
        assert!(e.detail.contains("user"));
        assert!(parse_mode(Some("block")).is_err());
        assert!(parse_mode(None).is_err());
        assert!(parse_scope_value(Some("   ")).is_err());
        assert!(parse_scope_value(Some(&"x".repeat(MAX_SCOPE_VALUE_BYTES + 1))).is_err());
        assert!(parse_scope_value(Some(&"x".repeat(MAX_SCOPE_VALUE_BYTES))).is_ok());
        assert!(validate_limits(Some(0), Some(10)).is_err());
        assert!(validate_limits(Some(-5), Some(10)).is_err());
        let e = validate_limits(Some(10), Some(9)).unwrap_err();
        assert!(e.detail.contains('9') && e.detail.contains("10"));
        assert_eq!(validate_limits(Some(10), Some(10)), Ok((10, 10)));
        assert!(validate_limits(None, Some(10)).is_err());
        assert_eq!(
            validate_limits(Some(i64::MAX), Some(i64::MAX)),
            Ok((i64::MAX as u64, i64::MAX as u64))
        );
        assert!(validate_policy_id(Some(0)).is_err());
        assert!(validate_policy_id(None).is_err());
        assert!(validate_priority(None).is_err());
        assert!(parse_tenant(Some(" ")).is_err());
        assert_eq!(parse_tenant(Some(" acme ")), Ok("acme".into()));
    }
}
