//! The service's metrics in the Prometheus text format (prometheus-client):
//! on each scrape a collector reads the service's [`Status`], whose figures
//! the recorder's status code counted (crate::status: [`Live`] while a scan
//! runs, the final [`Summary`] after it); nothing is counted twice. Served
//! over HTTP (`GET /metrics`) and/or written as a node-exporter textfile.
//!
//! [`Live`]: crate::status::Live
//! [`Summary`]: crate::status::Summary

use super::protocol::{Phase, Status};
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
        device_fill_ratio: s.slots.min(s.capacity_slots) as f64 / s.capacity_slots.max(1) as f64,
    })
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl<S: StatusSource> Collector for StatusCollector<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let status = self.0.status();
        let mut states = encoder.encode_descriptor(
            "scan_state",
            "1 for the service's current state (idle, recording, stopping), 0 for the others",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for phase in Phase::ALL {
            let labels = [("state", phase.name())];
            ConstGauge::new((status.state == phase) as i64)
                .encode(states.encode_family(&labels)?)?;
        }
        let t = &status.totals;
        counter(
            &mut encoder,
            "scans",
            "Scans started by this service",
            t.scans_started,
        )?;
        counter(
            &mut encoder,
            "errors",
            "Scans that failed to start or ended with an error",
            t.errors,
        )?;
        let figures = scan_figures(&status);
        let live = |f: fn(&ScanFigures) -> u64| {
            figures
                .as_ref()
                .filter(|_| status.live.is_some())
                .map_or(0, f)
        };
        counter(
            &mut encoder,
            "written_bytes",
            "Bytes written (slot headers and payloads), all scans",
            t.bytes_written + live(|f| f.bytes_written),
        )?;
        counter(
            &mut encoder,
            "buffers_lost",
            "Buffers the card lost, all scans",
            t.buffers_lost + live(|f| f.buffers_lost),
        )?;
        counter(
            &mut encoder,
            "gaps",
            "Slots recorded after a gap (lost buffers), all scans",
            t.slots_with_gap + live(|f| f.slots_with_gap),
        )?;
        let Some(f) = figures else { return Ok(()) };
        let scan = "the current scan, or the last one when idle";
        gauge(
            &mut encoder,
            "scan_slots",
            &format!("Slots written by {scan}"),
            f.slots as i64,
        )?;
        gauge(
            &mut encoder,
            "scan_written_bytes",
            &format!("Bytes written by {scan}"),
            f.bytes_written as i64,
        )?;
        gauge(
            &mut encoder,
            "scan_payload_bytes",
            &format!("Payload bytes recorded by {scan}"),
            f.payload_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "scan_write_rate_bytes_per_second",
            "Write rate over the last status interval (0 when idle)",
            f.rate_bytes_per_s,
        )?;
        gauge(
            &mut encoder,
            "scan_buffers_lost",
            &format!("Buffers the card lost in {scan}"),
            f.buffers_lost as i64,
        )?;
        gauge(
            &mut encoder,
            "scan_gaps",
            &format!("Slots after a gap in {scan}"),
            f.slots_with_gap as i64,
        )?;
        gauge(
            &mut encoder,
            "device_fill_ratio",
            "Share of the targets' slots written (0..1)",
            f.device_fill_ratio,
        )
    }
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
