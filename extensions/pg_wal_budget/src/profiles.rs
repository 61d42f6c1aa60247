//! Durable learned profiles: shared memory <-> `pwb.query_profile`.
use crate::pg::shmem;
use pgrx::prelude::*;

/// A stored profile row: scope_hash, query_id, calls, ewma, max, last seen.
type StoredRow = (i64, i64, i64, f64, i64, i64);

/// Upserts every learned profile into pwb.query_profile of the current
/// database; returns how many rows were written.
pub fn flush() -> i64 {
    let (mut scope, mut query, mut calls, mut ewma, mut max, mut seen) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    if let Some(mut shm) = crate::settlement::lock_current() {
        for p in shm.profiles().iter_mut().filter(|p| p.used && p.calls > 0) {
            scope.push(p.scope_hash);
            query.push(p.query_id);
            calls.push(i64::try_from(p.calls).unwrap_or(i64::MAX));
            ewma.push(p.ewma_wal_bytes);
            max.push(i64::try_from(p.max_wal_bytes).unwrap_or(i64::MAX));
            seen.push(p.last_seen_epoch_ms);
        }
    }
    if scope.is_empty() {
        return 0;
    }
    let n = scope.len() as i64;
    Spi::run_with_args(
        "INSERT INTO pwb.query_profile AS q \
           (scope_hash, query_id, calls, ewma_wal_bytes, max_wal_bytes, last_seen_epoch_ms, updated_at) \
         SELECT s, qid, c, e, m, l, pg_catalog.now() \
           FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::bigint[]), \
                           pg_catalog.unnest($3::bigint[]), pg_catalog.unnest($4::float8[]), \
                           pg_catalog.unnest($5::bigint[]), pg_catalog.unnest($6::bigint[])) \
                AS u(s, qid, c, e, m, l) \
         ON CONFLICT (scope_hash, query_id) DO UPDATE SET \
           calls = EXCLUDED.calls, ewma_wal_bytes = EXCLUDED.ewma_wal_bytes, \
           max_wal_bytes = EXCLUDED.max_wal_bytes, last_seen_epoch_ms = EXCLUDED.last_seen_epoch_ms, \
           updated_at = pg_catalog.now()",
        &[
            scope.into(),
            query.into(),
            calls.into(),
            ewma.into(),
            max.into(),
            seen.into(),
        ],
    )
    .unwrap_or_else(|e| error!("pg_wal_budget could not store profiles: {e}"));
    n
}

/// Loads stored profiles into shared memory, without overwriting profiles
/// learned since startup. Returns how many were loaded.
pub fn load() -> i64 {
    let rows = Spi::connect(|client| -> Result<Vec<StoredRow>, pgrx::spi::Error> {
        let table = client.select(
            "SELECT scope_hash, query_id, calls, ewma_wal_bytes, max_wal_bytes, last_seen_epoch_ms \
             FROM pwb.query_profile",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in table {
            out.push((
                row.get::<i64>(1)?.unwrap_or(0),
                row.get::<i64>(2)?.unwrap_or(0),
                row.get::<i64>(3)?.unwrap_or(0),
                row.get::<f64>(4)?.unwrap_or(0.0),
                row.get::<i64>(5)?.unwrap_or(0),
                row.get::<i64>(6)?.unwrap_or(0),
            ));
        }
        Ok(out)
    })
    .unwrap_or_default();
    let Some(mut shm) = shmem::lock() else {
        return 0;
    };
    let mut loaded = 0;
    for (scope, query, calls, ewma, max, seen) in rows {
        if query == 0 || calls <= 0 || !ewma.is_finite() || ewma < 0.0 {
            continue;
        }
        if let Some(p) = shm.profile(scope, query, true)
            && p.calls == 0
        {
            p.calls = calls.unsigned_abs();
            p.ewma_wal_bytes = ewma;
            p.max_wal_bytes = max.max(0).unsigned_abs();
            p.last_seen_epoch_ms = seen;
            loaded += 1;
        }
    }
    loaded
}

/// Deletes the stored profiles of the current database.
pub fn delete_stored() {
    Spi::run("DELETE FROM pwb.query_profile")
        .unwrap_or_else(|e| error!("pg_wal_budget could not delete stored profiles: {e}"));
}
