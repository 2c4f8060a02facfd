//! dmarec's recorder: moves a data-acquisition card's filled DMA buffers to
//! raw block devices at the disk's speed, with no copy of the payload.
//!
//! Set-up ([`record()`]) opens and checks the targets ([`target`]), creates
//! the io_uring, gets slot memory registered with it from the source
//! ([`source`]: the simulated card, or the kernel driver in MMAP or USERPTR
//! memory mode), writes the superblocks and the index header, and hands over
//! to the hot path in [`record`](mod@record), which owns the recording loop:
//! one `WRITE_FIXED` per slot (header page + payload, contiguous in one
//! registered buffer), the buffer back to the card after its write
//! completed, index entries appended in slot order ([`index_writer`]).

pub mod clock;
pub mod index_writer;
pub mod journal;
pub mod memory;
pub mod pipeline;
pub mod readback;
pub mod record;
pub mod scans;
pub mod service;
pub mod signals;
pub mod source;
pub mod status;
pub mod target;
pub mod units;
pub mod uring;

use anyhow::{bail, Context, Result};
use formats::{Channel, Member, PayloadSize, Superblock, MAX_DEVICES};
use journal::TargetSync;
use memory::SlotMemory;
use record::{Io, Limits, Recorder};
use source::kmod::{KmodOptions, KmodSource, MemoryMode};
use source::sim::{SimConfig, SimSource};
use source::Source;
use status::{Progress, Summary};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use target::{open_target, OpenOptionsCli, Target};

/// Most buffers a ring may have: io_uring registers at most 16384
/// (`IORING_MAX_REG_BUFFERS`; the SQE's `buf_index` is a u16).
pub const MAX_BUFFERS: usize = 16384;

/// The share of the machine's RAM `--buffers auto` locks at most.
pub const AUTO_RAM_DIVISOR: u64 = 4;

/// Ring memory `--buffers auto` takes when the card's rate is unknown:
/// measured write stalls of loop and virtio disks reach 250–800 ms on this
/// project's shared machines (docs/BENCHMARKS.md, sustained): the largest
/// ring the runs there needed was 868 buffers of 516 KiB (448 MB, an 804 ms
/// write at 570 MB/s).
pub const AUTO_RING_BYTES: u64 = 512 << 20;

/// The write stall `--buffers auto` rides out when the card's rate is known:
/// the longest writes measured at 2 GB/s took 0.2–0.7 s on a quiet machine
/// and up to 2.6 s on a crowded one, and a device's rate dipped 10 % below
/// the card's for seconds (5-minute quiet runs lost 0.01–0.18 % with one
/// second of ring; docs/BENCHMARKS.md, sustained).
pub const AUTO_STALL_MS: u64 = 2000;

/// The most buffers `source` can give a ring: [`MAX_BUFFERS`], or less when
/// a kernel driver says so (QUERYCAP). A device that does not answer now
/// (absent, module not loaded: a service checking its configuration) gets
/// [`MAX_BUFFERS`]; the recording's own open then names the problem.
pub fn ring_limit_buffers(source: &SourceChoice) -> usize {
    match source {
        SourceChoice::Sim => MAX_BUFFERS,
        SourceChoice::Device(path) => source::kmod::driver_max_buffers(path)
            .map_or(MAX_BUFFERS, |limit| limit.clamp(16, MAX_BUFFERS)),
    }
}

/// The `--buffers auto` ring: [`AUTO_STALL_MS`] of the card at
/// `card_rate_bytes_per_s`, or [`AUTO_RING_BYTES`] when the rate is unknown;
/// at most a quarter ([`AUTO_RAM_DIVISOR`]) of the machine's RAM, within
/// 16..=`limit_buffers` ([`ring_limit_buffers`]) buffers of `payload_size`.
/// Also says why, for the user.
pub fn auto_buffers(
    payload_size: PayloadSize,
    card_rate_bytes_per_s: Option<u64>,
    limit_buffers: usize,
) -> (usize, String) {
    assert!(
        (16..=MAX_BUFFERS).contains(&limit_buffers),
        "{limit_buffers}"
    );
    // SAFETY: sysconf has no memory effects.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) }.max(0) as u64;
    let ram_bytes = pages.saturating_mul(4096);
    let (wanted_bytes, why) = match card_rate_bytes_per_s {
        Some(rate) => (
            rate.saturating_mul(AUTO_STALL_MS) / 1000,
            format!(
                "{AUTO_STALL_MS} ms of the card at {:.0} MB/s",
                rate as f64 / 1e6
            ),
        ),
        None => (AUTO_RING_BYTES, "the card's rate is unknown".to_string()),
    };
    let ring_bytes = wanted_bytes.min(ram_bytes / AUTO_RAM_DIVISOR);
    let wanted_buffers = ((ring_bytes / payload_size.slot_bytes()) as usize).max(16);
    let buffers = wanted_buffers.min(limit_buffers);
    let capped = if buffers < wanted_buffers {
        format!(", capped at the source's {limit_buffers} buffers")
    } else if ring_bytes < wanted_bytes {
        format!(", capped at 1/{AUTO_RAM_DIVISOR} of the RAM")
    } else {
        String::new()
    };
    let held_mib = buffers as f64 * payload_size.slot_bytes() as f64 / (1 << 20) as f64;
    let covers = match card_rate_bytes_per_s {
        Some(rate) if rate > 0 => format!(
            ": it holds {:.2} s of the card's data through a write stall",
            buffers as f64 * payload_size.bytes() as f64 / rate as f64
        ),
        _ => String::new(),
    };
    let note = format!(
        "ring: {buffers} buffers, {held_mib:.0} MiB locked (--buffers auto: {why}{capped}){covers}"
    );
    (buffers, note)
}

#[derive(Debug, Clone)]
pub enum SourceChoice {
    Sim,
    Device(PathBuf),
}

#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub source: SourceChoice,
    pub targets: Vec<PathBuf>,
    pub index: PathBuf,
    pub size_bytes: Option<u64>,
    pub duration: Option<Duration>,
    pub payload_size: PayloadSize,
    pub buffers: usize,
    pub queue_depth: usize,
    /// SQPOLL, a registered ring fd, IOPOLL (crate::uring).
    pub uring: uring::UringOptions,
    pub ring: bool,
    /// Name of the scan to record (`--scan`): appended after the set's
    /// last scan unless `force`; `None`: a new set (blank targets or
    /// `force`) with one scan named `scan-1`.
    pub scan: Option<String>,
    pub force: bool,
    pub new_file_size_bytes: Option<u64>,
    pub channels: Option<u16>,
    pub rate_bytes_per_s: Option<u64>,
    pub sim_drop_every: u64,
    pub sim_fill_once: bool,
    /// Record the card's buffers as interleaved frames of all channels
    /// (formats::ChannelLayout::Interleaved) instead of round-robin.
    pub interleaved: bool,
    pub memory_mode: MemoryMode,
    pub status_interval: Duration,
    pub index_sync_interval: Duration,
    pub target_sync: TargetSync,
    pub quiet: bool,
    /// Where each status interval's figures are published (the service).
    pub live: Option<status::LiveSink>,
}

/// `dmarec record`'s defaults, defined once for its command line, for
/// `dmarec serve`'s configuration keys of the same names
/// (service::config) and for [`RecordOptions::new`]. Strings are in the
/// command line's own units and spellings.
pub mod defaults {
    pub const SOURCE: &str = "sim";
    pub const PAYLOAD_SIZE: &str = "512K";
    pub const BUFFERS: &str = "auto";
    pub const QUEUE_DEPTH: usize = 8;
    /// `--sqpoll-idle-ms`: the SQPOLL thread's idle time before it sleeps.
    pub const SQPOLL_IDLE_MS: u32 = 1000;
    /// `--sqpoll-idle-ms`'s range.
    pub const SQPOLL_IDLE_MS_MAX: u32 = 60_000;
    pub const CHANNEL_LAYOUT: &str = "round-robin";
    pub const MEMORY: &str = "auto";
    pub const INDEX_SYNC_MS: u64 = 1000;
    /// `--index-sync-ms`'s range.
    pub const INDEX_SYNC_MS_MAX: u64 = 3_600_000;
    pub const TARGET_SYNC: &str = "flush";
    /// `dmarec record --status-interval` (the service refreshes every second).
    pub const STATUS_INTERVAL: &str = "10";
}

impl RecordOptions {
    /// A recording of the simulated card to `targets` with `index`, every
    /// other option at `dmarec record`'s default ([`defaults`]): no size or
    /// duration limit, `--buffers auto` for a card of unknown rate, a new
    /// stripe set (no `--scan`), stop when full, output not quiet.
    pub fn new(targets: Vec<PathBuf>, index: PathBuf) -> RecordOptions {
        let payload_size =
            units::parse_payload_size(defaults::PAYLOAD_SIZE).expect("the default payload size");
        let source = SourceChoice::Sim;
        let buffers = auto_buffers(payload_size, None, ring_limit_buffers(&source)).0;
        RecordOptions {
            source,
            targets,
            index,
            size_bytes: None,
            duration: None,
            payload_size,
            buffers,
            queue_depth: defaults::QUEUE_DEPTH,
            uring: uring::UringOptions::default(),
            ring: false,
            scan: None,
            force: false,
            new_file_size_bytes: None,
            channels: None,
            rate_bytes_per_s: None,
            sim_drop_every: 0,
            sim_fill_once: false,
            interleaved: false,
            memory_mode: MemoryMode::Auto,
            status_interval: units::parse_duration(defaults::STATUS_INTERVAL)
                .expect("the default status interval"),
            index_sync_interval: Duration::from_millis(defaults::INDEX_SYNC_MS),
            target_sync: TargetSync::Flush,
            quiet: false,
            live: None,
        }
    }
}

/// A command line that asks for something impossible (exit status 2 in
/// `dmarec`, like clap's own usage errors).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn check_options(options: &RecordOptions) -> Result<()> {
    let usage = |message: String| Err(UsageError(message).into());
    let payload_bytes = options.payload_size.bytes();
    if matches!(options.source, SourceChoice::Device(_))
        && payload_bytes > PayloadSize::DRIVER_MAX_BYTES
    {
        return usage(format!(
            "--payload-size {payload_bytes}: the kernel driver takes at most {} bytes per buffer \
             (DMAREC_MAX_PAYLOAD); choose a smaller --payload-size",
            PayloadSize::DRIVER_MAX_BYTES
        ));
    }
    if options.buffers == 0 || options.buffers > MAX_BUFFERS {
        return usage(format!(
            "--buffers {}: must be 1..={MAX_BUFFERS}",
            options.buffers
        ));
    }
    if options.queue_depth == 0 || options.queue_depth > options.buffers {
        return usage(format!(
            "--queue-depth {}: must be 1..=--buffers ({})",
            options.queue_depth, options.buffers
        ));
    }
    if options.targets.is_empty() || options.targets.len() > MAX_DEVICES {
        return usage(format!(
            "{} targets given: a stripe set has 1..={MAX_DEVICES} --target",
            options.targets.len()
        ));
    }
    if let Some(c) = options.channels {
        if c == 0 || c as usize > formats::MAX_CHANNELS {
            return usage(format!(
                "--channels {c}: must be 1..={}",
                formats::MAX_CHANNELS
            ));
        }
    }
    Ok(())
}

/// Refuses the same device twice, or the index on a target.
fn check_distinct(targets: &[Target], index: &std::path::Path) -> Result<()> {
    let ids: Vec<(u64, u64)> = targets
        .iter()
        .map(|t| {
            let m = t.file.metadata().expect("fstat of an open file");
            if t.is_block_device {
                (0, m.rdev())
            } else {
                (m.dev(), m.ino())
            }
        })
        .collect();
    for i in 0..ids.len() {
        for j in 0..i {
            if ids[i] == ids[j] {
                bail!(
                    "target {} is given twice (same device as {})",
                    targets[i].path.display(),
                    targets[j].path.display()
                );
            }
        }
    }
    if let Ok(m) = std::fs::metadata(index) {
        if targets.iter().any(|t| {
            t.path == index
                || (!t.is_block_device
                    && t.file
                        .metadata()
                        .map(|tm| tm.ino() == m.ino() && tm.dev() == m.dev())
                        .unwrap_or(false))
        }) {
            bail!(
                "--index {} is one of the targets; put the index in a file of its own",
                index.display()
            );
        }
    }
    Ok(())
}

fn open_index(path: &std::path::Path, force: bool) -> Result<File> {
    let mut oo = OpenOptions::new();
    oo.read(true).write(true).custom_flags(libc::O_CLOEXEC);
    if force {
        oo.create(true).truncate(true);
    } else {
        oo.create_new(true);
    }
    oo.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "index {} already exists; choose another --index path, or pass --force to replace it",
            path.display()
        ),
        _ => anyhow::Error::new(e).context(format!("index {}: cannot create", path.display())),
    })
}

/// Files this run created (new target files, the index). Removed on drop
/// unless disarmed: a start that fails leaves nothing behind, so a corrected
/// command line can simply be run again; once slots are written, they stay.
#[derive(Default)]
struct CreatedFiles {
    paths: Vec<PathBuf>,
    keep: bool,
}

impl Drop for CreatedFiles {
    fn drop(&mut self) {
        if !self.keep {
            for p in &self.paths {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Runs one recording (one scan of a stripe set) from start to summary:
/// a new set on blank targets or with `force`, else the scan `options.scan`
/// appended after the set's last one (docs/FORMAT.md "Scans").
pub fn record(options: &RecordOptions) -> Result<Summary> {
    check_options(options)?;
    // Before any file is touched: can the ring be locked and registered?
    memory::ensure_memlock(options.buffers as u64 * options.payload_size.slot_bytes())?;
    let mut created = CreatedFiles::default();
    let mut targets = open_targets(options, &mut created)?;
    check_distinct(&targets, &options.index)?;
    let new_set_only = options.force || options.scan.is_none();
    let existing = scans::read_existing(&mut targets, new_set_only)?;
    let mut index_file = open_index(&options.index, options.force)?;
    created.paths.push(options.index.clone());

    if options.uring.iopoll {
        uring::check_iopoll_targets(&targets)?;
    }
    let sq_entries = record::sq_entries(options.queue_depth, targets.len());
    let rings = uring::Rings::new(sq_entries, &options.uring)?;
    let setup_flags = rings.setup.clone();
    record::register_files(&rings, &targets, &index_file)?;
    let (mut source, memory) = open_source(options, &rings.slots)?;
    let (sb, plan) = plan_scan(&targets, existing, options, source.as_ref())?;
    if plan.new_set {
        target::write_superblocks(&targets, &sb)?;
    }
    // The scan's entry is durable before its first slot write.
    scans::write_table(&targets, &plan.table)?;
    // The index's superblock copy carries the scan's time anchor (each scan
    // starts its own card time); the members keep the set's first.
    let index_sb = Superblock {
        time_anchor: plan.scan().time_anchor,
        ..sb.clone()
    };
    write_index_header(&mut index_file, &index_sb, plan.scan().uuid, options)?;
    let (progress, limits) = run_limits(options, plan.layout.capacity_slots());
    let describe = source.describe();
    let backing = memory.backing();
    // From here on the targets hold a recording: keep every file.
    created.keep = true;
    let io = Io {
        rings,
        memory: &memory,
        source: source.as_mut(),
        targets: &targets,
        index_file: &index_file,
    };
    let scan = plan.scan().clone();
    let capacity_slots = plan.layout.capacity_slots();
    let mut summary = Recorder::new(io, sb, limits, progress)
        .in_scan(scan.uuid, plan.layout.clone())
        .run()?;
    // Teardown order: the ring is gone (run consumed it), then the source
    // (driver unpins / sim thread joined), then the memory.
    drop(source);
    drop(memory);
    if let Err(e) = end_scan(&targets, plan, &summary) {
        // The slots and the index stand; the summary says what failed, and
        // it is an I/O error (exit 4) whatever stopped the recording.
        let message = format!("{e:#}");
        summary.error = Some(match summary.error.take() {
            Some(first) => format!("{first}; {message}"),
            None => message,
        });
        summary.stop_reason = Some(record::StopReason::IoError);
    }
    summary.scan_name = scan.name;
    summary.scan_uuid = scan.uuid.to_string();
    summary.ring_mode = options.ring;
    summary.capacity_slots = capacity_slots;
    summary.target_sync = options.target_sync;
    summary.source = describe;
    summary.index = options.index.display().to_string();
    summary.io_uring_setup = setup_flags;
    summary.memory = backing;
    Ok(summary)
}

/// The set's superblock and the scan this run records: a new set's first
/// scan, or one appended after the existing set's last (sealed if live).
fn plan_scan(
    targets: &[Target],
    existing: scans::Existing,
    options: &RecordOptions,
    source: &dyn Source,
) -> Result<(Superblock, scans::Plan)> {
    let fresh = superblock_for(targets, options, source);
    // The scan's anchor: the one the new superblock would carry.
    let fresh_anchor = fresh.time_anchor;
    let (sb, table) = match existing {
        scans::Existing::NewSet => (fresh, None),
        scans::Existing::Set { superblock, table } => {
            check_same_set(&superblock, &fresh)?;
            let table = seal_if_live(targets, &superblock, table)?;
            (superblock, Some(table))
        }
    };
    let plan = scans::plan(
        &sb,
        table,
        options.scan.as_deref(),
        options.ring,
        target::random_uuid(),
        crate::clock::realtime_ns(),
        fresh_anchor,
    )?;
    Ok((sb, plan))
}

/// An appended scan must have the set's payload size and channels.
fn check_same_set(set: &Superblock, run: &Superblock) -> Result<()> {
    if set.payload_bytes != run.payload_bytes {
        bail!(
            "set {}: its payload size is {} bytes, this run's {}: a scan appended to a set uses the set's (--payload-size {}), or pass --force to start a new set",
            set.recording_uuid,
            set.payload_bytes,
            run.payload_bytes,
            set.payload_bytes
        );
    }
    if set.channels != run.channels || set.channel_layout != run.channel_layout {
        let describe = |sb: &Superblock| {
            let c = &sb.channels[0];
            format!(
                "{} × {} at {} Hz",
                sb.channels.len(),
                c.datatype,
                c.sample_rate_hz
            )
        };
        bail!(
            "set {}: the card's channels ({}) differ from the set's ({}): the channel table (count, names, datatypes, sample rates) belongs to the set, so an appended scan needs the same card settings (--channels, --rate), or pass --force to start a new set",
            set.recording_uuid,
            describe(run),
            describe(set)
        );
    }
    Ok(())
}

fn seal_if_live(
    targets: &[Target],
    sb: &Superblock,
    table: formats::ScanTable,
) -> Result<formats::ScanTable> {
    match table.scans.last() {
        Some(last) if last.state == formats::ScanState::Live => {
            scans::seal_live(targets, sb, table)
        }
        _ => Ok(table),
    }
}

/// Writes the scan's end (counts, state) after the run's final sync round.
fn end_scan(targets: &[Target], plan: scans::Plan, summary: &Summary) -> Result<()> {
    let end = scans::ScanEnd {
        slot_count: summary.slots_submitted(),
        end_unix_ns: crate::clock::realtime_ns(),
        payload_bytes: summary.payload_bytes_recorded,
        buffers_lost: summary.buffers_lost,
        state: if summary.stop_reason == Some(record::StopReason::IoError) {
            formats::ScanState::Interrupted
        } else {
            formats::ScanState::Complete
        },
    };
    let name = plan.scan().name.clone();
    scans::write_table(targets, &scans::ended(plan.table, end)).with_context(|| {
        format!(
            "scan {name:?}: its slots are recorded and indexed, but its end could not be written: the scan stays live until the next `dmarec record --scan` seals it"
        )
    })
}

/// Opens and checks every target; new files are noted in `created`.
fn open_targets(options: &RecordOptions, created: &mut CreatedFiles) -> Result<Vec<Target>> {
    let cli = OpenOptionsCli {
        force: options.force,
        append: options.scan.is_some(),
        new_file_size_bytes: options.new_file_size_bytes,
    };
    let mut targets = Vec::with_capacity(options.targets.len());
    for path in &options.targets {
        let t = open_target(path, &cli, options.payload_size)?;
        if t.created {
            created.paths.push(t.path.clone());
        }
        targets.push(t);
    }
    Ok(targets)
}

/// The card, and the slot memory registered with `ring`: the recorder's own
/// for the simulated card, the driver's or the recorder's for the driver.
fn open_source(
    options: &RecordOptions,
    ring: &io_uring::IoUring,
) -> Result<(Box<dyn Source>, Arc<SlotMemory>)> {
    let mut register = |mem: &SlotMemory| {
        // SAFETY: the memory stays mapped until the ring is dropped: the
        // ring goes first (Recorder::run consumes it), then the source,
        // then the memory (drop order in record()).
        unsafe { ring.submitter().register_buffers(&mem.iovecs()) }
    };
    match &options.source {
        SourceChoice::Sim => {
            let mem = Arc::new(SlotMemory::allocate(
                options.buffers,
                options.payload_size.as_usize(),
            )?);
            register(&mem).map_err(|e| {
                anyhow::anyhow!(
                    "io_uring buffer registration of {} bytes: {e}. {}",
                    mem.total_bytes(),
                    memory::MEMLOCK_HELP
                )
            })?;
            let cfg = SimConfig {
                channels: options.channels.unwrap_or(4),
                rate_bytes_per_s: options.rate_bytes_per_s.unwrap_or(0),
                drop_every: options.sim_drop_every,
                fill_once: options.sim_fill_once,
                interleaved: options.interleaved,
            };
            Ok((Box::new(SimSource::new(cfg, mem.clone())), mem))
        }
        SourceChoice::Device(path) => {
            let ko = KmodOptions {
                mode: options.memory_mode,
                buffers: options.buffers,
                payload_bytes: options.payload_size.bytes(),
                channels: options.channels,
                rate_bytes_per_s: options.rate_bytes_per_s,
                interleaved: options.interleaved,
            };
            let (src, mem) = KmodSource::open(path, &ko, &mut register)?;
            Ok((Box::new(src), mem))
        }
    }
}

/// The index header naming the scan, durable.
fn write_index_header(
    index_file: &mut File,
    sb: &Superblock,
    scan_uuid: formats::Uuid,
    options: &RecordOptions,
) -> Result<()> {
    index_file
        .write_all(
            &formats::IndexHeader {
                superblock: sb.clone(),
                scan_uuid,
            }
            .encode(),
        )
        .and_then(|_| index_file.sync_all())
        .with_context(|| format!("index {}: writing header", options.index.display()))
}

/// What ends the run (for the progress display) and the loop's limits.
fn run_limits(options: &RecordOptions, capacity: u64) -> (Progress, Limits) {
    // The size limit, the duration, or (not in ring mode) a full region.
    let size_slots = options
        .size_bytes
        .map(|s| s.div_ceil(options.payload_size.as_u64()));
    let limit_slots = match (size_slots, options.ring) {
        (Some(n), false) => Some(n.min(capacity)),
        (Some(n), true) => Some(n),
        (None, false) => Some(capacity),
        (None, true) => None,
    };
    let ends = status::RunLimits {
        slots: limit_slots,
        duration: options.duration,
    };
    let limits = Limits {
        size_bytes: options.size_bytes,
        duration: options.duration,
        queue_depth: options.queue_depth,
        index_sync_interval: options.index_sync_interval,
        target_sync: options.target_sync,
    };
    (
        Progress::new(
            ends,
            options.status_interval,
            options.quiet,
            options.live.clone(),
        ),
        limits,
    )
}

fn superblock_for(targets: &[Target], options: &RecordOptions, source: &dyn Source) -> Superblock {
    let channels = source.channels();
    let created_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Superblock {
        version_minor: formats::FORMAT_VERSION_MINOR,
        recording_uuid: target::random_uuid(),
        created_unix_ns,
        payload_bytes: options.payload_size.bytes(),
        // Ring mode belongs to a scan (its table entry) in a set with scans.
        flags: 0,
        device_index: 0,
        channel_layout: channels.layout,
        members: targets
            .iter()
            .map(|t| Member {
                uuid: target::random_uuid(),
                size_bytes: t.size_bytes,
                slot_count: Superblock::slots_for_device(
                    t.size_bytes,
                    options.payload_size.bytes(),
                ),
            })
            .collect(),
        channels: (0..channels.count)
            .map(|c| Channel {
                name: format!("ch{c}"),
                datatype: channels.datatype.to_string(),
                sample_rate_hz: channels.sample_rate_hz,
            })
            .collect(),
        time_anchor: Some(source.time_anchor()),
    }
}

#[cfg(test)]
mod auto_ring_tests {
    use super::{auto_buffers, AUTO_RAM_DIVISOR, AUTO_RING_BYTES, AUTO_STALL_MS, MAX_BUFFERS};
    use formats::PayloadSize;

    fn ram_bytes() -> u64 {
        // SAFETY: sysconf has no memory effects.
        unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) }.max(0) as u64 * 4096
    }

    #[test]
    fn a_known_rate_gets_auto_stall_ms_of_the_card() {
        let payload = PayloadSize::new(512 << 10).unwrap();
        let rate_bytes_per_s = 200_000_000;
        let (buffers, note) = auto_buffers(payload, Some(rate_bytes_per_s), MAX_BUFFERS);
        let wanted_bytes = rate_bytes_per_s * AUTO_STALL_MS / 1000;
        let wanted =
            (wanted_bytes.min(ram_bytes() / AUTO_RAM_DIVISOR) / payload.slot_bytes()) as usize;
        assert_eq!(buffers, wanted.clamp(16, MAX_BUFFERS));
        assert!(
            note.contains(&format!("{AUTO_STALL_MS} ms of the card at 200 MB/s")),
            "{note}"
        );
        assert!(note.contains(&format!("ring: {buffers} buffers")), "{note}");
        // 2 s at 200 MB/s = 400 MB = 757 slots of 516 KiB (381 MiB), which
        // hold 757 x 512 KiB / 200 MB/s = 1.98 s; no cap on any machine
        // with 1.6 GB of RAM or more.
        assert_eq!(AUTO_STALL_MS, 2000);
        assert_eq!(buffers, 757);
        assert!(note.contains("ring: 757 buffers, 381 MiB locked"), "{note}");
        assert!(
            note.contains("it holds 1.98 s of the card's data"),
            "{note}"
        );
        assert!(!note.contains("capped"), "{note}");
        let (_, stopped_card) = auto_buffers(payload, Some(0), MAX_BUFFERS);
        assert!(!stopped_card.contains("holds"), "{stopped_card}");
    }

    #[test]
    fn an_unknown_rate_gets_the_fixed_ring_and_a_fast_card_the_cap() {
        let payload = PayloadSize::new(512 << 10).unwrap();
        let (buffers, note) = auto_buffers(payload, None, MAX_BUFFERS);
        let wanted =
            (AUTO_RING_BYTES.min(ram_bytes() / AUTO_RAM_DIVISOR) / payload.slot_bytes()) as usize;
        assert_eq!(buffers, wanted.clamp(16, MAX_BUFFERS));
        assert!(note.contains("rate is unknown"), "{note}");
        let (fast, fast_note) = auto_buffers(payload, Some(u64::MAX), MAX_BUFFERS);
        let cap = ((ram_bytes() / AUTO_RAM_DIVISOR) / payload.slot_bytes()) as usize;
        assert_eq!(fast, cap.clamp(16, MAX_BUFFERS));
        assert!(
            fast_note.contains("capped at 1/4 of the RAM"),
            "{fast_note}"
        );
        let (slow, _) = auto_buffers(payload, Some(1), MAX_BUFFERS);
        assert_eq!(slow, 16, "at least 16 buffers");
    }

    #[test]
    fn a_driver_limit_caps_the_ring_and_is_said() {
        let payload = PayloadSize::new(4 << 10).unwrap();
        let (unlimited, _) = auto_buffers(payload, Some(1 << 30), MAX_BUFFERS);
        assert!(unlimited > 1024, "{unlimited}");
        let (buffers, note) = auto_buffers(payload, Some(1 << 30), 1024);
        assert_eq!(buffers, 1024);
        assert!(
            note.contains("capped at the source's 1024 buffers"),
            "{note}"
        );
        assert!(note.contains("ring: 1024 buffers"), "{note}");
    }
}
