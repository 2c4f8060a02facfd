//! A mutation fuzzer for the format parsers that runs on the stable toolchain.
//!
//! `cargo run --release -p dmarec-formats --example fuzz -- TARGET ITERATIONS [SEED]`
//! with TARGET one of superblock, slot, index. Starting from valid encodings
//! it flips bits, overwrites bytes with interesting values, truncates,
//! extends and, half of the time, repairs the CRC so the mutation reaches the
//! validation behind it. Oracles: no panic; whatever decodes re-encodes to
//! the same bytes (the encoding is canonical) and passes validation.

use formats::index::{IndexView, INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
use formats::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, limit: usize) -> usize {
        (self.next() % limit.max(1) as u64) as usize
    }
}

fn seed_superblock() -> Superblock {
    Superblock {
        version_minor: 0,
        recording_uuid: Uuid::from_random_bytes([3; 16]),
        created_unix_ns: 1_700_000_000_000_000_000,
        payload_bytes: 512 << 10,
        flags: SUPERBLOCK_FLAG_RING,
        device_index: 1,
        channel_layout: CHANNEL_LAYOUT_ROUND_ROBIN,
        members: vec![
            Member {
                uuid: Uuid::from_random_bytes([4; 16]),
                size_bytes: 1 << 30,
                slot_count: 1000,
            },
            Member {
                uuid: Uuid::from_random_bytes([5; 16]),
                size_bytes: 2 << 30,
                slot_count: 2000,
            },
        ],
        channels: vec![
            Channel {
                name: "adc0".into(),
                datatype: "ci16_le".into(),
                sample_rate_hz: 25e6,
            },
            Channel {
                name: "adc1".into(),
                datatype: "ci16_le".into(),
                sample_rate_hz: 25e6,
            },
        ],
        time_anchor: None,
    }
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, crc_at: &[(usize, usize)]) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 | 1 => {
                let bit = rng.below(bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            2 => {
                let i = rng.below(bytes.len());
                bytes[i] = [0, 1, 0x7f, 0x80, 0xff, 8, 32, 64][rng.below(8)];
            }
            3 if bytes.len() >= 8 => {
                let i = rng.below(bytes.len().saturating_sub(8));
                let v = [0u64, 1, u64::MAX, 1 << 63, 4096, 1 << 20, 1 << 32][rng.below(7)];
                bytes[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            3 => bytes.push(rng.next() as u8),
            4 => bytes.truncate(rng.below(bytes.len() + 1)),
            _ => {
                let n = rng.below(200);
                bytes.extend((0..n).map(|_| rng.next() as u8));
            }
        }
        if bytes.is_empty() {
            return;
        }
    }
    if rng.below(2) == 0 {
        for &(start, crc_off) in crc_at {
            if bytes.len() >= crc_off + 4 {
                let crc = crc32(&bytes[start..crc_off]);
                bytes[crc_off..crc_off + 4].copy_from_slice(&crc.to_le_bytes());
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: fuzz superblock|slot|index ITERATIONS [SEED]";
    let target = args.get(1).expect(usage).clone();
    let iterations: u64 = args.get(2).expect(usage).parse().expect(usage);
    let seed: u64 = args
        .get(3)
        .map(|s| s.parse().expect(usage))
        .unwrap_or(0x5eed);
    let mut rng = Rng(seed | 1);
    let sb = seed_superblock();
    let (valid, crcs): (Vec<u8>, Vec<(usize, usize)>) = match target.as_str() {
        "superblock" => (sb.encode().to_vec(), vec![(0, 4092)]),
        "slot" => {
            let h = SlotHeader {
                recording_uuid: sb.recording_uuid,
                slot_seq: 9,
                card_seq: 11,
                gap_count: 2,
                flags: SLOT_FLAG_GAP,
                payload_bytes_used: 4096,
                ..Default::default()
            };
            (h.encode().to_vec(), vec![(0, 4092)])
        }
        "index" => {
            let mut f = IndexHeader {
                superblock: Superblock {
                    device_index: 0,
                    ..sb.clone()
                },
            }
            .encode();
            for s in 0..8u64 {
                f.extend_from_slice(
                    &IndexEntry {
                        slot_seq: s,
                        card_seq: s,
                        gap_count: s % 2,
                        flags: (s % 2) as u16,
                        ..Default::default()
                    }
                    .encode(),
                );
            }
            let mut crcs = vec![(0, 4092), (4096, 8188)];
            crcs.extend((0..8).map(|i| {
                (
                    INDEX_HEADER_BYTES + i * INDEX_ENTRY_BYTES,
                    INDEX_HEADER_BYTES + i * INDEX_ENTRY_BYTES + 60,
                )
            }));
            (f, crcs)
        }
        other => panic!("unknown target {other:?}; {usage}"),
    };
    let mut accepted = 0u64;
    for _ in 0..iterations {
        let mut b = valid.clone();
        mutate(&mut rng, &mut b, &crcs);
        match target.as_str() {
            "superblock" => {
                if let Ok(s) = Superblock::decode(&b) {
                    s.validate().expect("decoded superblock fails validation");
                    if s.version_minor == 0 {
                        assert_eq!(
                            &s.encode()[..],
                            &b[..4096],
                            "superblock encoding not canonical"
                        );
                    }
                    accepted += 1;
                }
            }
            "slot" => {
                if let Ok(h) = SlotHeader::decode(&b) {
                    if b[10] == 0 && b[11] == 0 {
                        assert_eq!(
                            &h.encode()[..],
                            &b[..4096],
                            "slot header encoding not canonical"
                        );
                    }
                    let _ = h.check_payload(&b[..]);
                    accepted += 1;
                }
            }
            _ => {
                if let Ok(view) = IndexView::new(&b) {
                    for i in 0..view.len() {
                        if let Ok(e) = view.get(i) {
                            assert_eq!(
                                &e.encode()[..],
                                &b[INDEX_HEADER_BYTES + i * INDEX_ENTRY_BYTES..]
                                    [..INDEX_ENTRY_BYTES]
                            );
                        }
                    }
                    let _ = view.lower_bound(rng.next(), |e| e.slot_seq);
                    accepted += 1;
                }
            }
        }
    }
    println!("fuzz {target}: {iterations} inputs, {accepted} accepted, no panic");
}
