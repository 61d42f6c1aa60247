//! The throttling configuration of one user, as stored in the `throttlings`
//! table: an optional query-mode rate and an optional rate per node kind.

/// The executor node kinds `pg_throttle` can throttle, in the order of the
/// arguments of `throttle_user_per_node` and the columns of `throttlings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    SeqScan,
    IndexScan,
    IndexOnlyScan,
    BitmapHeapScan,
    BitmapIndexScan,
    CustomScan,
    ForeignScan,
    TidRangeScan,
    ModifyTable,
    ValuesScan,
    Result,
    FunctionScan,
}

impl NodeKind {
    /// Every kind, in column order.
    pub const ALL: [NodeKind; 12] = [
        NodeKind::SeqScan,
        NodeKind::IndexScan,
        NodeKind::IndexOnlyScan,
        NodeKind::BitmapHeapScan,
        NodeKind::BitmapIndexScan,
        NodeKind::CustomScan,
        NodeKind::ForeignScan,
        NodeKind::TidRangeScan,
        NodeKind::ModifyTable,
        NodeKind::ValuesScan,
        NodeKind::Result,
        NodeKind::FunctionScan,
    ];

    /// Position in [`NodeKind::ALL`] (and in the table's column order).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The `throttlings` column holding this kind's rate.
    pub fn column(self) -> &'static str {
        match self {
            NodeKind::SeqScan => "seq_scan_throttle",
            NodeKind::IndexScan => "idx_scan_throttle",
            NodeKind::IndexOnlyScan => "idx_only_scan_throttle",
            NodeKind::BitmapHeapScan => "bitmap_heap_scan_throttle",
            NodeKind::BitmapIndexScan => "bitmap_index_scan_throttle",
            NodeKind::CustomScan => "custom_scan_throttle",
            NodeKind::ForeignScan => "foreign_scan_throttle",
            NodeKind::TidRangeScan => "tid_range_scan_throttle",
            NodeKind::ModifyTable => "modify_scan_throttle",
            NodeKind::ValuesScan => "values_scan_throttle",
            NodeKind::Result => "result_scan_throttle",
            NodeKind::FunctionScan => "func_scan_throttle",
        }
    }
}

/// How the nodes of one query share their budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every throttled node has its own pacer at its own rate.
    PerNode,
    /// All supported nodes of a query draw from one pacer at this rate.
    Query(u64),
}

/// One user's configuration. Rates are tuples per second; `None` means
/// "not throttled". Non-positive values never get here: the table's CHECK
/// constraints and the SQL functions refuse them, and [`ThrottleConfig::new`]
/// treats any that slip through as unthrottled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleConfig {
    query: Option<u64>,
    per_node: [Option<u64>; 12],
}

fn positive(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0)
}

impl ThrottleConfig {
    /// Builds a configuration from the raw column values (query rate, then
    /// the per-node rates in [`NodeKind::ALL`] order).
    pub fn new(query: Option<i64>, per_node: [Option<i64>; 12]) -> Self {
        Self {
            query: positive(query),
            per_node: per_node.map(positive),
        }
    }

    /// Nothing throttled.
    pub const UNTHROTTLED: Self = Self {
        query: None,
        per_node: [None; 12],
    };

    /// Nothing throttled.
    pub fn unthrottled() -> Self {
        Self::UNTHROTTLED
    }

    /// The mode: a query-mode rate wins over per-node rates, as documented
    /// ("query_throttle NULL enables per-node mode").
    pub fn mode(&self) -> Mode {
        match self.query {
            Some(rate) => Mode::Query(rate),
            None => Mode::PerNode,
        }
    }

    /// Whether any node of any query would be throttled.
    pub fn is_throttled(&self) -> bool {
        self.query.is_some() || self.per_node.iter().any(Option::is_some)
    }

    /// The per-node rate configured for `kind` (ignores query mode).
    pub fn node_rate(&self, kind: NodeKind) -> Option<u64> {
        self.per_node[kind.index()]
    }

    /// The rate at which a plan node of `kind` is paced in per-node mode.
    ///
    /// A BitmapIndexScan hands its parent one bitmap, not tuples, and the
    /// executor calls it through `MultiExecProcNode`, which cannot be
    /// wrapped. Its rate is therefore applied where its output surfaces as
    /// tuples: the BitmapHeapScan above it returns at most the lower of the
    /// two rates.
    pub fn effective_node_rate(&self, kind: NodeKind) -> Option<u64> {
        match kind {
            NodeKind::BitmapHeapScan => {
                match (
                    self.node_rate(NodeKind::BitmapHeapScan),
                    self.node_rate(NodeKind::BitmapIndexScan),
                ) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            NodeKind::BitmapIndexScan => None,
            other => self.node_rate(other),
        }
    }

    /// Whether a node of `kind` is wrapped at all under this configuration:
    /// in query mode every supported node (except BitmapIndexScan, whose
    /// output is counted at the BitmapHeapScan), in per-node mode those with
    /// an effective rate.
    pub fn throttles(&self, kind: NodeKind) -> bool {
        match self.mode() {
            Mode::Query(_) => kind != NodeKind::BitmapIndexScan,
            Mode::PerNode => self.effective_node_rate(kind).is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(rate: Option<i64>) -> [Option<i64>; 12] {
        [rate; 12]
    }

    #[test]
    fn null_everything_is_unthrottled() {
        let config = ThrottleConfig::new(None, all(None));
        assert!(!config.is_throttled());
        assert_eq!(config.mode(), Mode::PerNode);
        assert!(NodeKind::ALL.iter().all(|&k| !config.throttles(k)));
    }

    #[test]
    fn query_rate_selects_query_mode_for_every_node_kind() {
        let config = ThrottleConfig::new(Some(100), all(None));
        assert_eq!(config.mode(), Mode::Query(100));
        assert!(config.throttles(NodeKind::SeqScan));
        assert!(config.throttles(NodeKind::FunctionScan));
        assert!(config.throttles(NodeKind::ModifyTable));
        assert!(!config.throttles(NodeKind::BitmapIndexScan));
    }

    #[test]
    fn per_node_rates_apply_only_to_their_kind() {
        let mut raw = all(None);
        raw[NodeKind::IndexScan.index()] = Some(1000);
        let config = ThrottleConfig::new(None, raw);
        assert_eq!(config.mode(), Mode::PerNode);
        assert!(config.throttles(NodeKind::IndexScan));
        assert!(!config.throttles(NodeKind::SeqScan));
        assert_eq!(config.effective_node_rate(NodeKind::IndexScan), Some(1000));
    }

    #[test]
    fn bitmap_index_rate_surfaces_at_the_heap_scan() {
        let mut raw = all(None);
        raw[NodeKind::BitmapIndexScan.index()] = Some(50);
        let config = ThrottleConfig::new(None, raw);
        assert_eq!(
            config.effective_node_rate(NodeKind::BitmapHeapScan),
            Some(50)
        );
        assert!(!config.throttles(NodeKind::BitmapIndexScan));
        raw[NodeKind::BitmapHeapScan.index()] = Some(20);
        let config = ThrottleConfig::new(None, raw);
        assert_eq!(
            config.effective_node_rate(NodeKind::BitmapHeapScan),
            Some(20)
        );
        raw[NodeKind::BitmapHeapScan.index()] = Some(80);
        let config = ThrottleConfig::new(None, raw);
        assert_eq!(
            config.effective_node_rate(NodeKind::BitmapHeapScan),
            Some(50)
        );
    }

    #[test]
    fn non_positive_values_count_as_unthrottled() {
        let mut raw = all(Some(0));
        raw[0] = Some(-5);
        let config = ThrottleConfig::new(Some(-1), raw);
        assert!(!config.is_throttled());
    }

    #[test]
    fn columns_are_distinct_and_in_argument_order() {
        let columns: Vec<_> = NodeKind::ALL.iter().map(|k| k.column()).collect();
        assert_eq!(columns.first(), Some(&"seq_scan_throttle"));
        assert_eq!(columns.last(), Some(&"func_scan_throttle"));
        let mut sorted = columns.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), columns.len());
        for (i, kind) in NodeKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
