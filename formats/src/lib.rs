//! The dmarec on-disk format, parsed strictly.
//!
//! A recording is a set of one or more target devices (a *stripe set*), each
//! starting with a [`Superblock`] (with a backup copy at the device's end),
//! followed by a data area of fixed-size *slots*. A slot is one recorded card
//! buffer: a 4 KiB [`SlotHeader`] followed by the payload, written by one
//! O_DIRECT write, so any slot can be identified and checked on its own. An
//! append-only index file ([`index`]) lists every slot in sequence order for
//! fast seeks; it can always be rebuilt from the devices. Where slot number
//! `n` lives is a pure function of the geometry ([`Layout`]).
//!
//! Everything is little-endian at fixed offsets; every structure carries a
//! magic, a version and a CRC-32, and decoding returns a [`FormatError`] that
//! says what is wrong (bad magic, CRC mismatch with both values, unknown
//! version, truncated at byte N). Payloads are never copied: decoders read
//! from borrowed byte slices. The byte layout is specified in docs/FORMAT.md.

mod bytes;
pub mod channel_layout;
pub mod check;
mod error;
pub mod index;
mod layout;
pub mod pattern;
mod payload_size;
pub mod scan;
mod slot;
mod superblock;
pub mod time;
mod uuid;

pub use channel_layout::{ChannelLayout, CHANNEL_LAYOUT_INTERLEAVED, CHANNEL_LAYOUT_ROUND_ROBIN};
pub use check::{check_slot, SlotProblem, TornTail};
pub use error::FormatError;
pub use index::{IndexEntry, IndexHeader};
pub use layout::{Layout, Location};
pub use payload_size::{PayloadSize, PayloadSizeError, MAX_PAYLOAD_BYTES, MIN_PAYLOAD_BYTES};
pub use scan::{ScanEntry, ScanState, ScanTable, MAX_SCANS, SCAN_FLAG_RING};
pub use slot::{SlotHeader, SLOT_FLAG_GAP, SLOT_HEADER_BYTES};
pub use superblock::{
    datatype_sample_bytes, Channel, Member, Superblock, DATA_START_BYTES, MAX_CHANNELS,
    MAX_DEVICES, SUPERBLOCK_BYTES, SUPERBLOCK_FLAG_RING,
};
pub use uuid::Uuid;

/// Major version of the format this crate writes and reads. A reader refuses
/// any other major version; it accepts a higher minor version (fields added in
/// reserved space) and ignores what it does not know.
pub const FORMAT_VERSION_MAJOR: u16 = 1;
/// Minor version this crate writes. 1.1 added the card time anchor and the
/// interleaved channel layout (superblock `channel_layout` 2), 1.2 the scan
/// table; 1.0 recordings read unchanged.
pub const FORMAT_VERSION_MINOR: u16 = 2;

/// Whether this build knows every field of minor version `minor`: then
/// reserved bytes must be zero; a newer minor may use them.
pub(crate) fn knows_minor(minor: u16) -> bool {
    minor <= FORMAT_VERSION_MINOR
}

/// CRC-32 (IEEE 802.3 polynomial, the one zlib's `crc32` computes) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}
