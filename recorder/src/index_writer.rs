//! The index writer: turns out-of-order write completions into an
//! append-only index in slot order, in preallocated batches.
//!
//! Completed slots land in a reorder window (one entry per ring buffer, so
//! it can never overflow: the recorder has at most that many slots in
//! flight, see [`IndexWriter::can_accept`]); the contiguous prefix moves into
//! the current batch. A batch is sealed when full or when a flush is due, and
//! its bytes are written by the recorder's io_uring at the batch's file
//! offset, followed by an fdatasync at least every `flush_interval_ms`. All
//! memory is allocated at start-up.

use formats::index::INDEX_ENTRY_BYTES;
use formats::IndexEntry;

/// Entries per batch (64 KiB of index).
pub const BATCH_ENTRIES: usize = 1024;
/// Batches in the pool: one filling, the rest in flight.
pub const BATCH_COUNT: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchState {
    Free,
    Filling,
    InFlight,
}

struct Batch {
    bytes: Box<[u8]>,
    len_entries: usize,
    file_offset: u64,
    state: BatchState,
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
    /// Next slot_seq to append to the index.
    next_seq: u64,
    batches: Vec<Batch>,
    filling: Option<usize>,
    /// File offset where the next sealed batch goes.
    append_offset: u64,
    /// Entries handed to the kernel in writes that completed.
    pub entries_written: u64,
    /// Entries covered by a completed fdatasync.
    pub entries_durable: u64,
    writes_in_flight: usize,
    /// The first slot that will never be indexed (its write failed): the
    /// index ends before it, and later completions are not indexed (the
    /// slots are on the device; `dmaplay reindex` finds them).
    end_seq: u64,
    /// An index write failed: what is durable is what was synced before.
    pub failed: bool,
}

impl IndexWriter {
    pub fn new(window_slots: usize, first_entry_offset: u64) -> IndexWriter {
        assert!(window_slots > 0);
        IndexWriter {
            window: vec![None; window_slots].into_boxed_slice(),
            next_seq: 0,
            batches: (0..BATCH_COUNT)
                .map(|_| Batch {
                    // A non-zero fill writes every page now (zeroed memory
                    // would stay unmapped until the hot path touched it).
                    bytes: vec![0xA5u8; BATCH_ENTRIES * INDEX_ENTRY_BYTES].into_boxed_slice(),
                    len_entries: 0,
                    file_offset: 0,
                    state: BatchState::Free,
                })
                .collect(),
            filling: None,
            append_offset: first_entry_offset,
            entries_written: 0,
            entries_durable: 0,
            writes_in_flight: 0,
            end_seq: u64::MAX,
            failed: false,
        }
    }

    /// Whether slot `slot_seq` may be started: its completion must find a
    /// free place in the reorder window.
    pub fn can_accept(&self, slot_seq: u64) -> bool {
        slot_seq < self.next_seq + self.window.len() as u64
    }

    /// Records the completion of a slot's write.
    pub fn complete(&mut self, e: IndexEntry) {
        if e.slot_seq >= self.end_seq {
            return;
        }
        assert!(
            e.slot_seq >= self.next_seq && self.can_accept(e.slot_seq),
            "slot {} outside the reorder window",
            e.slot_seq
        );
        let w = (e.slot_seq % self.window.len() as u64) as usize;
        assert!(
            self.window[w].is_none(),
            "slot {} completed twice",
            e.slot_seq
        );
        self.window[w] = Some(e);
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
            }
        }
    }

    /// A batch write failed: free the batch without counting its entries.
    pub fn write_failed(&mut self, b: usize) {
        assert_eq!(self.batches[b].state, BatchState::InFlight);
        self.batches[b].state = BatchState::Free;
        self.writes_in_flight -= 1;
        self.failed = true;
        // Nothing more is appended after a hole in the file.
        self.end_seq = self.next_seq;
        self.window.iter_mut().for_each(|w| *w = None);
        if let Some(f) = self.filling.take() {
            self.batches[f].state = BatchState::Free;
        }
    }

    /// Moves the contiguous completed prefix into batches, as far as free
    /// batches allow (bounded by the window size).
    fn drain(&mut self) {
        for _ in 0..self.window.len() {
            if self.next_seq >= self.end_seq || self.failed {
                return;
            }
            let w = (self.next_seq % self.window.len() as u64) as usize;
            let Some(e) = self.window[w] else { return };
            let Some(b) = self.filling_batch() else {
                return;
            };
            let batch = &mut self.batches[b];
            let o = batch.len_entries * INDEX_ENTRY_BYTES;
            e.encode_into(&mut batch.bytes[o..o + INDEX_ENTRY_BYTES]);
            batch.len_entries += 1;
            self.window[w] = None;
            self.next_seq += 1;
        }
    }

    fn filling_batch(&mut self) -> Option<usize> {
        if let Some(b) = self.filling {
            if self.batches[b].len_entries < BATCH_ENTRIES {
                return Some(b);
            }
            return None; // full, waiting to be sealed
        }
        let b = self
            .batches
            .iter()
            .position(|b| b.state == BatchState::Free)?;
        self.batches[b].state = BatchState::Filling;
        self.batches[b].len_entries = 0;
        self.filling = Some(b);
        Some(b)
    }

    /// The next batch to write: the filling batch when it is full, or when
    /// `flush` asks for whatever it holds. Marks it in flight.
    pub fn seal(&mut self, flush: bool) -> Option<BatchWrite> {
        let b = self.filling?;
        let batch = &mut self.batches[b];
        if batch.len_entries == 0 || (!flush && batch.len_entries < BATCH_ENTRIES) {
            return None;
        }
        batch.state = BatchState::InFlight;
        batch.file_offset = self.append_offset;
        let len = batch.len_entries * INDEX_ENTRY_BYTES;
        self.append_offset += len as u64;
        self.filling = None;
        self.writes_in_flight += 1;
        Some(BatchWrite {
            batch: b,
            ptr: batch.bytes.as_ptr(),
            len: len as u32,
            file_offset: batch.file_offset,
        })
    }

    /// A batch write completed with `written` bytes. Returns the remainder
    /// to write again on a short write.
    pub fn write_done(&mut self, b: usize, written: usize, requested: usize) -> Option<BatchWrite> {
        let batch = &mut self.batches[b];
        assert_eq!(batch.state, BatchState::InFlight);
        if written < requested {
            return Some(BatchWrite {
                batch: b,
                // SAFETY: written < requested <= batch length.
                ptr: unsafe { batch.bytes.as_ptr().add(written) },
                len: (requested - written) as u32,
                file_offset: batch.file_offset + written as u64,
            });
        }
        // Retry remainders carry their own offsets; the batch is done when
        // the last byte of it is written.
        self.entries_written += batch.len_entries as u64;
        batch.state = BatchState::Free;
        self.writes_in_flight -= 1;
        self.drain();
        None
    }

    pub fn writes_in_flight(&self) -> usize {
        self.writes_in_flight
    }

    /// Slots completed but not yet in a sealed batch (window + filling).
    pub fn pending(&self) -> bool {
        self.filling
            .is_some_and(|b| self.batches[b].len_entries > 0)
            || self.window.iter().any(Option::is_some)
    }

    /// Entries appended so far (in batches, written or not).
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

    #[test]
    fn reorders_completions_into_slot_order() {
        let mut w = IndexWriter::new(4, 8192);
        w.complete(entry(1));
        w.complete(entry(2));
        assert_eq!(w.next_seq(), 0);
        assert!(!w.can_accept(4));
        w.complete(entry(0));
        assert_eq!(w.next_seq(), 3);
        let bw = w.seal(true).unwrap();
        assert_eq!(
            (bw.len as usize, bw.file_offset),
            (3 * INDEX_ENTRY_BYTES, 8192)
        );
        // SAFETY: the batch stays allocated while the writer lives.
        let bytes = unsafe { std::slice::from_raw_parts(bw.ptr, bw.len as usize) };
        let seqs: Vec<u64> = bytes
            .chunks(64)
            .map(|c| IndexEntry::decode(c).unwrap().slot_seq)
            .collect();
        assert_eq!(seqs, vec![0, 1, 2]);
        assert!(w.write_done(bw.batch, 100, bw.len as usize).is_some());
        assert!(w
            .write_done(bw.batch, bw.len as usize, bw.len as usize)
            .is_none());
        assert_eq!(w.entries_written, 3);
        w.complete(entry(3));
        let next = w.seal(true).unwrap();
        assert_eq!(next.file_offset, 8192 + 3 * 64);
    }

    #[test]
    fn a_failed_slot_ends_the_index_and_later_completions_do_not_hang_it() {
        let mut w = IndexWriter::new(8, 8192);
        w.complete(entry(0));
        w.complete(entry(2)); // completes before 1, which then fails
        w.fail_slot(1);
        w.complete(entry(3));
        assert!(!w.pending() || w.seal(true).is_some());
        assert_eq!(w.next_seq(), 1, "index ends before the failed slot");
        assert!(!w.pending());
    }

    #[test]
    fn a_failed_index_write_is_not_counted() {
        let mut w = IndexWriter::new(8, 8192);
        w.complete(entry(0));
        let bw = w.seal(true).unwrap();
        w.write_failed(bw.batch);
        assert_eq!((w.entries_written, w.writes_in_flight()), (0, 0));
        w.complete(entry(1));
        assert!(!w.pending() && w.seal(true).is_none());
    }

    #[test]
    #[should_panic(expected = "completed twice")]
    fn double_completion_is_a_bug() {
        let mut w = IndexWriter::new(4, 0);
        w.complete(entry(1));
        w.complete(entry(1));
    }
}
