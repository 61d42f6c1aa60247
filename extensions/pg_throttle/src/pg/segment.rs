//! The layout of a parallel query's shared segment (see
//! [`crate::parallel`]): a header, one cell per bucket, one per wrapped
//! plan node. Every field is an atomic, so the leader writing a segment and
//! its workers reading it never race in the Rust sense, and a zero-filled
//! segment is valid.
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use governance::pacing::pacer::picos_since;
use governance::pacing::{Bucket, Gcra, Grant};
use pgsupport::dsm::Segment;

const MAGIC: u64 = 0x7067_7468_7061_7231; // "pgthpar1"

#[repr(C)]
pub struct Header {
    magic: AtomicU64,
    /// The pid of the leader that made it.
    pub leader_pid: AtomicI32,
    buckets: AtomicU32,
    hooks: AtomicU32,
    /// 1 in query mode (one bucket for every node), 0 in per-node mode.
    pub query_mode: AtomicU32,
    /// The monotonic clock's reading at creation: every bucket's epoch.
    pub epoch_nanos: AtomicU64,
}

#[repr(C)]
pub struct BucketCell {
    pub rate: AtomicU64,
    pub holders: AtomicU64,
    /// The bucket's state (see `governance::pacing::Gcra::take`).
    pub tat: AtomicU64,
}

#[repr(C)]
pub struct HookCell {
    pub plan_node_id: AtomicI32,
    /// The node's `NodeTag`, checked by workers along with the id.
    pub tag: AtomicU32,
    pub bucket: AtomicU32,
    /// 1: the node's filter is wrapped (examined tuples), 0: the node.
    pub on_filter: AtomicU32,
    /// The `NodeKind` code (for `throttle_waits()`).
    pub kind: AtomicU32,
}

/// A segment seen through its layout.
pub struct View<'a> {
    pub header: &'a Header,
    pub buckets: &'a [BucketCell],
    pub hooks: &'a [HookCell],
}

fn offsets(buckets: usize) -> (usize, usize) {
    let buckets_at = std::mem::size_of::<Header>();
    let hooks_at = buckets_at + buckets * std::mem::size_of::<BucketCell>();
    (buckets_at, hooks_at)
}

/// The length of a segment for `buckets` buckets and `hooks` hooks.
pub fn size_for(buckets: usize, hooks: usize) -> usize {
    offsets(buckets).1 + hooks * std::mem::size_of::<HookCell>()
}

/// Writes the header of a new (zero-filled) segment made by
/// [`size_for`]`(buckets, hooks)`, and returns its view.
pub fn init(seg: &Segment, buckets: usize, hooks: usize, leader_pid: i32, epoch: u64) -> View<'_> {
    // SAFETY: the mapping is at least size_for(buckets, hooks) long and
    // suitably aligned (DSM mappings are page-aligned), and a zero-filled
    // Header is valid (all atomics).
    let header = unsafe { &*seg.address().cast::<Header>() };
    header.leader_pid.store(leader_pid, Ordering::Relaxed);
    header
        .buckets
        .store(u32::try_from(buckets).unwrap_or(0), Ordering::Relaxed);
    header
        .hooks
        .store(u32::try_from(hooks).unwrap_or(0), Ordering::Relaxed);
    header.epoch_nanos.store(epoch, Ordering::Relaxed);
    header.magic.store(MAGIC, Ordering::Release);
    // `view` only fails for a mapping too short, which `size_for` rules out.
    view(seg).unwrap_or(View {
        header,
        buckets: &[],
        hooks: &[],
    })
}

/// The layout of a segment made by [`init`]; None for a segment too short
/// or not ours.
pub fn view(seg: &Segment) -> Option<View<'_>> {
    let len = seg.len();
    if len < std::mem::size_of::<Header>() {
        return None;
    }
    let base = seg.address();
    // SAFETY: the mapping holds at least a Header (checked), page-aligned;
    // any bytes are a valid Header (all atomics).
    let header = unsafe { &*base.cast::<Header>() };
    if header.magic.load(Ordering::Acquire) != MAGIC {
        return None;
    }
    let buckets = header.buckets.load(Ordering::Relaxed) as usize;
    let hooks = header.hooks.load(Ordering::Relaxed) as usize;
    if len < size_for(buckets, hooks) {
        return None;
    }
    let (buckets_at, hooks_at) = offsets(buckets);
    // SAFETY: both arrays lie inside the mapping (length checked above),
    // aligned (8-byte cells after a 32-byte header; 4-byte cells after
    // them), and consist of atomics.
    unsafe {
        Some(View {
            header,
            buckets: std::slice::from_raw_parts(base.add(buckets_at).cast(), buckets),
            hooks: std::slice::from_raw_parts(base.add(hooks_at).cast(), hooks),
        })
    }
}

/// A bucket in a mapped segment, drawn from by the leader and every worker
/// of one parallel query: the shared state is one atomic, updated with a
/// compare-and-swap of the same arithmetic a private bucket uses.
///
/// It refers into the segment without a lifetime (it sits in the
/// process's registry next to private buckets), so it may only be used
/// while the segment is mapped: `crate::throttle` removes a query's buckets
/// from the registry before it detaches the query's segment (normal end),
/// and after an abort, when the resource owner detaches it, nothing uses
/// them before the registry forgets them.
#[derive(Debug)]
pub struct SharedBucket {
    gcra: Gcra,
    epoch_nanos: u64,
    /// Address of the cell's `tat` (an address, not a pointer, so the
    /// registry stays `Send` as a static must be).
    tat: usize,
}

impl SharedBucket {
    /// The bucket of `cell`, in a segment of `view`.
    pub fn new(view: &View<'_>, cell: &BucketCell) -> SharedBucket {
        SharedBucket {
            gcra: Gcra::new(
                cell.rate.load(Ordering::Relaxed),
                cell.holders.load(Ordering::Relaxed),
            ),
            epoch_nanos: view.header.epoch_nanos.load(Ordering::Relaxed),
            tat: std::ptr::addr_of!(cell.tat) as usize,
        }
    }
}

impl Bucket for SharedBucket {
    fn take(&mut self, now_nanos: u64, want: u64) -> Grant {
        // SAFETY: the segment is mapped while this bucket is reachable (see
        // the type's documentation), so `tat` points at a live AtomicU64.
        let tat = unsafe { &*(self.tat as *const AtomicU64) };
        let now = picos_since(self.epoch_nanos, now_nanos);
        let mut grant = Grant {
            granted: 1,
            wait_nanos: 0,
        };
        let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
            let (next, g) = self.gcra.take(state, now, want);
            grant = g;
            Some(next)
        });
        grant
    }

    fn batch(&self) -> u64 {
        self.gcra.batch()
    }
}
