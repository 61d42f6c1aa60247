//! Every `pwb.*` GUC with its documented name, default and context, and typed
//! getters.
use governance::budget::predict::{PredictionDefaults, Predictor};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum PredictorGuc {
    #[name = c"profile_ewma"]
    ProfileEwma,
    #[name = c"statement_class_fallback"]
    StatementClassFallback,
}

static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static FAIL_OPEN: GucSetting<bool> = GucSetting::<bool>::new(true);
static DEFAULT_WRITE_WAL_BYTES: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024);
static DEFAULT_UTILITY_WAL_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);
static MAX_PREDICTION_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024 * 1024);
static PROFILE_EWMA_ALPHA: GucSetting<f64> = GucSetting::<f64>::new(0.5);
static COMPOSITE_SCOPE_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(false);
static PREDICTOR: GucSetting<PredictorGuc> =
    GucSetting::<PredictorGuc>::new(PredictorGuc::ProfileEwma);
static SHMEM_CAPACITY: GucSetting<i32> = GucSetting::<i32>::new(4096);
static RECENT_DECISION_CAPACITY: GucSetting<i32> = GucSetting::<i32>::new(-1);
static PROFILE_CACHE_CAPACITY: GucSetting<i32> = GucSetting::<i32>::new(-1);
static BUDGET_BUCKET_CAPACITY: GucSetting<i32> = GucSetting::<i32>::new(-1);
static TEMPLATE_BUCKET_CAPACITY: GucSetting<i32> = GucSetting::<i32>::new(-1);
static QUEUE_YIELDS_TO_LOCK_WAITERS: GucSetting<bool> = GucSetting::<bool>::new(true);
static MAX_REPLICA_LAG_MB: GucSetting<i32> = GucSetting::<i32>::new(0);
static MIN_WAL_DISK_FREE_MB: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static REPLICA_LAG_STANDBYS: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"*"));
static TENANT: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(None);

/// Largest capacity any array may be given.
const MAX_CAPACITY: i32 = 1 << 20;

/// Registers every GUC and reserves the `pwb` prefix. Called from `_PG_init`.
pub fn init(preloaded: bool) {
    GucRegistry::define_bool_guc(
        c"pwb.enabled",
        c"Enable pg_wal_budget admission hooks and accounting.",
        c"When off, statements are neither classified, charged nor measured.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pwb.fail_open",
        c"Admit statements when classification, prediction or accounting fails internally.",
        c"When off, an internal failure raises an error instead.",
        &FAIL_OPEN,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pwb.default_write_wal_bytes",
        c"Fallback WAL prediction for writes without a learned profile.",
        c"",
        &DEFAULT_WRITE_WAL_BYTES,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pwb.default_utility_wal_bytes",
        c"Fallback WAL prediction for utility statements and COPY without a learned profile.",
        c"",
        &DEFAULT_UTILITY_WAL_BYTES,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pwb.max_prediction_bytes",
        c"Upper bound on WAL predictions.",
        c"",
        &MAX_PREDICTION_BYTES,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_float_guc(
        c"pwb.profile_ewma_alpha",
        c"EWMA smoothing factor for learned query WAL profiles.",
        c"Lower values smooth over more history; higher values react faster.",
        &PROFILE_EWMA_ALPHA,
        0.01,
        1.0,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pwb.composite_scope_enabled",
        c"Classify statements by canonical composite scope.",
        c"Used when at least two scope components are available.",
        &COMPOSITE_SCOPE_ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pwb.predictor",
        c"Predictor strategy: profile_ewma or statement_class_fallback.",
        c"",
        &PREDICTOR,
        GucContext::Sighup,
        GucFlags::default(),
    );

    GucRegistry::define_int_guc(
        c"pwb.max_replica_lag",
        c"Replay lag of a counted standby above which enforcing policies are held back (0 = off).",
        c"While the worst counted standby's replay lag exceeds it, the rates of every policy that is not feedback_exempt are scaled down, the lowest priorities first, and recover gradually once the lag is back under it.",
        &MAX_REPLICA_LAG_MB,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"pwb.min_wal_disk_free",
        c"Free space on the WAL filesystem below which enforcing policies are held back (0 = off).",
        c"",
        &MIN_WAL_DISK_FREE_MB,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MB,
    );
    crate::pg::settings::define_replica_lag_standbys(&REPLICA_LAG_STANDBYS);
    GucRegistry::define_bool_guc(
        c"pwb.queue_yields_to_lock_waiters",
        c"A queued statement gives up (SQLSTATE 55P03) when another session waits for a lock its transaction holds.",
        c"Queued statements wait with the locks they took so far; without this, a queue can hold up unrelated sessions (a convoy). lock_timeout also bounds the wait.",
        &QUEUE_YIELDS_TO_LOCK_WAITERS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pwb.tenant",
        c"The session's trusted tenant (set with pwb.set_tenant()).",
        c"Superuser-only: pwb.set_tenant() sets it for members of pwb_tenant_setter. Follows SET semantics: undone by ROLLBACK, cleared by RESET ALL and DISCARD ALL.",
        &TENANT,
        GucContext::Suset,
        GucFlags::default(),
    );
    init_profile_gucs(preloaded);
    if !preloaded {
        // Postmaster-context settings can only be defined while preloading;
        // without preload they would size nothing anyway.
        pgsupport::guc::reserve_prefix(c"pwb");
        return;
    }
    GucRegistry::define_int_guc(
        c"pwb.shmem_capacity",
        c"Default capacity for pg_wal_budget shared-memory arrays.",
        c"Changes require restart.",
        &SHMEM_CAPACITY,
        1,
        MAX_CAPACITY,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    for (name, setting, what) in [
        (
            c"pwb.recent_decision_capacity",
            &RECENT_DECISION_CAPACITY,
            c"Capacity of the recent-decision ring; -1 inherits pwb.shmem_capacity.",
        ),
        (
            c"pwb.profile_cache_capacity",
            &PROFILE_CACHE_CAPACITY,
            c"Capacity of the shared query profile cache; -1 inherits pwb.shmem_capacity.",
        ),
        (
            c"pwb.budget_bucket_capacity",
            &BUDGET_BUCKET_CAPACITY,
            c"Capacity for enforcement budget buckets; -1 inherits pwb.shmem_capacity.",
        ),
        (
            c"pwb.template_bucket_capacity",
            &TEMPLATE_BUCKET_CAPACITY,
            c"Capacity for the per-value buckets of template policies (all databases); -1 inherits pwb.shmem_capacity.",
        ),
    ] {
        GucRegistry::define_int_guc(
            name,
            what,
            c"Changes require restart.",
            setting,
            -1,
            MAX_CAPACITY,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    pgsupport::guc::reserve_prefix(c"pwb");
}

use pgsupport::guc::current;

pub fn enabled() -> bool {
    current(&ENABLED)
}

pub fn fail_open() -> bool {
    current(&FAIL_OPEN)
}

pub fn composite_scope_enabled() -> bool {
    current(&COMPOSITE_SCOPE_ENABLED)
}

/// The session's trusted tenant (None when unset or empty).
pub fn tenant() -> Option<String> {
    pgsupport::guc::current_str(&TENANT)
}

/// Whether the tenant is still `value`, without allocating.
pub fn tenant_is(value: Option<&str>) -> bool {
    pgsupport::guc::str_equals(&TENANT, value)
}

/// Sets the tenant (None clears it) for the session or the transaction.
pub fn set_tenant(value: Option<&str>, lifetime: pgsupport::guc::Lifetime) {
    pgsupport::guc::set_with_privilege(c"pwb.tenant", value, lifetime);
}

/// `pwb.max_replica_lag` in bytes (0: off).
pub fn max_replica_lag_bytes() -> u64 {
    u64::try_from(MAX_REPLICA_LAG_MB.get()).unwrap_or(0) * 1_048_576
}

/// `pwb.min_wal_disk_free` in bytes (0: off).
pub fn min_wal_disk_free_bytes() -> u64 {
    u64::try_from(MIN_WAL_DISK_FREE_MB.get()).unwrap_or(0) * 1_048_576
}

/// `pwb.replica_lag_standbys`, parsed (its check hook refused what does not
/// parse).
pub fn replica_lag_standbys() -> governance::budget::feedback::Standbys {
    let text = pgsupport::guc::current_str(&REPLICA_LAG_STANDBYS).unwrap_or_else(|| "*".into());
    governance::budget::feedback::parse_standbys(&text)
        .unwrap_or(governance::budget::feedback::Standbys::All)
}

pub fn queue_yields_to_lock_waiters() -> bool {
    current(&QUEUE_YIELDS_TO_LOCK_WAITERS)
}

pub fn profile_ewma_alpha() -> f64 {
    current(&PROFILE_EWMA_ALPHA)
}

pub fn predictor() -> Predictor {
    match current(&PREDICTOR) {
        PredictorGuc::ProfileEwma => Predictor::ProfileEwma,
        PredictorGuc::StatementClassFallback => Predictor::StatementClassFallback,
    }
}

fn bytes(setting: &GucSetting<i32>) -> u64 {
    u64::try_from(current(setting)).unwrap_or(0)
}

pub fn prediction_defaults() -> PredictionDefaults {
    PredictionDefaults {
        write_bytes: bytes(&DEFAULT_WRITE_WAL_BYTES),
        utility_bytes: bytes(&DEFAULT_UTILITY_WAL_BYTES),
        max_prediction_bytes: bytes(&MAX_PREDICTION_BYTES),
    }
}

/// Effective capacities (at least 1): `-1` (or 0) inherits `pwb.shmem_capacity`.
#[derive(Debug, Clone, Copy)]
pub struct Capacities {
    pub decisions: usize,
    pub profiles: usize,
    pub buckets: usize,
    pub template_buckets: usize,
    pub scope_names: usize,
}

pub fn capacities() -> Capacities {
    let base = SHMEM_CAPACITY.get().max(1);
    let pick = |s: &GucSetting<i32>| {
        let v = s.get();
        usize::try_from(if v <= 0 { base } else { v }).unwrap_or(1)
    };
    Capacities {
        decisions: pick(&RECENT_DECISION_CAPACITY),
        profiles: pick(&PROFILE_CACHE_CAPACITY),
        buckets: pick(&BUDGET_BUCKET_CAPACITY),
        template_buckets: pick(&TEMPLATE_BUCKET_CAPACITY),
        scope_names: usize::try_from(base).unwrap_or(1),
    }
}

static PROFILE_DATABASE: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"postgres"));
static PROFILE_FLUSH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);

/// GUCs beyond the document: where and how often learned profiles are
/// stored by the profile writer.
fn init_profile_gucs(preloaded: bool) {
    if preloaded {
        GucRegistry::define_string_guc(
            c"pwb.profile_database",
            c"Database whose pwb.query_profile table stores learned profiles.",
            c"The profile writer loads profiles from it at startup and stores them periodically and at shutdown.",
            &PROFILE_DATABASE,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    GucRegistry::define_int_guc(
        c"pwb.profile_flush_interval",
        c"How often learned profiles are stored; 0 stores them only at shutdown.",
        c"",
        &PROFILE_FLUSH_INTERVAL,
        0,
        86400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

pub fn profile_database() -> String {
    PROFILE_DATABASE
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|| "postgres".into())
}

pub fn profile_flush_interval() -> Option<std::time::Duration> {
    let s = PROFILE_FLUSH_INTERVAL.get();
    (s > 0).then(|| std::time::Duration::from_secs(u64::try_from(s).unwrap_or(60)))
}
