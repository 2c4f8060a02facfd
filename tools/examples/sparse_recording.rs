//! A synthetic recording of any size without writing it (bench/scale.sh's
//! 1 TiB case): one sparse member file with a real superblock and backup,
//! a format 1.2 scan table with one complete scan, and the full index (64 B
//! a slot: every slot's entry, as the recorder would have written it for a
//! card at `--rate` bytes/s, round-robin over `--channels`, no loss). Only
//! the slots of the `--real` ranges are written (header and the simulated
//! card's pattern payload, as `dmarec record --source sim` writes them);
//! the others are holes that read as zeros. So every command that reads
//! only the index, the superblocks and the scan table (inspect, list, a
//! selection by time) sees a recording of that size, and every slot a
//! command reads inside the real ranges is the recorder's. The entries of
//! the holes carry payload CRC 0 (computing the pattern's CRC of 1 TiB
//! would take longer than the benchmark): verify only the real ranges
//! (`--seq A..B`). A header scan (reindex, or any command without
//! `--index`) reads every location and finds the real slots only.
//!
//!   cargo run --release -p dmarec-tools --example sparse_recording -- \
//!       --target /var/tmp/t.img --index /var/tmp/t.idx --slots 2097152 \
//!       --payload-bytes 524288 --rate 1000000000 --real 0..4095
//!
//! Prints one JSON line: the slots, file size, bytes really written.

use anyhow::{bail, Context, Result};
use formats::scan::{copy_offset_bytes, ScanEntry, ScanState, ScanTable};
use formats::time::{CardClock, TimeAnchor};
use formats::{
    pattern, Channel, IndexEntry, IndexHeader, Layout, Member, SlotHeader, Superblock, Uuid,
    CHANNEL_LAYOUT_ROUND_ROBIN, DATA_START_BYTES, SLOT_HEADER_BYTES,
};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

struct Args {
    target: PathBuf,
    index: PathBuf,
    slots: u64,
    payload_bytes: u32,
    rate_bytes_per_s: u64,
    channels: u16,
    /// Slot ranges written for real (both ends included).
    real: Vec<(u64, u64)>,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        target: PathBuf::new(),
        index: PathBuf::new(),
        slots: 0,
        payload_bytes: 512 << 10,
        rate_bytes_per_s: 1_000_000_000,
        channels: 1,
        real: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    // Bounded: each round takes two arguments.
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number = || -> Result<u64> {
            value
                .parse()
                .with_context(|| format!("{flag} {value}: not a number"))
        };
        match flag.as_str() {
            "--target" => a.target = value.clone().into(),
            "--index" => a.index = value.clone().into(),
            "--slots" => a.slots = number()?,
            "--payload-bytes" => a.payload_bytes = number()? as u32,
            "--rate" => a.rate_bytes_per_s = number()?,
            "--channels" => a.channels = number()? as u16,
            "--real" => {
                let (first, last) = value
                    .split_once("..")
                    .with_context(|| format!("--real {value}: use A..B (both included)"))?;
                a.real.push((first.parse()?, last.parse()?));
            }
            _ => bail!("unknown flag {flag} (see the example's header comment)"),
        }
    }
    if a.target.as_os_str().is_empty() || a.index.as_os_str().is_empty() || a.slots == 0 {
        bail!("give --target, --index and --slots");
    }
    if a.real.iter().any(|&(f, l)| f > l || l >= a.slots) {
        bail!("--real ranges must be A..B with A <= B < --slots");
    }
    Ok(a)
}

fn uuid(kind: u8) -> Uuid {
    Uuid::from_random_bytes([
        kind, 0x5c, 0xa1, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, kind,
    ])
}

/// The set's superblock (member 0) with a time anchor at card time 0.
fn superblock(a: &Args, member_bytes: u64, created_ns: u64) -> Superblock {
    Superblock {
        version_minor: formats::scan::SCAN_TABLE_MINOR,
        recording_uuid: uuid(1),
        created_unix_ns: created_ns,
        payload_bytes: a.payload_bytes,
        flags: 0,
        device_index: 0,
        channel_layout: CHANNEL_LAYOUT_ROUND_ROBIN,
        members: vec![Member {
            uuid: uuid(2),
            size_bytes: member_bytes,
            slot_count: Superblock::slots_for_device(member_bytes, a.payload_bytes),
        }],
        channels: (0..a.channels)
            .map(|c| Channel {
                name: format!("ch{c}"),
                datatype: "ci16_le".into(),
                sample_rate_hz: a.rate_bytes_per_s as f64 / 4.0 / a.channels as f64,
            })
            .collect(),
        time_anchor: Some(TimeAnchor {
            clock: CardClock::SampleCounter,
            card_ns: 0,
            realtime_ns: created_ns,
        }),
    }
}

/// Slot `n`'s header as the simulated card and the recorder make it
/// (payload CRC filled in by the caller).
fn header(a: &Args, scan_uuid: Uuid, n: u64, realtime_ns: u64) -> SlotHeader {
    let card_ns =
        (n as u128 * a.payload_bytes as u128 * 1_000_000_000 / a.rate_bytes_per_s as u128) as u64;
    SlotHeader {
        recording_uuid: scan_uuid,
        slot_seq: n,
        card_seq: n,
        card_timestamp_ns: card_ns,
        host_timestamp_ns: realtime_ns + card_ns + 1_000_000,
        gap_count: 0,
        payload_bytes_used: a.payload_bytes,
        payload_crc32: 0,
        channel: (n % a.channels as u64) as u16,
        flags: 0,
        device_index: 0,
    }
}

fn main() -> Result<()> {
    let a = parse()?;
    let slot_bytes = SLOT_HEADER_BYTES as u64 + a.payload_bytes as u64;
    let member_bytes = DATA_START_BYTES + a.slots * slot_bytes + 4096;
    let created_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let sb = superblock(&a, member_bytes, created_ns);
    assert_eq!(
        sb.members[0].slot_count, a.slots,
        "member size holds --slots"
    );
    let scan_uuid = uuid(3);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&a.target)
        .with_context(|| format!("creating {}", a.target.display()))?;
    file.set_len(member_bytes)?;
    let mut written = 0u64;
    let sb_bytes = sb.encode();
    file.write_all_at(&sb_bytes, 0)?;
    file.write_all_at(&sb_bytes, Superblock::backup_offset(member_bytes))?;
    let last_ns = header(&a, scan_uuid, a.slots - 1, created_ns).card_timestamp_ns;
    let table = ScanTable {
        set_uuid: sb.recording_uuid,
        generation: 1,
        scans: vec![ScanEntry {
            uuid: scan_uuid,
            name: "synthetic".into(),
            first_slot: 0,
            slot_count: a.slots,
            start_unix_ns: created_ns,
            end_unix_ns: created_ns + last_ns,
            payload_bytes: a.slots * a.payload_bytes as u64,
            buffers_lost: 0,
            state: ScanState::Complete,
            flags: 0,
            time_anchor: sb.time_anchor,
        }],
    };
    let table_bytes = table.encode();
    file.write_all_at(&table_bytes, copy_offset_bytes(table.copy()))?;
    written += 2 * sb_bytes.len() as u64 + table_bytes.len() as u64;
    let layout = Layout::from_superblock(&sb);
    let index = std::fs::File::create(&a.index)
        .with_context(|| format!("creating {}", a.index.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, index);
    w.write_all(
        &IndexHeader {
            superblock: sb.clone(),
            scan_uuid,
        }
        .encode(),
    )?;
    let mut slot = vec![0u8; slot_bytes as usize];
    // Bounded by --slots.
    for n in 0..a.slots {
        let mut h = header(&a, scan_uuid, n, created_ns);
        let at = layout.locate(n).expect("slot within the member");
        if a.real.iter().any(|&(f, l)| (f..=l).contains(&n)) {
            let (head, payload) = slot.split_at_mut(SLOT_HEADER_BYTES);
            pattern::fill(payload, h.channel, h.card_seq);
            h.payload_crc32 = formats::crc32(payload);
            h.encode_into(head);
            file.write_all_at(&slot, at.offset_bytes)?;
            written += slot_bytes;
        }
        w.write_all(&IndexEntry::from_header(&h, at.offset_bytes).encode())?;
    }
    let index = w.into_inner().map_err(|e| e.into_error())?;
    index.sync_all()?;
    file.sync_all()?;
    written += 8192 + 64 * a.slots;
    println!(
        "{{\"slots\": {}, \"member_bytes\": {member_bytes}, \"bytes_written\": {written}, \"card_seconds\": {:.3}}}",
        a.slots,
        last_ns as f64 / 1e9
    );
    Ok(())
}
