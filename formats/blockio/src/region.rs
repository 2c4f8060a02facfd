//! Anonymous memory for O_DIRECT I/O, mapped once and never resized.

use crate::HUGE_PAGE_BYTES;
use std::ptr::NonNull;

/// A private anonymous mapping of `len_bytes`, zeroed by the kernel, page
/// aligned, and for at least [`HUGE_PAGE_BYTES`] 2 MiB aligned and advised
/// MADV_HUGEPAGE before its first touch (so the faults take huge pages
/// where the kernel has them). Not populated: the first touch, mlock or an
/// io_uring registration populates it. Unmapped on drop.
pub struct AlignedRegion {
    base: NonNull<u8>,
    len_bytes: usize,
}

// SAFETY: a plain region of process memory owned by this value; which
// thread touches which bytes is decided by its users' ownership protocols.
unsafe impl Send for AlignedRegion {}
unsafe impl Sync for AlignedRegion {}

impl AlignedRegion {
    /// Maps `len_bytes` (> 0). Fails with the errno of mmap.
    pub fn map(len_bytes: usize) -> std::io::Result<AlignedRegion> {
        assert!(len_bytes > 0, "an empty region");
        let huge = len_bytes >= HUGE_PAGE_BYTES;
        // Reserve a huge page more, to cut an aligned start out of it.
        let reserve = if huge {
            len_bytes + HUGE_PAGE_BYTES
        } else {
            len_bytes
        };
        // SAFETY: a fresh private anonymous mapping; no existing memory touched.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let start = start as usize;
        let aligned = if huge {
            start.next_multiple_of(HUGE_PAGE_BYTES)
        } else {
            start
        };
        let end = start + reserve;
        // SAFETY: both trimmed ranges lie inside the mapping made above and
        // outside [aligned, aligned + len_bytes), which is what we keep.
        unsafe {
            if aligned > start {
                libc::munmap(start as *mut libc::c_void, aligned - start);
            }
            if end > aligned + len_bytes {
                let tail = (aligned + len_bytes) as *mut libc::c_void;
                libc::munmap(tail, end - aligned - len_bytes);
            }
            if huge {
                // Advice only: failure (no THP in this kernel) leaves base pages.
                libc::madvise(aligned as *mut libc::c_void, len_bytes, libc::MADV_HUGEPAGE);
            }
        }
        let base = NonNull::new(aligned as *mut u8).expect("mmap never maps address 0");
        Ok(AlignedRegion { base, len_bytes })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// Gives up ownership: the caller unmaps `len_bytes` at the returned
    /// address itself (the recorder's slot memory does, after mlock).
    pub fn into_raw(self) -> (NonNull<u8>, usize) {
        let raw = (self.base, self.len_bytes);
        std::mem::forget(self);
        raw
    }
}

impl Drop for AlignedRegion {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly len_bytes at base and own the mapping;
        // whoever borrowed it (a slice, an io_uring registration) is gone
        // before the owner drops it.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len_bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_regions_are_page_aligned_and_large_ones_huge_page_aligned() {
        let small = AlignedRegion::map(8192).unwrap();
        assert_eq!(small.as_ptr() as usize % crate::ALIGN_BYTES, 0);
        let large = AlignedRegion::map(HUGE_PAGE_BYTES + 4096).unwrap();
        assert_eq!(large.as_ptr() as usize % HUGE_PAGE_BYTES, 0);
        // SAFETY: the region is ours, len_bytes long, and zeroed by mmap.
        let bytes = unsafe { std::slice::from_raw_parts(large.as_ptr(), large.len_bytes()) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
}
