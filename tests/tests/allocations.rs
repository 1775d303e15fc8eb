//! The broker's produce and fetch paths allocate per batch, never per record (issue 7): validating a batch
//! (`batch::validate`, the broker's one check before storing), appending it to the log and reading it back
//! cost the same allocations for 10 records as for 10,000. Counted on the calling thread with a counting
//! global allocator, against the real filesystem backend.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;
use rill_proto::batch::{self, BatchBuilder};
use rill_storage::{Backend, FsBackend, Log, LogConfig};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a const-initialised
// thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (ALLOCATIONS.with(Cell::get) - before, out)
}

/// A batch of `records` keyed 100-byte records, each with two headers.
fn batch_of(records: usize) -> Bytes {
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        let key = format!("key-{i}");
        builder.push(
            1_000 + i as i64,
            Some(key.as_bytes()),
            Some(&[7u8; 100]),
            &[("trace", Some(b"abc")), ("n", None)],
        );
    }
    builder.finish()
}

#[test]
fn validating_a_batch_allocates_the_same_for_ten_records_as_for_ten_thousand() {
    let small = batch_of(10);
    let large = batch_of(10_000);
    let (for_small, _) = allocations_during(|| batch::validate(&small).expect("valid"));
    let (for_large, _) = allocations_during(|| batch::validate(&large).expect("valid"));
    assert_eq!(for_small, for_large, "allocations grow with the record count");
    assert!(for_large <= 2, "{for_large} allocations to validate one batch");
}

/// Allocations to append one batch of `records` records and to read it back, in a fresh log.
fn append_and_read(records: usize) -> (u64, u64) {
    let temp = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(FsBackend::new());
    let config = LogConfig { segment_bytes_max: 64 << 20, ..LogConfig::default() };
    let (mut log, _) = Log::open(backend, temp.path(), config, 0).unwrap();
    // One batch first, so the segment and its mapping exist before counting.
    log.append(&batch_of(1), 0, 0).unwrap();
    let input = batch_of(records);
    let (appended, info) = allocations_during(|| log.append(&input, 0, 0).unwrap());
    let (read, result) = allocations_during(|| log.read(info.base_offset, 64 << 20, u64::MAX).unwrap());
    // The stored batch differs from the input only in its base offset and leader epoch.
    assert_eq!(result.records.len(), input.len(), "the read returns the whole batch");
    (appended, read)
}

#[test]
fn appending_and_reading_allocate_the_same_for_ten_records_as_for_ten_thousand() {
    let small = append_and_read(10);
    let large = append_and_read(10_000);
    assert_eq!(small, large, "(append, read) allocations grow with the record count");
}
