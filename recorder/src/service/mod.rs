//! `dmarec serve`: the recorder as a service. It reads a TOML config
//! ([`config`]), listens on a Unix socket for JSON-line requests
//! ([`protocol`]: start a scan, stop, status), records one scan at a time
//! on a thread of its own through the same [`crate::record()`] as
//! `dmarec record`, and exports metrics ([`metrics`]) from the recorder's
//! own status figures. It tells systemd when it is ready ([`notify`]).
//! SIGTERM/SIGINT stop the scan cleanly (index synced) and end the service;
//! a second one aborts at once. `dmarec ctl` ([`ctl`]) is the client.

pub mod cli;
pub mod config;
pub mod ctl;
pub mod metrics;
pub mod notify;
pub mod protocol;

use crate::record::STOP_REQUESTED;
use crate::status::LiveSink;
use anyhow::{bail, Context, Result};
use config::{Config, ScanLimits};
use protocol::{OnFull, Phase, Request, ScanInfo, ScanOutcome, Status, Totals};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Set by SIGTERM/SIGINT: stop the scan, then leave.
pub static EXIT_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Clients served at once; more are told to retry.
const MAX_CLIENTS: usize = 16;
/// Requests on one connection at most (then it is closed).
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
/// A start is answered once the recording runs (or failed): at most this late.
const START_WAIT: Duration = Duration::from_secs(60);
/// A second `stop` waits for the first one's scan at most this long.
const STOP_WAIT: Duration = Duration::from_secs(600);

struct State {
    phase: Phase,
    scan: Option<ScanInfo>,
    last: Option<ScanOutcome>,
    totals: Totals,
    worker: Option<JoinHandle<()>>,
}

/// What every thread of the service shares. Lock order: `state`, then `live`.
pub struct Shared {
    config: Config,
    state: Mutex<State>,
    live: LiveSink,
}

impl Shared {
    fn new(config: Config) -> Shared {
        Shared {
            config,
            state: Mutex::new(State {
                phase: Phase::Idle,
                scan: None,
                last: None,
                totals: Totals::default(),
                worker: None,
            }),
            live: LiveSink::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl metrics::StatusSource for Shared {
    fn status(&self) -> Status {
        let state = self.lock();
        let live = *self.live.lock().unwrap_or_else(|e| e.into_inner());
        let r = &self.config.recording;
        Status {
            schema_version: protocol::STATUS_SCHEMA_VERSION,
            state: state.phase,
            source: r.source.clone(),
            targets: r.targets.iter().map(|t| t.display().to_string()).collect(),
            scan: state.scan.clone(),
            live: if state.phase == Phase::Idle {
                None
            } else {
                live
            },
            last_scan: state.last.clone(),
            totals: state.totals,
        }
    }
}

/// Runs the service until SIGTERM/SIGINT; the exit status of `dmarec serve`.
pub fn serve(config_path: &Path) -> Result<i32> {
    let config = Config::load(config_path)?;
    // Held open for the service's life: the driver cannot be unloaded under
    // it, and a missing card is found now, not at the first scan.
    let _card = open_card(&config)?;
    check_targets(&config)?;
    let listener = bind_socket(&config)?;
    let socket_path = config.service.socket.clone();
    let shared = Arc::new(Shared::new(config));
    start_metrics(&shared)?;
    crate::signals::install_stop_handlers(on_signal);
    if let Err(e) = notify::notify("READY=1\nSTATUS=idle") {
        eprintln!("dmarec serve: warning: systemd notification failed: {e}");
    }
    eprintln!("dmarec serve: listening on {}", socket_path.display());
    accept_loop(&listener, &shared);
    let _ = notify::notify("STOPPING=1");
    eprintln!("dmarec serve: stopping (signal)");
    if let Ok(outcome) = stop_scan(&shared) {
        eprintln!("dmarec serve: scan {:?} stopped", outcome.name);
    }
    let _ = std::fs::remove_file(&socket_path);
    Ok(0)
}

/// Under systemd, what a device the unit does not allow needs.
fn device_allow_hint(path: &Path) -> String {
    if std::env::var_os("INVOCATION_ID").is_some() {
        format!(
            "; under systemd the unit needs DeviceAllow={} rw (systemctl edit dmarec)",
            path.display()
        )
    } else {
        String::new()
    }
}

/// The driver's device (None for the simulated card), opened before the
/// service says it is ready.
fn open_card(config: &Config) -> Result<Option<std::fs::File>> {
    let source = &config.recording.source;
    if source == "sim" {
        return Ok(None);
    }
    let card = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(source)
        .with_context(|| {
            format!(
                "card {source}: cannot open; is the driver loaded (modprobe dmarec) and the \
                 service's user in group dmarec (udev rule 99-dmarec.rules)?{}",
                device_allow_hint(Path::new(source))
            )
        })?;
    Ok(Some(card))
}

/// Every target must open (read-only here: `dmarec record`'s own checks
/// run at each scan), or not exist yet when file_size creates it.
fn check_targets(config: &Config) -> Result<()> {
    let r = &config.recording;
    for target in &r.targets {
        if !target.exists() && r.file_size.is_some() {
            continue; // a new file, created by the first scan
        }
        std::fs::File::open(target).map(drop).with_context(|| {
            format!(
                "target {}: cannot open; give the service's user access (group dmarec, e.g. \
                 by a udev rule){}",
                target.display(),
                device_allow_hint(target)
            )
        })?;
    }
    Ok(())
}

fn bind_socket(config: &Config) -> Result<UnixListener> {
    let path = &config.service.socket;
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "control socket {}: another dmarec serve is listening on it; stop that one \
                 first (systemctl stop dmarec) or choose another [service] socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("control socket {}: removing a stale one", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| {
        format!(
            "control socket {}: cannot create it (does its directory exist and is it writable? \
             the systemd unit creates /run/dmarec)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(group) = &config.service.socket_group {
        let gid = nix::unistd::Group::from_name(group)?
            .with_context(|| {
                format!("[service] socket_group {group:?}: no such group (groupadd -r {group})")
            })?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).with_context(|| {
            format!(
                "control socket {}: giving it to group {group}",
                path.display()
            )
        })?;
    }
    Ok(listener)
}

fn start_metrics(shared: &Arc<Shared>) -> Result<()> {
    let registry = Arc::new(metrics::registry(shared.clone()));
    let m = &shared.config.metrics;
    if let Some(address) = &m.listen {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("[metrics] listen {address:?}: cannot listen there"))?;
        eprintln!(
            "dmarec serve: metrics on http://{}/metrics",
            listener.local_addr()?
        );
        let registry = registry.clone();
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || metrics::serve_http(listener, registry))?;
    }
    if let Some(path) = m.textfile.clone() {
        metrics::write_textfile(&path, &metrics::render(&registry))
            .with_context(|| format!("[metrics] textfile {}: cannot write it", path.display()))?;
        let interval = shared
            .config
            .record_options("check", ScanLimits::default())?
            .status_interval;
        std::thread::Builder::new()
            .name("metrics-textfile".into())
            .spawn(move || {
                // Until the process exits; one write per status interval.
                loop {
                    std::thread::sleep(interval);
                    if let Err(e) = metrics::write_textfile(&path, &metrics::render(&registry)) {
                        eprintln!("dmarec serve: metrics textfile {}: {e}", path.display());
                    }
                }
            })?;
    }
    Ok(())
}

/// First SIGTERM/SIGINT: stop the scan cleanly and leave; a second aborts.
extern "C" fn on_signal(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::Relaxed);
    if EXIT_REQUESTED.swap(true, Ordering::Relaxed) {
        // SAFETY: _exit is async-signal-safe; written slots stay valid on
        // the targets and `dmaplay reindex` indexes them.
        unsafe { libc::_exit(130) };
    }
}

/// Accepts clients until a signal asks the service to leave (checked at
/// least every 500 ms: the poll's timeout).
fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    let clients = Arc::new(AtomicUsize::new(0));
    listener
        .set_nonblocking(true)
        .expect("fcntl on our own socket");
    while !EXIT_REQUESTED.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own, for the listener we borrow.
        unsafe { libc::poll(&mut pfd, 1, 500) };
        let Ok((stream, _)) = listener.accept() else {
            continue;
        };
        if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::AcqRel);
            let _ = respond(
                &stream,
                &refusal(format!("{MAX_CLIENTS} clients connected; try again")),
            );
            continue;
        }
        let (shared, clients) = (shared.clone(), clients.clone());
        let spawned = std::thread::Builder::new()
            .name("client".into())
            .spawn(move || {
                serve_client(stream, &shared);
                clients.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            eprintln!("dmarec serve: cannot start a client thread: {e}");
        }
    }
}

fn refusal(error: String) -> serde_json::Value {
    json!({ "ok": false, "error": error })
}

fn respond(mut stream: &UnixStream, value: &serde_json::Value) -> std::io::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())
}

/// Answers the requests of one connection, one line each.
fn serve_client(stream: UnixStream, shared: &Arc<Shared>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let mut line = String::new();
        match Read::by_ref(&mut reader)
            .take(protocol::MAX_REQUEST_BYTES)
            .read_line(&mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let answer = match serde_json::from_str::<Request>(line.trim()) {
            _ if !line.ends_with('\n') => refusal(format!(
                "request longer than {} bytes or not ended by a newline",
                protocol::MAX_REQUEST_BYTES
            )),
            Ok(request) => handle(request, shared),
            Err(e) => refusal(format!(
                "not a request ({e}); send one JSON object per line: {{\"cmd\":\"status\"}}, \
                 {{\"cmd\":\"start\",\"name\":\"scan1\"}}, {{\"cmd\":\"stop\"}}"
            )),
        };
        if respond(&stream, &answer).is_err() {
            return;
        }
    }
}

fn handle(request: Request, shared: &Arc<Shared>) -> serde_json::Value {
    use metrics::StatusSource;
    let result = match request {
        Request::Status => Ok(json!({ "ok": true, "status": shared.status() })),
        Request::Start {
            name,
            duration_s,
            size_bytes,
            on_full,
        } => start_scan(
            shared,
            name,
            duration_s,
            size_bytes,
            on_full.unwrap_or(OnFull::Stop),
        )
        .map(|info| json!({ "ok": true, "scan": info })),
        Request::Stop => stop_scan(shared).map(|outcome| json!({ "ok": true, "scan": outcome })),
    };
    result.unwrap_or_else(refusal)
}

fn scan_limits(
    duration_s: Option<f64>,
    size_bytes: Option<u64>,
    on_full: OnFull,
) -> Result<ScanLimits, String> {
    let duration = duration_s
        .map(|s| match Duration::try_from_secs_f64(s) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(format!("duration_s {s}: a positive number of seconds")),
        })
        .transpose()?;
    if size_bytes == Some(0) {
        return Err("size_bytes 0: give a positive size, or none to record until stopped".into());
    }
    Ok(ScanLimits {
        duration,
        size_bytes,
        wrap: on_full == OnFull::Wrap,
    })
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Starts scan `name` on a recorder thread; answers once it records (its
/// first status is published) or failed to start.
fn start_scan(
    shared: &Arc<Shared>,
    name: String,
    duration_s: Option<f64>,
    size_bytes: Option<u64>,
    on_full: OnFull,
) -> Result<ScanInfo, String> {
    config::check_scan_name(&name)?;
    let limits = scan_limits(duration_s, size_bytes, on_full)?;
    let mut options = shared
        .config
        .record_options(&name, limits)
        .map_err(|e| format!("{e:#}"))?;
    let mut state = shared.lock();
    if EXIT_REQUESTED.load(Ordering::Relaxed) {
        return Err("the service is shutting down".into());
    }
    if let Some(current) = &state.scan {
        return Err(format!(
            "scan {:?} is recording: one scan at a time; stop it first (dmarec ctl stop)",
            current.name
        ));
    }
    if let Some(done) = state.worker.take() {
        let _ = done.join(); // idle: it has finished
    }
    STOP_REQUESTED.store(false, Ordering::Relaxed);
    *shared.live.lock().unwrap_or_else(|e| e.into_inner()) = None;
    options.live = Some(shared.live.clone());
    let info = ScanInfo {
        name: name.clone(),
        index: options.index.display().to_string(),
        started_unix_ns: unix_now_ns(),
        duration_limit_s: limits.duration.map(|d| d.as_secs_f64()),
        size_limit_bytes: limits.size_bytes,
        on_full,
    };
    state.phase = Phase::Recording;
    state.scan = Some(info.clone());
    state.totals.scans_started += 1;
    let worker_shared = shared.clone();
    let worker = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || run_scan(&worker_shared, options, name))
        .map_err(|e| format!("cannot start the recorder thread: {e}"))?;
    state.worker = Some(worker);
    drop(state);
    eprintln!("dmarec serve: scan {:?} starting", info.name);
    let _ = notify::notify(&format!("STATUS=recording {}", info.name));
    wait_started(shared, &info)
}

/// Until the recorder published its first status (it records) or the
/// scan ended (it failed to start: its error is the answer).
fn wait_started(shared: &Shared, info: &ScanInfo) -> Result<ScanInfo, String> {
    let deadline = Instant::now() + START_WAIT;
    while Instant::now() < deadline {
        {
            let state = shared.lock();
            if state.scan.as_ref() != Some(info) {
                let last = state.last.as_ref().filter(|l| l.name == info.name);
                return match last.and_then(|l| l.error.clone()) {
                    Some(e) => Err(format!("scan {:?} failed: {e}", info.name)),
                    None => Ok(info.clone()), // ended already, cleanly
                };
            }
            if shared
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
            {
                return Ok(info.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(info.clone()) // still setting up: `status` tells how it goes
}

/// The recorder thread: one scan, then its outcome into the shared state.
fn run_scan(shared: &Shared, options: crate::RecordOptions, name: String) {
    let index = options.index.display().to_string();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::record(&options)));
    let (summary, error) = match result {
        Ok(Ok(summary)) => {
            let error = summary.error.clone();
            (Some(summary), error)
        }
        Ok(Err(e)) => (None, Some(format!("{e:#}"))),
        Err(_) => (
            None,
            Some("the recorder panicked (a bug: please report it)".into()),
        ),
    };
    match (&summary, &error) {
        (_, Some(e)) => eprintln!("dmarec serve: scan {name:?}: error: {e}"),
        (Some(s), None) => eprint!("dmarec serve: scan {name:?} ended\n{}", s.text()),
        (None, None) => unreachable!("a scan without a summary has an error"),
    }
    let mut state = shared.lock();
    let mut live = shared.live.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = &summary {
        state.totals.bytes_written += s.bytes_written;
        state.totals.buffers_lost += s.buffers_lost;
        state.totals.slots_with_gap += s.slots_with_gap;
    }
    state.totals.errors += error.is_some() as u64;
    state.last = Some(ScanOutcome {
        name,
        index,
        summary,
        error,
    });
    state.phase = Phase::Idle;
    state.scan = None;
    *live = None;
    let _ = notify::notify("STATUS=idle");
}

/// Stops the scan and waits until it has finished (index synced).
fn stop_scan(shared: &Shared) -> Result<ScanOutcome, String> {
    let worker = {
        let mut state = shared.lock();
        if state.phase == Phase::Idle {
            return Err("no scan is recording (dmarec ctl status shows the last one)".into());
        }
        state.phase = Phase::Stopping;
        STOP_REQUESTED.store(true, Ordering::Relaxed);
        state.worker.take()
    };
    match worker {
        Some(w) => {
            let _ = w.join();
        }
        None => wait_idle(shared)?, // another stop holds the worker
    }
    let state = shared.lock();
    state
        .last
        .clone()
        .ok_or_else(|| "the scan left no outcome (a bug)".to_string())
}

fn wait_idle(shared: &Shared) -> Result<(), String> {
    let deadline = Instant::now() + STOP_WAIT;
    while shared.lock().phase != Phase::Idle {
        if Instant::now() >= deadline {
            return Err(format!(
                "the scan did not stop within {} s",
                STOP_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
