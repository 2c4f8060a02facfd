//! The index journal: when index entries become durable, and in which
//! order, without the stream ever waiting for it.
//!
//! The rule (docs/RELIABILITY.md, "Durability order"): **an index entry
//! reaches the index file only after its slot is durable on its target**,
//! and the summary calls an entry durable only after the index's fdatasync
//! that covers it. A *sync round* does this in three steps, every step an
//! io_uring operation the loop submits beside the slot writes:
//!
//! 1. seal the entries completed so far (their number is the round's
//!    *cover*) and flush every target that completed a slot since the last
//!    flush was issued (`IORING_OP_FSYNC`; a flush covers every write that
//!    completed before it was issued);
//! 2. when all flushes are done, write the sealed index batches of the
//!    cover;
//! 3. when they are written, fdatasync the index; then the cover is durable.
//!
//! A round starts at least every `interval` while there is something to
//! cover, sooner when sealed batches fill half the pool, and at the end.
//! One round at a time. With per-write durability (`TargetSync::Dsync`,
//! FUA where the device has it) step 1 has nothing to flush.
//!
//! The journal never touches io_uring: [`IndexJournal::poll`] hands the
//! operations to issue to the loop, which reports their completions back.
//! So every ordering rule here is unit-tested with fabricated completions.

use crate::index_writer::{BatchWrite, IndexWriter, BATCH_COUNT};
use formats::IndexEntry;
use std::time::{Duration, Instant};

/// How slot writes become durable on the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSync {
    /// Each sync round flushes the targets' write caches (IORING_OP_FSYNC).
    Flush,
    /// Each slot is written with RWF_DSYNC (FUA on a device that has it,
    /// else a flush after the write): durable when it completes.
    Dsync,
}

/// An operation the journal wants issued.
pub enum JournalOp {
    /// Flush target `.0`'s volatile write cache.
    FlushTarget(usize),
    /// Write this index batch (or the rest of it).
    WriteIndex(BatchWrite),
    /// fdatasync the index file.
    SyncIndex,
}

/// What failed, for the recorder's error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalFailure {
    TargetFlush { target: usize, errno: i32 },
    IndexWrite { errno: i32 },
    IndexSync { errno: i32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Target flushes in flight.
    Flushing {
        pending: usize,
    },
    /// Index batches of the cover being written.
    Writing,
    /// The index's fdatasync in flight.
    Syncing,
}

/// Longest durations seen, in nanoseconds (since the last `take_stalls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStalls {
    pub target_flush_ns: u64,
    pub index_sync_ns: u64,
    pub round_ns: u64,
}

pub struct IndexJournal {
    writer: IndexWriter,
    sync: TargetSync,
    /// Targets that completed a slot since their last flush was issued.
    dirty: Vec<bool>,
    phase: Phase,
    /// Entries the round in progress makes durable.
    cover: u64,
    durable: u64,
    round_started: Instant,
    step_started: Instant,
    interval: Duration,
    failed: bool,
    rounds: u64,
    target_flushes: u64,
    stalls: JournalStalls,
}

impl IndexJournal {
    pub fn new(
        writer: IndexWriter,
        targets: usize,
        sync: TargetSync,
        interval: Duration,
        now: Instant,
    ) -> IndexJournal {
        assert!(targets > 0);
        IndexJournal {
            writer,
            sync,
            dirty: vec![false; targets],
            phase: Phase::Idle,
            cover: 0,
            durable: 0,
            round_started: now,
            step_started: now,
            interval,
            failed: false,
            rounds: 0,
            target_flushes: 0,
            stalls: JournalStalls::default(),
        }
    }

    /// Whether slot `slot_seq` may be started (room in the reorder window).
    pub fn can_accept(&self, slot_seq: u64) -> bool {
        self.writer.can_accept(slot_seq)
    }

    /// Slot `entry` is written (completed) on target `device_index`.
    pub fn slot_written(&mut self, entry: IndexEntry) {
        self.dirty[entry.device_index as usize] = true;
        self.writer.complete(entry);
    }

    /// Slot `slot_seq`'s write failed: the index ends before it.
    pub fn slot_failed(&mut self, slot_seq: u64) {
        self.writer.fail_slot(slot_seq);
    }

    /// Issues what is due now through `issue`. `stopping`: the recording
    /// is over, cover everything.
    pub fn poll(
        &mut self,
        now: Instant,
        stopping: bool,
        mut issue: impl FnMut(JournalOp) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if self.phase == Phase::Idle && self.round_due(now, stopping) {
            self.start_round(now, &mut issue)?;
        }
        if self.phase == Phase::Writing && self.failed {
            if self.writer.writes_in_flight() == 0 {
                self.phase = Phase::Idle; // no fdatasync for a failed round
            }
            return Ok(());
        }
        if self.phase == Phase::Writing {
            // Bounded: each call marks a sealed batch in flight.
            for _ in 0..BATCH_COUNT {
                let Some(w) = self.writer.next_write(self.cover) else {
                    break;
                };
                issue(JournalOp::WriteIndex(w))?;
            }
            if self.writer.writes_in_flight() == 0 {
                self.phase = Phase::Syncing;
                self.step_started = now;
                issue(JournalOp::SyncIndex)?;
            }
        }
        Ok(())
    }

    /// Whether a round is due; start_round() finds out whether there is
    /// anything for it to cover.
    fn round_due(&self, now: Instant, stopping: bool) -> bool {
        !self.failed
            && (stopping
                || now.duration_since(self.round_started) >= self.interval
                || self.writer.sealed_batches() >= BATCH_COUNT / 2)
    }

    fn start_round(
        &mut self,
        now: Instant,
        issue: &mut impl FnMut(JournalOp) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let cover = self.writer.seal();
        if cover == self.durable {
            // Nothing to cover (or completed slots wait for an earlier
            // one): the next round is due an interval from now, not on
            // every turn of the loop until work arrives.
            self.round_started = now;
            return Ok(());
        }
        assert!(cover > self.durable, "a round never covers less");
        self.cover = cover;
        self.round_started = now;
        self.step_started = now;
        self.rounds += 1;
        let mut pending = 0;
        if self.sync == TargetSync::Flush {
            for target in 0..self.dirty.len() {
                if std::mem::take(&mut self.dirty[target]) {
                    issue(JournalOp::FlushTarget(target))?;
                    pending += 1;
                }
            }
        }
        self.target_flushes += pending as u64;
        self.phase = if pending > 0 {
            Phase::Flushing { pending }
        } else {
            Phase::Writing
        };
        Ok(())
    }

    /// A target flush completed with `res` (0 or -errno).
    pub fn flush_done(
        &mut self,
        target: usize,
        res: i32,
        now: Instant,
    ) -> Result<(), JournalFailure> {
        let Phase::Flushing { pending } = self.phase else {
            panic!("target flush completed outside a flush step");
        };
        let took = now.duration_since(self.step_started).as_nanos() as u64;
        self.stalls.target_flush_ns = self.stalls.target_flush_ns.max(took);
        let outcome = if res < 0 {
            Err(self.fail(JournalFailure::TargetFlush {
                target,
                errno: -res,
            }))
        } else {
            Ok(())
        };
        // After a failure the Writing phase writes nothing and ends in poll().
        self.phase = match pending - 1 {
            0 => Phase::Writing,
            left => Phase::Flushing { pending: left },
        };
        outcome
    }

    /// An index batch write completed with `res` (bytes or -errno).
    pub fn index_write_done(&mut self, batch: usize, res: i32) -> Result<(), JournalFailure> {
        assert_eq!(self.phase, Phase::Writing, "index write outside a round");
        if res <= 0 {
            // The phase ends in poll() once no other write is in flight.
            self.writer.write_failed(batch);
            let errno = if res < 0 { -res } else { libc::EIO };
            return Err(self.fail(JournalFailure::IndexWrite { errno }));
        }
        self.writer.write_done(batch, res as usize);
        Ok(())
    }

    /// The index's fdatasync completed with `res` (0 or -errno).
    pub fn index_sync_done(&mut self, res: i32, now: Instant) -> Result<(), JournalFailure> {
        assert_eq!(self.phase, Phase::Syncing, "index sync outside a round");
        self.phase = Phase::Idle;
        let took = now.duration_since(self.step_started).as_nanos() as u64;
        self.stalls.index_sync_ns = self.stalls.index_sync_ns.max(took);
        let round = now.duration_since(self.round_started).as_nanos() as u64;
        self.stalls.round_ns = self.stalls.round_ns.max(round);
        if res < 0 {
            return Err(self.fail(JournalFailure::IndexSync { errno: -res }));
        }
        self.durable = self.cover;
        Ok(())
    }

    fn fail(&mut self, why: JournalFailure) -> JournalFailure {
        self.failed = true;
        self.writer.stop();
        why
    }

    /// Nothing in flight and nothing left to make durable (or nothing more
    /// can be: a step failed).
    pub fn settled(&self) -> bool {
        self.phase == Phase::Idle
            && (self.failed || (self.writer.next_seq() == self.durable && !self.writer.unsealed()))
    }

    /// Operations in flight (flushes, index writes, the fdatasync).
    pub fn in_flight(&self) -> usize {
        match self.phase {
            Phase::Idle => 0,
            Phase::Flushing { pending } => pending,
            Phase::Writing => self.writer.writes_in_flight(),
            Phase::Syncing => 1,
        }
    }

    /// Entries covered by a completed fdatasync of the index, every one
    /// of whose slots was durable before its entry was written.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    pub fn target_flushes(&self) -> u64 {
        self.target_flushes
    }

    /// The longest stalls since the last call, then reset.
    pub fn take_stalls(&mut self) -> JournalStalls {
        std::mem::take(&mut self.stalls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index_writer::BATCH_ENTRIES;

    const SECOND: Duration = Duration::from_secs(1);

    /// An operation as the loop would have issued it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        Flush(usize),
        Write { batch: usize, len: u32 },
        Sync,
    }

    struct Harness {
        j: IndexJournal,
        t0: Instant,
    }

    impl Harness {
        fn new(targets: usize, sync: TargetSync) -> Harness {
            let t0 = Instant::now();
            let writer = IndexWriter::new(4 * BATCH_ENTRIES, 8192);
            Harness {
                j: IndexJournal::new(writer, targets, sync, SECOND, t0),
                t0,
            }
        }

        fn written(&mut self, slot_seq: u64, target: u8) {
            self.j.slot_written(IndexEntry {
                slot_seq,
                device_index: target,
                ..Default::default()
            });
        }

        fn poll(&mut self, after: Duration, stopping: bool) -> Vec<Op> {
            let mut ops = Vec::new();
            self.j
                .poll(self.t0 + after, stopping, |op| {
                    ops.push(match op {
                        JournalOp::FlushTarget(t) => Op::Flush(t),
                        JournalOp::WriteIndex(w) => Op::Write {
                            batch: w.batch,
                            len: w.len,
                        },
                        JournalOp::SyncIndex => Op::Sync,
                    });
                    Ok(())
                })
                .unwrap();
            ops
        }
    }

    #[test]
    fn targets_are_flushed_before_the_index_entries_of_their_slots_are_written() {
        let mut h = Harness::new(3, TargetSync::Flush);
        h.written(1, 2);
        h.written(0, 0);
        assert!(
            h.poll(SECOND / 2, false).is_empty(),
            "no round before the interval"
        );
        assert_eq!(h.poll(SECOND, false), vec![Op::Flush(0), Op::Flush(2)]);
        assert_eq!(h.j.in_flight(), 2);
        // A slot completing now is not covered by those flushes.
        h.written(2, 1);
        h.j.flush_done(2, 0, h.t0 + SECOND).unwrap();
        assert!(h.poll(SECOND, false).is_empty(), "target 0 not flushed yet");
        assert_eq!(h.j.in_flight(), 1);
        h.j.flush_done(0, 0, h.t0 + SECOND).unwrap();
        let ops = h.poll(SECOND, false);
        assert_eq!(
            ops,
            vec![Op::Write {
                batch: 0,
                len: 2 * 64
            },]
        );
        assert_eq!((h.j.durable(), h.j.in_flight()), (0, 1));
        h.j.index_write_done(0, 128).unwrap();
        assert_eq!(h.poll(SECOND, false), vec![Op::Sync]);
        assert_eq!(h.j.in_flight(), 1);
        assert_eq!(h.j.durable(), 0, "durable only after the fdatasync");
        h.j.index_sync_done(0, h.t0 + SECOND).unwrap();
        assert_eq!(h.j.durable(), 2);
        assert!(!h.j.settled(), "slot 2 is not durable yet");
        // The stop covers slot 2: only its target is flushed.
        assert_eq!(h.poll(SECOND, true), vec![Op::Flush(1)]);
        h.j.flush_done(1, 0, h.t0 + SECOND).unwrap();
        let ops = h.poll(SECOND, true);
        assert_eq!(ops.len(), 1);
        let Op::Write { batch, len } = ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!(len, 64);
        h.j.index_write_done(batch, 64).unwrap();
        assert_eq!(h.poll(SECOND, true), vec![Op::Sync]);
        h.j.index_sync_done(0, h.t0 + SECOND).unwrap();
        assert_eq!((h.j.durable(), h.j.settled()), (3, true));
        assert_eq!((h.j.rounds(), h.j.target_flushes()), (2, 3));
    }

    #[test]
    fn the_longest_stalls_are_reported_once() {
        let mut h = Harness::new(1, TargetSync::Flush);
        h.written(0, 0);
        h.poll(SECOND, false);
        h.j.flush_done(0, 0, h.t0 + SECOND + Duration::from_millis(30))
            .unwrap();
        h.poll(SECOND * 2, false);
        h.j.index_write_done(0, 64).unwrap();
        h.poll(SECOND * 2, false);
        h.j.index_sync_done(0, h.t0 + SECOND * 2 + Duration::from_millis(5))
            .unwrap();
        let ms = |ns: u64| ns / 1_000_000;
        let stalls = h.j.take_stalls();
        assert_eq!(
            (
                ms(stalls.target_flush_ns),
                ms(stalls.index_sync_ns),
                ms(stalls.round_ns)
            ),
            (30, 5, 1005)
        );
        assert_eq!(
            h.j.take_stalls(),
            JournalStalls::default(),
            "reset once taken"
        );
    }

    #[test]
    fn an_index_write_of_no_bytes_is_an_eio() {
        let mut h = Harness::new(1, TargetSync::Dsync);
        h.written(0, 0);
        h.poll(SECOND, true);
        assert_eq!(
            h.j.index_write_done(0, 0),
            Err(JournalFailure::IndexWrite { errno: libc::EIO })
        );
    }

    #[test]
    fn not_settled_while_a_completed_slot_waits_for_an_earlier_one() {
        let mut h = Harness::new(1, TargetSync::Flush);
        h.written(1, 0);
        assert!(h.poll(SECOND, true).is_empty(), "slot 0 is still in flight");
        assert!(!h.j.settled());
        h.written(0, 0);
        assert_eq!(h.poll(SECOND, true), vec![Op::Flush(0)]);
    }

    #[test]
    fn slots_are_accepted_while_the_window_has_room() {
        let j = IndexJournal::new(
            IndexWriter::new(4, 0),
            1,
            TargetSync::Flush,
            SECOND,
            Instant::now(),
        );
        assert!(j.can_accept(3));
        assert!(!j.can_accept(4));
    }

    #[test]
    fn with_dsync_writes_a_round_flushes_nothing() {
        let mut h = Harness::new(2, TargetSync::Dsync);
        h.written(0, 1);
        let ops = h.poll(Duration::ZERO, true);
        assert_eq!(ops, vec![Op::Write { batch: 0, len: 64 }]);
        h.j.index_write_done(0, 64).unwrap();
        assert_eq!(h.poll(Duration::ZERO, true), vec![Op::Sync]);
        h.j.index_sync_done(0, h.t0).unwrap();
        assert_eq!((h.j.durable(), h.j.target_flushes()), (1, 0));
    }

    #[test]
    fn a_failed_flush_writes_no_index_entry_of_that_round() {
        let mut h = Harness::new(2, TargetSync::Flush);
        h.written(0, 0);
        h.written(1, 1);
        assert_eq!(h.poll(SECOND, false).len(), 2);
        let failure = h.j.flush_done(1, -libc::EIO, h.t0 + SECOND).unwrap_err();
        assert_eq!(
            failure,
            JournalFailure::TargetFlush {
                target: 1,
                errno: libc::EIO
            }
        );
        assert!(!h.j.settled(), "the other flush is still in flight");
        h.j.flush_done(0, 0, h.t0 + SECOND).unwrap();
        assert!(
            h.poll(SECOND, true).is_empty(),
            "nothing written after a failed flush"
        );
        assert_eq!((h.j.durable(), h.j.settled()), (0, true));
    }

    #[test]
    fn a_failed_fdatasync_makes_nothing_durable() {
        let mut h = Harness::new(1, TargetSync::Flush);
        h.written(0, 0);
        assert_eq!(h.poll(Duration::ZERO, true), vec![Op::Flush(0)]);
        h.j.flush_done(0, 0, h.t0).unwrap();
        h.poll(Duration::ZERO, true);
        h.j.index_write_done(0, 64).unwrap();
        assert_eq!(h.poll(Duration::ZERO, true), vec![Op::Sync]);
        let failure = h.j.index_sync_done(-libc::EIO, h.t0).unwrap_err();
        assert_eq!(failure, JournalFailure::IndexSync { errno: libc::EIO });
        h.written(1, 0);
        assert!(h.poll(SECOND, true).is_empty());
        assert_eq!((h.j.durable(), h.j.settled()), (0, true));
    }

    #[test]
    fn a_short_index_write_is_finished_before_the_fdatasync() {
        let mut h = Harness::new(1, TargetSync::Dsync);
        (0..3).for_each(|s| h.written(s, 0));
        assert_eq!(
            h.poll(SECOND, false),
            vec![Op::Write { batch: 0, len: 192 }]
        );
        h.j.index_write_done(0, 100).unwrap();
        assert_eq!(h.poll(SECOND, false), vec![Op::Write { batch: 0, len: 92 }]);
        h.j.index_write_done(0, 92).unwrap();
        assert_eq!(h.poll(SECOND, false), vec![Op::Sync]);
    }

    #[test]
    fn a_failed_index_write_waits_for_the_others_then_settles() {
        let mut h = Harness::new(1, TargetSync::Dsync);
        for s in 0..(2 * BATCH_ENTRIES as u64 + 1) {
            h.written(s, 0);
        }
        let ops = h.poll(SECOND, false);
        assert_eq!(ops.len(), 3, "{ops:?}");
        assert_eq!(
            h.j.index_write_done(1, -libc::ENOSPC),
            Err(JournalFailure::IndexWrite {
                errno: libc::ENOSPC
            })
        );
        assert!(h.poll(SECOND, false).is_empty());
        assert!(!h.j.settled(), "two writes still in flight");
        assert_eq!(h.j.in_flight(), 2);
        h.j.index_write_done(0, (BATCH_ENTRIES * 64) as i32)
            .unwrap();
        h.j.index_write_done(2, 64).unwrap();
        assert!(
            h.poll(SECOND, true).is_empty(),
            "no fdatasync for a failed round"
        );
        assert_eq!((h.j.durable(), h.j.settled()), (0, true));
    }

    #[test]
    fn half_the_batch_pool_sealed_starts_a_round_before_the_interval() {
        let mut h = Harness::new(1, TargetSync::Flush);
        let half = (BATCH_COUNT / 2 * BATCH_ENTRIES) as u64;
        for s in 0..half - 1 {
            h.written(s, 0);
        }
        assert!(h.poll(Duration::ZERO, false).is_empty());
        h.written(half - 1, 0);
        assert_eq!(h.poll(Duration::ZERO, false), vec![Op::Flush(0)]);
    }

    #[test]
    fn completions_after_a_failed_slot_are_not_covered() {
        let mut h = Harness::new(1, TargetSync::Dsync);
        h.written(0, 0);
        h.written(2, 0);
        h.j.slot_failed(1);
        h.written(3, 0);
        assert_eq!(
            h.poll(Duration::ZERO, true),
            vec![Op::Write { batch: 0, len: 64 }]
        );
        h.j.index_write_done(0, 64).unwrap();
        h.poll(Duration::ZERO, true);
        h.j.index_sync_done(0, h.t0).unwrap();
        assert_eq!((h.j.durable(), h.j.settled()), (1, true));
    }
}
