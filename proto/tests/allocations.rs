//! The broker validates every batch it stores with `batch::validate`; this checks that the walk allocates
//! nothing per record (issue 7: no per-record heap allocation on the produce path), by counting the calling
//! thread's allocations with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rill_proto::batch::{self, BatchBuilder};

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

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn batch_of(records: usize) -> bytes::Bytes {
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
    let for_small = allocations_during(|| {
        batch::validate(&small).expect("valid");
    });
    let for_large = allocations_during(|| {
        batch::validate(&large).expect("valid");
    });
    assert_eq!(for_small, for_large, "allocations grow with the record count");
    assert!(for_large <= 2, "{for_large} allocations to validate one batch");
}
