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
        order.put(checked(2));
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
}
