//! Appending a batch to the log and reading it back allocate per batch, never per record (issue 7: no
//! per-record heap allocation on the broker's produce or fetch path), counted on the calling thread with a
//! counting global allocator against the real filesystem backend.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use common::*;
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

/// Allocations to append one batch of `records` records and to read it back, in a fresh log.
fn append_and_read(records: usize) -> (u64, u64) {
    let temp = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(FsBackend::new());
    let config = LogConfig { segment_bytes_max: 64 << 20, ..LogConfig::default() };
    let (mut log, _) = Log::open(backend, temp.path(), config, 0).unwrap();
    // One batch first, so the segment and its mapping exist before counting.
    log.append(&batch(1, 0, 0), 0, 0).unwrap();
    let input = batch(records, 1, 1);
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
