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
        /// Admits every statement and draws the WAL it writes from the
        /// bucket while it runs, waiting whenever the bucket is empty.
        Pace = 5 => "pace",
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

/// "Use one of a, b, c." from the spellings of an enum.
fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    format!("Use one of {}.", names.collect::<Vec<_>>().join(", "))
}

/// Validates and normalises a scope kind: trimmed, lower-cased, known.
pub fn parse_scope_kind(raw: Option<&str>) -> Result<ScopeKind, ArgError> {
    let raw = raw.ok_or_else(|| {
        arg_error(
            "scope_kind must not be null",
            "scope_kind is NULL.".into(),
            &one_of(ScopeKind::ALL.iter().map(|k| k.as_str())),
        )
    })?;
    ScopeKind::parse(&raw.trim().to_lowercase()).ok_or_else(|| {
        arg_error(
            "invalid scope_kind",
            format!("scope_kind \"{}\" is not recognised.", truncate(raw)),
            &one_of(ScopeKind::ALL.iter().map(|k| k.as_str())),
        )
    })
}

/// Validates and normalises a mode: trimmed, lower-cased, known.
pub fn parse_mode(raw: Option<&str>) -> Result<Mode, ArgError> {
    let raw = raw.ok_or_else(|| {
        arg_error(
            "mode must not be null",
            "mode is NULL.".into(),
            &one_of(Mode::ALL.iter().map(|m| m.as_str())),
        )
    })?;
    Mode::parse(&raw.trim().to_lowercase()).ok_or_else(|| {
        arg_error(
            "invalid mode",
            format!("mode \"{}\" is not recognised.", truncate(raw)),
            &one_of(Mode::ALL.iter().map(|m| m.as_str())),
        )
    })
}

/// Validates and normalises a scope value: trimmed, at most 256 bytes.
/// NULL, empty or blank means a template policy (`Ok(None)`): it applies to
/// every value of its scope kind, each value with its own bucket.
pub fn parse_scope_value(raw: Option<&str>) -> Result<Option<String>, ArgError> {
    let Some(value) = raw.map(str::trim).filter(|v| !v.is_empty()) else {
        // No value: a template policy, for every value of its kind.
        return Ok(None);
    };
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
    Ok(Some(value.to_string()))
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

/// What matching needs of a policy row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyKey {
    pub policy_id: i32,
    pub enabled: bool,
    pub mode: Mode,
    pub scope_kind: ScopeKind,
    /// The scope value's hash; ignored for a template.
    pub scope_hash: i64,
    /// A template policy (no scope value) matches every value of its kind.
    pub template: bool,
    pub priority: i32,
    pub rate: u64,
    pub burst: u64,
}

impl PolicyKey {
    fn matches(&self, scope: &Scope) -> bool {
        scope.kind == self.scope_kind && (self.template || scope.hash == self.scope_hash)
    }

    /// Precedence: higher priority first, then a specific policy before a
    /// template of the same priority, then the lower policy id.
    fn precedes(&self, other: &PolicyKey) -> bool {
        (
            self.priority,
            !self.template,
            std::cmp::Reverse(self.policy_id),
        ) > (
            other.priority,
            !other.template,
            std::cmp::Reverse(other.policy_id),
        )
    }

    /// How firmly the mode holds the rate: observe (and off) not at all,
    /// shadow on paper, queue / reject (and any enforcing mode) for real.
    fn enforcement(&self) -> u8 {
        match self.mode {
            Mode::Off | Mode::Observe => 0,
            Mode::Shadow => 1,
            _ => 2,
        }
    }

    /// Whether this policy is at least as strict as `other`: it enforces at
    /// least as firmly, with no higher rate and no larger burst.
    pub fn at_least_as_strict_as(&self, other: &PolicyKey) -> bool {
        self.enforcement() >= other.enforcement()
            && self.rate <= other.rate
            && self.burst <= other.burst
    }
}

/// The policy that governs a statement, and the scope it matched through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Governing<'a> {
    pub key: &'a PolicyKey,
    /// Index into the statement's scopes.
    pub scope: usize,
    /// Whether a policy of higher precedence matched through a scope the
    /// session set itself, and was set aside because it is looser.
    pub overrode_looser: bool,
}

/// The policy that governs a statement belonging to `scopes`.
///
/// Among enabled policies whose mode is not `off` and whose scope is one of
/// the statement's: the highest priority, a specific policy before a
/// template of the same priority, ties going to the lowest policy id. One
/// rule more keeps a session from choosing a looser limit for itself: when
/// that winner matched only through a scope the session can set (its
/// `application_name`, a role reached by `SET ROLE`, a composite including
/// either), and a policy that matched through a scope it cannot set (the
/// tenant, the session user's role, the database) is stricter in any way,
/// the latter governs: a settable scope may tighten a limit, never loosen
/// it.
pub fn match_policy<'a>(
    policies: impl IntoIterator<Item = &'a PolicyKey>,
    scopes: &[Scope],
) -> Option<Governing<'a>> {
    let mut winner: Option<(&PolicyKey, usize)> = None;
    let mut anchor: Option<(&PolicyKey, usize)> = None;
    for policy in policies {
        if !policy.enabled || policy.mode == Mode::Off {
            continue;
        }
        // A policy matching through several scopes (a role template, for the
        // current and the session user) counts through its firmest one.
        let mut matched = scopes.iter().enumerate().filter(|(_, s)| policy.matches(s));
        let Some(first) = matched.next() else {
            continue;
        };
        let fixed = std::iter::once(first)
            .chain(matched)
            .find(|(_, s)| !s.settable);
        let index = fixed.map_or(first.0, |(i, _)| i);
        if winner.is_none_or(|(w, _)| policy.precedes(w)) {
            winner = Some((policy, index));
        }
        if fixed.is_some() && anchor.is_none_or(|(a, _)| policy.precedes(a)) {
            anchor = Some((policy, index));
        }
    }
    let (key, scope) = winner?;
    if let Some((a, a_scope)) = anchor
        && scopes[scope].settable
        && !key.at_least_as_strict_as(a)
    {
        return Some(Governing {
            key: a,
            scope: a_scope,
            overrode_looser: true,
        });
    }
    Some(Governing {
        key,
        scope,
        overrode_looser: false,
    })
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
            template: false,
            priority,
            rate: 1000,
            burst: 1000,
        }
    }

    fn enforcing(mut k: PolicyKey, mode: Mode, rate: u64, burst: u64) -> PolicyKey {
        k.mode = mode;
        k.rate = rate;
        k.burst = burst;
        k
    }

    fn template(id: i32, kind: ScopeKind, priority: i32) -> PolicyKey {
        let mut k = key(id, kind, "", priority);
        k.template = true;
        k.scope_hash = 0;
        k
    }

    fn context() -> ScopeContext {
        ScopeContext {
            tenant: Some("acme".into()),
            role: Some("alice".into()),
            session_role: None,
            database: Some("app".into()),
            application: Some("psql".into()),
        }
    }

    fn scopes() -> Vec<Scope> {
        context().classify(false)
    }

    fn governing_id(p: &[PolicyKey], scopes: &[Scope]) -> Option<i32> {
        match_policy(p, scopes).map(|g| g.key.policy_id)
    }

    #[test]
    fn highest_priority_wins() {
        let p = [
            key(1, ScopeKind::Role, "alice", 100),
            key(2, ScopeKind::Database, "app", 200),
        ];
        assert_eq!(governing_id(&p, &scopes()), Some(2));
    }

    #[test]
    fn ties_go_to_lowest_id() {
        let p = [
            key(7, ScopeKind::Application, "psql", 100),
            key(3, ScopeKind::Role, "alice", 100),
            key(5, ScopeKind::Tenant, "acme", 100),
        ];
        assert_eq!(governing_id(&p, &scopes()), Some(3));
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
        let g = match_policy(&p, &scopes()).unwrap();
        assert_eq!(g.key.policy_id, 9);
        assert_eq!(scopes()[g.scope].kind, ScopeKind::Database);
        assert!(match_policy(&p[..4], &scopes()).is_none());
    }

    #[test]
    fn an_application_name_cannot_pick_a_looser_policy() {
        let strict = enforcing(
            key(1, ScopeKind::Role, "alice", 100),
            Mode::Reject,
            100,
            100,
        );
        let generous = enforcing(
            key(2, ScopeKind::Application, "psql", 1000),
            Mode::Reject,
            10_000_000,
            10_000_000,
        );
        let p = [strict, generous];
        let g = match_policy(&p, &scopes()).unwrap();
        assert_eq!(g.key.policy_id, 1);
        assert!(g.overrode_looser);
        // A stricter application policy tightens: it governs.
        let tighter = enforcing(
            key(3, ScopeKind::Application, "psql", 1000),
            Mode::Reject,
            50,
            50,
        );
        let p = [strict, tighter];
        let g = match_policy(&p, &scopes()).unwrap();
        assert_eq!(g.key.policy_id, 3);
        assert!(!g.overrode_looser);
        // An observe policy matched through application_name does not lift a
        // reject policy either.
        let observe = key(4, ScopeKind::Application, "psql", 1000);
        assert_eq!(governing_id(&[strict, observe], &scopes()), Some(1));
    }

    #[test]
    fn set_role_to_a_role_without_a_policy_keeps_the_session_users() {
        let mut ctx = context();
        ctx.role = Some("helper".into());
        ctx.session_role = Some("alice".into());
        let scopes = ctx.classify(false);
        let alice = enforcing(
            key(1, ScopeKind::Role, "alice", 100),
            Mode::Reject,
            100,
            100,
        );
        assert_eq!(governing_id(&[alice], &scopes), Some(1));
        // A looser policy on the role it switched to is set aside; a
        // stricter one applies.
        let loose = enforcing(
            key(2, ScopeKind::Role, "helper", 500),
            Mode::Queue,
            1 << 30,
            1 << 30,
        );
        assert_eq!(governing_id(&[alice, loose], &scopes), Some(1));
        let tight = enforcing(key(3, ScopeKind::Role, "helper", 500), Mode::Reject, 10, 10);
        assert_eq!(governing_id(&[alice, tight], &scopes), Some(3));
        // Without SET ROLE the session user's role is not repeated.
        assert_eq!(
            context()
                .classify(false)
                .iter()
                .filter(|s| s.kind == ScopeKind::Role)
                .count(),
            1
        );
    }

    #[test]
    fn a_specific_policy_beats_a_template_of_the_same_priority() {
        let t = template(1, ScopeKind::Tenant, 100);
        let specific = key(2, ScopeKind::Tenant, "acme", 100);
        assert_eq!(governing_id(&[t, specific], &scopes()), Some(2));
        let other = key(3, ScopeKind::Tenant, "globex", 100);
        let p = [t, other];
        let g = match_policy(&p, &scopes()).unwrap();
        assert_eq!(g.key.policy_id, 1);
        assert_eq!(scopes()[g.scope].value, "acme");
        // A template of higher priority still wins.
        let high = template(4, ScopeKind::Tenant, 200);
        assert_eq!(governing_id(&[high, specific], &scopes()), Some(4));
    }

    #[test]
    fn arguments_are_trimmed_and_lowercased() {
        assert_eq!(parse_scope_kind(Some("  ROLE ")), Ok(ScopeKind::Role));
        assert_eq!(parse_mode(Some(" Queue\t")), Ok(Mode::Queue));
        assert_eq!(
            parse_scope_value(Some("  alice ")),
            Ok(Some("alice".into()))
        );
        assert_eq!(
            parse_scope_value(Some("   ")),
            Ok(None),
            "blank: a template"
        );
        assert_eq!(parse_scope_value(None), Ok(None), "NULL: a template");
    }

    #[test]
    fn bad_arguments_are_refused_with_detail() {
        let e = parse_scope_kind(Some("user")).unwrap_err();
        assert!(e.detail.contains("user"));
        assert!(parse_mode(Some("block")).is_err());
        assert!(parse_mode(None).is_err());
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
