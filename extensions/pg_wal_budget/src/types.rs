//! The types a statement carries through admission and settlement, owned
//! here so that every module that passes them around depends on this one
//! and not on each other.
use governance::budget::admission::Ledger;
use governance::budget::policy::{Mode, PolicyKey};
use governance::budget::predict::StatementClass;
use governance::budget::scope::{Scope, ScopeKind};
use pgrx::pg_sys;
use std::sync::Arc;

/// One policy row as this backend knows it.
#[derive(Debug, Clone)]
pub struct CachedPolicy {
    pub key: PolicyKey,
    /// None for a template policy.
    pub scope_value: Option<String>,
    /// Where its buckets are in shared memory (None: the table was full).
    pub slot: Option<usize>,
}

/// Which bucket a statement is charged to: a policy's own, or, for a
/// template policy, the bucket of the one value the statement belongs to.
/// The slot indexes are hints (where the bucket was last seen); the ids are
/// checked on every use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRef {
    pub slot: usize,
    pub policy_id: i32,
    /// For a template policy: the value's scope hash (never 0); 0 for a
    /// policy's own bucket.
    pub value_hash: i64,
    pub value_slot: usize,
}

impl BucketRef {
    pub fn policy(slot: usize, policy_id: i32) -> BucketRef {
        BucketRef {
            slot,
            policy_id,
            value_hash: 0,
            value_slot: 0,
        }
    }
}

/// A policy as matched for one statement.
#[derive(Debug, Clone)]
pub struct Matched {
    pub policy_id: i32,
    pub mode: Mode,
    pub scope_kind: ScopeKind,
    /// The value the statement matched through (for a template policy, the
    /// statement's own value).
    pub scope_value: String,
    pub scope_hash: i64,
    pub slot: Option<usize>,
    /// A template policy: each value has its own bucket.
    pub template: bool,
}

impl Matched {
    pub fn describe(&self) -> String {
        let template = if self.template {
            ", template policy"
        } else {
            ""
        };
        format!(
            "{} \"{}\"{template}",
            self.scope_kind.as_str(),
            self.scope_value
        )
    }

    /// Whether a statement governed by this policy charges a bucket up
    /// front (queue and reject), checks shadow's copy, or only records.
    pub fn ledger(&self) -> Ledger {
        Ledger::for_mode(self.mode)
    }
}

/// What a statement's scope and policy were resolved from; a cached
/// [`Resolution`] is reused while these stay the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub epoch: u64,
    pub role_oid: pg_sys::Oid,
    pub tenant: Option<String>,
    pub application: Option<String>,
    pub composite: bool,
}

/// Where a statement comes from and which policy governs it.
#[derive(Debug)]
pub struct Resolution {
    /// The statement's primary scope (the first in classification order).
    pub primary: Option<Scope>,
    pub matched: Option<Matched>,
    pub inputs: Inputs,
}

impl Resolution {
    /// The scope profiles and telemetry are keyed by: the governing policy's
    /// scope, else the statement's primary scope (hash 0 when there is none).
    pub fn profile_scope(&self) -> (i64, ScopeKind, &str) {
        match (&self.matched, &self.primary) {
            (Some(m), _) => (m.scope_hash, m.scope_kind, m.scope_value.as_str()),
            (None, Some(p)) => (p.hash, p.kind, p.value.as_str()),
            (None, None) => (0, ScopeKind::Role, ""),
        }
    }

    /// Whether a statement resolved this way charges nothing: observe mode,
    /// or no policy. A policy without a bucket slot is not among them: it
    /// takes the locked path, which fails open or errors.
    pub fn charges_nothing(&self) -> bool {
        self.matched
            .as_ref()
            .is_none_or(|m| m.ledger() == Ledger::None && m.slot.is_some())
    }
}

/// What the decision of a statement that charges nothing is written from,
/// kept until the statement is settled: its class, when it was admitted,
/// its text's hash, and the scope and policy it was resolved to. (Small on
/// purpose: every governed statement's entry is moved a few times.)
#[derive(Debug, Clone)]
pub struct Deferred {
    pub class: StatementClass,
    pub timestamp_epoch_ms: i64,
    pub query_hash: i64,
    pub resolution: Arc<Resolution>,
}

/// One admitted statement waiting for its end.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Identity of the QueryDesc / PlannedStmt that opened it.
    pub marker: usize,
    pub subxid: pg_sys::SubTransactionId,
    pub wal_start: u64,
    pub predicted: u64,
    pub charged: u64,
    /// Which bucket of the governing policy the measured WAL is settled in.
    pub ledger: Ledger,
    /// The bucket of the governing policy.
    pub policy: Option<BucketRef>,
    pub dboid: u32,
    pub profile_scope: i64,
    pub query_id: i64,
    pub decision_seq: u64,
    /// Set for a statement admitted without writing shared state (observe
    /// mode, or no policy): its decision is written when it is settled.
    pub deferred: Option<Deferred>,
    /// Opened by ProcessUtility: may span internal commits (VACUUM, CREATE
    /// INDEX CONCURRENTLY), so it survives transaction commit.
    pub utility: bool,
}

/// A settled statement that charged nothing (observe mode, or no policy),
/// held by its backend until it is written to shared memory.
#[derive(Debug, Clone)]
pub struct Measured {
    pub entry: Entry,
    /// The WAL it wrote.
    pub actual: u64,
    /// Whether it ran to completion (only then is its profile learned).
    pub completed: bool,
}

/// WAL this backend wrote that no settled statement accounts for, and the
/// policy it is charged to (as debt) when the transaction ends: what was
/// written after the last governed statement settled (mostly the commit
/// record), and everything statements that are not admitted wrote (a
/// `SELECT` calling a function that writes: sequences, large objects,
/// logical messages).
#[derive(Debug, Clone, Copy)]
pub struct Tail {
    /// The bucket charged.
    pub policy: BucketRef,
    pub dboid: u32,
    pub ledger: Ledger,
    /// The backend's WAL counter from which WAL is unaccounted for.
    pub wal_mark: u64,
}
