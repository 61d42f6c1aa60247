//! Dynamic shared memory segments: created by one process for the length
//! of a query and attached by others (a parallel query's workers), found by
//! their handle.
//!
//! A segment belongs to the resource owner that was current when it was
//! created or attached: if the transaction or subtransaction aborts, the
//! owner detaches it. On the normal path the code that made it detaches it
//! ([`Segment::detach`]); after an abort it only forgets it
//! ([`Segment::forget`]), never touching the memory again. A segment is
//! destroyed when its last process detaches (processes that exit detach
//! everything they still have), so none outlives the processes using it.
use pgrx::pg_sys;

/// A mapped segment. (Its address is kept as an integer so that a value
/// can sit in a `static` of backend-local state, which must be `Send`;
/// only this process ever uses it.)
#[derive(Debug)]
pub struct Segment {
    seg: usize,
}

impl Segment {
    fn from_ptr(seg: *mut pg_sys::dsm_segment) -> Segment {
        Segment { seg: seg as usize }
    }

    fn ptr(&self) -> *mut pg_sys::dsm_segment {
        self.seg as *mut pg_sys::dsm_segment
    }

    /// Creates a zero-filled segment of `len` bytes; None when the server
    /// has no free segment slot left. Inside a transaction.
    pub fn create(len: usize) -> Option<Segment> {
        // SAFETY: dsm_create with DSM_CREATE_NULL_IF_MAXSEGMENTS returns
        // NULL instead of raising an error when slots run out; the mapping
        // is `len` bytes long and ours to write.
        unsafe {
            let seg = pg_sys::dsm_create(len, pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32);
            if seg.is_null() {
                return None;
            }
            std::ptr::write_bytes(pg_sys::dsm_segment_address(seg).cast::<u8>(), 0, len);
            Some(Segment::from_ptr(seg))
        }
    }

    /// Attaches the segment `handle`; None if it no longer exists. Inside a
    /// transaction.
    pub fn attach(handle: u32) -> Option<Segment> {
        // SAFETY: dsm_attach returns NULL for a segment that is gone; it
        // raises an ERROR only for one this process has attached already,
        // which callers check with `find` first.
        unsafe {
            if !pg_sys::dsm_find_mapping(handle).is_null() {
                return None;
            }
            let seg = pg_sys::dsm_attach(handle);
            (!seg.is_null()).then(|| Segment::from_ptr(seg))
        }
    }

    /// The handle other processes attach it by.
    pub fn handle(&self) -> u32 {
        // SAFETY: a mapped segment.
        unsafe { pg_sys::dsm_segment_handle(self.ptr()) }
    }

    /// The start of the mapping.
    pub fn address(&self) -> *mut u8 {
        // SAFETY: a mapped segment.
        unsafe { pg_sys::dsm_segment_address(self.ptr()).cast() }
    }

    /// The length of the mapping in bytes.
    pub fn len(&self) -> usize {
        // SAFETY: a mapped segment.
        unsafe { pg_sys::dsm_segment_map_length(self.ptr()) }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unmaps the segment (normal path). Every pointer into it is dangling
    /// afterwards.
    pub fn detach(self) {
        // SAFETY: a segment this process mapped and has not detached.
        unsafe { pg_sys::dsm_detach(self.ptr()) };
    }

    /// Forgets the segment without touching it: for after an abort, when
    /// the resource owner detaches (or has detached) it.
    pub fn forget(self) {}
}
