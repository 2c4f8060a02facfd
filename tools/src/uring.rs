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
    fn deliver(&mut self, pool: &BufferPool, c: Completion) -> Result<Option<usize>>;
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
        let mut free: Vec<usize> = (0..count).rev().collect();
        let mut kept = 0usize; // buffers the sink holds
        let mut window: VecDeque<InFlight> = VecDeque::with_capacity(count);
        let mut head_serial = 0u64; // serial number of window[0]
        let mut exhausted = false;
        loop {
            // Fill: one read per free buffer.
            while !exhausted && window.len() < count {
                let buffer = match free.pop() {
                    Some(b) => b,
                    None => match sink.reclaim(false)? {
                        Some(b) => {
                            kept -= 1;
                            b
                        }
                        None => break,
                    },
                };
                match requests.next() {
                    Some(request) => {
                        assert!(
                            request.len_bytes <= self.pool.buffer_bytes(),
                            "read larger than its buffer"
                        );
                        let serial = head_serial + window.len() as u64;
                        window.push_back(InFlight {
                            request,
                            buffer,
                            done_bytes: 0,
                            short_reads: 0,
                            result: None,
                        });
                        self.submit(window.back().unwrap(), serial)?;
                    }
                    None => {
                        free.push(buffer);
                        exhausted = true;
                    }
                }
            }
            // Deliver finished reads in order.
            while window.front().is_some_and(|f| f.result.is_some()) {
                let f = window.pop_front().unwrap();
                head_serial += 1;
                let c = Completion {
                    request: f.request,
                    buffer: f.buffer,
                    result: f.result.unwrap(),
                };
                match sink.deliver(&self.pool, c)? {
                    Some(b) => free.push(b),
                    None => kept += 1,
                }
            }
            if window.is_empty() {
                if exhausted {
                    break;
                }
                if free.is_empty() {
                    // Every buffer is with the sink: wait for one back.
                    assert!(kept > 0, "no buffer free, none in flight, none kept");
                    match sink.reclaim(true)? {
                        Some(b) => {
                            kept -= 1;
                            free.push(b);
                        }
                        None => bail!("internal: sink kept every buffer and returned none"),
                    }
                }
                continue;
            }
            self.ring
                .submit_and_wait(1)
                .context("io_uring_enter (reading targets)")?;
            let mut resubmit = Vec::new();
            for cqe in self.ring.completion() {
                self.in_flight -= 1;
                let serial = cqe.user_data();
                let at = (serial - head_serial) as usize;
                let f = &mut window[at];
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
                let f = &window[(serial - head_serial) as usize];
                self.submit(f, serial)?;
            }
        }
        assert_eq!(free.len() + kept, count, "buffers lost track of");
        // Take back what the sink still holds, so a next run starts with all.
        while kept > 0 {
            match sink.reclaim(true)? {
                Some(_) => kept -= 1,
                None => bail!("internal: sink did not return {kept} buffer(s)"),
            }
        }
        Ok(())
    }

    fn submit(&mut self, f: &InFlight, serial: u64) -> Result<()> {
        let r = &f.request;
        let Some(slot) = self.fixed.get(r.device_index).copied().flatten() else {
            bail!("internal: read from missing member {}", r.device_index);
        };
        // SAFETY: done_bytes < len_bytes <= buffer_bytes: inside buffer f.buffer.
        let ptr = unsafe { self.pool.ptr(f.buffer).add(f.done_bytes) };
        let len = (r.len_bytes - f.done_bytes) as u32;
        let offset = r.offset_bytes + f.done_bytes as u64;
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
    fn deliver(&mut self, pool: &BufferPool, c: Completion) -> Result<Option<usize>> {
        let buffer = c.buffer;
        (self.0)(&pool.bytes(buffer)[..c.request.len_bytes], c)?;
        Ok(Some(buffer))
    }
}

/// How many buffers to use for reads (blockio's, with the commands'
/// budgets in [`blockio::ReadBudget`]).
pub use blockio::buffer_count;
