//! Test fixture: writes recordings with the formats crate, as the recorder
//! would lay them out (superblocks and backups, pattern payloads, slots
//! placed by the layout, ring laps, card drops, index), into files in a
//! scratch directory removed on drop.

use formats::{
    pattern, Channel, IndexEntry, IndexHeader, Layout, Member, Superblock, Uuid,
    CHANNEL_LAYOUT_ROUND_ROBIN, SLOT_FLAG_GAP, SLOT_HEADER_BYTES, SUPERBLOCK_FLAG_RING,
};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "dmaplay-unit-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone)]
pub struct Spec {
    pub member_bytes: Vec<u64>,
    pub payload_bytes: u32,
    pub channels: u16,
    pub ring: bool,
    /// Slots to write (in ring mode may exceed the capacity).
    pub slots: u64,
    /// The card loses buffer `card_seq` when `card_seq % drop_every == drop_every - 1`.
    pub drop_every: u64,
    /// Distinguishes recordings (UUIDs are derived from it).
    pub seed: u8,
    pub sample_rate_hz: f64,
    /// Format 1.1: store a time anchor ([`ANCHOR_REALTIME_NS`] is card time
    /// [`CARD_T0_NS`]) and give host times a jitter of up to 49 ms, as a
    /// busy host has; else no anchor and host = card time + HOST_T0_NS.
    pub anchored: bool,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            member_bytes: vec![(1 << 20) + 40 * 8192 + 4096],
            payload_bytes: 4096,
            channels: 3,
            ring: false,
            slots: 30,
            drop_every: 0,
            seed: 1,
            sample_rate_hz: 1000.0,
            anchored: false,
        }
    }
}

pub struct Synth {
    pub paths: Vec<PathBuf>,
    pub index: PathBuf,
    pub sb: Superblock,
    pub layout: Layout,
    /// Every slot written, in slot order (including overwritten ring laps).
    pub entries: Vec<IndexEntry>,
}

pub const CARD_T0_NS: u64 = 5_000_000_000;
pub const CARD_STEP_NS: u64 = 1_000_000;
pub const HOST_T0_NS: u64 = 1_795_236_980_000_000_000;
/// The realtime of card time CARD_T0_NS in anchored recordings: 3 ms
/// before the host time of the first buffer.
pub const ANCHOR_REALTIME_NS: u64 = HOST_T0_NS - 3_000_000;

/// Host time of buffer `card_seq` (jittered when anchored).
fn host_ns(spec: &Spec, card_seq: u64) -> u64 {
    let jitter = if spec.anchored {
        (card_seq * 7_919) % 50 * 1_000_000
    } else {
        0
    };
    HOST_T0_NS + card_seq * CARD_STEP_NS + jitter
}

fn uuid(seed: u8, kind: u8) -> Uuid {
    Uuid::from_random_bytes([
        seed,
        kind,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        seed ^ kind,
    ])
}

impl Synth {
    /// Writes a recording to `names` in `dir` (files are created, or kept
    /// with their contents when they exist: an older recording stays where
    /// the new one does not write).
    pub fn write(dir: &Dir, names: &[&str], spec: &Spec) -> Synth {
        assert_eq!(names.len(), spec.member_bytes.len());
        let members: Vec<Member> = spec
            .member_bytes
            .iter()
            .enumerate()
            .map(|(i, &size)| Member {
                uuid: uuid(spec.seed, 100 + i as u8),
                size_bytes: size,
                slot_count: Superblock::slots_for_device(size, spec.payload_bytes),
            })
            .collect();
        let sb = Superblock {
            version_minor: 0,
            recording_uuid: uuid(spec.seed, 1),
            created_unix_ns: HOST_T0_NS - 1_000_000,
            payload_bytes: spec.payload_bytes,
            flags: if spec.ring { SUPERBLOCK_FLAG_RING } else { 0 },
            device_index: 0,
            channel_layout: CHANNEL_LAYOUT_ROUND_ROBIN,
            members,
            channels: (0..spec.channels)
                .map(|c| Channel {
                    name: format!("ch{c}"),
                    datatype: "ci16_le".into(),
                    sample_rate_hz: spec.sample_rate_hz,
                })
                .collect(),
            time_anchor: spec.anchored.then_some(formats::time::TimeAnchor {
                clock: formats::time::CardClock::SampleCounter,
                card_ns: CARD_T0_NS,
                realtime_ns: ANCHOR_REALTIME_NS,
            }),
        };
        let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        let files: Vec<std::fs::File> = paths
            .iter()
            .zip(&spec.member_bytes)
            .map(|(p, &size)| {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .unwrap();
                if f.metadata().unwrap().len() != size {
                    f.set_len(size).unwrap();
                }
                f
            })
            .collect();
        for (i, f) in files.iter().enumerate() {
            let mut s = sb.clone();
            s.device_index = i as u16;
            let bytes = s.encode();
            f.write_all_at(&bytes, 0).unwrap();
            f.write_all_at(&bytes, Superblock::backup_offset(spec.member_bytes[i]))
                .unwrap();
        }
        let layout = Layout::from_superblock(&sb);
        let mut entries = Vec::new();
        let mut card_seq = 0u64;
        let mut slot = vec![0u8; SLOT_HEADER_BYTES + spec.payload_bytes as usize];
        for slot_seq in 0..spec.slots {
            let mut gap = 0;
            while spec.drop_every > 0 && card_seq % spec.drop_every == spec.drop_every - 1 {
                card_seq += 1;
                gap += 1;
            }
            let channel = (card_seq % spec.channels as u64) as u16;
            let loc = layout.locate(slot_seq).expect("spec.slots fits (or ring)");
            let (head, payload) = slot.split_at_mut(SLOT_HEADER_BYTES);
            pattern::fill(payload, channel, card_seq);
            let h = formats::SlotHeader {
                recording_uuid: sb.recording_uuid,
                slot_seq,
                card_seq,
                card_timestamp_ns: CARD_T0_NS + card_seq * CARD_STEP_NS,
                host_timestamp_ns: host_ns(spec, card_seq),
                gap_count: gap,
                payload_bytes_used: spec.payload_bytes,
                payload_crc32: formats::crc32(payload),
                channel,
                flags: if gap > 0 { SLOT_FLAG_GAP } else { 0 },
                device_index: loc.device_index as u16,
            };
            h.encode_into(head);
            files[loc.device_index]
                .write_all_at(&slot, loc.offset_bytes)
                .unwrap();
            entries.push(IndexEntry::from_header(&h, loc.offset_bytes));
            card_seq += 1;
        }
        let index = dir.join(&format!("{}.idx", names[0]));
        let mut bytes = IndexHeader {
            superblock: sb.clone(),
        }
        .encode();
        for e in &entries {
            bytes.extend_from_slice(&e.encode());
        }
        std::fs::write(&index, bytes).unwrap();
        Synth {
            paths,
            index,
            sb,
            layout,
            entries,
        }
    }

    /// The entries still on the members (ring: the last `capacity`).
    pub fn live(&self) -> &[IndexEntry] {
        let cap = self.layout.capacity_slots() as usize;
        &self.entries[self.entries.len().saturating_sub(cap)..]
    }

    pub fn entry(&self, slot_seq: u64) -> IndexEntry {
        *self
            .entries
            .iter()
            .find(|e| e.slot_seq == slot_seq)
            .unwrap()
    }
}

/// Flips bit `bit` of the byte at `offset` of `path`.
pub fn flip(path: &std::path::Path, offset: u64, bit: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 1 << bit;
    f.write_all_at(&b, offset).unwrap();
}

/// A small deterministic generator (xorshift) for picking damage sites.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, limit: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % limit
    }
}
