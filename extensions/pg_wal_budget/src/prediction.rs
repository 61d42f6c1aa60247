//! A statement's predicted WAL, from the profiles in shared memory, keyed by
//! (scope, query id): the statement's scope first, the global profile
//! (scope 0) only when the scope has none, no lookup at all without a query
//! id or with the class-fallback predictor; and learning from what a
//! completed statement measured.
use crate::guc;
use crate::pg::shmem::{Locked, ProfileSlot};
use governance::budget::predict::{self, Predictor, Profile, StatementClass};

pub fn predict(shm: &mut Locked, scope_hash: i64, query_id: i64, class: StatementClass) -> u64 {
    let mut profile = |scope| shm.profile(scope, query_id, false).map(|p| to_profile(p));
    let predictor = guc::predictor();
    let wants_profiles = query_id != 0 && predictor == Predictor::ProfileEwma;
    let scope_profile = wants_profiles
        .then(|| profile(scope_hash))
        .flatten()
        .filter(|p| p.calls > 0);
    let global_profile = (wants_profiles && scope_profile.is_none())
        .then(|| profile(0))
        .flatten();
    let (predicted, _) = predict::predict(
        predictor,
        class,
        scope_profile.as_ref(),
        global_profile.as_ref(),
        guc::prediction_defaults(),
    );
    predicted
}

/// Learns `actual` bytes for (scope, query id) and for the query id across
/// scopes (scope 0).
pub fn learn(shm: &mut Locked, scope: i64, query_id: i64, actual: u64, now_epoch_ms: i64) {
    if query_id == 0 {
        return;
    }
    let alpha = guc::profile_ewma_alpha();
    for scope in [scope, 0] {
        if let Some(p) = shm.profile(scope, query_id, true) {
            let mut profile = to_profile(p);
            profile.observe(actual, alpha);
            p.calls = profile.calls;
            p.ewma_wal_bytes = profile.ewma_wal_bytes;
            p.max_wal_bytes = profile.max_wal_bytes;
            p.last_seen_epoch_ms = now_epoch_ms;
        }
        if scope == 0 {
            break;
        }
    }
}

fn to_profile(p: &ProfileSlot) -> Profile {
    Profile {
        calls: p.calls,
        ewma_wal_bytes: p.ewma_wal_bytes,
        max_wal_bytes: p.max_wal_bytes,
    }
}
