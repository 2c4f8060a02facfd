//! `dmarec ctl`: the service's client. Sends one request over the control
//! socket and prints the answer.

use super::protocol::{Request, MAX_REQUEST_BYTES};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Exit statuses of `dmarec ctl` (also in its --help).
pub const EXIT_OK: i32 = 0;
/// The service refused the request or it failed (the reason is printed).
pub const EXIT_REFUSED: i32 = 1;
/// The service is not running or not reachable.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Why `ctl` could not get an answer.
#[derive(Debug)]
pub enum CtlError {
    /// No service on the socket (not running, wrong path, no permission).
    Unreachable(String),
    /// The service answered `"ok": false`.
    Refused(String),
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CtlError::Unreachable(e) | CtlError::Refused(e) => f.write_str(e),
        }
    }
}

impl CtlError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Unreachable(_) => EXIT_UNREACHABLE,
            CtlError::Refused(_) => EXIT_REFUSED,
        }
    }
}

fn unreachable_hint(socket: &Path, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            "the service is not running (systemctl start dmarec, or dmarec serve --config FILE)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied: join the socket's group (usermod -aG dmarec $USER) or run as root"
        }
        _ => "is the service running?",
    };
    format!("control socket {}: {e}; {why}", socket.display())
}

/// Sends `request` and returns the answer (`"ok": true`). `wait`: how long
/// an answer may take (a stop waits for the scan's final sync).
pub fn request(
    socket: &Path,
    request: &Request,
    wait: Duration,
) -> Result<serde_json::Value, CtlError> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| CtlError::Unreachable(unreachable_hint(socket, &e)))?;
    let lost = |e: std::io::Error| {
        CtlError::Unreachable(format!(
            "control socket {}: {e} (did the service stop?)",
            socket.display()
        ))
    };
    stream.set_read_timeout(Some(wait)).map_err(lost)?;
    let mut line = serde_json::to_string(request).expect("a request serializes");
    assert!(
        line.len() < MAX_REQUEST_BYTES as usize,
        "request of {} bytes",
        line.len()
    );
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(lost)?;
    let mut answer = String::new();
    // The status with the last scan's summary is a few KiB; 16 MiB bounds it.
    BufReader::new(&stream)
        .take(16 << 20)
        .read_line(&mut answer)
        .map_err(lost)?;
    if answer.is_empty() {
        return Err(CtlError::Unreachable(format!(
            "control socket {}: the service closed the connection without an answer",
            socket.display()
        )));
    }
    let value: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| CtlError::Refused(format!("the service's answer is not JSON: {e}")))?;
    if value["ok"] == serde_json::Value::Bool(true) {
        Ok(value)
    } else {
        Err(CtlError::Refused(
            value["error"]
                .as_str()
                .unwrap_or("refused without a reason")
                .to_string(),
        ))
    }
}

/// `status` for people: state, scan, figures, last scan.
pub fn status_text(status: &serde_json::Value) -> String {
    let mut s = format!("state      {}\n", status["state"].as_str().unwrap_or("?"));
    if let Some(scan) = status["scan"].as_object() {
        s += &format!("scan       {}  (index {})\n", scan["name"], scan["index"]);
    }
    if let Some(live) = status["live"].as_object() {
        let f = |k: &str| live[k].as_f64().unwrap_or(0.0);
        s += &format!(
            "recorded   {} slots, {:.1} MiB in {:.0} s, {:.1} MB/s now; {} buffers lost, {} gaps; device {:.1}% full\n",
            live["slots"],
            f("payload_bytes_recorded") / (1u64 << 20) as f64,
            f("elapsed_s"),
            f("rate_mb_per_s"),
            live["buffers_lost"],
            live["slots_with_gap"],
            100.0 * f("device_fill_ratio"),
        );
    }
    if let Some(last) = status["last_scan"].as_object() {
        let how = match (&last["error"], last["summary"]["stop_reason"].as_str()) {
            (serde_json::Value::String(e), _) => format!("error: {e}"),
            (_, Some(reason)) => format!(
                "{reason}, {} slots, {} buffers lost",
                last["summary"]["slots"], last["summary"]["buffers_lost"]
            ),
            _ => "?".into(),
        };
        s += &format!("last scan  {}: {how}\n", last["name"]);
    }
    let t = &status["totals"];
    s += &format!(
        "finished   {} scans started, {} errors, {} buffers lost in finished scans\n",
        t["scans_started"], t["errors"], t["buffers_lost"]
    );
    s
}
