//! The recorder's io_uring instances and the options that shape them
//! (`dmarec record --sqpoll`, `--register-ring-fd`, `--iopoll`).
//!
//! - **SQPOLL** (`IORING_SETUP_SQPOLL`): a kernel thread (`iou-sqp-PID`, a
//!   thread of the recorder's process, so its CPU time is in the process's
//!   rusage) takes submissions from the SQ without a system call; it sleeps
//!   after `sq_thread_idle` ms without work and is woken by the next enter.
//!   The kernel refuses SQPOLL with COOP_TASKRUN or DEFER_TASKRUN (EINVAL).
//! - **A registered ring fd** (`IORING_REGISTER_RING_FDS`, Linux 5.18): each
//!   `io_uring_enter` names the ring by its index in the thread's table
//!   instead of a file descriptor (no fdget/fdput per call). The table
//!   belongs to the thread that registered: [`Rings::new`] runs in the
//!   recording thread, and the registration ends with [`Rings`] (drop).
//!   The io-uring crate keeps its own registration inside one `Submitter`,
//!   which the loop cannot hold next to the ring it mutably borrows; so
//!   [`Rings::enter`] makes the system call itself.
//! - **IOPOLL** (`IORING_SETUP_IOPOLL`): completions are polled from the
//!   device's poll queues instead of interrupts. Such a ring takes only
//!   O_DIRECT reads and writes (an fsync is EINVAL there, a buffered write
//!   EOPNOTSUPP), so the index writes, the index fdatasync and the targets'
//!   flushes go through a second, ordinary ring (`journal`). On a device
//!   without poll queues the kernel silently completes by interrupt while the
//!   recorder spins: [`check_iopoll_targets`] refuses that at start.

use crate::target::Target;
use anyhow::{bail, Result};
use io_uring::{squeue, IoUring};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;

/// include/uapi/linux/io_uring.h
const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_SQ_WAKEUP: u32 = 1 << 1;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
const IORING_REGISTER_RING_FDS: u32 = 20;
const IORING_UNREGISTER_RING_FDS: u32 = 21;

/// How the rings are set up (all off: the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringOptions {
    /// SQPOLL, with the thread's idle time before it sleeps, ms.
    pub sqpoll_idle_ms: Option<u32>,
    pub register_ring_fd: bool,
    pub iopoll: bool,
}

/// Task-run flags tried in order, as fio does; SQPOLL takes none of the
/// task-run flags, DEFER_TASKRUN needs SINGLE_ISSUER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taskrun {
    SingleIssuerDefer,
    SingleIssuer,
    Coop,
    Plain,
}

impl Taskrun {
    fn label(self) -> &'static str {
        match self {
            Taskrun::SingleIssuerDefer => "single_issuer+defer_taskrun",
            Taskrun::SingleIssuer => "single_issuer",
            Taskrun::Coop => "coop_taskrun",
            Taskrun::Plain => "plain",
        }
    }
}

fn taskrun_choices(sqpoll: bool, completions_by_interrupt_only: bool) -> &'static [Taskrun] {
    if sqpoll {
        &[Taskrun::SingleIssuer, Taskrun::Plain]
    } else if completions_by_interrupt_only {
        // The journal ring next to an IOPOLL ring: its completions must be
        // posted without an enter on it (DEFER_TASKRUN would hold them).
        &[Taskrun::Coop, Taskrun::Plain]
    } else {
        &[Taskrun::SingleIssuerDefer, Taskrun::Coop, Taskrun::Plain]
    }
}

/// Builds one ring: `options`' SQPOLL/IOPOLL with the best task-run flags
/// the kernel takes. Returns the ring and its flags, e.g. `sqpoll+single_issuer`.
fn build(
    entries: u32,
    sqpoll_idle_ms: Option<u32>,
    iopoll: bool,
    journal_only: bool,
) -> std::result::Result<(IoUring, String), std::io::Error> {
    let mut last_error = None;
    for &taskrun in taskrun_choices(sqpoll_idle_ms.is_some(), journal_only) {
        let mut builder = IoUring::builder();
        if let Some(idle_ms) = sqpoll_idle_ms {
            builder.setup_sqpoll(idle_ms);
        }
        if iopoll {
            builder.setup_iopoll();
        }
        match taskrun {
            Taskrun::SingleIssuerDefer => builder.setup_single_issuer().setup_defer_taskrun(),
            Taskrun::SingleIssuer => builder.setup_single_issuer(),
            Taskrun::Coop => builder.setup_coop_taskrun(),
            Taskrun::Plain => &mut builder,
        };
        match builder.build(entries) {
            Ok(ring) => {
                let mut label = String::new();
                if sqpoll_idle_ms.is_some() {
                    label.push_str("sqpoll+");
                }
                if iopoll {
                    label.push_str("iopoll+");
                }
                label.push_str(taskrun.label());
                return Ok((ring, label));
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.expect("at least one set of flags tried"))
}

/// Why the kernel refused a ring with `options`, and what to do.
pub fn refusal_message(options: &UringOptions, error: &std::io::Error) -> String {
    let errno = error.raw_os_error();
    let asked = match (options.sqpoll_idle_ms.is_some(), options.iopoll) {
        (true, true) => "--sqpoll --iopoll",
        (true, false) => "--sqpoll",
        (false, true) => "--iopoll",
        (false, false) => "",
    };
    match errno {
        Some(libc::EPERM) if options.sqpoll_idle_ms.is_some() => format!(
            "io_uring_setup with SQPOLL refused ({error}): before Linux 5.11 an SQPOLL thread \
             needs CAP_SYS_ADMIN, and /proc/sys/kernel/io_uring_disabled, seccomp or an LSM \
             may forbid it; run as root, or record without {asked}"
        ),
        Some(libc::EINVAL) if !asked.is_empty() => format!(
            "io_uring_setup refused {asked} ({error}): this kernel does not take these ring \
             flags; record without {asked}"
        ),
        _ => format!(
            "io_uring_setup failed ({error}){}; is io_uring disabled? see \
             /proc/sys/kernel/io_uring_disabled",
            if asked.is_empty() {
                String::new()
            } else {
                format!(" with {asked}")
            }
        ),
    }
}

/// The recorder's rings: `slots` carries the slot writes (and, without
/// IOPOLL, everything); `journal` the index and flush operations next to an
/// IOPOLL ring.
pub struct Rings {
    pub slots: IoUring,
    pub journal: Option<IoUring>,
    /// Registered ring fd indexes (IORING_REGISTER_RING_FDS), per ring.
    slots_index: Option<u32>,
    journal_index: Option<u32>,
    /// The flags that worked, for the summary.
    pub setup: String,
}

impl Rings {
    /// Sets up the rings of `entries` SQEs each. Runs in the recording thread:
    /// a registered ring fd is that thread's.
    pub fn new(entries: u32, options: &UringOptions) -> Result<Rings> {
        let refused = |e: std::io::Error| anyhow::anyhow!(refusal_message(options, &e));
        let (slots, mut setup) =
            build(entries, options.sqpoll_idle_ms, options.iopoll, false).map_err(refused)?;
        let journal = if options.iopoll {
            let (ring, label) = build(entries, None, false, true).map_err(refused)?;
            setup.push_str(&format!(", journal ring {label}"));
            Some(ring)
        } else {
            None
        };
        let mut rings = Rings {
            slots,
            journal,
            slots_index: None,
            journal_index: None,
            setup,
        };
        if options.register_ring_fd {
            rings.slots_index = Some(register_ring_fd(&rings.slots)?);
            if let Some(j) = &rings.journal {
                rings.journal_index = Some(register_ring_fd(j)?);
            }
            rings.setup.push_str(", registered ring fd");
        }
        Ok(rings)
    }

    /// The ring journal operations (index writes, syncs, flushes) go to.
    pub fn journal_ring(&mut self) -> &mut IoUring {
        self.journal.as_mut().unwrap_or(&mut self.slots)
    }

    /// Both submission queues are empty.
    pub fn submissions_empty(&mut self) -> bool {
        self.slots.submission().is_empty()
            && self
                .journal
                .as_mut()
                .is_none_or(|j| j.submission().is_empty())
    }

    /// Completion queue entries of all rings.
    pub fn cq_entries(&self) -> usize {
        self.slots.params().cq_entries() as usize
            + self
                .journal
                .as_ref()
                .map_or(0, |j| j.params().cq_entries() as usize)
    }

    /// Submits what both rings hold, then waits for `want` completions on
    /// the slot ring if `slots_in_flight`, else on the journal ring. (With
    /// two rings, a journal completion that comes while slot writes are in
    /// flight is taken after the next slot completion: at most one write's
    /// time later.)
    pub fn enter(&mut self, want: usize, slots_in_flight: bool) -> std::io::Result<()> {
        let Some(journal) = self.journal.as_mut() else {
            return enter_ring(&mut self.slots, self.slots_index, want);
        };
        // The ring not waited on is entered only to submit (its completions
        // are posted by task work run on the way back from any system call:
        // it has no DEFER_TASKRUN).
        if slots_in_flight || want == 0 {
            if !journal.submission().is_empty() {
                enter_ring(journal, self.journal_index, 0)?;
            }
            enter_ring(&mut self.slots, self.slots_index, want)
        } else {
            if !self.slots.submission().is_empty() {
                enter_ring(&mut self.slots, self.slots_index, 0)?;
            }
            enter_ring(journal, self.journal_index, want)
        }
    }

    /// Pushes `sqe` to `ring`'s SQ, submitting first if it is full.
    pub fn push(&mut self, sqe: &squeue::Entry, to_journal: bool) -> Result<()> {
        // Bounded: the SQ holds every operation that can be in flight
        // (record::sq_entries); if full, submit once and retry.
        for _ in 0..2 {
            let (ring, index) = match (to_journal, self.journal.as_mut()) {
                (true, Some(journal)) => (journal, self.journal_index),
                _ => (&mut self.slots, self.slots_index),
            };
            // SAFETY: every buffer an SQE points to (registered slot memory,
            // index batches) stays allocated and untouched until its
            // completion is reaped: slot memory is Owner::Kernel and index
            // batches are InFlight until then; Recorder::run drains all
            // completions before returning.
            if unsafe { ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            enter_ring(ring, index, 0).map_err(|e| anyhow::anyhow!("io_uring_enter: {e}"))?;
        }
        bail!("io_uring submission queue stays full")
    }

    /// Unregisters the ring fds (also done on drop).
    fn unregister_ring_fds(&mut self) {
        if let Some(i) = self.slots_index.take() {
            unregister_ring_fd(&self.slots, i);
        }
        if let (Some(i), Some(j)) = (self.journal_index.take(), &self.journal) {
            unregister_ring_fd(j, i);
        }
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        // A registered ring fd holds a reference to the ring until the
        // thread exits: a service recording scan after scan would keep
        // every ring (and its targets' claims) without this.
        self.unregister_ring_fds();
    }
}

/// `io_uring_enter`: submits the SQ and waits for `want` completions, by
/// the ring's registered index when it has one. Same decisions as the
/// io-uring crate's `submit_and_wait` (SQPOLL wake-up, GETEVENTS for
/// IOPOLL, CQ overflow and task work).
fn enter_ring(ring: &mut IoUring, index: Option<u32>, want: usize) -> std::io::Result<()> {
    let Some(index) = index else {
        return ring.submit_and_wait(want).map(drop);
    };
    let params = ring.params();
    let (sqpoll, iopoll) = (params.is_setup_sqpoll(), params.is_setup_iopoll());
    let sq = ring.submission();
    let to_submit = sq.len() as u32;
    let must_enter = sq.cq_overflow() || sq.taskrun();
    let mut flags = IORING_ENTER_REGISTERED_RING;
    if want > 0 || iopoll || must_enter {
        flags |= IORING_ENTER_GETEVENTS;
    }
    if sqpoll {
        // The kernel thread takes the SQ by itself unless it sleeps.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if sq.need_wakeup() {
            flags |= IORING_ENTER_SQ_WAKEUP;
        } else if want == 0 && !must_enter {
            return Ok(());
        }
    }
    drop(sq);
    // SAFETY: `index` was returned by IORING_REGISTER_RING_FDS for this ring
    // in this thread and is unregistered only when the Rings is dropped; no
    // argument pointer is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            index as libc::c_long,
            to_submit as libc::c_long,
            want as libc::c_long,
            flags as libc::c_long,
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_long,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// struct io_uring_rsrc_update (include/uapi/linux/io_uring.h).
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// IORING_REGISTER_RING_FDS of `ring` in the calling thread: its index.
fn register_ring_fd(ring: &IoUring) -> Result<u32> {
    let mut update = RsrcUpdate {
        offset: u32::MAX, // any free slot
        resv: 0,
        data: ring.as_raw_fd() as u64,
    };
    // SAFETY: `update` is a live io_uring_rsrc_update the kernel reads and
    // writes (the chosen offset) during the call only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd() as libc::c_long,
            IORING_REGISTER_RING_FDS as libc::c_long,
            &mut update as *mut RsrcUpdate,
            1 as libc::c_long,
        )
    };
    if r != 1 {
        let e = std::io::Error::last_os_error();
        bail!(
            "--register-ring-fd: IORING_REGISTER_RING_FDS refused ({e}): it needs Linux 5.18; \
             record without --register-ring-fd"
        );
    }
    assert!(update.offset != u32::MAX, "kernel chose no ring fd slot");
    Ok(update.offset)
}

fn unregister_ring_fd(ring: &IoUring, index: u32) {
    let update = RsrcUpdate {
        offset: index,
        resv: 0,
        data: 0,
    };
    // SAFETY: as in register_ring_fd; the kernel only reads `update`.
    // Best effort: a failure leaves the registration to the thread's exit.
    unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd() as libc::c_long,
            IORING_UNREGISTER_RING_FDS as libc::c_long,
            &update as *const RsrcUpdate,
            1 as libc::c_long,
        )
    };
}

/// The sysfs `queue/io_poll` of block device `rdev` (its disk's for a
/// partition): "1" when the device completes polled I/O by polling.
fn io_poll_path(rdev: u64) -> std::path::PathBuf {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let dev = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if dev.join("partition").exists() {
        dev.join("../queue/io_poll")
    } else {
        dev.join("queue/io_poll")
    }
}

/// With `--iopoll`, every target must be a block device with poll queues:
/// anything else would be completed by interrupt while the recorder spins.
pub fn check_iopoll_targets(targets: &[Target]) -> Result<()> {
    for t in targets {
        let path = t.path.display();
        if !t.is_block_device {
            bail!(
                "--iopoll: {path} is a regular file: polled completions need a raw block device \
                 with poll queues (an NVMe namespace); record without --iopoll"
            );
        }
        let rdev = t.file.metadata()?.rdev();
        let sysfs = io_poll_path(rdev);
        let io_poll = std::fs::read_to_string(&sysfs).unwrap_or_default();
        if io_poll.trim() != "1" {
            bail!(
                "--iopoll: {path} has no poll queues ({} is {:?}): IOPOLL needs a device whose \
                 driver polls, e.g. an NVMe namespace with nvme.poll_queues=N on the kernel \
                 command line (or `options nvme poll_queues=N` in /etc/modprobe.d); record \
                 without --iopoll",
                sysfs.display(),
                io_poll.trim()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqpoll_never_takes_a_taskrun_flag_and_defer_is_tried_first_otherwise() {
        assert_eq!(
            taskrun_choices(true, false),
            &[Taskrun::SingleIssuer, Taskrun::Plain]
        );
        assert_eq!(taskrun_choices(false, false)[0], Taskrun::SingleIssuerDefer);
        assert!(!taskrun_choices(false, true).contains(&Taskrun::SingleIssuerDefer));
    }

    #[test]
    fn refusals_name_the_option_and_the_fix() {
        let sqpoll = UringOptions {
            sqpoll_idle_ms: Some(100),
            ..Default::default()
        };
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        let m = refusal_message(&sqpoll, &eperm);
        assert!(
            m.contains("CAP_SYS_ADMIN") && m.contains("without --sqpoll"),
            "{m}"
        );
        let iopoll = UringOptions {
            iopoll: true,
            ..Default::default()
        };
        let einval = std::io::Error::from_raw_os_error(libc::EINVAL);
        let m = refusal_message(&iopoll, &einval);
        assert!(
            m.contains("refused --iopoll") && m.contains("without --iopoll"),
            "{m}"
        );
        let m = refusal_message(&UringOptions::default(), &einval);
        assert!(
            m.contains("io_uring_disabled") && !m.contains("without"),
            "{m}"
        );
    }

    #[test]
    fn eperm_without_sqpoll_is_not_blamed_on_sqpoll() {
        let iopoll = UringOptions {
            iopoll: true,
            ..Default::default()
        };
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        let m = refusal_message(&iopoll, &eperm);
        assert!(
            !m.contains("SQPOLL") && m.contains("io_uring_disabled") && m.contains("--iopoll"),
            "{m}"
        );
    }

    fn nop(user_data: u64) -> squeue::Entry {
        io_uring::opcode::Nop::new().build().user_data(user_data)
    }

    /// User data of the completions waiting in `ring`'s CQ, taken.
    fn reap(ring: &mut IoUring) -> Vec<u64> {
        ring.completion().map(|c| c.user_data()).collect()
    }

    /// A read of one byte from a pipe nobody writes to: in flight until
    /// `pipe[1]` is written. Returns the pipe; its buffer is `byte`.
    fn pending_pipe_read(byte: &mut u8, user_data: u64) -> ([libc::c_int; 2], squeue::Entry) {
        let mut pipe = [0; 2];
        // SAFETY: `pipe` is a live array of two fds for the call.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0, "pipe()");
        let fd = io_uring::types::Fd(pipe[0]);
        let sqe = io_uring::opcode::Read::new(fd, byte as *mut u8, 1)
            .build()
            .user_data(user_data);
        (pipe, sqe)
    }

    #[test]
    fn iopoll_rings_route_journal_ops_and_wait_on_the_ring_asked() {
        let options = UringOptions {
            iopoll: true,
            ..Default::default()
        };
        let mut rings = Rings::new(8, &options).unwrap();
        let journal_cq = rings.journal.as_ref().unwrap().params().cq_entries() as usize;
        let slots_cq = rings.slots.params().cq_entries() as usize;
        assert!(journal_cq > 0 && slots_cq > 0);
        assert_eq!(rings.cq_entries(), slots_cq + journal_cq);
        assert!(rings.submissions_empty());

        // A journal op goes to the journal ring only.
        let mut byte = 0u8;
        let (pipe, read) = pending_pipe_read(&mut byte, 7);
        rings.push(&read, true).unwrap();
        assert_eq!(rings.journal.as_mut().unwrap().submission().len(), 1);
        assert!(rings.slots.submission().is_empty());
        assert!(
            !rings.submissions_empty(),
            "the journal's SQ holds the read"
        );
        rings.push(&nop(1), false).unwrap();
        assert!(!rings.submissions_empty());

        // Slot writes in flight: both SQs submitted, the wait is for the
        // slot ring's completion (the journal's read stays in flight).
        rings.enter(1, true).unwrap();
        assert!(rings.submissions_empty(), "both rings submitted");
        assert_eq!(reap(&mut rings.slots), vec![1]);

        // No slot write in flight: the wait is for the journal's read,
        // which completes when another thread writes the pipe 2 s later
        // (a wait on the slot ring returns at once: nothing is polled).
        let writer = pipe[1];
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(2));
            // SAFETY: `writer` is the pipe's write end, open until joined;
            // `b"x"` is one live byte.
            unsafe { libc::write(writer, b"x".as_ptr().cast(), 1) }
        });
        rings.enter(1, false).unwrap();
        // Before the join: an enter that did not wait for the read finds
        // the journal's CQ empty (unless held off the CPU for the 2 s).
        assert_eq!(reap(rings.journal_ring()), vec![7]);
        assert_eq!(writer.join().unwrap(), 1);
        assert_eq!(byte, b'x');
        // Waiting on the journal ring submits the slot ring too.
        rings.push(&nop(2), false).unwrap();
        rings.push(&nop(8), true).unwrap();
        rings.enter(1, false).unwrap();
        assert!(rings.submissions_empty(), "both NOPs submitted");
        assert_eq!(reap(rings.journal_ring()), vec![8]);
        assert_eq!(reap(&mut rings.slots), vec![2]);
        // SAFETY: the pipe's fds, closed once; the read is complete.
        unsafe { (libc::close(pipe[0]), libc::close(pipe[1])) };
    }

    #[test]
    fn a_registered_ring_fd_waits_for_completions() {
        let options = UringOptions {
            register_ring_fd: true,
            ..Default::default()
        };
        let mut rings = Rings::new(8, &options).unwrap();
        assert!(rings.slots_index.is_some());
        // A timer of 2 s: enter(1) must come back with its completion (an
        // enter that does not wait finds the CQ empty, unless this thread
        // is held off the CPU for the 2 s between the enter and the reap).
        let ts = io_uring::types::Timespec::new().sec(2);
        let timer = io_uring::opcode::Timeout::new(&ts).build().user_data(5);
        rings.push(&timer, false).unwrap();
        rings.enter(1, true).unwrap();
        assert_eq!(reap(&mut rings.slots), vec![5], "enter(1) returned early");
        // want 0: submits without waiting (a NOP completes as submitted).
        rings.push(&nop(6), false).unwrap();
        rings.enter(0, true).unwrap();
        assert_eq!(reap(&mut rings.slots), vec![6]);
    }

    /// Overflows the CQ of rings with `options` (NOPs never reaped), then
    /// checks that reaping and one enter(0) bring every completion back.
    fn overflowed_cq_is_flushed_by_the_next_enter(options: &UringOptions) {
        let mut rings = Rings::new(4, options).unwrap();
        let cq = rings.slots.params().cq_entries() as u64;
        let sq = rings.slots.submission().capacity() as u64;
        let total = cq + sq;
        // Bounded: total / sq rounds of sq NOPs, none reaped; an SQPOLL
        // thread takes each round within 500 looks 10 ms apart.
        for round in 0..total / sq {
            for i in 0..sq {
                rings.push(&nop(round * sq + i), false).unwrap();
            }
            rings.enter(0, true).unwrap();
            let taken = (0..500).any(|_| {
                let empty = rings.slots.submission().is_empty();
                if !empty {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                empty
            });
            assert!(taken, "round {round}: the SQ was never taken");
        }
        let overflowed = (0..500).any(|_| {
            let o = rings.slots.submission().cq_overflow();
            if !o {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            o
        });
        assert!(overflowed, "no CQ overflow");
        assert_eq!(reap(&mut rings.slots).len() as u64, cq);
        // The overflowed completions come back on the next enter.
        rings.enter(0, true).unwrap();
        assert_eq!(reap(&mut rings.slots).len() as u64, total - cq);
    }

    #[test]
    fn a_registered_ring_fd_flushes_an_overflowed_cq() {
        overflowed_cq_is_flushed_by_the_next_enter(&UringOptions {
            register_ring_fd: true,
            ..Default::default()
        });
    }

    #[test]
    fn sqpoll_awake_with_a_registered_ring_fd_flushes_an_overflowed_cq() {
        overflowed_cq_is_flushed_by_the_next_enter(&UringOptions {
            sqpoll_idle_ms: Some(60_000),
            register_ring_fd: true,
            ..Default::default()
        });
    }

    #[test]
    fn sqpoll_with_a_registered_ring_fd_wakes_the_sleeping_thread() {
        let options = UringOptions {
            sqpoll_idle_ms: Some(1),
            register_ring_fd: true,
            ..Default::default()
        };
        let mut rings = Rings::new(8, &options).unwrap();
        // Bounded: up to 500 looks 10 ms apart for the thread to sleep.
        let asleep = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            rings.slots.submission().need_wakeup()
        });
        assert!(asleep, "the SQPOLL thread never went to sleep");
        rings.push(&nop(3), false).unwrap();
        rings.enter(1, true).unwrap();
        assert_eq!(reap(&mut rings.slots), vec![3]);
    }

    #[test]
    fn sqpoll_awake_with_a_registered_ring_fd_still_waits() {
        let options = UringOptions {
            sqpoll_idle_ms: Some(60_000),
            register_ring_fd: true,
            ..Default::default()
        };
        let mut rings = Rings::new(8, &options).unwrap();
        let ts = io_uring::types::Timespec::new().sec(2);
        let timer = io_uring::opcode::Timeout::new(&ts).build().user_data(4);
        rings.push(&timer, false).unwrap();
        rings.enter(1, true).unwrap();
        assert_eq!(reap(&mut rings.slots), vec![4], "enter(1) returned early");
    }

    #[test]
    fn two_registered_rings_in_one_thread_each_enter_their_own() {
        let options = UringOptions {
            register_ring_fd: true,
            ..Default::default()
        };
        let mut first = Rings::new(8, &options).unwrap();
        let mut second = Rings::new(8, &options).unwrap();
        assert_ne!(first.slots_index, second.slots_index);
        second.push(&nop(2), false).unwrap();
        second.enter(0, true).unwrap();
        assert_eq!(reap(&mut second.slots), vec![2]);
        assert!(reap(&mut first.slots).is_empty());
    }

    #[test]
    fn dropped_rings_free_their_registered_ring_fds() {
        let options = UringOptions {
            register_ring_fd: true,
            iopoll: true,
            ..Default::default()
        };
        let rings = Rings::new(8, &options).unwrap();
        let indexes = (rings.slots_index, rings.journal_index);
        assert!(indexes.0.is_some() && indexes.1.is_some());
        drop(rings);
        // Bounded: the thread's table would fill after 16 leaked pairs.
        for _ in 0..20 {
            let again = Rings::new(8, &options).unwrap();
            assert_eq!((again.slots_index, again.journal_index), indexes);
        }
    }

    #[test]
    fn a_partition_reads_its_disks_io_poll() {
        // /sys/dev/block/M:m of a partition has a `partition` file; a
        // nonexistent device is taken as a whole disk.
        let p = io_poll_path(libc::makedev(4095, 4095));
        assert!(p.ends_with("4095:4095/queue/io_poll"), "{}", p.display());
    }
}
