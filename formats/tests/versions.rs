//! Minor versions (docs/FORMAT.md): a reader of minor 1 refuses a structure
//! of minor 0 or 1 whose reserved bytes or unknown flag bits are set (they
//! would be fields it does not know), and accepts a newer minor that uses them,
//! ignoring what it does not know. The bytes are edited and the CRC resealed
//! here, so only the rule under test can refuse them. Also the index's
//! fixed sizes and entry flags.

use formats::index::INDEX_PAGE_BYTES;
use formats::time::{CardClock, TimeAnchor};
use formats::{
    Channel, FormatError, IndexEntry, IndexHeader, Member, SlotHeader, Superblock, Uuid,
    CHANNEL_LAYOUT_ROUND_ROBIN, DATA_START_BYTES, FORMAT_VERSION_MINOR, SLOT_FLAG_GAP,
    SLOT_HEADER_BYTES, SUPERBLOCK_BYTES,
};

/// The minor version this build writes, and one it does not know.
const KNOWN: u16 = FORMAT_VERSION_MINOR;
const NEWER: u16 = FORMAT_VERSION_MINOR + 1;

/// Byte offset of the minor version in every structure's envelope.
const MINOR_AT: usize = 10;

fn superblock() -> Superblock {
    let member = |n: u8, slot_count: u64| Member {
        uuid: Uuid([n; 16]),
        size_bytes: DATA_START_BYTES + slot_count * 8192 + (1 << 20),
        slot_count,
    };
    Superblock {
        version_minor: KNOWN,
        recording_uuid: Uuid([7; 16]),
        created_unix_ns: 1_700_000_000_000_000_000,
        payload_bytes: 4096,
        flags: 0,
        device_index: 0,
        channel_layout: CHANNEL_LAYOUT_ROUND_ROBIN,
        members: vec![member(1, 100), member(2, 50)],
        channels: vec![Channel {
            name: "ch0".into(),
            datatype: "ci16_le".into(),
            sample_rate_hz: 1e6,
        }],
        time_anchor: Some(TimeAnchor {
            clock: CardClock::SampleCounter,
            card_ns: 0,
            realtime_ns: 1_700_000_000_000_000_001,
        }),
    }
}

fn slot_header() -> SlotHeader {
    SlotHeader {
        recording_uuid: Uuid([7; 16]),
        slot_seq: 5,
        card_seq: 9,
        card_timestamp_ns: 11,
        host_timestamp_ns: 13,
        gap_count: 0,
        payload_bytes_used: 4096,
        payload_crc32: 0x1234_5678,
        channel: 0,
        flags: 0,
        device_index: 1,
    }
}

/// Sets byte `at` and the minor version, and recomputes the CRC-32 of
/// `0..crc_at` stored at `crc_at` (little-endian).
fn edit(bytes: &[u8], at: usize, value: u8, minor: u16, crc_at: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[at] = value;
    bytes[MINOR_AT..MINOR_AT + 2].copy_from_slice(&minor.to_le_bytes());
    let crc = formats::crc32(&bytes[..crc_at]);
    bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn refused_as(result: Result<impl std::fmt::Debug, FormatError>, field: &str) {
    let e = result.expect_err("must be refused");
    assert!(
        e.to_string().contains(field),
        "refused for another reason: {e}"
    );
}

#[test]
fn superblock_reserved_bytes_refused_in_known_minors_ignored_in_a_newer_one() {
    let sb = superblock();
    let b = sb.encode();
    let crc_at = SUPERBLOCK_BYTES - 4;
    assert_eq!(Superblock::decode(&b).unwrap(), sb);
    // Reserved: between the fixed fields and the members, after the
    // channels up to the time anchor (4032), and after its clock code.
    for at in [92, 127, 1920, 4031, 4050, crc_at - 1] {
        for minor in [0, KNOWN] {
            refused_as(
                Superblock::decode(&edit(&b, at, 0x5a, minor, crc_at)),
                "reserved",
            );
        }
        let newer = Superblock::decode(&edit(&b, at, 0x5a, NEWER, crc_at)).unwrap();
        assert_eq!(newer.version_minor, NEWER);
        assert_eq!(
            Superblock {
                version_minor: KNOWN,
                ..newer
            },
            sb
        );
    }
}

/// 1.0 recordings still read: no anchor stored (its bytes are reserved
/// there), so readers derive one from the oldest slot as 1.0 readers did.
#[test]
fn a_1_0_superblock_reads_without_anchor_and_refuses_anchor_bytes() {
    let sb = Superblock {
        time_anchor: None,
        ..superblock()
    };
    let crc_at = SUPERBLOCK_BYTES - 4;
    let v10 = edit(&sb.encode(), 4031, 0, 0, crc_at);
    let read = Superblock::decode(&v10).unwrap();
    assert_eq!(read.version_minor, 0);
    assert_eq!(read.time_anchor, None);
    let derived = read
        .anchor_or(Some((123, 1_700_000_000_000_000_456)))
        .unwrap();
    assert_eq!(derived.realtime_of(1_123), 1_700_000_000_000_001_456);
    assert_eq!(read.anchor_or(None), None);
    // A 1.0 superblock with the anchor's bytes set: unknown fields in 1.0.
    let with_anchor = edit(&superblock().encode(), 4031, 0, 0, crc_at);
    refused_as(Superblock::decode(&with_anchor), "reserved");
    // A stored anchor wins over a derived one.
    assert_eq!(
        superblock().anchor_or(Some((1, 2))),
        superblock().time_anchor
    );
}

#[test]
fn anchor_round_trips_and_bad_clock_codes_are_refused_by_name() {
    let sb = superblock();
    let b = sb.encode();
    let crc_at = SUPERBLOCK_BYTES - 4;
    let monotonic = Superblock {
        time_anchor: Some(TimeAnchor {
            clock: CardClock::HostMonotonicEndOfFill,
            card_ns: u64::MAX,
            realtime_ns: 5,
        }),
        ..sb.clone()
    };
    assert_eq!(Superblock::decode(&monotonic.encode()).unwrap(), monotonic);
    // The clock code (u16 at 4048): 3 is unknown; 0 means "no anchor" and
    // then the times must be zero.
    refused_as(
        Superblock::decode(&edit(&b, 4048, 3, KNOWN, crc_at)),
        "clock code 3",
    );
    refused_as(
        Superblock::decode(&edit(&b, 4048, 0, KNOWN, crc_at)),
        "clock code 0",
    );
    let no_anchor = Superblock {
        time_anchor: None,
        ..sb.clone()
    };
    assert_eq!(Superblock::decode(&no_anchor.encode()).unwrap(), no_anchor);
    // A newer minor may have more clocks: no anchor then, not an error.
    let newer = Superblock::decode(&edit(&b, 4048, 3, NEWER, crc_at)).unwrap();
    assert_eq!(newer.time_anchor, None);
}

#[test]
fn slot_header_reserved_bytes_and_unknown_flags_refused_in_minor_0_only() {
    let h = slot_header();
    let b = h.encode();
    let crc_at = SLOT_HEADER_BYTES - 4;
    assert_eq!(SlotHeader::decode(&b).unwrap(), h);
    for at in [86, 87, 2000, crc_at - 1] {
        for minor in [0, KNOWN] {
            refused_as(
                SlotHeader::decode(&edit(&b, at, 1, minor, crc_at)),
                "reserved",
            );
        }
        assert_eq!(
            SlotHeader::decode(&edit(&b, at, 1, NEWER, crc_at)).unwrap(),
            h
        );
    }
    // flags (u16 at 82): bit 1 is unknown in minor 0.
    let unknown_flag = (SLOT_FLAG_GAP << 1) as u8;
    refused_as(
        SlotHeader::decode(&edit(&b, 82, unknown_flag, KNOWN, crc_at)),
        "unknown bits",
    );
    let newer = SlotHeader::decode(&edit(&b, 82, unknown_flag, NEWER, crc_at)).unwrap();
    assert_eq!(newer.flags, SLOT_FLAG_GAP << 1);
}

#[test]
fn index_header_reserved_bytes_refused_in_known_minors_ignored_in_a_newer_one() {
    let ih = IndexHeader {
        superblock: superblock(),
        scan_uuid: Uuid::NIL,
    };
    let b = ih.encode();
    let crc_at = INDEX_PAGE_BYTES - 4;
    assert_eq!(IndexHeader::decode(&b).unwrap(), ih);
    for at in [36, 1000, crc_at - 1] {
        for minor in [0, 1, KNOWN] {
            refused_as(
                IndexHeader::decode(&edit(&b, at, 0x80, minor, crc_at)),
                "reserved",
            );
        }
        assert_eq!(
            IndexHeader::decode(&edit(&b, at, 0x80, NEWER, crc_at)).unwrap(),
            ih
        );
    }
    // Bytes 20..36 are the scan UUID from minor 2 on, reserved before.
    for minor in [0, 1] {
        refused_as(
            IndexHeader::decode(&edit(&b, 20, 0x80, minor, crc_at)),
            "reserved",
        );
    }
    let scan = IndexHeader::decode(&edit(&b, 20, 0x80, 2, crc_at)).unwrap();
    assert_eq!(scan.scan_uuid.0[0], 0x80);
    assert_eq!(scan.slots_uuid(), scan.scan_uuid);
    assert_eq!(ih.slots_uuid(), ih.superblock.recording_uuid);
}

#[test]
fn index_header_sizes_must_be_64_and_8192_each() {
    let b = IndexHeader {
        superblock: superblock(),
        scan_uuid: Uuid::NIL,
    }
    .encode();
    let crc_at = INDEX_PAGE_BYTES - 4;
    // entry_bytes (u32 at 12) and header_bytes (u32 at 16), each alone wrong.
    for at in [12, 16] {
        let wrong = edit(&b, at, b[at] + 1, KNOWN, crc_at);
        refused_as(IndexHeader::decode(&wrong), "sizes");
    }
}

#[test]
fn index_entry_flags_must_be_the_gap_flag_alone_and_agree_with_gap_count() {
    let entry = |gap_count: u64, flags: u16| IndexEntry {
        slot_seq: 3,
        card_seq: 4,
        card_timestamp_ns: 5,
        host_timestamp_ns: 6,
        gap_count,
        device_offset_bytes: DATA_START_BYTES,
        payload_bytes_used: 4096,
        payload_crc32: 7,
        channel: 0,
        device_index: 0,
        flags,
    };
    for ok in [entry(0, 0), entry(2, SLOT_FLAG_GAP)] {
        assert_eq!(IndexEntry::decode(&ok.encode()).unwrap(), ok);
    }
    // Gap flag without gaps, gaps without the flag, and an unknown bit
    // beside a consistent gap flag: entries have no minor version, so an
    // unknown bit is always refused.
    let unknown = SLOT_FLAG_GAP << 1;
    for bad in [
        entry(0, SLOT_FLAG_GAP),
        entry(2, 0),
        entry(0, unknown),
        entry(2, SLOT_FLAG_GAP | unknown),
    ] {
        refused_as(IndexEntry::decode(&bad.encode()), "flags");
    }
}

#[test]
fn superblock_geometry_known_answers() {
    // The backup copy sits in the last whole 4 KiB block; slots fill what
    // lies between the 1 MiB data start and it.
    let size_bytes = (64 << 20) + 100;
    assert_eq!(Superblock::backup_offset(size_bytes), (64 << 20) - 4096);
    assert_eq!(Superblock::backup_offset(8191), 0);
    assert_eq!(Superblock::slots_for_device(size_bytes, 65536), 948);
    assert_eq!(Superblock::slots_for_device(1 << 20, 4096), 0);
}

/// Each rule of `Superblock::validate` alone, at its edges: the rule's field
/// must be the one named.
#[test]
fn superblock_validate_refuses_each_rule_alone() {
    let ok = superblock();
    ok.validate().unwrap();
    // The ring flag: valid in a set without a scan table (1.0, 1.1), refused
    // in one with (1.2: ring mode belongs to a scan).
    let ring = Superblock {
        flags: formats::SUPERBLOCK_FLAG_RING,
        version_minor: 1,
        ..ok.clone()
    };
    ring.validate().unwrap();
    let tabled_ring = Superblock {
        version_minor: 2,
        ..ring.clone()
    };
    let e = tabled_ring.validate().unwrap_err().to_string();
    assert!(e.contains("ring mode belongs to a scan"), "{e}");
    let mut cases: Vec<(&str, Superblock)> = Vec::new();
    let mut case = |field: &'static str, edit: &dyn Fn(&mut Superblock)| {
        let mut sb = ok.clone();
        edit(&mut sb);
        cases.push((field, sb));
    };
    case("payload_bytes", &|sb| sb.payload_bytes = 4096 + 4096 / 2);
    case("payload_bytes", &|sb| sb.payload_bytes = 2048);
    case("payload_bytes", &|sb| sb.payload_bytes = 128 << 20);
    case("flags", &|sb| sb.flags = 2);
    case("recording_uuid", &|sb| sb.recording_uuid = Uuid::NIL);
    case("device_count", &|sb| sb.members.clear());
    case("device_count", &|sb| {
        let m = sb.members[0];
        sb.members.resize(9, m);
    });
    case("device_index", &|sb| sb.device_index = 2);
    case("members", &|sb| sb.members[1].slot_count = 0);
    case("members", &|sb| sb.members[1].slot_count = 1000);
    case("members", &|sb| sb.members[1].uuid = Uuid::NIL);
    case("channel_layout", &|sb| sb.channel_layout = 3);
    case("channel_layout", &|sb| sb.channel_layout = 0);
    case("channel datatype", &|sb| {
        sb.channel_layout = formats::CHANNEL_LAYOUT_INTERLEAVED;
        sb.channels.push(Channel {
            name: "ch1".into(),
            datatype: "ri16_le".into(),
            sample_rate_hz: 1e6,
        });
    });
    case("channel_count", &|sb| sb.channels.clear());
    case("channel_count", &|sb| {
        let c = sb.channels[0].clone();
        sb.channels.resize(33, c);
    });
    case("channel name", &|sb| sb.channels[0].name = String::new());
    case("channel name", &|sb| sb.channels[0].name = "n".repeat(33));
    case("channel name", &|sb| sb.channels[0].name = "a\0b".into());
    case("channel datatype", &|sb| {
        sb.channels[0].datatype = "xx".into()
    });
    for rate in [f64::NAN, f64::INFINITY, -1.0] {
        case("channel sample_rate_hz", &|sb| {
            sb.channels[0].sample_rate_hz = rate
        });
    }
    for (field, sb) in cases {
        let e = sb.validate().expect_err(field).to_string();
        assert!(e.contains(field), "{field}: refused as {e}");
    }
    // The largest valid values of each bounded rule still pass.
    let mut edge = ok.clone();
    edge.members[1].slot_count = Superblock::slots_for_device(edge.members[1].size_bytes, 4096);
    edge.channels[0].name = "n".repeat(32);
    edge.channels[0].sample_rate_hz = 0.0;
    edge.validate().unwrap();
}

#[test]
fn superblock_decode_refuses_device_and_channel_counts_out_of_range() {
    let b = superblock().encode();
    let crc_at = SUPERBLOCK_BYTES - 4;
    // device_count (u16 at 68), channel_count (u16 at 88): 0 and max + 1.
    for (at, value, field) in [
        (68, 0u8, "device_count"),
        (68, 9, "device_count"),
        (88, 0, "channel_count"),
        (88, 33, "channel_count"),
    ] {
        refused_as(
            Superblock::decode(&edit(&b, at, value, KNOWN, crc_at)),
            field,
        );
    }
}
