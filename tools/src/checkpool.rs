//! Slot checks ([`crate::verify::check_slot`]: header, CRC, optionally the
//! simulated card's pattern) on worker threads, one per core, so the
//! thread that reads (and, for replay, writes) is not the one computing
//! CRCs. Used by `dmaplay verify` (any order), `dmaplay replay` and
//! `dmaplay export` (the results put back in read order by [`Ordered`]).
//!
//! Buffer protocol: a read buffer sent with [`CheckPool::send`] belongs to
//! a worker until its [`Checked`] comes back from [`CheckPool::recv`]; the
//! workers read it through the shared pool (an `Arc`), never write it.

use crate::aligned::BufferPool;
use anyhow::{Context, Result};
use formats::{IndexEntry, Uuid};
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the workers check every slot against.
#[derive(Clone, Copy)]
pub struct CheckSpec {
    pub uuid: Uuid,
    pub payload_bytes: usize,
    pub with_pattern: bool,
}

struct Job {
    buffer: usize,
    tag: u64,
    entry: IndexEntry,
}

/// A checked slot: its buffer (free again), the caller's tag, the entry
/// it was checked against, and what is wrong with it.
pub struct Checked {
    pub buffer: usize,
    pub tag: u64,
    pub entry: IndexEntry,
    pub problem: Option<String>,
}

pub struct CheckPool {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Checked>,
    workers: Vec<JoinHandle<()>>,
    /// Sent and not yet received.
    outstanding: usize,
}

impl CheckPool {
    /// `threads` workers (0: one per core) checking slots of `pool`; at
    /// most `pool.count()` jobs wait.
    pub fn start(pool: Arc<BufferPool>, threads: usize, spec: CheckSpec) -> CheckPool {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(pool.count());
        let (done_tx, done) = mpsc::channel::<Checked>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let workers = (0..threads)
            .map(|_| {
                let (jobs_rx, done_tx, pool) = (jobs_rx.clone(), done_tx.clone(), pool.clone());
                std::thread::spawn(move || work(&jobs_rx, &done_tx, &pool, spec))
            })
            .collect();
        CheckPool {
            jobs: Some(jobs_tx),
            done,
            workers,
            outstanding: 0,
        }
    }

    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Slots sent and not yet received.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Hands read buffer `buffer` (holding the slot of `entry`) to a worker.
    pub fn send(&mut self, buffer: usize, tag: u64, entry: IndexEntry) -> Result<()> {
        let jobs = self.jobs.as_ref().expect("jobs channel open until finish");
        jobs.send(Job { buffer, tag, entry })
            .context("slot check worker thread stopped")?;
        self.outstanding += 1;
        Ok(())
    }

    /// A checked slot; with `wait`, waits for one while any is out.
    pub fn recv(&mut self, wait: bool) -> Result<Option<Checked>> {
        if self.outstanding == 0 {
            return Ok(None);
        }
        let checked = if wait {
            self.done
                .recv()
                .context("slot check worker thread stopped")?
        } else {
            match self.done.try_recv() {
                Ok(c) => c,
                Err(_) => return Ok(None),
            }
        };
        self.outstanding -= 1;
        Ok(Some(checked))
    }
}

impl Drop for CheckPool {
    fn drop(&mut self) {
        self.jobs = None; // the workers end when the queue is empty
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn work(
    jobs: &Mutex<Receiver<Job>>,
    done: &mpsc::Sender<Checked>,
    pool: &BufferPool,
    spec: CheckSpec,
) {
    // Bounded by the jobs sent: ends when the sender is dropped.
    loop {
        let job = match jobs.lock().expect("jobs lock").recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        // The worker owns job.buffer until it sends it back in Checked.
        let problem = crate::verify::check_slot(
            pool.bytes(job.buffer),
            &job.entry,
            spec.uuid,
            spec.payload_bytes,
            spec.with_pattern,
        );
        let checked = Checked {
            buffer: job.buffer,
            tag: job.tag,
            entry: job.entry,
            problem,
        };
        if done.send(checked).is_err() {
            return;
        }
    }
}

/// Puts checked slots back in the order they were sent: tag `n` is the
/// `n`-th slot sent (0, 1, 2, ...), and [`InOrder::take_next`] returns them in
/// that order, each when it and every one before it are back.
#[derive(Default)]
pub struct InOrder {
    next_tag: u64,
    waiting: BTreeMap<u64, Checked>,
}

impl InOrder {
    pub fn put(&mut self, checked: Checked) {
        assert!(
            checked.tag >= self.next_tag && !self.waiting.contains_key(&checked.tag),
            "slot tag {} put twice",
            checked.tag
        );
        self.waiting.insert(checked.tag, checked);
    }

    pub fn take_next(&mut self) -> Option<Checked> {
        let c = self.waiting.remove(&self.next_tag)?;
        self.next_tag += 1;
        Some(c)
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Finished reads checked on the workers (or, without workers, in the
/// calling thread as they come) and given back in the order they were
/// read, each with its buffer (the caller's again) and its problem.
pub struct Ordered {
    checks: Option<CheckPool>,
    spec: CheckSpec,
    pool: Arc<BufferPool>,
    slot_bytes: usize,
    order: InOrder,
    /// Reads taken so far (the next one's InOrder tag).
    sent: u64,
}

impl Ordered {
    /// Over reads of `slot_bytes` into `pool`; `workers`: check on a
    /// [`CheckPool`] (one thread per core), else in the calling thread.
    pub fn new(pool: Arc<BufferPool>, slot_bytes: usize, spec: CheckSpec, workers: bool) -> Self {
        Ordered {
            checks: workers.then(|| CheckPool::start(pool.clone(), 0, spec)),
            spec,
            pool,
            slot_bytes,
            order: InOrder::default(),
            sent: 0,
        }
    }

    /// Takes read `c` of the slot of `entry` (its buffer until [`Ordered::next`]
    /// gives it back).
    pub fn add(&mut self, c: &crate::uring::Completion, entry: IndexEntry) -> Result<()> {
        let tag = self.sent;
        self.sent += 1;
        let checked = |problem| Checked {
            buffer: c.buffer,
            tag,
            entry,
            problem,
        };
        match (&c.result, self.checks.as_mut()) {
            (Err(why), _) => self.order.put(checked(Some(format!("read failed: {why}")))),
            (Ok(()), Some(checks)) => checks.send(c.buffer, tag, entry)?,
            (Ok(()), None) => {
                let slot = &self.pool.bytes(c.buffer)[..self.slot_bytes];
                let s = self.spec;
                let problem = crate::verify::check_slot(
                    slot,
                    &entry,
                    s.uuid,
                    s.payload_bytes,
                    s.with_pattern,
                );
                self.order.put(checked(problem));
            }
        }
        Ok(())
    }

    /// The next read in read order, once checked; with `wait`, waits for
    /// it while checks are out. None: not back yet, or nothing taken.
    pub fn next(&mut self, wait: bool) -> Result<Option<Checked>> {
        // Bounded: each turn receives one of the checks out.
        loop {
            if let Some(c) = self.order.take_next() {
                return Ok(Some(c));
            }
            let Some(checks) = self.checks.as_mut() else {
                return Ok(None);
            };
            match checks.recv(wait)? {
                Some(c) => self.order.put(c),
                None => return Ok(None),
            }
        }
    }

    /// Reads out for checking.
    pub fn outstanding(&self) -> usize {
        self.checks.as_ref().map_or(0, |c| c.outstanding())
    }

    /// The bytes of read buffer `buffer`.
    pub fn slot(&self, buffer: usize) -> &[u8] {
        &self.pool.bytes(buffer)[..self.slot_bytes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(tag: u64) -> Checked {
        Checked {
            buffer: tag as usize,
            tag,
            entry: IndexEntry::default(),
            problem: None,
        }
    }

    #[test]
    fn in_order_gives_each_slot_when_every_one_before_it_is_back() {
        let mut order = InOrder::default();
        assert!(order.is_empty());
        order.put(checked(2));
        assert!(!order.is_empty(), "slot 2 waits");
        order.put(checked(1));
        assert!(order.take_next().is_none(), "slot 0 is still out");
        order.put(checked(0));
        let tags: Vec<u64> = std::iter::from_fn(|| order.take_next())
            .map(|c| c.tag)
            .collect();
        assert_eq!(tags, vec![0, 1, 2]);
        assert!(order.is_empty());
        order.put(checked(4));
        assert!(order.take_next().is_none(), "slot 3 is still out");
        order.put(checked(3));
        assert_eq!(order.take_next().map(|c| c.tag), Some(3));
        assert_eq!(order.take_next().map(|c| c.tag), Some(4));
    }

    #[test]
    #[should_panic(expected = "slot tag 0 put twice")]
    fn in_order_refuses_a_slot_it_already_gave() {
        let mut order = InOrder::default();
        order.put(checked(0));
        order.take_next().unwrap();
        order.put(checked(0));
    }

    const PAYLOAD_BYTES: usize = 4096;
    const SLOT_BYTES: usize = formats::SLOT_HEADER_BYTES + PAYLOAD_BYTES;
    /// Read buffers are longer than a slot: `Ordered::slot` cuts them.
    const BUFFER_BYTES: usize = SLOT_BYTES + 4096;

    fn spec() -> CheckSpec {
        CheckSpec {
            uuid: Uuid([7; 16]),
            payload_bytes: PAYLOAD_BYTES,
            with_pattern: false,
        }
    }

    /// `count` read buffers, buffer `b` holding good slot `b` (an empty
    /// payload) of `spec()`'s recording; the index entries of the slots.
    fn good_slots(count: usize) -> (Arc<BufferPool>, Vec<IndexEntry>) {
        let pool = BufferPool::new(BUFFER_BYTES, count).unwrap();
        let entries = (0..count)
            .map(|b| {
                let header = formats::SlotHeader {
                    recording_uuid: spec().uuid,
                    slot_seq: b as u64,
                    card_seq: 100 + b as u64,
                    card_timestamp_ns: 0,
                    host_timestamp_ns: 0,
                    gap_count: 0,
                    payload_bytes_used: 0,
                    payload_crc32: 0,
                    channel: 0,
                    flags: 0,
                    device_index: 0,
                };
                let page = header.encode();
                // SAFETY: the pool is not shared yet; buffer `b` is
                // BUFFER_BYTES long, more than the header page.
                unsafe { std::ptr::copy_nonoverlapping(page.as_ptr(), pool.ptr(b), page.len()) };
                IndexEntry::from_header(&header, 0)
            })
            .collect();
        (Arc::new(pool), entries)
    }

    #[test]
    fn check_pool_counts_the_slots_out_and_returns_each_checked() {
        let (pool, entries) = good_slots(4);
        let mut checks = CheckPool::start(pool.clone(), 2, spec());
        assert_eq!(checks.threads(), 2);
        assert_eq!(checks.outstanding(), 0);
        assert!(checks.recv(true).unwrap().is_none(), "nothing out");
        // Buffer 2 is checked against slot 1's entry: another slot.
        for b in 0..4 {
            let entry = entries[if b == 2 { 1 } else { b }];
            checks.send(b, 10 + b as u64, entry).unwrap();
            assert_eq!(checks.outstanding(), b + 1);
        }
        let mut back = Vec::new();
        for left in (0..4).rev() {
            back.push(checks.recv(true).unwrap().expect("a check is out"));
            assert_eq!(checks.outstanding(), left);
        }
        assert!(checks.recv(true).unwrap().is_none());
        assert!(checks.recv(false).unwrap().is_none());
        back.sort_by_key(|c| c.tag);
        for (b, c) in back.iter().enumerate() {
            assert_eq!((c.buffer, c.tag), (b, 10 + b as u64));
            assert_eq!(c.problem.is_some(), b == 2, "buffer {b}: {:?}", c.problem);
        }
        assert_eq!(back[2].entry.slot_seq, 1);
        // Dropping the pool joins its workers: their pool references end.
        drop(checks);
        assert_eq!(Arc::strong_count(&pool), 1, "a worker outlived its pool");
    }

    fn read(buffer: usize, result: std::result::Result<(), String>) -> crate::uring::Completion {
        let request = crate::uring::Request {
            device_index: 0,
            offset_bytes: 0,
            len_bytes: SLOT_BYTES,
            tag: buffer as u64,
        };
        crate::uring::Completion {
            request,
            buffer,
            result,
        }
    }

    /// Four reads through `Ordered` (buffer 1 failed, buffer 3 checked
    /// against slot 0's entry) come back in read order with their problems.
    fn ordered_gives_reads_back_in_order(workers: bool) {
        let (pool, entries) = good_slots(4);
        let mut ordered = Ordered::new(pool.clone(), SLOT_BYTES, spec(), workers);
        assert!(ordered.next(true).unwrap().is_none(), "nothing taken");
        for b in [2, 0, 1, 3] {
            let result = if b == 1 { Err("EIO".into()) } else { Ok(()) };
            let entry = entries[if b == 3 { 0 } else { b }];
            ordered.add(&read(b, result), entry).unwrap();
        }
        // Three reads went to the workers (the failed one is not checked).
        assert_eq!(ordered.outstanding(), if workers { 3 } else { 0 });
        let back: Vec<Checked> = (0..4)
            .map(|_| ordered.next(true).unwrap().expect("a read was taken"))
            .collect();
        assert!(ordered.next(true).unwrap().is_none());
        assert_eq!(ordered.outstanding(), 0);
        let order: Vec<(u64, usize)> = back.iter().map(|c| (c.tag, c.buffer)).collect();
        assert_eq!(order, vec![(0, 2), (1, 0), (2, 1), (3, 3)]);
        assert_eq!(back[0].problem, None);
        assert_eq!(back[1].problem, None);
        assert_eq!(back[2].problem.as_deref(), Some("read failed: EIO"));
        assert!(back[3].problem.is_some(), "slot 3 read as slot 0");
        assert_eq!(ordered.slot(3), &pool.bytes(3)[..SLOT_BYTES]);
        assert_eq!(&ordered.slot(3)[..8], &pool.bytes(3)[..8]);
    }

    #[test]
    fn ordered_on_workers_gives_reads_back_in_read_order() {
        ordered_gives_reads_back_in_order(true);
    }

    #[test]
    fn ordered_in_the_calling_thread_gives_reads_back_in_read_order() {
        ordered_gives_reads_back_in_order(false);
    }
}
