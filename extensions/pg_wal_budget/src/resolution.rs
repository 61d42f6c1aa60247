//! Resolving a statement's scopes (tenant → role → database → application,
//! or composite) and the policy that governs it. Classifying and matching
//! allocate, so the result is cached in the session and reused until an
//! input changes: the role, the tenant, application_name,
//! `pwb.composite_scope_enabled` or the loaded policies. A stream of
//! statements from one session then costs a few comparisons each.
use crate::guc;
use crate::pg::process;
use crate::session;
use crate::types::{CachedPolicy, Inputs, Matched, Resolution};
use governance::budget::policy;
use governance::budget::scope::{Scope, ScopeContext};
use std::sync::Arc;

/// The current statement's [`Resolution`], from the cache when its inputs
/// are unchanged.
pub fn resolve(composite: bool) -> Arc<Resolution> {
    if let Some(resolution) = cached(composite) {
        return resolution;
    }
    let role_oid = process::current_user_oid();
    let session_oid = pgsupport::roles::session_user();
    let application = process::application_name();
    let tenant = guc::tenant();
    // The session user's role counts too, when SET ROLE changed the current
    // one (see `governance::budget::policy::match_policy`).
    let session_role = (session_oid != role_oid)
        .then(|| pgsupport::roles::role_name(session_oid))
        .flatten();
    session::resolve_with(
        role_oid,
        pgsupport::roles::role_name,
        pgsupport::catalog::database_name,
        |policies, role, database, epoch| {
            let context = ScopeContext {
                tenant: tenant.clone(),
                role: role.map(str::to_string),
                session_role: session_role.clone(),
                database: database.map(str::to_string),
                application: application.clone(),
            };
            let scopes = context.classify(composite);
            Resolution {
                matched: match_policy(policies, &scopes),
                primary: scopes.into_iter().next(),
                inputs: Inputs {
                    epoch,
                    role_oid,
                    tenant,
                    application,
                    composite,
                },
            }
        },
    )
}

/// The cached [`Resolution`] when none of its inputs changed since it was
/// made, else None. Never panics (it runs outside pgrx's guard).
pub fn cached(composite: bool) -> Option<Arc<Resolution>> {
    let role_oid = process::current_user_oid();
    session::cached_resolution(|r, epoch| {
        let i = &r.inputs;
        i.epoch == epoch
            && i.role_oid == role_oid
            && i.composite == composite
            && guc::tenant_is(i.tenant.as_deref())
            && process::application_name_is(i.application.as_deref())
    })
}

/// The governing policy for `scopes` among `policies`.
fn match_policy(policies: &[CachedPolicy], scopes: &[Scope]) -> Option<Matched> {
    let governing = policy::match_policy(policies.iter().map(|p| &p.key), scopes)?;
    let key = governing.key;
    let cached = policies.iter().find(|p| p.key.policy_id == key.policy_id)?;
    let scope = &scopes[governing.scope];
    Some(Matched {
        policy_id: key.policy_id,
        mode: key.mode,
        scope_kind: key.scope_kind,
        scope_value: scope.value.clone(),
        scope_hash: scope.hash,
        slot: cached.slot,
        template: key.template,
    })
}
