//! `dmarec`: the command line over the recorder library.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use formats::PayloadSize;
use recorder::journal::TargetSync;
use recorder::record::{StopReason, STOP_REQUESTED};
use recorder::source::kmod::MemoryMode;
use recorder::{defaults, units, RecordOptions, SourceChoice, MAX_BUFFERS};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

const EXIT_FULL: i32 = 3;
const EXIT_IO_ERROR: i32 = 4;

#[derive(Parser)]
#[command(
    name = "dmarec",
    version,
    about = "Record a data-acquisition card's DMA buffers to raw block devices with zero copies (io_uring WRITE_FIXED, O_DIRECT)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Record buffers from a card (or the simulated card) to one or more targets.
    #[command(after_help = RECORD_HELP)]
    Record(RecordArgs),
    /// Run as a service: record scans when asked over a Unix socket, export metrics.
    #[command(after_help = recorder::service::cli::SERVE_HELP)]
    Serve(recorder::service::cli::ServeArgs),
    /// Control the service: start a scan, stop it, show the status.
    #[command(after_help = recorder::service::cli::CTL_HELP)]
    Ctl(recorder::service::cli::CtlArgs),
}

const RECORD_HELP: &str = "\
Examples:
  # 10 s from the simulated card into a new 2 GiB file
  dmarec record --target /tmp/rec.img --file-size 2G --index /tmp/rec.idx --duration 10
  # hours from the driver to a raw disk, until it is full
  dmarec record --source /dev/dmarec0 --target /dev/sdb --index /var/lib/dmarec/run1.idx
  # scan after scan on one disk: a second run appends, `dmaplay list` shows both
  dmarec record --target /dev/sdb --index scan1.idx --scan scan1 --duration 60
  dmarec record --target /dev/sdb --index scan2.idx --scan scan2 --duration 60
  # stripe over two disks, ring mode (keep the newest data), 4 channels at 800 MB/s
  dmarec record --target /dev/sdb --target /dev/sdc --index run.idx --on-full wrap --channels 4 --rate 800
  # 8 channels interleaved in every buffer (frames of one sample per channel)
  dmarec record --target /dev/sdb --index il.idx --channels 8 --channel-layout interleaved

Exit status:
  0  stopped as asked (size, duration, SIGINT/SIGTERM); everything recorded is indexed
     (a second SIGINT/SIGTERM aborts at once with status 130)
  1  refused or failed to start (nothing was written, or only superblocks)
  2  usage error
  3  target full (--on-full stop): everything recorded is indexed; or, before writing
     anything, no slot left after the set's last scan
  4  I/O error while recording: slots before the error are consistent; run `dmaplay reindex`
     to index any later slot that completed

Durability: at least every --index-sync-ms the targets' write caches are flushed, then
the index entries of the flushed slots are written and the index fdatasync'ed, so an
entry never becomes durable before its slot. A crash or power cut loses at most that much
of the index, never a slot it lists; `dmaplay reindex` rebuilds the rest from the targets.";

#[derive(Clone, Copy, ValueEnum)]
enum OnFull {
    Stop,
    Wrap,
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetSyncArg {
    Flush,
    Dsync,
}

#[derive(Clone, Copy, ValueEnum)]
enum ChannelLayoutArg {
    /// Every buffer is one channel's: buffer N is channel N mod --channels.
    RoundRobin,
    /// Every buffer holds frames of one sample of each channel, in channel order.
    Interleaved,
}

#[derive(Clone, Copy, ValueEnum)]
enum Memory {
    Auto,
    Mmap,
    Userptr,
}

#[derive(clap::Args)]
struct RecordArgs {
    /// `sim` (simulated card) or the driver's device, e.g. /dev/dmarec0.
    #[arg(long, default_value = defaults::SOURCE)]
    source: String,
    /// Block device, partition or regular file to record to; repeat for a stripe set.
    #[arg(long = "target", required = true, value_name = "PATH")]
    targets: Vec<PathBuf>,
    /// Index file to write (refused if it exists, unless --force). Best on another disk
    /// than the targets: its fdatasync every --index-sync-ms then does not flush theirs.
    #[arg(long)]
    index: PathBuf,
    /// Stop after this much payload (e.g. 500M, 1.5G, 4GiB, 10GB).
    #[arg(long, value_parser = units::parse_size)]
    size: Option<u64>,
    /// Stop after this long: seconds (10, 2.5) or 90s, 10m, 1h30m.
    #[arg(long, value_parser = units::parse_duration)]
    duration: Option<Duration>,
    /// Card rate over all channels (simulated card; default unlimited): MB/s (800)
    /// or a size per second (500MB/s, 1.2GB/s).
    #[arg(long, value_parser = units::parse_rate)]
    rate: Option<u64>,
    /// Channels of the simulated card (default 4).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=formats::MAX_CHANNELS as i64))]
    channels: Option<u16>,
    /// How the channels share the buffers (docs/FORMAT.md, "Channel layouts"); with
    /// `interleaved` a buffer holds whole frames of --channels samples and `dmaplay export`
    /// de-interleaves them.
    #[arg(long, value_enum, default_value = defaults::CHANNEL_LAYOUT)]
    channel_layout: ChannelLayoutArg,
    /// Payload bytes per buffer: a power of two, 4K..64M (the kernel driver: 4K..16M).
    #[arg(long, default_value = defaults::PAYLOAD_SIZE, value_parser = units::parse_payload_size)]
    payload_size: PayloadSize,
    /// Buffers in the ring (registered once, at start), or `auto`: two seconds of the card
    /// at --rate, or 512 MiB when the rate is unknown (at most a quarter of the RAM, at
    /// most 16384 buffers): that held the longest write stalls and rate dips measured on
    /// this project's loop and virtio disks (docs/BENCHMARKS.md, "Sustained"). Said at start; the summary
    /// says what the run's longest write would have needed.
    #[arg(long, default_value = defaults::BUFFERS, value_parser = parse_buffers)]
    buffers: BufferCount,
    /// Slot writes in flight at most (8: best median on the machines measured, docs/BENCHMARKS.md).
    #[arg(long, default_value_t = defaults::QUEUE_DEPTH as u64, value_parser = clap::value_parser!(u64).range(1..=MAX_BUFFERS as u64))]
    queue_depth: u64,
    /// Submit through a kernel thread polling the submission queue (io_uring SQPOLL):
    /// fewer system calls, but the thread spins a core while there is work and is
    /// counted in the run's CPU time (docs/BENCHMARKS.md, "io_uring options").
    #[arg(long)]
    sqpoll: bool,
    /// With --sqpoll: ms without submissions before the polling thread sleeps
    /// (the next submission wakes it with a system call).
    #[arg(long, default_value_t = defaults::SQPOLL_IDLE_MS, requires = "sqpoll",
          value_parser = clap::value_parser!(u32).range(1..=defaults::SQPOLL_IDLE_MS_MAX as i64))]
    sqpoll_idle_ms: u32,
    /// Register the ring's file descriptor with itself (IORING_REGISTER_RING_FDS,
    /// Linux 5.18+): each io_uring_enter skips the file-descriptor lookup.
    #[arg(long)]
    register_ring_fd: bool,
    /// Poll for write completions instead of taking interrupts (io_uring IOPOLL): every
    /// target must be a block device with poll queues (NVMe with nvme.poll_queues=N);
    /// refused otherwise. Spins a core while writes are in flight.
    #[arg(long)]
    iopoll: bool,
    /// When the targets are full: stop, or wrap and overwrite the oldest slots (ring mode).
    #[arg(long, value_enum, default_value = "stop")]
    on_full: OnFull,
    /// Driver memory mode: auto tries the driver's buffers and falls back to userptr.
    #[arg(long, value_enum, default_value = defaults::MEMORY)]
    memory: Memory,
    /// Simulated card: lose every Nth buffer (to test gap handling).
    #[arg(long, default_value_t = 0)]
    sim_drop_every: u64,
    /// Simulated card: fill each buffer only on first use (benchmarks: models a
    /// DMA engine that costs the host nothing; recordings then verify by CRC but
    /// not by `dmaplay verify --pattern`).
    #[arg(long)]
    sim_fill_once: bool,
    /// Size of a regular-file target that does not exist yet (preallocated).
    #[arg(long, value_parser = units::parse_size)]
    file_size: Option<u64>,
    /// Record a scan named NAME: appended after the last scan of the set the
    /// targets hold (all its members), or the first scan of a new set on blank
    /// targets or with --force. Without it: a new set with one scan, "scan-1".
    #[arg(long, value_name = "NAME")]
    scan: Option<String>,
    /// Overwrite targets that hold a filesystem, partition table or recording (all their scans), and an existing index.
    #[arg(long)]
    force: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Time between status lines when stderr is not a terminal: seconds or 30s, 1m.
    #[arg(long, default_value = defaults::STATUS_INTERVAL, value_parser = units::parse_duration)]
    status_interval: Duration,
    /// Longest time between sync rounds, ms: the targets' write caches are
    /// flushed, then the index entries of the flushed slots written and fdatasync'ed.
    #[arg(long, default_value_t = defaults::INDEX_SYNC_MS,
          value_parser = clap::value_parser!(u64).range(1..=defaults::INDEX_SYNC_MS_MAX))]
    index_sync_ms: u64,
    /// How slots become durable: `flush` the targets' caches once per sync round,
    /// or write every slot with `dsync` (FUA where the device has it, else a flush per write).
    #[arg(long, value_enum, default_value = defaults::TARGET_SYNC)]
    target_sync: TargetSyncArg,
    /// No progress or status output.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy)]
enum BufferCount {
    Auto,
    Count(usize),
}

fn parse_buffers(text: &str) -> Result<BufferCount, String> {
    if text == "auto" {
        return Ok(BufferCount::Auto);
    }
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_BUFFERS).contains(&n) => Ok(BufferCount::Count(n)),
        _ => Err(format!(
            "{text:?}: a buffer count 1..={MAX_BUFFERS}, or `auto`"
        )),
    }
}

/// First SIGINT/SIGTERM: stop cleanly (drain, finalize the index). A second
/// one aborts at once, for a stop that does not finish.
extern "C" fn on_signal(_: libc::c_int) {
    if STOP_REQUESTED.swap(true, Ordering::Relaxed) {
        // SAFETY: _exit is async-signal-safe. Slots already written stay
        // valid on the targets; `dmaplay reindex` indexes them.
        unsafe { libc::_exit(130) };
    }
}

/// The recorder's options for the command line `args` (says how
/// `--buffers auto` chose unless `--quiet`).
fn record_options(args: &RecordArgs) -> RecordOptions {
    let source = if args.source == "sim" {
        SourceChoice::Sim
    } else {
        SourceChoice::Device(PathBuf::from(&args.source))
    };
    let buffers = match args.buffers {
        BufferCount::Count(n) => n,
        BufferCount::Auto => {
            let limit = recorder::ring_limit_buffers(&source);
            let (n, note) = recorder::auto_buffers(args.payload_size, args.rate, limit);
            if !args.quiet {
                eprintln!("dmarec: {note}");
            }
            n
        }
    };
    RecordOptions {
        source,
        targets: args.targets.clone(),
        index: args.index.clone(),
        size_bytes: args.size,
        duration: args.duration,
        payload_size: args.payload_size,
        buffers,
        queue_depth: args.queue_depth as usize,
        uring: recorder::uring::UringOptions {
            sqpoll_idle_ms: args.sqpoll.then_some(args.sqpoll_idle_ms),
            register_ring_fd: args.register_ring_fd,
            iopoll: args.iopoll,
        },
        ring: matches!(args.on_full, OnFull::Wrap),
        scan: args.scan.clone(),
        force: args.force,
        new_file_size_bytes: args.file_size,
        channels: args.channels,
        rate_bytes_per_s: args.rate,
        sim_drop_every: args.sim_drop_every,
        sim_fill_once: args.sim_fill_once,
        interleaved: matches!(args.channel_layout, ChannelLayoutArg::Interleaved),
        memory_mode: match args.memory {
            Memory::Auto => MemoryMode::Auto,
            Memory::Mmap => MemoryMode::Mmap,
            Memory::Userptr => MemoryMode::Userptr,
        },
        status_interval: args.status_interval,
        index_sync_interval: Duration::from_millis(args.index_sync_ms.max(1)),
        target_sync: match args.target_sync {
            TargetSyncArg::Flush => TargetSync::Flush,
            TargetSyncArg::Dsync => TargetSync::Dsync,
        },
        quiet: args.quiet,
        live: None,
    }
}

fn run_record(args: RecordArgs) -> Result<i32> {
    let opts = record_options(&args);
    recorder::signals::install_stop_handlers(on_signal);
    let summary = recorder::record(&opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !args.quiet {
        eprint!("{}", summary.text());
    }
    if let Some(e) = &summary.error {
        eprintln!("dmarec: error: {e}");
    }
    Ok(match summary.stop_reason {
        Some(StopReason::IoError) => EXIT_IO_ERROR,
        Some(StopReason::TargetFull) => EXIT_FULL,
        _ => 0,
    })
}

fn main() {
    // `NAME generate-docs DIR`: man pages and completions (make install).
    dmarec_docgen::generate_if_asked(<Cli as clap::CommandFactory>::command);
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Record(a) => run_record(a),
        Command::Serve(a) => recorder::service::cli::run_serve(a),
        Command::Ctl(a) => recorder::service::cli::run_ctl(a),
    };
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("dmarec: error: {e:#}");
            let usage = e.downcast_ref::<recorder::UsageError>().is_some();
            let full = e.downcast_ref::<recorder::scans::SetFull>().is_some();
            std::process::exit(if usage {
                2
            } else if full {
                EXIT_FULL
            } else {
                1
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_lines_defaults_are_record_options_new() {
        let cli =
            Cli::try_parse_from(["dmarec", "record", "--target", "t.img", "--index", "i"]).unwrap();
        let Command::Record(args) = cli.command else {
            panic!("not a record command");
        };
        let expected = RecordOptions::new(vec![PathBuf::from("t.img")], PathBuf::from("i"));
        assert_eq!(
            format!("{:?}", record_options(&args)),
            format!("{expected:?}")
        );
    }
}
