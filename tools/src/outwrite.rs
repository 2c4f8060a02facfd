//! Writes exported payloads to the output files with io_uring, straight
//! from the read buffers: O_DIRECT where the output's file system takes it
//! and the write is aligned (no copy into the page cache), buffered
//! otherwise, several writes in flight, so reading the recording and
//! writing the outputs overlap.
//!
//! Bytes the caller builds (de-interleaved samples, [`Writer::append`]) go
//! to a *staged* output: they are copied into aligned chunks of the
//! writer's own ([`Stage`]), and each full chunk is written O_DIRECT while
//! the next one fills: one copy, as through the page cache, but no page
//! cache to fill, throttle and write back.
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

/// Chunks per staged output: one filling while the others are written.
const STAGE_CHUNKS: usize = 4;
/// Memory for every staged output's chunks together, and the bounds of
/// one chunk (a multiple of [`ALIGN_BYTES`]).
const STAGE_BUDGET_BYTES: usize = 32 << 20;
const STAGE_CHUNK_MIN_BYTES: usize = 128 << 10;
const STAGE_CHUNK_MAX_BYTES: usize = 2 << 20;

/// The aligned chunks a staged output's bytes are gathered in; the file's
/// bytes up to `chunk_offset_bytes` are written or in flight.
struct Stage {
    chunks: BufferPool,
    /// Chunks neither filling nor in flight.
    free: Vec<usize>,
    /// The chunk being filled, and its bytes filled.
    filling: Option<(usize, usize)>,
    /// File offset of the filling chunk's first byte.
    chunk_offset_bytes: u64,
}

/// What a write in flight was submitted from, given back when it is done.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Source {
    /// A read buffer of the read pool (the caller's until reclaimed).
    Read(usize),
    /// A chunk of the file's stage.
    Chunk(usize),
    /// The zero buffer.
    Zeros,
}

/// Bytes of one staged chunk for `files` staged outputs (see the bounds).
fn stage_chunk_bytes(files: usize) -> usize {
    let share = STAGE_BUDGET_BYTES / (files.max(1) * STAGE_CHUNKS);
    let chunk = share.clamp(STAGE_CHUNK_MIN_BYTES, STAGE_CHUNK_MAX_BYTES);
    chunk / ALIGN_BYTES * ALIGN_BYTES
}

struct OutFile {
    path: PathBuf,
    /// The same file opened O_DIRECT (None: the file system refused it,
    /// or a direct write failed with EINVAL once).
    direct: Option<File>,
    buffered: File,
    /// The end of the furthest write so far (a staged output's padded last
    /// chunk excluded).
    end_bytes: u64,
    /// Staged (direct outputs of [`Writer::append`]).
    stage: Option<Stage>,
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
    /// What to give back when the write is done.
    source: Source,
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
/// sets its size). Direct writes into allocated blocks inside the file's size
/// run concurrently; on ext4 a direct write that extends the file or fills
/// a hole takes the inode lock exclusively and waits for itself to finish
/// (fs/ext4/file.c ext4_dio_write_checks: IOMAP_DIO_FORCE_WAIT; io_uring
/// then hands it to a worker), so writes into a new file ran one at a time.
/// Best effort: where the file system cannot, writes extend the file.
fn preallocate(file: &File, len_bytes: u64) {
    if len_bytes > 0 {
        // SAFETY: fallocate on an fd this function borrows; no memory involved.
        unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_bytes as libc::off_t) };
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

impl OutFile {
    /// Creates (truncates) `path`, allocated ahead to `expected_bytes` when
    /// it takes direct writes, and then staged in chunks of
    /// `stage_chunk_bytes` if given.
    fn create(path: &Path, expected_bytes: u64, stage_chunk_bytes: Option<usize>) -> Result<Self> {
        let buffered =
            File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let direct = open_direct(path, &buffered);
        if direct.is_some() {
            // Cut back to `end_bytes` by finish.
            preallocate(&buffered, expected_bytes);
        }
        let stage = match (&direct, stage_chunk_bytes) {
            (Some(_), Some(chunk_bytes)) => Some(Stage {
                chunks: BufferPool::new(chunk_bytes, STAGE_CHUNKS)?,
                free: (0..STAGE_CHUNKS).rev().collect(),
                filling: None,
                chunk_offset_bytes: 0,
            }),
            _ => None,
        };
        Ok(OutFile {
            path: path.to_path_buf(),
            direct,
            buffered,
            end_bytes: 0,
            stage,
        })
    }
}

impl Writer {
    /// Creates (truncates) `paths` and a ring of `max_in_flight` writes.
    /// `read_pool` is the pool the payloads come from; `zero_bytes` the
    /// size of the zero filler (a multiple of 4096). A file that takes
    /// direct writes is allocated ahead to its `expected_bytes` (see
    /// [`preallocate`]); [`Writer::finish`] cuts it to what was written.
    /// With `staged`, every output that takes direct writes gets a
    /// [`Stage`] for [`Writer::append`]; the ring also holds their chunks'
    /// writes.
    pub fn create(
        paths: &[PathBuf],
        expected_bytes: &[u64],
        read_pool: Arc<BufferPool>,
        max_in_flight: usize,
        zero_bytes: usize,
        staged: bool,
    ) -> Result<Writer> {
        assert!(max_in_flight > 0, "at least one write in flight");
        assert_eq!(paths.len(), expected_bytes.len(), "a size per output");
        let chunk_bytes = stage_chunk_bytes(paths.len());
        let mut files = Vec::with_capacity(paths.len());
        for (p, &expected) in paths.iter().zip(expected_bytes) {
            files.push(OutFile::create(p, expected, staged.then_some(chunk_bytes))?);
        }
        let stage_writes = files.iter().filter(|f| f.stage.is_some()).count() * STAGE_CHUNKS;
        let slots = max_in_flight + stage_writes;
        let ring = IoUring::new((slots as u32).next_power_of_two()).context(
            "io_uring_setup failed (is io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
        )?;
        Ok(Writer {
            ring,
            files,
            _read_pool: read_pool,
            zeros: BufferPool::new(zero_bytes, 1)?,
            slab: vec![None; slots],
            free_slab: (0..slots).rev().collect(),
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
        assert!(
            self.files[file].stage.is_none(),
            "a read buffer written to staged output {file}"
        );
        self.start(
            file,
            offset_bytes,
            addr as usize,
            len_bytes,
            Source::Read(buffer),
        )
    }

    /// Appends `bytes` (the caller's, e.g. de-interleaved samples) to
    /// `file` at `offset_bytes`, the end of what was appended before:
    /// copied into the file's stage if it has one, else written through
    /// the page cache before this returns. The caller may reuse `bytes` at
    /// once either way.
    pub fn append(&mut self, file: usize, offset_bytes: u64, bytes: &[u8]) -> Result<()> {
        if self.files[file].stage.is_none() {
            return self.write_owned(file, offset_bytes, bytes);
        }
        self.stage_fill(file, offset_bytes, bytes.len(), |dst, at| {
            dst.copy_from_slice(&bytes[at..at + dst.len()])
        })
    }

    /// Writes `bytes` to `file` at `offset_bytes` through the page cache,
    /// before returning.
    fn write_owned(&mut self, file: usize, offset_bytes: u64, bytes: &[u8]) -> Result<()> {
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

    /// Writes `len_bytes` of zeros to `file` at `offset_bytes` (appended
    /// to a staged output).
    pub fn write_zeros(&mut self, file: usize, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        if self.files[file].stage.is_some() {
            let len_bytes = usize::try_from(len_bytes).context("zero filler larger than memory")?;
            return self.stage_fill(file, offset_bytes, len_bytes, |dst, _| dst.fill(0));
        }
        let chunk_bytes = self.zeros.buffer_bytes() as u64;
        let addr = self.zeros.ptr(0) as usize;
        let mut done_bytes = 0u64;
        // Bounded: each turn writes min(chunk, rest) > 0 bytes of len_bytes.
        while done_bytes < len_bytes {
            let n = chunk_bytes.min(len_bytes - done_bytes);
            self.start(
                file,
                offset_bytes + done_bytes,
                addr,
                n as usize,
                Source::Zeros,
            )?;
            done_bytes += n;
        }
        Ok(())
    }

    /// Copies `len_bytes` made by `fill(dst, at)` (bytes `at..` of what is
    /// appended) into `file`'s stage at `offset_bytes`, its end, submitting
    /// each chunk that fills.
    fn stage_fill(
        &mut self,
        file: usize,
        offset_bytes: u64,
        len_bytes: usize,
        mut fill: impl FnMut(&mut [u8], usize),
    ) -> Result<()> {
        let mut done_bytes = 0;
        // Bounded: each turn fills min(room, rest) > 0 bytes of len_bytes.
        while done_bytes < len_bytes {
            let (chunk, filled) = self.filling_chunk(file)?;
            let stage = self.files[file].stage.as_mut().expect("a staged file");
            let at_bytes = stage.chunk_offset_bytes + filled as u64;
            assert_eq!(
                at_bytes,
                offset_bytes + done_bytes as u64,
                "staged output {file} not appended in order"
            );
            let chunk_bytes = stage.chunks.buffer_bytes();
            let n = (chunk_bytes - filled).min(len_bytes - done_bytes);
            // SAFETY: a filling chunk is neither free nor in flight: only
            // this writer touches it; filled + n <= chunk_bytes.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(stage.chunks.ptr(chunk).add(filled), n) };
            fill(dst, done_bytes);
            stage.filling = Some((chunk, filled + n));
            done_bytes += n;
            if filled + n == chunk_bytes {
                self.flush_chunk(file)?;
            }
        }
        Ok(())
    }

    /// `file`'s filling chunk and its bytes filled, taking a free chunk
    /// (after waiting for a chunk's write) if none is filling.
    fn filling_chunk(&mut self, file: usize) -> Result<(usize, usize)> {
        // Bounded: a stage's chunks are filling, free or in flight, and
        // each wait completes one write in flight.
        loop {
            let stage = self.files[file].stage.as_mut().expect("a staged file");
            if let Some(filling) = stage.filling {
                return Ok(filling);
            }
            if let Some(chunk) = stage.free.pop() {
                assert!(
                    (stage.chunk_offset_bytes as usize).is_multiple_of(ALIGN_BYTES),
                    "staged output {file} appended to after its last chunk"
                );
                stage.filling = Some((chunk, 0));
                continue;
            }
            self.wait_one()?;
        }
    }

    /// Submits `file`'s filling chunk at its offset: a full chunk, or the
    /// last one, padded to the alignment ([`Writer::finish`] cuts the
    /// padding off).
    fn flush_chunk(&mut self, file: usize) -> Result<()> {
        let stage = self.files[file].stage.as_mut().expect("a staged file");
        let Some((chunk, filled)) = stage.filling.take() else {
            return Ok(());
        };
        if filled == 0 {
            stage.free.push(chunk);
            return Ok(());
        }
        // The padding holds what the chunk held before (this output's own
        // earlier bytes, or zeros); finish() cuts it off.
        let padded_bytes = filled.next_multiple_of(ALIGN_BYTES);
        assert!(padded_bytes <= stage.chunks.buffer_bytes());
        let addr = stage.chunks.ptr(chunk);
        let offset_bytes = stage.chunk_offset_bytes;
        stage.chunk_offset_bytes += filled as u64;
        let source = Source::Chunk(chunk);
        self.start(file, offset_bytes, addr as usize, padded_bytes, source)?;
        // The file ends where its bytes do, not its padding.
        self.files[file].end_bytes = offset_bytes + filled as u64;
        Ok(())
    }

    fn start(
        &mut self,
        file: usize,
        offset_bytes: u64,
        addr: usize,
        len_bytes: usize,
        source: Source,
    ) -> Result<()> {
        assert!(file < self.files.len(), "output file {file} out of range");
        assert!(len_bytes > 0, "empty write");
        let f = &mut self.files[file];
        f.end_bytes = f.end_bytes.max(offset_bytes + len_bytes as u64);
        // Bounded: each wait reaps at least one of the in-flight writes.
        while self.free_slab.is_empty() {
            if let Err(e) = self.wait_one() {
                // Not submitted: what it was to be written from goes back.
                self.release(file, source);
                return Err(e);
            }
        }
        let aligned = (offset_bytes as usize | addr | len_bytes).is_multiple_of(ALIGN_BYTES);
        let direct = aligned && self.files[file].direct.is_some();
        if !direct {
            return self.write_now(file, offset_bytes, addr, len_bytes, source);
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
            source,
        });
        self.direct_writes += 1;
        self.in_flight += 1;
        if let Source::Read(_) = source {
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
        source: Source,
    ) -> Result<()> {
        // SAFETY: addr..addr + len_bytes is inside the read pool (held by
        // self, per `write`'s contract), a stage chunk or the zero buffer
        // (fields), and nobody writes it while this call reads it.
        let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len_bytes) };
        let written = self.write_owned(file, offset_bytes, bytes);
        // Done with, whether it was written or not.
        self.release(file, source);
        written
    }

    /// Gives back what a finished write of `file` was submitted from.
    fn release(&mut self, file: usize, source: Source) {
        match source {
            Source::Read(buffer) => self.done_buffers.push_back(buffer),
            Source::Chunk(chunk) => {
                let stage = self.files[file].stage.as_mut().expect("a staged file");
                assert!(!stage.free.contains(&chunk), "chunk {chunk} freed twice");
                stage.free.push(chunk);
            }
            Source::Zeros => {}
        }
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
        // stage chunks and the zero buffer are fields) and unmodified (the
        // read buffer or chunk is owned by this write until released; zeros
        // are never written) until the completion is reaped; Drop waits
        // for every write.
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
        if let Source::Read(_) = p.source {
            self.buffers_in_flight -= 1;
        }
        self.release(p.file, p.source);
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

    /// Submits the staged outputs' last chunks, waits for every write,
    /// cuts each file to its end and makes it durable (fdatasync).
    pub fn finish(&mut self) -> Result<()> {
        for file in 0..self.files.len() {
            if self.files[file].stage.is_some() {
                self.flush_chunk(file)?;
            }
        }
        // Bounded: each wait completes one of the writes in flight.
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        for f in &self.files {
            let size_bytes = f
                .buffered
                .metadata()
                .with_context(|| format!("reading the size of {}", f.path.display()))?
                .len();
            if size_bytes > f.end_bytes {
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

    /// A writer of the one output `path` (4 KiB of zeros for fillers).
    fn one_output(
        path: &Path,
        expected_bytes: u64,
        pool: Arc<BufferPool>,
        max_in_flight: usize,
        staged: bool,
    ) -> Writer {
        let paths = [path.to_path_buf()];
        Writer::create(&paths, &[expected_bytes], pool, max_in_flight, 4096, staged).unwrap()
    }

    /// Fills read buffer `b` of `pool` with `byte`.
    fn fill(pool: &BufferPool, b: usize, byte: u8) {
        // SAFETY: the test owns every buffer of its pool; nothing in flight.
        unsafe { std::ptr::write_bytes(pool.ptr(b), byte, pool.buffer_bytes()) };
    }

    #[test]
    fn writes_land_at_their_offsets_direct_when_aligned_buffered_when_not() {
        let path = scratch("a.raw");
        let pool = Arc::new(BufferPool::new(8192, 6).unwrap());
        for b in 0..6 {
            fill(&pool, b, b as u8 + 1);
        }
        let mut w = one_output(&path, 64 << 10, pool.clone(), 2, false);
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
        // Unaligned twice over, by the same 1007 bytes past a 4096-byte
        // boundary: address and length (at an aligned offset, after a
        // hole), then offset and address.
        // SAFETY: as above.
        unsafe {
            w.write(0, 24576, pool.ptr(4).add(1007), 1007, 4).unwrap();
            w.write(0, 25583, pool.ptr(5).add(1007), 4096, 5).unwrap();
        }
        let mut back = Vec::new();
        while let Some(b) = w.reclaim(true).unwrap() {
            back.push(b);
        }
        back.sort();
        assert_eq!(back, vec![0, 1, 2, 3, 4, 5], "every buffer comes back once");
        w.finish().unwrap();
        let mut want = vec![1u8; 8192];
        want.extend(vec![2u8; 8192]);
        want.extend(vec![3u8; 100]);
        want.extend(vec![0u8; 5000]);
        want.extend(vec![4u8; 3]);
        want.extend(vec![0u8; 24576 - 21487]);
        want.extend(vec![5u8; 1007]);
        want.extend(vec![6u8; 4096]);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            want,
            "what was written, cut to its end"
        );
        assert_eq!(w.direct_writes + w.buffered_writes, 8);
        if direct_possible {
            assert_eq!(w.direct_writes, 2, "the two aligned writes go O_DIRECT");
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Bytes no two pieces of which are alike.
    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        (0..len as u64)
            .map(|i| ((i + seed).wrapping_mul(0x9E37_79B9) >> 11) as u8)
            .collect()
    }

    #[test]
    fn staged_appends_go_direct_in_whole_chunks_and_are_cut_to_their_end() {
        let path = scratch("staged.raw");
        let pool = Arc::new(BufferPool::new(4096, 1).unwrap());
        let mut w = one_output(&path, 1 << 20, pool.clone(), 1, true);
        if w.files[0].direct.is_none() {
            eprintln!("SKIPPED: {} takes no O_DIRECT writes", path.display());
            return;
        }
        let stage = w.files[0]
            .stage
            .as_ref()
            .expect("a direct output is staged");
        let chunk_bytes = stage.chunks.buffer_bytes();
        assert_eq!(
            w.slab.len(),
            1 + STAGE_CHUNKS,
            "ring room for every chunk beside the read buffers' writes"
        );
        // Pieces of a 3-channel de-interleaved buffer (not a multiple of
        // 4096), a zero filler in between, two chunks and a bit in all.
        let mut want = Vec::new();
        let mut seed = 0;
        // Bounded: each turn appends at least 21844 bytes.
        while want.len() < 2 * chunk_bytes + 5 {
            let piece = pattern(21844, seed);
            w.append(0, want.len() as u64, &piece).unwrap();
            want.extend(&piece);
            seed += 1;
            if seed == 7 {
                w.write_zeros(0, want.len() as u64, 100_003).unwrap();
                want.extend(vec![0u8; 100_003]);
            }
        }
        w.finish().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), want.len(), "cut to the bytes appended");
        assert!(got == want, "the bytes appended, in order");
        assert_eq!(
            (w.direct_writes, w.buffered_writes),
            (3, 0),
            "two whole chunks and the padded tail, all O_DIRECT"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_staged_append_out_of_order_is_refused() {
        let path = scratch("order.raw");
        let pool = Arc::new(BufferPool::new(4096, 1).unwrap());
        let mut w = one_output(&path, 0, pool, 1, true);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        if w.files[0].stage.is_none() {
            eprintln!("SKIPPED: {} takes no O_DIRECT writes", path.display());
            return;
        }
        w.append(0, 0, &[1; 100]).unwrap();
        let gap = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = w.append(0, 200, &[2; 100]);
        }));
        let message = gap.expect_err("an append past the end was taken");
        let text = message
            .downcast_ref::<String>()
            .expect("a formatted message");
        assert!(text.contains("not appended in order"), "{text}");
    }

    #[test]
    fn stage_chunks_fit_the_budget_within_their_bounds() {
        assert_eq!(stage_chunk_bytes(1), STAGE_CHUNK_MAX_BYTES);
        assert_eq!(stage_chunk_bytes(4), STAGE_CHUNK_MAX_BYTES);
        assert_eq!(stage_chunk_bytes(8), 1 << 20);
        assert_eq!(stage_chunk_bytes(32), 256 << 10);
        assert_eq!(stage_chunk_bytes(1000), STAGE_CHUNK_MIN_BYTES);
        for files in 1..=formats::MAX_CHANNELS {
            let chunk = stage_chunk_bytes(files);
            assert!(chunk.is_multiple_of(ALIGN_BYTES), "{files} files: {chunk}");
            let within_budget = chunk * STAGE_CHUNKS * files <= STAGE_BUDGET_BYTES;
            assert!(within_budget, "{files} files: {chunk}-byte chunks");
        }
    }

    /// `w`'s one output made /dev/full: every write fails with ENOSPC.
    fn to_dev_full(w: &mut Writer) {
        let f = &mut w.files[0];
        f.path = PathBuf::from("/dev/full");
        f.direct = None;
        f.buffered = OpenOptions::new().write(true).open("/dev/full").unwrap();
    }

    #[test]
    fn a_failed_write_names_the_file_and_gives_its_buffer_back() {
        let path = scratch("full.raw");
        let pool = Arc::new(BufferPool::new(4096, 1).unwrap());
        let mut w = one_output(&path, 0, pool.clone(), 1, false);
        to_dev_full(&mut w);
        // SAFETY: the range is the pool's only buffer, not touched after.
        let r = unsafe { w.write(0, 0, pool.ptr(0), 4096, 0) }.and_then(|()| w.finish());
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("/dev/full") && e.contains("space"), "{e}");
        assert_eq!(w.reclaim(false).unwrap(), Some(0), "the read buffer, back");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_failed_staged_write_gives_its_chunk_back() {
        let path = scratch("full-staged.raw");
        let pool = Arc::new(BufferPool::new(4096, 1).unwrap());
        let mut w = one_output(&path, 1 << 20, pool, 1, true);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        if w.files[0].stage.is_none() {
            eprintln!("SKIPPED: {} takes no O_DIRECT writes", path.display());
            return;
        }
        to_dev_full(&mut w);
        w.append(0, 0, &[7; 100]).unwrap();
        let e = format!("{:#}", w.finish().unwrap_err());
        assert!(e.contains("/dev/full") && e.contains("space"), "{e}");
        let stage = w.files[0].stage.as_ref().unwrap();
        assert_eq!(stage.filling, None);
        assert_eq!(stage.free.len(), STAGE_CHUNKS, "every chunk free again");
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
