//! Slot memory: the ring of buffers the card fills and io_uring writes from.
//!
//! Buffer `i` starts at `base + i * stride_bytes` and is a 4 KiB header page
//! followed by the payload, so header and payload go out in one write from
//! one registered buffer. The memory is allocated once at start-up,
//! populated and locked, so the steady state takes no page fault. It comes
//! either from an anonymous mapping owned here (simulated card, and the
//! driver's USERPTR mode) or from the driver's mmap (its MMAP mode).

use anyhow::{bail, Context, Result};
use formats::SLOT_HEADER_BYTES;
use std::ptr::NonNull;

use blockio::HUGE_PAGE_BYTES;

/// Where a slot ring's memory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backing {
    /// Anonymous memory in 2 MiB huge pages (MAP_HUGETLB).
    HugeTlb,
    /// Anonymous memory, 2 MiB aligned, every page of it a transparent huge page.
    TransparentHuge,
    /// Anonymous memory in base pages (transparent huge pages were advised
    /// but the kernel did not give them: see [`SlotMemory::allocate`]).
    Anonymous,
    /// The driver's buffers, mapped from its character device.
    Driver,
}

pub struct SlotMemory {
    base: NonNull<u8>,
    map_bytes: usize,
    stride_bytes: usize,
    count: usize,
    backing: Backing,
    /// Whether `Drop` unmaps it (false when a driver mapping is owned elsewhere).
    owned: bool,
}

// SAFETY: SlotMemory is a plain region of process memory; which thread may
// touch which buffer is decided by the ownership protocol of the recorder
// (one owner per buffer at a time), not by this type.
unsafe impl Send for SlotMemory {}
unsafe impl Sync for SlotMemory {}

impl SlotMemory {
    /// Allocates `count` buffers of header + `payload_bytes`, populated and
    /// locked, in huge pages when the kernel has them: reserved ones
    /// (MAP_HUGETLB) first, then transparent ones.
    ///
    /// Huge pages matter for speed, not only for the TLB: a 516 KiB slot in
    /// base pages is 129 scattered pages, one more than a loop device's (and
    /// many a disk's) 128 segments, so the block layer must split each write,
    /// which it refuses to do for io_uring's non-blocking issue (EAGAIN): every
    /// write then goes through an io-wq worker thread (measured: 0.06 CPU s/GiB
    /// more, see docs/BENCHMARKS.md). In huge pages a slot is 1–2 physically
    /// contiguous runs.
    pub fn allocate(count: usize, payload_bytes: usize) -> Result<SlotMemory> {
        assert!(count > 0 && payload_bytes.is_multiple_of(4096));
        let stride_bytes = SLOT_HEADER_BYTES + payload_bytes;
        let bytes = count
            .checked_mul(stride_bytes)
            .context("slot ring size overflows")?;
        let huge_bytes = bytes.div_ceil(HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES;
        // A ring smaller than a huge page gains nothing from one: map it
        // exactly (the locked-memory limit of a small ring stays small).
        let map_bytes = if bytes >= HUGE_PAGE_BYTES {
            huge_bytes
        } else {
            bytes
        };
        ensure_memlock(map_bytes as u64)?;
        if map_bytes == huge_bytes {
            if let Some(base) = map_anonymous(huge_bytes, libc::MAP_HUGETLB) {
                return Self::finish(base, huge_bytes, stride_bytes, count, Backing::HugeTlb);
            }
        }
        let Some(base) = map_huge_aligned(map_bytes) else {
            bail!(
                "cannot allocate {map_bytes} bytes of slot memory: {}",
                std::io::Error::last_os_error()
            );
        };
        // mlock in finish() populates the mapping, after the advice, so the
        // faults take huge pages where the kernel has them.
        let mut mem = Self::finish(base, map_bytes, stride_bytes, count, Backing::Anonymous)?;
        if anon_huge_bytes(base.as_ptr() as usize, map_bytes) == Some(map_bytes) {
            mem.backing = Backing::TransparentHuge;
        }
        Ok(mem)
    }

    fn finish(
        base: NonNull<u8>,
        map_bytes: usize,
        stride_bytes: usize,
        count: usize,
        backing: Backing,
    ) -> Result<SlotMemory> {
        let mem = SlotMemory {
            base,
            map_bytes,
            stride_bytes,
            count,
            backing,
            owned: true,
        };
        // SAFETY: locking our own mapping of map_bytes bytes.
        if unsafe { libc::mlock(base.as_ptr().cast(), map_bytes) } != 0 {
            bail!(
                "cannot lock {map_bytes} bytes of slot memory: {}. {}",
                std::io::Error::last_os_error(),
                MEMLOCK_HELP
            );
        }
        Ok(mem)
    }

    /// Wraps a driver's mapping of `count` buffers at `stride_bytes`. The
    /// caller keeps the mapping alive for the lifetime of the result.
    ///
    /// # Safety
    /// `base` must point to a readable and writable mapping of at least
    /// `count * stride_bytes` bytes that outlives the returned value.
    pub unsafe fn from_driver(base: NonNull<u8>, count: usize, stride_bytes: usize) -> SlotMemory {
        SlotMemory {
            base,
            map_bytes: count * stride_bytes,
            stride_bytes,
            count,
            backing: Backing::Driver,
            owned: false,
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }
    pub fn stride_bytes(&self) -> usize {
        self.stride_bytes
    }
    pub fn payload_bytes(&self) -> usize {
        self.stride_bytes - SLOT_HEADER_BYTES
    }
    pub fn backing(&self) -> Backing {
        self.backing
    }
    pub fn total_bytes(&self) -> usize {
        self.count * self.stride_bytes
    }

    /// Start of buffer `i` (its header page).
    pub fn buffer_ptr(&self, i: usize) -> *mut u8 {
        assert!(i < self.count, "buffer {i} out of range {}", self.count);
        // SAFETY: i < count, so the offset stays inside the mapping.
        unsafe { self.base.as_ptr().add(i * self.stride_bytes) }
    }

    /// Start of buffer `i`'s payload (what the card fills).
    pub fn payload_ptr(&self, i: usize) -> *mut u8 {
        // SAFETY: the payload follows the header page inside buffer i.
        unsafe { self.buffer_ptr(i).add(SLOT_HEADER_BYTES) }
    }

    /// The buffer whose registered range holds `len` bytes at `ptr`, if
    /// one does: how the loop checks that a write reads the card's own
    /// buffer in place (no copy of the payload anywhere).
    pub fn buffer_holding(&self, ptr: *const u8, len: usize) -> Option<usize> {
        let start = (ptr as usize).checked_sub(self.base.as_ptr() as usize)?;
        let buffer = start / self.stride_bytes;
        let end = start.checked_add(len)?;
        (buffer < self.count && end <= (buffer + 1) * self.stride_bytes).then_some(buffer)
    }

    /// One iovec per buffer, for IORING_REGISTER_BUFFERS.
    pub fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.count)
            .map(|i| libc::iovec {
                iov_base: self.buffer_ptr(i).cast(),
                iov_len: self.stride_bytes,
            })
            .collect()
    }
}

impl Drop for SlotMemory {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: we mapped exactly map_bytes at base; every user of the
            // memory (io_uring registration, card) is gone before the
            // recorder drops it (see record.rs teardown order).
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_bytes) };
        }
    }
}

/// A private anonymous mapping of `bytes` at a 2 MiB aligned address,
/// advised MADV_HUGEPAGE and not yet populated (blockio's), owned from
/// here on by the caller (SlotMemory unmaps it on drop).
fn map_huge_aligned(bytes: usize) -> Option<NonNull<u8>> {
    let region = blockio::AlignedRegion::map(bytes).ok()?;
    let (base, len_bytes) = region.into_raw();
    debug_assert_eq!(len_bytes, bytes);
    Some(base)
}

/// Bytes of [start, start + bytes) that are transparent huge pages, from
/// /proc/self/smaps (None when it cannot be read). Start-up only.
fn anon_huge_bytes(start: usize, bytes: usize) -> Option<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    let mut total_kib = 0usize;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo >= start && hi <= start + bytes;
                continue;
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("AnonHugePages:") {
                total_kib += v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<usize>()
                    .ok()?;
            }
        }
    }
    Some(total_kib * 1024)
}

fn map_anonymous(bytes: usize, extra_flags: i32) -> Option<NonNull<u8>> {
    // SAFETY: a fresh private anonymous mapping; no existing memory touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | extra_flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(p.cast())
}

pub const MEMLOCK_HELP: &str = "Grant locked memory: `ulimit -l unlimited` in the shell, \
`* - memlock unlimited` in /etc/security/limits.conf, or LimitMEMLOCK=infinity in the systemd unit \
(or run with CAP_IPC_LOCK); or use fewer --buffers";

/// Raises RLIMIT_MEMLOCK to cover `needed_bytes` (twice: mlock and the
/// io_uring registration are both charged) when allowed; fails saying how
/// much is needed and how to grant it.
pub fn ensure_memlock(needed_bytes: u64) -> Result<()> {
    let want = needed_bytes.saturating_mul(2);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Ok(());
    }
    if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= want {
        return Ok(());
    }
    let new = libc::rlimit {
        rlim_cur: want.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    let raised =
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } == 0 && new.rlim_cur >= want;
    if raised || has_cap_ipc_lock() {
        return Ok(());
    }
    bail!(
        "locked-memory limit (RLIMIT_MEMLOCK) is {} bytes; dmarec needs {want} bytes: the {needed_bytes}-byte slot ring \
         is counted twice (locked, and registered with io_uring). {MEMLOCK_HELP}",
        lim.rlim_cur
    )
}

const CAP_IPC_LOCK: u32 = 14; // include/uapi/linux/capability.h

fn has_cap_ipc_lock() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1u64 << CAP_IPC_LOCK) != 0)
}
