//! The kernel driver as a source: `/dev/dmarecN` (kmod/).
//!
//! Memory mode `auto` first maps the driver's own buffers (MMAP mode, pages
//! inserted with vm_insert_pages) and registers them with io_uring; kernels
//! before ~6.5 refuse to register driver mappings (EOPNOTSUPP: until the
//! "delegate VMA file-backed check to GUP" series io_uring refused every
//! file-backed mapping but shmem and hugetlbfs; the QEMU tests in tests/qemu
//! see it on Debian's 6.1 and not on its 6.12), and then the recorder allocates the
//! buffers itself, registers them, and hands them to the driver, which pins
//! them (USERPTR mode). Either way the card DMAs into the registered memory
//! and the write reads it from there: no copy.

use super::uapi::*;
use super::{CardStats, ChannelDescription, Filled, Source};
use crate::memory::SlotMemory;
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMode {
    Auto,
    Mmap,
    Userptr,
}

pub struct KmodSource {
    file: File,
    path: String,
    count: usize,
    mode: MemoryMode,
    /// The driver mapping in MMAP mode (unmapped on drop, after the ring).
    mapping: Option<(NonNull<u8>, usize)>,
    channels: u16,
    rate_bytes_per_s: u64,
    layout: formats::ChannelLayout,
    /// The driver's simulated card at a rate: it stamps buffers from its
    /// sample counter (on CLOCK_MONOTONIC), not at the end of the fill.
    sample_counter: bool,
    streaming: bool,
}

/// Registers a slot memory with the recorder's io_uring.
pub type Register<'a> = &'a mut dyn FnMut(&SlotMemory) -> std::io::Result<()>;

pub struct KmodOptions {
    pub mode: MemoryMode,
    pub buffers: usize,
    pub payload_bytes: u32,
    /// Simulated card settings (applied when the driver has a simulated card).
    pub channels: Option<u16>,
    pub rate_bytes_per_s: Option<u64>,
    /// Record the simulated card's stream as interleaved frames of
    /// `channels` channels (the card then runs as one stream: SIM_CONFIG
    /// channels=1, every buffer channel 0's pattern, docs/FORMAT.md).
    pub interleaved: bool,
}

/// The driver answers EOPNOTSUPP when the card's DMA would have to be
/// bounced (copied) by the kernel: say so, the errno alone does not.
fn explain_refusal(error: nix::Error) -> anyhow::Error {
    if error == nix::Error::EOPNOTSUPP {
        anyhow::anyhow!("{error}: the driver refuses zero copy because the card's DMA to this memory would be bounced through swiotlb (its DMA mask does not reach the memory and no IOMMU translates, or swiotlb=force); dmesg names the fix")
    } else {
        error.into()
    }
}

/// Opens the driver's device (read-write for a recording, read-only to ask
/// it) and asks it what it can do (QUERYCAP).
fn open_and_query(path: &Path, write: bool) -> Result<(File, DmarecCaps)> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| {
            format!(
                "source {}: cannot open (is dmarec.ko loaded? `modprobe dmarec`)",
                path.display()
            )
        })?;
    let mut caps = DmarecCaps::default();
    // SAFETY: the ioctl writes a DmarecCaps into our local.
    unsafe { querycap(file.as_raw_fd(), &mut caps) }.with_context(|| {
        format!(
            "source {}: QUERYCAP failed (not a dmarec device?)",
            path.display()
        )
    })?;
    Ok((file, caps))
}

/// The most buffers the driver at `path` gives a ring (QUERYCAP), for
/// `--buffers auto`; the device is closed again before the recording opens it.
pub fn driver_max_buffers(path: &Path) -> Result<usize> {
    let (_file, caps) = open_and_query(path, false)?;
    Ok(caps.max_buffers as usize)
}

impl KmodSource {
    /// Opens the driver, sets up its ring in the chosen memory mode and
    /// registers the memory with `register`. Returns the source and the
    /// memory it fills.
    pub fn open(
        path: &Path,
        opts: &KmodOptions,
        register: Register<'_>,
    ) -> Result<(KmodSource, Arc<SlotMemory>)> {
        let (file, caps) = open_and_query(path, true)?;
        let fd = file.as_raw_fd();
        if caps.version != DMAREC_UAPI_VERSION {
            bail!("source {}: driver speaks uapi version {}, this dmarec speaks {DMAREC_UAPI_VERSION}; install matching versions", path.display(), caps.version);
        }
        if opts.buffers > caps.max_buffers as usize {
            bail!(
                "source {}: --buffers {} exceeds the driver's maximum {}",
                path.display(),
                opts.buffers,
                caps.max_buffers
            );
        }
        if !(caps.min_payload_bytes..=caps.max_payload_bytes).contains(&opts.payload_bytes) {
            bail!(
                "source {}: --payload-size {} outside the driver's {}..={}",
                path.display(),
                opts.payload_bytes,
                caps.min_payload_bytes,
                caps.max_payload_bytes
            );
        }
        let (mut channels, mut rate) = (caps.channels as u16, caps.rate_bytes_per_s);
        if opts.interleaved && caps.caps & DMAREC_CAP_SIM == 0 {
            bail!(
                "source {}: --channel-layout interleaved needs the driver's simulated card (this card does not say how its channels share a buffer); record it round-robin",
                path.display()
            );
        }
        if caps.caps & DMAREC_CAP_SIM != 0
            && (opts.channels.is_some() || opts.rate_bytes_per_s.is_some() || opts.interleaved)
        {
            channels = opts.channels.unwrap_or(channels);
            rate = opts.rate_bytes_per_s.unwrap_or(rate);
            let cfg = DmarecSimConfig {
                // Interleaved: one stream whose buffers hold every channel.
                channels: if opts.interleaved { 1 } else { channels as u32 },
                rate_bytes_per_s: rate,
                ..Default::default()
            };
            // SAFETY: the ioctl reads the DmarecSimConfig we own.
            unsafe { sim_config(fd, &cfg) }.with_context(|| {
                format!(
                    "source {}: SIM_CONFIG channels={channels} rate={rate}",
                    path.display()
                )
            })?;
        }
        if channels == 0 || channels as usize > formats::MAX_CHANNELS {
            bail!(
                "source {}: the card has {channels} channels; a recording holds 1..={} (set --channels)",
                path.display(),
                formats::MAX_CHANNELS
            );
        }
        let mut src = KmodSource {
            file,
            path: path.display().to_string(),
            count: opts.buffers,
            mode: MemoryMode::Userptr,
            mapping: None,
            channels,
            rate_bytes_per_s: rate,
            layout: if opts.interleaved {
                formats::ChannelLayout::Interleaved {
                    channels,
                    sample_bytes: 4,
                }
            } else {
                formats::ChannelLayout::RoundRobin { channels }
            },
            sample_counter: caps.caps & DMAREC_CAP_SIM != 0 && rate > 0,
            streaming: false,
        };
        let try_mmap = opts.mode != MemoryMode::Userptr && caps.caps & DMAREC_CAP_MMAP != 0;
        if opts.mode == MemoryMode::Mmap && caps.caps & DMAREC_CAP_MMAP == 0 {
            bail!("source {}: driver has no MMAP memory mode", src.path);
        }
        if try_mmap {
            match src.setup_mmap(opts, register) {
                Ok(mem) => return Ok((src, mem)),
                Err(e) if opts.mode == MemoryMode::Auto => {
                    eprintln!("dmarec: {}: driver buffers cannot be registered with io_uring on this kernel ({e:#}); using USERPTR memory", src.path);
                    src.teardown_mmap();
                }
                Err(e) => return Err(e),
            }
        }
        let mem = src.setup_userptr(opts, register)?;
        Ok((src, mem))
    }

    fn setup_mmap(
        &mut self,
        opts: &KmodOptions,
        register: Register<'_>,
    ) -> Result<Arc<SlotMemory>> {
        let fd = self.file.as_raw_fd();
        let mut s = DmarecSetup {
            memory: DMAREC_MEMORY_MMAP,
            buffer_count: opts.buffers as u32,
            payload_bytes: opts.payload_bytes,
            ..Default::default()
        };
        // SAFETY: the ioctl reads and writes the DmarecSetup we own.
        unsafe { setup(fd, &mut s) }
            .map_err(explain_refusal)
            .with_context(|| {
                format!(
                    "source {}: SETUP (MMAP, {} buffers)",
                    self.path, opts.buffers
                )
            })?;
        let stride = DMAREC_HEADER_BYTES + opts.payload_bytes as usize;
        assert_eq!(
            s.buffer_stride_bytes as usize, stride,
            "driver stride disagrees with the uapi"
        );
        let len = s.mmap_size_bytes as usize;
        assert_eq!(len, stride * opts.buffers);
        // SAFETY: mapping the driver's ring; the kernel validates offset/length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            bail!(
                "source {}: mmap of {len} bytes: {}",
                self.path,
                std::io::Error::last_os_error()
            );
        }
        let base = NonNull::new(p.cast::<u8>()).expect("mmap returned null");
        self.mapping = Some((base, len));
        // SAFETY: the mapping is count*stride bytes and lives in self until
        // drop, which the recorder orders after the io_uring is gone.
        let mem = unsafe { SlotMemory::from_driver(base, opts.buffers, stride) };
        register(&mem).map_err(|e| anyhow::anyhow!("io_uring buffer registration: {e}"))?;
        self.mode = MemoryMode::Mmap;
        Ok(Arc::new(mem))
    }

    fn teardown_mmap(&mut self) {
        if let Some((base, len)) = self.mapping.take() {
            // SAFETY: unmapping the mapping we made; nothing registered it.
            unsafe { libc::munmap(base.as_ptr().cast(), len) };
        }
        let mut s = DmarecSetup {
            memory: DMAREC_MEMORY_MMAP,
            ..Default::default()
        };
        // SAFETY: count 0 tears the ring down.
        let _ = unsafe { setup(self.file.as_raw_fd(), &mut s) };
    }

    fn setup_userptr(
        &mut self,
        opts: &KmodOptions,
        register: Register<'_>,
    ) -> Result<Arc<SlotMemory>> {
        let fd = self.file.as_raw_fd();
        let mem = SlotMemory::allocate(opts.buffers, opts.payload_bytes as usize)?;
        register(&mem).map_err(|e| {
            anyhow::anyhow!(
                "io_uring buffer registration of {} bytes: {e}",
                mem.total_bytes()
            )
        })?;
        let mut s = DmarecSetup {
            memory: DMAREC_MEMORY_USERPTR,
            buffer_count: opts.buffers as u32,
            payload_bytes: opts.payload_bytes,
            ..Default::default()
        };
        // SAFETY: the ioctl reads and writes the DmarecSetup we own.
        unsafe { setup(fd, &mut s) }
            .map_err(explain_refusal)
            .with_context(|| {
                format!(
                    "source {}: SETUP (USERPTR, {} buffers)",
                    self.path, opts.buffers
                )
            })?;
        for i in 0..opts.buffers {
            let u = DmarecUserptr {
                index: i as u32,
                payload_addr: mem.payload_ptr(i) as u64,
                payload_bytes: opts.payload_bytes as u64,
                ..Default::default()
            };
            // SAFETY: the driver pins the payload pages of our locked slot
            // memory; they stay mapped until after the driver releases them
            // (KmodSource is dropped before the memory, see lib.rs).
            unsafe { attach_userptr(fd, &u) }
                .map_err(explain_refusal)
                .with_context(|| format!("source {}: ATTACH_USERPTR buffer {i}", self.path))?;
        }
        self.mode = MemoryMode::Userptr;
        Ok(Arc::new(mem))
    }

    pub fn mode(&self) -> MemoryMode {
        self.mode
    }

    fn dequeue(&mut self) -> Result<Option<Filled>> {
        let mut b = DmarecBuffer::default();
        // SAFETY: the ioctl writes a DmarecBuffer into our local.
        match unsafe { dqbuf(self.file.as_raw_fd(), &mut b) } {
            Ok(_) => {}
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(e) => bail!("source {}: DQBUF: {e}", self.path),
        }
        assert!(
            (b.index as usize) < self.count,
            "driver returned buffer {} of {}",
            b.index,
            self.count
        );
        Ok(Some(Filled {
            buffer: b.index as usize,
            card_seq: b.card_seq,
            card_timestamp_ns: b.card_timestamp_ns,
            channel: b.channel as u16,
            gap_count: b.gap_count,
            // Interleaved: the whole frames of what the card filled.
            bytes_used: self.layout.full_used_bytes(b.bytes_used),
        }))
    }
}

impl Source for KmodSource {
    fn start(&mut self) -> Result<()> {
        for i in 0..self.count {
            self.give(i)?;
        }
        // SAFETY: no argument.
        unsafe { streamon(self.file.as_raw_fd()) }
            .with_context(|| format!("source {}: STREAMON", self.path))?;
        self.streaming = true;
        Ok(())
    }

    fn try_take(&mut self) -> Result<Option<Filled>> {
        self.dequeue()
    }

    fn wait_take(&mut self, timeout_ms: u32) -> Result<Option<Filled>> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms as i32) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            bail!(
                "source {}: poll: {}",
                self.path,
                std::io::Error::last_os_error()
            );
        }
        if n <= 0 {
            return Ok(None);
        }
        self.dequeue()
    }

    fn give(&mut self, buffer: usize) -> Result<()> {
        let b = DmarecBuffer {
            index: buffer as u32,
            ..Default::default()
        };
        // SAFETY: the ioctl reads the DmarecBuffer we own.
        unsafe { qbuf(self.file.as_raw_fd(), &b) }
            .with_context(|| format!("source {}: QBUF buffer {buffer}", self.path))?;
        Ok(())
    }

    fn stop(&mut self) -> Result<CardStats> {
        if self.streaming {
            // SAFETY: no argument.
            unsafe { streamoff(self.file.as_raw_fd()) }
                .with_context(|| format!("source {}: STREAMOFF", self.path))?;
            self.streaming = false;
        }
        let mut st = DmarecStats::default();
        // SAFETY: the ioctl writes a DmarecStats into our local.
        unsafe { stats(self.file.as_raw_fd(), &mut st) }
            .with_context(|| format!("source {}: STATS", self.path))?;
        Ok(CardStats {
            filled: st.filled,
            overruns: st.overruns,
            card_cpu_ns: 0,
        })
    }

    /// The driver's timestamps are on CLOCK_MONOTONIC: the edu PCI card's
    /// are ktime_get_ns() when the card completed the buffer; the kernel's
    /// simulated card at a rate counts samples from its start (buffer k at
    /// start + k × payload / rate, the time of its first byte).
    fn time_anchor(&self) -> formats::time::TimeAnchor {
        let anchor = crate::clock::monotonic_anchor();
        if self.sample_counter {
            formats::time::TimeAnchor {
                clock: formats::time::CardClock::SampleCounter,
                ..anchor
            }
        } else {
            anchor
        }
    }

    fn channels(&self) -> ChannelDescription {
        let rate = self.rate_bytes_per_s as f64 / self.channels.max(1) as f64 / 4.0;
        ChannelDescription {
            count: self.channels,
            layout: self.layout.code(),
            datatype: super::sim::SIM_DATATYPE,
            sample_rate_hz: rate,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} ({:?} memory, {} channel(s))",
            self.path, self.mode, self.channels
        )
    }
}

impl Drop for KmodSource {
    fn drop(&mut self) {
        let _ = self.stop();
        if let Some((base, len)) = self.mapping.take() {
            // SAFETY: the io_uring that registered this mapping is dropped
            // before the source (lib.rs), so the kernel no longer uses it.
            unsafe { libc::munmap(base.as_ptr().cast(), len) };
        }
    }
}
