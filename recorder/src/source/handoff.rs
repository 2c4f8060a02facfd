//! A bounded first-in first-out queue between the recorder and the simulated
//! card's thread, which allocates only when it is made.
//!
//! `std::sync::mpsc` allocates on its first blocking wait: a thread-local
//! waiter context (48 bytes) on each thread's first wait, and the channel's
//! waiter list (96 bytes) on the first wait on each channel. Whether the
//! card's thread ever found its queue empty depends on the relative speed of
//! the two threads, so a recording made 0 or 2 such allocations at random
//! (recorder/tests/no_alloc.rs failed 1 run in 3 in debug builds). This queue
//! is a preallocated ring behind a mutex with a condition variable (futexes
//! on Linux): pushing, popping and waiting never allocate.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The other side closed the queue (stopped, or its thread ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

pub struct Handoff<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Handoff<T> {
    /// A queue holding up to `capacity` items (the recorder's buffer count:
    /// a buffer is in at most one queue at a time, so it never fills up).
    pub fn with_capacity(capacity: usize) -> Handoff<T> {
        assert!(capacity > 0, "a handoff queue needs room for one item");
        Handoff {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A poisoned lock means the other thread panicked while holding it;
        // the queue's two fields are still consistent (each update is one
        // push, pop or store), so carry on and let the caller see `Closed`.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `item`; fails once the queue is closed.
    pub fn push(&self, item: T) -> Result<(), Closed> {
        let mut s = self.lock();
        if s.closed {
            return Err(Closed);
        }
        assert!(
            s.items.len() < self.capacity,
            "handoff queue over its capacity {}: a buffer was handed over twice",
            self.capacity
        );
        s.items.push_back(item); // within the capacity: no allocation
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest item if there is one now; `Closed` once closed and empty.
    pub fn try_pop(&self) -> Result<Option<T>, Closed> {
        let mut s = self.lock();
        match s.items.pop_front() {
            Some(item) => Ok(Some(item)),
            None if s.closed => Err(Closed),
            None => Ok(None),
        }
    }

    /// Waits up to `timeout` for an item; `Ok(None)` on timeout, `Closed`
    /// once closed and empty.
    pub fn pop_timeout(&self, timeout: Duration) -> Result<Option<T>, Closed> {
        let s = self.lock();
        let (mut s, _) = self
            .ready
            .wait_timeout_while(s, timeout, |s| s.items.is_empty() && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        match s.items.pop_front() {
            Some(item) => Ok(Some(item)),
            None if s.closed => Err(Closed),
            None => Ok(None),
        }
    }

    /// Closes the queue and wakes its waiters: later pushes fail, pops
    /// drain what is left and then fail.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_in_first_out_then_closed_after_draining() {
        let q = Handoff::with_capacity(3);
        for i in 0..3 {
            q.push(i).unwrap();
        }
        assert_eq!(q.try_pop(), Ok(Some(0)));
        q.close();
        assert_eq!(q.push(9), Err(Closed));
        assert_eq!(q.try_pop(), Ok(Some(1)));
        assert_eq!(q.pop_timeout(Duration::from_secs(5)), Ok(Some(2)));
        assert_eq!(q.try_pop(), Err(Closed));
        assert_eq!(q.pop_timeout(Duration::from_secs(5)), Err(Closed));
    }

    #[test]
    fn empty_times_out_and_close_wakes_a_waiter() {
        let q = Arc::new(Handoff::<u32>::with_capacity(1));
        assert_eq!(q.try_pop(), Ok(None));
        assert_eq!(q.pop_timeout(Duration::from_millis(1)), Ok(None));
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.pop_timeout(Duration::from_secs(600)))
        };
        q.close();
        assert_eq!(waiter.join().unwrap(), Err(Closed));
    }

    #[test]
    #[should_panic(expected = "over its capacity")]
    fn an_item_beyond_the_capacity_is_a_bug() {
        let q = Handoff::with_capacity(1);
        q.push(1).unwrap();
        let _ = q.push(2);
    }
}
