//! Read-back of the newest indexed slots after a write error.
//!
//! A device that fails a write may have "completed" the writes just before
//! it without storing them whole: the loop driver, for one, reports a short
//! write as a success, and the block layer merges neighbouring slot writes
//! into one request, so the slot that straddles the point where the backing
//! store filled up comes back as written. The recorder cannot see that from
//! the completion. So when a recording stops on an I/O error, the newest
//! indexed slots (at most one ring's worth: every slot that could have been
//! in flight with the failed one) are read back and checked with
//! [`formats::check_slot`], and the format's torn-tail rule
//! ([`formats::TornTail`], which `dmaplay reindex` follows too) decides:
//! a slot that fails is left out of the index, the others stay. A slot that
//! cannot be read at all (device gone) is left indexed: it may well be
//! intact, and `dmaplay verify` will say.

use crate::memory::SlotMemory;
use crate::target::Target;
use anyhow::{Context, Result};
use formats::check::SlotProblem;
use formats::index::{INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
use formats::{FormatError, IndexEntry, SlotHeader, TornTail, Uuid, SLOT_HEADER_BYTES};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// What the read-back found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readback {
    /// Slots read back and checked.
    pub checked: u64,
    /// Slots left out of the index (torn: they failed the check).
    pub dropped: u64,
    /// Slots that could not be read (left indexed).
    pub unreadable: u64,
    /// Slots a later lap of the ring overwrote after the index named them
    /// (ring mode: the devices run ahead of the index; left indexed, as
    /// stale entries are, and `dmaplay reindex` indexes the newer slots).
    pub overwritten: u64,
    /// Index entries after the cut.
    pub entries: u64,
}

/// Checks the last `max_slots` of the first `indexed` entries of `index`
/// (those the recorder wrote and synced) against the targets and takes the
/// torn ones out of the index (then fdatasyncs it). An entry that does not
/// decode, or names no target, is taken out too. Buffer 0 of `memory` is the
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
    let rule = TornTail {
        window_slots: max_slots,
    };
    let window = rule.window(entries as usize);
    // SAFETY: the ring is torn down and the card stopped (see record.rs):
    // buffer 0 belongs to no one else; stride_bytes is inside the mapping.
    let buf =
        unsafe { std::slice::from_raw_parts_mut(memory.buffer_ptr(0), memory.stride_bytes()) };
    let mut out = Readback {
        entries,
        ..Readback::default()
    };
    // The window's entries that stay, from the first torn one on.
    let mut kept: Vec<[u8; INDEX_ENTRY_BYTES]> = Vec::with_capacity(window.len());
    let mut first_torn: Option<u64> = None;
    for i in window.start as u64..window.end as u64 {
        let mut raw = [0u8; INDEX_ENTRY_BYTES];
        let at = INDEX_HEADER_BYTES as u64 + i * INDEX_ENTRY_BYTES as u64;
        if index.read_exact_at(&mut raw, at).is_err() {
            // The index itself cannot be read: leave it as it is.
            out.unreadable += entries - i;
            return Ok(out);
        }
        let check = check_entry(targets, &raw, buf, recording_uuid, memory.payload_bytes());
        if matches!(check, Err(SlotProblem::ReadFailed(_))) {
            out.unreadable += 1;
        } else {
            out.checked += 1;
        }
        if overwritten_by_later_lap(&raw, &check) {
            out.overwritten += 1;
            if first_torn.is_some() {
                kept.push(raw);
            }
        } else if !rule.keeps(&check) {
            first_torn.get_or_insert(i);
            out.dropped += 1;
        } else if first_torn.is_some() {
            kept.push(raw);
        }
    }
    if let Some(first) = first_torn {
        take_out(index, first, &kept)?;
        out.entries = entries - out.dropped;
    }
    Ok(out)
}

/// Whether the slot entry `raw` names now holds a later slot of this
/// recording: a lap of the ring overwrote it, nothing was torn.
fn overwritten_by_later_lap(raw: &[u8], check: &Result<SlotHeader, SlotProblem>) -> bool {
    match (IndexEntry::decode(raw), check) {
        (Ok(entry), Err(SlotProblem::OtherSlot { slot_seq })) => *slot_seq > entry.slot_seq,
        _ => false,
    }
}

/// Reads the slot an index entry (`raw`) names into `buf` and checks it.
fn check_entry(
    targets: &[Target],
    raw: &[u8],
    buf: &mut [u8],
    recording_uuid: Uuid,
    payload_bytes: usize,
) -> Result<SlotHeader, SlotProblem> {
    let entry = IndexEntry::decode(raw).map_err(SlotProblem::BadHeader)?;
    let Some(target) = targets.get(entry.device_index as usize) else {
        return Err(SlotProblem::BadHeader(FormatError::Invalid {
            what: "index entry",
            field: "device_index",
            detail: format!("member {} does not exist", entry.device_index),
        }));
    };
    let slot_bytes = SLOT_HEADER_BYTES + entry.payload_bytes_used as usize;
    // Whole logical blocks, as O_DIRECT wants (a full slot always is).
    let read_bytes = slot_bytes.next_multiple_of(4096).min(buf.len());
    target
        .file
        .read_exact_at(&mut buf[..read_bytes], entry.device_offset_bytes)
        .map_err(|e| SlotProblem::ReadFailed(format!("{}: {e}", target.path.display())))?;
    formats::check_slot(&buf[..read_bytes], &entry, recording_uuid, payload_bytes)
}

/// Takes the torn entries out of the index: the entries that stay (`kept`,
/// all after position `first`) move down to `first`, then the file ends
/// after them, durably. Written before the cut, so a crash in between
/// leaves a longer index whose slot numbers stop increasing (a reader
/// reports the damage; reindex rebuilds it), never a shorter one.
fn take_out(index: &File, first: u64, kept: &[[u8; INDEX_ENTRY_BYTES]]) -> Result<()> {
    let at = INDEX_HEADER_BYTES as u64 + first * INDEX_ENTRY_BYTES as u64;
    index
        .write_all_at(&kept.concat(), at)
        .context("index: moving the entries after a torn slot")?;
    let end = at + (kept.len() * INDEX_ENTRY_BYTES) as u64;
    index
        .set_len(end)
        .context("index: cutting it after taking out torn slots")?;
    index
        .sync_data()
        .context("index: fdatasync after taking out torn slots")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD_BYTES: usize = 4096;
    const SLOTS: u64 = 8;

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("dmarec-readback-{}-{name}", std::process::id()))
    }

    /// Removes the files on drop, also when the test fails.
    struct Files(Vec<std::path::PathBuf>);
    impl Drop for Files {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// A one-member recording of SLOTS slots in a regular file, its index
    /// (header + entries), and the entries.
    fn recording(files: &Files, uuid: Uuid) -> (Target, File, Vec<IndexEntry>) {
        recording_of(files, uuid, PAYLOAD_BYTES)
    }

    /// As `recording`, each slot's payload `used_bytes` long.
    fn recording_of(
        files: &Files,
        uuid: Uuid,
        used_bytes: usize,
    ) -> (Target, File, Vec<IndexEntry>) {
        let target_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&files.0[0])
            .unwrap();
        let mut index_bytes = vec![0u8; INDEX_HEADER_BYTES];
        let mut entries = Vec::new();
        for slot_seq in 0..SLOTS {
            let payload = vec![slot_seq as u8 + 1; used_bytes];
            let header = SlotHeader {
                recording_uuid: uuid,
                slot_seq,
                card_seq: slot_seq,
                payload_bytes_used: used_bytes as u32,
                payload_crc32: formats::crc32(&payload),
                ..SlotHeader::default()
            };
            let offset_bytes = formats::DATA_START_BYTES + slot_seq * 8192;
            target_file
                .write_all_at(&header.encode(), offset_bytes)
                .unwrap();
            target_file
                .write_all_at(&payload, offset_bytes + SLOT_HEADER_BYTES as u64)
                .unwrap();
            let entry = IndexEntry::from_header(&header, offset_bytes);
            index_bytes.extend_from_slice(&entry.encode());
            entries.push(entry);
        }
        std::fs::write(&files.0[1], &index_bytes).unwrap();
        let index = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&files.0[1])
            .unwrap();
        let target = Target {
            path: files.0[0].clone(),
            size_bytes: target_file.metadata().unwrap().len(),
            file: target_file,
            is_block_device: false,
            logical_block_bytes: 512,
            created: false,
        };
        (target, index, entries)
    }

    fn indexed_seqs(index: &File) -> Vec<u64> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &*index, &mut bytes).unwrap();
        bytes[INDEX_HEADER_BYTES..]
            .chunks(INDEX_ENTRY_BYTES)
            .map(|raw| IndexEntry::decode(raw).unwrap().slot_seq)
            .collect()
    }

    /// Loses a byte of `entry`'s payload, `at_bytes` into it: a torn write.
    fn tear(target: &Target, entry: &IndexEntry, at_bytes: u64) {
        let at = entry.device_offset_bytes + SLOT_HEADER_BYTES as u64 + at_bytes;
        target.file.write_all_at(&[0xEE], at).unwrap();
    }

    /// The read-back of the last 4 of `SLOTS` synced slots, one buffer of
    /// `PAYLOAD_BYTES` to read into.
    fn check_last_four(target: Target, index: &File, uuid: Uuid) -> Readback {
        let memory = SlotMemory::allocate(1, PAYLOAD_BYTES).unwrap();
        check_tail(&[target], index, &memory, uuid, SLOTS, 4).unwrap()
    }

    #[test]
    fn torn_slots_in_the_window_leave_the_index_and_the_intact_ones_after_them_stay() {
        let files = Files(vec![temp_path("target"), temp_path("index")]);
        let uuid = Uuid::from_random_bytes([5; 16]);
        let (target, index, entries) = recording(&files, uuid);
        // Slots 5 and 7 torn (a byte of their payload lost), 6 intact.
        for torn in [5usize, 7] {
            tear(&target, &entries[torn], 10);
        }
        let found = check_last_four(target, &index, uuid);
        assert_eq!(
            found,
            Readback {
                checked: 4,
                dropped: 2,
                unreadable: 0,
                overwritten: 0,
                entries: SLOTS - 2
            }
        );
        assert_eq!(indexed_seqs(&index), vec![0, 1, 2, 3, 4, 6]);
    }

    #[test]
    fn a_slot_a_later_lap_overwrote_is_counted_as_overwritten_not_torn() {
        let files = Files(vec![temp_path("lap-target"), temp_path("lap-index")]);
        let uuid = Uuid::from_random_bytes([6; 16]);
        let (target, index, entries) = recording(&files, uuid);
        // Slot 6's position now holds slot 6 + SLOTS (the ring's next lap);
        // slot 7 is torn.
        let later = SlotHeader {
            recording_uuid: uuid,
            slot_seq: 6 + SLOTS,
            card_seq: 6 + SLOTS,
            payload_bytes_used: PAYLOAD_BYTES as u32,
            payload_crc32: formats::crc32(&vec![7u8; PAYLOAD_BYTES]),
            ..SlotHeader::default()
        };
        let at = entries[6].device_offset_bytes;
        target.file.write_all_at(&later.encode(), at).unwrap();
        tear(&target, &entries[7], 10);
        let found = check_last_four(target, &index, uuid);
        assert_eq!(
            found,
            Readback {
                checked: 4,
                dropped: 1,
                unreadable: 0,
                overwritten: 1,
                entries: SLOTS - 1
            }
        );
        assert_eq!(indexed_seqs(&index), vec![0, 1, 2, 3, 4, 5, 6]);
    }

    /// `path` opened for writing only: every read of it fails (EBADF).
    fn write_only(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new().write(true).open(path).unwrap()
    }

    #[test]
    fn an_index_shorter_than_the_synced_count_is_read_as_far_as_it_goes() {
        let files = Files(vec![temp_path("target-short"), temp_path("index-short")]);
        let uuid = Uuid::from_random_bytes([7; 16]);
        let (target, index, _) = recording(&files, uuid);
        let memory = SlotMemory::allocate(1, PAYLOAD_BYTES).unwrap();
        let found = check_tail(&[target], &index, &memory, uuid, SLOTS + 5, 4).unwrap();
        assert_eq!((found.checked, found.dropped, found.entries), (4, 0, SLOTS));
    }

    #[test]
    fn unreadable_slots_and_an_unreadable_index_are_counted_and_left_as_they_are() {
        let files = Files(vec![
            temp_path("target-unreadable"),
            temp_path("index-unreadable"),
        ]);
        let uuid = Uuid::from_random_bytes([8; 16]);
        let (mut target, index, _) = recording(&files, uuid);
        let memory = SlotMemory::allocate(1, PAYLOAD_BYTES).unwrap();
        target.file = write_only(&files.0[0]);
        let found = check_tail(
            std::slice::from_ref(&target),
            &index,
            &memory,
            uuid,
            SLOTS,
            3,
        )
        .unwrap();
        assert_eq!(
            found,
            Readback {
                checked: 0,
                dropped: 0,
                unreadable: 3,
                overwritten: 0,
                entries: SLOTS
            }
        );
        let index = write_only(&files.0[1]);
        let found = check_tail(&[target], &index, &memory, uuid, SLOTS, 3).unwrap();
        assert_eq!(
            (found.unreadable, found.entries),
            (3, SLOTS),
            "the window's 3 entries"
        );
        assert_eq!(
            indexed_seqs(&File::open(&files.0[1]).unwrap()),
            (0..SLOTS).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_slot_is_read_only_as_far_as_its_payload_goes() {
        // Half-used payloads in 16 KiB-payload buffers; a read of a whole
        // buffer at the last slot would run past the end of the file.
        let files = Files(vec![temp_path("target-half"), temp_path("index-half")]);
        let uuid = Uuid::from_random_bytes([9; 16]);
        let (target, index, entries) = recording_of(&files, uuid, PAYLOAD_BYTES / 2);
        // The file ends at the last slot's last whole block (reads are of
        // whole 4 KiB blocks, as O_DIRECT wants).
        let end = entries[SLOTS as usize - 1].device_offset_bytes + 2 * 4096;
        target.file.set_len(end).unwrap();
        let memory = SlotMemory::allocate(1, 4 * PAYLOAD_BYTES).unwrap();
        let found = check_tail(&[target], &index, &memory, uuid, SLOTS, 4).unwrap();
        assert_eq!(
            found,
            Readback {
                checked: 4,
                dropped: 0,
                unreadable: 0,
                overwritten: 0,
                entries: SLOTS
            }
        );
    }

    #[test]
    fn a_torn_slot_outside_the_window_is_not_the_read_backs_business() {
        let files = Files(vec![temp_path("target-old"), temp_path("index-old")]);
        let uuid = Uuid::from_random_bytes([6; 16]);
        let (target, index, entries) = recording(&files, uuid);
        tear(&target, &entries[1], 0);
        let found = check_last_four(target, &index, uuid);
        assert_eq!((found.checked, found.dropped, found.entries), (4, 0, SLOTS));
        assert_eq!(indexed_seqs(&index), (0..SLOTS).collect::<Vec<_>>());
    }
}
