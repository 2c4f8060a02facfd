//! `dmaplay verify` and `dmaplay reindex` use memory that does not grow
//! with the number of slots (docs/BENCHMARKS.md, "Scale"): they stream over
//! the mapped index and the scanned headers instead of collecting every
//! entry. A global allocator tracks the live heap bytes and their peak; each
//! command runs on two recordings of the same geometry, one 8 times longer,
//! and the peak may grow by less than one byte per extra slot. (Own test
//! binary: the allocator is global. No timer: bytes are counted.)
//!
//! Before the change verify kept three copies of every entry and reindex
//! collected every entry and the whole index image: with that code this
//! test fails (verify 1472844 -> 4340046 B, 200 B per extra slot; reindex
//! 313792 -> 2507200 B, 153 B per extra slot). Now both peaks are equal at
//! both sizes (verify 1062028 / 1062030 B, reindex 1061280 B; a wrapped
//! ring's reindex 2109738 B: its sort pass has a second buffer).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Tracking;
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        grew(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Peak heap bytes above the start while `f` runs.
fn peak_above_start<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let start = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(start, Ordering::Relaxed);
    let t = f();
    (PEAK_BYTES.load(Ordering::Relaxed) - start, t)
}

const PAYLOAD_BYTES: u64 = 4096;
const SLOT_BYTES: u64 = PAYLOAD_BYTES + 4096;

/// Records `slots` slots of 4 KiB with the simulated card into a file
/// (ring: a file of `capacity` slots that the recording wraps).
fn record(dir: &Path, slots: u64, ring_capacity: Option<u64>) -> (PathBuf, PathBuf) {
    let target = dir.join(format!("target-{slots}"));
    let index = dir.join(format!("index-{slots}"));
    let capacity = ring_capacity.unwrap_or(slots);
    let o = recorder::RecordOptions {
        size_bytes: Some(slots * PAYLOAD_BYTES),
        payload_size: formats::PayloadSize::new(PAYLOAD_BYTES).unwrap(),
        buffers: 64,
        queue_depth: 8,
        ring: ring_capacity.is_some(),
        // Superblock, reserved area, backup and 4 KiB of slack.
        new_file_size_bytes: Some(capacity * SLOT_BYTES + (1 << 20) + 8192),
        status_interval: Duration::from_secs(3600),
        index_sync_interval: Duration::from_secs(3600),
        quiet: true,
        ..recorder::RecordOptions::new(vec![target.clone()], index.clone())
    };
    let summary = recorder::record(&o).expect("recording");
    assert_eq!(summary.payload_bytes_recorded, slots * PAYLOAD_BYTES);
    (target, index)
}

fn open(target: &Path) -> tools::stripe::StripeSet {
    let mut stripe = tools::stripe::StripeSet::open(&[target.to_path_buf()]).unwrap();
    stripe.select_scan(None).unwrap();
    stripe
}

/// Peak heap of verify (with the index) and of reindex, and what each did.
fn peaks(target: &Path, index: &Path, live_slots: u64) -> (usize, usize) {
    let stripe = open(target);
    let o = tools::verify::VerifyOptions {
        range: None,
        pattern: true,
        quiet: true,
        threads: 2,
    };
    let (verify_peak, report) = peak_above_start(|| {
        let (catalog, range) =
            tools::catalog::open_planned(&stripe, Some(index), &mut |_| {}, |c| {
                Ok(tools::verify::plan(&stripe, c, &o))
            })
            .unwrap();
        tools::verify::verify(&stripe, &catalog, range, &o).unwrap()
    });
    assert!(report.all_good(), "{}", report.text());
    assert_eq!(report.slots_checked, live_slots);
    let rebuilt = index.with_extension("rebuilt");
    let o = tools::reindex::ReindexOptions {
        index: rebuilt.clone(),
        force: false,
        check_newest: tools::reindex::DEFAULT_CHECK_NEWEST,
        quiet: true,
    };
    let (reindex_peak, report) = peak_above_start(|| tools::reindex::reindex(&stripe, &o).unwrap());
    assert_eq!(report.slots_indexed, live_slots);
    // The rebuilt index is the recorder's header and its last `live_slots`
    // entries (a ring's index keeps the overwritten laps), byte for byte.
    let recorders = std::fs::read(index).unwrap();
    let header_bytes = formats::index::INDEX_HEADER_BYTES;
    let live_bytes = live_slots as usize * formats::index::INDEX_ENTRY_BYTES;
    let mut expected = recorders[..header_bytes].to_vec();
    expected.extend_from_slice(&recorders[recorders.len() - live_bytes..]);
    assert!(
        std::fs::read(&rebuilt).unwrap() == expected,
        "reindex of {} differs from the recorder's index",
        target.display()
    );
    std::fs::remove_file(&rebuilt).unwrap();
    (verify_peak, reindex_peak)
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Peaks at `small` and `large` slots (ring: the recordings wrap a file of
/// 3/4 as many slots, so the laps meet mid-file), after a first run that
/// warms lazily allocated state.
fn peaks_small_and_large(small: u64, large: u64, ring: bool) -> [(usize, usize); 2] {
    let dir = Dir(
        std::env::temp_dir().join(format!("dmaplay-flat-memory-{}-{ring}", std::process::id()))
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let run = |slots: u64| {
        let capacity = ring.then_some(slots / 4 * 3);
        let (target, index) = record(&dir.0, slots, capacity);
        let p = peaks(&target, &index, capacity.unwrap_or(slots));
        std::fs::remove_file(target).unwrap();
        std::fs::remove_file(index).unwrap();
        p
    };
    run(small);
    [run(small), run(large)]
}

fn assert_flat(what: &str, small: u64, large: u64, peaks: [(usize, usize); 2]) {
    let extra_slots = (large - small) as usize;
    for (command, at_small, at_large) in [
        ("verify", peaks[0].0, peaks[1].0),
        ("reindex", peaks[0].1, peaks[1].1),
    ] {
        eprintln!(
            "{what}: {command} peak heap {at_small} B at {small} slots, {at_large} B at {large}"
        );
        assert!(
            at_large < at_small + extra_slots,
            "{what}: {command}'s peak heap grew from {at_small} B ({small} slots) to {at_large} B \
             ({large} slots): {:.1} B per extra slot",
            (at_large as f64 - at_small as f64) / extra_slots as f64
        );
    }
}

// One test: the allocator's counts are global, so two runs at once (tests
// run in parallel) would count each other.
#[test]
fn verify_and_reindex_memory_is_flat_in_the_slot_count() {
    let (small, large) = (2048, 16384);
    assert_flat(
        "recording",
        small,
        large,
        peaks_small_and_large(small, large, false),
    );
    // A ring that wrapped mid-file: reindex puts the laps back in slot order.
    assert_flat(
        "ring",
        small,
        large,
        peaks_small_and_large(small, large, true),
    );
}
