//! Read-only SPI queries. pgrx's `Spi::get_one`, `get_two`, `get_three`
//! and `run` open the query as a possible write and assign the transaction
//! an id first (`GetCurrentTransactionId`): on a hot standby that fails
//! with "cannot assign TransactionIds during recovery", and on a primary it
//! spends a transaction id on a read. These run the query read-only (as
//! `SpiClient::select` does) and assign nothing; in a transaction that has
//! already written, pgrx runs them read-write so they see those writes.
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{self, SpiResult};
use pgrx::{FromDatum, IntoDatum};

/// The first column of the first row of a read-only query (None when there
/// is no row or the value is NULL).
pub fn select_one<A: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
) -> SpiResult<Option<A>> {
    Spi::connect(|client| first_or_none(client.select(query, Some(1), args)?, |t| t.get_one()))
}

/// The first two columns of the first row of a read-only query.
pub fn select_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
) -> SpiResult<(Option<A>, Option<B>)> {
    Spi::connect(|client| {
        let table = client.select(query, Some(1), args)?;
        if table.is_empty() {
            return Ok((None, None));
        }
        table.first().get_two()
    })
}

/// The first three columns of the first row of a read-only query.
pub fn select_three<A, B, C>(
    query: &str,
    args: &[DatumWithOid<'_>],
) -> SpiResult<(Option<A>, Option<B>, Option<C>)>
where
    A: FromDatum + IntoDatum,
    B: FromDatum + IntoDatum,
    C: FromDatum + IntoDatum,
{
    Spi::connect(|client| {
        let table = client.select(query, Some(1), args)?;
        if table.is_empty() {
            return Ok((None, None, None));
        }
        table.first().get_three()
    })
}

/// Runs a read-only query for its effects (e.g. `SELECT
/// pg_catalog.set_config(...)`), discarding its rows.
pub fn select_run(query: &str, args: &[DatumWithOid<'_>]) -> SpiResult<()> {
    Spi::connect(|client| client.select(query, None, args).map(|_| ()))
}

fn first_or_none<A>(
    table: spi::SpiTupleTable<'_>,
    get: impl FnOnce(spi::SpiTupleTable<'_>) -> SpiResult<Option<A>>,
) -> SpiResult<Option<A>> {
    if table.is_empty() {
        return Ok(None);
    }
    get(table.first())
}
