//! Buffer pools for O_DIRECT reads, and how big they may be.
//!
//! A pool is one [`AlignedRegion`] split into `count` equal buffers,
//! allocated once up front and never resized. Buffers are handed around by
//! number. Whoever holds a buffer's number (the kernel while a read is in
//! flight, then exactly one consumer) is the only one touching its bytes;
//! [`BufferPool::bytes`] and [`BufferPool::ptr`] rely on that protocol,
//! which dmaplay's reader and verify workers follow.

use crate::{AlignedRegion, ALIGN_BYTES};

pub struct BufferPool {
    region: AlignedRegion,
    buffer_bytes: usize,
    count: usize,
}

impl BufferPool {
    /// `count` buffers of `buffer_bytes` (a multiple of 4096) each, zeroed.
    pub fn new(buffer_bytes: usize, count: usize) -> anyhow::Result<BufferPool> {
        assert!(count > 0, "a pool has at least one buffer");
        assert!(
            buffer_bytes > 0 && buffer_bytes.is_multiple_of(ALIGN_BYTES),
            "buffer size {buffer_bytes} is not a positive multiple of {ALIGN_BYTES}"
        );
        let total_bytes = buffer_bytes.checked_mul(count).ok_or_else(|| {
            anyhow::anyhow!("read buffers: {count} x {buffer_bytes} bytes overflows")
        })?;
        let region = AlignedRegion::map(total_bytes)
            .map_err(|e| anyhow::anyhow!("read buffers: cannot map {total_bytes} bytes: {e}"))?;
        Ok(BufferPool {
            region,
            buffer_bytes,
            count,
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// The whole pool, for io_uring buffer registration.
    pub fn iovec(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.region.as_ptr().cast(),
            iov_len: self.count * self.buffer_bytes,
        }
    }

    /// Start of buffer `index`, for the kernel to read into.
    pub fn ptr(&self, index: usize) -> *mut u8 {
        assert!(
            index < self.count,
            "buffer {index} out of range {}",
            self.count
        );
        // SAFETY: index < count, so the offset stays inside the region.
        unsafe { self.region.as_ptr().add(index * self.buffer_bytes) }
    }

    /// The bytes of buffer `index`.
    ///
    /// The caller must own buffer `index` (no read in flight into it, no
    /// other thread writing it) for as long as it uses the slice.
    pub fn bytes(&self, index: usize) -> &[u8] {
        // SAFETY: in bounds (ptr asserts); the ownership protocol above
        // guarantees nobody writes this buffer while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr(index), self.buffer_bytes) }
    }
}

/// How much memory one of dmaplay's commands reads into at once, and how
/// many reads it keeps in flight at most. The four budgets of the commands
/// that read payloads and the scan's are here, side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadBudget {
    pub budget_bytes: usize,
    pub max_buffers: usize,
}

impl ReadBudget {
    /// `dmaplay verify`: whole slots, CRC work on every core.
    pub const VERIFY: ReadBudget = ReadBudget {
        budget_bytes: 128 << 20,
        max_buffers: 64,
    };
    /// `dmaplay export`: whole slots, written out in order.
    pub const EXPORT: ReadBudget = ReadBudget {
        budget_bytes: 64 << 20,
        max_buffers: 32,
    };
    /// `dmaplay replay`: whole slots, paced. `--speed max` read at 0.62 x
    /// verify's rate with 16 reads in flight (bench/results/
    /// readout-20261130-143736), 0.83 x with 32 (-144753), 0.81 x with 64
    /// (-145106): 32, the smaller of the two that measured the same.
    pub const REPLAY: ReadBudget = ReadBudget {
        budget_bytes: 64 << 20,
        max_buffers: 32,
    };
    /// `dmaplay reindex`'s read of the newest slots (the torn tail).
    pub const TORN_TAIL: ReadBudget = ReadBudget {
        budget_bytes: 64 << 20,
        max_buffers: 16,
    };
    /// The header scan: 4 KiB header pages.
    pub const SCAN: ReadBudget = ReadBudget {
        budget_bytes: 64 * ALIGN_BYTES,
        max_buffers: 64,
    };

    /// Buffers for reads of `buffer_bytes` over `members` members.
    pub fn buffer_count(&self, buffer_bytes: usize, members: usize) -> usize {
        buffer_count(buffer_bytes, members, self.budget_bytes, self.max_buffers)
    }
}

/// How many buffers to use for reads of `buffer_bytes`: 2 per member (so
/// every member has reads in flight) up to `max_count`, more while they fit
/// in `budget_bytes`.
pub fn buffer_count(
    buffer_bytes: usize,
    members: usize,
    budget_bytes: usize,
    max_count: usize,
) -> usize {
    assert!(max_count >= 2);
    let floor = (2 * members).clamp(2, max_count);
    (budget_bytes / buffer_bytes.max(1)).clamp(floor, max_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_disjoint() {
        let pool = BufferPool::new(8192, 3).unwrap();
        for i in 0..3 {
            assert_eq!(pool.ptr(i) as usize % ALIGN_BYTES, 0);
            assert_eq!(pool.bytes(i).len(), 8192);
        }
        assert_eq!(pool.ptr(1) as usize - pool.ptr(0) as usize, 8192);
    }

    #[test]
    fn every_member_gets_reads_in_flight_within_the_cap() {
        let slot_bytes = 516 << 10;
        assert_eq!(ReadBudget::VERIFY.buffer_count(slot_bytes, 1), 64);
        assert_eq!(ReadBudget::REPLAY.buffer_count(64 << 20, 3), 6);
        assert_eq!(ReadBudget::REPLAY.buffer_count(64 << 20, 8), 16);
        assert_eq!(ReadBudget::REPLAY.buffer_count(slot_bytes, 1), 32);
        assert_eq!(ReadBudget::SCAN.buffer_count(ALIGN_BYTES, 2), 64);
    }
}
