//! The superblock: first 4 KiB of every member device, with a backup copy in
//! the last 4 KiB-aligned block. It describes the recording (UUID, creation
//! time, payload and slot size, ring mode, channel table) and the stripe set
//! (every member's UUID, size and slot count, and which member this is).

use crate::bytes::*;
use crate::time::{CardClock, TimeAnchor};
use crate::{
    crc32, FormatError, PayloadSize, Uuid, CHANNEL_LAYOUT_INTERLEAVED, CHANNEL_LAYOUT_ROUND_ROBIN,
    FORMAT_VERSION_MAJOR, FORMAT_VERSION_MINOR,
};

pub const SUPERBLOCK_BYTES: usize = 4096;
/// The data area of every member starts here (1 MiB: aligned for any
/// logical or physical block size and partition alignment).
pub const DATA_START_BYTES: u64 = 1 << 20;
pub const MAX_DEVICES: usize = 8;
pub const MAX_CHANNELS: usize = 32;
/// Flag: ring mode, slots wrap at the end of the stripe set's capacity.
pub const SUPERBLOCK_FLAG_RING: u32 = 1;
const KNOWN_FLAGS: u32 = SUPERBLOCK_FLAG_RING;

const MAGIC: [u8; 8] = *b"DMARECSB";
const WHAT: &str = "superblock";
const OFF_MEMBERS: usize = 128;
const MEMBER_BYTES: usize = 32;
const OFF_CHANNELS: usize = OFF_MEMBERS + MAX_DEVICES * MEMBER_BYTES; // 384
const CHANNEL_BYTES: usize = 48;
const OFF_RESERVED: usize = OFF_CHANNELS + MAX_CHANNELS * CHANNEL_BYTES; // 1920
/// Format 1.1: the time anchor, at the end of the reserved space: card ns
/// (8), realtime ns (8), card clock code (2), zero (6).
const OFF_ANCHOR: usize = 4032;
const ANCHOR_BYTES: usize = 24;
const OFF_CRC: usize = SUPERBLOCK_BYTES - 4;
const NAME_BYTES: usize = 32;
const DATATYPE_BYTES: usize = 8;

/// One member of the stripe set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    pub uuid: Uuid,
    pub size_bytes: u64,
    pub slot_count: u64,
}

/// One channel of the card, named as SigMF names sample formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub name: String,
    /// SigMF datatype, e.g. "ci16_le", "rf32_le", "ru8".
    pub datatype: String,
    /// Samples per second per channel; 0.0 when unknown.
    pub sample_rate_hz: f64,
}

/// Decoded superblock. All members of a stripe set carry the same fields
/// except `device_index`.
#[derive(Debug, Clone, PartialEq)]
pub struct Superblock {
    pub version_minor: u16,
    pub recording_uuid: Uuid,
    pub created_unix_ns: u64,
    pub payload_bytes: u32,
    pub flags: u32,
    pub device_index: u16,
    pub channel_layout: u16,
    pub members: Vec<Member>,
    pub channels: Vec<Channel>,
    /// Format 1.1: card time anchored to CLOCK_REALTIME at the start (None
    /// in 1.0 recordings: readers derive one, see [`Superblock::anchor_or`]).
    pub time_anchor: Option<TimeAnchor>,
}

/// Bytes per sample of a SigMF datatype (`c` complex counts both parts),
/// or `None` if the datatype is not one SigMF defines.
pub fn datatype_sample_bytes(datatype: &str) -> Option<usize> {
    let (complex, rest) = match datatype.as_bytes().first()? {
        b'c' => (true, &datatype[1..]),
        b'r' => (false, &datatype[1..]),
        _ => return None,
    };
    let (kind, endian) = match rest.split_once('_') {
        Some((k, e)) if e == "le" || e == "be" => (k, true),
        Some(_) => return None,
        None => (rest, false),
    };
    let bytes = match kind {
        "f64" => 8,
        "f32" | "i32" | "u32" => 4,
        "i16" | "u16" => 2,
        "i8" | "u8" => 1,
        _ => return None,
    };
    // SigMF: 8-bit types carry no endianness suffix, wider types must.
    if (bytes == 1) == endian {
        return None;
    }
    Some(if complex { 2 * bytes } else { bytes })
}

impl Superblock {
    /// Size of one slot: header page plus payload.
    pub fn slot_bytes(&self) -> u64 {
        crate::SLOT_HEADER_BYTES as u64 + self.payload_bytes as u64
    }

    /// Whether the set carries a scan table (format 1.2 and later).
    pub fn has_scan_table(&self) -> bool {
        self.version_minor >= crate::scan::SCAN_TABLE_MINOR
    }

    pub fn ring(&self) -> bool {
        self.flags & SUPERBLOCK_FLAG_RING != 0
    }

    /// The payload size (a validated superblock always has a valid one).
    pub fn payload_size(&self) -> Result<PayloadSize, crate::PayloadSizeError> {
        PayloadSize::new(self.payload_bytes.into())
    }

    /// This device's member entry.
    pub fn member(&self) -> &Member {
        &self.members[self.device_index as usize]
    }

    /// Number of slots that fit on a device of `size_bytes` with this payload
    /// size (0 if the device is too small).
    pub fn slots_for_device(size_bytes: u64, payload_bytes: u32) -> u64 {
        let slot_bytes = crate::SLOT_HEADER_BYTES as u64 + payload_bytes as u64;
        let end = backup_offset(size_bytes);
        end.saturating_sub(DATA_START_BYTES) / slot_bytes
    }

    /// Offset of the backup copy on a device of `size_bytes`.
    pub fn backup_offset(size_bytes: u64) -> u64 {
        backup_offset(size_bytes)
    }

    /// Encodes with the superblock's own minor version (a 1.0 superblock
    /// stays 1.0: a set without a scan table); at most the one we write.
    pub fn encode(&self) -> [u8; SUPERBLOCK_BYTES] {
        self.validate().expect("encoding an invalid superblock");
        assert!(
            self.version_minor <= FORMAT_VERSION_MINOR,
            "encoding minor {} newer than this build's",
            self.version_minor
        );
        let mut b = [0u8; SUPERBLOCK_BYTES];
        b[0..8].copy_from_slice(&MAGIC);
        put_u16(&mut b, 8, FORMAT_VERSION_MAJOR);
        put_u16(&mut b, 10, self.version_minor);
        put_u32(&mut b, 12, SUPERBLOCK_BYTES as u32);
        b[16..32].copy_from_slice(&self.recording_uuid.0);
        b[32..48].copy_from_slice(&self.member().uuid.0);
        put_u64(&mut b, 48, self.created_unix_ns);
        put_u32(&mut b, 56, self.payload_bytes);
        put_u32(&mut b, 60, self.slot_bytes() as u32);
        put_u32(&mut b, 64, self.flags);
        put_u16(&mut b, 68, self.members.len() as u16);
        put_u16(&mut b, 70, self.device_index);
        put_u64(&mut b, 72, DATA_START_BYTES);
        put_u64(&mut b, 80, self.member().slot_count);
        put_u16(&mut b, 88, self.channels.len() as u16);
        put_u16(&mut b, 90, self.channel_layout);
        for (i, m) in self.members.iter().enumerate() {
            let o = OFF_MEMBERS + i * MEMBER_BYTES;
            b[o..o + 16].copy_from_slice(&m.uuid.0);
            put_u64(&mut b, o + 16, m.size_bytes);
            put_u64(&mut b, o + 24, m.slot_count);
        }
        for (i, c) in self.channels.iter().enumerate() {
            let o = OFF_CHANNELS + i * CHANNEL_BYTES;
            b[o..o + c.name.len()].copy_from_slice(c.name.as_bytes());
            let d = o + NAME_BYTES;
            b[d..d + c.datatype.len()].copy_from_slice(c.datatype.as_bytes());
            put_u64(&mut b, d + DATATYPE_BYTES, c.sample_rate_hz.to_bits());
        }
        if let Some(a) = &self.time_anchor {
            put_u64(&mut b, OFF_ANCHOR, a.card_ns);
            put_u64(&mut b, OFF_ANCHOR + 8, a.realtime_ns);
            put_u16(&mut b, OFF_ANCHOR + 16, a.clock.code());
        }
        let crc = crc32(&b[..OFF_CRC]);
        put_u32(&mut b, OFF_CRC, crc);
        b
    }

    /// The recording's time anchor; for a 1.0 recording (none stored) the
    /// one readers derived before 1.1: `first`'s card time is `first`'s
    /// host time (`first` = (card ns, host ns) of the oldest live slot).
    pub fn anchor_or(&self, first: Option<(u64, u64)>) -> Option<TimeAnchor> {
        self.time_anchor.or_else(|| {
            first.map(|(card_ns, realtime_ns)| TimeAnchor {
                clock: CardClock::HostMonotonicEndOfFill,
                card_ns,
                realtime_ns,
            })
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Superblock, FormatError> {
        let minor = check_envelope(bytes, WHAT, MAGIC, SUPERBLOCK_BYTES, OFF_CRC)?;
        let bytes = &bytes[..SUPERBLOCK_BYTES];
        let inv = |field, detail: String| FormatError::invalid(WHAT, field, detail);
        if u32_at(bytes, 12) != SUPERBLOCK_BYTES as u32 {
            return Err(inv(
                "superblock_bytes",
                format!("{} (must be 4096)", u32_at(bytes, 12)),
            ));
        }
        let device_count = u16_at(bytes, 68) as usize;
        let channel_count = u16_at(bytes, 88) as usize;
        if device_count == 0 || device_count > MAX_DEVICES {
            return Err(inv(
                "device_count",
                format!("{device_count} (must be 1..={MAX_DEVICES})"),
            ));
        }
        if channel_count == 0 || channel_count > MAX_CHANNELS {
            return Err(inv(
                "channel_count",
                format!("{channel_count} (must be 1..={MAX_CHANNELS})"),
            ));
        }
        let mut members = Vec::with_capacity(device_count);
        for i in 0..MAX_DEVICES {
            let o = OFF_MEMBERS + i * MEMBER_BYTES;
            let raw = &bytes[o..o + MEMBER_BYTES];
            if i >= device_count {
                if !all_zero(raw) {
                    return Err(inv(
                        "members",
                        format!("unused member entry {i} is not zero"),
                    ));
                }
                continue;
            }
            members.push(Member {
                uuid: Uuid(arr_at(bytes, o)),
                size_bytes: u64_at(bytes, o + 16),
                slot_count: u64_at(bytes, o + 24),
            });
        }
        let mut channels = Vec::with_capacity(channel_count);
        for i in 0..MAX_CHANNELS {
            let o = OFF_CHANNELS + i * CHANNEL_BYTES;
            let raw = &bytes[o..o + CHANNEL_BYTES];
            if i >= channel_count {
                if !all_zero(raw) {
                    return Err(inv(
                        "channels",
                        format!("unused channel entry {i} is not zero"),
                    ));
                }
                continue;
            }
            let name = padded_str(&raw[..NAME_BYTES])
                .ok_or_else(|| inv("channel name", format!("channel {i}: not NUL-padded UTF-8")))?;
            let datatype =
                padded_str(&raw[NAME_BYTES..NAME_BYTES + DATATYPE_BYTES]).ok_or_else(|| {
                    inv(
                        "channel datatype",
                        format!("channel {i}: not NUL-padded UTF-8"),
                    )
                })?;
            channels.push(Channel {
                name,
                datatype,
                sample_rate_hz: f64::from_bits(u64_at(raw, NAME_BYTES + DATATYPE_BYTES)),
            });
        }
        let sb = Superblock {
            version_minor: minor,
            recording_uuid: Uuid(arr_at(bytes, 16)),
            created_unix_ns: u64_at(bytes, 48),
            payload_bytes: u32_at(bytes, 56),
            flags: u32_at(bytes, 64),
            device_index: u16_at(bytes, 70),
            channel_layout: u16_at(bytes, 90),
            members,
            channels,
            time_anchor: decode_anchor(bytes, minor)?,
        };
        // Fields derivable from others must agree with them.
        if (sb.device_index as usize) >= device_count {
            return Err(inv(
                "device_index",
                format!("{} (device_count is {device_count})", sb.device_index),
            ));
        }
        sb.validate()?;
        if u32_at(bytes, 60) as u64 != sb.slot_bytes() {
            return Err(inv(
                "slot_bytes",
                format!(
                    "{} (must be 4096 + payload = {})",
                    u32_at(bytes, 60),
                    sb.slot_bytes()
                ),
            ));
        }
        if u64_at(bytes, 72) != DATA_START_BYTES {
            return Err(inv(
                "data_start_bytes",
                format!("{} (must be {DATA_START_BYTES})", u64_at(bytes, 72)),
            ));
        }
        if u64_at(bytes, 80) != sb.member().slot_count {
            return Err(inv(
                "slot_count",
                format!(
                    "{} differs from member entry {}",
                    u64_at(bytes, 80),
                    sb.member().slot_count
                ),
            ));
        }
        if Uuid(arr_at(bytes, 32)) != sb.member().uuid {
            return Err(inv(
                "device_uuid",
                "differs from this device's member entry".to_string(),
            ));
        }
        // Reserved bytes are zero in the minor version we know; a newer minor
        // may use them, and we ignore what we do not know.
        // From 1.1 the time anchor sits in the reserved space.
        let reserved_tail = if minor >= 1 { OFF_ANCHOR } else { OFF_CRC };
        if crate::knows_minor(minor)
            && (!all_zero(&bytes[92..OFF_MEMBERS])
                || !all_zero(&bytes[OFF_RESERVED..reserved_tail])
                || !all_zero(&bytes[OFF_ANCHOR + ANCHOR_BYTES..OFF_CRC]))
        {
            return Err(inv("reserved", "reserved bytes are not zero".to_string()));
        }
        Ok(sb)
    }

    /// Checks the semantic rules every superblock obeys.
    pub fn validate(&self) -> Result<(), FormatError> {
        let inv = |field, detail: String| FormatError::invalid(WHAT, field, detail);
        let p = self.payload_bytes;
        if let Err(e) = PayloadSize::new(p.into()) {
            return Err(inv("payload_bytes", e.to_string()));
        }
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(inv("flags", format!("{:#x} has unknown bits", self.flags)));
        }
        if self.version_minor < 1 && self.time_anchor.is_some() {
            return Err(inv(
                "time_anchor",
                "a 1.0 superblock has none (it is a 1.1 field)".into(),
            ));
        }
        if self.has_scan_table() && self.ring() {
            return Err(inv(
                "flags",
                "ring bit set in a set with a scan table (ring mode belongs to a scan)".into(),
            ));
        }
        if self.recording_uuid.is_nil() {
            return Err(inv("recording_uuid", "is nil".to_string()));
        }
        if self.members.is_empty() || self.members.len() > MAX_DEVICES {
            return Err(inv(
                "device_count",
                format!("{} (must be 1..={MAX_DEVICES})", self.members.len()),
            ));
        }
        if self.device_index as usize >= self.members.len() {
            return Err(inv(
                "device_index",
                format!("{} out of range", self.device_index),
            ));
        }
        for (i, m) in self.members.iter().enumerate() {
            let fits = Self::slots_for_device(m.size_bytes, p);
            if m.slot_count == 0 || m.slot_count > fits {
                return Err(inv(
                    "members",
                    format!(
                        "member {i}: slot_count {} does not fit size {} (at most {fits})",
                        m.slot_count, m.size_bytes
                    ),
                ));
            }
            if m.uuid.is_nil() {
                return Err(inv("members", format!("member {i}: nil uuid")));
            }
        }
        if !matches!(
            self.channel_layout,
            CHANNEL_LAYOUT_ROUND_ROBIN | CHANNEL_LAYOUT_INTERLEAVED
        ) {
            return Err(inv(
                "channel_layout",
                format!(
                    "{} (known: 1 = round-robin, 2 = interleaved)",
                    self.channel_layout
                ),
            ));
        }
        if self.channels.is_empty() || self.channels.len() > MAX_CHANNELS {
            return Err(inv(
                "channel_count",
                format!("{} (must be 1..={MAX_CHANNELS})", self.channels.len()),
            ));
        }
        for (i, c) in self.channels.iter().enumerate() {
            if c.name.is_empty() || c.name.len() > NAME_BYTES || c.name.contains('\0') {
                return Err(inv(
                    "channel name",
                    format!("channel {i}: {:?} (1..=32 bytes, no NUL)", c.name),
                ));
            }
            let dt_ok =
                c.datatype.len() <= DATATYPE_BYTES && datatype_sample_bytes(&c.datatype).is_some();
            if !dt_ok {
                return Err(inv(
                    "channel datatype",
                    format!("channel {i}: {:?} is not a SigMF datatype", c.datatype),
                ));
            }
            if !(c.sample_rate_hz.is_finite() && c.sample_rate_hz >= 0.0) {
                return Err(inv(
                    "channel sample_rate_hz",
                    format!("channel {i}: {}", c.sample_rate_hz),
                ));
            }
        }
        if self.channel_layout == CHANNEL_LAYOUT_INTERLEAVED {
            // Interleaved frames: one datatype for every channel.
            let first = &self.channels[0].datatype;
            if let Some(i) = self.channels.iter().position(|c| &c.datatype != first) {
                return Err(inv(
                    "channel datatype",
                    format!(
                        "channel {i}: {:?} differs from channel 0's {first:?} (the interleaved layout needs one datatype)",
                        self.channels[i].datatype
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The 1.1 time anchor: none in 1.0 (its bytes are reserved there), none
/// when the clock code is 0 (then the anchor's bytes are zero).
fn decode_anchor(bytes: &[u8], minor: u16) -> Result<Option<TimeAnchor>, FormatError> {
    let inv = |detail: String| FormatError::invalid(WHAT, "time_anchor", detail);
    let raw = &bytes[OFF_ANCHOR..OFF_ANCHOR + ANCHOR_BYTES];
    if minor < 1 {
        return Ok(None);
    }
    let known = crate::knows_minor(minor);
    if known && !all_zero(&raw[18..]) {
        return Err(inv(
            "reserved bytes after the clock code are not zero".into()
        ));
    }
    let code = u16_at(raw, 16);
    if code == 0 {
        if known && !all_zero(raw) {
            return Err(inv("clock code 0 (no anchor) with non-zero times".into()));
        }
        return Ok(None);
    }
    match CardClock::from_code(code) {
        Some(clock) => Ok(Some(TimeAnchor {
            clock,
            card_ns: u64_at(raw, 0),
            realtime_ns: u64_at(raw, 8),
        })),
        None if known => Err(inv(format!(
            "clock code {code} (known: 1 = sample counter, 2 = host monotonic at end of fill)"
        ))),
        None => Ok(None),
    }
}

fn backup_offset(size_bytes: u64) -> u64 {
    (size_bytes / SUPERBLOCK_BYTES as u64).saturating_sub(1) * SUPERBLOCK_BYTES as u64
}

/// A NUL-padded UTF-8 string: text, then only NULs.
fn padded_str(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    if !all_zero(&raw[end..]) {
        return None;
    }
    String::from_utf8(raw[..end].to_vec()).ok()
}
