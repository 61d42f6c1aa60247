//! Per-process bookkeeping of the queries being throttled, their buckets,
//! and the things wrapped for them (plan nodes, filters). Addresses (of a
//! `QueryDesc`, a `PlanState`, an `ExprState`) are opaque `usize` keys
//! here; `F` is whatever the caller needs back for a wrapped thing (its
//! real function), `B` the bucket (private to the process, or a handle on
//! one in shared memory).
//!
//! Lifetimes follow the executor: a query is registered at `ExecutorStart`
//! and removed at `ExecutorEnd`; queries whose `ExecutorEnd` never comes
//! (errors) are removed when their subtransaction or transaction aborts.
//! Queries are not strictly nested (a cursor's query outlives statements run
//! between its fetches), so entries are removed by key, not popped.
//!
//! Tokens a bucket grants beyond the tuple in hand (a batch, see
//! [`super::pacer::Gcra::new`]) are the caller's to keep and spend without
//! asking the bucket or the clock; the registry counts what was granted,
//! and the caller says at the end how much of it went unspent.

use super::pacer::Grant;

/// A token bucket as the registry uses it.
pub trait Bucket {
    /// Takes up to `want` tokens at `now_nanos` (see
    /// [`super::pacer::Gcra::take`]).
    fn take(&mut self, now_nanos: u64, want: u64) -> Grant;
    /// How many tokens a wrapped thing takes at once.
    fn batch(&self) -> u64;
}

impl Bucket for super::pacer::Pacer {
    fn take(&mut self, now_nanos: u64, want: u64) -> Grant {
        super::pacer::Pacer::take(self, now_nanos, want)
    }

    fn batch(&self) -> u64 {
        self.gcra().batch()
    }
}

/// What a query did, handed back when it is forgotten (for statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryTotals {
    /// Tokens granted to the query's wrapped things: the tuples that passed
    /// (or were examined), plus any the caller kept and did not spend.
    pub tuples: u64,
    /// Time spent sleeping for the query's buckets.
    pub slept_nanos: u64,
}

/// A forgotten query: what it did, the part of it already reported while
/// it ran ([`Registry::progress`]), and the keys that were wrapped for it
/// (whose unspent tokens the caller subtracts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ended {
    pub totals: QueryTotals,
    pub reported: QueryTotals,
    pub keys: Vec<usize>,
}

impl Ended {
    /// What is left to report once `unspent` tokens (granted, never used)
    /// are taken off the totals.
    pub fn unreported(&self, unspent: u64) -> QueryTotals {
        QueryTotals {
            tuples: self
                .totals
                .tuples
                .saturating_sub(unspent)
                .saturating_sub(self.reported.tuples),
            slept_nanos: self
                .totals
                .slept_nanos
                .saturating_sub(self.reported.slept_nanos),
        }
    }
}

#[derive(Debug)]
struct QueryEntry<B> {
    key: usize,
    subxact: u32,
    buckets: Vec<B>,
    granted: u64,
    slept_nanos: u64,
    reported: QueryTotals,
}

#[derive(Debug, Clone, Copy)]
struct Wrapped<F> {
    key: usize,
    query: usize,
    bucket: usize,
    real: F,
}

/// The registry. `Vec`s rather than maps: a process has a handful of
/// wrapped things at a time, and a short linear search is cheaper than
/// hashing on the per-tuple path.
#[derive(Debug)]
pub struct Registry<F, B> {
    queries: Vec<QueryEntry<B>>,
    wrapped: Vec<Wrapped<F>>,
}

impl<F, B> Default for Registry<F, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F, B> Registry<F, B> {
    pub const fn new() -> Self {
        Self {
            queries: Vec::new(),
            wrapped: Vec::new(),
        }
    }

    pub fn query_count(&self) -> usize {
        self.queries.len()
    }

    pub fn wrapped_count(&self) -> usize {
        self.wrapped.len()
    }
}

impl<F: Copy, B: Bucket> Registry<F, B> {
    /// Starts tracking query `query`, begun in subtransaction `subxact`. A
    /// stale entry under the same key (a query whose end was missed) is
    /// dropped first.
    pub fn begin_query(&mut self, query: usize, subxact: u32) {
        self.end_query(query);
        self.queries.push(QueryEntry {
            key: query,
            subxact,
            buckets: Vec::new(),
            granted: 0,
            slept_nanos: 0,
            reported: QueryTotals::default(),
        });
    }

    /// Whether `query` is tracked.
    pub fn has_query(&self, query: usize) -> bool {
        self.queries.iter().any(|q| q.key == query)
    }

    /// Adds a bucket to `query` and returns its index, or `None` if the
    /// query is not tracked.
    pub fn add_bucket(&mut self, query: usize, bucket: B) -> Option<usize> {
        let entry = self.queries.iter_mut().find(|q| q.key == query)?;
        entry.buckets.push(bucket);
        Some(entry.buckets.len() - 1)
    }

    /// Records that `key` (a node or a filter) of `query` is wrapped, paced
    /// by bucket `bucket`, with `real` its real function. Returns false
    /// (and records nothing) if the query or the bucket is unknown, or
    /// `key` is wrapped already.
    pub fn wrap(&mut self, key: usize, query: usize, bucket: usize, real: F) -> bool {
        let known = self
            .queries
            .iter()
            .any(|q| q.key == query && bucket < q.buckets.len());
        if !known || self.wrapped.iter().any(|w| w.key == key) {
            return false;
        }
        self.wrapped.push(Wrapped {
            key,
            query,
            bucket,
            real,
        });
        true
    }

    fn position(&self, key: usize, hint: usize) -> Option<usize> {
        if self.wrapped.get(hint).is_some_and(|w| w.key == key) {
            return Some(hint);
        }
        self.wrapped.iter().position(|w| w.key == key)
    }

    /// The real function of wrapped `key`, and a hint that makes the next
    /// lookup of the same key cheap.
    pub fn real(&self, key: usize) -> Option<(F, usize)> {
        let at = self.position(key, 0)?;
        Some((self.wrapped[at].real, at))
    }

    /// Replaces the real function of `key` (a filter's evaluation function
    /// that replaced itself on its first call).
    pub fn set_real(&mut self, key: usize, real: F) {
        if let Some(at) = self.position(key, 0) {
            self.wrapped[at].real = real;
        }
    }

    /// Takes up to `want` tokens (at least one) for `key` from its bucket
    /// at `now_nanos` (see [`super::pacer::Gcra::take`]); None for a key no
    /// longer tracked (its tuple passes).
    pub fn take(&mut self, key: usize, now_nanos: u64, want: u64) -> Option<Grant> {
        let w = self.wrapped[self.position(key, 0)?];
        let query = self.queries.iter_mut().find(|q| q.key == w.query)?;
        let grant = query.buckets.get_mut(w.bucket)?.take(now_nanos, want);
        query.granted = query.granted.saturating_add(grant.granted);
        Some(grant)
    }

    /// How many tokens `key`'s bucket hands out at once (1 for an unknown
    /// key).
    pub fn batch(&self, key: usize) -> u64 {
        self.position(key, 0)
            .map(|at| self.wrapped[at])
            .and_then(|w| {
                let q = self.queries.iter().find(|q| q.key == w.query)?;
                Some(q.buckets.get(w.bucket)?.batch())
            })
            .unwrap_or(1)
    }

    /// Adds time slept for `key`'s query.
    pub fn add_sleep(&mut self, key: usize, nanos: u64) {
        let Some(query) = self.wrapped.iter().find(|w| w.key == key).map(|w| w.query) else {
            return;
        };
        if let Some(q) = self.queries.iter_mut().find(|q| q.key == query) {
            q.slept_nanos = q.slept_nanos.saturating_add(nanos);
        }
    }

    /// What `key`'s query did since this was last called for it, for
    /// statistics that grow while the query runs; `unspent` is what the
    /// caller holds of the tokens granted for the query's keys and has not
    /// used yet. The totals [`Registry::end_query`] hands back say how
    /// much was reported this way, so nothing is counted twice; tuples
    /// reported never decrease (tokens used only grow). None for a key no
    /// longer tracked.
    pub fn progress(&mut self, key: usize, unspent: u64) -> Option<QueryTotals> {
        let query = self.wrapped.iter().find(|w| w.key == key)?.query;
        let q = self.queries.iter_mut().find(|q| q.key == query)?;
        let used = q.granted.saturating_sub(unspent).max(q.reported.tuples);
        let delta = QueryTotals {
            tuples: used - q.reported.tuples,
            slept_nanos: q.slept_nanos.saturating_sub(q.reported.slept_nanos),
        };
        q.reported = QueryTotals {
            tuples: used,
            slept_nanos: q.slept_nanos.max(q.reported.slept_nanos),
        };
        Some(delta)
    }

    /// The query `key` is wrapped for.
    pub fn query_of(&self, key: usize) -> Option<usize> {
        self.wrapped.iter().find(|w| w.key == key).map(|w| w.query)
    }

    /// The keys wrapped for `query`.
    pub fn keys_of(&self, query: usize) -> Vec<usize> {
        self.wrapped
            .iter()
            .filter(|w| w.query == query)
            .map(|w| w.key)
            .collect()
    }

    /// Stops tracking `query` and what was wrapped for it; returns what it
    /// did.
    pub fn end_query(&mut self, query: usize) -> Option<Ended> {
        let at = self.queries.iter().position(|q| q.key == query)?;
        let entry = self.queries.swap_remove(at);
        let keys = self.keys_of(query);
        self.wrapped.retain(|w| w.query != query);
        Some(Ended {
            totals: QueryTotals {
                tuples: entry.granted,
                slept_nanos: entry.slept_nanos,
            },
            reported: entry.reported,
            keys,
        })
    }

    /// Forgets every query begun in subtransaction `subxact` or a later one
    /// (subtransaction ids grow within a transaction): they died with it.
    pub fn abort_subxact(&mut self, subxact: u32) -> Vec<(usize, Ended)> {
        let dead: Vec<usize> = self
            .queries
            .iter()
            .filter(|q| q.subxact >= subxact)
            .map(|q| q.key)
            .collect();
        dead.into_iter()
            .filter_map(|key| self.end_query(key).map(|t| (key, t)))
            .collect()
    }

    /// Forgets everything (end of transaction).
    pub fn clear(&mut self) -> Vec<(usize, Ended)> {
        let all: Vec<usize> = self.queries.iter().map(|q| q.key).collect();
        all.into_iter()
            .filter_map(|key| self.end_query(key).map(|t| (key, t)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::pacer::Pacer;
    use super::*;

    type Reg = Registry<&'static str, Pacer>;

    fn query_with_nodes(reg: &mut Reg, query: usize, subxact: u32, nodes: &[usize], rate: u64) {
        reg.begin_query(query, subxact);
        for &node in nodes {
            let bucket = reg.add_bucket(query, Pacer::new(rate, 1, 0)).unwrap();
            assert!(reg.wrap(node, query, bucket, "real"));
        }
    }

    /// Passes one tuple of `key` at `now`: Ok if at once, Err(wait) if it
    /// must wait first (the token is then reserved).
    fn pass(reg: &mut Reg, key: usize, now: u64) -> Result<(), u64> {
        match reg.take(key, now, 1).map_or(0, |g| g.wait_nanos) {
            0 => Ok(()),
            wait => Err(wait),
        }
    }

    #[test]
    fn nodes_find_their_real_function_until_their_query_ends() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10, 11], 100);
        assert_eq!(reg.real(10).map(|r| r.0), Some("real"));
        let ended = reg.end_query(1).unwrap();
        assert_eq!(ended.keys, [10, 11]);
        assert_eq!(reg.real(10), None);
        assert_eq!((reg.query_count(), reg.wrapped_count()), (0, 0));
    }

    #[test]
    fn per_node_buckets_are_independent() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10, 11], 50);
        // Burst of one each: the second tuple of a node waits, the other
        // node's first tuple does not.
        assert_eq!(pass(&mut reg, 10, 0), Ok(()));
        assert_eq!(pass(&mut reg, 10, 0), Err(20_000_000));
        assert_eq!(pass(&mut reg, 11, 0), Ok(()));
    }

    #[test]
    fn query_mode_nodes_share_one_bucket() {
        let mut reg = Reg::new();
        reg.begin_query(1, 1);
        let bucket = reg.add_bucket(1, Pacer::new(50, 2, 0)).unwrap();
        assert!(reg.wrap(10, 1, bucket, "a"));
        assert!(reg.wrap(11, 1, bucket, "b"));
        assert!(!reg.wrap(11, 1, bucket, "b"), "never wrapped twice");
        assert_eq!(pass(&mut reg, 10, 0), Ok(()));
        assert!(pass(&mut reg, 11, 0).is_err(), "the shared budget is spent");
    }

    #[test]
    fn batches_are_granted_and_counted() {
        let mut reg = Reg::new();
        // 1,000,000/s for one holder: batches of 1000 tokens.
        query_with_nodes(&mut reg, 1, 1, &[10], 1_000_000);
        assert_eq!(reg.batch(10), 1000);
        assert_eq!(reg.batch(99), 1);
        let grant = reg.take(10, 0, reg.batch(10)).unwrap();
        assert_eq!((grant.granted, grant.wait_nanos), (1000, 0));
        reg.add_sleep(10, 5);
        let ended = reg.end_query(1).unwrap();
        assert_eq!(
            ended.totals,
            QueryTotals {
                tuples: 1000,
                slept_nanos: 5
            }
        );
    }

    #[test]
    fn progress_reports_what_was_used_once() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10, 11], 1_000_000);
        assert_eq!(reg.progress(99, 0), None);
        // 1000 granted to node 10, 990 of them still held unused.
        reg.take(10, 0, 1000).unwrap();
        reg.add_sleep(10, 7);
        assert_eq!(
            reg.progress(10, 990),
            Some(QueryTotals {
                tuples: 10,
                slept_nanos: 7
            })
        );
        assert_eq!(reg.progress(11, 990), Some(QueryTotals::default()));
        // More used, and more held than before: what was reported stays.
        reg.take(11, 0, 1000).unwrap();
        assert_eq!(reg.progress(11, 1995).unwrap().tuples, 0);
        assert_eq!(reg.progress(11, 1500).unwrap().tuples, 490);
        reg.add_sleep(11, 3);
        let ended = reg.end_query(1).unwrap();
        assert_eq!(
            ended.reported,
            QueryTotals {
                tuples: 500,
                slept_nanos: 7
            }
        );
        // 1200 of the 2000 granted were used in the end: 700 more.
        assert_eq!(
            ended.unreported(800),
            QueryTotals {
                tuples: 700,
                slept_nanos: 3
            }
        );
        assert_eq!(ended.unreported(1900).tuples, 0, "never below zero");
    }

    #[test]
    fn cursor_queries_outlive_later_statements() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10], 100); // DECLARE + first FETCH
        query_with_nodes(&mut reg, 2, 1, &[20], 100); // another statement
        reg.end_query(2);
        assert!(reg.real(10).is_some(), "the cursor's node survives");
        assert_eq!(reg.real(20), None);
    }

    #[test]
    fn subtransaction_abort_forgets_only_its_queries() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10], 100);
        query_with_nodes(&mut reg, 2, 2, &[20], 100);
        query_with_nodes(&mut reg, 3, 3, &[30], 100);
        assert_eq!(pass(&mut reg, 30, 0), Ok(()));
        let mut dead = reg.abort_subxact(2);
        dead.sort_by_key(|d| d.0);
        assert_eq!(dead.len(), 2);
        assert_eq!(
            dead[1].1.totals.tuples, 1,
            "what query 3 passed is reported"
        );
        assert_eq!(dead[1].1.keys, [30]);
        assert!(reg.real(10).is_some());
        assert_eq!((reg.real(20), reg.real(30)), (None, None));
        assert_eq!(reg.clear().len(), 1);
        assert_eq!((reg.query_count(), reg.wrapped_count()), (0, 0));
    }

    #[test]
    fn reused_addresses_replace_stale_entries() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10], 100);
        // Query 1's end was missed; its address comes back for a new query.
        reg.begin_query(1, 1);
        assert_eq!(reg.real(10), None);
        let bucket = reg.add_bucket(1, Pacer::new(100, 1, 0)).unwrap();
        assert!(reg.wrap(10, 1, bucket, "new"));
        assert_eq!(reg.real(10).map(|r| r.0), Some("new"));
        reg.set_real(10, "replaced");
        assert_eq!(reg.real(10).map(|r| r.0), Some("replaced"));
    }

    #[test]
    fn unknown_queries_and_keys_are_refused_or_pass() {
        let mut reg = Reg::new();
        assert_eq!(reg.add_bucket(9, Pacer::new(1, 1, 0)), None);
        assert!(!reg.wrap(1, 9, 0, "x"));
        reg.begin_query(9, 1);
        assert!(!reg.wrap(1, 9, 0, "x"), "bucket 0 does not exist yet");
        assert_eq!(reg.take(12345, 0, 1), None);
        assert_eq!(reg.end_query(8), None);
    }
}
