//! The buckets one policy keeps in shared memory: the enforcement bucket
//! (charged in queue, reject and pace mode) and shadow mode's copy (checked
//! and charged as enforcement would be, so `would_reject` is meaningful,
//! without touching the real one). Every admission and settlement of a
//! statement goes through here, so the arithmetic is the same in every
//! backend and unit-tested.
use super::admission::{self, Admission, Ledger, Reconciled};
use super::policy::Mode;
use crate::token_bucket::{BucketLimits, TokenBucket};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyBuckets {
    pub limits: BucketLimits,
    pub enforcement: TokenBucket,
    pub shadow: TokenBucket,
    /// The share of the rate the buckets refill at, in millionths: below
    /// 1,000,000 while replica-lag or WAL-disk feedback holds the policy
    /// back (see `feedback`). The burst is unchanged.
    pub scale_ppm: u32,
}

/// A full scale: the policy's own rate.
pub const FULL_SCALE: u32 = 1_000_000;

/// What one admission attempt did: the decision and the bucket's level
/// before and after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub admission: Admission,
    pub before: u64,
    pub after: u64,
}

impl PolicyBuckets {
    /// Full buckets, no debt: a policy always starts here.
    pub fn fresh(limits: BucketLimits, now_micros: u64) -> PolicyBuckets {
        PolicyBuckets {
            limits,
            enforcement: TokenBucket::full(limits, now_micros),
            shadow: TokenBucket::full(limits, now_micros),
            scale_ppm: FULL_SCALE,
        }
    }

    /// The limits the buckets refill by now: the rate scaled (at least one
    /// byte per second), the burst as set.
    pub fn effective_limits(&self) -> BucketLimits {
        let rate = u128::from(self.limits.rate_per_sec) * u128::from(self.scale_ppm)
            / u128::from(FULL_SCALE);
        BucketLimits {
            rate_per_sec: u64::try_from(rate).unwrap_or(u64::MAX).max(1),
            burst: self.limits.burst,
        }
    }

    /// Scales the rate from now on (what was earned at the old rate is
    /// kept).
    pub fn set_scale(&mut self, scale_ppm: u32, now_micros: u64) {
        let scale_ppm = scale_ppm.min(FULL_SCALE);
        if scale_ppm == self.scale_ppm {
            return;
        }
        let old = self.effective_limits();
        self.enforcement.refill(old, now_micros);
        self.shadow.refill(old, now_micros);
        self.scale_ppm = scale_ppm;
    }

    /// The bucket a ledger uses: shadow mode's copy, or the enforcement
    /// bucket (which observe mode only reads).
    pub fn bucket(&self, ledger: Ledger) -> &TokenBucket {
        match ledger {
            Ledger::Shadow => &self.shadow,
            Ledger::Enforcement | Ledger::None => &self.enforcement,
        }
    }

    fn bucket_mut(&mut self, ledger: Ledger) -> &mut TokenBucket {
        match ledger {
            Ledger::Shadow => &mut self.shadow,
            Ledger::Enforcement | Ledger::None => &mut self.enforcement,
        }
    }

    /// New limits from now on (`update_policy`): what was earned under the
    /// old rate is kept up to the new burst, and debt beyond the new burst is
    /// forgiven, so raising the limits of an exhausted bucket takes effect
    /// at once instead of after the old debt is repaid.
    /// Unchanged limits change nothing (every policy reload re-applies them).
    pub fn change_limits(&mut self, limits: BucketLimits, now_micros: u64) {
        if limits == self.limits {
            return;
        }
        let old = self.effective_limits();
        for bucket in [&mut self.enforcement, &mut self.shadow] {
            bucket.refill(old, now_micros);
            bucket.apply_limits(limits);
        }
        self.limits = limits;
    }

    /// One admission attempt of a statement predicted to write `predicted`
    /// bytes under `mode` (see [`admission::admit`]).
    pub fn admit(&mut self, mode: Mode, predicted: u64, now_micros: u64) -> Attempt {
        let limits = self.effective_limits();
        let bucket = self.bucket_mut(Ledger::for_mode(mode));
        bucket.refill(limits, now_micros);
        let before = bucket.available();
        let admission = admission::admit(mode, bucket, limits, predicted, now_micros);
        Attempt {
            admission,
            before,
            after: bucket.available(),
        }
    }

    /// The rate the buckets refill at now.
    pub fn effective_rate(&self) -> u64 {
        self.effective_limits().rate_per_sec
    }

    /// The enforcement bucket's level at `now_micros`, without writing it
    /// (observe mode reads, never writes).
    pub fn level_at(&self, now_micros: u64) -> u64 {
        self.enforcement
            .available_at(self.effective_limits(), now_micros)
    }

    /// Settles `actual` measured bytes against `charged` up-front bytes in
    /// the ledger's bucket; returns what happened and the bytes available
    /// afterwards, or None for a ledger that charges nothing.
    pub fn settle(
        &mut self,
        ledger: Ledger,
        charged: u64,
        actual: u64,
    ) -> Option<(Reconciled, u64)> {
        if ledger == Ledger::None {
            return None;
        }
        let limits = self.effective_limits();
        let bucket = self.bucket_mut(ledger);
        let reconciled = admission::reconcile(bucket, limits, charged, actual);
        Some((reconciled, bucket.available()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::admission::DecisionKind;

    const LIMITS: BucketLimits = BucketLimits {
        rate_per_sec: 1000,
        burst: 4000,
    };

    #[test]
    fn a_policy_starts_full_and_without_debt() {
        let b = PolicyBuckets::fresh(LIMITS, 5);
        assert_eq!(b.enforcement.available(), 4000);
        assert_eq!(b.shadow.available(), 4000);
        assert_eq!(b.enforcement.debt(), 0);
    }

    #[test]
    fn raising_the_limits_of_an_exhausted_bucket_forgives_debt_beyond_the_new_burst() {
        let mut b = PolicyBuckets::fresh(LIMITS, 0);
        b.settle(Ledger::Enforcement, 0, 1_000_000);
        assert_eq!(b.enforcement.debt(), 996_000);
        let bigger = BucketLimits {
            rate_per_sec: 10_000,
            burst: 50_000,
        };
        b.change_limits(bigger, 0);
        assert_eq!(b.enforcement.debt(), 50_000);
        // Five seconds at the new rate repay it; the sixth refills.
        let attempt = b.admit(Mode::Reject, 100, 6_000_000);
        assert!(matches!(
            attempt.admission,
            Admission::Admit {
                charged: 100,
                kind: DecisionKind::Allowed,
                ..
            }
        ));
    }

    #[test]
    fn reapplying_the_same_limits_keeps_the_debt() {
        let mut b = PolicyBuckets::fresh(LIMITS, 0);
        b.settle(Ledger::Enforcement, 0, 1_000_000);
        b.change_limits(LIMITS, 0);
        assert_eq!(b.enforcement.debt(), 996_000);
    }

    #[test]
    fn a_scale_slows_the_refill_from_now_on() {
        let mut b = PolicyBuckets::fresh(LIMITS, 0);
        b.admit(Mode::Reject, 4000, 0);
        b.set_scale(250_000, 1_000_000);
        assert_eq!(b.effective_rate(), 250);
        // One second at the full rate before the change, two at a quarter.
        assert_eq!(b.level_at(3_000_000), 1000 + 500);
        b.set_scale(0, 3_000_000);
        assert_eq!(b.effective_rate(), 1, "held back, never stopped dead");
        b.set_scale(FULL_SCALE, 3_000_000);
        assert_eq!(b.effective_rate(), 1000);
    }

    #[test]
    fn shadow_settles_only_its_copy() {
        let mut b = PolicyBuckets::fresh(LIMITS, 0);
        let (r, after) = b.settle(Ledger::Shadow, 0, 3000).unwrap();
        assert_eq!((r.debt_added, after), (0, 1000));
        assert_eq!(b.enforcement.available(), 4000);
        assert_eq!(b.settle(Ledger::None, 0, 3000), None);
    }
}
