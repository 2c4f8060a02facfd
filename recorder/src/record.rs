//! The recording hot path: filled card buffers → one `WRITE_FIXED` per slot
//! from a registered buffer → raw devices opened O_DIRECT → buffer back to
//! the card after its write completed → index entry in slot order.
//!
//! Everything is allocated and registered before the loop (slot memory and
//! files in `crate::record()`, the loop's own tables at the top of
//! [`Recorder::run`]); the loop allocates nothing (recorder/tests/no_alloc.rs),
//! copies no payload (the card fills the registered memory in place; the CPU
//! only reads it once for the CRC), and makes one `io_uring_enter` per batch
//! of submissions and completions, plus one when CRC work would otherwise
//! delay new submissions.
//!
//! Each turn of the loop: refill the queue from the prepared slots; take
//! every buffer the card has filled and prepare it at once (CRC while the
//! card's data is still in cache, header, location); refill the queue again;
//! index bookkeeping; wait for completions; give completed buffers back to
//! the card. Ownership of each buffer (card, recorder — prepared or not —,
//! kernel) is tracked and asserted at every transition.

use crate::index_writer::IndexWriter;
use crate::memory::SlotMemory;
use crate::source::{CardStats, Filled, Source};
use crate::status::{Progress, Summary};
use crate::target::Target;
use anyhow::{bail, Context, Result};
use formats::{
    IndexEntry, Layout, Location, SlotHeader, Superblock, Uuid, SLOT_FLAG_GAP, SLOT_HEADER_BYTES,
};
use io_uring::{opcode, types, IoUring};
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TAG_SHIFT: u32 = 60;
const TAG_SLOT: u64 = 1;
const TAG_INDEX: u64 = 2;
const TAG_FSYNC: u64 = 3;
/// Longest a blocked wait for the card lasts before stop conditions are checked.
const CARD_WAIT_MS: u32 = 100;
/// Retries of a short write before giving up on a slot.
const MAX_SHORT_WRITES: u32 = 16;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Card,
    Recorder,
    Kernel,
}

/// A slot write, prepared or in flight (indexed by buffer).
#[derive(Clone, Copy)]
struct SlotWrite {
    header: SlotHeader,
    loc: Location,
    done_bytes: u32,
    short_writes: u32,
}

/// Per-buffer state of the loop, allocated once at its start.
struct Slots {
    owner: Vec<Owner>,
    /// The slot each buffer carries while the recorder or the kernel owns it.
    writes: Vec<Option<SlotWrite>>,
    /// Prepared buffers (CRC and header done) waiting for a place in the
    /// queue, in slot order. One per buffer at most: never reallocates.
    ready: VecDeque<usize>,
    /// Slot writes the kernel holds.
    in_flight: usize,
}

impl Slots {
    fn new(count: usize) -> Slots {
        Slots {
            owner: vec![Owner::Card; count],
            writes: vec![None; count],
            ready: VecDeque::with_capacity(count),
            in_flight: 0,
        }
    }
}

pub struct Limits {
    /// Stop after this many payload bytes.
    pub size_bytes: Option<u64>,
    pub duration: Option<Duration>,
    pub queue_depth: usize,
    pub index_sync_interval: Duration,
}

pub struct Recorder<'a> {
    ring: IoUring,
    memory: &'a SlotMemory,
    source: &'a mut dyn Source,
    targets: &'a [Target],
    index_file: &'a File,
    superblock: Superblock,
    limits: Limits,
    progress: Progress,
    /// Requested length of each index batch write in flight.
    index_write_len: [u32; crate::index_writer::BATCH_COUNT],
}

/// Builds the io_uring: SINGLE_ISSUER|DEFER_TASKRUN (6.1+), falling back to
/// COOP_TASKRUN (5.19+), then to no flags, as fio does.
pub fn new_ring(entries: u32) -> Result<(IoUring, &'static str)> {
    if let Ok(r) = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
    {
        return Ok((r, "single_issuer+defer_taskrun"));
    }
    if let Ok(r) = IoUring::builder().setup_coop_taskrun().build(entries) {
        return Ok((r, "coop_taskrun"));
    }
    let r = IoUring::new(entries).context(
        "io_uring_setup failed (is io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
    )?;
    Ok((r, "plain"))
}

/// Registers the targets and the index file (fixed files: targets 0..n, index n).
pub fn register_files(ring: &IoUring, targets: &[Target], index: &File) -> Result<()> {
    let mut fds: Vec<i32> = targets.iter().map(|t| t.file.as_raw_fd()).collect();
    fds.push(index.as_raw_fd());
    ring.submitter()
        .register_files(&fds)
        .context("io_uring: registering target files")?;
    Ok(())
}

impl<'a> Recorder<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ring: IoUring,
        memory: &'a SlotMemory,
        source: &'a mut dyn Source,
        targets: &'a [Target],
        index_file: &'a File,
        superblock: Superblock,
        limits: Limits,
        progress: Progress,
    ) -> Recorder<'a> {
        Recorder {
            ring,
            memory,
            source,
            targets,
            index_file,
            superblock,
            limits,
            progress,
            index_write_len: [0; crate::index_writer::BATCH_COUNT],
        }
    }

    pub fn run(mut self) -> Result<Summary> {
        let count = self.memory.count();
        let layout = Layout::from_superblock(&self.superblock);
        let recording_uuid: Uuid = self.superblock.recording_uuid;
        let payload_bytes = self.memory.payload_bytes();
        let depth = self.limits.queue_depth.min(count);
        let index_fd = types::Fixed(self.targets.len() as u32);
        let mut slots = Slots::new(count);
        let mut index = IndexWriter::new(count, formats::index::INDEX_HEADER_BYTES as u64);
        let mut summary = Summary::new(&self.superblock, self.targets, self.memory);

        let mut slot_seq = 0u64;
        let mut fsync_in_flight: Option<u64> = None;
        // A buffer taken by a blocking wait, prepared at the top of the loop.
        let mut waited: Option<Filled> = None;
        let mut stop: Option<StopReason> = None;
        let mut error: Option<anyhow::Error> = None;
        let started = Instant::now();
        let mut last_sync = started;
        let mut last_slot_done = started;
        let mut steady_usage: Option<(u64, libc::rusage)> = None;
        let steady_end: Option<(u64, libc::rusage)>;
        let mut card: Option<CardStats> = None;
        let steady_after_slots = 2 * count as u64;
        let mut cqes: Vec<(u64, i32)> =
            vec![(u64::MAX, 0); self.ring.params().cq_entries() as usize];
        cqes.clear(); // capacity kept, its pages already touched
        let mut resubmit: Vec<usize> = vec![usize::MAX; count];
        resubmit.clear(); // at most one short write per buffer per pass

        self.source.start()?;
        loop {
            // Stop conditions.
            if stop.is_none() {
                if STOP_REQUESTED.load(Ordering::Relaxed) {
                    stop = Some(StopReason::Signal);
                } else if self.limits.duration.is_some_and(|d| started.elapsed() >= d) {
                    stop = Some(StopReason::DurationReached);
                }
            }
            // Stop the card as soon as the recording stops: what it would
            // fill (or lose) while the last writes drain is not part of the
            // recording.
            if stop.is_some() && card.is_none() {
                card = Some(self.source.stop()?);
            }

            // Submit what is prepared first (a completion just made room:
            // the device must not wait for the CRCs below), then take and
            // prepare what the card filled, then fill the queue again. After
            // a stop (other than an I/O error) prepared slots are still
            // written: the card delivered them before the stop.
            if stop == Some(StopReason::IoError) {
                // Prepared slots after a failed one are never written; their
                // buffers are abandoned with the card's.
                slots.ready.clear();
            }
            let submitted = self.submit_ready(&mut slots, depth, &mut summary)?;
            // Hand those writes to the kernel now when there is CRC work to
            // do before the next wait (else the wait submits them).
            if submitted > 0 && stop.is_none() {
                if waited.is_none() {
                    waited = self.source.try_take()?;
                }
                if waited.is_some() {
                    self.enter(0)?;
                }
            }

            // Take every buffer the card has filled and prepare its slot at
            // once, while the card's data is still in the CPU caches (a DMA
            // engine writes into the last-level cache; the simulated card's
            // fill leaves it there): the CRC, the one CPU pass over the
            // payload, then reads cache, not memory. Bounded by the ring:
            // each prepared slot holds a buffer.
            while stop.is_none() && index.can_accept(slot_seq) {
                if self
                    .limits
                    .size_bytes
                    .is_some_and(|s| slot_seq * payload_bytes as u64 >= s)
                {
                    stop = Some(StopReason::SizeReached);
                    break;
                }
                let f = match waited.take() {
                    Some(f) => f,
                    None => match self.source.try_take()? {
                        Some(f) => f,
                        None => break,
                    },
                };
                if !self.prepare(&f, slot_seq, &layout, recording_uuid, &mut slots) {
                    stop = Some(StopReason::TargetFull);
                    break;
                }
                slot_seq += 1;
            }
            self.submit_ready(&mut slots, depth, &mut summary)?;
            if steady_usage.is_none() && summary.slots_submitted() >= steady_after_slots {
                steady_usage = Some((summary.slots_submitted(), crate::status::rusage()));
            }

            // Periodic fdatasync of the index, then batches. A sync round
            // seals the partial batch once (only when no index write is in
            // flight, so the fsync that follows is never starved) and issues
            // the fsync when that write has completed.
            let sync_due = last_sync.elapsed() >= self.limits.index_sync_interval;
            let unsynced = index.entries_written > index.entries_durable;
            if fsync_in_flight.is_none()
                && index.writes_in_flight() == 0
                && unsynced
                && (sync_due || stop.is_some())
            {
                let sqe = opcode::Fsync::new(index_fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(TAG_FSYNC << TAG_SHIFT);
                self.push(&sqe)?;
                fsync_in_flight = Some(index.entries_written);
                last_sync = Instant::now();
            }
            let flush = stop.is_some() || (sync_due && index.writes_in_flight() == 0);
            if let Some(bw) = index.seal(flush) {
                self.push_index_write(index_fd, &bw)?;
            }
            if sync_due && !unsynced && !index.pending() && index.writes_in_flight() == 0 {
                last_sync = Instant::now(); // nothing new to sync
            }

            let in_flight =
                slots.in_flight + index.writes_in_flight() + fsync_in_flight.is_some() as usize;
            if stop.is_some()
                && in_flight == 0
                && slots.ready.is_empty()
                && !index.pending()
                && index.entries_durable == index.entries_written
            {
                // The steady-state window ends with the loop (teardown's
                // faults are not the hot path's).
                steady_end = Some((summary.slots_submitted(), crate::status::rusage()));
                break;
            }
            if in_flight == 0 && self.ring.submission().is_empty() {
                // Nothing in the kernel: block on the card.
                assert!(slots.ready.is_empty(), "prepared slots with an empty queue");
                if stop.is_none() {
                    waited = self.source.wait_take(CARD_WAIT_MS)?;
                }
                self.progress.tick(&summary, false);
                continue;
            }
            // Everything the card had is prepared and the queue holds what
            // it can: wait for a completion.
            self.enter(1)?;

            // Completions, copied out of the CQ (bounded by its size) into
            // preallocated storage.
            cqes.clear();
            cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            assert!(cqes.len() <= cqes.capacity());
            resubmit.clear();
            for &(user_data, res) in cqes.iter() {
                let (tag, id) = (
                    user_data >> TAG_SHIFT,
                    (user_data & ((1 << TAG_SHIFT) - 1)) as usize,
                );
                match tag {
                    TAG_SLOT => {
                        assert_eq!(
                            slots.owner[id],
                            Owner::Kernel,
                            "completion for buffer {id} not in flight"
                        );
                        let w = slots.writes[id].as_mut().expect("slot write in flight");
                        let slot_bytes = (SLOT_HEADER_BYTES + payload_bytes) as u32;
                        if res < 0
                            || (res == 0 && w.done_bytes < slot_bytes)
                            || w.short_writes >= MAX_SHORT_WRITES
                        {
                            let t = &self.targets[w.loc.device_index];
                            let err = if res < 0 {
                                std::io::Error::from_raw_os_error(-res).to_string()
                            } else {
                                "no progress".to_string()
                            };
                            if error.is_none() {
                                error = Some(anyhow::anyhow!(
                                    "write failed on {} at offset {} (slot {}, card sequence {}): {err}",
                                    t.path.display(),
                                    w.loc.offset_bytes + w.done_bytes as u64,
                                    w.header.slot_seq,
                                    w.header.card_seq
                                ));
                            }
                            stop = Some(StopReason::IoError);
                            index.fail_slot(w.header.slot_seq);
                            slots.writes[id] = None;
                            slots.owner[id] = Owner::Recorder;
                            slots.in_flight -= 1;
                            continue;
                        }
                        w.done_bytes += res as u32;
                        if w.done_bytes < slot_bytes {
                            w.short_writes += 1;
                            summary.short_writes += 1;
                            // One entry per buffer in flight: never grows.
                            assert!(resubmit.len() < resubmit.capacity());
                            resubmit.push(id);
                            continue;
                        }
                        let entry = IndexEntry::from_header(&w.header, w.loc.offset_bytes);
                        slots.writes[id] = None;
                        slots.in_flight -= 1;
                        summary.note_written(slot_bytes as u64);
                        last_slot_done = Instant::now();
                        index.complete(entry);
                        slots.owner[id] = Owner::Card;
                        if stop.is_none() {
                            self.source.give(id)?;
                        }
                    }
                    TAG_INDEX => {
                        let requested = self.index_write_len[id];
                        if res <= 0 {
                            let why = if res < 0 {
                                std::io::Error::from_raw_os_error(-res).to_string()
                            } else {
                                "no progress".to_string()
                            };
                            if error.is_none() {
                                error = Some(anyhow::anyhow!("index write failed: {why}"));
                            }
                            stop = Some(StopReason::IoError);
                            index.write_failed(id);
                            continue;
                        }
                        if let Some(rest) = index.write_done(id, res as usize, requested as usize) {
                            self.push_index_write(index_fd, &rest)?;
                        }
                    }
                    TAG_FSYNC => {
                        let covered = fsync_in_flight.take().expect("fsync in flight");
                        if res < 0 {
                            if error.is_none() {
                                error = Some(anyhow::anyhow!(
                                    "index fdatasync failed: {}",
                                    std::io::Error::from_raw_os_error(-res)
                                ));
                            }
                            stop = Some(StopReason::IoError);
                            index.entries_durable = index.entries_written;
                        } else {
                            index.entries_durable = covered;
                        }
                    }
                    _ => unreachable!("unknown completion tag {tag}"),
                }
            }
            for &id in &resubmit {
                self.push_slot_write(id, &slots.writes[id].expect("short write in flight"))?;
            }
            self.progress.tick(&summary, false);
        }

        let card: CardStats = match card {
            Some(c) => c,
            None => self.source.stop()?,
        };
        // Nothing is in flight now. Drop the ring's references to the targets
        // and the memory synchronously: a ring torn down at process exit is
        // released later by a kernel worker, and until then it would keep
        // the targets' exclusive claim (EBUSY for the next recording).
        self.ring
            .submitter()
            .unregister_files()
            .context("io_uring: unregistering files")?;
        self.ring
            .submitter()
            .unregister_buffers()
            .context("io_uring: unregistering buffers")?;
        for t in self.targets {
            t.file.sync_data().with_context(|| {
                format!("target {}: flushing the device cache", t.path.display())
            })?;
        }
        self.index_file
            .sync_data()
            .context("index: final fdatasync")?;
        let mut durable = index.entries_durable;
        if stop == Some(StopReason::IoError) {
            let r = crate::readback::check_tail(
                self.targets,
                self.index_file,
                self.memory,
                recording_uuid,
                durable,
                count as u64,
            )?;
            summary.apply_readback(&r, (SLOT_HEADER_BYTES + payload_bytes) as u64);
            durable = durable.min(r.entries);
            if r.dropped > 0 || r.unreadable > 0 {
                error = error.map(|e| {
                    anyhow::anyhow!(
                        "{e:#}; read back after the error: {} slot(s) written before it were \
                         damaged (the device had reported them written), {} could not be read \
                         (left indexed); the index ends at {} entries",
                        r.dropped,
                        r.unreadable,
                        r.entries
                    )
                });
            }
        }
        summary.finish(crate::status::RunEnd {
            reason: stop.unwrap_or(StopReason::Signal),
            elapsed: started.elapsed(),
            writing: last_slot_done.duration_since(started),
            card,
            durable,
            steady: steady_usage.zip(steady_end),
        });
        self.progress.tick(&summary, true);
        if let Some(e) = error {
            summary.error = Some(format!("{e:#}"));
        }
        Ok(summary)
    }

    /// Takes ownership of a filled buffer, prepares its slot (location,
    /// CRC, header) and queues it. False when the targets are full (the
    /// buffer stays the recorder's, abandoned with the card's at the end).
    fn prepare(
        &self,
        f: &Filled,
        slot_seq: u64,
        layout: &Layout,
        recording_uuid: Uuid,
        slots: &mut Slots,
    ) -> bool {
        assert_eq!(
            slots.owner[f.buffer],
            Owner::Card,
            "buffer {} handed over twice",
            f.buffer
        );
        slots.owner[f.buffer] = Owner::Recorder;
        let Some(loc) = layout.locate(slot_seq) else {
            return false;
        };
        let header = self.fill_header(f, slot_seq, loc.device_index, recording_uuid);
        slots.writes[f.buffer] = Some(SlotWrite {
            header,
            loc,
            done_bytes: 0,
            short_writes: 0,
        });
        assert!(
            slots.ready.len() < slots.owner.len(),
            "more prepared slots than buffers"
        );
        slots.ready.push_back(f.buffer);
        true
    }

    /// Submits prepared slots in order, up to `depth` in flight. Returns
    /// how many it submitted.
    fn submit_ready(
        &mut self,
        slots: &mut Slots,
        depth: usize,
        summary: &mut Summary,
    ) -> Result<usize> {
        let mut submitted = 0;
        while slots.in_flight < depth {
            let Some(buffer) = slots.ready.pop_front() else {
                break;
            };
            assert_eq!(
                slots.owner[buffer],
                Owner::Recorder,
                "buffer {buffer} not prepared"
            );
            let w = slots.writes[buffer].expect("prepared slot");
            summary.note_slot(&w.header);
            self.push_slot_write(buffer, &w)?;
            slots.owner[buffer] = Owner::Kernel;
            slots.in_flight += 1;
            submitted += 1;
        }
        Ok(submitted)
    }

    /// CRC of the payload (the one CPU pass over it) and the header page,
    /// written in place in the buffer's header page.
    fn fill_header(
        &self,
        f: &Filled,
        slot_seq: u64,
        device_index: usize,
        recording_uuid: Uuid,
    ) -> SlotHeader {
        let used = f.bytes_used as usize;
        assert!(
            used <= self.memory.payload_bytes(),
            "card filled {used} bytes into a smaller payload"
        );
        // SAFETY: the recorder owns buffer f.buffer (Owner::Recorder): the card
        // finished filling it and the kernel is not writing from it.
        let payload =
            unsafe { std::slice::from_raw_parts(self.memory.payload_ptr(f.buffer), used) };
        let header = SlotHeader {
            recording_uuid,
            slot_seq,
            card_seq: f.card_seq,
            card_timestamp_ns: f.card_timestamp_ns,
            host_timestamp_ns: crate::clock::realtime_ns(),
            gap_count: f.gap_count,
            payload_bytes_used: f.bytes_used,
            payload_crc32: formats::crc32(payload),
            channel: f.channel,
            flags: if f.gap_count > 0 { SLOT_FLAG_GAP } else { 0 },
            device_index: device_index as u16,
        };
        // SAFETY: as above; the header page belongs to the same buffer.
        let page = unsafe {
            std::slice::from_raw_parts_mut(self.memory.buffer_ptr(f.buffer), SLOT_HEADER_BYTES)
        };
        header.encode_into(page);
        header
    }

    fn push_slot_write(&mut self, buffer: usize, w: &SlotWrite) -> Result<()> {
        let slot_bytes = (SLOT_HEADER_BYTES + self.memory.payload_bytes()) as u32;
        // SAFETY: done_bytes < slot_bytes, inside registered buffer `buffer`.
        let ptr = unsafe { self.memory.buffer_ptr(buffer).add(w.done_bytes as usize) };
        let sqe = opcode::WriteFixed::new(
            types::Fixed(w.loc.device_index as u32),
            ptr,
            slot_bytes - w.done_bytes,
            buffer as u16,
        )
        .offset(w.loc.offset_bytes + w.done_bytes as u64)
        .build()
        .user_data((TAG_SLOT << TAG_SHIFT) | buffer as u64);
        self.push(&sqe)
    }

    fn push_index_write(
        &mut self,
        fd: types::Fixed,
        bw: &crate::index_writer::BatchWrite,
    ) -> Result<()> {
        self.index_write_len[bw.batch] = bw.len;
        let sqe = opcode::Write::new(fd, bw.ptr, bw.len)
            .offset(bw.file_offset)
            .build()
            .user_data((TAG_INDEX << TAG_SHIFT) | bw.batch as u64);
        self.push(&sqe)
    }

    /// io_uring_enter: submits what is queued and waits for `want`
    /// completions. An interrupted or busy enter is retried by the loop.
    fn enter(&mut self, want: usize) -> Result<()> {
        match self.ring.submit_and_wait(want) {
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

    fn push(&mut self, sqe: &io_uring::squeue::Entry) -> Result<()> {
        // Bounded: the SQ holds queue_depth + index ops; if full, submit first.
        for _ in 0..2 {
            // SAFETY: every buffer an SQE points to (registered slot memory,
            // index batches) stays allocated and untouched until its
            // completion is reaped: slot memory is owned by Owner::Kernel and
            // index batches are InFlight until then; run() drains all
            // completions before returning.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit().context("io_uring_enter")?;
        }
        bail!("io_uring submission queue stays full")
    }
}
