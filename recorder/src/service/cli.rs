//! The command lines of `dmarec serve` and `dmarec ctl`.

use super::config::DEFAULT_CONFIG_PATH;
use super::ctl::{self, CtlError};
use super::protocol::{OnFull, Request};
use crate::units;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SERVE_HELP: &str = "\
Keeps running, records one scan at a time when asked over the control socket
(dmarec ctl), and exports metrics. The config file is documented in
packaging/dmarec.toml (installed as /usr/share/doc/dmarec/dmarec.toml).
Under systemd (dmarec.service, Type=notify) it reports readiness once the socket
listens. SIGTERM or SIGINT stops the scan cleanly (index synced) and exits 0; a
second one aborts at once (status 130: slots stay valid, `dmaplay reindex`).

Exit status: 0 stopped by signal, 1 failed to start (config, socket, card).";

pub const CTL_HELP: &str = "\
Examples:
  dmarec ctl start scan1 --duration 1h
  dmarec ctl status
  dmarec ctl stop

Exit status:
  0  done (stop: the scan has finished and its index is synced)
  1  the service refused or the request failed (the reason is printed: e.g. a scan
     is already recording, the scan name is taken, the targets refused)
  2  usage error
  3  the service is not running or the socket is not reachable";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The service's config file (TOML).
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

#[derive(clap::Args)]
pub struct CtlArgs {
    /// The control socket; default: [service] socket of --config.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The service's config file (only its socket path is read).
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(clap::Subcommand)]
pub enum CtlAction {
    /// Start recording scan NAME (its index: <index_dir>/NAME.idx).
    Start {
        /// 1 to 64 letters, digits, '.', '_' or '-'.
        name: String,
        /// Stop after this long: seconds (10, 2.5) or 90s, 10m, 1h30m.
        #[arg(long, value_parser = units::parse_duration)]
        duration: Option<Duration>,
        /// Stop after this much payload (500M, 1.5G, 4GiB).
        #[arg(long, value_parser = units::parse_size)]
        size: Option<u64>,
        /// When the targets are full: stop, or wrap (ring mode).
        #[arg(long, value_enum, default_value = "stop")]
        on_full: OnFullArg,
    },
    /// Stop the scan; returns once its index is synced, and prints its summary.
    Stop {
        /// Print the scan's summary as JSON (as `dmarec record --json`).
        #[arg(long)]
        json: bool,
    },
    /// The service's state, the current scan's figures and the last scan.
    Status {
        /// Print the status as JSON (schema: docs/SERVICE.md).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OnFullArg {
    Stop,
    Wrap,
}

pub fn run_serve(args: ServeArgs) -> Result<i32> {
    super::serve(&args.config)
}

/// The socket path from the config's [service] section (nothing else of
/// it is checked: ctl may run where the targets are not visible).
fn socket_from_config(config: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(config).with_context(|| {
        format!(
            "config {}: cannot read it; give --socket PATH or --config FILE",
            config.display()
        )
    })?;
    let value: toml::Table =
        toml::from_str(&text).with_context(|| format!("config {}", config.display()))?;
    value
        .get("service")
        .and_then(|s| s.get("socket"))
        .and_then(|s| s.as_str())
        .map(PathBuf::from)
        .with_context(|| format!("config {}: no [service] socket", config.display()))
}

pub fn run_ctl(args: CtlArgs) -> Result<i32> {
    let socket = match args.socket {
        Some(s) => s,
        None => socket_from_config(&args.config)?,
    };
    let (request, wait, json) = match args.action {
        CtlAction::Start {
            name,
            duration,
            size,
            on_full,
        } => (
            Request::Start {
                name,
                duration_s: duration.map(|d| d.as_secs_f64()),
                size_bytes: size,
                on_full: Some(match on_full {
                    OnFullArg::Stop => OnFull::Stop,
                    OnFullArg::Wrap => OnFull::Wrap,
                }),
            },
            Duration::from_secs(90),
            false,
        ),
        CtlAction::Stop { json } => (Request::Stop, Duration::from_secs(900), json),
        CtlAction::Status { json } => (Request::Status, Duration::from_secs(30), json),
    };
    match ctl::request(&socket, &request, wait) {
        Ok(answer) => {
            print_answer(&request, &answer, json);
            if let Some(e) = answer["scan"]["error"].as_str() {
                eprintln!("dmarec ctl: the scan ended with an error: {e}");
                return Ok(ctl::EXIT_REFUSED);
            }
            Ok(ctl::EXIT_OK)
        }
        Err(e) => {
            eprintln!("dmarec ctl: {}", e);
            Ok(CtlError::exit_code(&e))
        }
    }
}

fn print_answer(request: &Request, answer: &serde_json::Value, json: bool) {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("JSON value");
    match request {
        Request::Status if json => println!("{}", pretty(&answer["status"])),
        Request::Status => print!("{}", ctl::status_text(&answer["status"])),
        Request::Start { name, .. } => {
            eprintln!(
                "dmarec ctl: scan {name:?} recording (index {})",
                answer["scan"]["index"]
            )
        }
        Request::Stop if json => println!("{}", pretty(&answer["scan"]["summary"])),
        Request::Stop => {
            let scan = &answer["scan"];
            let s = &scan["summary"];
            eprintln!(
                "dmarec ctl: scan {} stopped: {} slots, {} bytes written, {} buffers lost, index {} ({} entries durable)",
                scan["name"], s["slots"], s["bytes_written"], s["buffers_lost"], scan["index"], s["index_entries_durable"]
            );
        }
    }
}
