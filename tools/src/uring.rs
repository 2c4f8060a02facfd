//! Reads many blocks from the stripe set's members with io_uring: O_DIRECT
//! reads into registered buffers (READ_FIXED; plain READ when the kernel
//! refuses to pin the memory), several in flight, delivered in request
//! order to a [`Sink`].
//!
//! Memory is allocated once ([`BufferPool`]); the number of reads in flight
//! is bounded by the buffer count. A sink may keep a buffer after delivery
//! (to hand it to a worker thread) and give it back later through
//! [`Sink::reclaim`].

use crate::aligned::BufferPool;
use anyhow::{bail, Context, Result};
use io_uring::{opcode, types, IoUring};
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

/// One read: `len_bytes` at `offset_bytes` of member `device_index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub device_index: usize,
    pub offset_bytes: u64,
    pub len_bytes: usize,
    /// The caller's number for this read (e.g. the catalog position).
    pub tag: u64,
}

/// A finished read, delivered in request order.
pub struct Completion {
    pub request: Request,
    pub buffer: usize,
    /// `Err` with the errno text, or "end of device", when the read failed.
    pub result: std::result::Result<(), String>,
}

pub trait Sink {
    /// Takes a finished read. Returns the buffer when done with it, or
    /// `None` to keep it and return it later from [`Sink::reclaim`].
    fn deliver(&mut self, pool: &BufferPool, completion: Completion) -> Result<Option<usize>>;
    /// A buffer kept earlier that is free again; waits for one when `wait`.
    fn reclaim(&mut self, wait: bool) -> Result<Option<usize>> {
        let _ = wait;
        Ok(None)
    }
}

/// The error of a read the device ends before.
pub const END_OF_DEVICE: &str = "end of device";

/// Longest chain of short reads we resubmit for one request.
const MAX_SHORT_READS: u32 = 16;

pub struct Reader {
    ring: IoUring,
    pool: Arc<BufferPool>,
    /// Fixed-file slot of each member (None: member missing).
    fixed: Vec<Option<u32>>,
    raw_fds: Vec<Option<i32>>,
    registered_buffers: bool,
    /// Reads submitted and not yet reaped.
    in_flight: usize,
}

/// The bookkeeping of one [`Reader::run`].
struct RunState {
    /// Buffers neither in flight nor with the sink.
    free: Vec<usize>,
    /// Buffers the sink holds.
    kept: usize,
    /// Reads in request order; the front is delivered first.
    window: VecDeque<InFlight>,
    /// Serial number of window[0].
    head_serial: u64,
    /// The request iterator is done.
    exhausted: bool,
    /// Reads queued since the last io_uring_enter.
    unsubmitted: usize,
    submit_batch: usize,
}

struct InFlight {
    request: Request,
    buffer: usize,
    done_bytes: usize,
    short_reads: u32,
    result: Option<std::result::Result<(), String>>,
}

impl Reader {
    /// A reader over `files` (by member index; `None` for a missing member)
    /// with `buffer_count` buffers of `buffer_bytes`.
    pub fn new(
        files: &[Option<&File>],
        buffer_bytes: usize,
        buffer_count: usize,
    ) -> Result<Reader> {
        let pool = Arc::new(BufferPool::new(buffer_bytes, buffer_count)?);
        let ring = IoUring::new((buffer_count as u32).next_power_of_two().max(8)).context(
            "io_uring_setup failed (is io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
        )?;
        let mut fds = Vec::new();
        let mut fixed = Vec::with_capacity(files.len());
        let mut raw_fds = Vec::with_capacity(files.len());
        for f in files {
            match f {
                Some(f) => {
                    fixed.push(Some(fds.len() as u32));
                    raw_fds.push(Some(f.as_raw_fd()));
                    fds.push(f.as_raw_fd());
                }
                None => {
                    fixed.push(None);
                    raw_fds.push(None);
                }
            }
        }
        ring.submitter()
            .register_files(&fds)
            .context("io_uring: registering target files")?;
        // SAFETY: the pool outlives the ring's use of it: the ring is a field
        // of Reader dropped with it, and the Arc keeps the pool alive.
        let registered_buffers =
            unsafe { ring.submitter().register_buffers(&[pool.iovec()]) }.is_ok();
        Ok(Reader {
            ring,
            pool,
            fixed,
            raw_fds,
            registered_buffers,
            in_flight: 0,
        })
    }

    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }

    /// Whether reads use registered buffers (READ_FIXED).
    pub fn registered_buffers(&self) -> bool {
        self.registered_buffers
    }

    /// Reads every request (in order of the iterator, at most one per free
    /// buffer in flight) and delivers the results in the same order.
    pub fn run(
        &mut self,
        requests: &mut dyn Iterator<Item = Request>,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let r = self.run_inner(requests, sink);
        if r.is_err() {
            // Never leave the kernel reading into memory we may free.
            self.drain();
        }
        r
    }

    /// Waits for every submitted read (after an error; results discarded).
    fn drain(&mut self) {
        // Bounded: each wait reaps at least one of `in_flight` reads, or fails.
        while self.in_flight > 0 {
            if self.ring.submit_and_wait(1).is_err() {
                return;
            }
            let reaped = self.ring.completion().count();
            self.in_flight -= reaped.min(self.in_flight);
        }
    }

    fn run_inner(
        &mut self,
        requests: &mut dyn Iterator<Item = Request>,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let count = self.pool.count();
        let mut st = RunState {
            free: (0..count).rev().collect(),
            kept: 0,
            window: VecDeque::with_capacity(count),
            head_serial: 0,
            exhausted: false,
            unsubmitted: 0,
            submit_batch: (count / 4).max(1),
        };
        loop {
            self.fill(&mut st, requests, sink)?;
            self.deliver_ready(&mut st, requests, sink)?;
            if st.window.is_empty() {
                if st.exhausted {
                    break;
                }
                if st.free.is_empty() {
                    // Every buffer is with the sink: wait for one back.
                    assert!(st.kept > 0, "no buffer free, none in flight, none kept");
                    match sink.reclaim(true)? {
                        Some(b) => {
                            st.kept -= 1;
                            st.free.push(b);
                        }
                        None => bail!("internal: sink kept every buffer and returned none"),
                    }
                }
                continue;
            }
            self.ring
                .submit_and_wait(1)
                .context("io_uring_enter (reading targets)")?;
            st.unsubmitted = 0;
            self.reap(&mut st)?;
        }
        assert_eq!(st.free.len() + st.kept, count, "buffers lost track of");
        // Take back what the sink still holds, so a next run starts with all.
        while st.kept > 0 {
            match sink.reclaim(true)? {
                Some(_) => st.kept -= 1,
                None => bail!("internal: sink did not return {} buffer(s)", st.kept),
            }
        }
        Ok(())
    }

    /// Queues one read per free buffer (or buffer the sink gives back).
    fn fill(
        &mut self,
        st: &mut RunState,
        requests: &mut dyn Iterator<Item = Request>,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let count = self.pool.count();
        // Bounded: each turn adds a read to the window, which holds `count`.
        while !st.exhausted && st.window.len() < count {
            let buffer = match st.free.pop() {
                Some(b) => b,
                None => match sink.reclaim(false)? {
                    Some(b) => {
                        st.kept -= 1;
                        b
                    }
                    None => break,
                },
            };
            let Some(request) = requests.next() else {
                st.free.push(buffer);
                st.exhausted = true;
                break;
            };
            assert!(
                request.len_bytes <= self.pool.buffer_bytes(),
                "read larger than its buffer"
            );
            let serial = st.head_serial + st.window.len() as u64;
            st.window.push_back(InFlight {
                request,
                buffer,
                done_bytes: 0,
                short_reads: 0,
                result: None,
            });
            self.submit(st.window.back().unwrap(), serial)?;
            st.unsubmitted += 1;
        }
        Ok(())
    }

    /// Delivers the finished reads at the window's front, in order. After
    /// each, the freed buffer gets its next read at once (sent to the
    /// kernel every `submit_batch` reads): a sink that takes its time (a
    /// paced replay sleeping until a slot is due, a CRC check) never
    /// leaves the devices without reads while it works through a batch.
    fn deliver_ready(
        &mut self,
        st: &mut RunState,
        requests: &mut dyn Iterator<Item = Request>,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        // Bounded: each turn takes one read out of the window.
        while st.window.front().is_some_and(|f| f.result.is_some()) {
            let f = st.window.pop_front().unwrap();
            st.head_serial += 1;
            let c = Completion {
                request: f.request,
                buffer: f.buffer,
                result: f.result.unwrap(),
            };
            match sink.deliver(&self.pool, c)? {
                Some(b) => st.free.push(b),
                None => st.kept += 1,
            }
            self.fill(st, requests, sink)?;
            if st.unsubmitted >= st.submit_batch {
                self.ring
                    .submit()
                    .context("io_uring_enter (reading targets)")?;
                st.unsubmitted = 0;
            }
        }
        Ok(())
    }

    /// Takes every completion there is into the window; resubmits the
    /// rest of a short read.
    fn reap(&mut self, st: &mut RunState) -> Result<()> {
        let mut resubmit = Vec::new();
        for cqe in self.ring.completion() {
            self.in_flight -= 1;
            let serial = cqe.user_data();
            let f = &mut st.window[(serial - st.head_serial) as usize];
            let res = cqe.result();
            if res < 0 {
                f.result = Some(Err(std::io::Error::from_raw_os_error(-res).to_string()));
            } else if res == 0 {
                f.result = Some(Err(END_OF_DEVICE.to_string()));
            } else {
                f.done_bytes += res as usize;
                if f.done_bytes >= f.request.len_bytes {
                    f.result = Some(Ok(()));
                } else if f.short_reads >= MAX_SHORT_READS {
                    f.result = Some(Err(format!(
                        "short read ({} of {} bytes)",
                        f.done_bytes, f.request.len_bytes
                    )));
                } else {
                    f.short_reads += 1;
                    resubmit.push(serial);
                }
            }
        }
        for serial in resubmit {
            let f = &st.window[(serial - st.head_serial) as usize];
            self.submit(f, serial)?;
        }
        Ok(())
    }

    fn submit(&mut self, in_flight: &InFlight, serial: u64) -> Result<()> {
        let r = &in_flight.request;
        let Some(slot) = self.fixed.get(r.device_index).copied().flatten() else {
            bail!("internal: read from missing member {}", r.device_index);
        };
        // SAFETY: done_bytes < len_bytes <= buffer_bytes: inside buffer f.buffer.
        let ptr = unsafe { self.pool.ptr(in_flight.buffer).add(in_flight.done_bytes) };
        let len = (r.len_bytes - in_flight.done_bytes) as u32;
        let offset = r.offset_bytes + in_flight.done_bytes as u64;
        let sqe = if self.registered_buffers {
            opcode::ReadFixed::new(types::Fixed(slot), ptr, len, 0)
                .offset(offset)
                .build()
        } else {
            let fd = self.raw_fds[r.device_index].expect("fd of a present member");
            opcode::Read::new(types::Fd(fd), ptr, len)
                .offset(offset)
                .build()
        }
        .user_data(serial);
        // Bounded: the ring has an entry per buffer; at most one retry after submitting.
        for _ in 0..2 {
            // SAFETY: the buffer stays allocated (Arc'd pool) and untouched
            // (owned by this in-flight read) until its completion is reaped.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.ring.submit().context("io_uring_enter")?;
        }
        bail!("io_uring submission queue stays full")
    }
}

/// A sink that handles each completion synchronously with a closure.
pub struct FnSink<F: FnMut(&[u8], Completion) -> Result<()>>(pub F);

impl<F: FnMut(&[u8], Completion) -> Result<()>> Sink for FnSink<F> {
    fn deliver(&mut self, pool: &BufferPool, completion: Completion) -> Result<Option<usize>> {
        let buffer = completion.buffer;
        (self.0)(
            &pool.bytes(buffer)[..completion.request.len_bytes],
            completion,
        )?;
        Ok(Some(buffer))
    }
}

/// How many buffers to use for reads (blockio's, with the commands'
/// budgets in [`blockio::ReadBudget`]).
pub use blockio::buffer_count;

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Records, at each delivery, how many requests the reader had taken.
    struct Taken<'a> {
        taken: &'a Cell<usize>,
        at_delivery: Vec<(u64, usize)>,
    }

    impl Sink for Taken<'_> {
        fn deliver(&mut self, pool: &BufferPool, c: Completion) -> Result<Option<usize>> {
            assert_eq!(c.result, Ok(()), "read {}", c.request.tag);
            let first = pool.bytes(c.buffer)[0];
            assert_eq!(u64::from(first), c.request.tag, "the read's own bytes");
            self.at_delivery.push((c.request.tag, self.taken.get()));
            Ok(Some(c.buffer))
        }
    }

    #[test]
    fn a_buffer_gets_its_next_read_as_soon_as_it_is_delivered() {
        const BLOCK_BYTES: usize = 4096;
        const BLOCKS: u64 = 40;
        const BUFFERS: usize = 8;
        let dir = crate::synth::Dir::new("uring-refill");
        let path = dir.0.join("blocks");
        let bytes: Vec<u8> = (0..BLOCKS)
            .flat_map(|b| vec![b as u8; BLOCK_BYTES])
            .collect();
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mut reader = Reader::new(&[Some(&file)], BLOCK_BYTES, BUFFERS).unwrap();
        let taken = Cell::new(0usize);
        let mut requests = (0..BLOCKS).map(|tag| {
            taken.set(taken.get() + 1);
            Request {
                device_index: 0,
                offset_bytes: tag * BLOCK_BYTES as u64,
                len_bytes: BLOCK_BYTES,
                tag,
            }
        });
        let mut sink = Taken {
            taken: &taken,
            at_delivery: Vec::new(),
        };
        reader.run(&mut requests, &mut sink).unwrap();
        let tags: Vec<u64> = sink.at_delivery.iter().map(|d| d.0).collect();
        assert_eq!(tags, (0..BLOCKS).collect::<Vec<_>>(), "in request order");
        // When read `tag` is delivered, every other buffer holds a later
        // read: BUFFERS - 1 reads are ahead of it, as long as there are.
        for &(tag, taken) in &sink.at_delivery {
            let want = (tag as usize + BUFFERS).min(BLOCKS as usize);
            assert!(
                taken >= want,
                "read {tag} delivered with only {taken} requests taken (want {want}): {:?}",
                sink.at_delivery
            );
        }
    }
}
