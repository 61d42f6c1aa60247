//! A tuple pacer: a token bucket holding a small burst, charged one token per
//! tuple. When the bucket is empty it says exactly how long until the next
//! token, so the caller sleeps for the deficit instead of for "the rest of
//! the second": pacing is smooth, with no one-second sawtooth.

/// One token, in token-microseconds (the bucket's internal unit): keeping
/// tokens scaled by a million makes refills exact at any rate, so the wait
/// reported is exactly the deficit, fractions of a token included.
const SCALE: u128 = 1_000_000;

/// The burst, as a fraction of a second of rate: 1/50 s = 20 ms worth of
/// tuples, and at least one tuple. Small enough that any 100 ms window stays
/// close to `rate × 0.1`, large enough that a sleep of a whole millisecond
/// (the latch's resolution) never loses tokens at high rates.
const BURST_DIVISOR: u64 = 50;

/// The burst used for `rate` tuples per second.
pub fn burst_for(rate_per_sec: u64) -> u64 {
    rate_per_sec.div_ceil(BURST_DIVISOR).max(1)
}

/// Paces tuples at `rate` per second with a burst of [`burst_for`]`(rate)`.
/// (The shared `token_bucket` works in whole tokens; pacing needs the exact
/// fractional deficit, hence this small bucket of its own.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    rate: u64,
    burst: u64,
    /// Tokens available, scaled by [`SCALE`].
    available: u128,
    last_micros: u64,
}

impl Pacer {
    /// A pacer whose bucket is full at `now_micros`. A rate of 0 is treated
    /// as 1 (callers never pass 0: it is refused at configuration time).
    pub fn new(rate_per_sec: u64, now_micros: u64) -> Self {
        let rate = rate_per_sec.max(1);
        let burst = burst_for(rate);
        Self {
            rate,
            burst,
            available: u128::from(burst) * SCALE,
            last_micros: now_micros,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    fn refill(&mut self, now_micros: u64) {
        if now_micros <= self.last_micros {
            return;
        }
        let elapsed = u128::from(now_micros - self.last_micros);
        self.last_micros = now_micros;
        let cap = u128::from(self.burst) * SCALE;
        self.available = self
            .available
            .saturating_add(elapsed.saturating_mul(u128::from(self.rate)))
            .min(cap);
    }

    /// Takes one tuple's token if there is one (`Ok`), else returns how many
    /// microseconds until there will be (`Err`, at least 1); then the caller
    /// sleeps and asks again. A clock going backwards refills nothing.
    pub fn admit(&mut self, now_micros: u64) -> Result<(), u64> {
        self.refill(now_micros);
        if self.available >= SCALE {
            self.available -= SCALE;
            return Ok(());
        }
        let missing = SCALE - self.available;
        let wait = missing.div_ceil(u128::from(self.rate));
        Err(u64::try_from(wait).unwrap_or(u64::MAX).max(1))
    }
}

/// The latch timeout, in whole milliseconds, for a deficit of `wait_micros`:
/// rounded up, at least 1 ms (a zero timeout would spin).
pub fn sleep_millis(wait_micros: u64) -> u64 {
    wait_micros.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a consumer that wants `tuples` tuples as fast as possible against
    /// a pacer, sleeping as told (rounded to milliseconds, plus `oversleep`
    /// microseconds of scheduling noise per sleep), each tuple costing
    /// `work_micros`. Returns the emission times.
    fn simulate(rate: u64, tuples: usize, work_micros: u64, oversleep: u64) -> Vec<u64> {
        let mut now = 1_000_000;
        let mut pacer = Pacer::new(rate, now);
        let mut times = Vec::with_capacity(tuples);
        while times.len() < tuples {
            now += work_micros;
            loop {
                match pacer.admit(now) {
                    Ok(()) => break,
                    Err(wait) => now += sleep_millis(wait) * 1000 + oversleep,
                }
            }
            times.push(now);
        }
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
        for &(rate, work, noise) in &[
            (100, 0, 0),
            (100, 3, 150),
            (1000, 1, 70),
            (7, 0, 0),
            (25_000, 0, 300),
            (1_000_000, 0, 0),
        ] {
            let times = simulate(rate, (rate as usize * 3).min(200_000), work, noise);
            let limit = rate / 10 + burst_for(rate);
            let seen = max_in_window(&times, 100_000) as u64;
            assert!(
                seen <= limit,
                "rate {rate}: {seen} tuples in a 100 ms window, limit {limit}"
            );
        }
    }

    #[test]
    fn long_run_rate_matches_the_target() {
        for &rate in &[1u64, 10, 100, 1000, 50_000] {
            let tuples = (rate * 10) as usize;
            let times = simulate(rate, tuples, 0, 200);
            // Rate between the first and the last tuple (the first is free).
            let span = (times[tuples - 1] - times[0]) as f64 / 1e6;
            let measured = (tuples - 1) as f64 / span;
            let error = (measured - rate as f64).abs() / rate as f64;
            assert!(
                error < 0.05,
                "rate {rate}: measured {measured:.1}/s over {span:.2}s"
            );
        }
    }

    #[test]
    fn getting_started_example_takes_two_seconds() {
        // 200 rows at 100 tuples per second.
        let times = simulate(100, 200, 0, 0);
        let seconds = (times[199] - 1_000_000) as f64 / 1e6;
        assert!((1.8..=2.2).contains(&seconds), "took {seconds}s");
    }

    #[test]
    fn no_sawtooth_sleeps_are_short() {
        // At 100/s the longest pause between two tuples is about 10 ms,
        // never the rest of a second.
        let times = simulate(100, 300, 0, 0);
        let longest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(longest <= 11_000, "longest pause {longest} us");
    }

    #[test]
    fn wait_is_exactly_the_deficit() {
        let mut pacer = Pacer::new(100, 0);
        for _ in 0..pacer.burst() {
            assert_eq!(pacer.admit(0), Ok(()));
        }
        assert_eq!(pacer.admit(0), Err(10_000));
        assert_eq!(pacer.admit(4_000), Err(6_000));
        assert_eq!(pacer.admit(10_000), Ok(()));
    }

    #[test]
    fn sleep_rounds_up_to_whole_milliseconds() {
        assert_eq!(sleep_millis(1), 1);
        assert_eq!(sleep_millis(1000), 1);
        assert_eq!(sleep_millis(1001), 2);
        assert_eq!(sleep_millis(0), 1);
    }

    #[test]
    fn burst_is_small_and_at_least_one() {
        assert_eq!(burst_for(1), 1);
        assert_eq!(burst_for(100), 2);
        assert_eq!(burst_for(1_000_000), 20_000);
        assert_eq!(Pacer::new(0, 0).rate(), 1);
    }
}
