//! Per-backend bookkeeping of the queries being throttled and the plan nodes
//! wrapped for them. Addresses (of a `QueryDesc`, of a `PlanState`) are
//! opaque `usize` keys here; `F` is whatever the caller needs back for a
//! wrapped node (the node's real `ExecProcNode`).
//!
//! Lifetimes follow the executor: a query is registered at `ExecutorStart`
//! and removed at `ExecutorEnd`; queries whose `ExecutorEnd` never comes
//! (errors) are removed when their subtransaction or transaction aborts.
//! Queries are not strictly nested (a cursor's query outlives statements run
//! between its fetches), so entries are removed by key, not popped.

use std::collections::HashMap;

use super::pacer::Pacer;

#[derive(Debug)]
struct QueryEntry {
    key: usize,
    subxact: u32,
    pacers: Vec<Pacer>,
}

#[derive(Debug, Clone, Copy)]
struct NodeEntry<F> {
    query: usize,
    pacer: usize,
    real: F,
}

/// What the wrapper of one node needs: the real function and whether the
/// tuple may pass now.
#[derive(Debug, Default)]
pub struct Registry<F> {
    queries: Vec<QueryEntry>,
    nodes: HashMap<usize, NodeEntry<F>>,
}

impl<F: Copy> Registry<F> {
    pub fn new() -> Self {
        Self {
            queries: Vec::new(),
            nodes: HashMap::new(),
        }
    }

    /// Starts tracking query `query`, begun in subtransaction `subxact`. A
    /// stale entry under the same key (a query whose end was missed) is
    /// dropped first.
    pub fn begin_query(&mut self, query: usize, subxact: u32) {
        self.end_query(query);
        self.queries.push(QueryEntry {
            key: query,
            subxact,
            pacers: Vec::new(),
        });
    }

    /// Adds a pacer to `query` and returns its index, or `None` if the query
    /// is not tracked.
    pub fn add_pacer(&mut self, query: usize, pacer: Pacer) -> Option<usize> {
        let entry = self.queries.iter_mut().find(|q| q.key == query)?;
        entry.pacers.push(pacer);
        Some(entry.pacers.len() - 1)
    }

    /// Records that `node` of `query` is wrapped, paced by pacer `pacer`,
    /// with `real` its real function. Returns false (and records nothing)
    /// if the query or the pacer is unknown.
    pub fn wrap_node(&mut self, node: usize, query: usize, pacer: usize, real: F) -> bool {
        let known = self
            .queries
            .iter()
            .any(|q| q.key == query && pacer < q.pacers.len());
        if known {
            self.nodes.insert(node, NodeEntry { query, pacer, real });
        }
        known
    }

    /// The real function of wrapped node `node`.
    pub fn real(&self, node: usize) -> Option<F> {
        self.nodes.get(&node).map(|n| n.real)
    }

    /// Charges one tuple of `node` to its pacer: `Ok` to pass it now,
    /// `Err(micros)` to wait that long first. A node no longer tracked (its
    /// query ended) passes.
    pub fn admit(&mut self, node: usize, now_micros: u64) -> Result<(), u64> {
        let Some(entry) = self.nodes.get(&node).copied() else {
            return Ok(());
        };
        match self
            .queries
            .iter_mut()
            .find(|q| q.key == entry.query)
            .and_then(|q| q.pacers.get_mut(entry.pacer))
        {
            Some(pacer) => pacer.admit(now_micros),
            None => Ok(()),
        }
    }

    /// Stops tracking `query` and its nodes.
    pub fn end_query(&mut self, query: usize) {
        let before = self.queries.len();
        self.queries.retain(|q| q.key != query);
        if self.queries.len() != before {
            self.nodes.retain(|_, n| n.query != query);
        }
    }

    /// Forgets every query begun in subtransaction `subxact` or a later one
    /// (subtransaction ids grow within a transaction): they died with it.
    pub fn abort_subxact(&mut self, subxact: u32) {
        let dead: Vec<usize> = self
            .queries
            .iter()
            .filter(|q| q.subxact >= subxact)
            .map(|q| q.key)
            .collect();
        for key in dead {
            self.end_query(key);
        }
    }

    /// Forgets everything (end of transaction).
    pub fn clear(&mut self) {
        self.queries.clear();
        self.nodes.clear();
    }

    pub fn query_count(&self) -> usize {
        self.queries.len()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Reg = Registry<&'static str>;

    fn query_with_nodes(reg: &mut Reg, query: usize, subxact: u32, nodes: &[usize], rate: u64) {
        reg.begin_query(query, subxact);
        for &node in nodes {
            let pacer = reg.add_pacer(query, Pacer::new(rate, 0)).unwrap();
            assert!(reg.wrap_node(node, query, pacer, "real"));
        }
    }

    #[test]
    fn nodes_find_their_real_function_until_their_query_ends() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10, 11], 100);
        assert_eq!(reg.real(10), Some("real"));
        reg.end_query(1);
        assert_eq!(reg.real(10), None);
        assert_eq!((reg.query_count(), reg.node_count()), (0, 0));
    }

    #[test]
    fn per_node_pacers_are_independent() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10, 11], 50);
        // Burst of one each: the second tuple of a node waits, the other
        // node's first tuple does not.
        assert_eq!(reg.admit(10, 0), Ok(()));
        assert!(reg.admit(10, 0).is_err());
        assert_eq!(reg.admit(11, 0), Ok(()));
    }

    #[test]
    fn query_mode_nodes_share_one_pacer() {
        let mut reg = Reg::new();
        reg.begin_query(1, 1);
        let pacer = reg.add_pacer(1, Pacer::new(50, 0)).unwrap();
        assert!(reg.wrap_node(10, 1, pacer, "a"));
        assert!(reg.wrap_node(11, 1, pacer, "b"));
        assert_eq!(reg.admit(10, 0), Ok(()));
        assert!(reg.admit(11, 0).is_err(), "the shared budget is spent");
    }

    #[test]
    fn cursor_queries_outlive_later_statements() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10], 100); // DECLARE + first FETCH
        query_with_nodes(&mut reg, 2, 1, &[20], 100); // another statement
        reg.end_query(2);
        assert_eq!(reg.real(10), Some("real"), "the cursor's node survives");
        assert_eq!(reg.real(20), None);
    }

    #[test]
    fn subtransaction_abort_forgets_only_its_queries() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10], 100);
        query_with_nodes(&mut reg, 2, 2, &[20], 100);
        query_with_nodes(&mut reg, 3, 3, &[30], 100);
        reg.abort_subxact(2);
        assert_eq!(reg.real(10), Some("real"));
        assert_eq!((reg.real(20), reg.real(30)), (None, None));
        reg.clear();
        assert_eq!((reg.query_count(), reg.node_count()), (0, 0));
    }

    #[test]
    fn reused_addresses_replace_stale_entries() {
        let mut reg = Reg::new();
        query_with_nodes(&mut reg, 1, 1, &[10], 100);
        // Query 1's end was missed; its address comes back for a new query.
        reg.begin_query(1, 1);
        assert_eq!(reg.real(10), None);
        let pacer = reg.add_pacer(1, Pacer::new(100, 0)).unwrap();
        assert!(reg.wrap_node(10, 1, pacer, "new"));
        assert_eq!(reg.real(10), Some("new"));
    }

    #[test]
    fn unknown_queries_and_nodes_are_refused_or_pass() {
        let mut reg = Reg::new();
        assert_eq!(reg.add_pacer(9, Pacer::new(1, 0)), None);
        assert!(!reg.wrap_node(1, 9, 0, "x"));
        reg.begin_query(9, 1);
        assert!(!reg.wrap_node(1, 9, 0, "x"), "pacer 0 does not exist yet");
        assert_eq!(reg.admit(12345, 0), Ok(()));
    }
}
