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
//! A wrapped thing keeps the tokens its bucket granted beyond the tuple in
//! hand (its credits), and spends them without asking the bucket or the
//! clock: see [`Registry::spend_credit`].

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
    /// Tuples that passed throttled nodes (or were examined by throttled
    /// filters).
    pub tuples: u64,
    /// Time spent sleeping for the query's buckets.
    pub slept_nanos: u64,
}

#[derive(Debug)]
struct QueryEntry<B> {
    key: usize,
    subxact: u32,
    buckets: Vec<B>,
    granted: u64,
    slept_nanos: u64,
}

#[derive(Debug, Clone, Copy)]
struct Wrapped<F> {
    key: usize,
    query: usize,
    bucket: usize,
    real: F,
    credits: u64,
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
            credits: 0,
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

    /// Lets one tuple of `key` pass on a credit it holds: true if it had
    /// one (then nothing else is needed), false if the caller must
    /// [`take`](Registry::take) from the bucket. A key no longer tracked
    /// (its query ended) passes.
    pub fn spend_credit(&mut self, key: usize, hint: usize) -> bool {
        match self.position(key, hint) {
            Some(at) => {
                let w = &mut self.wrapped[at];
                if w.credits > 0 {
                    w.credits -= 1;
                    true
                } else {
                    false
                }
            }
            None => true,
        }
    }

    /// Takes tokens for one tuple of `key` from its bucket at `now_nanos`:
    /// the tuple's own and, when available, a batch of credits kept for the
    /// next ones. Returns how long to wait before the tuple passes (0: at
    /// once). A key no longer tracked passes.
    pub fn take(&mut self, key: usize, now_nanos: u64) -> u64 {
        let Some(at) = self.position(key, 0) else {
            return 0;
        };
        let w = self.wrapped[at];
        let Some(query) = self.queries.iter_mut().find(|q| q.key == w.query) else {
            return 0;
        };
        let Some(bucket) = query.buckets.get_mut(w.bucket) else {
            return 0;
        };
        let batch = bucket.batch();
        let grant = bucket.take(now_nanos, batch);
        query.granted = query.granted.saturating_add(grant.granted);
        self.wrapped[at].credits = self.wrapped[at]
            .credits
            .saturating_add(grant.granted.saturating_sub(1));
        grant.wait_nanos
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

    /// The keys wrapped for `query`.
    pub fn keys_of(&self, query: usize) -> Vec<usize> {
        self.wrapped
            .iter()
            .filter(|w| w.query == query)
            .map(|w| w.key)
            .collect()
    }

    /// Stops tracking `query` and what was wrapped for it; returns what it
    /// did (tokens granted but not spent are not counted as tuples).
    pub fn end_query(&mut self, query: usize) -> Option<QueryTotals> {
        let at = self.queries.iter().position(|q| q.key == query)?;
        let entry = self.queries.swap_remove(at);
        let unspent: u64 = self
            .wrapped
            .iter()
            .filter(|w| w.query == query)
            .map(|w| w.credits)
            .sum();
        self.wrapped.retain(|w| w.query != query);
        Some(QueryTotals {
            tuples: entry.granted.saturating_sub(unspent),
            slept_nanos: entry.slept_nanos,
        })
    }

    /// Forgets every query begun in subtransaction `subxact` or a later one
    /// (subtransaction ids grow within a transaction): they died with it.
    pub fn abort_subxact(&mut self, subxact: u32) -> Vec<(usize, QueryTotals)> {
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
    pub fn clear(&mut self) -> Vec<(usize, QueryTotals)> {
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
        if reg.spend_credit(key, 0) {
            return Ok(());
        }
        match reg.take(key, now) {
            0 => Ok(()),
            wait => Err(wait),
        }
    }

    #[test]
    fn nodes_find_their_real_function_until_their_query_ends() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10, 11], 100);
        assert_eq!(reg.real(10).map(|r| r.0), Some("real"));
        assert!(reg.end_query(1).is_some());
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
    fn credits_pass_tuples_without_the_bucket_and_unspent_ones_do_not_count() {
        let mut reg = Reg::new();
        // 1,000,000/s for one holder: batches of 1000 tokens.
        query_with_nodes(&mut reg, 1, 1, &[10], 1_000_000);
        assert_eq!(reg.take(10, 0), 0);
        for _ in 0..999 {
            assert!(reg.spend_credit(10, 0));
        }
        assert!(!reg.spend_credit(10, 0), "the batch is used up");
        assert_eq!(reg.take(10, 0), 0);
        assert!(reg.spend_credit(10, 0));
        reg.add_sleep(10, 5);
        // 2000 granted, 998 unspent: 1002 tuples passed.
        assert_eq!(
            reg.end_query(1),
            Some(QueryTotals {
                tuples: 1002,
                slept_nanos: 5
            })
        );
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
        assert_eq!(dead[1].1.tuples, 1, "what query 3 passed is reported");
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
        assert!(reg.spend_credit(12345, 0));
        assert_eq!(reg.take(12345, 0), 0);
        assert_eq!(reg.end_query(8), None);
    }
}
