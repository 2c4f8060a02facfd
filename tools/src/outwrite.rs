//! Writes exported payloads to the output files with io_uring, straight
//! from the read buffers: O_DIRECT where the output's file system takes it
//! and the write is aligned (no copy into the page cache), buffered
//! otherwise, several writes in flight, so reading the recording and
//! writing the outputs overlap.
//!
//! Buffer protocol (see [`crate::uring::Sink`]): a read buffer handed to
//! [`Writer::write`] with `Some(buffer)` belongs to the kernel until its
//! write completes; [`Writer::reclaim`] gives it back. The writer holds the
//! read pool (an `Arc`), so the memory outlives any write in flight, and
//! its `Drop` waits for every write it submitted.

use crate::aligned::{BufferPool, ALIGN_BYTES};
use anyhow::{bail, Context, Result};
use io_uring::{opcode, types, IoUring};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest chain of short writes resubmitted for one write.
const MAX_SHORT_WRITES: u32 = 16;

struct OutFile {
    path: PathBuf,
    /// The same file opened O_DIRECT (None: the file system refused it,
    /// or a direct write failed with EINVAL once).
    direct: Option<File>,
    buffered: File,
    /// Bytes allocated ahead (fallocate), cut back to `end_bytes` at finish.
    preallocated_bytes: u64,
    /// The end of the furthest write so far.
    end_bytes: u64,
}

/// One write in flight; its slab index is the io_uring user_data.
#[derive(Clone, Copy)]
struct Pending {
    file: usize,
    offset_bytes: u64,
    /// Address of the first byte (inside the read pool or the zero buffer).
    addr: usize,
    len_bytes: usize,
    done_bytes: usize,
    direct: bool,
    short_writes: u32,
    /// The read buffer to give back when the write is done.
    buffer: Option<usize>,
}

pub struct Writer {
    ring: IoUring,
    files: Vec<OutFile>,
    /// Keeps the read buffers alive while writes from them are in flight.
    _read_pool: Arc<BufferPool>,
    /// `zero_bytes` of zeros, never written to: the source of gap fillers.
    zeros: BufferPool,
    slab: Vec<Option<Pending>>,
    free_slab: Vec<usize>,
    /// Read buffers whose writes are done, not yet reclaimed.
    done_buffers: VecDeque<usize>,
    in_flight: usize,
    buffers_in_flight: usize,
    /// Writes that went O_DIRECT / buffered (for the report and tests).
    pub direct_writes: u64,
    pub buffered_writes: u64,
}

/// statfs f_type of tmpfs (linux/magic.h).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Whether `file` lives in memory (tmpfs): O_DIRECT there is a copy all
/// the same, and an asynchronous one is slower (see [`Writer::write_now`]).
fn in_memory(file: &File) -> bool {
    // SAFETY: statfs is plain data (all-zero is valid); fstatfs writes into
    // the struct this frame owns; the fd is open while `file` is borrowed.
    let (rc, st) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::fstatfs(file.as_raw_fd(), &mut st), st)
    };
    #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
    let f_type = st.f_type as i64;
    rc == 0 && f_type == TMPFS_MAGIC
}

/// Allocates `len_bytes` of `file` ahead (fallocate mode 0, which also
/// sets its size); returns the bytes allocated (0 when the file system
/// cannot). Direct writes into allocated blocks inside the file's size
/// run concurrently; on ext4 a direct write that extends the file or fills
/// a hole takes the inode lock exclusively and waits for itself to finish
/// (fs/ext4/file.c ext4_dio_write_checks: IOMAP_DIO_FORCE_WAIT; io_uring
/// then hands it to a worker), so writes into a new file ran one at a time.
fn preallocate(file: &File, len_bytes: u64) -> u64 {
    if len_bytes == 0 {
        return 0;
    }
    // SAFETY: fallocate on an fd this function borrows; no memory involved.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_bytes as libc::off_t) };
    if rc == 0 {
        len_bytes
    } else {
        0
    }
}

fn open_direct(path: &Path, buffered: &File) -> Option<File> {
    if in_memory(buffered) {
        return None;
    }
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

impl Writer {
    /// Creates (truncates) `paths` and a ring of `max_in_flight` writes.
    /// `read_pool` is the pool the payloads come from; `zero_bytes` the
    /// size of the zero filler (a multiple of 4096). A file that takes
    /// direct writes is allocated ahead to its `expected_bytes` (see
    /// [`preallocate`]); [`Writer::finish`] cuts it to what was written.
    pub fn create(
        paths: &[PathBuf],
        expected_bytes: &[u64],
        read_pool: Arc<BufferPool>,
        max_in_flight: usize,
        zero_bytes: usize,
    ) -> Result<Writer> {
        assert!(max_in_flight > 0, "at least one write in flight");
        assert_eq!(paths.len(), expected_bytes.len(), "a size per output");
        let mut files = Vec::with_capacity(paths.len());
        for (p, &expected) in paths.iter().zip(expected_bytes) {
            let buffered = File::create(p).with_context(|| format!("creating {}", p.display()))?;
            let direct = open_direct(p, &buffered);
            let preallocated_bytes = match direct {
                Some(_) => preallocate(&buffered, expected),
                None => 0,
            };
            files.push(OutFile {
                path: p.clone(),
                direct,
                buffered,
                preallocated_bytes,
                end_bytes: 0,
            });
        }
        let ring = IoUring::new((max_in_flight as u32).next_power_of_two()).context(
            "io_uring_setup failed (is io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
        )?;
        Ok(Writer {
            ring,
            files,
            _read_pool: read_pool,
            zeros: BufferPool::new(zero_bytes, 1)?,
            slab: vec![None; max_in_flight],
            free_slab: (0..max_in_flight).rev().collect(),
            done_buffers: VecDeque::new(),
            in_flight: 0,
            buffers_in_flight: 0,
            direct_writes: 0,
            buffered_writes: 0,
        })
    }

    /// Whether every output takes direct writes (no payload is copied
    /// into the page cache by this thread).
    pub fn all_direct(&self) -> bool {
        self.files.iter().all(|f| f.direct.is_some())
    }

    pub fn path(&self, file: usize) -> &Path {
        &self.files[file].path
    }

    /// Writes `len_bytes` at `addr` to `file` at `offset_bytes`.
    ///
    /// # Safety
    /// `addr..addr + len_bytes` lies in buffer `buffer` of the read pool
    /// given to [`Writer::create`], and the caller neither touches nor
    /// reuses that buffer until [`Writer::reclaim`] returns it.
    pub unsafe fn write(
        &mut self,
        file: usize,
        offset_bytes: u64,
        addr: *const u8,
        len_bytes: usize,
        buffer: usize,
    ) -> Result<()> {
        self.start(file, offset_bytes, addr as usize, len_bytes, Some(buffer))
    }

    /// Writes `bytes` (the caller's, e.g. de-interleaved samples) to `file`
    /// at `offset_bytes` before returning: the caller may reuse them at once.
    pub fn write_owned(&mut self, file: usize, offset_bytes: u64, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        assert!(file < self.files.len(), "output file {file} out of range");
        let f = &mut self.files[file];
        f.buffered
            .write_all_at(bytes, offset_bytes)
            .with_context(|| format!("writing {} at byte {offset_bytes}", f.path.display()))?;
        f.end_bytes = f.end_bytes.max(offset_bytes + bytes.len() as u64);
        self.buffered_writes += 1;
        Ok(())
    }

    /// Writes `len_bytes` of zeros to `file` at `offset_bytes`.
    pub fn write_zeros(&mut self, file: usize, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        let chunk_bytes = self.zeros.buffer_bytes() as u64;
        let addr = self.zeros.ptr(0) as usize;
        let mut done_bytes = 0u64;
        // Bounded: each turn writes min(chunk, rest) > 0 bytes of len_bytes.
        while done_bytes < len_bytes {
            let n = chunk_bytes.min(len_bytes - done_bytes);
            self.start(file, offset_bytes + done_bytes, addr, n as usize, None)?;
            done_bytes += n;
        }
        Ok(())
    }

    fn start(
        &mut self,
        file: usize,
        offset_bytes: u64,
        addr: usize,
        len_bytes: usize,
        buffer: Option<usize>,
    ) -> Result<()> {
        assert!(file < self.files.len(), "output file {file} out of range");
        assert!(len_bytes > 0, "empty write");
        let f = &mut self.files[file];
        f.end_bytes = f.end_bytes.max(offset_bytes + len_bytes as u64);
        // Bounded: each wait reaps at least one of the in-flight writes.
        while self.free_slab.is_empty() {
            self.wait_one()?;
        }
        let aligned = (offset_bytes as usize | addr | len_bytes).is_multiple_of(ALIGN_BYTES);
        let direct = aligned && self.files[file].direct.is_some();
        if !direct {
            return self.write_now(file, offset_bytes, addr, len_bytes, buffer);
        }
        let slot = self.free_slab.pop().expect("a free slot (loop above)");
        self.slab[slot] = Some(Pending {
            file,
            offset_bytes,
            addr,
            len_bytes,
            done_bytes: 0,
            direct,
            short_writes: 0,
            buffer,
        });
        self.direct_writes += 1;
        self.in_flight += 1;
        if buffer.is_some() {
            self.buffers_in_flight += 1;
        }
        self.submit(slot)
    }

    /// A write through the page cache, done at once in this thread: an
    /// io_uring buffered write goes to a kernel worker that copies just the
    /// same, slower on a busy machine (a tmpfs output: export 0.60 x fio
    /// against 1.13 x for the old synchronous write, bench/results/readout-20261130-143736).
    fn write_now(
        &mut self,
        file: usize,
        offset_bytes: u64,
        addr: usize,
        len_bytes: usize,
        buffer: Option<usize>,
    ) -> Result<()> {
        // SAFETY: addr..addr + len_bytes is inside the read pool (held by
        // self) or the zero buffer (a field), per `write`'s contract, and
        // nobody writes it while this call reads it.
        let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len_bytes) };
        self.write_owned(file, offset_bytes, bytes)?;
        if let Some(b) = buffer {
            self.done_buffers.push_back(b);
        }
        Ok(())
    }

    fn submit(&mut self, slot: usize) -> Result<()> {
        let p = self.slab[slot].expect("submitting a pending write");
        let f = &self.files[p.file];
        let fd = match (&f.direct, p.direct) {
            (Some(d), true) => d.as_raw_fd(),
            _ => f.buffered.as_raw_fd(),
        };
        let sqe = opcode::Write::new(
            types::Fd(fd),
            (p.addr + p.done_bytes) as *const u8,
            (p.len_bytes - p.done_bytes) as u32,
        )
        .offset(p.offset_bytes + p.done_bytes as u64)
        .build()
        .user_data(slot as u64);
        // SAFETY: the bytes stay allocated (the read pool is held by self,
        // the zero buffer is a field) and unmodified (the read buffer is
        // owned by this write until reclaimed; zeros are never written)
        // until the completion is reaped; Drop waits for every write.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| anyhow::anyhow!("internal: write ring full with a free slot"))?;
        self.ring
            .submit()
            .context("io_uring_enter (writing exports)")?;
        Ok(())
    }

    /// Waits for at least one write and handles every completion there is.
    fn wait_one(&mut self) -> Result<()> {
        assert!(self.in_flight > 0, "waiting with no write in flight");
        self.ring
            .submit_and_wait(1)
            .context("io_uring_enter (writing exports)")?;
        self.reap()
    }

    fn reap(&mut self) -> Result<()> {
        let cqes: Vec<(usize, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data() as usize, c.result()))
            .collect();
        // Every completion is accounted for, also after an error (the first
        // is returned), so Drop never waits for a write already reaped.
        let mut first_error = Ok(());
        for (slot, res) in cqes {
            let r = self.complete(slot, res);
            if first_error.is_ok() {
                first_error = r;
            }
        }
        first_error
    }

    fn complete(&mut self, slot: usize, res: i32) -> Result<()> {
        let mut p = self.slab[slot].expect("a completion of a pending write");
        if res == -libc::EINVAL && p.direct {
            // The file system refuses this direct write: buffered from now on.
            self.files[p.file].direct = None;
            p.direct = false;
            self.slab[slot] = Some(p);
            return self.submit(slot);
        }
        if res > 0 && p.short_writes < MAX_SHORT_WRITES {
            p.done_bytes += res as usize;
            if p.done_bytes < p.len_bytes {
                p.short_writes += 1;
                self.slab[slot] = Some(p);
                return self.submit(slot);
            }
        }
        // Finished, well or not: the kernel is done with it.
        self.slab[slot] = None;
        self.free_slab.push(slot);
        self.in_flight -= 1;
        if let Some(b) = p.buffer {
            self.buffers_in_flight -= 1;
            self.done_buffers.push_back(b);
        }
        let path = self.files[p.file].path.display();
        if res < 0 {
            bail!(
                "writing {path} at byte {}: {}",
                p.offset_bytes + p.done_bytes as u64,
                std::io::Error::from_raw_os_error(-res)
            );
        }
        if p.done_bytes < p.len_bytes {
            bail!(
                "writing {path}: the write at byte {} stopped after {} of {} bytes (disk full?)",
                p.offset_bytes,
                p.done_bytes,
                p.len_bytes
            );
        }
        Ok(())
    }

    /// A read buffer whose write is done; with `wait`, waits for one while
    /// any is in flight.
    pub fn reclaim(&mut self, wait: bool) -> Result<Option<usize>> {
        if self.done_buffers.is_empty() && self.in_flight > 0 {
            self.reap()?;
        }
        // Bounded: each wait completes one of the writes in flight.
        while wait && self.done_buffers.is_empty() && self.buffers_in_flight > 0 {
            self.wait_one()?;
        }
        Ok(self.done_buffers.pop_front())
    }

    /// Waits for every write, then makes the files durable (fdatasync).
    pub fn finish(&mut self) -> Result<()> {
        // Bounded: each wait completes one of the writes in flight.
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        for f in &self.files {
            if f.preallocated_bytes > f.end_bytes {
                f.buffered.set_len(f.end_bytes).with_context(|| {
                    format!(
                        "cutting {} to the {} bytes written",
                        f.path.display(),
                        f.end_bytes
                    )
                })?;
            }
            f.buffered
                .sync_data()
                .with_context(|| format!("syncing {}", f.path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Never free memory the kernel may still read from (after an
        // error): wait for what was submitted; results are discarded.
        while self.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
                Ok(_) => {}
            }
            let n = self.ring.completion().count();
            self.in_flight -= n.min(self.in_flight);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        // On the disk's file system (O_DIRECT works there), not a tmpfs.
        let dir =
            std::env::temp_dir().join(format!("dmaplay-outwrite-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// Fills read buffer `b` of `pool` with `byte`.
    fn fill(pool: &BufferPool, b: usize, byte: u8) {
        // SAFETY: the test owns every buffer of its pool; nothing in flight.
        unsafe { std::ptr::write_bytes(pool.ptr(b), byte, pool.buffer_bytes()) };
    }

    #[test]
    fn writes_land_at_their_offsets_direct_when_aligned_buffered_when_not() {
        let path = scratch("a.raw");
        let pool = Arc::new(BufferPool::new(8192, 4).unwrap());
        for b in 0..4 {
            fill(&pool, b, b as u8 + 1);
        }
        let mut w = Writer::create(
            std::slice::from_ref(&path),
            &[64 << 10],
            pool.clone(),
            2,
            4096,
        )
        .unwrap();
        let direct_possible = w.files[0].direct.is_some();
        if direct_possible {
            let allocated = std::fs::metadata(&path).unwrap().len();
            assert_eq!(allocated, 64 << 10, "allocated ahead to the size expected");
        }
        // Out of order, more writes than the ring holds at once.
        // SAFETY: each range is inside its buffer; buffers are not touched
        // until reclaimed (the test only reads them after finish).
        unsafe {
            w.write(0, 8192, pool.ptr(1), 8192, 1).unwrap();
            w.write(0, 0, pool.ptr(0), 8192, 0).unwrap();
            w.write(0, 16384, pool.ptr(2), 100, 2).unwrap(); // unaligned length
        }
        w.write_zeros(0, 16484, 5000).unwrap(); // unaligned offset, > one zero buffer
                                                // SAFETY: as above.
        unsafe { w.write(0, 21484, pool.ptr(3), 3, 3).unwrap() };
        let mut back = Vec::new();
        while let Some(b) = w.reclaim(true).unwrap() {
            back.push(b);
        }
        back.sort();
        assert_eq!(back, vec![0, 1, 2, 3], "every buffer comes back once");
        w.finish().unwrap();
        let mut want = vec![1u8; 8192];
        want.extend(vec![2u8; 8192]);
        want.extend(vec![3u8; 100]);
        want.extend(vec![0u8; 5000]);
        want.extend(vec![4u8; 3]);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            want,
            "what was written, cut to its end"
        );
        assert_eq!(w.direct_writes + w.buffered_writes, 6);
        if direct_possible {
            assert_eq!(w.direct_writes, 2, "the two aligned writes go O_DIRECT");
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_failed_write_names_the_file() {
        let path = scratch("full.raw");
        let pool = Arc::new(BufferPool::new(4096, 1).unwrap());
        let mut w =
            Writer::create(std::slice::from_ref(&path), &[0], pool.clone(), 1, 4096).unwrap();
        // /dev/full: every write fails with ENOSPC.
        w.files[0] = OutFile {
            path: PathBuf::from("/dev/full"),
            direct: None,
            buffered: OpenOptions::new().write(true).open("/dev/full").unwrap(),
            preallocated_bytes: 0,
            end_bytes: 0,
        };
        // SAFETY: the range is the pool's only buffer, not touched after.
        let r = unsafe { w.write(0, 0, pool.ptr(0), 4096, 0) }.and_then(|()| w.finish());
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("/dev/full") && e.contains("space"), "{e}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn a_tmpfs_output_goes_through_the_page_cache_a_disk_one_direct() {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let shm_is_tmpfs = mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("/dev/shm") && l.contains(" tmpfs "));
        if !shm_is_tmpfs {
            eprintln!("SKIPPED: /dev/shm is not a tmpfs here");
            return;
        }
        let p = PathBuf::from(format!("/dev/shm/dmaplay-outwrite-{}", std::process::id()));
        let f = File::create(&p).unwrap();
        let direct = open_direct(&p, &f);
        let _ = std::fs::remove_file(&p);
        assert!(
            in_memory(&f) && direct.is_none(),
            "tmpfs output opened O_DIRECT"
        );
        let d = std::env::temp_dir().join(format!("dmaplay-outwrite-disk-{}", std::process::id()));
        let f = File::create(&d).unwrap();
        let on_tmpfs = in_memory(&f);
        let _ = std::fs::remove_file(&d);
        if !on_tmpfs {
            assert!(!in_memory(&f), "a disk file taken for memory");
        }
    }
}
