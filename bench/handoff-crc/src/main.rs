//! Benchmark helper for docs/BENCHMARKS.md ("where the recorder's CPU goes").
//!
//! `handoff-crc <buffers> <lag> <slots>` runs the recorder's data path
//! without I/O on two threads pinned to CPUs 1 and 0: a "card" thread fills
//! buffer after buffer of a ring (`formats::pattern::fill`, 512 KiB payloads
//! in a 2 MiB-aligned, huge-page-advised ring, like the recorder's slot
//! memory) and publishes each; a "recorder" thread computes `formats::crc32`
//! of each buffer once the card is `lag` buffers further, then gives it back.
//! It prints the CPU seconds per GiB of the CRC calls alone (thread CPU
//! clock around each call), i.e. what checksumming data that another core
//! wrote costs, as with the simulated card (and, through the last-level
//! cache, with a card's DMA). Compare with payload-cost's single-thread CRC.
//! One JSON line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const PAYLOAD_BYTES: usize = 512 << 10;
const STRIDE_BYTES: usize = PAYLOAD_BYTES + 4096;
const HUGE_BYTES: usize = 2 << 20;

fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

struct Ring(*mut u8);
// SAFETY: the two threads touch a buffer only while they own it (the
// published/consumed counters below hand it over with Release/Acquire).
unsafe impl Send for Ring {}
unsafe impl Sync for Ring {}

fn main() {
    let a: Vec<u64> = std::env::args().skip(1).map(|s| s.parse().expect("number")).collect();
    if a.len() != 3 || a[0] == 0 || a[1] >= a[0] {
        eprintln!("usage: handoff-crc <buffers> <lag < buffers> <slots>");
        std::process::exit(2);
    }
    let (buffers, lag, slots) = (a[0] as usize, a[1], a[2]);
    let mut backing = vec![0u8; buffers * STRIDE_BYTES + HUGE_BYTES];
    let base = (backing.as_mut_ptr() as usize).next_multiple_of(HUGE_BYTES) as *mut u8;
    // SAFETY: advice on memory we own; then every byte is touched once.
    unsafe { libc::madvise(base.cast(), buffers * STRIDE_BYTES, libc::MADV_HUGEPAGE) };
    for i in 0..buffers * STRIDE_BYTES {
        // SAFETY: inside backing.
        unsafe { *base.add(i) = 1 };
    }
    let ring = Arc::new(Ring(base));
    let published = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let payload = move |r: &Ring, seq: u64| {
        let i = (seq % buffers as u64) as usize;
        // SAFETY: buffer i lies inside the ring; ownership as described above.
        unsafe { std::slice::from_raw_parts_mut(r.0.add(i * STRIDE_BYTES + 4096), PAYLOAD_BYTES) }
    };
    let card = {
        let (ring, published, consumed) = (ring.clone(), published.clone(), consumed.clone());
        std::thread::spawn(move || {
            pin_to(1);
            let t = thread_cpu_s();
            for seq in 0..slots {
                while seq >= consumed.load(Ordering::Acquire) + buffers as u64 {
                    std::hint::spin_loop();
                }
                formats::pattern::fill(payload(&ring, seq), 0, seq);
                published.store(seq + 1, Ordering::Release);
            }
            thread_cpu_s() - t
        })
    };
    pin_to(0);
    let (mut crc_s, mut sink) = (0.0f64, 0u32);
    for seq in 0..slots {
        while published.load(Ordering::Acquire) < (seq + 1 + lag).min(slots) {
            std::hint::spin_loop();
        }
        let t = thread_cpu_s();
        sink ^= formats::crc32(payload(&ring, seq));
        crc_s += thread_cpu_s() - t;
        consumed.store(seq + 1, Ordering::Release);
    }
    let fill_s = card.join().expect("card thread");
    drop(backing);
    let gib = (slots as usize * PAYLOAD_BYTES) as f64 / (1u64 << 30) as f64;
    println!(
        "{{\"buffers\":{buffers},\"lag\":{lag},\"gib\":{gib:.3},\"crc_s_per_gib\":{:.4},\"card_fill_s_per_gib\":{:.4},\"sink\":{sink}}}",
        crc_s / gib,
        fill_s / gib
    );
}
