//! The scan table (format 1.2): the scans a stripe set holds, one after
//! another, in two alternating copies in every member's reserved area. Each
//! copy carries a generation number and CRCs, so an update cut short by a
//! crash leaves the other copy, one generation older, valid. The byte layout
//! and the update order are in docs/FORMAT.md ("Scans").

use crate::bytes::*;
use crate::time::{CardClock, TimeAnchor};
use crate::{crc32, FormatError, Uuid, FORMAT_VERSION_MAJOR, FORMAT_VERSION_MINOR};

/// Minor version of the superblock from which a set carries a scan table.
pub const SCAN_TABLE_MINOR: u16 = 2;
pub const SCAN_TABLE_HEADER_BYTES: usize = 4096;
pub const SCAN_ENTRY_BYTES: usize = 256;
pub const MAX_SCANS: usize = 1008;
/// Bytes of one copy: header page and room for every entry (256 KiB).
pub const SCAN_TABLE_COPY_BYTES: usize = SCAN_TABLE_HEADER_BYTES + MAX_SCANS * SCAN_ENTRY_BYTES;
/// Member byte offset of copy 0; copy 1 follows it.
pub const SCAN_TABLE_OFFSET_BYTES: u64 = 4096;
pub const MAX_SCAN_NAME_BYTES: usize = 64;
/// Flag of a scan entry: the scan is a ring over the rest of the set.
pub const SCAN_FLAG_RING: u16 = 1;

const MAGIC: [u8; 8] = *b"DMARSCAN";
const WHAT: &str = "scan table";
const WHAT_ENTRY: &str = "scan entry";
const OFF_CRC: usize = SCAN_TABLE_HEADER_BYTES - 4;
const ENTRY_OFF_NAME: usize = 96;
/// The scan's time anchor: card ns, realtime ns, clock code (as the 1.1
/// superblock's, docs/FORMAT.md "Time base"); each scan starts its own card time.
const ENTRY_OFF_ANCHOR: usize = ENTRY_OFF_NAME + MAX_SCAN_NAME_BYTES; // 160
const ENTRY_ANCHOR_END: usize = ENTRY_OFF_ANCHOR + 18;
/// Entries carry no CRC of their own: the header's CRC of the entries covers
/// them. (A CRC over entries that each end with their own CRC-32 would not
/// see their contents change: CRC-32 of a message followed by its CRC is a
/// constant, so such a table CRC depends only on the entries' count.)
const ENTRY_END: usize = SCAN_ENTRY_BYTES;

/// Member byte offset of copy `copy` (0 or 1).
pub fn copy_offset_bytes(copy: u64) -> u64 {
    assert!(copy < 2, "the scan table has two copies");
    SCAN_TABLE_OFFSET_BYTES + copy * SCAN_TABLE_COPY_BYTES as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanState {
    /// Started; its end is not written (recording now, or cut by a crash).
    Live,
    Complete,
    /// Ended by a write error, or sealed after a crash.
    Interrupted,
}

impl ScanState {
    fn code(self) -> u16 {
        match self {
            ScanState::Live => 1,
            ScanState::Complete => 2,
            ScanState::Interrupted => 3,
        }
    }

    fn from_code(code: u16) -> Option<ScanState> {
        match code {
            1 => Some(ScanState::Live),
            2 => Some(ScanState::Complete),
            3 => Some(ScanState::Interrupted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScanState::Live => "live",
            ScanState::Complete => "complete",
            ScanState::Interrupted => "interrupted",
        }
    }
}

/// One scan of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    pub uuid: Uuid,
    pub name: String,
    /// Set position of the scan's slot 0.
    pub first_slot: u64,
    /// Slot numbers used (`slot_seq` of the last + 1); 0 while live.
    pub slot_count: u64,
    pub start_unix_ns: u64,
    /// Host timestamp of the last slot (0 while live or empty).
    pub end_unix_ns: u64,
    pub payload_bytes: u64,
    /// Card buffers lost (sum of the slots' gap counts).
    pub buffers_lost: u64,
    pub state: ScanState,
    pub flags: u16,
    /// The scan's card time anchored to CLOCK_REALTIME at its start (None:
    /// not recorded; readers derive one from the first slot as for 1.0).
    pub time_anchor: Option<TimeAnchor>,
}

impl ScanEntry {
    pub fn ring(&self) -> bool {
        self.flags & SCAN_FLAG_RING != 0
    }

    /// Set positions the scan owns on a set of `capacity_slots`: to the end
    /// of the set while live or in ring mode, else its slot count.
    pub fn region_slots(&self, capacity_slots: u64) -> u64 {
        let rest = capacity_slots.saturating_sub(self.first_slot);
        if self.ring() || self.state == ScanState::Live {
            rest
        } else {
            self.slot_count
        }
    }

    fn encode_into(&self, bytes: &mut [u8]) {
        assert_eq!(bytes.len(), SCAN_ENTRY_BYTES);
        bytes.fill(0);
        bytes[0..16].copy_from_slice(&self.uuid.0);
        put_u64(bytes, 16, self.first_slot);
        put_u64(bytes, 24, self.slot_count);
        put_u64(bytes, 32, self.start_unix_ns);
        put_u64(bytes, 40, self.end_unix_ns);
        put_u64(bytes, 48, self.payload_bytes);
        put_u64(bytes, 56, self.buffers_lost);
        put_u16(bytes, 64, self.state.code());
        put_u16(bytes, 66, self.flags);
        let name = self.name.as_bytes();
        bytes[ENTRY_OFF_NAME..ENTRY_OFF_NAME + name.len()].copy_from_slice(name);
        if let Some(a) = &self.time_anchor {
            put_u64(bytes, ENTRY_OFF_ANCHOR, a.card_ns);
            put_u64(bytes, ENTRY_OFF_ANCHOR + 8, a.realtime_ns);
            put_u16(bytes, ENTRY_OFF_ANCHOR + 16, a.clock.code());
        }
    }

    fn decode(bytes: &[u8], index: usize, minor: u16) -> Result<ScanEntry, FormatError> {
        let inv = |field, detail: String| {
            FormatError::invalid(WHAT_ENTRY, field, format!("scan {index}: {detail}"))
        };
        let state = ScanState::from_code(u16_at(bytes, 64))
            .ok_or_else(|| inv("state", format!("{} (known: 1, 2, 3)", u16_at(bytes, 64))))?;
        let name_raw = &bytes[ENTRY_OFF_NAME..ENTRY_OFF_NAME + MAX_SCAN_NAME_BYTES];
        let end = name_raw
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(name_raw.len());
        if !all_zero(&name_raw[end..]) {
            return Err(inv("name", "not NUL-padded".to_string()));
        }
        let name = String::from_utf8(name_raw[..end].to_vec())
            .map_err(|_| inv("name", "not UTF-8".to_string()))?;
        let entry = ScanEntry {
            uuid: Uuid(arr_at(bytes, 0)),
            name,
            first_slot: u64_at(bytes, 16),
            slot_count: u64_at(bytes, 24),
            start_unix_ns: u64_at(bytes, 32),
            end_unix_ns: u64_at(bytes, 40),
            payload_bytes: u64_at(bytes, 48),
            buffers_lost: u64_at(bytes, 56),
            state,
            flags: u16_at(bytes, 66),
            time_anchor: decode_anchor(bytes, minor).map_err(|e| inv("time_anchor", e))?,
        };
        if crate::knows_minor(minor) {
            let reserved_ok = all_zero(&bytes[68..ENTRY_OFF_NAME])
                && all_zero(&bytes[ENTRY_ANCHOR_END..ENTRY_END]);
            if !reserved_ok {
                return Err(inv("reserved", "reserved bytes are not zero".to_string()));
            }
            if entry.flags & !SCAN_FLAG_RING != 0 {
                return Err(inv("flags", format!("{:#x} has unknown bits", entry.flags)));
            }
        }
        check_name(&entry.name).map_err(|e| inv("name", e))?;
        if entry.uuid.is_nil() {
            return Err(inv("uuid", "is nil".to_string()));
        }
        if entry.state == ScanState::Live && entry.slot_count != 0 {
            return Err(inv("slot_count", "a live scan's is 0".to_string()));
        }
        Ok(entry)
    }
}

/// An entry's time anchor: none when its clock code is 0 (then its times
/// are zero); an unknown code is refused in a minor this build knows.
fn decode_anchor(bytes: &[u8], minor: u16) -> Result<Option<TimeAnchor>, String> {
    let code = u16_at(bytes, ENTRY_OFF_ANCHOR + 16);
    let known = crate::knows_minor(minor);
    if code == 0 {
        if known && !all_zero(&bytes[ENTRY_OFF_ANCHOR..ENTRY_ANCHOR_END]) {
            return Err("clock code 0 (no anchor) with non-zero times".into());
        }
        return Ok(None);
    }
    match CardClock::from_code(code) {
        Some(clock) => Ok(Some(TimeAnchor {
            clock,
            card_ns: u64_at(bytes, ENTRY_OFF_ANCHOR),
            realtime_ns: u64_at(bytes, ENTRY_OFF_ANCHOR + 8),
        })),
        None if known => Err(format!("clock code {code} is unknown")),
        None => Ok(None),
    }
}

/// Why `name` cannot name a scan, if it cannot: 1..=64 bytes of UTF-8, no
/// control character, not a UUID (so `--scan NAME|UUID` is unambiguous).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SCAN_NAME_BYTES {
        return Err(format!(
            "{name:?}: a scan name has 1..={MAX_SCAN_NAME_BYTES} bytes (UTF-8)"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?}: control characters are not allowed"));
    }
    if Uuid::parse(name).is_some() {
        return Err(format!("{name:?}: a UUID cannot be a scan name"));
    }
    Ok(())
}

/// One generation of the scan table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanTable {
    pub set_uuid: Uuid,
    pub generation: u64,
    pub scans: Vec<ScanEntry>,
}

impl ScanTable {
    /// The copy this generation is written to.
    pub fn copy(&self) -> u64 {
        self.generation % 2
    }

    /// Header page and the used entries, rounded up to 4096 bytes: what is
    /// written at [`copy_offset_bytes`]`(self.copy())`.
    pub fn encode(&self) -> Vec<u8> {
        self.validate(None).expect("encoding an invalid scan table");
        let entries_bytes = self.scans.len() * SCAN_ENTRY_BYTES;
        let total = SCAN_TABLE_HEADER_BYTES + entries_bytes.div_ceil(4096) * 4096;
        let mut b = vec![0u8; total];
        for (i, scan) in self.scans.iter().enumerate() {
            let o = SCAN_TABLE_HEADER_BYTES + i * SCAN_ENTRY_BYTES;
            scan.encode_into(&mut b[o..o + SCAN_ENTRY_BYTES]);
        }
        b[0..8].copy_from_slice(&MAGIC);
        put_u16(&mut b, 8, FORMAT_VERSION_MAJOR);
        put_u16(&mut b, 10, FORMAT_VERSION_MINOR);
        put_u32(&mut b, 12, SCAN_ENTRY_BYTES as u32);
        b[16..32].copy_from_slice(&self.set_uuid.0);
        put_u64(&mut b, 32, self.generation);
        put_u32(&mut b, 40, self.scans.len() as u32);
        let entries_crc =
            crc32(&b[SCAN_TABLE_HEADER_BYTES..SCAN_TABLE_HEADER_BYTES + entries_bytes]);
        put_u32(&mut b, 44, entries_crc);
        let crc = crc32(&b[..OFF_CRC]);
        put_u32(&mut b, OFF_CRC, crc);
        b
    }

    /// Decodes one copy (at least the header and its entries) and checks the
    /// table's rules. Bytes after the entries are not looked at.
    pub fn decode(bytes: &[u8]) -> Result<ScanTable, FormatError> {
        let minor = check_envelope(bytes, WHAT, MAGIC, SCAN_TABLE_HEADER_BYTES, OFF_CRC)?;
        let inv = |field, detail: String| FormatError::invalid(WHAT, field, detail);
        if minor < SCAN_TABLE_MINOR {
            return Err(inv(
                "version",
                format!("1.{minor}: scan tables exist from format 1.{SCAN_TABLE_MINOR} on"),
            ));
        }
        if u32_at(bytes, 12) != SCAN_ENTRY_BYTES as u32 {
            return Err(inv(
                "entry_bytes",
                format!("{} (must be 256)", u32_at(bytes, 12)),
            ));
        }
        if crate::knows_minor(minor) && !all_zero(&bytes[48..OFF_CRC]) {
            return Err(inv("reserved", "reserved bytes are not zero".to_string()));
        }
        let count = u32_at(bytes, 40) as usize;
        if count == 0 || count > MAX_SCANS {
            return Err(inv(
                "scan_count",
                format!("{count} (must be 1..={MAX_SCANS})"),
            ));
        }
        let end = SCAN_TABLE_HEADER_BYTES + count * SCAN_ENTRY_BYTES;
        if bytes.len() < end {
            return Err(FormatError::Truncated {
                what: WHAT,
                needed: end,
                got: bytes.len(),
            });
        }
        let stored = u32_at(bytes, 44);
        let computed = crc32(&bytes[SCAN_TABLE_HEADER_BYTES..end]);
        if stored != computed {
            return Err(FormatError::CrcMismatch {
                what: "scan table entries",
                stored,
                computed,
            });
        }
        let mut scans = Vec::with_capacity(count);
        for i in 0..count {
            let o = SCAN_TABLE_HEADER_BYTES + i * SCAN_ENTRY_BYTES;
            scans.push(ScanEntry::decode(
                &bytes[o..o + SCAN_ENTRY_BYTES],
                i,
                minor,
            )?);
        }
        let table = ScanTable {
            set_uuid: Uuid(arr_at(bytes, 16)),
            generation: u64_at(bytes, 32),
            scans,
        };
        table.validate(None)?;
        Ok(table)
    }

    /// The table's rules (docs/FORMAT.md); with `capacity_slots`, also that
    /// every ended non-ring scan fits the set.
    pub fn validate(&self, capacity_slots: Option<u64>) -> Result<(), FormatError> {
        let inv = |field, detail: String| FormatError::invalid(WHAT, field, detail);
        if self.set_uuid.is_nil() {
            return Err(inv("set_uuid", "is nil".to_string()));
        }
        if self.generation == 0 {
            return Err(inv(
                "generation",
                "is 0 (generations start at 1)".to_string(),
            ));
        }
        if self.scans.is_empty() || self.scans.len() > MAX_SCANS {
            return Err(inv(
                "scan_count",
                format!("{} (must be 1..={MAX_SCANS})", self.scans.len()),
            ));
        }
        let mut next_first = 0u64;
        let last = self.scans.len() - 1;
        for (i, s) in self.scans.iter().enumerate() {
            if s.first_slot != next_first {
                return Err(inv(
                    "first_slot",
                    format!(
                        "scan {i} starts at {} (must be {next_first}, where scan {} ends)",
                        s.first_slot,
                        i.wrapping_sub(1)
                    ),
                ));
            }
            if i < last && (s.ring() || s.state == ScanState::Live) {
                return Err(inv(
                    "state",
                    format!("scan {i} is live or a ring but not the last"),
                ));
            }
            let dup = self.scans[..i]
                .iter()
                .any(|o| o.name == s.name || o.uuid == s.uuid);
            if dup {
                return Err(inv(
                    "scans",
                    format!("scan {i}: name {:?} or UUID {} used twice", s.name, s.uuid),
                ));
            }
            next_first = s
                .first_slot
                .checked_add(s.slot_count)
                .ok_or_else(|| inv("slot_count", format!("scan {i}: overflows")))?;
            if let Some(capacity) = capacity_slots {
                if !s.ring() && next_first > capacity {
                    return Err(inv("slot_count", format!("scan {i} ends at position {next_first}, beyond the set's {capacity} slots")));
                }
            }
        }
        Ok(())
    }

    /// The next scan's first set position (after the last scan).
    pub fn end_slot(&self) -> u64 {
        self.scans
            .last()
            .map(|s| s.first_slot + s.slot_count)
            .unwrap_or(0)
    }
}

/// What a reader found in the copies of every member: the newest valid
/// generation for `set_uuid`, and a line per copy that failed (torn or damaged).
#[derive(Debug, Clone, PartialEq)]
pub struct TableChoice {
    pub table: Option<ScanTable>,
    pub damaged_copies: Vec<String>,
}

/// Picks the valid copy with the highest generation among `copies`
/// (`(description, bytes)` of each copy read, e.g. "member 0 copy 1").
/// Copies of another set (a different set UUID) are ignored as damaged.
pub fn choose_table<'a>(
    set_uuid: Uuid,
    copies: impl IntoIterator<Item = (String, &'a [u8])>,
) -> TableChoice {
    let mut best: Option<ScanTable> = None;
    let mut damaged_copies = Vec::new();
    for (what, bytes) in copies {
        match ScanTable::decode(bytes) {
            Ok(t) if t.set_uuid != set_uuid => damaged_copies.push(format!(
                "{what}: belongs to set {}, not {set_uuid}",
                t.set_uuid
            )),
            Ok(t) => {
                if best.as_ref().is_none_or(|b| t.generation > b.generation) {
                    best = Some(t);
                }
            }
            Err(e) => damaged_copies.push(format!("{what}: {e}")),
        }
    }
    TableChoice {
        table: best,
        damaged_copies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, first_slot: u64, slot_count: u64, state: ScanState) -> ScanEntry {
        ScanEntry {
            uuid: Uuid::from_random_bytes([n; 16]),
            name: format!("scan-{n}"),
            first_slot,
            slot_count,
            start_unix_ns: 1_700_000_000_000_000_000 + n as u64,
            end_unix_ns: if state == ScanState::Live {
                0
            } else {
                1_700_000_001_000_000_000
            },
            payload_bytes: slot_count * 4096,
            buffers_lost: n as u64,
            state,
            flags: 0,
            time_anchor: (n % 2 == 1).then_some(TimeAnchor {
                clock: CardClock::SampleCounter,
                card_ns: 1000 * n as u64,
                realtime_ns: 1_700_000_000_000_000_000 + n as u64,
            }),
        }
    }

    fn table(generation: u64) -> ScanTable {
        ScanTable {
            set_uuid: Uuid::from_random_bytes([9; 16]),
            generation,
            scans: vec![
                entry(1, 0, 10, ScanState::Complete),
                entry(2, 10, 5, ScanState::Interrupted),
                entry(3, 15, 0, ScanState::Live),
            ],
        }
    }

    fn used_bytes(t: &ScanTable) -> usize {
        SCAN_TABLE_HEADER_BYTES + t.scans.len() * SCAN_ENTRY_BYTES
    }

    #[test]
    fn round_trips_and_names_its_copy() {
        let t = table(7);
        let b = t.encode();
        assert_eq!(b.len(), 8192);
        assert_eq!(ScanTable::decode(&b).unwrap(), t);
        assert_eq!(t.copy(), 1);
        assert_eq!(copy_offset_bytes(1), 4096 + 262144);
        assert_eq!(t.end_slot(), 15);
        assert!(copy_offset_bytes(1) + SCAN_TABLE_COPY_BYTES as u64 <= crate::DATA_START_BYTES);
    }

    #[test]
    fn regions_copies_and_state_names() {
        let mut e = entry(1, 10, 5, ScanState::Complete);
        assert_eq!(e.region_slots(100), 5);
        e.state = ScanState::Interrupted;
        assert_eq!(e.region_slots(100), 5);
        e.flags = SCAN_FLAG_RING; // an ended ring owns the rest of the set
        assert_eq!(e.region_slots(100), 90);
        e.flags = 0;
        e.state = ScanState::Live;
        e.slot_count = 0;
        assert_eq!(e.region_slots(100), 90);
        assert_eq!(e.region_slots(4), 0);
        let names =
            [ScanState::Live, ScanState::Complete, ScanState::Interrupted].map(ScanState::as_str);
        assert_eq!(names, ["live", "complete", "interrupted"]);
        assert_eq!((table(6).copy(), table(7).copy()), (0, 1));
    }

    #[test]
    fn every_bit_flip_and_truncation_is_refused() {
        let t = table(3);
        let b = t.encode();
        for bit in 0..used_bytes(&t) * 8 {
            let mut m = b.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            assert!(
                ScanTable::decode(&m).is_err(),
                "bit {bit} flipped was accepted"
            );
        }
        for len in 0..used_bytes(&t) {
            assert!(
                ScanTable::decode(&b[..len]).is_err(),
                "truncated at {len} accepted"
            );
        }
    }

    fn resealed(t: &ScanTable, edit: impl Fn(&mut Vec<u8>)) -> Result<ScanTable, FormatError> {
        let mut b = t.encode();
        edit(&mut b);
        let end = used_bytes(t);
        let crc = crc32(&b[SCAN_TABLE_HEADER_BYTES..end]);
        put_u32(&mut b, 44, crc);
        let crc = crc32(&b[..OFF_CRC]);
        put_u32(&mut b, OFF_CRC, crc);
        ScanTable::decode(&b)
    }

    fn refused(result: Result<ScanTable, FormatError>, field: &str) {
        let e = result.expect_err("must be refused");
        assert!(
            e.to_string().contains(field),
            "refused for another reason: {e}"
        );
    }

    #[test]
    fn semantic_rules_are_checked_behind_the_crcs() {
        let t = table(1);
        let entry0 = SCAN_TABLE_HEADER_BYTES;
        let entry1 = entry0 + SCAN_ENTRY_BYTES;
        refused(resealed(&t, |b| b[entry0 + 70] = 1), "reserved");
        refused(resealed(&t, |b| b[entry0 + 200] = 1), "reserved");
        refused(resealed(&t, |b| b[entry0 + 255] = 1), "reserved");
        refused(resealed(&t, |b| b[entry0 + 178] = 1), "reserved");
        refused(resealed(&t, |b| b[entry0 + 176] = 9), "clock code 9");
        refused(resealed(&t, |b| b[entry1 + 160] = 1), "no anchor");
        assert!(t.scans[0].time_anchor.is_some() && t.scans[1].time_anchor.is_none());
        refused(resealed(&t, |b| b[100] = 1), "reserved");
        // Found by the fuzzer: a table claiming 1.0 or 1.1 re-encoded as 1.2.
        refused(
            resealed(&t, |b| b[10] = 0),
            "scan tables exist from format 1.2",
        );
        refused(resealed(&t, |b| b[10] = 1), "version");
        refused(resealed(&t, |b| b[entry0 + 66] = 2), "flags");
        refused(resealed(&t, |b| b[entry0 + 64] = 4), "state");
        refused(
            resealed(&t, |b| {
                b[entry0 + 64] = 1;
                b[entry0 + 24] = 0;
                b[entry1 + 16] = 0;
            }),
            "live or a ring but not the last",
        );
        refused(
            resealed(&t, |b| b[entry0 + 66] = 1),
            "live or a ring but not the last",
        );
        refused(resealed(&t, |b| b[entry1 + 16] = 11), "first_slot");
        refused(resealed(&t, |b| b[entry0 + 16] = 1), "first_slot");
        refused(
            resealed(&t, |b| {
                b[entry1 + 96..entry1 + 103].copy_from_slice(b"scan-1\0")
            }),
            "used twice",
        );
        refused(resealed(&t, |b| b[entry0 + 96] = 0), "name");
        refused(resealed(&t, |b| b[entry0 + 97] = 0), "NUL-padded");
        refused(resealed(&t, |b| b[entry0 + 96] = 0xff), "UTF-8");
        refused(resealed(&t, |b| b[entry0 + 96] = b'\n'), "control");
        refused(resealed(&t, |b| b[entry0..entry0 + 16].fill(0)), "nil");
        refused(resealed(&t, |b| b[entry0 + 512 + 24] = 1), "live scan");
        refused(resealed(&t, |b| b[40] = 0), "scan_count");
        refused(resealed(&t, |b| b[32..40].fill(0)), "generation");
        refused(resealed(&t, |b| b[13] = 0), "entry_bytes");
        // A newer minor may use the reserved bytes; this build ignores them.
        let newer = resealed(&t, |b| {
            b[10] = (FORMAT_VERSION_MINOR + 1) as u8;
            b[100] = 1;
            b[entry0 + 70] = 1;
        });
        assert_eq!(newer.unwrap(), t);
        let mut full = table(1);
        full.scans[1].slot_count = 100;
        full.scans[2].first_slot = 110;
        assert!(full.validate(Some(200)).is_ok());
        assert!(full.validate(Some(100)).is_err());
    }

    #[test]
    fn names_are_bounded_printable_and_not_uuids() {
        assert!(check_name("scan 1 — 東京").is_ok());
        assert!(check_name(&"x".repeat(64)).is_ok());
        for bad in ["", "a\tb", "\u{7f}"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("01234567-89ab-cdef-f00f-1032547698ba").is_err());
    }

    #[test]
    fn a_torn_update_leaves_the_previous_generation() {
        let old = table(4);
        let mut new = table(5);
        new.scans[2] = ScanEntry {
            state: ScanState::Complete,
            slot_count: 3,
            ..new.scans[2].clone()
        };
        let old_bytes = old.encode();
        let new_bytes = new.encode();
        // The new header reached the disk, its entry page did not (it still
        // holds what an older generation wrote there).
        let mut torn = new_bytes.clone();
        torn[SCAN_TABLE_HEADER_BYTES..].copy_from_slice(&old_bytes[SCAN_TABLE_HEADER_BYTES..]);
        let choice = choose_table(
            old.set_uuid,
            [
                ("member 0 copy 0".to_string(), &old_bytes[..]),
                ("member 0 copy 1".to_string(), &torn[..]),
            ],
        );
        assert_eq!(choice.table, Some(old.clone()));
        assert_eq!(choice.damaged_copies.len(), 1);
        assert!(choice.damaged_copies[0]
            .starts_with("member 0 copy 1: scan table entries: CRC mismatch"));
        // Both intact: the newer wins, whatever the order; another set's is ignored.
        let mut other = table(9);
        other.set_uuid = Uuid::from_random_bytes([1; 16]);
        let other_bytes = other.encode();
        let choice = choose_table(
            old.set_uuid,
            [
                ("a".to_string(), &new_bytes[..]),
                ("b".to_string(), &old_bytes[..]),
                ("c".to_string(), &other_bytes[..]),
            ],
        );
        assert_eq!(choice.table, Some(new.clone()));
        assert_eq!(choice.damaged_copies.len(), 1);
        let reversed = choose_table(
            old.set_uuid,
            [
                ("b".to_string(), &old_bytes[..]),
                ("a".to_string(), &new_bytes[..]),
            ],
        );
        assert_eq!(reversed.table, Some(new));
        assert!(choose_table(old.set_uuid, []).table.is_none());
    }

    #[test]
    fn exactly_the_used_bytes_decode() {
        let t = table(3);
        let b = t.encode();
        assert_eq!(ScanTable::decode(&b[..used_bytes(&t)]).unwrap(), t);
    }

    #[test]
    fn a_full_table_decodes_and_one_more_scan_is_refused() {
        let mut t = table(2);
        t.scans = (0..MAX_SCANS as u64)
            .map(|i| ScanEntry {
                name: format!("s{i}"),
                uuid: Uuid::from_random_bytes([
                    (i % 251) as u8 + 1,
                    (i / 251) as u8 + 1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ]),
                ..entry(1, i, 1, ScanState::Complete)
            })
            .collect();
        let b = t.encode();
        assert_eq!(b.len(), SCAN_TABLE_COPY_BYTES);
        assert_eq!(ScanTable::decode(&b).unwrap(), t);
        let over = resealed(&t, |b| {
            b[40..44].copy_from_slice(&(MAX_SCANS as u32 + 1).to_le_bytes())
        });
        refused(over, "scan_count");
        let mut too_many = t.clone();
        too_many.scans.push(ScanEntry {
            name: "one more".into(),
            uuid: Uuid::from_random_bytes([0xee; 16]),
            ..entry(1, MAX_SCANS as u64, 1, ScanState::Complete)
        });
        assert!(too_many.validate(None).is_err());
        let empty = ScanTable {
            scans: Vec::new(),
            ..t
        };
        assert!(empty.validate(None).is_err());
    }

    #[test]
    fn scans_fit_the_set_and_a_ring_may_lap_it() {
        let mut t = table(1);
        t.scans[2] = ScanEntry {
            state: ScanState::Complete,
            slot_count: 5,
            ..t.scans[2].clone()
        };
        assert_eq!(t.end_slot(), 20);
        assert!(
            t.validate(Some(20)).is_ok(),
            "ends exactly at the set's end"
        );
        assert!(t.validate(Some(19)).is_err(), "one slot beyond");
        t.scans[2].flags = SCAN_FLAG_RING;
        t.scans[2].slot_count = 50; // laps over its 5 positions
        assert!(t.validate(Some(20)).is_ok());
    }
}
