//! The recorder calls `Layout::locate` once per slot on its hot path, which
//! must not allocate (TIGER_STYLE: everything is allocated at start-up). A
//! counting allocator checks it. (Own test binary: the allocator is global.)

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

#[test]
fn locate_allocates_nothing() {
    for (counts, ring) in [
        (vec![1000u64], false),
        (vec![3, 7, 5], false),
        (vec![40, 40, 90, 10], true),
    ] {
        let layout = formats::Layout::new(counts, formats::PayloadSize::DEFAULT, ring);
        let capacity = layout.capacity_slots();
        let before = allocations();
        let mut sum = 0u64;
        for s in 0..capacity * 2 {
            if let Some(loc) = layout.locate(s) {
                sum = sum.wrapping_add(loc.offset_bytes + loc.device_index as u64);
            }
        }
        assert_eq!(
            allocations(),
            before,
            "Layout::locate allocated (sum {sum})"
        );
    }
}
