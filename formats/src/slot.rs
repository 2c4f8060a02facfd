//! The slot header: the first 4 KiB of every slot, written in the same
//! O_DIRECT write as the payload that follows it. It names the recording
//! (so a slot left on the device by an older recording is never taken for
//! this one), the slot's place in the recording and the card's own sequence
//! number, timestamps, the gap before it, and the payload's CRC.

use crate::bytes::*;
use crate::{crc32, FormatError, Uuid, FORMAT_VERSION_MAJOR, FORMAT_VERSION_MINOR};

pub const SLOT_HEADER_BYTES: usize = 4096;
/// Flag: the card lost `gap_count > 0` buffers just before this one.
pub const SLOT_FLAG_GAP: u16 = 1;
const KNOWN_FLAGS: u16 = SLOT_FLAG_GAP;
const MAGIC: [u8; 8] = *b"DMARSLOT";
const WHAT: &str = "slot header";
const FIELDS_END: usize = 88;
const OFF_CRC: usize = SLOT_HEADER_BYTES - 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotHeader {
    pub recording_uuid: Uuid,
    /// The recorder's sequence number: slot n of the recording, from 0,
    /// across all stripe members and ring laps.
    pub slot_seq: u64,
    /// The card's buffer counter (counts lost buffers too).
    pub card_seq: u64,
    /// Card clock at the end of the buffer's fill, ns.
    pub card_timestamp_ns: u64,
    /// Host CLOCK_REALTIME when the recorder took the buffer, ns since the epoch.
    pub host_timestamp_ns: u64,
    /// Card buffers lost just before this one.
    pub gap_count: u64,
    pub payload_bytes_used: u32,
    /// CRC-32 of the first `payload_bytes_used` payload bytes.
    pub payload_crc32: u32,
    pub channel: u16,
    pub flags: u16,
    pub device_index: u16,
}

impl SlotHeader {
    /// Writes the header into a 4 KiB header page (every byte of it: fields,
    /// zeroed reserved space, CRC). Allocation-free, for the hot path.
    pub fn encode_into(&self, page: &mut [u8]) {
        assert_eq!(
            page.len(),
            SLOT_HEADER_BYTES,
            "slot header page must be 4096 bytes"
        );
        page[0..8].copy_from_slice(&MAGIC);
        put_u16(page, 8, FORMAT_VERSION_MAJOR);
        put_u16(page, 10, FORMAT_VERSION_MINOR);
        put_u32(page, 12, SLOT_HEADER_BYTES as u32);
        page[16..32].copy_from_slice(&self.recording_uuid.0);
        put_u64(page, 32, self.slot_seq);
        put_u64(page, 40, self.card_seq);
        put_u64(page, 48, self.card_timestamp_ns);
        put_u64(page, 56, self.host_timestamp_ns);
        put_u64(page, 64, self.gap_count);
        put_u32(page, 72, self.payload_bytes_used);
        put_u32(page, 76, self.payload_crc32);
        put_u16(page, 80, self.channel);
        put_u16(page, 82, self.flags);
        put_u16(page, 84, self.device_index);
        put_u16(page, 86, 0);
        page[FIELDS_END..OFF_CRC].fill(0);
        let crc = crc32(&page[..OFF_CRC]);
        put_u32(page, OFF_CRC, crc);
    }

    pub fn encode(&self) -> [u8; SLOT_HEADER_BYTES] {
        let mut page = [0u8; SLOT_HEADER_BYTES];
        self.encode_into(&mut page);
        page
    }

    /// Decodes and checks a header page (magic, CRC, version, flags,
    /// reserved bytes). It does not check the payload: see [`Self::check_payload`].
    pub fn decode(bytes: &[u8]) -> Result<SlotHeader, FormatError> {
        let minor = check_envelope(bytes, WHAT, MAGIC, SLOT_HEADER_BYTES, OFF_CRC)?;
        let bytes = &bytes[..SLOT_HEADER_BYTES];
        let inv = |field, detail: String| FormatError::invalid(WHAT, field, detail);
        if u32_at(bytes, 12) != SLOT_HEADER_BYTES as u32 {
            return Err(inv(
                "header_bytes",
                format!("{} (must be 4096)", u32_at(bytes, 12)),
            ));
        }
        let h = SlotHeader {
            recording_uuid: Uuid(arr_at(bytes, 16)),
            slot_seq: u64_at(bytes, 32),
            card_seq: u64_at(bytes, 40),
            card_timestamp_ns: u64_at(bytes, 48),
            host_timestamp_ns: u64_at(bytes, 56),
            gap_count: u64_at(bytes, 64),
            payload_bytes_used: u32_at(bytes, 72),
            payload_crc32: u32_at(bytes, 76),
            channel: u16_at(bytes, 80),
            flags: u16_at(bytes, 82),
            device_index: u16_at(bytes, 84),
        };
        if crate::knows_minor(minor) {
            if h.flags & !KNOWN_FLAGS != 0 {
                return Err(inv("flags", format!("{:#x} has unknown bits", h.flags)));
            }
            if !all_zero(&bytes[86..OFF_CRC]) {
                return Err(inv("reserved", "reserved bytes are not zero".to_string()));
            }
        }
        if (h.flags & SLOT_FLAG_GAP != 0) != (h.gap_count > 0) {
            return Err(inv(
                "flags",
                format!(
                    "gap flag {} disagrees with gap_count {}",
                    h.flags & SLOT_FLAG_GAP,
                    h.gap_count
                ),
            ));
        }
        Ok(h)
    }

    /// Checks the payload that follows this header: length and CRC.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), FormatError> {
        let used = self.payload_bytes_used as usize;
        if payload.len() < used {
            return Err(FormatError::Truncated {
                what: "slot payload",
                needed: used,
                got: payload.len(),
            });
        }
        let computed = crc32(&payload[..used]);
        if computed != self.payload_crc32 {
            return Err(FormatError::CrcMismatch {
                what: "slot payload",
                stored: self.payload_crc32,
                computed,
            });
        }
        Ok(())
    }
}
