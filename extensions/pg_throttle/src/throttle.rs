//! Throttling one query: which of its plan nodes are wrapped, which
//! buckets pace them, what happens per tuple, and cleaning up after it.
//!
//! At executor start (after the standard `ExecutorStart`) [`start`] picks
//! the supported nodes the session user's configuration throttles, makes
//! their buckets (private, or in a shared segment when the plan can run in
//! parallel, see [`crate::parallel`]) and wraps each node: its
//! `ExecProcNode`, or with `pg_throttle.count = examined` its filter when
//! it has one. Per tuple, [`passed`] spends a credit the node holds, or
//! takes tokens from the bucket and sleeps until they are due. [`end`]
//! (executor end), [`abort_subxact`] and [`end_of_transaction`] forget the
//! query; nothing carries over into the next statement.
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use governance::pacing::pacer::sleep_millis;
use governance::pacing::{
    Bucket, Counting, Ended, Grant, Mode, NodeKind, Pacer, QueryTotals, Registry, ThrottleConfig,
};
use pgrx::pg_sys;
use pgsupport::dsm::Segment;
use pgsupport::exec_node::{self, EvalFn, ExecProcNodeFn, Node, PlanNode};
use pgsupport::local::BackendCell;
use pgsupport::time::monotonic_nanos;
use pgsupport::wait::{self, WaitEvent};

use crate::parallel::{self, BucketSpec, Found, HookSpec};
use crate::pg::segment::{self, SharedBucket};
use crate::pg::wrapper;
use crate::{config, exempt, guc, stats};

/// The wait event of a throttled backend's sleep: `ThrottleSleep` where the
/// server supports named events (17 and later), `Extension` before.
pub static THROTTLE_SLEEP: WaitEvent = WaitEvent::new(c"ThrottleSleep");

/// A wrapped thing's real function.
#[derive(Debug, Clone, Copy)]
pub enum Real {
    Node(ExecProcNodeFn),
    Filter(EvalFn),
}

/// A bucket of a running query.
#[derive(Debug)]
pub enum QueryBucket {
    Local(Pacer),
    Shared(SharedBucket),
}

impl Bucket for QueryBucket {
    fn take(&mut self, now_nanos: u64, want: u64) -> Grant {
        match self {
            QueryBucket::Local(p) => Bucket::take(p, now_nanos, want),
            QueryBucket::Shared(s) => s.take(now_nanos, want),
        }
    }

    fn batch(&self) -> u64 {
        match self {
            QueryBucket::Local(p) => Bucket::batch(p),
            QueryBucket::Shared(s) => s.batch(),
        }
    }
}

/// What `throttle_waits()` shows about a wrapped thing while its backend
/// sleeps for it.
#[derive(Debug, Clone, Copy)]
pub struct Why {
    pub mode: Mode,
    /// The node kind (None in query mode: the query's one budget).
    pub kind: Option<NodeKind>,
    pub counting: Counting,
    pub rate: u64,
}

/// A query this process tracks (throttled, or one whose workers must not
/// see an enclosing query's segment).
struct QueryState {
    key: usize,
    subxact: u32,
    segment: Option<Segment>,
    /// The internal setting's value to put back at the end (Some: this
    /// query changed it).
    restore: Option<Option<String>>,
    /// Wrapped something (the backend counts as throttled meanwhile).
    active: bool,
    whys: Vec<(usize, Why)>,
    /// The wrapped scans counted on the way in (`wrapper::node`): the
    /// tuple each returned last is counted when the query ends.
    positioned: Vec<usize>,
}

static REGISTRY: BackendCell<Registry<Real, QueryBucket>> = BackendCell::new(Registry::new());
static QUERIES: BackendCell<Vec<QueryState>> = BackendCell::new(Vec::new());
/// How many entries `QUERIES` has: lets `end` return at once for every
/// statement of an unthrottled session.
static TRACKED: AtomicUsize = AtomicUsize::new(0);
/// Set once a parallel worker has started its share of the leader's query
/// (a worker runs one): any later query in it is a nested one.
static WORKER_STARTED: AtomicBool = AtomicBool::new(false);

/// The per-tuple path's view of what is wrapped: each wrapped node or
/// filter's real function and the tokens it holds (credits, spent one per
/// tuple without asking its bucket or reading the clock). Plain statics of
/// atomics: a process runs our code on one thread, so relaxed loads and
/// stores cost what plain ones do, and no lock is taken per tuple. Each slot
/// has its own wrappers (`wrapper::node`, `wrapper::filter`), so the
/// per-tuple path finds its slot without a search (only setting up and
/// ending a query search the slots by key). What is wrapped beyond the
/// first [`HOT_SLOTS`] at once goes through the registry, one token at a
/// time.
pub const HOT_SLOTS: usize = 16;

struct HotSlot {
    /// The wrapped thing's address (0: free).
    key: AtomicUsize,
    /// Its real function's address.
    real: AtomicUsize,
    credits: AtomicU64,
}

static HOT: [HotSlot; HOT_SLOTS] = [const {
    HotSlot {
        key: AtomicUsize::new(0),
        real: AtomicUsize::new(0),
        credits: AtomicU64::new(0),
    }
}; HOT_SLOTS];

/// A wrapped thing's hot slot, as the per-tuple path uses it.
pub struct Hot(&'static HotSlot);

impl Hot {
    /// Whether the slot belongs to wrapped `key`.
    #[inline(always)]
    pub fn is(&self, key: usize) -> bool {
        self.0.key.load(Ordering::Relaxed) == key
    }

    /// The wrapped thing the slot belongs to (0: none).
    pub fn key(&self) -> usize {
        self.0.key.load(Ordering::Relaxed)
    }

    /// The address of the real function.
    #[inline(always)]
    pub fn real(&self) -> usize {
        self.0.real.load(Ordering::Relaxed)
    }

    /// Lets one tuple pass on a credit: false when none is left (the
    /// caller then calls [`pace`]). The slot still belongs to the key it
    /// was found for: a slot is freed only when its query ends, which
    /// cannot happen while one of its nodes is returning a tuple (an ERROR
    /// raised meanwhile never comes back here).
    #[inline(always)]
    pub fn spend(&self) -> bool {
        let credits = self.0.credits.load(Ordering::Relaxed);
        if credits == 0 {
            return false;
        }
        self.0.credits.store(credits - 1, Ordering::Relaxed);
        true
    }
}

/// Hot slot `i` (< [`HOT_SLOTS`]).
#[inline(always)]
pub fn hot_slot(i: usize) -> Hot {
    Hot(&HOT[i])
}

fn hot_find(key: usize) -> Option<usize> {
    HOT.iter()
        .position(|s| s.key.load(Ordering::Relaxed) == key)
}

/// A free hot slot for `key`, after freeing one a query whose end was
/// missed left to it (it must not outlive that query). Nothing is taken
/// until [`hot_insert`].
fn hot_free(key: usize) -> Option<usize> {
    hot_remove(key);
    HOT.iter().position(|s| s.key.load(Ordering::Relaxed) == 0)
}

/// Gives hot slot `i` (found free by [`hot_free`]) to `key`.
fn hot_insert(i: usize, key: usize, real: usize) {
    let slot = &HOT[i];
    slot.real.store(real, Ordering::Relaxed);
    slot.credits.store(0, Ordering::Relaxed);
    slot.key.store(key, Ordering::Relaxed);
}

/// Frees `key`'s hot slot; returns the credits it still held.
fn hot_remove(key: usize) -> u64 {
    match hot_find(key) {
        Some(i) => {
            HOT[i].key.store(0, Ordering::Relaxed);
            HOT[i].credits.swap(0, Ordering::Relaxed)
        }
        None => 0,
    }
}

fn real_address(real: Real) -> usize {
    match real {
        Real::Node(f) => f as usize,
        Real::Filter(f) => f as usize,
    }
}

/// What an ended query did and was not reported while it ran, its unspent
/// credits taken off.
fn settle(ended: Ended) -> QueryTotals {
    let unspent: u64 = ended.keys.iter().map(|&k| hot_remove(k)).sum();
    ended.unreported(unspent)
}

/// The credits `key`'s hot slot holds (0 without one).
fn hot_credits(key: usize) -> u64 {
    hot_find(key).map_or(0, |i| HOT[i].credits.load(Ordering::Relaxed))
}

/// A node to wrap, and how.
struct Target {
    node: Node,
    kind: NodeKind,
    bucket: usize,
    on_filter: bool,
    /// Counted on the way in (see `wrapper::node`): a scan that keeps its
    /// position and runs once, paced by the tuples it returns.
    positioned: bool,
}

impl Target {
    fn new(plan: PlanNode, kind: NodeKind, bucket: usize, on_filter: bool) -> Target {
        Target {
            node: plan.node,
            kind,
            bucket,
            on_filter,
            positioned: !on_filter && plan.runs_once && exec_node::keeps_position(plan.node),
        }
    }
}

/// The kind pg_throttle paces a plan node as, if it supports the node.
/// Sample Scan (`TABLESAMPLE`) reads the table like a Seq Scan and has no
/// argument of its own in the documented functions, so it is paced at
/// `seq_scan_max`. ModifyTable returns tuples only with `RETURNING`.
fn kind_of(node: Node) -> Option<NodeKind> {
    use pg_sys::NodeTag::*;
    Some(match node.tag() {
        T_SeqScanState | T_SampleScanState => NodeKind::SeqScan,
        T_IndexScanState => NodeKind::IndexScan,
        T_IndexOnlyScanState => NodeKind::IndexOnlyScan,
        T_BitmapHeapScanState => NodeKind::BitmapHeapScan,
        T_BitmapIndexScanState => NodeKind::BitmapIndexScan,
        T_CustomScanState => NodeKind::CustomScan,
        T_ForeignScanState => NodeKind::ForeignScan,
        T_TidRangeScanState => NodeKind::TidRangeScan,
        T_ValuesScanState => NodeKind::ValuesScan,
        T_ResultState => NodeKind::Result,
        T_FunctionScanState => NodeKind::FunctionScan,
        T_ModifyTableState if node.modify_table_returns() => NodeKind::ModifyTable,
        _ => return None,
    })
}

/// The nodes `config` throttles and their buckets' rates (one bucket in
/// query mode, one per node in per-node mode).
fn choose(
    config: &ThrottleConfig,
    counting: Counting,
    nodes: &[PlanNode],
) -> (Vec<u64>, Vec<Target>) {
    let mut rates = Vec::new();
    let mut targets = Vec::new();
    if let Mode::Query(rate) = config.mode() {
        rates.push(rate);
    }
    for &plan in nodes {
        let node = plan.node;
        let Some(kind) = kind_of(node) else { continue };
        if !config.throttles(kind) {
            continue;
        }
        let bucket = match config.mode() {
            Mode::Query(_) => 0,
            Mode::PerNode => {
                let Some(rate) = config.effective_node_rate(kind) else {
                    continue;
                };
                rates.push(rate);
                rates.len() - 1
            }
        };
        let on_filter = counting == Counting::Examined && node.filter().is_some();
        targets.push(Target::new(plan, kind, bucket, on_filter));
    }
    (rates, targets)
}

fn track(state: QueryState) {
    QUERIES.with(|q| q.push(state));
    TRACKED.fetch_add(1, Ordering::Relaxed);
}

fn untrack(key: usize) -> Option<QueryState> {
    let state = QUERIES.with(|q| {
        let at = q.iter().position(|s| s.key == key)?;
        Some(q.swap_remove(at))
    })?;
    TRACKED.fetch_sub(1, Ordering::Relaxed);
    Some(state)
}

/// Called after the standard `ExecutorStart` of every query, with the
/// query's key, its plan nodes (walked only if needed), whether its plan
/// may run in parallel, and the current subtransaction.
pub fn start(
    query: usize,
    nodes: impl FnOnce() -> Vec<PlanNode>,
    parallel_plan: bool,
    subxact: u32,
) {
    if pgsupport::process::is_parallel_worker() {
        start_in_worker(query, nodes, subxact);
        return;
    }
    let config = if exempt::statement_is_exempt() {
        ThrottleConfig::UNTHROTTLED
    } else {
        config::current()
    };
    if !config.is_throttled() {
        if parallel_plan {
            hide_segment_from_workers(query, subxact);
        }
        return;
    }
    let nodes = nodes();
    let counting = guc::counting();
    let (rates, targets) = choose(&config, counting, &nodes);
    if targets.is_empty() {
        if parallel_plan {
            hide_segment_from_workers(query, subxact);
        }
        return;
    }
    let workers: u64 = nodes
        .iter()
        .filter_map(|n| n.node.planned_workers())
        .map(u64::from)
        .sum();
    let processes = if parallel_plan { 1 + workers } else { 1 };
    let holders_of = |bucket: usize| {
        let wrapped = targets.iter().filter(|t| t.bucket == bucket).count() as u64;
        wrapped.max(1) * processes
    };
    let now = monotonic_nanos();
    let mut restore = None;
    let mut segment = None;
    let buckets: Vec<QueryBucket> = if processes > 1 {
        let specs: Vec<BucketSpec> = rates
            .iter()
            .enumerate()
            .map(|(i, &rate)| BucketSpec {
                rate,
                holders: holders_of(i),
            })
            .collect();
        let hooks: Vec<HookSpec> = targets
            .iter()
            .map(|t| HookSpec {
                plan_node_id: t.node.plan_node_id(),
                tag: t.node.tag() as u32,
                bucket: t.bucket,
                on_filter: t.on_filter,
                kind: t.kind,
            })
            .collect();
        segment = parallel::publish(&specs, &hooks, matches!(config.mode(), Mode::Query(_)), now);
        let value = segment
            .as_ref()
            .map_or_else(|| parallel::LOCAL.to_string(), parallel::setting_for);
        restore = Some(guc::parallel_segment());
        guc::set_parallel_segment(Some(&value));
        match segment.as_ref().and_then(segment::view) {
            Some(view) => view
                .buckets
                .iter()
                .map(|cell| QueryBucket::Shared(SharedBucket::new(&view, cell)))
                .collect(),
            None => local_buckets(&rates, &holders_of, now),
        }
    } else {
        if parallel_plan && guc::parallel_segment().is_some() {
            restore = Some(guc::parallel_segment());
            guc::set_parallel_segment(None);
        }
        local_buckets(&rates, &holders_of, now)
    };
    let whys = whys(&config, counting, &rates, &targets);
    let (wrapped, positioned) = register(query, subxact, buckets, &targets);
    stats::query_started(true, wrapped > 0);
    track(QueryState {
        key: query,
        subxact,
        segment,
        restore,
        active: wrapped > 0,
        whys: whys.into_iter().filter(|_| wrapped > 0).collect(),
        positioned,
    });
}

fn local_buckets(rates: &[u64], holders_of: &dyn Fn(usize) -> u64, now: u64) -> Vec<QueryBucket> {
    rates
        .iter()
        .enumerate()
        .map(|(i, &rate)| QueryBucket::Local(Pacer::new(rate, holders_of(i), now)))
        .collect()
}

fn whys(
    config: &ThrottleConfig,
    counting: Counting,
    rates: &[u64],
    targets: &[Target],
) -> Vec<(usize, Why)> {
    targets
        .iter()
        .map(|t| {
            let key = if t.on_filter {
                t.node.filter().map_or(0, |f| f.key())
            } else {
                t.node.key()
            };
            let mode = config.mode();
            let why = Why {
                mode,
                kind: matches!(mode, Mode::PerNode).then_some(t.kind),
                counting: if t.on_filter {
                    Counting::Examined
                } else {
                    counting
                },
                rate: rates.get(t.bucket).copied().unwrap_or(0),
            };
            (key, why)
        })
        .collect()
}

/// A query that is not throttled but whose plan may start workers, while
/// an enclosing query's segment is published: its workers must not take
/// that segment for theirs.
fn hide_segment_from_workers(query: usize, subxact: u32) {
    if guc::parallel_segment().is_none() {
        return;
    }
    let previous = guc::parallel_segment();
    guc::set_parallel_segment(None);
    track(QueryState {
        key: query,
        subxact,
        segment: None,
        restore: Some(previous),
        active: false,
        whys: Vec::new(),
        positioned: Vec::new(),
    });
}

/// A parallel worker's query: its share of the leader's, on the leader's
/// buckets; or, for a query nested in the worker's (a function's
/// statement), or when the leader had no segment, on its own buckets.
fn start_in_worker(query: usize, nodes: impl FnOnce() -> Vec<PlanNode>, subxact: u32) {
    let nested = WORKER_STARTED.swap(true, Ordering::Relaxed);
    let found = if nested {
        Found::Local
    } else {
        parallel::find(guc::parallel_segment().as_deref())
    };
    match found {
        Found::Nothing => {}
        Found::Local => {
            let config = config::current();
            if !config.is_throttled() {
                return;
            }
            let nodes = nodes();
            let counting = guc::counting();
            let (rates, targets) = choose(&config, counting, &nodes);
            if targets.is_empty() {
                return;
            }
            let holders_of = |bucket: usize| {
                (targets.iter().filter(|t| t.bucket == bucket).count() as u64).max(1)
            };
            let buckets = local_buckets(&rates, &holders_of, monotonic_nanos());
            let whys = whys(&config, counting, &rates, &targets);
            let (wrapped, positioned) = register(query, subxact, buckets, &targets);
            stats::query_started(false, wrapped > 0);
            track(QueryState {
                key: query,
                subxact,
                segment: None,
                restore: None,
                active: wrapped > 0,
                whys,
                positioned,
            });
        }
        Found::Segment(seg) => {
            let Some(view) = segment::view(&seg) else {
                seg.detach();
                return;
            };
            let published = parallel::hooks(&view);
            let mut targets = Vec::new();
            let mut whys = Vec::new();
            for plan in nodes() {
                let node = plan.node;
                let Some(hook) = published
                    .iter()
                    .find(|h| h.plan_node_id == node.plan_node_id() && h.tag == node.tag() as u32)
                else {
                    continue;
                };
                let on_filter = hook.on_filter && node.filter().is_some();
                let rate = view
                    .buckets
                    .get(hook.bucket)
                    .map_or(0, |b| b.rate.load(Ordering::Relaxed));
                let key = if on_filter {
                    node.filter().map_or(0, |f| f.key())
                } else {
                    node.key()
                };
                let query_mode = view.header.query_mode.load(Ordering::Relaxed) != 0;
                whys.push((
                    key,
                    Why {
                        mode: if query_mode {
                            Mode::Query(rate)
                        } else {
                            Mode::PerNode
                        },
                        kind: (!query_mode).then_some(hook.kind),
                        counting: if on_filter {
                            Counting::Examined
                        } else {
                            Counting::Returned
                        },
                        rate,
                    },
                ));
                targets.push(Target::new(plan, hook.kind, hook.bucket, on_filter));
            }
            if targets.is_empty() {
                seg.detach();
                return;
            }
            let buckets = view
                .buckets
                .iter()
                .map(|cell| QueryBucket::Shared(SharedBucket::new(&view, cell)))
                .collect();
            let (wrapped, positioned) = register(query, subxact, buckets, &targets);
            stats::query_started(false, wrapped > 0);
            track(QueryState {
                key: query,
                subxact,
                segment: Some(seg),
                restore: None,
                active: wrapped > 0,
                whys,
                positioned,
            });
        }
    }
}

/// Registers the query and its buckets and wraps every target; returns
/// how many were wrapped, and the scans among them counted on the way in.
fn register(
    query: usize,
    subxact: u32,
    buckets: Vec<QueryBucket>,
    targets: &[Target],
) -> (usize, Vec<usize>) {
    REGISTRY.with(|r| {
        r.begin_query(query, subxact);
        for b in buckets {
            r.add_bucket(query, b);
        }
    });
    let mut wrapped = 0;
    let mut positioned = Vec::new();
    for t in targets {
        let done = if t.on_filter {
            t.node.filter().is_some_and(|filter| {
                if filter.real().is_some_and(wrapper::is_filter_wrapper) {
                    return false;
                }
                let slot = hot_free(filter.key());
                let Some(real) = exec_node::wrap_expr(filter, wrapper::filter(slot)) else {
                    return false;
                };
                let ok =
                    REGISTRY.with(|r| r.wrap(filter.key(), query, t.bucket, Real::Filter(real)));
                if ok {
                    if let Some(i) = slot {
                        hot_insert(i, filter.key(), real as usize);
                    }
                } else {
                    // Put the real function back: nothing may call our
                    // wrapper for an expression the registry does not know.
                    exec_node::wrap_expr(filter, real);
                }
                ok
            })
        } else {
            if t.node.real().is_some_and(wrapper::is_node_wrapper) {
                continue;
            }
            let slot = hot_free(t.node.key());
            // Counted on the way in: only with a hot slot (the registry's
            // wrapper counts on the way out).
            let on_the_way_in = t.positioned && slot.is_some();
            match exec_node::wrap(t.node, wrapper::node(slot, on_the_way_in)) {
                Some(real) => {
                    let ok =
                        REGISTRY.with(|r| r.wrap(t.node.key(), query, t.bucket, Real::Node(real)));
                    if ok {
                        if let Some(i) = slot {
                            hot_insert(i, t.node.key(), real as usize);
                        }
                        if on_the_way_in {
                            positioned.push(t.node.key());
                        }
                    } else {
                        exec_node::wrap(t.node, real);
                    }
                    ok
                }
                None => false,
            }
        };
        wrapped += usize::from(done);
    }
    (wrapped, positioned)
}

/// Called before the standard `ExecutorEnd` of every query (its plan is
/// still there): counts the tuple each scan counted on the way in returned
/// last, when nothing asked it for another (a LIMIT, a join that stopped
/// early, a cursor closed mid-way). It passes without a sleep: the query
/// is over, but its bucket (shared with parallel workers) and statistics
/// count it.
pub fn settle_positions(query: usize, nodes: impl FnOnce() -> Vec<Node>) {
    if TRACKED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let keys = QUERIES.with(|q| {
        q.iter()
            .find(|s| s.key == query)
            .map(|s| s.positioned.clone())
            .unwrap_or_default()
    });
    if keys.is_empty() {
        return;
    }
    for node in nodes() {
        if keys.contains(&node.key()) && node.is_positioned() {
            pass_one(node.key());
        }
    }
}

/// Lets one tuple of wrapped `key` pass without sleeping: on a credit, or
/// on a token taken from its bucket.
fn pass_one(key: usize) {
    if let Some(i) = hot_find(key)
        && Hot(&HOT[i]).spend()
    {
        return;
    }
    let now = monotonic_nanos();
    REGISTRY.with(|r| r.take(key, now, 1));
}

/// The real function of a wrapped node or filter, and a lookup hint.
pub fn real(key: usize) -> Option<(Real, usize)> {
    REGISTRY.with(|r| r.real(key))
}

/// A filter's evaluation function replaced itself (first call).
pub fn replace_real(key: usize, real: Real) {
    REGISTRY.with(|r| r.set_real(key, real));
    if let Some(i) = hot_find(key) {
        HOT[i].real.store(real_address(real), Ordering::Relaxed);
    }
}

/// One tuple of wrapped `key` found no credit: takes tokens from its
/// bucket (a batch, kept as credits, when `key` has a hot slot) and sleeps
/// until the first is due. An interrupt (cancel, timeout, terminate) while
/// sleeping raises its ERROR from here.
pub fn pace(key: usize) {
    let hot = hot_find(key);
    let now = monotonic_nanos();
    let grant = REGISTRY.with(|r| {
        let want = if hot.is_some() { r.batch(key) } else { 1 };
        r.take(key, now, want)
    });
    let Some(grant) = grant else { return };
    if let Some(i) = hot
        && grant.granted > 1
    {
        HOT[i]
            .credits
            .fetch_add(grant.granted - 1, Ordering::Relaxed);
    }
    if grant.wait_nanos > 0 {
        sleep_until(key, now.saturating_add(grant.wait_nanos));
    }
}

/// Marks the backend asleep for `key` while it lives, and counts the time
/// slept, also when an interrupt ends the sleep with an ERROR.
struct Asleep {
    key: usize,
    since: u64,
}

impl Drop for Asleep {
    fn drop(&mut self) {
        let slept = monotonic_nanos().saturating_sub(self.since);
        let key = self.key;
        // The user's statistics grow while the query runs: what it passed
        // and slept so far is added at each wake-up, not only at its end.
        // Not while an ERROR unwinds (an interrupt ended the sleep): the
        // query's end adds what was not added here.
        let unwinding = std::thread::panicking();
        let progress = REGISTRY
            .try_with(|r| {
                r.add_sleep(key, slept);
                if unwinding {
                    return None;
                }
                let unspent: u64 = r
                    .query_of(key)
                    .map(|q| r.keys_of(q).into_iter().map(hot_credits).sum())
                    .unwrap_or(0);
                r.progress(key, unspent)
            })
            .flatten();
        stats::sleep_ended(progress.unwrap_or_default());
    }
}

fn sleep_until(key: usize, deadline: u64) {
    let why = QUERIES.with(|q| {
        q.iter()
            .flat_map(|s| s.whys.iter())
            .find(|(k, _)| *k == key)
            .map(|(_, w)| *w)
    });
    stats::sleep_began(why);
    let _asleep = Asleep {
        key,
        since: monotonic_nanos(),
    };
    loop {
        let now = monotonic_nanos();
        if now >= deadline {
            break;
        }
        wait::sleep(sleep_millis(deadline - now), &THROTTLE_SLEEP);
    }
}

/// Whether a `COPY table TO` of this session should run in its query form
/// (so that its reads are paced at the Seq Scan rate): the session is
/// throttled, and Seq Scans with it.
pub fn paces_copy_to() -> bool {
    !exempt::statement_is_exempt() && config::current().throttles(NodeKind::SeqScan)
}

/// Called after the standard `ExecutorEnd` of every query.
pub fn end(query: usize) {
    if TRACKED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let totals = REGISTRY.with(|r| r.end_query(query)).map(settle);
    let Some(state) = untrack(query) else {
        return;
    };
    if let Some(seg) = state.segment {
        seg.detach();
    }
    if let Some(previous) = &state.restore {
        guc::set_parallel_segment(previous.as_deref());
    }
    stats::query_ended(state.active, totals.unwrap_or_default());
}

fn forget(states: Vec<QueryState>, ended: Vec<(usize, Ended)>, detach: bool) {
    let totals: Vec<(usize, QueryTotals)> =
        ended.into_iter().map(|(k, e)| (k, settle(e))).collect();
    for state in states {
        TRACKED.fetch_sub(1, Ordering::Relaxed);
        if let Some(seg) = state.segment {
            // After an abort the resource owner detaches the segment; at
            // commit every portal has ended, and a segment still here would
            // only be reported as leaked.
            if detach { seg.detach() } else { seg.forget() }
        }
        let t = totals
            .iter()
            .find(|(k, _)| *k == state.key)
            .map(|(_, t)| *t)
            .unwrap_or_default();
        stats::query_ended(state.active, t);
    }
}

/// Forgets the queries of an aborted subtransaction. (PostgreSQL itself
/// undoes their changes of the internal setting.)
pub fn abort_subxact(subxact: pg_sys::SubTransactionId) {
    let totals = REGISTRY.with(|r| r.abort_subxact(subxact));
    let dead = QUERIES.with(|q| {
        let (dead, alive): (Vec<_>, Vec<_>) = q.drain(..).partition(|s| s.subxact >= subxact);
        *q = alive;
        dead
    });
    forget(dead, totals, false);
}

/// Forgets everything at the end of the transaction.
pub fn end_of_transaction(commit: bool) {
    if TRACKED.load(Ordering::Relaxed) == 0 && REGISTRY.with(|r| r.query_count()) == 0 {
        return;
    }
    let totals = REGISTRY.with(|r| r.clear());
    let all = QUERIES.with(std::mem::take);
    forget(all, totals, commit);
}
