//! The one builder of decision rows (`pwb.recent_decisions()`): every
//! admission, locked or deferred, describes its statement the same way.
use crate::pg::shmem::DecisionSlot;
use crate::types::Resolution;
use governance::budget::admission::{DecisionKind, Reason};
use governance::budget::predict::StatementClass;

pub fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A decision about one statement, built up and then pushed to the ring.
pub struct Decision(DecisionSlot);

impl Decision {
    /// An `allowed` decision for a statement of `class` resolved to
    /// `resolution`, stamped `timestamp_epoch_ms`: the governing policy (and
    /// its mode), the scope profiles are keyed by, and the statement's ids.
    /// Its reason is `observe_mode` under a policy, `no_policy` without one.
    pub fn new(
        resolution: &Resolution,
        class: StatementClass,
        timestamp_epoch_ms: i64,
        query_id: i64,
        query_hash: i64,
    ) -> Decision {
        let (scope_hash, scope_kind, _) = resolution.profile_scope();
        let matched = resolution.matched.as_ref();
        Decision(DecisionSlot {
            seq: 0,
            timestamp_epoch_ms,
            decision_kind: DecisionKind::Allowed.code(),
            reason: match matched {
                Some(_) => Reason::ObserveMode.code(),
                None => Reason::NoPolicy.code(),
            },
            scope_kind: scope_kind.code(),
            statement_class: class.code(),
            mode: matched.map_or(0, |m| m.mode.code()),
            policy_id: matched.map_or(0, |m| m.policy_id),
            scope_hash,
            query_id,
            query_hash,
            predicted_wal_bytes: 0,
            actual_wal_bytes: -1,
            available_before: -1,
            available_after: -1,
        })
    }

    pub fn outcome(mut self, kind: DecisionKind, reason: Reason) -> Decision {
        self.0.decision_kind = kind.code();
        self.0.reason = reason.code();
        self
    }

    pub fn predicted(mut self, bytes: u64) -> Decision {
        self.0.predicted_wal_bytes = clamp_i64(bytes);
        self
    }

    pub fn actual(mut self, bytes: u64) -> Decision {
        self.0.actual_wal_bytes = clamp_i64(bytes);
        self
    }

    /// The bucket's level before and after the decision.
    pub fn levels(mut self, before: u64, after: u64) -> Decision {
        self.0.available_before = clamp_i64(before);
        self.0.available_after = clamp_i64(after);
        self
    }

    pub fn into_slot(self) -> DecisionSlot {
        self.0
    }
}
