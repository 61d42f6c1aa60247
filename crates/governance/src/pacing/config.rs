//! The throttling configuration of one user, as stored in the `throttlings`
//! table: an optional query-mode rate and an optional rate per node kind.

crate::sql_enum! {
    /// The node kinds `pg_throttle` has a rate for: one per per-node argument
    /// of `throttle_user_per_node` and per rate column of `throttlings`, in
    /// that order. This list is the one source of truth: the column is
    /// `<name>_throttle` and the argument `<name>_max` (see
    /// [`NodeKind::column`], [`NodeKind::argument`]); a test on a real
    /// server checks the table and the function against it.
    pub enum NodeKind {
        SeqScan = 1 => "seq_scan",
        IndexScan = 2 => "idx_scan",
        IndexOnlyScan = 3 => "idx_only_scan",
        BitmapHeapScan = 4 => "bitmap_heap_scan",
        BitmapIndexScan = 5 => "bitmap_index_scan",
        CustomScan = 6 => "custom_scan",
        ForeignScan = 7 => "foreign_scan",
        TidRangeScan = 8 => "tid_range_scan",
        ModifyTable = 9 => "modify_scan",
        ValuesScan = 10 => "values_scan",
        Result = 11 => "result_scan",
        FunctionScan = 12 => "func_scan",
    }
}

impl NodeKind {
    /// How many kinds there are (the length of per-kind arrays).
    pub const COUNT: usize = NodeKind::ALL.len();

    /// The `throttlings` column holding this kind's rate.
    pub fn column(self) -> String {
        format!("{}_throttle", self.as_str())
    }

    /// The argument of `throttle_user_per_node` setting this kind's rate.
    pub fn argument(self) -> String {
        format!("{}_max", self.as_str())
    }

    /// Every rate column of `throttlings` in table order: `query_throttle`
    /// first, then one per kind.
    pub fn table_rate_columns() -> Vec<String> {
        std::iter::once("query_throttle".to_string())
            .chain(NodeKind::ALL.iter().map(|k| k.column()))
            .collect()
    }
}

crate::sql_enum! {
    /// What a throttled node is charged for (`pg_throttle.count`).
    pub enum Counting {
        /// The tuples it returns (the document's behaviour).
        Returned = 1 => "returned",
        /// The tuples its filter evaluates, passed or rejected (nodes
        /// without a filter: the tuples they return).
        Examined = 2 => "examined",
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

impl Mode {
    /// The name shown to users (`throttle_waits()`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::PerNode => "per_node",
            Mode::Query(_) => "query",
        }
    }
}

/// One user's configuration. Rates are tuples per second; `None` means
/// "not throttled". Non-positive values never get here: the table's CHECK
/// constraints and the SQL functions refuse them, and [`ThrottleConfig::new`]
/// treats any that slip through as unthrottled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleConfig {
    query: Option<u64>,
    per_node: [Option<u64>; NodeKind::COUNT],
}

fn positive(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0)
}

impl ThrottleConfig {
    /// Builds a configuration from the raw column values (query rate, then
    /// the per-node rates in [`NodeKind::ALL`] order).
    pub fn new(query: Option<i64>, per_node: [Option<i64>; NodeKind::COUNT]) -> Self {
        Self {
            query: positive(query),
            per_node: per_node.map(positive),
        }
    }

    /// Nothing throttled.
    pub const UNTHROTTLED: Self = Self {
        query: None,
        per_node: [None; NodeKind::COUNT],
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

    fn all(rate: Option<i64>) -> [Option<i64>; NodeKind::COUNT] {
        [rate; NodeKind::COUNT]
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

    /// Codes and names are distinct, so no two kinds share a column or an
    /// argument (the order against the real table is checked on a server).
    #[test]
    fn kinds_have_distinct_codes_columns_and_arguments() {
        assert!(crate::codes::distinct(
            NodeKind::ALL,
            NodeKind::code,
            NodeKind::as_str
        ));
        assert!(crate::codes::distinct(
            Counting::ALL,
            Counting::code,
            Counting::as_str
        ));
        assert_eq!(NodeKind::SeqScan.column(), "seq_scan_throttle");
        assert_eq!(NodeKind::ModifyTable.argument(), "modify_scan_max");
        let columns = NodeKind::table_rate_columns();
        assert_eq!(columns.len(), NodeKind::COUNT + 1);
        assert_eq!(columns[0], "query_throttle");
    }
}
