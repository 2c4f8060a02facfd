//! The index writer: turns out-of-order slot completions into an
//! append-only index in slot order, in preallocated batches.
//!
//! Completed slots land in a reorder window (one entry per ring buffer, so
//! it can never overflow: the recorder has at most that many slots in
//! flight, see [`IndexWriter::can_accept`]); the contiguous prefix moves into
//! the filling batch. A batch is *sealed* when it is full or when the
//! journal starts a sync round ([`IndexWriter::seal`]); a sealed batch is
//! written only when the journal allows it ([`IndexWriter::next_write`]
//! with the number of entries whose slots are durable on the targets), so
//! no entry reaches the index file before its slot is flushed. When and
//! why is [`crate::journal`]'s business; this module only keeps the bytes
//! and their order. All memory is allocated at start-up.

use formats::index::INDEX_ENTRY_BYTES;
use formats::IndexEntry;

/// Entries per batch (64 KiB of index).
pub const BATCH_ENTRIES: usize = 1024;
/// Batches in the pool: one filling, the rest sealed and waiting for their
/// slots' flush, or being written. 8 × 1024 entries cover about 2.8 s of a
/// 1.5 GB/s stream of 512 KiB slots.
pub const BATCH_COUNT: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchState {
    Free,
    Filling,
    /// Complete; waiting until its slots are durable, or for the rest of a
    /// short write.
    Sealed,
    InFlight,
}

struct Batch {
    bytes: Box<[u8]>,
    len_entries: usize,
    /// slot_seq of the first entry.
    first_seq: u64,
    file_offset: u64,
    /// Bytes of the batch already written (a short write leaves a rest).
    written_bytes: usize,
    /// Length of the write in flight.
    in_flight_bytes: usize,
    state: BatchState,
}

impl Batch {
    fn end_seq(&self) -> u64 {
        self.first_seq + self.len_entries as u64
    }
}

/// A sealed batch to write: `len` bytes at `ptr`, at `file_offset`.
pub struct BatchWrite {
    pub batch: usize,
    pub ptr: *const u8,
    pub len: u32,
    pub file_offset: u64,
}

pub struct IndexWriter {
    window: Box<[Option<IndexEntry>]>,
    /// Entries in the window (completed, not yet in a batch).
    window_entries: usize,
    /// Next slot_seq to append to a batch.
    next_seq: u64,
    batches: Vec<Batch>,
    filling: Option<usize>,
    /// File offset where the next sealed batch goes.
    append_offset: u64,
    /// Entries in sealed batches (written or not): the end of what a sync
    /// round started now can cover.
    sealed_seq: u64,
    writes_in_flight: usize,
    /// The first slot that will never be indexed (its write failed, or the
    /// index stopped): the index ends before it, and later completions are
    /// not indexed (the slots are on the device; `dmaplay reindex` finds them).
    end_seq: u64,
}

impl IndexWriter {
    pub fn new(window_slots: usize, first_entry_offset: u64) -> IndexWriter {
        assert!(window_slots > 0);
        IndexWriter {
            window: vec![None; window_slots].into_boxed_slice(),
            window_entries: 0,
            next_seq: 0,
            batches: (0..BATCH_COUNT)
                .map(|_| Batch {
                    // A non-zero fill writes every page now (zeroed memory
                    // would stay unmapped until the hot path touched it).
                    bytes: vec![0xA5u8; BATCH_ENTRIES * INDEX_ENTRY_BYTES].into_boxed_slice(),
                    len_entries: 0,
                    first_seq: 0,
                    file_offset: 0,
                    written_bytes: 0,
                    in_flight_bytes: 0,
                    state: BatchState::Free,
                })
                .collect(),
            filling: None,
            append_offset: first_entry_offset,
            sealed_seq: 0,
            writes_in_flight: 0,
            end_seq: u64::MAX,
        }
    }

    /// Whether slot `slot_seq` may be started: its completion must find a
    /// free place in the reorder window.
    pub fn can_accept(&self, slot_seq: u64) -> bool {
        slot_seq < self.next_seq + self.window.len() as u64
    }

    /// Records the completion of a slot's write.
    pub fn complete(&mut self, entry: IndexEntry) {
        if entry.slot_seq >= self.end_seq {
            return;
        }
        assert!(
            entry.slot_seq >= self.next_seq && self.can_accept(entry.slot_seq),
            "slot {} outside the reorder window",
            entry.slot_seq
        );
        let at = (entry.slot_seq % self.window.len() as u64) as usize;
        assert!(
            self.window[at].is_none(),
            "slot {} completed twice",
            entry.slot_seq
        );
        self.window[at] = Some(entry);
        self.window_entries += 1;
        self.drain();
    }

    /// Slot `slot_seq`'s write failed: the index ends before it.
    pub fn fail_slot(&mut self, slot_seq: u64) {
        assert!(
            slot_seq >= self.next_seq,
            "slot {slot_seq} failed after being indexed"
        );
        self.end_seq = self.end_seq.min(slot_seq);
        for w in self.window.iter_mut() {
            if w.is_some_and(|e| e.slot_seq >= slot_seq) {
                *w = None;
                self.window_entries -= 1;
            }
        }
    }

    /// Nothing more is appended or written (an index write, an fdatasync or
    /// a target flush failed): the index file keeps what it has.
    pub fn stop(&mut self) {
        self.end_seq = self.next_seq;
        self.window.iter_mut().for_each(|w| *w = None);
        self.window_entries = 0;
        for b in self.batches.iter_mut() {
            if b.state != BatchState::InFlight {
                b.state = BatchState::Free;
            }
        }
        self.filling = None;
    }

    /// Moves the contiguous completed prefix into batches, as far as free
    /// batches allow (bounded by the window size).
    fn drain(&mut self) {
        for _ in 0..self.window.len() {
            if self.next_seq >= self.end_seq {
                return;
            }
            let at = (self.next_seq % self.window.len() as u64) as usize;
            let Some(entry) = self.window[at] else { return };
            let Some(b) = self.filling_batch() else {
                return;
            };
            let batch = &mut self.batches[b];
            let o = batch.len_entries * INDEX_ENTRY_BYTES;
            entry.encode_into(&mut batch.bytes[o..o + INDEX_ENTRY_BYTES]);
            batch.len_entries += 1;
            self.window[at] = None;
            self.window_entries -= 1;
            self.next_seq += 1;
            if batch.len_entries == BATCH_ENTRIES {
                self.seal_filling();
            }
        }
    }

    fn filling_batch(&mut self) -> Option<usize> {
        if let Some(b) = self.filling {
            return Some(b);
        }
        let b = self
            .batches
            .iter()
            .position(|b| b.state == BatchState::Free)?;
        let batch = &mut self.batches[b];
        batch.state = BatchState::Filling;
        batch.len_entries = 0;
        batch.first_seq = self.next_seq;
        batch.written_bytes = 0;
        self.filling = Some(b);
        Some(b)
    }

    fn seal_filling(&mut self) {
        let Some(b) = self.filling.take() else { return };
        let batch = &mut self.batches[b];
        assert!(batch.len_entries > 0, "sealing an empty batch");
        assert_eq!(
            batch.first_seq, self.sealed_seq,
            "batches sealed out of order"
        );
        batch.state = BatchState::Sealed;
        batch.file_offset = self.append_offset;
        self.append_offset += (batch.len_entries * INDEX_ENTRY_BYTES) as u64;
        self.sealed_seq = batch.end_seq();
    }

    /// Seals whatever the filling batch holds. Returns the number of
    /// entries in sealed batches: what a sync round started now covers.
    pub fn seal(&mut self) -> u64 {
        // A filling batch always holds an entry: it is taken when the first
        // one arrives and sealed when full (seal_filling asserts it).
        self.seal_filling();
        self.drain(); // entries held back for want of a free batch
        self.sealed_seq
    }

    /// The next sealed batch whose entries are all below `durable_slots`
    /// (their slots are durable on the targets), or the rest of one whose
    /// write came back short. Marks it in flight.
    pub fn next_write(&mut self, durable_slots: u64) -> Option<BatchWrite> {
        let b = self
            .batches
            .iter()
            .position(|b| b.state == BatchState::Sealed && b.end_seq() <= durable_slots)?;
        let batch = &mut self.batches[b];
        let len = batch.len_entries * INDEX_ENTRY_BYTES - batch.written_bytes;
        assert!(len > 0, "sealed batch {b} has nothing left to write");
        batch.state = BatchState::InFlight;
        batch.in_flight_bytes = len;
        self.writes_in_flight += 1;
        Some(BatchWrite {
            batch: b,
            ptr: batch.bytes[batch.written_bytes..].as_ptr(),
            len: len as u32,
            file_offset: batch.file_offset + batch.written_bytes as u64,
        })
    }

    /// A batch write completed with `written` bytes (> 0). A short write
    /// leaves the batch sealed with its rest for [`IndexWriter::next_write`].
    pub fn write_done(&mut self, b: usize, written: usize) {
        let batch = &mut self.batches[b];
        assert_eq!(batch.state, BatchState::InFlight);
        assert!(
            written > 0 && written <= batch.in_flight_bytes,
            "batch {b}: {written} bytes written of {}",
            batch.in_flight_bytes
        );
        self.writes_in_flight -= 1;
        batch.written_bytes += written;
        if batch.written_bytes < batch.len_entries * INDEX_ENTRY_BYTES {
            batch.state = BatchState::Sealed;
            return;
        }
        batch.state = BatchState::Free;
        self.drain();
    }

    /// A batch write failed: the batch is free, nothing more is written.
    pub fn write_failed(&mut self, b: usize) {
        assert_eq!(self.batches[b].state, BatchState::InFlight);
        self.batches[b].state = BatchState::Free;
        self.writes_in_flight -= 1;
        self.stop();
    }

    pub fn writes_in_flight(&self) -> usize {
        self.writes_in_flight
    }

    /// Sealed batches waiting for a write.
    pub fn sealed_batches(&self) -> usize {
        self.batches
            .iter()
            .filter(|b| b.state == BatchState::Sealed)
            .count()
    }

    /// Whether any completed slot is not yet in a sealed batch.
    pub fn unsealed(&self) -> bool {
        debug_assert_eq!(
            self.window_entries,
            self.window.iter().filter(|w| w.is_some()).count()
        );
        self.window_entries > 0 || self.filling.is_some()
    }

    /// Entries appended to batches so far (the contiguous completed prefix).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(s: u64) -> IndexEntry {
        IndexEntry {
            slot_seq: s,
            ..Default::default()
        }
    }

    fn seqs(bw: &BatchWrite) -> Vec<u64> {
        // SAFETY: the batch stays allocated while the writer lives and is
        // not touched while in flight.
        let bytes = unsafe { std::slice::from_raw_parts(bw.ptr, bw.len as usize) };
        bytes
            .chunks(INDEX_ENTRY_BYTES)
            .map(|c| IndexEntry::decode(c).unwrap().slot_seq)
            .collect()
    }

    #[test]
    fn reorders_completions_into_slot_order() {
        let mut w = IndexWriter::new(4, 8192);
        w.complete(entry(1));
        w.complete(entry(2));
        assert_eq!(w.next_seq(), 0);
        assert!(!w.can_accept(4));
        w.complete(entry(0));
        assert_eq!(w.next_seq(), 3);
        assert_eq!(w.seal(), 3);
        let bw = w.next_write(3).unwrap();
        assert_eq!(
            (bw.len as usize, bw.file_offset),
            (3 * INDEX_ENTRY_BYTES, 8192)
        );
        assert_eq!(seqs(&bw), vec![0, 1, 2]);
        w.write_done(bw.batch, 100);
        let rest = w.next_write(3).expect("the rest of a short write");
        assert_eq!(
            (rest.len as usize, rest.file_offset),
            (3 * INDEX_ENTRY_BYTES - 100, 8192 + 100)
        );
        w.write_done(rest.batch, rest.len as usize);
        assert!(w.next_write(u64::MAX).is_none());
        w.complete(entry(3));
        assert_eq!(w.seal(), 4);
        let next = w.next_write(4).unwrap();
        assert_eq!(next.file_offset, 8192 + 3 * 64);
    }

    #[test]
    fn a_sealed_batch_waits_until_its_slots_are_durable() {
        let mut w = IndexWriter::new(8, 0);
        (0..3).for_each(|s| w.complete(entry(s)));
        assert_eq!(w.seal(), 3);
        assert!(w.next_write(2).is_none(), "slot 2 is not durable yet");
        assert!(w.next_write(3).is_some());
    }

    #[test]
    fn full_batches_seal_themselves_and_a_full_pool_holds_entries_back() {
        let window = BATCH_ENTRIES * (BATCH_COUNT + 1);
        let mut w = IndexWriter::new(window, 0);
        for s in 0..window as u64 {
            w.complete(entry(s));
        }
        assert_eq!(w.sealed_batches(), BATCH_COUNT);
        assert_eq!(w.next_seq(), (BATCH_ENTRIES * BATCH_COUNT) as u64);
        assert!(w.unsealed(), "the last batch's entries wait in the window");
        let bw = w.next_write(u64::MAX).unwrap();
        w.write_done(bw.batch, bw.len as usize);
        assert_eq!(w.next_seq(), window as u64, "a freed batch takes them");
    }

    #[test]
    fn a_failed_slot_ends_the_index_and_later_completions_do_not_hang_it() {
        let mut w = IndexWriter::new(8, 8192);
        w.complete(entry(0));
        w.complete(entry(2)); // completes before 1, which then fails
        w.fail_slot(1);
        w.complete(entry(3));
        assert_eq!(w.seal(), 1, "index ends before the failed slot");
        assert!(!w.unsealed());
    }

    #[test]
    fn a_failed_index_write_is_not_counted_and_stops_the_index() {
        let mut w = IndexWriter::new(8, 8192);
        w.complete(entry(0));
        w.seal();
        let bw = w.next_write(1).unwrap();
        w.write_failed(bw.batch);
        assert_eq!(w.writes_in_flight(), 0);
        w.complete(entry(1));
        assert!(!w.unsealed());
        assert_eq!(w.seal(), 1);
        assert!(w.next_write(u64::MAX).is_none());
    }

    #[test]
    fn unsealed_until_sealed() {
        let mut w = IndexWriter::new(4, 0);
        assert!(!w.unsealed());
        w.complete(entry(1));
        assert!(w.unsealed(), "an entry waits in the window");
        w.complete(entry(0));
        assert!(w.unsealed(), "two entries in the filling batch");
        assert_eq!(w.seal(), 2);
        assert!(!w.unsealed());
        assert_eq!(w.seal(), 2, "sealing again seals nothing");
    }

    #[test]
    #[should_panic(expected = "completed twice")]
    fn double_completion_is_a_bug() {
        let mut w = IndexWriter::new(4, 0);
        w.complete(entry(1));
        w.complete(entry(1));
    }
}
