//! What the worker does when its server leaves recovery (a promoted
//! standby): it writes the decisions it made as a standby to
//! `walrus.history`, then starts from the best size it knows, the newer of
//! its own last change as a standby and the last applied decision of the old
//! primary (replicated in `walrus.history`), so that under the same load the
//! new primary is not forced into checkpoints while it measures again.
use crate::engine::{self, Context};
use crate::guc::ServerSettings;
use crate::pg::shmem;
use governance::sizing::sizer::{CarrySource, KnownSize, carry_over, carry_over_decision};
use governance::sizing::{Evaluation, Origin, Settings};
use pgsupport::privileged::as_superuser;
use pgsupport::spi::select_two;
use pgsupport::subxact::in_subtransaction;
use pgsupport::time::{iso8601_utc, unix_ms};

/// The old primary's last applied decision in `walrus.history` (decisions
/// written there by a promoted standby are not the old primary's).
fn last_primary_decision() -> Result<Option<KnownSize>, String> {
    let read = in_subtransaction(|| {
        as_superuser(|| {
            let exists = pgsupport::spi::select_one::<bool>(
                "SELECT pg_catalog.to_regclass('walrus.history') IS NOT NULL",
                &[],
            )?;
            if exists != Some(true) {
                return Ok((None, None));
            }
            select_two::<i64, i64>(
                "SELECT h.new_size_mb::bigint, \
                        (pg_catalog.date_part('epoch', h.\"timestamp\") OPERATOR(pg_catalog.*) 1000)::bigint \
                 FROM walrus.history AS h \
                 WHERE h.action OPERATOR(pg_catalog.=) ANY (ARRAY['increase', 'decrease', 'capped']) \
                   AND h.new_size_mb OPERATOR(pg_catalog.<>) h.old_size_mb \
                   AND ((h.metadata OPERATOR(pg_catalog.->>) 'server_role') IS NULL \
                        OR (h.metadata OPERATOR(pg_catalog.->>) 'server_role') OPERATOR(pg_catalog.<>) 'standby') \
                 ORDER BY h.\"timestamp\" DESC, h.id DESC LIMIT 1",
                &[],
            )
        })
    });
    match read {
        Ok(Ok((Some(mb), Some(at)))) => Ok(Some(KnownSize {
            at_ms: at.max(0) as u64,
            size_mb: mb.max(0) as u64,
        })),
        Ok(Ok(_)) => Ok(None),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e),
    }
}

/// Writes the standby's kept decisions to `walrus.history` (again at every
/// interval until it succeeds). Outside recovery, inside a transaction.
pub fn write_pending() {
    match engine::write_pending() {
        Ok(0) => {}
        Ok(n) => pgrx::log!("pg_walrus: wrote {n} decisions made as a standby to walrus.history"),
        Err(e) => {
            shmem::SHARED.exclusive().history_errors += 1;
            pgrx::warning!(
                "pg_walrus: could not write the decisions made as a standby to walrus.history: {e}"
            );
        }
    }
}

/// Runs once when the worker finds its server promoted. Inside a
/// transaction, outside recovery; `settings` are the primary's.
pub fn on_promotion(server: &ServerSettings, settings: &Settings) {
    let now = unix_ms();
    pgrx::log!("pg_walrus: server promoted, sizing max_wal_size for checkpoints from now on");
    write_pending();
    let own = {
        let mut sh = shmem::SHARED.exclusive();
        sh.promotions += 1;
        sh.last_promotion_ms = now;
        sh.sizer.drop_baseline();
        (sh.last_change_standby && sh.last_change_ms > 0).then_some(KnownSize {
            at_ms: sh.last_change_ms,
            size_mb: sh.last_change_mb,
        })
    };
    if !settings.enabled {
        pgrx::log!("pg_walrus: walrus.enable is off: max_wal_size stays as it is after promotion");
        return;
    }
    let primary = last_primary_decision().unwrap_or_else(|e| {
        pgrx::warning!("pg_walrus: could not read the old primary's decisions: {e}");
        None
    });
    let Some((source, known)) = carry_over(own, primary) else {
        pgrx::log!("pg_walrus: no earlier decision to start from after promotion");
        return;
    };
    let why = match source {
        CarrySource::Standby => format!(
            "this server's last decision as a standby ({})",
            iso8601_utc(known.at_ms)
        ),
        CarrySource::Primary => format!(
            "the old primary's last decision ({})",
            iso8601_utc(known.at_ms)
        ),
    };
    let Some(decision) = carry_over_decision(settings, server.max_wal_size_mb, known, &why) else {
        pgrx::log!(
            "pg_walrus: max_wal_size already {}MB as {why} set it",
            server.max_wal_size_mb
        );
        return;
    };
    let eval = Evaluation {
        forced: 0,
        timed: 0,
        wal_bytes: 0,
        elapsed_ms: 0,
        cycle_bytes: 0,
        needed_mb: 0,
        decision: None,
        keep_reason: String::new(),
    };
    let ctx = Context {
        settings,
        server,
        origin: Origin::Promotion,
    };
    engine::carry_out(decision, &eval, ctx);
}
