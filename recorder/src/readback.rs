//! Read-back of the newest indexed slots after a write error.
//!
//! A device that fails a write may have "completed" the writes just before
//! it without storing them whole: the loop driver, for one, reports a short
//! write as a success, and the block layer merges neighbouring slot writes
//! into one request, so the slot that straddles the point where the backing
//! store filled up comes back as written. The recorder cannot see that from
//! the completion. So when a recording stops on an I/O error, the newest
//! indexed slots (at most one ring's worth: every slot that could have been
//! in flight with the failed one) are read back and checked (header and
//! payload CRC), and the index is cut before the first one that does not
//! check. A slot that cannot be read at all (device gone) is left indexed:
//! it may well be intact, and `dmaplay verify` will say.

use crate::memory::SlotMemory;
use crate::target::Target;
use anyhow::{Context, Result};
use formats::index::{INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
use formats::{IndexEntry, SlotHeader, Uuid, SLOT_HEADER_BYTES};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// What the read-back found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readback {
    /// Slots read back and checked.
    pub checked: u64,
    /// Slots left out of the index (the first damaged one and all after it).
    pub dropped: u64,
    /// Slots that could not be read (left indexed).
    pub unreadable: u64,
    /// Index entries after the cut.
    pub entries: u64,
}

/// Checks the last `max_slots` of the first `indexed` entries of `index`
/// (those the recorder wrote and synced) against the targets and truncates
/// the index before the first damaged slot (then fdatasyncs it). An entry
/// that does not decode is a damaged place too. Buffer 0 of `memory` is the
/// read buffer: nothing else uses it any more.
pub fn check_tail(
    targets: &[Target],
    index: &File,
    memory: &SlotMemory,
    recording_uuid: Uuid,
    indexed: u64,
    max_slots: u64,
) -> Result<Readback> {
    let len = index.metadata().context("index: stat")?.len();
    let in_file = len.saturating_sub(INDEX_HEADER_BYTES as u64) / INDEX_ENTRY_BYTES as u64;
    let entries = indexed.min(in_file);
    let first = entries.saturating_sub(max_slots);
    // SAFETY: the ring is torn down and the card stopped (see record.rs):
    // buffer 0 belongs to no one else; stride_bytes is inside the mapping.
    let buf =
        unsafe { std::slice::from_raw_parts_mut(memory.buffer_ptr(0), memory.stride_bytes()) };
    let mut out = Readback {
        entries,
        ..Readback::default()
    };
    let mut raw = [0u8; INDEX_ENTRY_BYTES];
    for i in first..entries {
        let at = INDEX_HEADER_BYTES as u64 + i * INDEX_ENTRY_BYTES as u64;
        if index.read_exact_at(&mut raw, at).is_err() {
            // The index itself cannot be read: leave it as it is.
            out.unreadable += entries - i;
            break;
        }
        let decoded = IndexEntry::decode(&raw)
            .ok()
            .and_then(|e| targets.get(e.device_index as usize).map(|t| (e, t)));
        let Some((entry, target)) = decoded else {
            cut(index, &mut out, i)?;
            break;
        };
        let slot_bytes = SLOT_HEADER_BYTES + entry.payload_bytes_used as usize;
        // Whole logical blocks, as O_DIRECT wants (a full slot always is).
        let read_bytes = slot_bytes.next_multiple_of(4096).min(buf.len());
        if target
            .file
            .read_exact_at(&mut buf[..read_bytes], entry.device_offset_bytes)
            .is_err()
        {
            out.unreadable += 1;
            continue;
        }
        out.checked += 1;
        let good = SlotHeader::decode(&buf[..SLOT_HEADER_BYTES]).is_ok_and(|h| {
            h.recording_uuid == recording_uuid
                && h.slot_seq == entry.slot_seq
                && h.payload_crc32 == entry.payload_crc32
                && h.check_payload(&buf[SLOT_HEADER_BYTES..slot_bytes]).is_ok()
        });
        if !good {
            cut(index, &mut out, i)?;
            break;
        }
    }
    Ok(out)
}

/// Ends the index before entry `at`, durably.
fn cut(index: &File, out: &mut Readback, at: u64) -> Result<()> {
    out.dropped = out.entries - at;
    out.entries = at;
    index
        .set_len(INDEX_HEADER_BYTES as u64 + at * INDEX_ENTRY_BYTES as u64)
        .context("index: cutting it before a damaged slot")?;
    index.sync_data().context("index: fdatasync after the cut")
}
