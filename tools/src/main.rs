//! `dmaplay`: the command line over the `tools` library.

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use tools::catalog::{self, Catalog};
use tools::export::{ExportOptions, GapMode, OutputFormat};
use tools::replay::{ReplayOptions, Speed};
use tools::select::{self, Selection, SeqRange};
use tools::stripe::StripeSet;
use tools::timespec::TimeSpec;
use tools::{export, inspect, reindex, replay, sigmf, verify};

const EXIT_OK: i32 = 0;
const EXIT_ERROR: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_BAD_SLOTS: i32 = 3;

/// The part of every subcommand's help after its examples.
macro_rules! common_help {
    () => {
        "\
Targets are the members of a recording's stripe set (block devices or files), in any order.
dmaplay opens them read-only (O_RDONLY|O_DIRECT) and never writes to them. A member that is
not given is reported by index and UUID; inspect, verify, export and replay go on without it
and report its slots as unavailable (verify lists them as bad, export treats them as gaps);
reindex refuses. Without --index, or with an index that is unusable or damaged, commands scan
the targets' slot headers instead and say so on stderr.

A stripe set holds one or more scans (recorded one after another, `dmaplay list`); every
command reads one: --scan NAME|UUID, by default the only or the newest (named on stderr
when there are several). Each scan has its own index file.


Times (--from, --to) are on the card's clock, anchored to UTC when the recording started:
  2026-11-30T08:55:16Z, 2026-11-30T08:55:16.25+01:00   an instant (RFC 3339)
  90s, 1.5s, 10m, 1h30m, 00:01:00, PT1M, 12.5, start+90s  after the recording's start
  end-10m, end                                          back from the newest recorded slot
  card:1234, slot:567                                   a card sequence or slot number
--from takes slots at or after it, --to slots up to and including it. An instant, a card
sequence or a slot number names the same data after the ring wrapped. A selection with no
slots is an error (exit 2) that says what the recording holds. Slot ranges (--seq, --range)
are A..B with both ends included, A.., ..B or a single N.

Exit status:
  0  success
  1  error (bad input, unreadable target, --gaps error hit a gap, ...)
  2  usage error (also a selection with no slots)
  3  verify: bad, missing or unavailable slots, or a damaged superblock or reserved area,
     were found (listed on stdout)"
    };
}

const AFTER_HELP: &str = common_help!();

const INSPECT_HELP: &str = concat!(
    "Examples:
  dmaplay inspect /dev/sdb /dev/sdc --index run.idx
  dmaplay inspect --json rec.img --index rec.idx | jq .channels
  dmaplay inspect --slots --channel 1 --from 10 --to 12 rec.img --index rec.idx
  dmaplay inspect --slots --seq 1000..1010 rec.img          # no index: scans the slot headers

",
    common_help!()
);

const VERIFY_HELP: &str = concat!(
    "Examples:
  dmaplay verify /dev/sdb /dev/sdc --index run.idx
  dmaplay verify --pattern rec.img --index rec.idx          # a simulated card's recording
  dmaplay verify --range 5000..5999 --json rec.img

",
    common_help!()
);

const REPLAY_HELP: &str = concat!(
    "Examples:
  dmaplay replay --speed max rec.img --index rec.idx > all.raw
  dmaplay replay --channel 2 --from 30 --to 40 rec.img --index rec.idx | consumer
  mkfifo /tmp/s && dmaplay replay --speed x2 --out /tmp/s rec.img &

The stream is binary: a terminal as output (stdout without --out, or --out /dev/tty) is
refused with status 2. With --json the report goes to stdout when --out is given, and to
stderr when the stream itself is on stdout.

",
    common_help!()
);

#[derive(Parser)]
#[command(name = "dmaplay", version, about = "Inspect, verify, export, replay and reindex dmarec recordings", after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recording, members, time span, bytes, channels, gaps and ring wraps; --slots lists slots.
    #[command(after_help = INSPECT_HELP)]
    Inspect(InspectArgs),
    /// Read every slot and check header, payload CRC (and --pattern); exit 3 if any is bad.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Write channel payloads to raw files or SigMF recordings.
    #[command(after_help = format!("{EXPORT_HELP}\n\n{AFTER_HELP}"))]
    Export(ExportArgs),
    /// Stream payloads to stdout, a file or a FIFO, paced by the card timestamps.
    #[command(
        after_help = REPLAY_HELP,
        mut_arg("json", |a| a.help("Print the report as JSON: on stdout with --out, on stderr when the stream goes to stdout"))
    )]
    Replay(ReplayArgs),
    /// Rebuild the index from the targets (after a crash or a lost index).
    #[command(after_help = REINDEX_HELP)]
    Reindex(ReindexArgs),
    /// Draw the rate of every channel over time, gaps and ring wraps, as an SVG file.
    #[command(after_help = AFTER_HELP)]
    Timeline(TimelineArgs),
    /// The scans of the stripe set: name, UUID, start, duration, bytes, gaps, state.
    #[command(after_help = AFTER_HELP)]
    List(ListArgs),
}

#[derive(Args)]
struct TimelineArgs {
    #[command(flatten)]
    common: Common,
    /// The SVG file to write.
    #[arg(long)]
    out: PathBuf,
    /// Time bins of the rate curves.
    #[arg(long, default_value_t = 400)]
    bins: usize,
    /// Picture size in pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "1000x500", value_parser = parse_size_px)]
    size: (u32, u32),
    /// Overwrite an existing --out file.
    #[arg(long)]
    force: bool,
}

fn parse_size_px(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?}: use WIDTHxHEIGHT in pixels, 200..=20000 each (e.g. 1000x500)");
    let (w, h) = text.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(200..=20000).contains(&w) || !(200..=20000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

fn run_timeline(args: TimelineArgs) -> Result<i32> {
    let stripe = open(&args.common.targets, args.common.scan.as_deref())?;
    let o = tools::timeline::TimelineOptions {
        out: args.out,
        bins: args.bins,
        width_px: args.size.0,
        height_px: args.size.1,
        force: args.force,
    };
    tools::timeline::check_options(&stripe, &o)?;
    let (_, data) = catalog::open_planned(
        &stripe,
        args.common.index.as_deref(),
        &mut no_progress,
        |c: &Catalog| Ok(tools::timeline::collect(&stripe, c, o.bins)),
    )?;
    let report = tools::timeline::write_svg(&stripe, &data, &o)?;
    if args.common.json {
        print_json(&report)?;
    } else if !args.common.quiet {
        eprint!("{}", report.text());
    }
    Ok(EXIT_OK)
}

#[derive(Args)]
struct ListArgs {
    /// Members of the stripe set, in any order.
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<PathBuf>,
    /// Print the list as JSON on stdout.
    #[arg(long)]
    json: bool,
}

const EXPORT_HELP: &str = "\
Examples:
  dmaplay export --channel 0 --out ch0.raw rec.img --index rec.idx
  dmaplay export --all --format sigmf --out run rec.img --index rec.idx   # run-ch0.sigmf-data, ...
  dmaplay export --channel 2 --format sigmf --from 10 --to 20 --gaps zero --out burst /dev/sdb /dev/sdc

An interleaved recording (dmarec --channel-layout interleaved) is de-interleaved: each
channel's output holds only its samples, contiguous, as from a round-robin recording.

Output names: with --channel N, --out PATH is the file (raw) or the SigMF base name
(PATH.sigmf-data and PATH.sigmf-meta; a .sigmf-data/.sigmf-meta/.sigmf suffix is dropped
first). With --all, -chN is inserted before the extension of each channel's file.
Existing outputs are refused unless --force.

A gap is any buffer of the channel that is missing between two of its exported slots: lost
by the card (gap_count), in a slot missing from the catalog, on a missing member, or in a
slot that fails its CRC check. --gaps mark writes no filler and marks the gap (SigMF: an
annotation with sample_count 0 and a new capture segment; raw: listed in the report);
--gaps zero writes payload_bytes of zeros per lost buffer (and marks it); --gaps error
stops at the first gap with status 1.

SigMF times: each capture segment's core:datetime is the card-clock time of its first sample,
anchored to UTC when the recording started, so captures agree with the sample counts and the
lost buffers to within one sample period. Gap annotations carry dmarec:lost_buffers and
dmarec:lost_samples. --all also writes PATH.sigmf-collection naming every channel's recording.
--from/--to take the forms below (an empty selection is a usage error).

Examples:
  dmaplay export /dev/sdb --index run.idx --channel 2 --from 2026-11-30T08:55:16Z --to 10m \\
      --format sigmf --out ch2 --meta core:author=Jane --frequency 915e6 --sha512
  dmaplay export /dev/sdb --index run.idx --all --from end-90s --format sigmf --archive --out last
  dmaplay export /dev/sdb --channel 0 --from card:1200 --to card:1800 --out ch0.raw

Exit status: 0 success, 1 error, 2 usage error (also a selection with no slots).";

const REINDEX_HELP: &str = "\
Examples:
  dmaplay reindex --index run.idx /dev/sdb /dev/sdc
  dmaplay reindex --force --check-newest 256 --index rec.idx rec.img

Reads the header page of every slot location (4 KiB each, O_DIRECT), keeps the slots of
this recording that are where the layout puts them (in ring mode, the newest lap), reads
the payloads of the newest --check-newest slots and leaves torn ones (payload CRC mismatch:
a write cut short by a crash) out of the index, then writes the index to a temporary file
and renames it over --index. Reports slots found, torn slots, slots of other recordings,
damaged headers and slot numbers missing (unwritten or destroyed). Every member must be given.

Exit status: 0 index written, 1 error (also: --index exists and no --force), 2 usage error.";

#[derive(Args)]
struct Common {
    /// Members of the recording's stripe set, in any order.
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<PathBuf>,
    /// The scan's index file (default: scan the targets' slot headers).
    #[arg(long)]
    index: Option<PathBuf>,
    /// The scan to read, by name or UUID (default: the only or the newest).
    #[arg(long, value_name = "NAME|UUID")]
    scan: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct InspectArgs {
    #[command(flatten)]
    common: Common,
    /// List the slots (filtered by --channel, --from/--to, --seq).
    #[arg(long)]
    slots: bool,
    /// Only slots of this channel (with --slots).
    #[arg(long, value_parser = channel_number)]
    channel: Option<u16>,
    /// From this time (with --slots): 2026-11-30T08:55:16Z, 90s, end-10m, card:N, slot:N.
    #[arg(long, allow_hyphen_values = true)]
    from: Option<TimeSpec>,
    /// Up to this time, included (with --slots); forms as --from.
    #[arg(long, allow_hyphen_values = true)]
    to: Option<TimeSpec>,
    /// Slot numbers A..B, both included (with --slots).
    #[arg(long)]
    seq: Option<SeqRange>,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    common: Common,
    /// Also check the payload against the simulated card's pattern.
    #[arg(long)]
    pattern: bool,
    /// Only slots A..B (both included).
    #[arg(long)]
    range: Option<SeqRange>,
    /// Checking threads, 1..=256 (0, the default: one per core).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=256))]
    threads: u16,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Raw,
    Sigmf,
}

#[derive(Clone, Copy, ValueEnum)]
enum GapsArg {
    Mark,
    Zero,
    Error,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    common: Common,
    /// Export this channel.
    #[arg(long, conflicts_with = "all", required_unless_present = "all", value_parser = channel_number)]
    channel: Option<u16>,
    /// Export every channel, one file (or SigMF pair) each.
    #[arg(long)]
    all: bool,
    /// Output file or base name (see below).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "raw")]
    format: FormatArg,
    /// From this time: 2026-11-30T08:55:16Z, 90s, 1h30m, 00:01:00, end-10m, card:N, slot:N.
    #[arg(long, allow_hyphen_values = true)]
    from: Option<TimeSpec>,
    /// Up to this time, included; forms as --from.
    #[arg(long, allow_hyphen_values = true)]
    to: Option<TimeSpec>,
    /// What to do where buffers are missing.
    #[arg(long, value_enum, default_value = "mark")]
    gaps: GapsArg,
    /// Overwrite existing output files.
    #[arg(long)]
    force: bool,
    /// SigMF global field KEY=VALUE (core:author, core:description, core:hw, core:license, ...); repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = sigmf::parse_meta)]
    meta: Vec<(String, String)>,
    /// SigMF centre frequency in every capture: HZ for every channel or CHANNEL=HZ (915e6, 2.4G); repeatable.
    #[arg(long, value_name = "[CHANNEL=]HZ")]
    frequency: Vec<sigmf::Frequency>,
    /// Add core:sha512 of the data file to the SigMF metadata.
    #[arg(long)]
    sha512: bool,
    /// Write each channel as one NAME.sigmf archive (tar) instead of a file pair.
    #[arg(long)]
    archive: bool,
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: Common,
    /// Only this channel (default: every channel, in recording order).
    #[arg(long, value_parser = channel_number)]
    channel: Option<u16>,
    /// original (real time), xN (N times real time, e.g. x2 or x0.5) or max.
    #[arg(long, default_value = "original", value_parser = Speed::parse)]
    speed: Speed,
    /// Start at this time: 2026-11-30T08:55:16Z, 90s, end-10m, card:N, slot:N.
    #[arg(long, allow_hyphen_values = true)]
    from: Option<TimeSpec>,
    /// Stop after this time, included; forms as --from.
    #[arg(long, allow_hyphen_values = true)]
    to: Option<TimeSpec>,
    /// Write here (a FIFO, a device or a new file) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite an existing regular --out file.
    #[arg(long)]
    force: bool,
    /// Pace from a SCHED_FIFO thread (root or CAP_SYS_NICE) that spins the last 2 ms before each slot: on time on a busy machine.
    #[arg(long)]
    realtime: bool,
}

#[derive(Args)]
struct ReindexArgs {
    /// Members of the recording's stripe set, in any order (all of them).
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<PathBuf>,
    /// Index file to write.
    #[arg(long)]
    index: PathBuf,
    /// The scan to index, by name or UUID (default: the only or the newest).
    #[arg(long, value_name = "NAME|UUID")]
    scan: Option<String>,
    /// Replace an existing index file.
    #[arg(long)]
    force: bool,
    /// Read the payloads of this many newest slots to find torn ones.
    #[arg(long, default_value_t = reindex::DEFAULT_CHECK_NEWEST)]
    check_newest: usize,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    quiet: bool,
}

/// A channel number a recording can have: 0..MAX_CHANNELS.
fn channel_number(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(c) if (c as usize) < formats::MAX_CHANNELS => Ok(c),
        _ => Err(format!(
            "{text:?}: a channel number 0..={} (the recording says which it has)",
            formats::MAX_CHANNELS - 1
        )),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn no_progress(_: u64) {}

fn open(targets: &[PathBuf], scan: Option<&str>) -> Result<StripeSet> {
    let mut stripe = StripeSet::open(targets)?;
    stripe.warn_missing();
    stripe.select_scan(scan)?;
    Ok(stripe)
}

fn run_list(args: ListArgs) -> Result<i32> {
    let stripe = StripeSet::open(&args.targets)?;
    stripe.warn_missing();
    let report = tools::scans::list(&stripe);
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", report.text());
    }
    Ok(EXIT_OK)
}

fn run_inspect(args: InspectArgs) -> Result<i32> {
    let stripe = open(&args.common.targets, args.common.scan.as_deref())?;
    tools::check_channel(&stripe, args.channel)?;
    let sel = args.slots.then_some(Selection {
        channel: args.channel,
        from: args.from,
        to: args.to,
        seq: args.seq,
    });
    let channels: Vec<u16> = args.channel.into_iter().collect();
    let (_, report) = catalog::open_planned(
        &stripe,
        args.common.index.as_deref(),
        &mut no_progress,
        |c: &Catalog| {
            if let Some(sel) = &sel {
                if let Err(damage) = select::resolve_nonempty(c, &stripe, sel, &channels)? {
                    return Ok(Err(damage));
                }
            }
            Ok(inspect::inspect(&stripe, c, sel.as_ref()))
        },
    )?;
    if args.common.json {
        print_json(&report)?;
    } else {
        print!("{}", report.text());
    }
    Ok(EXIT_OK)
}

fn run_verify(args: VerifyArgs) -> Result<i32> {
    let stripe = open(&args.common.targets, args.common.scan.as_deref())?;
    let o = verify::VerifyOptions {
        range: args.range,
        pattern: args.pattern,
        quiet: args.common.quiet,
        threads: args.threads.into(),
    };
    let (catalog, range) = catalog::open_planned(
        &stripe,
        args.common.index.as_deref(),
        &mut no_progress,
        |c| Ok(verify::plan(&stripe, c, &o)),
    )?;
    let report = verify::verify(&stripe, &catalog, range, &o)?;
    if args.common.json {
        print_json(&report)?;
    } else {
        print!("{}", report.text());
    }
    Ok(if report.all_good() {
        EXIT_OK
    } else {
        EXIT_BAD_SLOTS
    })
}

fn run_export(args: ExportArgs) -> Result<i32> {
    let stripe = open(&args.common.targets, args.common.scan.as_deref())?;
    let o = ExportOptions {
        channel: args.channel,
        out: args.out,
        format: match args.format {
            FormatArg::Raw => OutputFormat::Raw,
            FormatArg::Sigmf => OutputFormat::Sigmf,
        },
        from: args.from,
        to: args.to,
        gaps: match args.gaps {
            GapsArg::Mark => GapMode::Mark,
            GapsArg::Zero => GapMode::Zero,
            GapsArg::Error => GapMode::Error,
        },
        force: args.force,
        quiet: args.common.quiet,
        sigmf: sigmf::SigmfOptions {
            meta: args.meta,
            frequencies: args.frequency,
            sha512: args.sha512,
            archive: args.archive,
        },
    };
    let sigmf_only = !o.sigmf.meta.is_empty()
        || !o.sigmf.frequencies.is_empty()
        || o.sigmf.sha512
        || o.sigmf.archive;
    if sigmf_only && o.format != OutputFormat::Sigmf {
        return Err(select::UsageError(
            "--meta, --frequency, --sha512 and --archive need --format sigmf".into(),
        )
        .into());
    }
    export::check_options(&stripe, &o)?;
    let (catalog, range) = catalog::open_planned(
        &stripe,
        args.common.index.as_deref(),
        &mut no_progress,
        |c| export::plan(&stripe, c, &o),
    )?;
    let report = export::export(&stripe, &catalog, range, &o)?;
    if args.common.json {
        print_json(&report)?;
    } else {
        eprint!("{}", report.text());
    }
    Ok(EXIT_OK)
}

fn run_replay(args: ReplayArgs) -> Result<i32> {
    let stripe = open(&args.common.targets, args.common.scan.as_deref())?;
    let o = ReplayOptions {
        channel: args.channel,
        speed: args.speed,
        from: args.from,
        to: args.to,
        out: args.out,
        force: args.force,
        realtime: args.realtime,
    };
    replay::check_options(&stripe, &o)?;
    if args.realtime {
        tools::pacing::set_realtime()?;
    }
    let (catalog, range) = catalog::open_planned(
        &stripe,
        args.common.index.as_deref(),
        &mut no_progress,
        |c| replay::plan(&stripe, c, &o),
    )?;
    let report = replay::replay(&stripe, &catalog, range, &o)?;
    if args.common.json {
        // stdout may carry the stream: the JSON report goes to stderr then.
        let text = serde_json::to_string_pretty(&report)?;
        if o.out.is_some() {
            println!("{text}");
        } else {
            eprintln!("{text}");
        }
    } else if !args.common.quiet {
        eprint!("{}", report.text());
    }
    Ok(EXIT_OK)
}

fn run_reindex(args: ReindexArgs) -> Result<i32> {
    let stripe = open(&args.targets, args.scan.as_deref())?;
    let o = reindex::ReindexOptions {
        index: args.index,
        force: args.force,
        check_newest: args.check_newest,
        quiet: args.quiet,
    };
    let report = reindex::reindex(&stripe, &o)?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", report.text());
    }
    Ok(EXIT_OK)
}

fn main() {
    // `NAME generate-docs DIR`: man pages and completions (make install).
    dmarec_docgen::generate_if_asked(<Cli as clap::CommandFactory>::command);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => run_inspect(a),
        Command::Verify(a) => run_verify(a),
        Command::Export(a) => run_export(a),
        Command::Timeline(a) => run_timeline(a),
        Command::Replay(a) => run_replay(a),
        Command::Reindex(a) => run_reindex(a),
        Command::List(a) => run_list(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("dmaplay: error: {e:#}");
            if select::is_usage_error(&e) {
                std::process::exit(EXIT_USAGE);
            }
            std::process::exit(EXIT_ERROR);
        }
    }
}
