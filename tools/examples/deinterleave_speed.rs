//! How fast `tools::deinterleave` corner-turns in memory, without I/O:
//! `cargo run --release -p dmarec-tools --example deinterleave_speed`.
//! Prints GB/s (payload bytes split per second, median of 7 runs of
//! 512 MiB each) per channel count and sample size, and a plain memcpy of
//! the same bytes for scale.

use std::time::Instant;
use tools::deinterleave::Deinterleaver;

const PAYLOAD_BYTES: usize = 512 << 10;
const ROUNDS: usize = 1024; // 512 MiB per run

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let payload: Vec<u8> = (0..PAYLOAD_BYTES).map(|i| (i * 7 + 3) as u8).collect();
    let mut copy = vec![0u8; PAYLOAD_BYTES];
    let rate = |f: &mut dyn FnMut()| {
        median(
            (0..7)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..ROUNDS {
                        f();
                    }
                    (PAYLOAD_BYTES * ROUNDS) as f64 / t.elapsed().as_secs_f64() / 1e9
                })
                .collect(),
        )
    };
    println!(
        "memcpy: {:.2} GB/s",
        rate(&mut || {
            copy.copy_from_slice(&payload);
            std::hint::black_box(&copy);
        })
    );
    for (channels, sample_bytes) in [(2, 4), (4, 4), (8, 4), (4, 2), (16, 2), (3, 4), (4, 8)] {
        let frame = channels * sample_bytes;
        let used = &payload[..PAYLOAD_BYTES / frame * frame];
        let mut d = Deinterleaver::new(channels, sample_bytes, PAYLOAD_BYTES);
        let r = rate(&mut || {
            d.split(used);
            std::hint::black_box(d.channel(0));
        });
        println!("{channels} channels x {sample_bytes} bytes: {r:.2} GB/s");
    }
}
