//! A token bucket over integer units (WAL bytes, tuples) with time passed in
//! explicitly as microseconds. Integer arithmetic only, so a bucket kept in
//! shared memory behaves identically in every backend, and saturating
//! everywhere, so no configuration value can overflow it.

/// Microseconds per second.
const MICROS_PER_SEC: u128 = 1_000_000;

/// Refill rate and capacity of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketLimits {
    /// Units added per second; must be positive.
    pub rate_per_sec: u64,
    /// Most units the bucket holds (the burst); must be at least one.
    pub burst: u64,
}

/// Why a charge did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeRefusal {
    /// The request is larger than the burst: it can never fit.
    ExceedsBurst,
    /// Not enough tokens now; `wait_micros` is when enough will have refilled
    /// (assuming nobody else charges meanwhile).
    Insufficient { wait_micros: u64 },
}

/// The state of one bucket. `debt` is consumption measured after the fact
/// beyond what was charged up front; it is paid before new charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    available: u64,
    debt: u64,
    last_refill_micros: u64,
    /// Sub-unit remainder of the last refill, in unit-microseconds, so slow
    /// rates refilled often do not lose tokens to truncation.
    remainder: u64,
}

impl TokenBucket {
    /// A full bucket as of `now_micros`.
    pub fn full(limits: BucketLimits, now_micros: u64) -> Self {
        Self {
            available: limits.burst,
            debt: 0,
            last_refill_micros: now_micros,
            remainder: 0,
        }
    }

    pub fn available(&self) -> u64 {
        self.available
    }

    pub fn debt(&self) -> u64 {
        self.debt
    }

    pub fn last_refill_micros(&self) -> u64 {
        self.last_refill_micros
    }

    /// Adds the tokens earned since the last refill, pays debt first, and caps
    /// at the burst. A clock that goes backwards refills nothing.
    pub fn refill(&mut self, limits: BucketLimits, now_micros: u64) {
        if now_micros <= self.last_refill_micros {
            return;
        }
        let elapsed = u128::from(now_micros - self.last_refill_micros);
        let earned_scaled = elapsed * u128::from(limits.rate_per_sec) + u128::from(self.remainder);
        let earned = earned_scaled / MICROS_PER_SEC;
        self.remainder = u64::try_from(earned_scaled % MICROS_PER_SEC).unwrap_or(0);
        self.last_refill_micros = now_micros;
        let mut earned = u64::try_from(earned).unwrap_or(u64::MAX);
        let paid = earned.min(self.debt);
        self.debt -= paid;
        earned -= paid;
        self.available = self.available.saturating_add(earned).min(limits.burst);
        if self.available == limits.burst {
            self.remainder = 0;
        }
    }

    /// The tokens the bucket would hold at `now_micros`, without refilling it:
    /// for readers that must not write the bucket (a shared one especially).
    pub fn available_at(&self, limits: BucketLimits, now_micros: u64) -> u64 {
        let mut refilled = *self;
        refilled.refill(limits, now_micros);
        refilled.available
    }

    /// Refills, then takes `amount` tokens if they are all there.
    pub fn try_charge(
        &mut self,
        limits: BucketLimits,
        amount: u64,
        now_micros: u64,
    ) -> Result<(), ChargeRefusal> {
        self.refill(limits, now_micros);
        self.check(limits, amount)?;
        self.available -= amount;
        Ok(())
    }

    /// Whether `amount` could be charged now, without charging it (the bucket
    /// must have been refilled by the caller).
    pub fn check(&self, limits: BucketLimits, amount: u64) -> Result<(), ChargeRefusal> {
        if amount > limits.burst {
            return Err(ChargeRefusal::ExceedsBurst);
        }
        if amount <= self.available && self.debt == 0 {
            return Ok(());
        }
        let missing = u128::from(amount - amount.min(self.available)) + u128::from(self.debt);
        let rate = u128::from(limits.rate_per_sec.max(1));
        // The fraction of a token already earned (`remainder`) shortens the wait.
        let wait = (missing * MICROS_PER_SEC)
            .saturating_sub(u128::from(self.remainder))
            .div_ceil(rate);
        Err(ChargeRefusal::Insufficient {
            wait_micros: u64::try_from(wait).unwrap_or(u64::MAX),
        })
    }

    /// Takes `amount` tokens unconditionally; what is not there becomes debt.
    pub fn charge_with_debt(&mut self, amount: u64) {
        let taken = amount.min(self.available);
        self.available -= taken;
        self.debt = self.debt.saturating_add(amount - taken);
    }

    /// Gives back tokens charged up front but not used, capped at the burst.
    pub fn refund(&mut self, limits: BucketLimits, amount: u64) {
        self.available = self.available.saturating_add(amount).min(limits.burst);
    }

    /// Re-applies new limits: tokens above the new burst are dropped, and so
    /// is debt beyond it (new limits apply from now on; the old debt is not
    /// carried past what the new burst could ever hold).
    pub fn apply_limits(&mut self, limits: BucketLimits) {
        self.available = self.available.min(limits.burst);
        self.debt = self.debt.min(limits.burst);
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
    fn starts_full_and_charges_down() {
        let mut bucket = TokenBucket::full(LIMITS, 0);
        assert_eq!(bucket.try_charge(LIMITS, 3000, 0), Ok(()));
        assert_eq!(bucket.available(), 1000);
        assert_eq!(
            bucket.try_charge(LIMITS, 2000, 0),
            Err(ChargeRefusal::Insufficient {
                wait_micros: 1_000_000
            })
        );
        assert_eq!(bucket.available(), 1000, "a refused charge takes nothing");
    }

    #[test]
    fn refills_at_rate_and_caps_at_burst() {
        let mut bucket = TokenBucket::full(LIMITS, 0);
        bucket.try_charge(LIMITS, 4000, 0).unwrap();
        bucket.refill(LIMITS, 500_000);
        assert_eq!(bucket.available(), 500);
        bucket.refill(LIMITS, 60_000_000);
        assert_eq!(bucket.available(), 4000);
    }

    /// A rate slow enough that refills often earn only a fraction of a token.
    const SLOW: BucketLimits = BucketLimits {
        rate_per_sec: 3,
        burst: 100,
    };

    #[test]
    fn slow_rates_do_not_lose_fractions() {
        let limits = SLOW;
        let mut bucket = TokenBucket::full(limits, 0);
        bucket.try_charge(limits, 100, 0).unwrap();
        // Refill every millisecond for one second: 3 tokens, not 0.
        for ms in 1..=1000 {
            bucket.refill(limits, ms * 1000);
        }
        assert_eq!(bucket.available(), 3);
    }

    #[test]
    fn the_wait_counts_the_fraction_already_earned() {
        let limits = SLOW;
        let mut bucket = TokenBucket::full(limits, 0);
        bucket.try_charge(limits, 100, 0).unwrap();
        // After 0.2 s, 0.6 of a token is earned: the first token is 0.4/3 s
        // (133,334 µs) away, not a whole 1/3 s.
        bucket.refill(limits, 200_000);
        assert_eq!(bucket.available(), 0);
        let Err(ChargeRefusal::Insufficient { wait_micros }) = bucket.check(limits, 1) else {
            panic!("one token is missing");
        };
        assert_eq!(wait_micros, 133_334);
        bucket.refill(limits, 200_000 + wait_micros);
        assert_eq!(bucket.check(limits, 1), Ok(()));
    }

    #[test]
    fn available_at_reads_ahead_without_refilling() {
        let mut bucket = TokenBucket::full(LIMITS, 0);
        bucket.try_charge(LIMITS, 4000, 0).unwrap();
        let before = bucket;
        assert_eq!(bucket.available_at(LIMITS, 1_500_000), 1500);
        assert_eq!(bucket.available_at(LIMITS, 60_000_000), 4000);
        assert_eq!(bucket, before, "reading ahead leaves the bucket as it was");
        bucket.refill(LIMITS, 1_500_000);
        assert_eq!(bucket.available(), 1500);
    }

    #[test]
    fn oversized_requests_never_fit() {
        let mut bucket = TokenBucket::full(LIMITS, 0);
        assert_eq!(
            bucket.try_charge(LIMITS, 4001, 0),
            Err(ChargeRefusal::ExceedsBurst)
        );
    }

    #[test]
    fn debt_is_paid_before_new_charges() {
        let mut bucket = TokenBucket::full(LIMITS, 0);
        bucket.charge_with_debt(5000);
        assert_eq!((bucket.available(), bucket.debt()), (0, 1000));
        assert_eq!(
            bucket.try_charge(LIMITS, 500, 0),
            Err(ChargeRefusal::Insufficient {
                wait_micros: 1_500_000
            })
        );
        bucket.refill(LIMITS, 1_500_000);
        assert_eq!((bucket.available(), bucket.debt()), (500, 0));
    }

    #[test]
    fn refund_is_capped_at_burst() {
        let mut bucket = TokenBucket::full(LIMITS, 0);
        bucket.try_charge(LIMITS, 100, 0).unwrap();
        bucket.refund(LIMITS, 1_000_000);
        assert_eq!(bucket.available(), 4000);
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let mut bucket = TokenBucket::full(LIMITS, 10_000_000);
        bucket.try_charge(LIMITS, 4000, 10_000_000).unwrap();
        bucket.refill(LIMITS, 0);
        assert_eq!(bucket.available(), 0);
    }

    #[test]
    fn extreme_values_saturate() {
        let limits = BucketLimits {
            rate_per_sec: u64::MAX,
            burst: u64::MAX,
        };
        let mut bucket = TokenBucket::full(limits, 0);
        bucket.charge_with_debt(u64::MAX);
        bucket.charge_with_debt(u64::MAX);
        assert_eq!(bucket.debt(), u64::MAX);
        // A full-rate refill over the whole clock range pays the debt off.
        bucket.refill(limits, u64::MAX);
        assert_eq!((bucket.available(), bucket.debt()), (0, 0));
    }
}
