//! The admission decision per mode, on top of the shared token bucket, and
//! reconciliation of the charge against the measured WAL.
use super::policy::Mode;
use crate::token_bucket::{BucketLimits, ChargeRefusal, TokenBucket};

crate::sql_enum! {
    /// The decision kinds `pwb.recent_decisions()` reports.
    pub enum DecisionKind {
        Allowed = 1 => "allowed",
        Rejected = 2 => "rejected",
        WouldReject = 3 => "would_reject",
        Queued = 4 => "queued",
        InternalErrorFailOpen = 5 => "internal_error_fail_open",
        Paced = 6 => "paced",
    }
}

crate::sql_enum! {
    /// Why a decision was taken (`reason_code`).
    pub enum Reason {
        NoPolicy = 1 => "no_policy",
        ObserveMode = 2 => "observe_mode",
        ShadowMode = 3 => "shadow_mode",
        BudgetAvailable = 4 => "budget_available",
        BudgetExceeded = 5 => "budget_exceeded",
        ExceedsBurst = 6 => "prediction_exceeds_burst",
        QueuedThenAdmitted = 7 => "queued_then_admitted",
        InternalErrorFailOpen = 8 => "internal_error_fail_open",
        Disabled = 9 => "disabled",
        PaceMode = 10 => "pace_mode",
        ReplicaLagFeedback = 11 => "replica_lag_feedback",
        WalDiskFeedback = 12 => "wal_disk_feedback",
    }
}

/// The outcome of one admission attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Run the statement. `charged` bytes were taken from the bucket up front
    /// (0 in observe and shadow mode).
    Admit {
        charged: u64,
        kind: DecisionKind,
        reason: Reason,
    },
    /// Refuse the statement now.
    Reject { reason: Reason },
    /// Queue and pace mode: not enough budget yet; try again after at most
    /// `wait_micros`.
    Wait { wait_micros: u64 },
}

/// How much WAL a paced statement reserves from the bucket at a time: about
/// a sixteenth of a second of the rate, at least 8 kB, at most a quarter of
/// the burst (and never more than the burst). Small enough that what it has
/// reserved but not yet written is a small part of any window of a few
/// seconds, large enough that the bucket's lock is taken a few times a
/// second at most.
pub fn pace_chunk(limits: BucketLimits) -> u64 {
    const MIN: u64 = 8 * 1024;
    let quarter = (limits.burst / 4).max(MIN);
    (limits.rate_per_sec / 16)
        .clamp(MIN, quarter)
        .min(limits.burst)
}

/// One admission attempt against `bucket` at `now_micros`. Observe admits
/// without looking; shadow checks without charging and reports a would-be
/// rejection; queue charges or asks to wait (a prediction above the burst is
/// rejected since it can never fit); reject charges or rejects. Pace never
/// refuses: `predicted` is the chunk it reserves (see [`pace_chunk`]), taken
/// when the bucket holds it (its debt repaid), else it waits.
pub fn admit(
    mode: Mode,
    bucket: &mut TokenBucket,
    limits: BucketLimits,
    predicted: u64,
    now_micros: u64,
) -> Admission {
    bucket.refill(limits, now_micros);
    match mode {
        Mode::Off => admit_free(Reason::Disabled),
        Mode::Observe => admit_free(Reason::ObserveMode),
        Mode::Shadow => match bucket.check(limits, predicted) {
            Ok(()) => admit_free(Reason::ShadowMode),
            Err(ChargeRefusal::ExceedsBurst) => Admission::Admit {
                charged: 0,
                kind: DecisionKind::WouldReject,
                reason: Reason::ExceedsBurst,
            },
            Err(ChargeRefusal::Insufficient { .. }) => Admission::Admit {
                charged: 0,
                kind: DecisionKind::WouldReject,
                reason: Reason::BudgetExceeded,
            },
        },
        Mode::Pace => {
            let chunk = predicted.min(limits.burst);
            match bucket.try_charge(limits, chunk, now_micros) {
                Ok(()) => Admission::Admit {
                    charged: chunk,
                    kind: DecisionKind::Paced,
                    reason: Reason::PaceMode,
                },
                Err(ChargeRefusal::Insufficient { wait_micros }) => Admission::Wait { wait_micros },
                // `chunk` is at most the burst.
                Err(ChargeRefusal::ExceedsBurst) => Admission::Wait { wait_micros: 1_000 },
            }
        }
        Mode::Queue | Mode::Reject => match bucket.try_charge(limits, predicted, now_micros) {
            Ok(()) => Admission::Admit {
                charged: predicted,
                kind: DecisionKind::Allowed,
                reason: Reason::BudgetAvailable,
            },
            Err(ChargeRefusal::ExceedsBurst) => Admission::Reject {
                reason: Reason::ExceedsBurst,
            },
            Err(ChargeRefusal::Insufficient { wait_micros }) => {
                if mode == Mode::Queue {
                    Admission::Wait { wait_micros }
                } else {
                    Admission::Reject {
                        reason: Reason::BudgetExceeded,
                    }
                }
            }
        },
    }
}

fn admit_free(reason: Reason) -> Admission {
    Admission::Admit {
        charged: 0,
        kind: DecisionKind::Allowed,
        reason,
    }
}

/// Which of a policy's two buckets a statement admitted in a mode is
/// accounted to. Enforcing modes use the policy's bucket. Shadow mode uses a
/// copy of it: checked and charged with the measured WAL, so `would_reject`
/// reflects what enforcement would have done, while the real bucket is left
/// untouched. Observe (and off) only record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    Enforcement,
    Shadow,
    None,
}

impl Ledger {
    pub fn for_mode(mode: Mode) -> Ledger {
        match mode {
            Mode::Queue | Mode::Reject | Mode::Pace => Ledger::Enforcement,
            Mode::Shadow => Ledger::Shadow,
            Mode::Observe | Mode::Off => Ledger::None,
        }
    }
}

/// What reconciliation did to the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub refunded: u64,
    pub debt_added: u64,
}

/// Settles a statement in the bucket its [`Ledger`] names: `charged` bytes
/// were taken up front, `actual` bytes were written. Over-charge is refunded;
/// under-charge becomes debt that later admissions pay. For the shadow copy
/// (`charged == 0`) the whole measured WAL becomes debt, as it would have
/// under enforcement.
pub fn reconcile(
    bucket: &mut TokenBucket,
    limits: BucketLimits,
    charged: u64,
    actual: u64,
) -> Reconciled {
    if actual <= charged {
        let refunded = charged - actual;
        bucket.refund(limits, refunded);
        Reconciled {
            refunded,
            debt_added: 0,
        }
    } else {
        let extra = actual - charged;
        let debt_before = bucket.debt();
        bucket.charge_with_debt(extra);
        Reconciled {
            refunded: 0,
            debt_added: bucket.debt() - debt_before,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BucketLimits = BucketLimits {
        rate_per_sec: 1000,
        burst: 4000,
    };

    #[test]
    fn only_enforcing_modes_touch_the_policy_bucket() {
        assert_eq!(Ledger::for_mode(Mode::Queue), Ledger::Enforcement);
        assert_eq!(Ledger::for_mode(Mode::Reject), Ledger::Enforcement);
        assert_eq!(Ledger::for_mode(Mode::Pace), Ledger::Enforcement);
        assert_eq!(Ledger::for_mode(Mode::Shadow), Ledger::Shadow);
        assert_eq!(Ledger::for_mode(Mode::Observe), Ledger::None);
        assert_eq!(Ledger::for_mode(Mode::Off), Ledger::None);
    }

    #[test]
    fn observe_never_charges_or_refuses() {
        let mut b = TokenBucket::full(LIMITS, 0);
        let a = admit(Mode::Observe, &mut b, LIMITS, 1_000_000, 0);
        assert_eq!(
            a,
            Admission::Admit {
                charged: 0,
                kind: DecisionKind::Allowed,
                reason: Reason::ObserveMode
            }
        );
        assert_eq!(b.available(), 4000);
    }

    #[test]
    fn shadow_drains_with_measured_wal_then_reports_would_reject_without_charging() {
        let mut b = TokenBucket::full(LIMITS, 0);
        assert!(matches!(
            admit(Mode::Shadow, &mut b, LIMITS, 3000, 0),
            Admission::Admit {
                charged: 0,
                kind: DecisionKind::Allowed,
                ..
            }
        ));
        assert_eq!(b.available(), 4000);
        reconcile(&mut b, LIMITS, 0, 3500);
        assert_eq!(
            admit(Mode::Shadow, &mut b, LIMITS, 1000, 0),
            Admission::Admit {
                charged: 0,
                kind: DecisionKind::WouldReject,
                reason: Reason::BudgetExceeded
            }
        );
        assert_eq!(b.available(), 500);
    }

    #[test]
    fn reject_charges_then_rejects() {
        let mut b = TokenBucket::full(LIMITS, 0);
        assert!(matches!(
            admit(Mode::Reject, &mut b, LIMITS, 3000, 0),
            Admission::Admit { charged: 3000, .. }
        ));
        assert_eq!(
            admit(Mode::Reject, &mut b, LIMITS, 3000, 0),
            Admission::Reject {
                reason: Reason::BudgetExceeded
            }
        );
        assert_eq!(b.available(), 1000, "a rejection takes nothing");
        // After two seconds of refill it fits again.
        assert!(matches!(
            admit(Mode::Reject, &mut b, LIMITS, 3000, 2_000_000),
            Admission::Admit { charged: 3000, .. }
        ));
    }

    #[test]
    fn queue_waits_for_refill_and_rejects_oversized() {
        let mut b = TokenBucket::full(LIMITS, 0);
        admit(Mode::Queue, &mut b, LIMITS, 4000, 0);
        assert_eq!(
            admit(Mode::Queue, &mut b, LIMITS, 1500, 0),
            Admission::Wait {
                wait_micros: 1_500_000
            }
        );
        assert!(matches!(
            admit(Mode::Queue, &mut b, LIMITS, 1500, 1_500_000),
            Admission::Admit { charged: 1500, .. }
        ));
        assert_eq!(
            admit(Mode::Queue, &mut b, LIMITS, 4001, 100_000_000),
            Admission::Reject {
                reason: Reason::ExceedsBurst
            }
        );
    }

    #[test]
    fn pace_reserves_chunks_waits_for_refill_and_never_refuses() {
        let limits = BucketLimits {
            rate_per_sec: 1_048_576,
            burst: 4 * 1_048_576,
        };
        let chunk = pace_chunk(limits);
        assert_eq!(chunk, 65_536);
        let mut b = TokenBucket::full(limits, 0);
        // The burst's worth of chunks goes at once, then one per refill.
        for _ in 0..64 {
            assert!(matches!(
                admit(Mode::Pace, &mut b, limits, chunk, 0),
                Admission::Admit {
                    charged: 65_536,
                    kind: DecisionKind::Paced,
                    ..
                }
            ));
        }
        assert_eq!(
            admit(Mode::Pace, &mut b, limits, chunk, 0),
            Admission::Wait {
                wait_micros: 62_500
            }
        );
        assert!(matches!(
            admit(Mode::Pace, &mut b, limits, chunk, 62_500),
            Admission::Admit { .. }
        ));
        // Debt from a statement that wrote more than it reserved is repaid
        // before the next chunk.
        reconcile(&mut b, limits, 0, 1_048_576);
        assert!(matches!(
            admit(Mode::Pace, &mut b, limits, chunk, 62_500),
            Admission::Wait { .. }
        ));
        assert!(matches!(
            admit(Mode::Pace, &mut b, limits, chunk, 62_500 + 1_062_500),
            Admission::Admit { .. }
        ));
    }

    #[test]
    fn pace_chunks_stay_within_the_burst() {
        let tiny = BucketLimits {
            rate_per_sec: 100,
            burst: 1000,
        };
        assert_eq!(pace_chunk(tiny), 1000);
        let fast = BucketLimits {
            rate_per_sec: 1 << 30,
            burst: 1 << 20,
        };
        assert_eq!(pace_chunk(fast), 1 << 18);
    }

    #[test]
    fn reconcile_refunds_over_prediction_and_records_debt() {
        let mut b = TokenBucket::full(LIMITS, 0);
        admit(Mode::Reject, &mut b, LIMITS, 3000, 0);
        let r = reconcile(&mut b, LIMITS, 3000, 1000);
        assert_eq!(
            r,
            Reconciled {
                refunded: 2000,
                debt_added: 0
            }
        );
        assert_eq!(b.available(), 3000);
        let r = reconcile(&mut b, LIMITS, 500, 4500);
        assert_eq!(r.debt_added, 1000);
        assert_eq!((b.available(), b.debt()), (0, 1000));
        // Debt is paid before the next admission fits.
        assert_eq!(
            admit(Mode::Reject, &mut b, LIMITS, 1, 1_000_000),
            Admission::Reject {
                reason: Reason::BudgetExceeded
            }
        );
        assert!(matches!(
            admit(Mode::Reject, &mut b, LIMITS, 1, 1_001_000),
            Admission::Admit { .. }
        ));
    }

    #[test]
    fn aborted_statement_charged_only_for_what_it_wrote() {
        let mut b = TokenBucket::full(LIMITS, 0);
        admit(Mode::Queue, &mut b, LIMITS, 4000, 0);
        reconcile(&mut b, LIMITS, 4000, 0);
        assert_eq!(b.available(), 4000);
    }

    #[test]
    fn codes_and_spellings_are_distinct() {
        use crate::budget::policy::Mode;
        use crate::budget::predict::StatementClass;
        use crate::codes::distinct;
        assert!(distinct(
            DecisionKind::ALL,
            DecisionKind::code,
            DecisionKind::as_str
        ));
        assert!(distinct(Reason::ALL, Reason::code, Reason::as_str));
        assert!(distinct(Mode::ALL, Mode::code, Mode::as_str));
        assert!(distinct(
            StatementClass::ALL,
            StatementClass::code,
            StatementClass::as_str
        ));
    }
}
