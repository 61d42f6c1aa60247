//! Scope kinds, statement classification and scope hashes.

crate::sql_enum! {
    /// What a policy is attached to, in classification order (composite
    /// last).
    pub enum ScopeKind {
        Tenant = 1 => "tenant",
        Role = 2 => "role",
        Database = 3 => "database",
        Application = 4 => "application",
        Composite = 5 => "composite",
    }
}

/// What a backend knows about the statement's origin. Empty strings count as
/// unavailable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeContext {
    pub tenant: Option<String>,
    /// The current user (after `SET ROLE`).
    pub role: Option<String>,
    /// The session user (who logged in), when it differs from `role`.
    pub session_role: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
}

/// One scope a statement belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: ScopeKind,
    pub value: String,
    pub hash: i64,
    /// Whether the session can put itself in this scope: `application_name`
    /// (any session sets it), a role reached by `SET ROLE`, and a composite
    /// that includes either. A policy matched only through such a scope may
    /// tighten a limit but never loosen one (see `policy::match_policy`).
    pub settable: bool,
}

impl Scope {
    pub fn new(kind: ScopeKind, value: &str) -> Scope {
        Scope {
            kind,
            value: value.to_string(),
            hash: scope_hash(kind, value),
            settable: kind == ScopeKind::Application,
        }
    }

    fn settable(mut self, settable: bool) -> Scope {
        self.settable = settable;
        self
    }
}

fn available(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl ScopeContext {
    /// The canonical composite value `tenant=...|role=...|database=...|application=...`
    /// with unavailable components omitted, or `None` when fewer than two
    /// components are available.
    pub fn composite_value(&self) -> Option<String> {
        let parts: Vec<String> = [
            ("tenant", available(&self.tenant)),
            ("role", available(&self.role)),
            ("database", available(&self.database)),
            ("application", available(&self.application)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
        .collect();
        (parts.len() >= 2).then(|| parts.join("|"))
    }

    /// Whether the current role was reached by `SET ROLE` (it differs from
    /// the session user).
    fn role_was_set(&self) -> bool {
        available(&self.session_role).is_some_and(|s| Some(s) != available(&self.role))
    }

    /// The scopes a statement belongs to, in classification order: tenant,
    /// role (the current user), the session user's role when `SET ROLE`
    /// changed the current one, database, application, then (when enabled
    /// and at least two components are available) the composite first. The
    /// first is the statement's primary scope.
    pub fn classify(&self, composite_enabled: bool) -> Vec<Scope> {
        let role_set = self.role_was_set();
        let session_role = if role_set {
            available(&self.session_role)
        } else {
            None
        };
        let mut scopes: Vec<Scope> = [
            (ScopeKind::Tenant, available(&self.tenant), false),
            (ScopeKind::Role, available(&self.role), role_set),
            (ScopeKind::Role, session_role, false),
            (ScopeKind::Database, available(&self.database), false),
            (ScopeKind::Application, available(&self.application), true),
        ]
        .into_iter()
        .filter_map(|(kind, value, settable)| value.map(|v| Scope::new(kind, v).settable(settable)))
        .collect();
        if composite_enabled && let Some(value) = self.composite_value() {
            // With composites on, the composite is the most specific scope.
            let settable = role_set || available(&self.application).is_some();
            scopes.insert(
                0,
                Scope::new(ScopeKind::Composite, &value).settable(settable),
            );
        }
        scopes
    }
}

/// A stable 64-bit hash (FNV-1a) of a scope, never 0 (0 marks the global
/// profile). Identical in every backend and across restarts.
pub fn scope_hash(kind: ScopeKind, value: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind
        .as_str()
        .bytes()
        .chain(std::iter::once(b'\0'))
        .chain(value.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let signed = i64::from_ne_bytes(hash.to_ne_bytes());
    if signed == 0 { 1 } else { signed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(t: Option<&str>, r: Option<&str>, d: Option<&str>, a: Option<&str>) -> ScopeContext {
        ScopeContext {
            tenant: t.map(String::from),
            role: r.map(String::from),
            session_role: None,
            database: d.map(String::from),
            application: a.map(String::from),
        }
    }

    #[test]
    fn classification_order_is_tenant_role_database_application() {
        let scopes = ctx(Some("acme"), Some("alice"), Some("db1"), Some("psql")).classify(false);
        let kinds: Vec<_> = scopes.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ScopeKind::Tenant,
                ScopeKind::Role,
                ScopeKind::Database,
                ScopeKind::Application
            ]
        );
        assert_eq!(scopes[0].value, "acme");
    }

    #[test]
    fn unavailable_components_are_skipped() {
        let scopes = ctx(None, Some("alice"), Some("db1"), Some("")).classify(false);
        let kinds: Vec<_> = scopes.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![ScopeKind::Role, ScopeKind::Database]);
    }

    #[test]
    fn composite_value_is_canonical_and_omits_missing_parts() {
        assert_eq!(
            ctx(Some("t1"), Some("r"), Some("d"), Some("app")).composite_value(),
            Some("tenant=t1|role=r|database=d|application=app".into())
        );
        assert_eq!(
            ctx(None, Some("r"), Some("d"), None).composite_value(),
            Some("role=r|database=d".into())
        );
        assert_eq!(ctx(None, Some("r"), None, Some("")).composite_value(), None);
    }

    #[test]
    fn composite_only_when_enabled() {
        let c = ctx(None, Some("r"), Some("d"), None);
        assert!(
            c.classify(false)
                .iter()
                .all(|s| s.kind != ScopeKind::Composite)
        );
        let with = c.classify(true);
        assert_eq!(with[0].kind, ScopeKind::Composite);
        assert_eq!(with[0].value, "role=r|database=d");
    }

    #[test]
    fn hashes_differ_by_kind_and_value_and_are_stable() {
        let a = scope_hash(ScopeKind::Role, "alice");
        assert_eq!(a, scope_hash(ScopeKind::Role, "alice"));
        assert_ne!(a, scope_hash(ScopeKind::Tenant, "alice"));
        assert_ne!(a, scope_hash(ScopeKind::Role, "alicf"));
        assert_ne!(a, 0);
    }

    #[test]
    fn kind_codes_and_spellings_are_distinct() {
        assert!(crate::codes::distinct(
            ScopeKind::ALL,
            ScopeKind::code,
            ScopeKind::as_str
        ));
        assert_eq!(ScopeKind::parse("user"), None);
    }
}
