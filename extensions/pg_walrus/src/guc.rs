//! Every `walrus.*` GUC, with typed getters.
use governance::sizing::{Algorithm, MB, Settings};
use pgrx::PostgresGucEnum;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// `walrus.algorithm` values.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum AlgorithmGuc {
    #[name = c"multiplicative"]
    Multiplicative,
    #[name = c"wal_rate"]
    WalRate,
    #[name = c"percentile"]
    Percentile,
}

pub static ENABLE: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MAX_MB: GucSetting<i32> = GucSetting::<i32>::new(4096);
pub static THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static SHRINK_ENABLE: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static SHRINK_FACTOR: GucSetting<f64> = GucSetting::<f64>::new(0.75);
pub static SHRINK_INTERVALS: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static MIN_SIZE_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub static HISTORY_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(7);
pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static DRY_RUN: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static COOLDOWN_SEC: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static MAX_CHANGES_PER_HOUR: GucSetting<i32> = GucSetting::<i32>::new(4);
pub static ALGORITHM: GucSetting<AlgorithmGuc> =
    GucSetting::<AlgorithmGuc>::new(AlgorithmGuc::WalRate);
pub static NAPTIME_OVERRIDE_MS: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static MAX_WAL_DISK_FRACTION: GucSetting<f64> = GucSetting::<f64>::new(0.5);

/// Register the GUCs (any process that loads the library).
pub fn init() {
    GucRegistry::define_bool_guc(
        c"walrus.enable",
        c"Enable automatic resizing of max_wal_size.",
        c"When off the worker measures nothing; turning it on again takes a fresh baseline.",
        &ENABLE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"walrus.max",
        c"Maximum max_wal_size pg_walrus will set.",
        c"Growth stops here; a decision cut short by it is recorded as capped.",
        &MAX_MB,
        2,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"walrus.threshold",
        c"Forced checkpoints in one interval that trigger a resize.",
        c"",
        &THRESHOLD,
        1,
        1000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"walrus.shrink_enable",
        c"Enable automatic shrinking of max_wal_size after quiet intervals.",
        c"",
        &SHRINK_ENABLE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"walrus.shrink_factor",
        c"Multiplier applied to max_wal_size when shrinking.",
        c"",
        &SHRINK_FACTOR,
        0.01,
        0.99,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"walrus.shrink_intervals",
        c"Consecutive quiet intervals (no forced checkpoint) before shrinking.",
        c"",
        &SHRINK_INTERVALS,
        1,
        1000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"walrus.min_size",
        c"Minimum max_wal_size pg_walrus shrinks to.",
        c"",
        &MIN_SIZE_MB,
        2,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"walrus.history_retention_days",
        c"Days to keep rows in walrus.history.",
        c"0 keeps only the current day's rows: cleanup deletes every row older than now.",
        &HISTORY_RETENTION_DAYS,
        0,
        3650,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"walrus.database",
        c"Database the worker connects to and where walrus.history is stored.",
        c"",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"walrus.dry_run",
        c"Compute, log and record decisions without changing max_wal_size.",
        c"",
        &DRY_RUN,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // A plain number of seconds, as its name says and as the public
    // pg_walrus has it: SHOW prints 300, not 5min.
    GucRegistry::define_int_guc(
        c"walrus.cooldown_sec",
        c"Minimum seconds between two changes of max_wal_size (0 = no cooldown).",
        c"Changes blocked by it are recorded as skipped.",
        &COOLDOWN_SEC,
        0,
        86400,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"walrus.max_changes_per_hour",
        c"Maximum changes of max_wal_size in any sliding hour (0 = no limit).",
        c"Changes blocked by it are recorded as skipped.",
        &MAX_CHANGES_PER_HOUR,
        0,
        1000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"walrus.algorithm",
        c"Sizing strategy: wal_rate, multiplicative or percentile.",
        c"",
        &ALGORITHM,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"walrus.naptime_override_ms",
        c"For testing only: worker interval instead of checkpoint_timeout (0 = checkpoint_timeout).",
        c"WAL is still scaled to one checkpoint_timeout. Do not set this in production.",
        &NAPTIME_OVERRIDE_MS,
        0,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_float_guc(
        c"walrus.max_wal_disk_fraction",
        c"Largest share of the WAL filesystem max_wal_size may take (0 = no disk cap).",
        c"The share is of what pg_wal holds plus the space still available on its filesystem; growth stops there and a larger size is brought down to it (recorded as capped).",
        &MAX_WAL_DISK_FRACTION,
        0.0,
        1.0,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // Reserving the prefix makes typos such as `walrus.tresholds` an error.
    pgsupport::guc::reserve_prefix(c"walrus");
}

/// The configured database name.
pub fn database() -> String {
    DATABASE
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| String::from("postgres"))
}

pub fn algorithm() -> Algorithm {
    match ALGORITHM.get() {
        AlgorithmGuc::Multiplicative => Algorithm::Multiplicative,
        AlgorithmGuc::WalRate => Algorithm::WalRate,
        AlgorithmGuc::Percentile => Algorithm::Percentile,
    }
}

/// Server values the settings depend on (read by the caller).
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    pub max_wal_size_mb: u64,
    pub checkpoint_timeout_s: u64,
    pub completion_target: f64,
    pub segment_bytes: u64,
}

/// The worker interval in milliseconds.
pub fn interval_ms(server: &ServerSettings) -> u64 {
    let over = NAPTIME_OVERRIDE_MS.get();
    if over > 0 {
        over as u64
    } else {
        server.checkpoint_timeout_s.max(1) * 1000
    }
}

/// Build the core's settings from the GUCs and the server values, for a
/// primary (or a standby when `standby`), with the disk cap `disk_cap_mb`.
pub fn settings_for(server: &ServerSettings, standby: bool, disk_cap_mb: Option<u64>) -> Settings {
    Settings {
        standby,
        disk_cap_mb,
        ..settings(server)
    }
}

/// Build the core's settings from the GUCs and the server values (a
/// primary, no disk cap: see [`settings_for`]).
pub fn settings(server: &ServerSettings) -> Settings {
    Settings {
        enabled: ENABLE.get(),
        algorithm: algorithm(),
        threshold: THRESHOLD.get().max(1) as u64,
        max_mb: MAX_MB.get().max(2) as u64,
        min_mb: MIN_SIZE_MB.get().max(2) as u64,
        shrink_enable: SHRINK_ENABLE.get(),
        shrink_factor: SHRINK_FACTOR.get(),
        shrink_intervals: SHRINK_INTERVALS.get().max(1) as u32,
        checkpoint_timeout_ms: server.checkpoint_timeout_s.max(1) * 1000,
        interval_ms: interval_ms(server),
        completion_target: server.completion_target,
        segment_mb: (server.segment_bytes / MB).max(1),
        dry_run: DRY_RUN.get(),
        cooldown_ms: COOLDOWN_SEC.get().max(0) as u64 * 1000,
        max_changes_per_hour: MAX_CHANGES_PER_HOUR.get().max(0) as u32,
        disk_cap_mb: None,
        standby: false,
    }
}
