//! The recording loop: filled card buffers → one `WRITE_FIXED` per slot
//! from a registered buffer → raw devices opened O_DIRECT → buffer back to
//! the card after its write completed → index entries made durable in
//! slot order, after their slots.
//!
//! The loop owns no rule of its own; it drives three pieces:
//! - [`SlotPipeline`] (crate::pipeline): every buffer's ownership, the
//!   prepared-slot FIFO, the queue depth, short-write retries;
//! - [`IndexJournal`] (crate::journal): the reorder window and index
//!   batches, and the durability order (targets flushed before the index
//!   entries of their slots are written and fdatasync'ed);
//! - the completion dispatcher ([`Tag`], [`Recorder::dispatch`]), which
//!   decodes each completion's tag and hands it to one of them.
//!
//! Each turn: submit what is prepared; take every buffer the card has
//! filled and prepare it at once (CRC while the card's data is still in
//! cache, header, location); submit again; let the journal issue what is
//! due; wait for completions and dispatch them. Everything is allocated
//! before the loop; the loop allocates nothing (recorder/tests/no_alloc.rs),
//! copies no payload (every write is checked to read the card's own
//! registered buffer: [`Recorder::slot_sqe`]), and makes one
//! `io_uring_enter` per batch of submissions and completions, plus one when
//! CRC work would otherwise delay new submissions.

use crate::index_writer::IndexWriter;
use crate::journal::{IndexJournal, JournalFailure, JournalOp, TargetSync};
use crate::memory::SlotMemory;
use crate::pipeline::{Completed, SlotFailure, SlotPipeline, WriteRequest};
use crate::source::{CardStats, Filled, Source};
use crate::status::{Progress, Stalls, Summary};
use crate::target::Target;
use crate::uring::Rings;
use anyhow::{Context, Result};
use formats::{Layout, SlotHeader, Superblock, Uuid, SLOT_FLAG_GAP, SLOT_HEADER_BYTES};
use io_uring::{opcode, squeue, types, IoUring};
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest a blocked wait for the card lasts before stop conditions are checked.
const CARD_WAIT_MS: u32 = 100;

/// Set by SIGINT/SIGTERM.
pub static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    SizeReached,
    DurationReached,
    Signal,
    TargetFull,
    IoError,
}

/// What a completion is for: the top 4 bits of its user_data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Slot(usize),
    IndexWrite(usize),
    IndexSync,
    TargetFlush(usize),
}

impl Tag {
    const SHIFT: u32 = 60;

    fn encode(self) -> u64 {
        let (kind, id) = match self {
            Tag::Slot(b) => (1, b),
            Tag::IndexWrite(b) => (2, b),
            Tag::IndexSync => (3, 0),
            Tag::TargetFlush(t) => (4, t),
        };
        (kind << Self::SHIFT) | id as u64
    }

    fn decode(user_data: u64) -> Tag {
        let id = (user_data & ((1 << Self::SHIFT) - 1)) as usize;
        match user_data >> Self::SHIFT {
            1 => Tag::Slot(id),
            2 => Tag::IndexWrite(id),
            3 => Tag::IndexSync,
            4 => Tag::TargetFlush(id),
            kind => unreachable!("unknown completion tag {kind}"),
        }
    }
}

pub struct Limits {
    /// Stop after this many payload bytes.
    pub size_bytes: Option<u64>,
    pub duration: Option<Duration>,
    pub queue_depth: usize,
    pub index_sync_interval: Duration,
    pub target_sync: TargetSync,
}

/// What the loop works with: set up and registered by [`crate::record()`].
pub struct Io<'a> {
    pub rings: Rings,
    pub memory: &'a SlotMemory,
    pub source: &'a mut dyn Source,
    pub targets: &'a [Target],
    pub index_file: &'a File,
}

pub struct Recorder<'a> {
    io: Io<'a>,
    superblock: Superblock,
    limits: Limits,
    progress: Progress,
    /// The scan's UUID (slot headers carry it) and region; default: the
    /// superblock's recording UUID and the whole set.
    scan: Option<(Uuid, Layout)>,
}

/// The loop's state besides the pipeline and the journal.
struct Run {
    layout: Layout,
    recording_uuid: Uuid,
    slot_seq: u64,
    /// A buffer taken by a blocking wait, prepared at the top of the loop.
    waited: Option<Filled>,
    stop: Option<StopReason>,
    error: Option<anyhow::Error>,
    card: Option<CardStats>,
    started: Instant,
    last_slot_done: Instant,
    steady_after_slots: u64,
    steady_start: Option<(u64, libc::rusage)>,
    stalls: Stalls,
    summary: Summary,
    /// Completions copied out of the CQ (capacity: the CQ's size).
    cqes: Vec<(u64, i32)>,
}

/// Submission queue entries the loop needs at most at once: the slot
/// writes, every index batch, the fdatasync, one flush per target.
pub fn sq_entries(queue_depth: usize, targets: usize) -> u32 {
    (queue_depth + crate::index_writer::BATCH_COUNT + 1 + targets).next_power_of_two() as u32
}

/// Registers the targets and the index file (fixed files: targets 0..n,
/// index n) with every ring.
pub fn register_files(rings: &Rings, targets: &[Target], index: &File) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    let mut fds: Vec<i32> = targets.iter().map(|t| t.file.as_raw_fd()).collect();
    fds.push(index.as_raw_fd());
    for ring in std::iter::once(&rings.slots).chain(rings.journal.as_ref()) {
        ring.submitter()
            .register_files(&fds)
            .context("io_uring: registering target files")?;
    }
    Ok(())
}

fn unregister(ring: &IoUring, buffers: bool) -> Result<()> {
    ring.submitter()
        .unregister_files()
        .context("io_uring: unregistering files")?;
    if buffers {
        ring.submitter()
            .unregister_buffers()
            .context("io_uring: unregistering buffers")?;
    }
    Ok(())
}

impl<'a> Recorder<'a> {
    pub fn new(io: Io<'a>, superblock: Superblock, limits: Limits, progress: Progress) -> Self {
        Recorder {
            io,
            superblock,
            limits,
            progress,
            scan: None,
        }
    }

    /// Records scan `uuid` into the positions of `layout` (a region of the set).
    pub fn in_scan(mut self, uuid: Uuid, layout: Layout) -> Self {
        self.scan = Some((uuid, layout));
        self
    }

    pub fn run(mut self) -> Result<Summary> {
        let count = self.io.memory.count();
        let slot_bytes = (SLOT_HEADER_BYTES + self.io.memory.payload_bytes()) as u32;
        let mut pipeline = SlotPipeline::new(count, self.limits.queue_depth.min(count), slot_bytes);
        let writer = IndexWriter::new(count, formats::index::INDEX_HEADER_BYTES as u64);
        let started = Instant::now();
        let mut journal = IndexJournal::new(
            writer,
            self.io.targets.len(),
            self.limits.target_sync,
            self.limits.index_sync_interval,
            started,
        );
        let mut run = self.new_run(started, count);
        self.io.source.start()?;
        loop {
            self.check_stop(&mut run)?;
            // After a stop other than an I/O error, prepared slots are still
            // written: the card delivered them before the stop.
            if run.stop == Some(StopReason::IoError) {
                pipeline.abandon_ready();
            }
            let submitted = self.submit(&mut pipeline, &mut run)?;
            // Hand those writes to the kernel now when there is CRC work to
            // do before the next wait (else the wait submits them).
            if submitted > 0 && run.stop.is_none() {
                if run.waited.is_none() {
                    run.waited = self.io.source.try_take()?;
                }
                if run.waited.is_some() {
                    self.enter(0, true)?;
                }
            }
            self.take_filled(&mut pipeline, &journal, &mut run)?;
            self.submit(&mut pipeline, &mut run)?;
            self.note_steady_start(&mut run);
            let stopping = run.stop.is_some() && pipeline.in_flight() == 0;
            journal.poll(Instant::now(), stopping, |op| self.push_journal_op(op))?;

            let in_flight = pipeline.in_flight() + journal.in_flight();
            if stopping && pipeline.waiting() == 0 && journal.settled() {
                break;
            }
            if in_flight == 0 && self.io.rings.submissions_empty() {
                // Nothing in the kernel: block on the card.
                assert_eq!(pipeline.waiting(), 0, "prepared slots with an empty queue");
                if run.stop.is_none() {
                    run.waited = self.io.source.wait_take(CARD_WAIT_MS)?;
                }
                self.tick(&mut run, &mut journal, false);
                continue;
            }
            self.enter(1, pipeline.in_flight() > 0)?;
            self.dispatch(&mut pipeline, &mut journal, &mut run)?;
            self.tick(&mut run, &mut journal, false);
        }
        run.summary.short_writes = pipeline.short_writes();
        self.finish(run, &mut journal)
    }

    fn new_run(&self, started: Instant, count: usize) -> Run {
        let cq_entries = self.io.rings.cq_entries();
        let mut cqes = vec![(u64::MAX, 0); cq_entries];
        cqes.clear(); // capacity kept, its pages already touched
        let (recording_uuid, layout) = self.scan.clone().unwrap_or_else(|| {
            (
                self.superblock.recording_uuid,
                Layout::from_superblock(&self.superblock),
            )
        });
        Run {
            layout,
            recording_uuid,
            slot_seq: 0,
            waited: None,
            stop: None,
            error: None,
            card: None,
            started,
            last_slot_done: started,
            steady_after_slots: 2 * count as u64,
            steady_start: None,
            stalls: Stalls::new(count),
            summary: Summary::new(&self.superblock, self.io.targets, self.io.memory),
            cqes,
        }
    }

    /// Stop conditions; the card is stopped as soon as the recording
    /// stops: what it would fill (or lose) while the last writes drain is
    /// not part of the recording.
    fn check_stop(&mut self, run: &mut Run) -> Result<()> {
        if run.stop.is_none() {
            if STOP_REQUESTED.load(Ordering::Relaxed) {
                run.stop = Some(StopReason::Signal);
            } else if self
                .limits
                .duration
                .is_some_and(|d| run.started.elapsed() >= d)
            {
                run.stop = Some(StopReason::DurationReached);
            }
        }
        if run.stop.is_some() && run.card.is_none() {
            run.card = Some(self.io.source.stop()?);
        }
        Ok(())
    }

    /// Takes every buffer the card has filled and prepares its slot at
    /// once, while the card's data is still in the CPU caches (a DMA engine
    /// writes into the last-level cache; the simulated card's fill leaves
    /// it there): the CRC, the one CPU pass over the payload, then reads
    /// cache, not memory. Bounded by the ring: each prepared slot holds a
    /// buffer, and the journal's window has room for each.
    fn take_filled(
        &mut self,
        pipeline: &mut SlotPipeline,
        journal: &IndexJournal,
        run: &mut Run,
    ) -> Result<()> {
        let payload_bytes = self.io.memory.payload_bytes() as u64;
        while run.stop.is_none() && journal.can_accept(run.slot_seq) {
            if self
                .limits
                .size_bytes
                .is_some_and(|s| run.slot_seq * payload_bytes >= s)
            {
                run.stop = Some(StopReason::SizeReached);
                break;
            }
            let filled = match run.waited.take() {
                Some(f) => f,
                None => match self.io.source.try_take()? {
                    Some(f) => f,
                    None => {
                        // Everything the card filled is taken: what it
                        // still holds is the room it has before it loses data.
                        run.stalls.headroom(pipeline.card_owned());
                        break;
                    }
                },
            };
            pipeline.hand_over(filled.buffer);
            let Some(loc) = run.layout.locate(run.slot_seq) else {
                run.stop = Some(StopReason::TargetFull);
                break;
            };
            let header = self.fill_header(&filled, run.slot_seq, loc.device_index, run);
            pipeline.prepare(filled.buffer, header, loc);
            run.slot_seq += 1;
        }
        Ok(())
    }

    fn submit(&mut self, pipeline: &mut SlotPipeline, run: &mut Run) -> Result<usize> {
        let summary = &mut run.summary;
        pipeline.submit(Instant::now(), |request, first| {
            if let Some(header) = first {
                summary.note_slot(header);
            }
            let sqe = self.slot_sqe(request, summary);
            self.push(&sqe)
        })
    }

    fn note_steady_start(&self, run: &mut Run) {
        if run.steady_start.is_none() && run.summary.slots_submitted() >= run.steady_after_slots {
            run.steady_start = Some((run.summary.slots_submitted(), crate::status::rusage()));
        }
    }

    /// Completions, copied out of the CQ (bounded by its size) into
    /// preallocated storage, each handed to the piece its tag names.
    fn dispatch(
        &mut self,
        pipeline: &mut SlotPipeline,
        journal: &mut IndexJournal,
        run: &mut Run,
    ) -> Result<()> {
        run.cqes.clear();
        let rings = &mut self.io.rings;
        run.cqes.extend(
            rings
                .slots
                .completion()
                .map(|c| (c.user_data(), c.result())),
        );
        if let Some(journal) = rings.journal.as_mut() {
            run.cqes
                .extend(journal.completion().map(|c| (c.user_data(), c.result())));
        }
        assert!(run.cqes.len() <= run.cqes.capacity());
        let now = Instant::now();
        for i in 0..run.cqes.len() {
            let (user_data, res) = run.cqes[i];
            let failure = match Tag::decode(user_data) {
                Tag::Slot(buffer) => {
                    self.slot_done(pipeline, journal, run, buffer, res, now)?;
                    None
                }
                Tag::IndexWrite(batch) => journal.index_write_done(batch, res).err(),
                Tag::IndexSync => journal.index_sync_done(res, now).err(),
                Tag::TargetFlush(target) => journal.flush_done(target, res, now).err(),
            };
            if let Some(f) = failure {
                let message = self.journal_failure_message(f);
                run.fail(anyhow::anyhow!(message));
            }
        }
        Ok(())
    }

    fn slot_done(
        &mut self,
        pipeline: &mut SlotPipeline,
        journal: &mut IndexJournal,
        run: &mut Run,
        buffer: usize,
        res: i32,
        now: Instant,
    ) -> Result<()> {
        match pipeline.complete(buffer, res, now) {
            Completed::Written { entry, latency_ns } => {
                run.summary
                    .note_written(self.io.memory.stride_bytes() as u64);
                run.stalls.write_latency(latency_ns);
                run.last_slot_done = now;
                journal.slot_written(entry);
                if run.stop.is_none() {
                    self.io.source.give(buffer)?;
                }
            }
            Completed::Partial => {} // the rest is queued for the next submit
            Completed::Failed(f) => {
                journal.slot_failed(f.slot_seq);
                let message = self.slot_failure_message(&f);
                run.fail(anyhow::anyhow!(message));
            }
        }
        Ok(())
    }

    fn slot_failure_message(&self, failure: &SlotFailure) -> String {
        let why = match failure.errno {
            Some(e) => std::io::Error::from_raw_os_error(e).to_string(),
            None => "no progress".to_string(),
        };
        let target = &self.io.targets[failure.device_index];
        format!(
            "write failed on {} at offset {} (slot {}, card sequence {}): {why}{}",
            target.path.display(),
            failure.offset_bytes,
            failure.slot_seq,
            failure.card_seq,
            gone_note(target, failure.errno)
        )
    }

    fn journal_failure_message(&self, failure: JournalFailure) -> String {
        let os = |e: i32| std::io::Error::from_raw_os_error(e);
        match failure {
            JournalFailure::TargetFlush { target, errno } => format!(
                "flushing the write cache of {} failed: {}{}; the slots since its last flush \
                 may not be durable and are not indexed",
                self.io.targets[target].path.display(),
                os(errno),
                gone_note(&self.io.targets[target], Some(errno))
            ),
            JournalFailure::IndexWrite { errno } => format!("index write failed: {}", os(errno)),
            JournalFailure::IndexSync { errno } => {
                format!("index fdatasync failed: {}", os(errno))
            }
        }
    }

    fn tick(&mut self, run: &mut Run, journal: &mut IndexJournal, last: bool) {
        if self.progress.due(last) {
            run.stalls.journal(journal.take_stalls());
            self.progress.tick(&run.summary, &run.stalls, last);
            run.stalls.next_interval();
        }
    }

    fn finish(mut self, mut run: Run, journal: &mut IndexJournal) -> Result<Summary> {
        let steady_end = (run.summary.slots_submitted(), crate::status::rusage());
        let card: CardStats = match run.card {
            Some(c) => c,
            None => self.io.source.stop()?,
        };
        // Nothing is in flight now. Drop the ring's references to the targets
        // and the memory synchronously: a ring torn down at process exit is
        // released later by a kernel worker, and until then it would keep
        // the targets' exclusive claim (EBUSY for the next recording).
        unregister(&self.io.rings.slots, true)?;
        if let Some(journal) = &self.io.rings.journal {
            unregister(journal, false)?;
        }
        let mut durable = journal.durable();
        if run.stop == Some(StopReason::IoError) {
            durable = self.read_back(&mut run, durable)?;
        }
        run.stalls.journal(journal.take_stalls());
        run.summary.index_sync_rounds = journal.rounds();
        run.summary.target_flushes = journal.target_flushes();
        run.summary.finish(crate::status::RunEnd {
            reason: run.stop.unwrap_or(StopReason::Signal),
            elapsed: run.started.elapsed(),
            writing: run.last_slot_done.duration_since(run.started),
            card,
            durable,
            steady: run.steady_start.zip(Some(steady_end)),
            stalls: &run.stalls,
        });
        self.progress.tick(&run.summary, &run.stalls, true);
        if let Some(e) = run.error {
            run.summary.error = Some(format!("{e:#}"));
        }
        Ok(run.summary)
    }

    /// After a write error: the newest durable slots are read back and the
    /// torn ones are taken out of the index (crate::readback).
    fn read_back(&self, run: &mut Run, durable: u64) -> Result<u64> {
        let memory = self.io.memory;
        let r = crate::readback::check_tail(
            self.io.targets,
            self.io.index_file,
            memory,
            run.recording_uuid,
            durable,
            memory.count() as u64,
        )?;
        run.summary.apply_readback(&r, memory.stride_bytes() as u64);
        if r.dropped > 0 || r.unreadable > 0 || r.overwritten > 0 {
            let laps = if r.overwritten > 0 {
                format!(
                    ", {} were since overwritten by later laps of the ring (the devices hold \
                     newer slots than the index: `dmaplay reindex` indexes them)",
                    r.overwritten
                )
            } else {
                String::new()
            };
            run.error = run.error.take().map(|e| {
                anyhow::anyhow!(
                    "{e:#}; read back after the error: {} slot(s) written before it were \
                     torn and were taken out of the index (the device had reported them written), {} could not be read \
                     (left indexed){laps}; the index holds {} entries",
                    r.dropped,
                    r.unreadable,
                    r.entries
                )
            });
        }
        Ok(durable.min(r.entries))
    }

    /// CRC of the payload (the one CPU pass over it) and the header page,
    /// written in place in the buffer's header page.
    fn fill_header(
        &self,
        filled: &Filled,
        slot_seq: u64,
        device_index: usize,
        run: &Run,
    ) -> SlotHeader {
        let used = filled.bytes_used as usize;
        let memory = self.io.memory;
        assert!(
            used <= memory.payload_bytes(),
            "card filled {used} bytes into a smaller payload"
        );
        // SAFETY: the recorder owns buffer f.buffer (handed over, Owner::Recorder):
        // the card finished filling it and the kernel is not writing from it.
        let payload =
            unsafe { std::slice::from_raw_parts(memory.payload_ptr(filled.buffer), used) };
        let header = SlotHeader {
            recording_uuid: run.recording_uuid,
            slot_seq,
            card_seq: filled.card_seq,
            card_timestamp_ns: filled.card_timestamp_ns,
            host_timestamp_ns: crate::clock::realtime_ns(),
            gap_count: filled.gap_count,
            payload_bytes_used: filled.bytes_used,
            payload_crc32: formats::crc32(payload),
            channel: filled.channel,
            flags: if filled.gap_count > 0 {
                SLOT_FLAG_GAP
            } else {
                0
            },
            device_index: device_index as u16,
        };
        // SAFETY: as above; the header page belongs to the same buffer.
        let page = unsafe {
            std::slice::from_raw_parts_mut(memory.buffer_ptr(filled.buffer), SLOT_HEADER_BYTES)
        };
        header.encode_into(page);
        header
    }

    /// The SQE of a slot write. Zero copy, checked on every write: the
    /// address written from lies inside the registered buffer the card
    /// handed over, and that buffer's registration is the one used.
    fn slot_sqe(&self, request: &WriteRequest, summary: &mut Summary) -> squeue::Entry {
        // SAFETY: skip_bytes < the slot's bytes, inside registered buffer r.buffer.
        let ptr = unsafe {
            self.io
                .memory
                .buffer_ptr(request.buffer)
                .add(request.skip_bytes as usize)
        };
        let in_place = self
            .io
            .memory
            .buffer_holding(ptr, request.len_bytes as usize)
            == Some(request.buffer);
        // Counted and asserted: tests compare the count with the slots written.
        summary.writes_from_card_buffers += in_place as u64;
        assert!(
            in_place,
            "slot write does not read the card's buffer {} in place",
            request.buffer
        );
        let rw_flags = match self.limits.target_sync {
            TargetSync::Flush => 0,
            TargetSync::Dsync => libc::RWF_DSYNC,
        };
        opcode::WriteFixed::new(
            types::Fixed(request.device_index as u32),
            ptr,
            request.len_bytes,
            request.buffer as u16,
        )
        .offset(request.offset_bytes)
        .rw_flags(rw_flags)
        .build()
        .user_data(Tag::Slot(request.buffer).encode())
    }

    fn push_journal_op(&mut self, op: JournalOp) -> Result<()> {
        let index_fd = types::Fixed(self.io.targets.len() as u32);
        let sqe = match op {
            JournalOp::FlushTarget(t) => opcode::Fsync::new(types::Fixed(t as u32))
                .build()
                .user_data(Tag::TargetFlush(t).encode()),
            JournalOp::WriteIndex(w) => opcode::Write::new(index_fd, w.ptr, w.len)
                .offset(w.file_offset)
                .build()
                .user_data(Tag::IndexWrite(w.batch).encode()),
            JournalOp::SyncIndex => opcode::Fsync::new(index_fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(Tag::IndexSync.encode()),
        };
        self.io.rings.push(&sqe, true)
    }

    /// io_uring_enter: submits what is queued and waits for `want`
    /// completions (of slot writes if `slots_in_flight`, crate::uring).
    /// An interrupted or busy enter is retried by the loop.
    fn enter(&mut self, want: usize, slots_in_flight: bool) -> Result<()> {
        match self.io.rings.enter(want, slots_in_flight) {
            Ok(_) => Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EINTR)
                    || e.raw_os_error() == Some(libc::EBUSY) =>
            {
                Ok(())
            }
            Err(e) => Err(e).context("io_uring_enter"),
        }
    }

    fn push(&mut self, sqe: &squeue::Entry) -> Result<()> {
        self.io.rings.push(sqe, false)
    }
}

/// Why a block device fails every write: it went away (hot-unplugged,
/// deleted). The kernel says so with ENODEV/ENXIO, or (6.12, once it has set
/// the size to 0) with ENOSPC; so the size is looked at too. Empty if the
/// device is still there.
fn gone_note(target: &Target, errno: Option<i32>) -> &'static str {
    if !target.is_block_device {
        return "";
    }
    let gone_errno = matches!(errno, Some(libc::ENODEV) | Some(libc::ENXIO));
    let size_zero =
        !matches!(blockio::geometry(&target.file, &target.path), Ok(g) if g.size_bytes > 0);
    if gone_errno || size_zero {
        "; the device is gone (unplugged or deleted)"
    } else {
        ""
    }
}

impl Run {
    /// The recording stops on an I/O error; the first error is the one reported.
    fn fail(&mut self, error: anyhow::Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        self.stop = Some(StopReason::IoError);
    }
}

#[cfg(test)]
mod tests {
    use super::Tag;

    #[test]
    fn tags_round_trip() {
        for tag in [
            Tag::Slot(0),
            Tag::Slot(4095),
            Tag::IndexWrite(7),
            Tag::IndexSync,
            Tag::TargetFlush(63),
        ] {
            assert_eq!(Tag::decode(tag.encode()), tag);
        }
    }
}
