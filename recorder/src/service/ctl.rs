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
    // Indexing a Value (not a Map): a missing field reads as null.
    let scan = &status["scan"];
    if scan.is_object() {
        s += &format!("scan       {}  (index {})\n", scan["name"], scan["index"]);
    }
    let live = &status["live"];
    if live.is_object() {
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
    let last = &status["last_scan"];
    if last.is_object() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::net::UnixListener;

    fn scratch_socket(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dmarec-ctl-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    /// A one-connection server answering `answer` (None: closes at once).
    fn server(socket: &Path, answer: Option<&'static str>) -> std::thread::JoinHandle<String> {
        let listener = UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(&stream).read_line(&mut request).unwrap();
            if let Some(a) = answer {
                (&stream).write_all(a.as_bytes()).unwrap();
            }
            request
        })
    }

    #[test]
    fn answers_refusals_and_a_missing_service_have_their_exit_codes() {
        let socket = scratch_socket("answers");
        let wait = Duration::from_secs(10);
        let s = server(
            &socket,
            Some("{\"ok\":true,\"status\":{\"state\":\"idle\"}}\n"),
        );
        let answer = request(&socket, &Request::Status, wait).unwrap();
        assert_eq!(answer["status"]["state"], "idle");
        assert_eq!(s.join().unwrap(), "{\"cmd\":\"status\"}\n");
        std::fs::remove_file(&socket).unwrap();

        let s = server(
            &socket,
            Some("{\"ok\":false,\"error\":\"scan a is recording\"}\n"),
        );
        let e = request(&socket, &Request::Stop, wait).unwrap_err();
        s.join().unwrap();
        assert!(
            matches!(&e, CtlError::Refused(m) if m == "scan a is recording"),
            "{e}"
        );
        assert_eq!(e.exit_code(), EXIT_REFUSED);
        std::fs::remove_file(&socket).unwrap();

        let s = server(&socket, None);
        let e = request(&socket, &Request::Stop, wait).unwrap_err();
        s.join().unwrap();
        assert!(e.to_string().contains("closed the connection"), "{e}");
        assert_eq!(e.exit_code(), EXIT_UNREACHABLE);
        std::fs::remove_file(&socket).unwrap();

        let e = request(&socket, &Request::Status, wait).unwrap_err();
        assert!(e.to_string().contains("the service is not running"), "{e}");
        assert_eq!(e.exit_code(), EXIT_UNREACHABLE);
        std::fs::remove_dir_all(socket.parent().unwrap()).unwrap();
    }

    #[test]
    fn each_connect_failure_says_what_to_do() {
        let hint = |kind| unreachable_hint(Path::new("/run/x.sock"), &std::io::Error::from(kind));
        assert!(hint(std::io::ErrorKind::NotFound).contains("the service is not running"));
        assert!(hint(std::io::ErrorKind::ConnectionRefused).contains("the service is not running"));
        let denied = hint(std::io::ErrorKind::PermissionDenied);
        assert!(denied.contains("join the socket's group"), "{denied}");
        assert!(
            denied.starts_with("control socket /run/x.sock: "),
            "{denied}"
        );
    }

    #[test]
    fn the_status_text_shows_the_scan_its_figures_and_the_last_scan() {
        let recording = json!({
            "state": "recording",
            "scan": {"name": "s2", "index": "/x/s2.idx"},
            "live": {"slots": 10, "payload_bytes_recorded": 3145728, "elapsed_s": 4.0,
                     "rate_mb_per_s": 12.5, "buffers_lost": 2, "slots_with_gap": 1,
                     "device_fill_ratio": 0.25},
            "last_scan": {"name": "s1", "error": null,
                          "summary": {"stop_reason": "duration_reached", "slots": 5, "buffers_lost": 0}},
            "totals": {"scans_started": 2, "errors": 0, "buffers_lost": 0}
        });
        let text = status_text(&recording);
        for part in [
            "state      recording\n",
            "scan       \"s2\"  (index \"/x/s2.idx\")\n",
            "recorded   10 slots, 3.0 MiB in 4 s, 12.5 MB/s now; 2 buffers lost, 1 gaps; device 25.0% full\n",
            "last scan  \"s1\": duration_reached, 5 slots, 0 buffers lost\n",
            "finished   2 scans started, 0 errors, 0 buffers lost in finished scans\n",
        ] {
            assert!(text.contains(part), "{part:?} not in\n{text}");
        }
        let failed = json!({"state": "idle", "last_scan": {"name": "s3", "error": "target busy"}, "totals": {}});
        let text = status_text(&failed);
        assert!(
            text.contains("last scan  \"s3\": error: target busy\n"),
            "{text}"
        );
        assert!(!text.contains("recorded"), "{text}");
    }
}
