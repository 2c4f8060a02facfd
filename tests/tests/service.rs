//! `dmarec serve` end to end: the service runs as a child process with the
//! simulated card and a file target; `dmarec ctl` starts and stops a scan
//! over the socket; the status JSON, the HTTP metrics and the node-exporter
//! textfile are checked against the scan's own summary and against what
//! `dmaplay inspect` reads back from the recording; SIGTERM stops a scan
//! cleanly (its index synced) and the service exits 0.

use e2e::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The service process; killed on drop (a failing test leaves nothing running).
struct Service {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn start(config: &Path) -> Service {
        let mut command = Command::new(bin("dmarec"));
        command.args(["serve", "--config"]).arg(config);
        Service::spawn(command)
    }

    fn spawn(mut command: Command) -> Service {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("dmarec serve");
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("serve: {line}");
                let _ = tx.send(line);
            }
        });
        Service { child, log }
    }

    /// The next log line containing `needle` (60 s at most).
    fn wait_log(&self, needle: &str) -> String {
        loop {
            match self.log.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("dmarec serve never logged {needle:?}: {e}"),
            }
        }
    }
}

fn ctl(socket: &Path, args: &[&str]) -> Output {
    let mut all = vec!["ctl", "--socket", socket.to_str().unwrap()];
    all.extend_from_slice(args);
    run("dmarec", &all)
}

fn status(socket: &Path) -> Value {
    let out = ctl(socket, &["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    json(&String::from_utf8_lossy(&out.stdout))
}

fn scrape(address: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("metrics port");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("Content-Type: text/plain; version=0.0.4"),
        "{response}"
    );
    response.split("\r\n\r\n").nth(1).unwrap().to_string()
}

/// The value of the sample `name` (with its labels, if any) in `text`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

/// The test's configuration, with `recording_keys` (lines) added to its
/// `[recording]` section.
fn config(dir: &Scratch, recording_keys: &str) -> std::path::PathBuf {
    let path = dir.join("dmarec.toml");
    let text = format!(
        r#"
[service]
socket = "{dir}/dmarec.sock"
index_dir = "{dir}"
[recording]
source = "sim"
targets = ["{dir}/target.img"]
file_size = "256M"
payload_size = "64K"
buffers = "64"
queue_depth = 4
rate = "40"
sim_drop_every = 50
status_interval = "100ms"
index_sync_ms = 200
replace_previous_recording = false
{recording_keys}
[metrics]
listen = "127.0.0.1:0"
textfile = "{dir}/dmarec.prom"
"#,
        dir = dir.path.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Polls the status (every 50 ms, at most 20 s) until `done` holds.
fn wait_status(socket: &Path, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        let s = status(socket);
        if done(&s) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the service's status never showed {what}");
}

#[test]
fn a_scan_is_started_stopped_and_counted_over_the_socket() {
    let dir = Scratch::new("service");
    // The io_uring keys reach the recording: its summary's io_uring_setup.
    // SQPOLL's thread sleeps 1 ms after each buffer (one per 1.6 ms).
    let config = config(
        &dir,
        "sqpoll = true\nsqpoll_idle_ms = 1\nregister_ring_fd = true",
    );
    let socket = dir.join("dmarec.sock");
    let down = ctl(&socket, &["status"]);
    assert_eq!(down.status.code(), Some(3), "no service yet: {down:?}");
    assert!(String::from_utf8_lossy(&down.stderr).contains("not running"));

    let service = Service::start(&config);
    let address = service.wait_log("metrics on http://");
    let address = address
        .split("http://")
        .nth(1)
        .unwrap()
        .trim_end_matches("/metrics")
        .to_string();
    service.wait_log("listening on");
    assert_eq!(status(&socket)["state"], "idle");

    let started = ctl(&socket, &["start", "scan1"]);
    assert!(started.status.success(), "{started:?}");
    let second = ctl(&socket, &["start", "scan2"]);
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(String::from_utf8_lossy(&second.stderr)
        .contains("\"scan1\" is recording: one scan at a time"));

    let live = wait_status(&socket, "slots and a loss", |s| {
        s["live"]["slots"].as_u64() > Some(100) && s["live"]["buffers_lost"].as_u64() > Some(0)
    });
    assert_eq!(live["state"], "recording");
    assert_eq!(live["scan"]["name"], "scan1");
    documented(&live);
    let running = scrape(&address);
    let doc = service_doc();
    for name in running
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
    {
        let listed = doc.contains(&format!("`{name}`")) || doc.contains(&format!("`{name}{{"));
        assert!(listed, "metric {name} is not in docs/SERVICE.md");
    }
    assert_eq!(
        metric(&running, "dmarec_scan_state{state=\"recording\"}"),
        1.0
    );
    assert!(metric(&running, "dmarec_scan_slots") > 0.0);

    let stopped = ctl(&socket, &["stop", "--json"]);
    assert!(stopped.status.success(), "{stopped:?}");
    let summary = json(&String::from_utf8_lossy(&stopped.stdout));
    assert_eq!(summary["stop_reason"], "signal");
    let setup = summary["io_uring_setup"].as_str().unwrap();
    assert!(
        setup.starts_with("sqpoll+") && setup.ends_with(", registered ring fd"),
        "{setup}"
    );
    let idle = status(&socket);
    assert_eq!(idle["state"], "idle");
    assert!(idle["live"].is_null());
    assert_eq!(idle["last_scan"]["summary"]["slots"], summary["slots"]);
    check_metrics(&scrape(&address), &summary);
    // The textfile is rewritten every status interval.
    let textfile = wait_textfile(&dir.join("dmarec.prom"));
    check_metrics(&textfile, &summary);

    // What the recording holds, read back by dmaplay: the same figures.
    let inspect = dmaplay_json(&[
        "inspect",
        &dir.file("target.img"),
        "--index",
        &dir.file("scan1.idx"),
    ]);
    assert_eq!(
        inspect["slots"], summary["slots"],
        "index synced: every slot listed"
    );
    assert_eq!(
        inspect["payload_bytes_recorded"],
        summary["payload_bytes_recorded"]
    );
    assert_eq!(inspect["buffers_lost"], summary["buffers_lost"]);
    run_ok(
        "dmaplay",
        &[
            "verify",
            &dir.file("target.img"),
            "--index",
            &dir.file("scan1.idx"),
            "--pattern",
        ],
    );

    // A second scan is appended after the first on the same target.
    let second = ctl(&socket, &["start", "scan2", "--duration", "0.5"]);
    assert!(second.status.success(), "{second:?}");
    let last = wait_status(&socket, "scan2's end", |s| s["state"] == "idle");
    assert_eq!(last["last_scan"]["name"], "scan2");
    let list = dmaplay_json(&["list", &dir.file("target.img")]);
    let scans = list["scans"].as_array().expect("scans");
    let names: Vec<&str> = scans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["scan1", "scan2"], "{list}");
    assert_eq!(
        scans[0]["slot_count"], summary["slots"],
        "scan 1 kept whole"
    );
    assert!(scans.iter().all(|s| s["state"] == "complete"), "{list}");
}

fn service_doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SERVICE.md")).unwrap()
}

/// Every field of the status (its live figures, totals and scan too) is
/// named in docs/SERVICE.md's status section.
fn documented(status: &Value) {
    let doc = service_doc();
    let section = doc.split("### Status (schema_version 1)").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    let scan_fields = doc
        .split("`{\"ok\":true,\"scan\":{")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    for object in [status, &status["live"], &status["totals"]] {
        for key in object.as_object().unwrap().keys() {
            assert!(
                section.contains(&format!("`{key}`")),
                "status field {key} is not in docs/SERVICE.md"
            );
        }
    }
    for key in status["scan"].as_object().unwrap().keys() {
        assert!(
            scan_fields.split(", ").any(|f| f == key),
            "scan field {key} not in docs/SERVICE.md: {scan_fields}"
        );
    }
}

/// The textfile once it shows the idle service (written atomically).
fn wait_textfile(path: &Path) -> String {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains("dmarec_scan_state{state=\"idle\"} 1")
            && text.contains("dmarec_scan_slots")
        {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never showed the finished scan", path.display());
}

fn check_metrics(text: &str, summary: &Value) {
    let n = |k: &str| summary[k].as_u64().unwrap() as f64;
    assert_eq!(metric(text, "dmarec_scan_state{state=\"idle\"}"), 1.0);
    assert_eq!(metric(text, "dmarec_scan_state{state=\"recording\"}"), 0.0);
    assert_eq!(metric(text, "dmarec_scans_total"), 1.0);
    assert_eq!(metric(text, "dmarec_errors_total"), 0.0);
    assert_eq!(metric(text, "dmarec_scan_slots"), n("slots"));
    assert_eq!(
        metric(text, "dmarec_scan_written_bytes"),
        n("bytes_written")
    );
    assert_eq!(
        metric(text, "dmarec_written_bytes_total"),
        n("bytes_written")
    );
    assert_eq!(
        metric(text, "dmarec_scan_payload_bytes"),
        n("payload_bytes_recorded")
    );
    assert!(n("buffers_lost") > 0.0, "sim_drop_every 50 loses buffers");
    assert_eq!(metric(text, "dmarec_scan_buffers_lost"), n("buffers_lost"));
    assert_eq!(metric(text, "dmarec_buffers_lost_total"), n("buffers_lost"));
    assert_eq!(metric(text, "dmarec_gaps_total"), n("slots_with_gap"));
    let fill = n("slots") / n("capacity_slots");
    assert!((metric(text, "dmarec_device_fill_ratio") - fill).abs() < 1e-9);
}

#[test]
fn sigterm_stops_the_scan_cleanly_and_ends_the_service() {
    let dir = Scratch::new("service-term");
    let config = config(&dir, "");
    let socket = dir.join("dmarec.sock");
    let mut service = Service::start(&config);
    service.wait_log("listening on");
    let started = ctl(&socket, &["start", "scan1", "--duration", "1h"]);
    assert!(started.status.success(), "{started:?}");
    wait_status(&socket, "slots", |s| s["live"]["slots"].as_u64() > Some(50));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(service.child.id() as i32, libc::SIGTERM) },
        0
    );
    service.wait_log("scan \"scan1\" ended");
    let exit = service.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "dmarec serve after SIGTERM");
    assert!(!socket.exists(), "the socket is removed on exit");
    let inspect = dmaplay_json(&[
        "inspect",
        &dir.file("target.img"),
        "--index",
        &dir.file("scan1.idx"),
    ]);
    assert!(inspect["slots"].as_u64() > Some(50));
    assert_eq!(
        inspect["index_behind"],
        Value::Null,
        "every written slot is indexed"
    );
}

#[test]
fn the_service_refuses_to_start_without_its_card_or_targets() {
    let dir = Scratch::new("service-refused");
    let config = config(&dir, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let no_card = dir.join("no-card.toml");
    std::fs::write(
        &no_card,
        text.replace("source = \"sim\"", "source = \"/dev/dmarec-absent\""),
    )
    .unwrap();
    let out = run("dmarec", &["serve", "--config", no_card.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("card /dev/dmarec-absent: cannot open"),
        "{err}"
    );
    let no_target = dir.join("no-target.toml");
    std::fs::write(&no_target, text.replace("file_size = \"256M\"\n", "")).unwrap();
    let out = run(
        "dmarec",
        &["serve", "--config", no_target.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("target.img: cannot open"), "{err}");
    assert!(
        !dir.join("dmarec.sock").exists(),
        "no socket before the checks pass"
    );
}

/// `dmarec serve` as user nobody with an 8 MiB memlock limit, with or
/// without CAP_IPC_LOCK (setpriv), as the systemd unit runs it.
fn unprivileged(config: &Path, cap_ipc_lock: bool) -> Service {
    let mut command = Command::new("prlimit");
    command.args([
        "--memlock=8388608:8388608",
        "--",
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]);
    if cap_ipc_lock {
        command.args(["--inh-caps=+ipc_lock", "--ambient-caps=+ipc_lock"]);
    }
    command
        .arg(bin("dmarec"))
        .args(["serve", "--config"])
        .arg(config);
    Service::spawn(command)
}

#[test]
fn cap_ipc_lock_instead_of_root_suffices_to_record() {
    if !require_root("cap_ipc_lock_instead_of_root_suffices_to_record") {
        return;
    }
    let dir = Scratch::new("service-unprivileged");
    // nobody writes the socket, the target and the indexes here.
    std::fs::set_permissions(
        &dir.path,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let config = config(&dir, ""); // a ring of 64 x 68 KiB: more than 8 MiB
    let socket = dir.join("dmarec.sock");
    for cap in [false, true] {
        let service = unprivileged(&config, cap);
        service.wait_log("listening on");
        let started = ctl(
            &socket,
            &["start", &format!("cap-{cap}"), "--duration", "0.5"],
        );
        let err = String::from_utf8_lossy(&started.stderr);
        if cap {
            assert!(started.status.success(), "{err}");
            let last = wait_status(&socket, "the scan's end", |s| s["state"] == "idle");
            assert_eq!(
                last["last_scan"]["summary"]["stop_reason"],
                "duration_reached"
            );
            assert!(last["last_scan"]["summary"]["slots"].as_u64() > Some(0));
        } else {
            assert_eq!(
                started.status.code(),
                Some(1),
                "without CAP_IPC_LOCK: {err}"
            );
            assert!(
                err.contains("LimitMEMLOCK") || err.contains("memlock") || err.contains("ulimit"),
                "{err}"
            );
        }
        drop(service);
    }
}
