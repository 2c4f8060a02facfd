//! Round-trip, single-bit-flip and truncation properties of every structure.

use formats::index::{IndexView, INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
use formats::*;
use proptest::prelude::*;

fn arb_uuid() -> impl Strategy<Value = Uuid> {
    any::<[u8; 16]>().prop_map(Uuid::from_random_bytes)
}

fn arb_superblock() -> impl Strategy<Value = Superblock> {
    (
        arb_uuid(),
        any::<u64>(),
        12u32..=20,
        any::<bool>(),
        prop::collection::vec((arb_uuid(), 1u64..1000), 1..=MAX_DEVICES),
        prop::collection::vec(
            (
                "[a-z0-9_]{1,32}",
                prop::sample::select(vec!["ci16_le", "rf32_le", "ru8", "cf64_be"]),
                0.0f64..1e9,
            ),
            1..=MAX_CHANNELS,
        ),
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop::option::of((1u16..=2, any::<u64>(), any::<u64>())),
    )
        .prop_map(
            |(rec, created, shift, ring, members, chans, idx, interleaved, anchor)| {
                let payload_bytes = 1u32 << shift;
                let slot = 4096 + payload_bytes as u64;
                let members: Vec<Member> = members
                    .into_iter()
                    .map(|(uuid, slots)| Member {
                        uuid,
                        size_bytes: DATA_START_BYTES + slots * slot + 4096 + 17,
                        slot_count: slots,
                    })
                    .collect();
                Superblock {
                    // A set with a scan table (1.2) has no superblock ring
                    // flag: ring mode belongs to its scans; a 1.1 set's may be set.
                    version_minor: if ring { 1 } else { FORMAT_VERSION_MINOR },
                    recording_uuid: rec,
                    created_unix_ns: created,
                    payload_bytes,
                    flags: if ring { SUPERBLOCK_FLAG_RING } else { 0 },
                    device_index: idx.index(members.len()) as u16,
                    channel_layout: if interleaved {
                        CHANNEL_LAYOUT_INTERLEAVED
                    } else {
                        CHANNEL_LAYOUT_ROUND_ROBIN
                    },
                    members,
                    // Interleaved frames need one datatype: channel 0's.
                    channels: chans
                        .iter()
                        .map(|(name, dt, rate)| Channel {
                            name: name.clone(),
                            datatype: if interleaved { chans[0].1 } else { dt }.to_string(),
                            sample_rate_hz: *rate,
                        })
                        .collect(),
                    time_anchor: anchor.map(|(code, card_ns, realtime_ns)| {
                        formats::time::TimeAnchor {
                            clock: formats::time::CardClock::from_code(code).unwrap(),
                            card_ns,
                            realtime_ns,
                        }
                    }),
                }
            },
        )
}

fn arb_header() -> impl Strategy<Value = SlotHeader> {
    (
        arb_uuid(),
        any::<[u64; 6]>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(u, n, used, crc, ch, dev)| SlotHeader {
            recording_uuid: u,
            slot_seq: n[0],
            card_seq: n[1],
            card_timestamp_ns: n[2],
            host_timestamp_ns: n[3],
            gap_count: n[4] % 3,
            payload_bytes_used: used,
            payload_crc32: crc,
            channel: ch,
            flags: if n[4] % 3 > 0 { SLOT_FLAG_GAP } else { 0 },
            device_index: dev,
        })
}

fn arb_entry() -> impl Strategy<Value = IndexEntry> {
    arb_header().prop_flat_map(|h| {
        any::<u64>().prop_map(move |off| {
            IndexEntry::from_header(
                &SlotHeader {
                    channel: h.channel & 0xff,
                    device_index: h.device_index & 0xff,
                    ..h
                },
                off,
            )
        })
    })
}

/// Every single-bit flip of `bytes` must make `decode` fail.
fn every_bit_flip_fails<T>(bytes: &[u8], decode: impl Fn(&[u8]) -> Result<T, FormatError>) {
    let mut b = bytes.to_vec();
    for bit in 0..b.len() * 8 {
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(decode(&b).is_err(), "flip of bit {bit} not detected");
        b[bit / 8] ^= 1 << (bit % 8);
    }
}

fn every_truncation_fails<T: std::fmt::Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, FormatError>,
) {
    for len in 0..bytes.len() {
        match decode(&bytes[..len]) {
            Err(FormatError::Truncated { got, .. }) => assert_eq!(got, len),
            other => panic!("truncation to {len} bytes gave {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn superblock_round_trips(sb in arb_superblock()) {
        let bytes = sb.encode();
        prop_assert_eq!(Superblock::decode(&bytes).unwrap(), sb);
    }

    #[test]
    fn slot_header_round_trips(h in arb_header()) {
        prop_assert_eq!(SlotHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn index_entry_round_trips(e in arb_entry()) {
        prop_assert_eq!(IndexEntry::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn index_entry_from_header_copies_every_field(h in arb_header(), off in any::<u64>()) {
        let e = IndexEntry::from_header(&h, off);
        prop_assert_eq!(
            (e.slot_seq, e.card_seq, e.card_timestamp_ns, e.host_timestamp_ns, e.gap_count),
            (h.slot_seq, h.card_seq, h.card_timestamp_ns, h.host_timestamp_ns, h.gap_count)
        );
        prop_assert_eq!(
            (e.device_offset_bytes, e.payload_bytes_used, e.payload_crc32, e.flags),
            (off, h.payload_bytes_used, h.payload_crc32, h.flags)
        );
        prop_assert_eq!(
            (e.channel, e.device_index),
            (h.channel as u8, h.device_index as u8)
        );
    }

    #[test]
    fn layout_places_every_slot_once(counts in prop::collection::vec(1u64..40, 1..=MAX_DEVICES), ring in any::<bool>()) {
        let layout = Layout::new(counts.clone(), formats::PayloadSize::new(4096).unwrap(), ring);
        let cap = layout.capacity_slots();
        let mut seen = std::collections::HashSet::new();
        for s in 0..cap {
            let loc = layout.locate(s).unwrap();
            prop_assert!(loc.device_slot < counts[loc.device_index]);
            prop_assert!(seen.insert((loc.device_index, loc.device_slot)));
            prop_assert_eq!(layout.position_of(loc.device_index, loc.device_slot), Some(s));
        }
        let wrapped = layout.locate(cap);
        if ring {
            let first = layout.locate(0).unwrap();
            let w = wrapped.unwrap();
            prop_assert_eq!((w.device_index, w.device_slot, w.lap), (first.device_index, first.device_slot, 1));
        } else {
            prop_assert_eq!(wrapped, None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3))]

    #[test]
    fn superblock_detects_every_bit_flip_and_truncation(sb in arb_superblock()) {
        let bytes = sb.encode();
        every_bit_flip_fails(&bytes, Superblock::decode);
        every_truncation_fails(&bytes, Superblock::decode);
    }

    #[test]
    fn slot_header_detects_every_bit_flip_and_truncation(h in arb_header()) {
        let bytes = h.encode();
        every_bit_flip_fails(&bytes, SlotHeader::decode);
        every_truncation_fails(&bytes, SlotHeader::decode);
    }

    #[test]
    fn index_detects_every_bit_flip_and_truncation(e in arb_entry(), sb in arb_superblock()) {
        every_bit_flip_fails(&e.encode(), IndexEntry::decode);
        every_truncation_fails(&e.encode(), IndexEntry::decode);
        let header = IndexHeader { superblock: Superblock { device_index: 0, ..sb }, scan_uuid: Uuid::NIL };
        let bytes = header.encode();
        every_bit_flip_fails(&bytes, IndexHeader::decode);
        every_truncation_fails(&bytes, IndexHeader::decode);
    }
}

#[test]
fn unknown_major_version_is_refused_by_name() {
    let mut h = SlotHeader {
        recording_uuid: Uuid::from_random_bytes([7; 16]),
        ..Default::default()
    }
    .encode();
    h[8] = 2;
    let crc = crc32(&h[..4092]);
    h[4092..].copy_from_slice(&crc.to_le_bytes());
    let err = SlotHeader::decode(&h).unwrap_err();
    assert!(
        matches!(err, FormatError::UnknownVersion { found_major: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!(
            "version 2.{FORMAT_VERSION_MINOR} is not supported"
        )),
        "{err}"
    );
}

#[test]
fn crc_mismatch_names_both_values() {
    let mut h = SlotHeader::default().encode();
    h[40] ^= 1;
    let msg = SlotHeader::decode(&h).unwrap_err().to_string();
    assert!(
        msg.starts_with("slot header: CRC mismatch (stored 0x"),
        "{msg}"
    );
    assert!(msg.contains("computed 0x"), "{msg}");
}

#[test]
fn payload_crc_checks_used_bytes() {
    let payload = vec![5u8; 8192];
    let h = SlotHeader {
        payload_bytes_used: 4096,
        payload_crc32: crc32(&payload[..4096]),
        ..Default::default()
    };
    h.check_payload(&payload).unwrap();
    let mut bad = payload.clone();
    bad[4095] ^= 0x80;
    assert!(matches!(
        h.check_payload(&bad),
        Err(FormatError::CrcMismatch { .. })
    ));
    bad[4095] ^= 0x80;
    bad[4096] ^= 0x80; // beyond bytes used: not covered
    h.check_payload(&bad).unwrap();
    h.check_payload(&payload[..4096]).unwrap();
    assert!(matches!(
        h.check_payload(&payload[..4095]),
        Err(FormatError::Truncated { .. })
    ));
}

fn sample_index(entries: u64) -> Vec<u8> {
    let sb = Superblock {
        version_minor: FORMAT_VERSION_MINOR,
        recording_uuid: Uuid::from_random_bytes([1; 16]),
        created_unix_ns: 1,
        payload_bytes: 4096,
        flags: 0,
        device_index: 0,
        channel_layout: CHANNEL_LAYOUT_ROUND_ROBIN,
        members: vec![Member {
            uuid: Uuid::from_random_bytes([2; 16]),
            size_bytes: 64 << 20,
            slot_count: 100,
        }],
        channels: vec![Channel {
            name: "ch0".into(),
            datatype: "ci16_le".into(),
            sample_rate_hz: 1e6,
        }],
        time_anchor: None,
    };
    let mut file = IndexHeader {
        superblock: sb,
        scan_uuid: Uuid::NIL,
    }
    .encode();
    for s in 0..entries {
        let e = IndexEntry {
            slot_seq: s,
            card_seq: s * 2,
            card_timestamp_ns: 1000 * s,
            ..Default::default()
        };
        file.extend_from_slice(&e.encode());
    }
    file
}

#[test]
fn index_torn_tail_is_ignored_at_every_cut() {
    let full = sample_index(20);
    for cut in INDEX_HEADER_BYTES..=full.len() {
        let view = IndexView::new(&full[..cut]).unwrap();
        let whole = (cut - INDEX_HEADER_BYTES) / INDEX_ENTRY_BYTES;
        assert_eq!(view.len(), whole, "cut at {cut}");
        assert_eq!(view.is_empty(), whole == 0, "cut at {cut}");
        assert_eq!(
            view.torn_tail_bytes,
            cut - INDEX_HEADER_BYTES - whole * INDEX_ENTRY_BYTES
        );
        for i in 0..view.len() {
            assert_eq!(view.get(i).unwrap().slot_seq, i as u64);
        }
    }
    // A garbage last entry (torn write of a whole entry) is dropped too.
    let mut torn = full.clone();
    let last = torn.len() - 10;
    torn[last] ^= 0xff;
    let view = IndexView::new(&torn).unwrap();
    assert_eq!(view.len(), 19);
    assert_eq!(view.torn_tail_bytes, INDEX_ENTRY_BYTES);
}

#[test]
fn index_seek_is_binary_search() {
    let file = sample_index(1000);
    let view = IndexView::new(&file).unwrap();
    assert_eq!(
        view.lower_bound(500 * 1000, |e| e.card_timestamp_ns)
            .unwrap(),
        500
    );
    assert_eq!(
        view.lower_bound(500 * 1000 + 1, |e| e.card_timestamp_ns)
            .unwrap(),
        501
    );
    assert_eq!(view.lower_bound(u64::MAX, |e| e.slot_seq).unwrap(), 1000);
}

#[test]
fn sigmf_datatypes() {
    assert_eq!(datatype_sample_bytes("ci16_le"), Some(4));
    assert_eq!(datatype_sample_bytes("rf32_be"), Some(4));
    assert_eq!(datatype_sample_bytes("ru8"), Some(1));
    assert_eq!(datatype_sample_bytes("cu8_le"), None);
    assert_eq!(datatype_sample_bytes("ci16"), None);
    assert_eq!(datatype_sample_bytes("x"), None);
    assert_eq!(datatype_sample_bytes("ci16_xe"), None);
    assert_eq!(datatype_sample_bytes("cf32_le"), Some(8));
    assert_eq!(datatype_sample_bytes("cf64_be"), Some(16));
    assert_eq!(datatype_sample_bytes("ci8"), Some(2));
}

/// Fixed numbers of the format (docs/FORMAT.md) and the layout's accessors.
#[test]
fn layout_geometry_and_its_inverse() {
    let layout = Layout::new(
        vec![5, 2, 3],
        formats::PayloadSize::new(4096).unwrap(),
        false,
    );
    assert_eq!(layout.slot_bytes(), 8192);
    assert!(
        !layout.ring()
            && Layout::new(vec![1], formats::PayloadSize::new(4096).unwrap(), true).ring()
    );
    assert_eq!(layout.device_count(), 3);
    assert_eq!(layout.capacity_slots(), 10);
    assert_eq!(layout.offset_of(0), 1 << 20);
    assert_eq!(layout.offset_of(3), (1 << 20) + 3 * 8192);
    for seq in 0..10 {
        let l = layout.locate(seq).unwrap();
        assert_eq!(layout.position_of(l.device_index, l.device_slot), Some(seq));
    }
    // Outside the geometry: a member that does not exist, a slot past a
    // member's end (member 1 has 2 slots, member 0 has a slot 2).
    assert_eq!(layout.position_of(3, 0), None);
    assert_eq!(layout.position_of(1, 2), None);
    assert_eq!(layout.position_of(2, 3), None);
}

#[test]
fn superblock_accessors() {
    let mut sb = Superblock::decode(&sample_index(0)[INDEX_HEADER_BYTES - 4096..]).unwrap();
    assert_eq!(sb.slot_bytes(), 8192);
    assert!(!sb.ring());
    sb.flags = SUPERBLOCK_FLAG_RING;
    assert!(sb.ring());
}

#[test]
fn pattern_mismatch_in_a_single_word_and_a_ragged_length() {
    let mut p = [0u8; 16];
    pattern::fill(&mut p, 1, 2);
    assert_eq!(pattern::first_mismatch(&p[..8], 1, 2), None);
    assert_eq!(pattern::first_mismatch(&[0u8; 8], 1, 2), Some(0));
    // A ragged length ends in a partial word: the pattern word's first
    // bytes (an interleaved buffer's whole frames, format 1.1).
    assert_eq!(pattern::first_mismatch(&p[..13], 1, 2), None);
    assert_eq!(pattern::first_mismatch(&p[..7], 1, 2), None);
    let mut q = p;
    q[12] ^= 1;
    assert_eq!(pattern::first_mismatch(&q[..13], 1, 2), Some(8));
    assert_eq!(pattern::first_mismatch(&[0u8; 7], 1, 2), Some(0));
}
