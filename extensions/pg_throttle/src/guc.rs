//! The `pg_throttle.*` settings.
//!
//! - `pg_throttle.count` (`returned` | `examined`, default `returned`): what
//!   a throttled node is charged for. `PGC_SUSET`: only a superuser can set
//!   it (`SET`, `ALTER ROLE ... SET`, `ALTER DATABASE ... SET`, the
//!   configuration file), and `throttle_admin` members through
//!   `throttle_user_count()`, so a session cannot switch itself from
//!   `examined` back to the cheaper `returned`.
//! - `pg_throttle.parallel_segment` (internal, hidden): set by a throttled
//!   parallel query's leader, for the length of the query, to the handle of
//!   the shared memory segment holding its buckets. PostgreSQL copies the
//!   leader's settings into every parallel worker it starts, which is how
//!   the workers find the segment. Superuser-only, so no session can point
//!   workers elsewhere; allowed in parallel mode (the leader sets it while
//!   its executor starts).
use std::ffi::CString;

use governance::pacing::Counting;
use pgrx::PostgresGucEnum;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

/// `pg_throttle.count` values.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum CountGuc {
    #[name = c"returned"]
    Returned,
    #[name = c"examined"]
    Examined,
}

static COUNT: GucSetting<CountGuc> = GucSetting::<CountGuc>::new(CountGuc::Returned);
static PARALLEL_SEGMENT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The name of the internal setting (for `set`).
pub const PARALLEL_SEGMENT_NAME: &std::ffi::CStr = c"pg_throttle.parallel_segment";

/// Registers the settings (any process that loads the library).
pub fn init() {
    GucRegistry::define_enum_guc(
        c"pg_throttle.count",
        c"What a throttled scan node is charged for: returned tuples, or examined tuples (including those its filter rejects).",
        c"Superuser-only, so a session cannot loosen what its role was given; throttle_admin members set it per role with throttle_user_count().",
        &COUNT,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        PARALLEL_SEGMENT_NAME,
        c"Internal: the shared buckets of the running parallel query.",
        c"Set by pg_throttle for the length of a throttled parallel query; not for users.",
        &PARALLEL_SEGMENT,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL
            | GucFlags::NO_RESET_ALL
            | GucFlags::DISALLOW_IN_FILE
            | GucFlags::DISALLOW_IN_AUTO_FILE
            | GucFlags::from_bits_retain(pg_sys::GUC_ALLOW_IN_PARALLEL as i32),
    );
    pgsupport::guc::reserve_prefix(c"pg_throttle");
}

/// What throttled nodes are charged for in this session now.
pub fn counting() -> Counting {
    match pgsupport::guc::current(&COUNT) {
        CountGuc::Returned => Counting::Returned,
        CountGuc::Examined => Counting::Examined,
    }
}

/// The internal setting's current value (None: not set or empty).
pub fn parallel_segment() -> Option<String> {
    pgsupport::guc::current_str(&PARALLEL_SEGMENT)
}

/// Sets the internal setting (None: empty), as `SET` would.
pub fn set_parallel_segment(value: Option<&str>) {
    pgsupport::guc::set_with_privilege(
        PARALLEL_SEGMENT_NAME,
        value,
        pgsupport::guc::Lifetime::Session,
    );
}
