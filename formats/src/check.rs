//! The slot rules, written once: what makes a slot valid, what makes the
//! newest slots torn, and what a recording's headers imply about each
//! other and about its members. The recorder's read-back after a write
//! error, and dmaplay's scan, verify, reindex and inspect all decide with
//! these functions, so they cannot disagree.
//!
//! - [`check_header_at`]: a header page is *valid for recording R at
//!   location L* (docs/FORMAT.md): it decodes, names R, and the layout puts
//!   its slot number at L.
//! - [`check_slot`]: a whole slot (header page + payload) read where an
//!   index entry says it is: valid, agrees with the entry field by field,
//!   payload intact.
//! - [`TornTail`]: which of the newest slots may be torn and what is done
//!   with a slot that fails [`check_slot`] there.
//! - [`check_chain`]: what consecutive headers imply (the card-sequence and
//!   gap-count chain, the round-robin channel rule, card time never going
//!   back), for a reader without an index.
//! - [`check_member_head`]: a member's first MiB (superblock and zeroed
//!   reserved area) against its backup superblock.

use crate::{
    ChannelLayout, FormatError, IndexEntry, Layout, SlotHeader, Superblock, Uuid, DATA_START_BYTES,
    SLOT_HEADER_BYTES, SUPERBLOCK_BYTES,
};
use std::fmt;
use std::ops::Range;
use thiserror::Error;

/// What is wrong with a slot. The texts are what dmaplay prints.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SlotProblem {
    /// The header page does not decode (magic, CRC, version, fields).
    #[error("header: {0}")]
    BadHeader(FormatError),
    /// A slot of another (older) recording.
    #[error("holds a slot of another recording {recording_uuid} (slot {slot_seq})")]
    OtherRecording { recording_uuid: Uuid, slot_seq: u64 },
    /// A slot of this recording with another number than the one expected here.
    #[error("holds slot {slot_seq} instead (stale ring lap or misplaced)")]
    OtherSlot { slot_seq: u64 },
    /// A slot of this recording whose number the layout puts elsewhere.
    #[error("holds slot {slot_seq} of this recording, which belongs elsewhere")]
    Misplaced { slot_seq: u64 },
    /// The header and the index entry of the slot disagree.
    #[error("header differs from the catalog entry: {}", FieldDifference::list(.0))]
    DiffersFromEntry(Vec<FieldDifference>),
    /// The header claims more payload than a slot holds.
    #[error("payload_bytes_used {used_bytes} exceeds the payload size {payload_bytes}")]
    PayloadTooLong {
        used_bytes: u32,
        payload_bytes: usize,
    },
    /// The payload is not the one the header's CRC describes.
    #[error("payload CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    PayloadCrc { stored: u32, computed: u32 },
    /// The slot could not be read (an I/O error: it may well be intact).
    #[error("read failed: {0}")]
    ReadFailed(String),
    /// The device (a truncated copy) ends inside the slot: it is not there whole.
    #[error("read failed: end of device")]
    EndOfDevice,
}

impl SlotProblem {
    /// A problem of the payload (length or CRC), not of the header.
    pub fn is_payload(&self) -> bool {
        matches!(
            self,
            SlotProblem::PayloadTooLong { .. } | SlotProblem::PayloadCrc { .. }
        )
    }
}

/// One field on which a slot header and its index entry disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDifference {
    pub field: &'static str,
    pub header: u64,
    pub entry: u64,
}

impl FieldDifference {
    fn list(all: &[FieldDifference]) -> String {
        let texts: Vec<String> = all.iter().map(|d| d.to_string()).collect();
        texts.join(", ")
    }
}

impl fmt::Display for FieldDifference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} {} vs {}",
            self.field, self.header, self.entry
        )
    }
}

/// The fields on which `from_header` (an entry made from a slot header)
/// and `entry` differ, in entry order.
pub fn differing_fields(from_header: &IndexEntry, entry: &IndexEntry) -> Vec<FieldDifference> {
    let (h, e) = (from_header, entry);
    let pairs: [(&'static str, u64, u64); 11] = [
        ("slot_seq", h.slot_seq, e.slot_seq),
        ("card_seq", h.card_seq, e.card_seq),
        (
            "card_timestamp_ns",
            h.card_timestamp_ns,
            e.card_timestamp_ns,
        ),
        (
            "host_timestamp_ns",
            h.host_timestamp_ns,
            e.host_timestamp_ns,
        ),
        ("gap_count", h.gap_count, e.gap_count),
        (
            "device_offset_bytes",
            h.device_offset_bytes,
            e.device_offset_bytes,
        ),
        (
            "payload_bytes_used",
            h.payload_bytes_used.into(),
            e.payload_bytes_used.into(),
        ),
        (
            "payload_crc32",
            h.payload_crc32.into(),
            e.payload_crc32.into(),
        ),
        ("channel", h.channel.into(), e.channel.into()),
        ("device_index", h.device_index.into(), e.device_index.into()),
        ("flags", h.flags.into(), e.flags.into()),
    ];
    pairs
        .iter()
        .filter(|(_, header, entry)| header != entry)
        .map(|&(field, header, entry)| FieldDifference {
            field,
            header,
            entry,
        })
        .collect()
}

/// Decodes a header page and checks that it belongs to `recording_uuid`.
pub fn check_header(page: &[u8], recording_uuid: Uuid) -> Result<SlotHeader, SlotProblem> {
    let header = SlotHeader::decode(page).map_err(SlotProblem::BadHeader)?;
    if header.recording_uuid != recording_uuid {
        return Err(SlotProblem::OtherRecording {
            recording_uuid: header.recording_uuid,
            slot_seq: header.slot_seq,
        });
    }
    Ok(header)
}

/// A header page read at slot `device_slot` of member `device_index`:
/// valid for `recording_uuid` at that location (docs/FORMAT.md).
pub fn check_header_at(
    page: &[u8],
    recording_uuid: Uuid,
    layout: &Layout,
    device_index: usize,
    device_slot: u64,
) -> Result<SlotHeader, SlotProblem> {
    let header = check_header(page, recording_uuid)?;
    match layout.locate(header.slot_seq) {
        Some(at) if at.device_index == device_index && at.device_slot == device_slot => Ok(header),
        _ => Err(SlotProblem::Misplaced {
            slot_seq: header.slot_seq,
        }),
    }
}

/// Checks a payload against the length and CRC a header (or an index
/// entry) gives for it. `payload` is what was read after the header page;
/// `payload_bytes` is the recording's payload size.
pub fn check_payload(
    payload: &[u8],
    used_bytes: u32,
    payload_crc32: u32,
    payload_bytes: usize,
) -> Result<(), SlotProblem> {
    let used = used_bytes as usize;
    if used > payload_bytes || used > payload.len() {
        return Err(SlotProblem::PayloadTooLong {
            used_bytes,
            payload_bytes: payload_bytes.min(payload.len()),
        });
    }
    let computed = crate::crc32(&payload[..used]);
    if computed != payload_crc32 {
        return Err(SlotProblem::PayloadCrc {
            stored: payload_crc32,
            computed,
        });
    }
    Ok(())
}

/// The one definition of a good slot: `bytes` (header page, then at least
/// the used payload) read where `entry` says slot `entry.slot_seq` is. The
/// header decodes, belongs to `recording_uuid` and to that slot number,
/// agrees with the entry in every field, and the payload matches its CRC.
pub fn check_slot(
    bytes: &[u8],
    entry: &IndexEntry,
    recording_uuid: Uuid,
    payload_bytes: usize,
) -> Result<SlotHeader, SlotProblem> {
    let page_end = bytes.len().min(SLOT_HEADER_BYTES);
    let header = check_header(&bytes[..page_end], recording_uuid)?;
    if header.slot_seq != entry.slot_seq {
        return Err(SlotProblem::OtherSlot {
            slot_seq: header.slot_seq,
        });
    }
    let from_header = IndexEntry::from_header(&header, entry.device_offset_bytes);
    let differences = differing_fields(&from_header, entry);
    if !differences.is_empty() {
        return Err(SlotProblem::DiffersFromEntry(differences));
    }
    let payload = &bytes[page_end..];
    check_payload(
        payload,
        header.payload_bytes_used,
        header.payload_crc32,
        payload_bytes,
    )?;
    Ok(header)
}

/// The torn-tail rule, for the recorder's read-back after a write error and
/// `dmaplay reindex` after a crash.
///
/// Only a slot whose write may have been in flight when writing stopped can
/// be torn: one of the newest `window_slots` slots (the reader says how many
/// could have been in flight: the recorder knows its ring, reindex takes
/// [`TornTail::DEFAULT_WINDOW_SLOTS`] or the user's number). A slot there that
/// fails [`check_slot`] is torn and is left out of the index; every other
/// slot stays, the ones after a torn slot included (each slot is one write
/// with its own CRC, so a torn neighbour says nothing about it). A slot that
/// cannot be read (an I/O error) stays indexed: it may well be intact, and
/// verify says; one cut off by the end of the device is not there whole.
/// A slot older than the window that fails is damage, never dropped here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    pub window_slots: u64,
}

impl TornTail {
    /// Newest slots reindex reads when not told otherwise: more than the
    /// recorder's writes in flight with its default --queue-depth (8).
    pub const DEFAULT_WINDOW_SLOTS: u64 = 64;

    /// Positions among `count` slots (in slot order) that may be torn.
    pub fn window(&self, count: usize) -> Range<usize> {
        let window = usize::try_from(self.window_slots).unwrap_or(usize::MAX);
        count.saturating_sub(window)..count
    }

    /// Whether a slot of the window stays in the index after its check.
    pub fn keeps(&self, check: &Result<SlotHeader, SlotProblem>) -> bool {
        matches!(check, Ok(_) | Err(SlotProblem::ReadFailed(_)))
    }
}

/// What the headers of a recording imply about each other, broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChainProblem {
    /// Consecutive slots: `card_seq` must be the previous one's + 1 + this
    /// slot's `gap_count`; across missing slot numbers it must still grow.
    #[error("card_seq {card_seq} with gap_count {gap_count} does not follow card_seq {previous_card_seq} of slot {previous_slot_seq} (expected {expected})")]
    CardSeq {
        previous_slot_seq: u64,
        previous_card_seq: u64,
        card_seq: u64,
        gap_count: u64,
        expected: String,
    },
    /// Round-robin layout: buffer `card_seq` is channel `card_seq mod
    /// channels`; interleaved: every slot header says channel 0.
    #[error("channel {channel}, but card_seq {card_seq} is channel {expected} of {channel_count} ({layout})")]
    Channel {
        card_seq: u64,
        channel: u8,
        expected: u64,
        channel_count: u16,
        layout: &'static str,
    },
    /// Interleaved layout: the payload must hold whole frames.
    #[error("{0}")]
    PartialFrame(String),
    /// The card clock went back.
    #[error("card timestamp {card_timestamp_ns} ns is before slot {previous_slot_seq}'s {previous_card_timestamp_ns} ns")]
    CardTimeBackwards {
        previous_slot_seq: u64,
        previous_card_timestamp_ns: u64,
        card_timestamp_ns: u64,
    },
}

/// Checks `entry` (a slot header as an entry) against the slot before it in
/// slot order (`previous`, if any) and the round-robin channel rule over
/// `channel_count` channels. Slot order is increasing `slot_seq`.
pub fn check_chain(
    previous: Option<&IndexEntry>,
    entry: &IndexEntry,
    channel_count: u16,
) -> Vec<ChainProblem> {
    let layout = ChannelLayout::RoundRobin {
        channels: channel_count.max(1),
    };
    check_chain_in(previous, entry, &layout)
}

/// [`check_chain`] for any channel layout: also the interleaved layout's
/// channel field (0) and whole frames in the payload.
pub fn check_chain_in(
    previous: Option<&IndexEntry>,
    entry: &IndexEntry,
    layout: &ChannelLayout,
) -> Vec<ChainProblem> {
    let mut problems = Vec::new();
    let expected_channel = layout.slot_channel(entry.card_seq);
    if u16::from(entry.channel) != expected_channel {
        problems.push(ChainProblem::Channel {
            card_seq: entry.card_seq,
            channel: entry.channel,
            expected: expected_channel.into(),
            channel_count: layout.channels(),
            layout: layout.describe(),
        });
    }
    if let Some(why) = layout.used_bytes_problem(entry.payload_bytes_used) {
        problems.push(ChainProblem::PartialFrame(why));
    }
    let Some(prev) = previous else {
        return problems;
    };
    assert!(prev.slot_seq < entry.slot_seq, "slots in increasing order");
    let follows = prev.card_seq.checked_add(1 + entry.gap_count);
    let card_seq_ok = if prev.slot_seq + 1 == entry.slot_seq {
        follows == Some(entry.card_seq)
    } else {
        entry.card_seq > prev.card_seq
    };
    if !card_seq_ok {
        problems.push(ChainProblem::CardSeq {
            previous_slot_seq: prev.slot_seq,
            previous_card_seq: prev.card_seq,
            card_seq: entry.card_seq,
            gap_count: entry.gap_count,
            expected: if prev.slot_seq + 1 == entry.slot_seq {
                follows.map_or("overflow".into(), |c| c.to_string())
            } else {
                format!("more than {} (slots between are missing)", prev.card_seq)
            },
        });
    }
    if entry.card_timestamp_ns < prev.card_timestamp_ns {
        problems.push(ChainProblem::CardTimeBackwards {
            previous_slot_seq: prev.slot_seq,
            previous_card_timestamp_ns: prev.card_timestamp_ns,
            card_timestamp_ns: entry.card_timestamp_ns,
        });
    }
    problems
}

/// What is wrong with a member's superblocks or reserved area.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MemberProblem {
    #[error("primary superblock: {0}")]
    Primary(FormatError),
    #[error("backup superblock: {0}")]
    Backup(FormatError),
    #[error("backup superblock differs from the primary (first at byte {first_byte})")]
    BackupDiffers { first_byte: usize },
    #[error("reserved area {SUPERBLOCK_BYTES}..{DATA_START_BYTES} is not zero (byte {offset_bytes} of the member)")]
    ReservedNotZero { offset_bytes: u64 },
}

/// Checks a member's first `DATA_START_BYTES` (`head`: primary superblock,
/// then the reserved area, which must be zero) and its backup superblock,
/// which must be byte-identical to the primary (docs/FORMAT.md).
pub fn check_member_head(head: &[u8], backup: &[u8]) -> Vec<MemberProblem> {
    assert!(head.len() >= SUPERBLOCK_BYTES && backup.len() >= SUPERBLOCK_BYTES);
    let mut problems = Vec::new();
    let primary = &head[..SUPERBLOCK_BYTES];
    let backup = &backup[..SUPERBLOCK_BYTES];
    let (primary_ok, has_table) = match Superblock::decode(primary) {
        Ok(sb) => (true, sb.has_scan_table()),
        Err(e) => {
            problems.push(MemberProblem::Primary(e));
            (false, false)
        }
    };
    match Superblock::decode(backup) {
        Err(e) => problems.push(MemberProblem::Backup(e)),
        Ok(_) if primary_ok => {
            if let Some(first_byte) = primary.iter().zip(backup).position(|(a, b)| a != b) {
                problems.push(MemberProblem::BackupDiffers { first_byte });
            }
        }
        Ok(_) => {}
    }
    // A set with a scan table keeps its two copies here (checked by the
    // table's own decoding); the rest of the area is zero.
    let reserved_start = if has_table {
        crate::scan::copy_offset_bytes(1) as usize + crate::scan::SCAN_TABLE_COPY_BYTES
    } else {
        SUPERBLOCK_BYTES
    };
    let reserved_end = head.len().min(DATA_START_BYTES as usize);
    let reserved = &head[reserved_start.min(reserved_end)..reserved_end];
    if let Some(at) = reserved.iter().position(|&b| b != 0) {
        problems.push(MemberProblem::ReservedNotZero {
            offset_bytes: (reserved_start + at) as u64,
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Channel, Member, CHANNEL_LAYOUT_ROUND_ROBIN, SLOT_FLAG_GAP};

    const PAYLOAD_BYTES: usize = 8192;
    const OFFSET_BYTES: u64 = DATA_START_BYTES;

    fn recording() -> Uuid {
        Uuid::from_random_bytes([7; 16])
    }

    fn header(slot_seq: u64, payload: &[u8]) -> SlotHeader {
        SlotHeader {
            recording_uuid: recording(),
            slot_seq,
            card_seq: slot_seq + 3,
            card_timestamp_ns: 1000 + slot_seq,
            host_timestamp_ns: 2000 + slot_seq,
            gap_count: 3,
            payload_bytes_used: payload.len() as u32,
            payload_crc32: crate::crc32(payload),
            channel: 1,
            flags: SLOT_FLAG_GAP,
            device_index: 0,
        }
    }

    /// A slot (header page + payload) of `header` and its index entry.
    fn slot_of(header: &SlotHeader, payload: &[u8]) -> (Vec<u8>, IndexEntry) {
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(payload);
        let slot_bytes = SLOT_HEADER_BYTES + PAYLOAD_BYTES;
        bytes.resize(bytes.len().max(slot_bytes), 0);
        (bytes, IndexEntry::from_header(header, OFFSET_BYTES))
    }

    fn good() -> (Vec<u8>, IndexEntry) {
        let payload: Vec<u8> = (0..PAYLOAD_BYTES).map(|i| (i * 7) as u8).collect();
        slot_of(&header(5, &payload), &payload)
    }

    fn check(bytes: &[u8], entry: &IndexEntry) -> Result<SlotHeader, SlotProblem> {
        check_slot(bytes, entry, recording(), PAYLOAD_BYTES)
    }

    #[test]
    fn a_good_slot_checks() {
        let (bytes, entry) = good();
        assert_eq!(check(&bytes, &entry).unwrap().slot_seq, 5);
    }

    #[test]
    fn a_damaged_header_is_a_bad_header() {
        let (mut bytes, entry) = good();
        bytes[100] ^= 1;
        let problem = check(&bytes, &entry).unwrap_err();
        assert!(
            matches!(
                problem,
                SlotProblem::BadHeader(FormatError::CrcMismatch { .. })
            ),
            "{problem}"
        );
        assert!(problem
            .to_string()
            .starts_with("header: slot header: CRC mismatch"));
    }

    #[test]
    fn a_slot_of_another_recording_is_named() {
        let payload = vec![1u8; 4096];
        let mut other = header(5, &payload);
        other.recording_uuid = Uuid::from_random_bytes([9; 16]);
        let (bytes, entry) = slot_of(&other, &payload);
        assert_eq!(
            check(&bytes, &entry).unwrap_err(),
            SlotProblem::OtherRecording {
                recording_uuid: other.recording_uuid,
                slot_seq: 5
            }
        );
    }

    #[test]
    fn another_slot_number_is_named() {
        let (bytes, mut entry) = good();
        entry.slot_seq = 6;
        assert_eq!(
            check(&bytes, &entry).unwrap_err(),
            SlotProblem::OtherSlot { slot_seq: 5 }
        );
    }

    #[test]
    fn a_header_that_differs_from_its_entry_names_the_fields() {
        let (bytes, mut entry) = good();
        entry.card_seq += 1;
        entry.channel = 3;
        let problem = check(&bytes, &entry).unwrap_err();
        assert_eq!(
            problem.to_string(),
            "header differs from the catalog entry: card_seq 8 vs 9, channel 1 vs 3"
        );
    }

    #[test]
    fn a_payload_longer_than_the_slot_is_named() {
        let payload = vec![1u8; PAYLOAD_BYTES * 2];
        let (bytes, entry) = slot_of(&header(5, &payload), &payload);
        assert_eq!(
            check(&bytes, &entry).unwrap_err(),
            SlotProblem::PayloadTooLong {
                used_bytes: (PAYLOAD_BYTES * 2) as u32,
                payload_bytes: PAYLOAD_BYTES
            }
        );
        // A short read of the payload is named the same way.
        let (bytes, entry) = good();
        let short = &bytes[..SLOT_HEADER_BYTES + 100];
        assert!(matches!(
            check(short, &entry).unwrap_err(),
            SlotProblem::PayloadTooLong {
                payload_bytes: 100,
                ..
            }
        ));
    }

    #[test]
    fn a_payload_crc_mismatch_is_named() {
        let (mut bytes, entry) = good();
        bytes[SLOT_HEADER_BYTES + PAYLOAD_BYTES - 1] ^= 0x80;
        let problem = check(&bytes, &entry).unwrap_err();
        assert!(
            matches!(problem, SlotProblem::PayloadCrc { .. }),
            "{problem}"
        );
        assert!(problem.is_payload());
        // Bytes past payload_bytes_used are not covered by the CRC.
        let payload = vec![1u8; 4096];
        let (mut bytes, entry) = slot_of(&header(5, &payload), &payload);
        bytes[SLOT_HEADER_BYTES + 5000] = 1;
        assert!(check(&bytes, &entry).is_ok());
    }

    #[test]
    fn a_header_at_a_location_the_layout_does_not_give_is_misplaced() {
        let layout = Layout::new(vec![4, 4], crate::PayloadSize::new(4096).unwrap(), false);
        let page = header(5, &[]).encode();
        let at = layout.locate(5).unwrap();
        let here = check_header_at(&page, recording(), &layout, at.device_index, at.device_slot);
        assert_eq!(here.unwrap().slot_seq, 5);
        let elsewhere = check_header_at(&page, recording(), &layout, at.device_index, 0);
        assert_eq!(elsewhere, Err(SlotProblem::Misplaced { slot_seq: 5 }));
        let foreign = check_header_at(&page, Uuid::NIL, &layout, at.device_index, at.device_slot);
        assert!(matches!(foreign, Err(SlotProblem::OtherRecording { .. })));
    }

    #[test]
    fn the_torn_tail_is_the_newest_window_and_drops_only_failed_checks() {
        let rule = TornTail { window_slots: 4 };
        assert_eq!(rule.window(10), 6..10);
        assert_eq!(rule.window(3), 0..3);
        assert_eq!(TornTail { window_slots: 0 }.window(3), 3..3);
        let (bytes, entry) = good();
        assert!(rule.keeps(&check(&bytes, &entry)));
        assert!(rule.keeps(&Err(SlotProblem::ReadFailed("EIO".into()))));
        assert!(!rule.keeps(&Err(SlotProblem::PayloadCrc {
            stored: 1,
            computed: 2
        })));
        assert!(!rule.keeps(&Err(SlotProblem::OtherSlot { slot_seq: 1 })));
        assert!(!rule.keeps(&Err(SlotProblem::EndOfDevice)));
    }

    fn entry(slot_seq: u64, card_seq: u64, gap_count: u64, channels: u16) -> IndexEntry {
        IndexEntry {
            slot_seq,
            card_seq,
            gap_count,
            card_timestamp_ns: 100 * card_seq,
            channel: (card_seq % u64::from(channels)) as u8,
            ..IndexEntry::default()
        }
    }

    #[test]
    fn a_consistent_chain_with_gaps_has_no_problem() {
        let a = entry(10, 20, 0, 4);
        let b = entry(11, 23, 2, 4);
        let c = entry(14, 30, 1, 4); // slots 12, 13 missing: card_seq only grows
        assert_eq!(check_chain(None, &a, 4), vec![]);
        assert_eq!(check_chain(Some(&a), &b, 4), vec![]);
        assert_eq!(check_chain(Some(&b), &c, 4), vec![]);
    }

    #[test]
    fn a_broken_card_seq_chain_is_named() {
        let a = entry(10, 20, 0, 4);
        let b = entry(11, 23, 1, 4); // 20 + 1 + 1 = 22, not 23
        let problems = check_chain(Some(&a), &b, 4);
        assert!(
            matches!(&problems[..], [ChainProblem::CardSeq { expected, .. }] if expected == "22"),
            "{problems:?}"
        );
        let c = entry(15, 20, 0, 4); // across missing slots, card_seq must grow
        assert!(matches!(
            &check_chain(Some(&a), &c, 4)[..],
            [ChainProblem::CardSeq { .. }]
        ));
    }

    #[test]
    fn a_channel_against_the_round_robin_rule_is_named() {
        let mut e = entry(0, 6, 0, 4);
        e.channel = 1;
        assert_eq!(
            check_chain(None, &e, 4),
            vec![ChainProblem::Channel {
                card_seq: 6,
                channel: 1,
                expected: 2,
                channel_count: 4,
                layout: "round-robin",
            }]
        );
    }

    #[test]
    fn a_card_clock_going_back_is_named() {
        let a = entry(10, 20, 0, 4);
        let mut b = entry(11, 21, 0, 4);
        b.card_timestamp_ns = a.card_timestamp_ns - 1;
        assert!(matches!(
            &check_chain(Some(&a), &b, 4)[..],
            [ChainProblem::CardTimeBackwards { .. }]
        ));
        b.card_timestamp_ns = a.card_timestamp_ns; // equal is allowed
        assert_eq!(check_chain(Some(&a), &b, 4), vec![]);
    }

    fn superblock() -> Superblock {
        Superblock {
            version_minor: 0,
            recording_uuid: recording(),
            created_unix_ns: 1,
            payload_bytes: 4096,
            flags: 0,
            device_index: 0,
            channel_layout: CHANNEL_LAYOUT_ROUND_ROBIN,
            members: vec![Member {
                uuid: Uuid::from_random_bytes([3; 16]),
                size_bytes: 4 << 20,
                slot_count: 10,
            }],
            channels: vec![Channel {
                name: "ch0".into(),
                datatype: "ci16_le".into(),
                sample_rate_hz: 0.0,
            }],
            time_anchor: None,
        }
    }

    fn head_and_backup() -> (Vec<u8>, Vec<u8>) {
        let sb = superblock().encode();
        let mut head = vec![0u8; DATA_START_BYTES as usize];
        head[..SUPERBLOCK_BYTES].copy_from_slice(&sb);
        (head, sb.to_vec())
    }

    #[test]
    fn a_good_member_head_has_no_problem() {
        let (head, backup) = head_and_backup();
        assert_eq!(check_member_head(&head, &backup), vec![]);
    }

    #[test]
    fn damaged_superblocks_are_named() {
        let (mut head, mut backup) = head_and_backup();
        head[20] ^= 1;
        assert!(matches!(
            &check_member_head(&head, &backup)[..],
            [MemberProblem::Primary(_)]
        ));
        head[20] ^= 1;
        backup[20] ^= 1;
        assert!(matches!(
            &check_member_head(&head, &backup)[..],
            [MemberProblem::Backup(_)]
        ));
    }

    #[test]
    fn a_backup_that_differs_from_the_primary_is_named() {
        let (head, _) = head_and_backup();
        let mut other = superblock();
        other.created_unix_ns = 2; // valid, but not the same recording's copy
        let backup = other.encode();
        assert_eq!(
            check_member_head(&head, &backup),
            vec![MemberProblem::BackupDiffers { first_byte: 48 }]
        );
    }

    #[test]
    fn a_non_zero_reserved_area_is_named() {
        let (mut head, backup) = head_and_backup();
        let last = DATA_START_BYTES as usize - 1;
        head[last] = 1;
        assert_eq!(
            check_member_head(&head, &backup),
            vec![MemberProblem::ReservedNotZero {
                offset_bytes: last as u64
            }]
        );
    }
}
