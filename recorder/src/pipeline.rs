//! The slot pipeline: every ring buffer's way from the card through the
//! recorder and the kernel back to the card.
//!
//! ```text
//!   card ──hand_over──▶ recorder ──prepare──▶ ready FIFO ──submit──▶ kernel
//!    ▲                                                                  │
//!    └──────────────────────── complete (whole slot written) ◀──────────┘
//! ```
//!
//! Each buffer has exactly one owner ([`Owner`]), asserted at every
//! transition. A prepared slot (CRC and header done) waits in the ready
//! FIFO, in slot order, until fewer than `depth` writes are in flight; a
//! short write is re-submitted from where it stopped (at most
//! [`MAX_SHORT_WRITES`] times); a failed write ends the pipeline's
//! submissions (what was prepared after it is abandoned with the card's
//! buffers). The pipeline knows nothing of io_uring: [`SlotPipeline::submit`]
//! hands each write to the loop as a [`WriteRequest`], and the loop reports
//! each completion's result back, so all of this is unit-tested with
//! fabricated completions. All memory is allocated at start-up.

use formats::{IndexEntry, Location, SlotHeader};
use std::collections::VecDeque;
use std::time::Instant;

/// Retries of a short write before giving up on a slot.
pub const MAX_SHORT_WRITES: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Card,
    Recorder,
    Kernel,
}

/// A slot write, prepared or in flight.
#[derive(Debug, Clone, Copy)]
struct SlotWrite {
    header: SlotHeader,
    loc: Location,
    done_bytes: u32,
    short_writes: u32,
    submitted_at: Option<Instant>,
}

/// One write to issue: `len_bytes` of buffer `buffer` from byte
/// `skip_bytes` on, to `offset_bytes` of target `device_index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRequest {
    pub buffer: usize,
    pub device_index: usize,
    pub offset_bytes: u64,
    pub skip_bytes: u32,
    pub len_bytes: u32,
}

/// A failed slot write, for the recorder's error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotFailure {
    pub device_index: usize,
    /// Where the failing write started on the device.
    pub offset_bytes: u64,
    pub slot_seq: u64,
    pub card_seq: u64,
    /// The errno, or None for a write that made no progress (a write that
    /// returned 0 bytes, or still short after MAX_SHORT_WRITES retries).
    pub errno: Option<i32>,
}

/// What a completion meant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Completed {
    /// The whole slot is written; the buffer is the card's again.
    Written {
        entry: IndexEntry,
        latency_ns: u64,
    },
    /// A short write: the rest is queued for the next submit.
    Partial,
    Failed(SlotFailure),
}

pub struct SlotPipeline {
    owner: Vec<Owner>,
    /// The slot each buffer carries while the recorder or the kernel owns it.
    writes: Vec<Option<SlotWrite>>,
    /// Prepared buffers waiting for a place in the queue, in slot order.
    ready: VecDeque<usize>,
    /// In-flight slots whose write came back short, to re-submit.
    rest: VecDeque<usize>,
    in_flight: usize,
    card_owned: usize,
    depth: usize,
    slot_bytes: u32,
    failed: bool,
    short_writes: u64,
}

impl SlotPipeline {
    /// `buffers` ring buffers, all the card's; at most `depth` writes of
    /// `slot_bytes` each in flight.
    pub fn new(buffers: usize, depth: usize, slot_bytes: u32) -> SlotPipeline {
        assert!(buffers > 0 && (1..=buffers).contains(&depth) && slot_bytes > 0);
        SlotPipeline {
            owner: vec![Owner::Card; buffers],
            writes: vec![None; buffers],
            ready: VecDeque::with_capacity(buffers),
            rest: VecDeque::with_capacity(buffers),
            in_flight: 0,
            card_owned: buffers,
            depth,
            slot_bytes,
            failed: false,
            short_writes: 0,
        }
    }

    /// The card handed `buffer` over, filled.
    pub fn hand_over(&mut self, buffer: usize) {
        assert_eq!(
            self.owner[buffer],
            Owner::Card,
            "buffer {buffer} handed over twice"
        );
        self.owner[buffer] = Owner::Recorder;
        self.card_owned -= 1;
    }

    /// `buffer`'s slot is prepared (header written into its header page):
    /// queue it for writing.
    pub fn prepare(&mut self, buffer: usize, header: SlotHeader, loc: Location) {
        assert_eq!(
            self.owner[buffer],
            Owner::Recorder,
            "buffer {buffer} not handed over"
        );
        assert!(
            self.writes[buffer].is_none(),
            "buffer {buffer} prepared twice"
        );
        assert!(!self.failed, "slot prepared after a failed write");
        assert!(
            self.ready.len() < self.owner.len(),
            "more prepared slots than buffers"
        );
        self.writes[buffer] = Some(SlotWrite {
            header,
            loc,
            done_bytes: 0,
            short_writes: 0,
            submitted_at: None,
        });
        self.ready.push_back(buffer);
    }

    /// Issues short writes' rests, then prepared slots in order, up to
    /// `depth` in flight, through `issue` (with the header of a slot
    /// submitted for the first time). Returns how many slots it submitted.
    pub fn submit(
        &mut self,
        now: Instant,
        mut issue: impl FnMut(&WriteRequest, Option<&SlotHeader>) -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        // Bounded: one rest per write in flight.
        while let Some(buffer) = self.rest.pop_front() {
            issue(&self.request(buffer), None)?;
        }
        let mut submitted = 0;
        while self.in_flight < self.depth && !self.failed {
            let Some(buffer) = self.ready.pop_front() else {
                break;
            };
            assert_eq!(
                self.owner[buffer],
                Owner::Recorder,
                "buffer {buffer} not prepared"
            );
            let request = self.request(buffer);
            let write = self.writes[buffer].as_mut().expect("prepared slot");
            write.submitted_at = Some(now);
            let header = write.header;
            issue(&request, Some(&header))?;
            self.owner[buffer] = Owner::Kernel;
            self.in_flight += 1;
            submitted += 1;
        }
        Ok(submitted)
    }

    fn request(&self, buffer: usize) -> WriteRequest {
        let w = self.writes[buffer].as_ref().expect("slot write");
        assert!(w.done_bytes < self.slot_bytes);
        WriteRequest {
            buffer,
            device_index: w.loc.device_index,
            offset_bytes: w.loc.offset_bytes + w.done_bytes as u64,
            skip_bytes: w.done_bytes,
            len_bytes: self.slot_bytes - w.done_bytes,
        }
    }

    /// The write of `buffer` completed with `res` (bytes or -errno).
    pub fn complete(&mut self, buffer: usize, res: i32, now: Instant) -> Completed {
        assert_eq!(
            self.owner[buffer],
            Owner::Kernel,
            "completion for buffer {buffer} not in flight"
        );
        let w = self.writes[buffer].as_mut().expect("slot write in flight");
        if res <= 0 {
            return Completed::Failed(self.fail(buffer, res));
        }
        assert!(
            res as u32 <= self.slot_bytes - w.done_bytes,
            "buffer {buffer}: {res} bytes written of {}",
            self.slot_bytes - w.done_bytes
        );
        w.done_bytes += res as u32;
        if w.done_bytes < self.slot_bytes {
            if w.short_writes == MAX_SHORT_WRITES {
                return Completed::Failed(self.fail(buffer, 0));
            }
            w.short_writes += 1;
            self.short_writes += 1;
            assert!(self.rest.len() < self.in_flight, "more rests than writes");
            self.rest.push_back(buffer);
            return Completed::Partial;
        }
        let entry = IndexEntry::from_header(&w.header, w.loc.offset_bytes);
        let latency_ns = w
            .submitted_at
            .map_or(0, |t| now.duration_since(t).as_nanos() as u64);
        self.writes[buffer] = None;
        self.owner[buffer] = Owner::Card;
        self.in_flight -= 1;
        self.card_owned += 1;
        Completed::Written { entry, latency_ns }
    }

    /// A failed write: nothing more is submitted; prepared slots are
    /// abandoned (their buffers stay the recorder's, given up with the card).
    fn fail(&mut self, buffer: usize, res: i32) -> SlotFailure {
        let w = self.writes[buffer].take().expect("slot write in flight");
        self.owner[buffer] = Owner::Recorder;
        self.in_flight -= 1;
        self.failed = true;
        self.abandon_ready();
        SlotFailure {
            device_index: w.loc.device_index,
            offset_bytes: w.loc.offset_bytes + w.done_bytes as u64,
            slot_seq: w.header.slot_seq,
            card_seq: w.header.card_seq,
            errno: (res < 0).then_some(-res),
        }
    }

    /// Drops the prepared slots that were not submitted (the recording
    /// stopped on an error; their buffers are abandoned with the card's).
    pub fn abandon_ready(&mut self) {
        for buffer in self.ready.drain(..) {
            self.writes[buffer] = None;
        }
    }

    /// Writes in the kernel's hands.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Prepared slots waiting for a place in the queue (or rests of short writes).
    pub fn waiting(&self) -> usize {
        self.ready.len() + self.rest.len()
    }

    /// Buffers the card holds: filled and not yet taken, or empty.
    pub fn card_owned(&self) -> usize {
        self.card_owned
    }

    pub fn short_writes(&self) -> u64 {
        self.short_writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: u32 = 8192;

    fn header(slot_seq: u64) -> SlotHeader {
        SlotHeader {
            slot_seq,
            card_seq: 100 + slot_seq,
            ..Default::default()
        }
    }

    fn loc(slot_seq: u64) -> Location {
        Location {
            device_index: (slot_seq % 2) as usize,
            device_slot: slot_seq / 2,
            offset_bytes: (1 << 20) + slot_seq / 2 * SLOT as u64,
            lap: 0,
        }
    }

    /// Hands `buffer` over and prepares slot `slot_seq` in it.
    fn arrive(p: &mut SlotPipeline, buffer: usize, slot_seq: u64) {
        p.hand_over(buffer);
        p.prepare(buffer, header(slot_seq), loc(slot_seq));
    }

    fn submit(p: &mut SlotPipeline) -> Vec<(WriteRequest, Option<u64>)> {
        let mut issued = Vec::new();
        let slots = p
            .submit(Instant::now(), |r, h| {
                issued.push((*r, h.map(|h| h.slot_seq)));
                Ok(())
            })
            .unwrap();
        let new = issued.iter().filter(|(_, first)| first.is_some()).count();
        assert_eq!(slots, new, "submit() counts the new slots, not the rests");
        issued
    }

    #[test]
    fn submits_in_slot_order_up_to_the_depth() {
        let mut p = SlotPipeline::new(4, 2, SLOT);
        for (buffer, seq) in [(2, 0), (0, 1), (3, 2)] {
            arrive(&mut p, buffer, seq);
        }
        let issued = submit(&mut p);
        assert_eq!(issued.len(), 2);
        assert_eq!((issued[0].0.buffer, issued[0].1), (2, Some(0)));
        assert_eq!((issued[1].0.buffer, issued[1].1), (0, Some(1)));
        assert_eq!(issued[1].0.offset_bytes, loc(1).offset_bytes);
        assert_eq!((p.in_flight(), p.waiting(), p.card_owned()), (2, 1, 1));
        assert!(submit(&mut p).is_empty(), "depth reached");
    }

    #[test]
    fn completions_out_of_order_give_each_buffer_back_with_its_entry() {
        let mut p = SlotPipeline::new(3, 3, SLOT);
        (0..3).for_each(|b| arrive(&mut p, b, b as u64));
        submit(&mut p);
        let now = Instant::now();
        for b in [2, 0, 1] {
            let Completed::Written { entry, .. } = p.complete(b, SLOT as i32, now) else {
                panic!("slot {b} not written");
            };
            assert_eq!(
                (entry.slot_seq, entry.device_offset_bytes),
                (b as u64, loc(b as u64).offset_bytes)
            );
        }
        assert_eq!((p.in_flight(), p.card_owned()), (0, 3));
    }

    #[test]
    fn a_short_write_is_resubmitted_from_where_it_stopped() {
        let mut p = SlotPipeline::new(2, 2, SLOT);
        arrive(&mut p, 1, 0);
        submit(&mut p);
        assert_eq!(p.complete(1, 4096, Instant::now()), Completed::Partial);
        assert_eq!((p.short_writes(), p.waiting()), (1, 1), "the rest waits");
        let rest = submit(&mut p);
        assert_eq!(rest.len(), 1);
        let (r, first) = rest[0];
        assert_eq!(first, None, "a rest is not a new slot");
        assert_eq!(
            (r.skip_bytes, r.len_bytes, r.offset_bytes),
            (4096, SLOT - 4096, loc(0).offset_bytes + 4096)
        );
        assert_eq!(p.in_flight(), 1, "the rest is the same write");
        assert!(matches!(
            p.complete(1, 4096, Instant::now()),
            Completed::Written { .. }
        ));
    }

    #[test]
    fn a_write_still_short_after_the_retries_fails() {
        let mut p = SlotPipeline::new(1, 1, SLOT);
        arrive(&mut p, 0, 0);
        submit(&mut p);
        for _ in 0..MAX_SHORT_WRITES {
            assert_eq!(p.complete(0, 1, Instant::now()), Completed::Partial);
            assert_eq!(submit(&mut p).len(), 1);
        }
        let Completed::Failed(f) = p.complete(0, 1, Instant::now()) else {
            panic!("no failure after {MAX_SHORT_WRITES} short writes");
        };
        assert_eq!(p.short_writes(), MAX_SHORT_WRITES as u64);
        assert_eq!((f.errno, f.offset_bytes), (None, loc(0).offset_bytes + 17));
    }

    #[test]
    fn eio_mid_stream_stops_submissions_and_names_the_slot() {
        let mut p = SlotPipeline::new(4, 2, SLOT);
        (0..4).for_each(|b| arrive(&mut p, b, b as u64));
        submit(&mut p);
        let Completed::Failed(f) = p.complete(1, -libc::EIO, Instant::now()) else {
            panic!("EIO not a failure");
        };
        assert_eq!(
            f,
            SlotFailure {
                device_index: 1,
                offset_bytes: loc(1).offset_bytes,
                slot_seq: 1,
                card_seq: 101,
                errno: Some(libc::EIO),
            }
        );
        assert!(
            submit(&mut p).is_empty(),
            "nothing submitted after a failure"
        );
        assert_eq!(p.waiting(), 0, "prepared slots abandoned");
        // The write still in flight completes and drains.
        assert!(matches!(
            p.complete(0, SLOT as i32, Instant::now()),
            Completed::Written { .. }
        ));
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn a_stop_lets_prepared_slots_and_writes_in_flight_drain() {
        let mut p = SlotPipeline::new(3, 1, SLOT);
        (0..3).for_each(|b| arrive(&mut p, b, b as u64));
        for b in 0..3 {
            assert_eq!(submit(&mut p).len(), 1);
            assert!(matches!(
                p.complete(b, SLOT as i32, Instant::now()),
                Completed::Written { .. }
            ));
        }
        assert_eq!((p.in_flight(), p.waiting(), p.card_owned()), (0, 0, 3));
    }

    #[test]
    #[should_panic(expected = "not in flight")]
    fn a_completion_for_a_buffer_not_in_flight_is_a_bug() {
        let mut p = SlotPipeline::new(2, 2, SLOT);
        arrive(&mut p, 0, 0);
        p.complete(0, SLOT as i32, Instant::now());
    }

    #[test]
    #[should_panic(expected = "handed over twice")]
    fn a_buffer_handed_over_twice_is_a_bug() {
        let mut p = SlotPipeline::new(2, 2, SLOT);
        p.hand_over(1);
        p.hand_over(1);
    }
}
