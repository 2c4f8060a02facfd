//! The index file: a header (index page + a copy of member 0's superblock),
//! then fixed-size 64-byte entries, one per slot, in strictly increasing slot
//! sequence, each with its own CRC. It is append-only; a torn tail (a partial
//! entry, or trailing entries whose CRC fails) is detected and ignored, never
//! misread. [`IndexView`] reads it in place (e.g. from an mmap) and seeks by
//! binary search, checking only the entries it touches.

use crate::bytes::*;
use crate::{
    crc32, FormatError, Superblock, Uuid, FORMAT_VERSION_MAJOR, FORMAT_VERSION_MINOR,
    SUPERBLOCK_BYTES,
};

pub const INDEX_PAGE_BYTES: usize = 4096;
/// Bytes before the first entry: the index page and the superblock copy.
pub const INDEX_HEADER_BYTES: usize = INDEX_PAGE_BYTES + SUPERBLOCK_BYTES;
pub const INDEX_ENTRY_BYTES: usize = 64;
const MAGIC: [u8; 8] = *b"DMARINDX";
const WHAT: &str = "index header";
const WHAT_ENTRY: &str = "index entry";
const OFF_CRC: usize = INDEX_PAGE_BYTES - 4;
const OFF_SCAN_UUID: usize = 20;

/// The index header: which recording and geometry the entries describe.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexHeader {
    /// Member 0's superblock (recording UUID, geometry, channels).
    pub superblock: Superblock,
    /// The scan the entries belong to (format 1.2); nil: the recording's
    /// only scan (a 1.0 index, or a 1.0 set).
    pub scan_uuid: Uuid,
}

impl IndexHeader {
    pub fn encode(&self) -> Vec<u8> {
        assert_eq!(
            self.superblock.device_index, 0,
            "index header holds member 0's superblock"
        );
        let mut b = vec![0u8; INDEX_HEADER_BYTES];
        b[0..8].copy_from_slice(&MAGIC);
        put_u16(&mut b, 8, FORMAT_VERSION_MAJOR);
        put_u16(&mut b, 10, FORMAT_VERSION_MINOR);
        put_u32(&mut b, 12, INDEX_ENTRY_BYTES as u32);
        put_u32(&mut b, 16, INDEX_HEADER_BYTES as u32);
        b[OFF_SCAN_UUID..OFF_SCAN_UUID + 16].copy_from_slice(&self.scan_uuid.0);
        let crc = crc32(&b[..OFF_CRC]);
        put_u32(&mut b, OFF_CRC, crc);
        b[INDEX_PAGE_BYTES..].copy_from_slice(&self.superblock.encode());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<IndexHeader, FormatError> {
        let minor = check_envelope(bytes, WHAT, MAGIC, INDEX_HEADER_BYTES, OFF_CRC)?;
        if u32_at(bytes, 12) != INDEX_ENTRY_BYTES as u32
            || u32_at(bytes, 16) != INDEX_HEADER_BYTES as u32
        {
            return Err(FormatError::invalid(
                WHAT,
                "sizes",
                format!(
                    "entry_bytes {} / header_bytes {} (must be 64 / 8192)",
                    u32_at(bytes, 12),
                    u32_at(bytes, 16)
                ),
            ));
        }
        // The scan UUID is a 1.2 field: reserved (zero) in older minors.
        let has_scan = minor >= crate::scan::SCAN_TABLE_MINOR;
        let reserved_from = if has_scan {
            OFF_SCAN_UUID + 16
        } else {
            OFF_SCAN_UUID
        };
        if crate::knows_minor(minor) && !all_zero(&bytes[reserved_from..OFF_CRC]) {
            return Err(FormatError::invalid(
                WHAT,
                "reserved",
                "reserved bytes are not zero",
            ));
        }
        let superblock = Superblock::decode(&bytes[INDEX_PAGE_BYTES..INDEX_HEADER_BYTES])?;
        if superblock.device_index != 0 {
            return Err(FormatError::invalid(
                WHAT,
                "superblock",
                "copy is not member 0's",
            ));
        }
        let scan_uuid = if has_scan {
            Uuid(arr_at(bytes, OFF_SCAN_UUID))
        } else {
            Uuid::NIL
        };
        Ok(IndexHeader {
            superblock,
            scan_uuid,
        })
    }

    /// The UUID the indexed slots carry: the scan's, or for a 1.0 index the
    /// recording's.
    pub fn slots_uuid(&self) -> Uuid {
        if self.scan_uuid.is_nil() {
            self.superblock.recording_uuid
        } else {
            self.scan_uuid
        }
    }
}

/// One slot as the index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexEntry {
    pub slot_seq: u64,
    pub card_seq: u64,
    pub card_timestamp_ns: u64,
    pub host_timestamp_ns: u64,
    pub gap_count: u64,
    /// Byte offset of the slot (its header page) on its device.
    pub device_offset_bytes: u64,
    pub payload_bytes_used: u32,
    pub payload_crc32: u32,
    pub channel: u8,
    pub device_index: u8,
    pub flags: u16,
}

impl IndexEntry {
    pub fn encode_into(&self, bytes: &mut [u8]) {
        assert_eq!(bytes.len(), INDEX_ENTRY_BYTES);
        put_u64(bytes, 0, self.slot_seq);
        put_u64(bytes, 8, self.card_seq);
        put_u64(bytes, 16, self.card_timestamp_ns);
        put_u64(bytes, 24, self.host_timestamp_ns);
        put_u64(bytes, 32, self.gap_count);
        put_u64(bytes, 40, self.device_offset_bytes);
        put_u32(bytes, 48, self.payload_bytes_used);
        put_u32(bytes, 52, self.payload_crc32);
        bytes[56] = self.channel;
        bytes[57] = self.device_index;
        put_u16(bytes, 58, self.flags);
        let crc = crc32(&bytes[..60]);
        put_u32(bytes, 60, crc);
    }

    pub fn encode(&self) -> [u8; INDEX_ENTRY_BYTES] {
        let mut b = [0u8; INDEX_ENTRY_BYTES];
        self.encode_into(&mut b);
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<IndexEntry, FormatError> {
        if bytes.len() < INDEX_ENTRY_BYTES {
            return Err(FormatError::Truncated {
                what: WHAT_ENTRY,
                needed: INDEX_ENTRY_BYTES,
                got: bytes.len(),
            });
        }
        let stored = u32_at(bytes, 60);
        let computed = crc32(&bytes[..60]);
        if stored != computed {
            return Err(FormatError::CrcMismatch {
                what: WHAT_ENTRY,
                stored,
                computed,
            });
        }
        let e = IndexEntry {
            slot_seq: u64_at(bytes, 0),
            card_seq: u64_at(bytes, 8),
            card_timestamp_ns: u64_at(bytes, 16),
            host_timestamp_ns: u64_at(bytes, 24),
            gap_count: u64_at(bytes, 32),
            device_offset_bytes: u64_at(bytes, 40),
            payload_bytes_used: u32_at(bytes, 48),
            payload_crc32: u32_at(bytes, 52),
            channel: bytes[56],
            device_index: bytes[57],
            flags: u16_at(bytes, 58),
        };
        if (e.flags & crate::SLOT_FLAG_GAP != 0) != (e.gap_count > 0)
            || e.flags & !crate::SLOT_FLAG_GAP != 0
        {
            return Err(FormatError::invalid(
                WHAT_ENTRY,
                "flags",
                format!("{:#x} with gap_count {}", e.flags, e.gap_count),
            ));
        }
        Ok(e)
    }

    /// The entry describing a slot written with `header` at `offset` bytes.
    pub fn from_header(header: &crate::SlotHeader, device_offset_bytes: u64) -> IndexEntry {
        IndexEntry {
            slot_seq: header.slot_seq,
            card_seq: header.card_seq,
            card_timestamp_ns: header.card_timestamp_ns,
            host_timestamp_ns: header.host_timestamp_ns,
            gap_count: header.gap_count,
            device_offset_bytes,
            payload_bytes_used: header.payload_bytes_used,
            payload_crc32: header.payload_crc32,
            channel: header.channel as u8,
            device_index: header.device_index as u8,
            flags: header.flags,
        }
    }
}

/// An index file read in place. Entries `0..len()` are the ones before the
/// torn tail; each is CRC-checked when read.
pub struct IndexView<'a> {
    pub header: IndexHeader,
    entries: &'a [u8],
    len: usize,
    /// Bytes after the last good entry that were ignored (partial entry or
    /// trailing entries that fail their CRC).
    pub torn_tail_bytes: usize,
}

/// At most this many trailing entries are treated as a torn tail; more bad
/// entries at the end is damage, not a torn append (the recorder appends in
/// batches far smaller than this).
pub const MAX_TORN_ENTRIES: usize = 4096;

impl<'a> IndexView<'a> {
    pub fn new(file: &'a [u8]) -> Result<IndexView<'a>, FormatError> {
        let header = IndexHeader::decode(file)?;
        let body = &file[INDEX_HEADER_BYTES..];
        let mut len = body.len() / INDEX_ENTRY_BYTES;
        let mut trimmed = 0;
        while len > 0 && trimmed < MAX_TORN_ENTRIES {
            let o = (len - 1) * INDEX_ENTRY_BYTES;
            if IndexEntry::decode(&body[o..o + INDEX_ENTRY_BYTES]).is_ok() {
                break;
            }
            len -= 1;
            trimmed += 1;
        }
        Ok(IndexView {
            header,
            entries: body,
            len,
            torn_tail_bytes: body.len() - len * INDEX_ENTRY_BYTES,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entry `i` (0-based), CRC-checked.
    pub fn get(&self, position: usize) -> Result<IndexEntry, FormatError> {
        assert!(
            position < self.len,
            "index entry {position} out of range {}",
            self.len
        );
        let o = position * INDEX_ENTRY_BYTES;
        IndexEntry::decode(&self.entries[o..o + INDEX_ENTRY_BYTES])
    }

    /// First entry position whose `key` is not less than `target`, by binary
    /// search; `key` must be non-decreasing over the entries (slot_seq,
    /// card_seq and timestamps are). Fails if a probed entry is damaged.
    pub fn lower_bound(
        &self,
        target: u64,
        key: impl Fn(&IndexEntry) -> u64,
    ) -> Result<usize, FormatError> {
        let (mut lo, mut hi) = (0usize, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(&self.get(mid)?) < target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}
