//! The service's metrics in the Prometheus text format (prometheus-client):
//! on each scrape a collector reads the service's [`Status`], whose figures
//! the recorder's status code counted (crate::status: [`Live`] while a scan
//! runs, the final [`Summary`] after it); nothing is counted twice. Served
//! over HTTP (`GET /metrics`) and/or written as a node-exporter textfile.
//!
//! [`Live`]: crate::status::Live
//! [`Summary`]: crate::status::Summary

use super::protocol::{Phase, Status, Totals};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where the collector gets the status from (the service's shared state).
pub trait StatusSource: Send + Sync + 'static {
    fn status(&self) -> Status;
}

struct StatusCollector<S>(Arc<S>);

impl<S> std::fmt::Debug for StatusCollector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusCollector")
    }
}

/// The current scan's figures, or the last scan's once it ended.
struct ScanFigures {
    slots: u64,
    bytes_written: u64,
    payload_bytes: u64,
    rate_bytes_per_s: f64,
    buffers_lost: u64,
    slots_with_gap: u64,
    device_fill_ratio: f64,
}

fn scan_figures(status: &Status) -> Option<ScanFigures> {
    if let Some(l) = &status.live {
        return Some(ScanFigures {
            slots: l.slots,
            bytes_written: l.bytes_written,
            payload_bytes: l.payload_bytes_recorded,
            rate_bytes_per_s: l.rate_mb_per_s * 1e6,
            buffers_lost: l.buffers_lost,
            slots_with_gap: l.slots_with_gap,
            device_fill_ratio: l.device_fill_ratio,
        });
    }
    let s = status.last_scan.as_ref()?.summary.as_ref()?;
    Some(ScanFigures {
        slots: s.slots,
        bytes_written: s.bytes_written,
        payload_bytes: s.payload_bytes_recorded,
        rate_bytes_per_s: 0.0, // not recording
        buffers_lost: s.buffers_lost,
        slots_with_gap: s.slots_with_gap,
        device_fill_ratio: s.device_fill_ratio(),
    })
}

impl<S: StatusSource> Collector for StatusCollector<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let status = self.0.status();
        encode_state(&mut encoder, status.state)?;
        let figures = scan_figures(&status);
        // The running scan is not in the totals yet (they sum finished scans).
        let running = figures.as_ref().filter(|_| status.live.is_some());
        encode_totals(&mut encoder, &status.totals, running)?;
        match &figures {
            Some(f) => encode_scan(&mut encoder, f),
            None => Ok(()), // no scan yet
        }
    }
}

fn encode_state(encoder: &mut DescriptorEncoder, state: Phase) -> std::fmt::Result {
    let mut states = encoder.encode_descriptor(
        "scan_state",
        "1 for the service's current state (idle, recording, stopping), 0 for the others",
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for phase in Phase::ALL {
        let labels = [("state", phase.name())];
        ConstGauge::new((state == phase) as i64).encode(states.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_totals(
    encoder: &mut DescriptorEncoder,
    totals: &Totals,
    running: Option<&ScanFigures>,
) -> std::fmt::Result {
    let run = |f: fn(&ScanFigures) -> u64| running.map_or(0, f);
    let counters: [(&str, &str, u64); 5] = [
        (
            "scans",
            "Scans started by this service",
            totals.scans_started,
        ),
        (
            "errors",
            "Scans that failed to start or ended with an error",
            totals.errors,
        ),
        (
            "written_bytes",
            "Bytes written (slot headers and payloads), all scans",
            totals.bytes_written + run(|f| f.bytes_written),
        ),
        (
            "buffers_lost",
            "Buffers the card lost, all scans",
            totals.buffers_lost + run(|f| f.buffers_lost),
        ),
        (
            "gaps",
            "Slots recorded after a gap (lost buffers), all scans",
            totals.slots_with_gap + run(|f| f.slots_with_gap),
        ),
    ];
    for (name, help, value) in counters {
        let c = ConstCounter::new(value);
        c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
    }
    Ok(())
}

fn encode_scan(encoder: &mut DescriptorEncoder, f: &ScanFigures) -> std::fmt::Result {
    let scan = "the current scan, or the last one when idle";
    let gauges: [(&str, String, f64); 7] = [
        (
            "scan_slots",
            format!("Slots written by {scan}"),
            f.slots as f64,
        ),
        (
            "scan_written_bytes",
            format!("Bytes written by {scan}"),
            f.bytes_written as f64,
        ),
        (
            "scan_payload_bytes",
            format!("Payload bytes recorded by {scan}"),
            f.payload_bytes as f64,
        ),
        (
            "scan_write_rate_bytes_per_second",
            "Write rate over the last status interval (0 when idle)".into(),
            f.rate_bytes_per_s,
        ),
        (
            "scan_buffers_lost",
            format!("Buffers the card lost in {scan}"),
            f.buffers_lost as f64,
        ),
        (
            "scan_gaps",
            format!("Slots after a gap in {scan}"),
            f.slots_with_gap as f64,
        ),
        (
            "device_fill_ratio",
            "Share of the targets' slots written (0..1)".into(),
            f.device_fill_ratio,
        ),
    ];
    for (name, help, value) in gauges {
        let g = ConstGauge::new(value);
        g.encode(encoder.encode_descriptor(name, &help, None, g.metric_type())?)?;
    }
    Ok(())
}

/// The registry: every metric named `dmarec_*`.
pub fn registry<S: StatusSource>(source: Arc<S>) -> Registry {
    let mut registry = Registry::with_prefix("dmarec");
    registry.register_collector(Box::new(StatusCollector(source)));
    registry
}

/// The metrics as Prometheus text.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// Writes the node-exporter textfile: a temporary file in the same
/// directory, renamed over `path` (a scrape never sees half a file).
pub fn write_textfile(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Serves `GET /metrics` (anything else: 404), one connection at a time;
/// each is bounded by a 2 s timeout. Runs until the process exits.
pub fn serve_http(listener: TcpListener, registry: Arc<Registry>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let mut head = [0u8; 1024];
        let mut got = 0;
        // Bounded: at most head.len() bytes, until the end of the request line.
        while got < head.len() && !head[..got].contains(&b'\n') {
            match stream.read(&mut head[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let line = String::from_utf8_lossy(&head[..got]);
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let (code, content_type, body) = if line.starts_with("GET ") && path == "/metrics" {
            (
                "200 OK",
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                render(&registry),
            )
        } else {
            (
                "404 Not Found",
                "text/plain",
                "dmarec serves GET /metrics only\n".to_string(),
            )
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Live;

    struct Fixed(Status);
    impl StatusSource for Fixed {
        fn status(&self) -> Status {
            self.0.clone()
        }
    }

    fn status(state: Phase, live: Option<Live>) -> Status {
        Status {
            schema_version: 1,
            state,
            source: "sim".into(),
            targets: vec![],
            scan: None,
            live,
            last_scan: None,
            totals: Totals {
                scans_started: 3,
                errors: 1,
                bytes_written: 1000,
                buffers_lost: 7,
                slots_with_gap: 5,
            },
        }
    }

    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    #[test]
    fn a_running_scan_adds_to_the_finished_scans_totals() {
        let live = Live {
            slots: 10,
            bytes_written: 200,
            payload_bytes_recorded: 150,
            rate_mb_per_s: 2.5,
            buffers_lost: 2,
            slots_with_gap: 1,
            capacity_slots: 40,
            device_fill_ratio: 0.25,
            elapsed_s: 1.0,
        };
        let text = render(&registry(Arc::new(Fixed(status(
            Phase::Recording,
            Some(live),
        )))));
        assert_eq!(sample(&text, "dmarec_scan_state{state=\"recording\"}"), 1.0);
        assert_eq!(sample(&text, "dmarec_scan_state{state=\"idle\"}"), 0.0);
        assert_eq!(sample(&text, "dmarec_scan_state{state=\"stopping\"}"), 0.0);
        assert_eq!(sample(&text, "dmarec_scans_total"), 3.0);
        assert_eq!(sample(&text, "dmarec_errors_total"), 1.0);
        assert_eq!(sample(&text, "dmarec_written_bytes_total"), 1200.0);
        assert_eq!(sample(&text, "dmarec_buffers_lost_total"), 9.0);
        assert_eq!(sample(&text, "dmarec_gaps_total"), 6.0);
        assert_eq!(sample(&text, "dmarec_scan_slots"), 10.0);
        assert_eq!(sample(&text, "dmarec_scan_written_bytes"), 200.0);
        assert_eq!(sample(&text, "dmarec_scan_payload_bytes"), 150.0);
        assert_eq!(
            sample(&text, "dmarec_scan_write_rate_bytes_per_second"),
            2.5e6
        );
        assert_eq!(sample(&text, "dmarec_scan_buffers_lost"), 2.0);
        assert_eq!(sample(&text, "dmarec_scan_gaps"), 1.0);
        assert_eq!(sample(&text, "dmarec_device_fill_ratio"), 0.25);
        assert!(
            text.contains("# TYPE dmarec_buffers_lost_total counter"),
            "{text}"
        );
        assert!(text.contains("# TYPE dmarec_scan_slots gauge"), "{text}");
    }

    #[test]
    fn before_any_scan_only_the_state_and_totals_are_exported() {
        let text = render(&registry(Arc::new(Fixed(status(Phase::Idle, None)))));
        assert_eq!(sample(&text, "dmarec_scan_state{state=\"idle\"}"), 1.0);
        assert_eq!(sample(&text, "dmarec_buffers_lost_total"), 7.0);
        assert!(!text.contains("dmarec_scan_slots"), "{text}");
    }

    #[test]
    fn the_textfile_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("dmarec-textfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dmarec.prom");
        write_textfile(&path, "a 1\n").unwrap();
        write_textfile(&path, "b 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b 2\n");
        assert!(!path.with_extension("prom.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn http_serves_metrics_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let registry = Arc::new(registry(Arc::new(Fixed(status(Phase::Idle, None)))));
        std::thread::spawn(move || serve_http(listener, registry));
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect(address).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut response = String::new();
            s.read_to_string(&mut response).unwrap();
            response
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        let body = ok.split("\r\n\r\n").nth(1).unwrap();
        assert!(
            ok.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{ok}"
        );
        assert!(body.contains("dmarec_scans_total 3"), "{body}");
        assert!(get("/").starts_with("HTTP/1.1 404"));
    }
}
