//! The recording loop allocates nothing per slot: everything is allocated at
//! start-up (TIGER_STYLE). A counting global allocator counts every
//! allocation of the process (recorder and simulated card threads) during two
//! whole recordings, one eight times longer than the other; the counts must
//! be equal. (Own test binary: the allocator is global.)
//!
//! The count is exact, not a tolerance: the only other thread, the simulated
//! card's, hands buffers over through a preallocated queue
//! (recorder/src/source/handoff.rs). With `std::sync::mpsc` it was off by 2
//! in about 1 debug run in 3: the card thread's first blocking wait on an
//! empty queue allocated a waiter context (48 bytes) and the channel's waiter
//! list (96 bytes), and whether it ever waited depended on thread timing.
//! A `Vec` allocated per slot in the loop makes it fail (1133 vs 237).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `live`: publish the status every millisecond, as `dmarec serve` does
/// (its metrics and `ctl status`): many more ticks in the longer recording.
fn allocations_of_a_recording(dir: &std::path::Path, size_bytes: u64, live: bool) -> u64 {
    let target = dir.join(format!("target-{size_bytes}"));
    let index = dir.join(format!("index-{size_bytes}"));
    let o = recorder::RecordOptions {
        size_bytes: Some(size_bytes),
        payload_size: formats::PayloadSize::new(64 << 10).unwrap(),
        buffers: 16,
        queue_depth: 4,
        new_file_size_bytes: Some(size_bytes + size_bytes / 8 + (8 << 20)),
        status_interval: if live {
            Duration::from_millis(1)
        } else {
            Duration::from_secs(3600)
        },
        index_sync_interval: Duration::from_secs(3600),
        quiet: true,
        live: live.then(recorder::status::LiveSink::default),
        ..recorder::RecordOptions::new(vec![target.clone()], index.clone())
    };
    let sink = o.live.clone();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let summary = recorder::record(&o).expect("recording");
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(summary.payload_bytes_recorded, size_bytes);
    if let Some(sink) = sink {
        let published = sink.lock().unwrap().expect("the last tick published");
        assert_eq!(published.payload_bytes_recorded, size_bytes);
    }
    drop(summary);
    std::fs::remove_file(target).unwrap();
    std::fs::remove_file(index).unwrap();
    after - before
}

fn allocations_short_and_long(live: bool) -> (u64, u64) {
    let dir = std::env::temp_dir().join(format!("dmarec-no-alloc-{}-{live}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 128 and 1024 slots of 64 KiB; a first run warms lazily allocated
    // process state (thread-locals, the standard library's own caches).
    allocations_of_a_recording(&dir, 4 << 20, live);
    let short = allocations_of_a_recording(&dir, 8 << 20, live);
    let long = allocations_of_a_recording(&dir, 64 << 20, live);
    std::fs::remove_dir_all(&dir).unwrap();
    (short, long)
}

// One test: the allocator's count is global, so two recordings at once
// (tests run in parallel) would count each other's start-up.
#[test]
fn the_recording_loop_allocates_nothing_per_slot() {
    let (short, long) = allocations_short_and_long(true);
    assert_eq!(
        long, short,
        "with the service's live status every 1 ms: a recording 8x longer made {long} \
         allocations instead of {short}"
    );
    let (short, long) = allocations_short_and_long(false);
    assert_eq!(
        long, short,
        "a recording 8x longer made {long} allocations instead of {short}"
    );
    eprintln!("allocations per recording: {short} (128 slots) = {long} (1024 slots)");
}
