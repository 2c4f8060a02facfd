//! Benchmark helper for docs/BENCHMARKS.md ("where the CPU goes").
//!
//! `payload-cost <buffers> <payload_bytes> <total_bytes>` walks a ring of
//! `buffers` slot buffers (4 KiB header + payload, like recorder/src/memory.rs)
//! the way `dmarec record --source sim` does, on one thread, and reports the
//! thread CPU seconds per GiB of payload of:
//!   fill      formats::pattern::fill (the simulated card's work; DMA on a real card)
//!   crc       formats::crc32 of a payload filled earlier (ring order, as the recorder)
//!   fill_crc  fill then crc of the same buffer (cache-hot CRC)
//! One JSON line.

use std::time::Duration;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let a: Vec<u64> = std::env::args().skip(1).map(|s| s.parse().expect("number")).collect();
    if a.len() != 3 {
        eprintln!("usage: payload-cost <buffers> <payload_bytes> <total_bytes>");
        std::process::exit(2);
    }
    let (buffers, payload, total) = (a[0] as usize, a[1] as usize, a[2]);
    let stride = 4096 + payload;
    let mut ring = vec![0u8; buffers * stride];
    let slots = total / payload as u64;
    let gib = (slots * payload as u64) as f64 / (1u64 << 30) as f64;
    let mut sink = 0u32;
    // Warm-up: touch every page once.
    for (i, b) in ring.chunks_exact_mut(stride).enumerate() {
        formats::pattern::fill(&mut b[4096..], 0, i as u64);
    }
    let run = |ring: &mut Vec<u8>, sink: &mut u32, fill: bool, crc: bool| -> f64 {
        let t = thread_cpu();
        for seq in 0..slots {
            let i = (seq % buffers as u64) as usize;
            let p = &mut ring[i * stride + 4096..(i + 1) * stride];
            if fill {
                formats::pattern::fill(p, (seq % 4) as u16, seq);
            }
            if crc {
                *sink ^= formats::crc32(p);
            }
        }
        (thread_cpu() - t).as_secs_f64() / gib
    };
    let fill = run(&mut ring, &mut sink, true, false);
    let crc = run(&mut ring, &mut sink, false, true);
    let fill_crc = run(&mut ring, &mut sink, true, true);
    println!(
        "{{\"buffers\":{buffers},\"payload_bytes\":{payload},\"gib\":{gib:.3},\"fill_s_per_gib\":{fill:.4},\"crc_s_per_gib\":{crc:.4},\"fill_crc_s_per_gib\":{fill_crc:.4},\"sink\":{sink}}}"
    );
}
