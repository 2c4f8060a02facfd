//! Page-aligned memory for O_DIRECT reads: one allocation, split into
//! `count` equal buffers, allocated once up front and never resized.
//!
//! Buffers are handed around by number. Whoever holds a buffer's number
//! (the kernel while a read is in flight, then exactly one consumer) is the
//! only one touching its bytes; [`BufferPool::bytes`] and
//! [`BufferPool::ptr`] rely on that protocol, which the reader and the
//! verify workers follow.

use std::alloc::{alloc, dealloc, Layout};

/// Alignment of every buffer: O_DIRECT works with any logical block size up to it.
pub const ALIGN_BYTES: usize = 4096;
/// Pools of at least this size are aligned to it and advised to use
/// transparent huge pages: a 516 KiB read into 129 scattered base pages is
/// split by the block layer (a loop device takes 128 segments), which
/// io_uring's non-blocking issue refuses, so each read would go through an
/// io-wq worker (the recorder's slot memory has the same reason, see
/// recorder/src/memory.rs).
const HUGE_PAGE_BYTES: usize = 2 << 20;

pub struct BufferPool {
    base: *mut u8,
    layout: Layout,
    buffer_bytes: usize,
    count: usize,
}

// SAFETY: the pool is plain memory; concurrent access is to disjoint buffers
// only (the ownership protocol in the module documentation).
unsafe impl Send for BufferPool {}
// SAFETY: as above; shared references only hand out disjoint buffers.
unsafe impl Sync for BufferPool {}

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
        let huge = total_bytes >= HUGE_PAGE_BYTES;
        let align = if huge { HUGE_PAGE_BYTES } else { ALIGN_BYTES };
        let layout = Layout::from_size_align(total_bytes, align)?;
        // SAFETY: layout has a non-zero size (checked above).
        let base = unsafe { alloc(layout) };
        if base.is_null() {
            anyhow::bail!("read buffers: cannot allocate {total_bytes} bytes");
        }
        // SAFETY: base..base+total_bytes is ours; the advice comes before the
        // first touch (the zeroing), so the faults may take huge pages. The
        // advice failing (no THP in this kernel) leaves base pages.
        unsafe {
            if huge {
                libc::madvise(base.cast(), total_bytes, libc::MADV_HUGEPAGE);
            }
            std::ptr::write_bytes(base, 0, total_bytes);
        }
        Ok(BufferPool {
            base,
            layout,
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

    /// The whole allocation, for io_uring buffer registration.
    pub fn iovec(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.base.cast(),
            iov_len: self.layout.size(),
        }
    }

    /// Start of buffer `index`, for the kernel to read into.
    pub fn ptr(&self, index: usize) -> *mut u8 {
        assert!(
            index < self.count,
            "buffer {index} out of range {}",
            self.count
        );
        // SAFETY: index < count, so the offset stays inside the allocation.
        unsafe { self.base.add(index * self.buffer_bytes) }
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

impl Drop for BufferPool {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this layout, freed once.
        unsafe { dealloc(self.base, self.layout) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_are_aligned_and_disjoint() {
        let pool = super::BufferPool::new(8192, 3).unwrap();
        for i in 0..3 {
            assert_eq!(pool.ptr(i) as usize % super::ALIGN_BYTES, 0);
            assert_eq!(pool.bytes(i).len(), 8192);
        }
        assert_eq!(pool.ptr(1) as usize - pool.ptr(0) as usize, 8192);
    }
}
