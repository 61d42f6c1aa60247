//! Tuple pacing: a token bucket kept as one number, the "theoretical
//! arrival time" of the generic cell rate algorithm (GCRA). The whole state
//! of a bucket is one `u64`, so the same arithmetic serves a pacer private
//! to one process ([`Pacer`]) and one shared by a parallel query's leader
//! and workers (the caller keeps the `u64` in an atomic in shared memory and
//! applies [`Gcra::take`] with a compare-and-swap).
//!
//! A tuple that finds no token reserves the next one and the caller sleeps
//! exactly until it is due: pacing is smooth, with no one-second sawtooth,
//! and several processes drawing from one bucket are spaced evenly.
//!
//! Tokens may be taken a few at a time (a batch): the caller then passes
//! that many tuples without reading the clock, which keeps the cost of a
//! throttled query whose rate is never reached close to nothing. The bucket
//! holds correspondingly fewer tokens, so that the bound on any window
//! counts batches held by every process: see [`Gcra::new`].
//!
//! Time is in picoseconds since an epoch the caller chooses (one per bucket)
//! so that the interval between tokens, `10^12 / rate`, is exact for every
//! rate a user can configure (an `int`).

/// Picoseconds per second.
const PS_PER_SEC: u64 = 1_000_000_000_000;

/// The burst, as a fraction of a second of rate: 1/50 s = 20 ms worth of
/// tuples, and at least one tuple. Small enough that any 100 ms window stays
/// close to `rate × 0.1`, large enough that a sleep of a whole millisecond
/// (the latch's resolution) never loses tokens at high rates.
const BURST_DIVISOR: u64 = 50;

/// At most this fraction of a second of rate is taken in one batch (spread
/// over every holder): 1 ms.
const BATCH_DIVISOR: u64 = 1000;

/// The burst used for `rate` tuples per second.
pub fn burst_for(rate_per_sec: u64) -> u64 {
    rate_per_sec.div_ceil(BURST_DIVISOR).max(1)
}

/// The latch timeout, in whole milliseconds, for a wait of `wait_nanos`:
/// rounded up, at least 1 ms (a zero timeout would spin).
pub fn sleep_millis(wait_nanos: u64) -> u64 {
    wait_nanos.div_ceil(1_000_000).max(1)
}

/// Picoseconds from `epoch_nanos` to `now_nanos` (0 before the epoch).
pub fn picos_since(epoch_nanos: u64, now_nanos: u64) -> u64 {
    now_nanos.saturating_sub(epoch_nanos).saturating_mul(1000)
}

/// What [`Gcra::take`] gives the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tuples that may pass (at least 1: the one in hand).
    pub granted: u64,
    /// How long to wait before the first of them passes (0: at once).
    pub wait_nanos: u64,
}

/// The fixed parameters of a bucket at one rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    rate: u64,
    burst: u64,
    /// Picoseconds per token.
    interval: u64,
    /// How far the arrival time may run ahead of now: (capacity - 1) tokens.
    tolerance: u64,
    /// Tokens taken at once when they are available.
    batch: u64,
}

impl Gcra {
    /// A bucket refilling at `rate` tuples per second (0 is treated as 1),
    /// drawn from by at most `holders` callers that each keep a batch of
    /// tokens (one per wrapped node and process).
    ///
    /// The burst `b` = [`burst_for`]`(rate)` is what may pass at once after
    /// a pause. A holder takes up to `c` = `max(1, rate / (1000 × holders))`
    /// tokens at a time and may sit on `c - 1` of them, so the bucket itself
    /// holds `b - holders × (c - 1)` (at least 1): in any window of `w`
    /// seconds at most `b + rate × w` tuples pass, counting every holder.
    pub fn new(rate_per_sec: u64, holders: u64) -> Gcra {
        let rate = rate_per_sec.max(1);
        let holders = holders.max(1);
        let burst = burst_for(rate);
        let batch = (rate / (BATCH_DIVISOR.saturating_mul(holders))).max(1);
        let capacity = burst
            .saturating_sub(holders.saturating_mul(batch - 1))
            .max(1);
        let interval = (PS_PER_SEC / rate).max(1);
        Gcra {
            rate,
            burst,
            interval,
            tolerance: (capacity - 1).saturating_mul(interval),
            batch,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// Takes up to `want` tokens (at least one) at `now` (picoseconds since
    /// the bucket's epoch) from a bucket whose state is `tat`. Returns the
    /// new state and the grant: as many tokens as are there (up to `want`),
    /// passing at once; or, when there is none, the next one, reserved, with
    /// the wait until it is due. A new bucket's state is 0: full.
    pub fn take(&self, tat: u64, now: u64, want: u64) -> (u64, Grant) {
        let start = tat.max(now);
        let ahead = start - now;
        if ahead > self.tolerance {
            let wait_ps = ahead - self.tolerance;
            return (
                start.saturating_add(self.interval),
                Grant {
                    granted: 1,
                    wait_nanos: wait_ps.div_ceil(1000),
                },
            );
        }
        let available = (self.tolerance - ahead) / self.interval + 1;
        let granted = available.min(want.max(1));
        (
            start.saturating_add(granted.saturating_mul(self.interval)),
            Grant {
                granted,
                wait_nanos: 0,
            },
        )
    }
}

/// A bucket private to one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    gcra: Gcra,
    epoch_nanos: u64,
    tat: u64,
}

impl Pacer {
    /// A full bucket at `rate` for `holders` (see [`Gcra::new`]), whose
    /// clock starts at `now_nanos` (any monotonic clock in nanoseconds).
    pub fn new(rate_per_sec: u64, holders: u64, now_nanos: u64) -> Pacer {
        Pacer {
            gcra: Gcra::new(rate_per_sec, holders),
            epoch_nanos: now_nanos,
            tat: 0,
        }
    }

    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// Takes up to `want` tokens at `now_nanos` (see [`Gcra::take`]).
    pub fn take(&mut self, now_nanos: u64, want: u64) -> Grant {
        let now = picos_since(self.epoch_nanos, now_nanos);
        let (tat, grant) = self.gcra.take(self.tat, now, want);
        self.tat = tat;
        grant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `holders` consumers (round robin) that want `tuples` tuples in
    /// total as fast as possible against one bucket, each keeping its own
    /// batch of credits as the extension does, sleeping as told (rounded up
    /// to milliseconds, plus `oversleep` microseconds of scheduling noise
    /// per sleep), each tuple costing `work_micros`. Returns the emission
    /// times in microseconds.
    fn simulate(
        rate: u64,
        holders: u64,
        tuples: usize,
        work_micros: u64,
        oversleep: u64,
    ) -> Vec<u64> {
        let gcra = Gcra::new(rate, holders);
        let mut tat = 0u64;
        let mut credits = vec![0u64; holders as usize];
        let mut clocks = vec![1_000_000u64; holders as usize];
        let mut times = Vec::with_capacity(tuples);
        while times.len() < tuples {
            // The holder whose clock is earliest goes next.
            let h = (0..holders as usize).min_by_key(|&i| clocks[i]).unwrap();
            clocks[h] += work_micros;
            if credits[h] > 0 {
                credits[h] -= 1;
            } else {
                let now = (clocks[h] - 1_000_000) * 1_000_000;
                let (next, grant) = gcra.take(tat, now, gcra.batch());
                tat = next;
                credits[h] = grant.granted - 1;
                if grant.wait_nanos > 0 {
                    clocks[h] += sleep_millis(grant.wait_nanos) * 1000 + oversleep;
                }
            }
            times.push(clocks[h]);
        }
        times.sort_unstable();
        times
    }

    fn max_in_window(times: &[u64], window: u64) -> usize {
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    #[test]
    fn any_100ms_window_holds_at_most_a_tenth_of_the_rate_plus_burst() {
        for &(rate, holders, work, noise) in &[
            (100, 1, 0, 0),
            (100, 1, 3, 150),
            (1000, 1, 1, 70),
            (1000, 3, 1, 70),
            (7, 1, 0, 0),
            (7, 5, 0, 0),
            (25_000, 1, 0, 300),
            (25_000, 4, 0, 300),
            (1_000_000, 1, 0, 0),
            (1_000_000, 3, 0, 0),
        ] {
            let times = simulate(rate, holders, (rate as usize * 3).min(300_000), work, noise);
            let limit = rate / 10 + burst_for(rate);
            let seen = max_in_window(&times, 100_000) as u64;
            assert!(
                seen <= limit,
                "rate {rate}, {holders} holders: {seen} tuples in a 100 ms window, limit {limit}"
            );
        }
    }

    #[test]
    fn long_run_rate_matches_the_target() {
        for &(rate, holders) in &[
            (1u64, 1u64),
            (10, 1),
            (100, 1),
            (1000, 1),
            (1000, 5),
            (50_000, 3),
        ] {
            let tuples = (rate * 10) as usize;
            let times = simulate(rate, holders, tuples, 0, 200);
            // Rate between the first and the last tuple (the first is free).
            let span = (times[tuples - 1] - times[0]) as f64 / 1e6;
            let measured = (tuples - 1) as f64 / span;
            let error = (measured - rate as f64).abs() / rate as f64;
            assert!(
                error < 0.05,
                "rate {rate}, {holders} holders: measured {measured:.1}/s over {span:.2}s"
            );
        }
    }

    #[test]
    fn getting_started_example_takes_two_seconds() {
        // 200 tuples at 100 tuples/s: about 2 s (the burst of 2 passes at
        // once, the other 198 are paced).
        let times = simulate(100, 1, 200, 0, 0);
        let total = (times[199] - 1_000_000) as f64 / 1e6;
        assert!((1.9..=2.05).contains(&total), "took {total:.3}s");
    }

    #[test]
    fn no_sawtooth_pauses_are_one_interval() {
        // At 100 tuples/s the longest pause between two tuples is about 10 ms,
        // never the rest of a second.
        let times = simulate(100, 1, 300, 0, 0);
        let longest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(longest <= 11_000, "longest pause {longest} us");
    }

    #[test]
    fn wait_is_exactly_until_the_next_token() {
        let mut pacer = Pacer::new(100, 1, 0);
        let burst = pacer.gcra().burst();
        assert_eq!(burst, 2);
        assert_eq!(
            pacer.take(0, 10),
            Grant {
                granted: 2,
                wait_nanos: 0
            },
            "a full bucket gives its burst at once"
        );
        // Empty: the next token is reserved, due one interval (10 ms) on.
        assert_eq!(pacer.take(0, 1).wait_nanos, 10_000_000);
        // The one after it is due 10 ms later still; asked 4 ms in, 16 ms.
        assert_eq!(pacer.take(4_000_000, 1).wait_nanos, 16_000_000);
        // Once the reserved ones are due, tokens refill again.
        assert_eq!(pacer.take(100_000_000, 1).wait_nanos, 0);
    }

    #[test]
    fn batches_shrink_the_bucket_by_what_holders_may_keep() {
        let gcra = Gcra::new(1_000_000, 2);
        assert_eq!(gcra.burst(), 20_000);
        assert_eq!(gcra.batch(), 500);
        // The bucket holds burst - 2 × 499 tokens.
        let (_, grant) = gcra.take(0, 0, u64::MAX);
        assert_eq!(grant.granted, 20_000 - 2 * 499);
        // Low rates take one token at a time.
        assert_eq!(Gcra::new(1000, 1).batch(), 1);
        assert_eq!(Gcra::new(999, 1).batch(), 1);
    }

    #[test]
    fn clocks_going_backwards_refill_nothing() {
        let gcra = Gcra::new(10, 1);
        let (tat, first) = gcra.take(0, 5_000_000_000_000, 1);
        assert_eq!(first.wait_nanos, 0);
        let (_, grant) = gcra.take(tat, 1_000_000_000_000, 1);
        assert!(grant.wait_nanos >= 4_000_000_000, "{grant:?}");
    }

    #[test]
    fn sleep_rounds_up_to_whole_milliseconds() {
        assert_eq!(sleep_millis(1), 1);
        assert_eq!(sleep_millis(1_000_000), 1);
        assert_eq!(sleep_millis(1_000_001), 2);
        assert_eq!(sleep_millis(0), 1);
    }

    #[test]
    fn burst_is_small_and_at_least_one() {
        assert_eq!(burst_for(1), 1);
        assert_eq!(burst_for(100), 2);
        assert_eq!(burst_for(1_000_000), 20_000);
        assert_eq!(Gcra::new(0, 1).rate(), 1);
        // The largest configurable rate still has a whole picosecond per token.
        assert!(Gcra::new(i32::MAX as u64, 1).interval >= 1);
    }
}
