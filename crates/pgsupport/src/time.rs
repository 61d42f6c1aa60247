//! Clocks.
use pgrx::pg_sys;

/// Microseconds between the Unix epoch and the PostgreSQL epoch (2000-01-01).
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Milliseconds since the Unix epoch (wall clock).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The server's clock: microseconds since the PostgreSQL epoch.
pub fn pg_now_micros() -> i64 {
    // SAFETY: only reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Milliseconds since the Unix epoch for a PostgreSQL timestamp.
pub fn pg_to_unix_ms(ts: i64) -> i64 {
    (ts + PG_EPOCH_OFFSET_US) / 1000
}

/// Nanoseconds on the system's monotonic clock (`CLOCK_MONOTONIC`): never
/// goes backwards, and is the same clock in every process of the machine,
/// so processes that share a deadline (a parallel query's leader and
/// workers) agree on it.
pub fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; CLOCK_MONOTONIC
    // always exists on the platforms PostgreSQL supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// ISO-8601 UTC text (`2026-01-31T12:34:56.789Z`) of a Unix time in
/// milliseconds.
pub fn iso8601_utc(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}
