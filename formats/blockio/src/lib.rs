//! Block I/O shared by both binaries: the recorder (`dmarec`, which writes
//! targets) and dmaplay (which only reads them).
//!
//! What both need from the kernel is written here once: a device's size
//! and logical block size ([`geometry`]: BLKGETSIZE64, BLKSSZGET), O_DIRECT
//! opens ([`open_read_only_direct`], [`open_read_write_direct`]), memory
//! for O_DIRECT I/O ([`AlignedRegion`]: anonymous, 2 MiB aligned and advised
//! MADV_HUGEPAGE when it is that big, see [`HUGE_PAGE_BYTES`] for why),
//! buffer pools carved from it ([`BufferPool`]), synchronous O_DIRECT
//! set-up reads and writes ([`read_direct`], [`write_direct`]), and the
//! read-buffer budgets of dmaplay's commands ([`ReadBudget`]).
//!
//! Why a crate of its own, inside formats/: the `formats` crate is the
//! on-disk format, pure and free of system calls (its fuzzer and property
//! tests run anywhere); this is the system side both binaries link, next to
//! the format it serves, without a new top-level directory. What stays in
//! the recorder: its slot memory (locked with mlock, registered once with
//! io_uring, or the driver's mapping), built on [`AlignedRegion`].

mod buffers;
mod device;
mod region;

pub use buffers::{buffer_count, BufferPool, ReadBudget};
pub use device::{
    geometry, open_read_only_direct, open_read_write_direct, read_direct, write_direct, Geometry,
};
pub use region::AlignedRegion;

/// Alignment of every O_DIRECT buffer and offset: works with any logical
/// block size up to it.
pub const ALIGN_BYTES: usize = 4096;

/// Memory for O_DIRECT I/O of at least this size is 2 MiB aligned and
/// advised to use transparent huge pages: a 516 KiB slot in 129 scattered
/// base pages is one more than a loop device's (and many a disk's) 128
/// segments, so the block layer must split each request, which io_uring's
/// non-blocking issue refuses (EAGAIN): every request then goes through an
/// io-wq worker thread (docs/BENCHMARKS.md). In huge pages a slot is 1-2
/// physically contiguous runs.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;
