//! Benchmark helper for docs/BENCHMARKS.md, step 6 (seek).
//!
//! `seek-index build <path> <entries>` writes a synthetic index file exactly
//! as the recorder would (formats::IndexHeader + IndexEntry::encode), one
//! entry per 512 KiB slot, card timestamps increasing with jitter.
//!
//! `seek-index seek <path> <warm_seeks> <seed> [--drop-cache]` is one fresh
//! process: optionally evicts the file from the page cache
//! (posix_fadvise DONTNEED), then times open + mmap + IndexView::new +
//! the first lower_bound on a random card timestamp (the "first seek"), then
//! `warm_seeks` further random lower_bounds in the same mapping.
//! `--madv-random` advises the mapping MADV_RANDOM (a fault then reads one
//! page instead of read_ahead_kb around it). Every result
//! is checked (entry[i-1].ts < target <= entry[i].ts). Prints one JSON line.

use formats::index::{IndexView, INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
use formats::{Channel, IndexEntry, IndexHeader, Member, Superblock, Uuid};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::io::AsRawFd;
use std::time::Instant;

const PAYLOAD: u32 = 512 * 1024;
const T0: u64 = 1_000_000_000_000;
/// 512 KiB at 2 GB/s.
const INTERVAL_NS: u64 = 262_144;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn timestamp(index: u64) -> u64 {
    // Strictly increasing: jitter < interval / 2.
    T0 + index * INTERVAL_NS + (index.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 48) % (INTERVAL_NS / 2)
}

fn build(path: &str, entries: u64) {
    let slot_bytes = 4096 + PAYLOAD as u64;
    let size = (1 << 20) + entries * slot_bytes + (1 << 20);
    let sb = Superblock {
        version_minor: formats::FORMAT_VERSION_MINOR,
        recording_uuid: Uuid::from_random_bytes([7; 16]),
        created_unix_ns: 1,
        payload_bytes: PAYLOAD,
        flags: 0,
        device_index: 0,
        channel_layout: formats::CHANNEL_LAYOUT_ROUND_ROBIN,
        members: vec![Member {
            uuid: Uuid::from_random_bytes([9; 16]),
            size_bytes: size,
            slot_count: entries,
        }],
        channels: (0..4)
            .map(|c| Channel {
                name: format!("ch{c}"),
                datatype: "ci16_le".into(),
                sample_rate_hz: 0.0,
            })
            .collect(),
    };
    let f = File::create(path).expect("create index");
    let mut w = BufWriter::with_capacity(1 << 20, f);
    w.write_all(&IndexHeader { superblock: sb, scan_uuid: formats::Uuid::NIL }.encode()).unwrap();
    for i in 0..entries {
        let e = IndexEntry {
            slot_seq: i,
            card_seq: i,
            card_timestamp_ns: timestamp(i),
            host_timestamp_ns: 1_700_000_000_000_000_000 + i * INTERVAL_NS,
            gap_count: 0,
            device_offset_bytes: (1 << 20) + i * slot_bytes,
            payload_bytes_used: PAYLOAD,
            payload_crc32: i as u32,
            channel: (i % 4) as u8,
            device_index: 0,
            flags: 0,
        };
        w.write_all(&e.encode()).unwrap();
    }
    let f = w.into_inner().unwrap();
    f.sync_all().unwrap();
    let len = f.metadata().unwrap().len();
    assert_eq!(len, (INDEX_HEADER_BYTES + entries as usize * INDEX_ENTRY_BYTES) as u64);
    println!("{{\"path\":\"{path}\",\"entries\":{entries},\"bytes\":{len}}}");
}

fn faults() -> (i64, i64) {
    // SAFETY: getrusage fills a zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    (u.ru_minflt, u.ru_majflt)
}

fn seek(path: &str, warm: usize, seed: u64, drop_cache: bool, madv_random: bool) {
    if drop_cache {
        let f = File::open(path).expect("open index");
        // SAFETY: plain syscall on our fd.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0, "posix_fadvise");
    }
    let mut rng = Rng(seed);
    let (f0min, f0maj) = faults();
    let t0 = Instant::now();
    let f = File::open(path).expect("open index");
    let len = f.metadata().unwrap().len() as usize;
    // SAFETY: read-only private mapping of a file nobody writes meanwhile.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap");
    if madv_random {
        // SAFETY: advice on our own mapping. Without it a fault reads
        // around the faulting page (read_ahead_kb of the device).
        unsafe { libc::madvise(p, len, libc::MADV_RANDOM) };
    }
    // SAFETY: the mapping is `len` bytes and lives until the process exits.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
    let view = IndexView::new(bytes).expect("index decodes");
    let n = view.len() as u64;
    let lo = timestamp(0);
    let hi = timestamp(n - 1);
    let mut target = || lo + rng.next() % (hi - lo + 1);
    let check = |t: u64, i: usize| {
        assert!(i < view.len(), "target inside the recording");
        assert!(view.get(i).unwrap().card_timestamp_ns >= t);
        if i > 0 {
            assert!(view.get(i - 1).unwrap().card_timestamp_ns < t);
        }
    };
    let t_open = t0.elapsed();
    let t = target();
    let t1 = Instant::now();
    let i = view.lower_bound(t, |e| e.card_timestamp_ns).unwrap();
    let first_lb = t1.elapsed();
    let first_total = t0.elapsed();
    let (f1min, f1maj) = faults();
    check(t, i);
    let mut warm_ns: Vec<u64> = Vec::with_capacity(warm);
    for _ in 0..warm {
        let t = target();
        let s = Instant::now();
        let i = view.lower_bound(t, |e| e.card_timestamp_ns).unwrap();
        warm_ns.push(s.elapsed().as_nanos() as u64);
        check(t, i);
    }
    warm_ns.sort_unstable();
    let pct = |q: f64| -> f64 {
        if warm_ns.is_empty() {
            return 0.0;
        }
        warm_ns[((warm_ns.len() - 1) as f64 * q).round() as usize] as f64 / 1e3
    };
    println!(
        "{{\"entries\":{n},\"drop_cache\":{drop_cache},\"madv_random\":{madv_random},\"open_map_view_us\":{:.3},\"first_lower_bound_us\":{:.3},\"first_seek_us\":{:.3},\"first_seek_minor_faults\":{},\"first_seek_major_faults\":{},\"warm_seeks\":{warm},\"warm_median_us\":{:.3},\"warm_p99_us\":{:.3},\"warm_max_us\":{:.3}}}",
        t_open.as_secs_f64() * 1e6,
        first_lb.as_secs_f64() * 1e6,
        first_total.as_secs_f64() * 1e6,
        f1min - f0min,
        f1maj - f0maj,
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("build") if a.len() == 4 => build(&a[2], a[3].parse().expect("entries")),
        Some("seek") if a.len() >= 5 => seek(
            &a[2],
            a[3].parse().expect("warm_seeks"),
            a[4].parse().expect("seed"),
            a[5..].iter().any(|x| x == "--drop-cache"),
            a[5..].iter().any(|x| x == "--madv-random"),
        ),
        _ => {
            eprintln!("usage: seek-index build <path> <entries>\n       seek-index seek <path> <warm_seeks> <seed> [--drop-cache] [--madv-random]");
            std::process::exit(2);
        }
    }
}
