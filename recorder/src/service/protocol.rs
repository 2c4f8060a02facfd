//! The control socket's protocol: one JSON object per line each way. A
//! client sends a request line and reads one response line; a connection
//! may carry several requests. Every response has `"ok"`; a refused or
//! failed request has `"ok": false` and `"error"` saying why and what to do.
//!
//! ```text
//! {"cmd":"start","name":"scan1","duration_s":60,"size_bytes":1073741824,"on_full":"stop"}
//! {"cmd":"stop"}
//! {"cmd":"status"}
//! ```

use crate::status::{Live, Summary};
use serde::{Deserialize, Serialize};

/// Version of the status JSON (docs/SERVICE.md): raised when a field
/// changes meaning or goes away; new fields may appear in any version.
pub const STATUS_SCHEMA_VERSION: u32 = 1;

/// Longest request line the service reads (a start request is ~150 bytes).
pub const MAX_REQUEST_BYTES: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Starts scan `name`; its limits are optional (none: until stopped or
    /// the targets are full).
    Start {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_bytes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_full: Option<OnFull>,
    },
    /// Stops the scan; answered once it has finished (index synced).
    Stop,
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    Stop,
    Wrap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Idle,
    Recording,
    /// Asked to stop: draining, syncing the index.
    Stopping,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Idle, Phase::Recording, Phase::Stopping];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Recording => "recording",
            Phase::Stopping => "stopping",
        }
    }
}

/// The scan being recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanInfo {
    pub name: String,
    pub index: String,
    pub started_unix_ns: u64,
    pub duration_limit_s: Option<f64>,
    pub size_limit_bytes: Option<u64>,
    pub on_full: OnFull,
}

/// How a scan ended: the recorder's own summary (as `dmarec record --json`
/// prints it), or why it failed to start.
#[derive(Debug, Clone, Serialize)]
pub struct ScanOutcome {
    pub name: String,
    pub index: String,
    pub summary: Option<Summary>,
    pub error: Option<String>,
}

/// Sums over every scan this service ran (the metrics' counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub scans_started: u64,
    /// Scans that failed to start or ended with an error.
    pub errors: u64,
    /// Finished scans only; the running one is in `live`.
    pub bytes_written: u64,
    pub buffers_lost: u64,
    pub slots_with_gap: u64,
}

/// The answer to `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema_version: u32,
    pub state: Phase,
    pub source: String,
    pub targets: Vec<String>,
    /// The scan being recorded (state recording or stopping).
    pub scan: Option<ScanInfo>,
    /// Its figures at the last status interval (the recorder's own counts).
    pub live: Option<Live>,
    pub last_scan: Option<ScanOutcome>,
    pub totals: Totals,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let start: Request = serde_json::from_str(
            r#"{"cmd":"start","name":"s1","duration_s":2.5,"size_bytes":100,"on_full":"wrap"}"#,
        )
        .unwrap();
        assert_eq!(
            start,
            Request::Start {
                name: "s1".into(),
                duration_s: Some(2.5),
                size_bytes: Some(100),
                on_full: Some(OnFull::Wrap)
            }
        );
        let bare: Request = serde_json::from_str(r#"{"cmd":"start","name":"s"}"#).unwrap();
        assert!(matches!(
            bare,
            Request::Start {
                duration_s: None,
                size_bytes: None,
                on_full: None,
                ..
            }
        ));
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"stop"}"#).unwrap(),
            Request::Stop
        );
        let unknown_field = r#"{"cmd":"start","name":"s","colour":1}"#;
        for bad in [r#"{"cmd":"pause"}"#, unknown_field, r#"{"cmd":"start"}"#] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_request_round_trips() {
        let r = Request::Start {
            name: "x".into(),
            duration_s: None,
            size_bytes: Some(1),
            on_full: None,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"cmd":"start","name":"x","size_bytes":1}"#);
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
    }
}
