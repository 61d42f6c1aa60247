//! One budget for a parallel query's leader and workers.
//!
//! A throttled query whose plan can run in parallel gets its buckets in a
//! dynamic shared memory segment made by the leader at executor start. The
//! leader publishes the segment's handle in the internal setting
//! `pg_throttle.parallel_segment` for the length of the query; PostgreSQL
//! copies the leader's settings into each worker it launches (and loads
//! the leader's libraries there first, so this works with
//! `session_preload_libraries` as well as `shared_preload_libraries`). A
//! worker attaches the segment when its executor starts and wraps the plan
//! nodes the leader listed (same plan node id and node type), drawing from
//! the same buckets: in query mode one bucket for every process, in
//! per-node mode one per plan node, shared by its copies.
//!
//! The segment lives as long as the query: the leader detaches it at
//! executor end, after its workers have finished; a worker detaches it at
//! its own executor end, and processes that exit or abort detach it through
//! their resource owner. The last detach frees it.
use governance::pacing::NodeKind;
use pgsupport::dsm::Segment;
use std::sync::atomic::Ordering;

use crate::pg::segment::{self, View};

/// The setting's value when the leader could not make a segment (the
/// server's segment slots were used up): workers then pace on their own, as
/// if each were alone.
pub const LOCAL: &str = "local";

/// A bucket to publish.
pub struct BucketSpec {
    pub rate: u64,
    pub holders: u64,
}

/// A wrapped plan node to publish.
#[derive(Debug, Clone, Copy)]
pub struct HookSpec {
    pub plan_node_id: i32,
    pub tag: u32,
    pub bucket: usize,
    pub on_filter: bool,
    pub kind: NodeKind,
}

/// Makes and fills the segment of a leader's query (None: no segment slot
/// left).
pub fn publish(
    buckets: &[BucketSpec],
    hooks: &[HookSpec],
    query_mode: bool,
    epoch_nanos: u64,
) -> Option<Segment> {
    let seg = Segment::create(segment::size_for(buckets.len(), hooks.len()))?;
    let view = segment::init(
        &seg,
        buckets.len(),
        hooks.len(),
        pgsupport::wait::my_pid(),
        epoch_nanos,
    );
    view.header
        .query_mode
        .store(u32::from(query_mode), Ordering::Relaxed);
    for (cell, spec) in view.buckets.iter().zip(buckets) {
        cell.rate.store(spec.rate, Ordering::Relaxed);
        cell.holders.store(spec.holders, Ordering::Relaxed);
    }
    for (cell, spec) in view.hooks.iter().zip(hooks) {
        cell.plan_node_id
            .store(spec.plan_node_id, Ordering::Relaxed);
        cell.tag.store(spec.tag, Ordering::Relaxed);
        cell.bucket.store(
            u32::try_from(spec.bucket).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
        cell.on_filter
            .store(u32::from(spec.on_filter), Ordering::Relaxed);
        cell.kind
            .store(u32::from(spec.kind.code()), Ordering::Relaxed);
    }
    Some(seg)
}

/// The setting's value that points workers at `seg`.
pub fn setting_for(seg: &Segment) -> String {
    seg.handle().to_string()
}

/// What a worker finds in the setting.
pub enum Found {
    /// Nothing: the leader's query is not throttled.
    Nothing,
    /// The leader had no segment: pace alone.
    Local,
    /// The leader's segment, attached, made by this worker's leader.
    Segment(Segment),
}

/// Attaches what the internal setting points at (in a parallel worker).
pub fn find(setting: Option<&str>) -> Found {
    let Some(value) = setting else {
        return Found::Nothing;
    };
    if value == LOCAL {
        return Found::Local;
    }
    let Some(seg) = value.parse::<u32>().ok().and_then(Segment::attach) else {
        return Found::Nothing;
    };
    let leader = pgsupport::process::parallel_leader_pid();
    let ours = segment::view(&seg)
        .is_some_and(|v| Some(v.header.leader_pid.load(Ordering::Relaxed)) == leader);
    if ours {
        Found::Segment(seg)
    } else {
        seg.detach();
        Found::Nothing
    }
}

/// The hooks published in a segment.
pub fn hooks(view: &View<'_>) -> Vec<HookSpec> {
    view.hooks
        .iter()
        .filter_map(|h| {
            Some(HookSpec {
                plan_node_id: h.plan_node_id.load(Ordering::Relaxed),
                tag: h.tag.load(Ordering::Relaxed),
                bucket: h.bucket.load(Ordering::Relaxed) as usize,
                on_filter: h.on_filter.load(Ordering::Relaxed) != 0,
                kind: NodeKind::from_code(u8::try_from(h.kind.load(Ordering::Relaxed)).ok()?)?,
            })
        })
        .collect()
}
