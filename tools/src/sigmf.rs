//! SigMF metadata (`.sigmf-meta`, SigMF 1.2.0) for one exported channel:
//! the global object (datatype from the channel table, sample rate,
//! version, recorder, `--meta` fields, optional `core:sha512`), one capture
//! segment per contiguous run of samples (`core:datetime` = the anchored
//! card time of its first sample, `core:frequency` from `--frequency`), and
//! one annotation per gap (`dmarec:lost_buffers`, `dmarec:lost_samples`).
//! Also the `.sigmf-collection` of an `--all` export and the `.sigmf`
//! archive (a tar of `NAME/NAME.sigmf-meta` and `NAME/NAME.sigmf-data`).

use anyhow::{Context, Result};
use formats::time::{rfc3339_utc, CardClock, TimeAnchor};
use formats::{IndexEntry, Superblock};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const SIGMF_VERSION: &str = "1.2.0";

/// The `--meta` keys dmaplay takes: SigMF's free-text global fields.
pub const META_KEYS: &[&str] = &[
    "core:author",
    "core:description",
    "core:hw",
    "core:license",
    "core:recorder",
    "core:collection",
    "core:data_doi",
    "core:meta_doi",
];

/// `--meta KEY=VALUE`: one of [`META_KEYS`] (`author` means `core:author`)
/// and a string value.
pub fn parse_meta(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!(
            "{text:?} is not KEY=VALUE, e.g. core:author=\"Jane Doe\""
        ));
    };
    let key = key.trim();
    let key = if key.contains(':') {
        key.to_string()
    } else {
        format!("core:{key}")
    };
    if !META_KEYS.contains(&key.as_str()) {
        return Err(format!(
            "{key:?} is not a global field --meta sets; accepted: {} (dmaplay writes datatype, sample_rate, version, num_channels itself; --sha512 adds core:sha512)",
            META_KEYS.join(", ")
        ));
    }
    Ok((key, value.to_string()))
}

/// A frequency in Hz: a number with an optional k, M or G (`2.4G`, `915e6`).
fn parse_hz(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 'k')) => (&t[..i], 1e3),
        Some((i, 'M')) => (&t[..i], 1e6),
        Some((i, 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if (v * scale).is_finite() && (v * scale).abs() <= 1e12 => Ok(v * scale),
        _ => Err(format!(
            "{text:?} is not a frequency: Hz as a number with an optional k, M or G (915e6, 2.4G), at most 1e12"
        )),
    }
}

/// `--frequency HZ` (every channel) or `--frequency CHANNEL=HZ`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frequency {
    pub channel: Option<u16>,
    pub hz: f64,
}

impl std::str::FromStr for Frequency {
    type Err = String;
    fn from_str(text: &str) -> Result<Frequency, String> {
        match text.split_once('=') {
            None => Ok(Frequency {
                channel: None,
                hz: parse_hz(text)?,
            }),
            Some((c, hz)) => Ok(Frequency {
                channel: Some(c.trim().parse().map_err(|_| {
                    format!("{text:?}: the channel before '=' must be a number, e.g. 2=915e6")
                })?),
                hz: parse_hz(hz)?,
            }),
        }
    }
}

/// What `export --format sigmf` adds beyond the recording's own fields.
#[derive(Debug, Clone, Default)]
pub struct SigmfOptions {
    pub meta: Vec<(String, String)>,
    pub frequencies: Vec<Frequency>,
    pub sha512: bool,
    /// Write `NAME.sigmf` archives instead of file pairs.
    pub archive: bool,
}

impl SigmfOptions {
    /// Channel `channel`'s centre frequency: its own, else the one for all.
    pub fn frequency_of(&self, channel: u16) -> Option<f64> {
        let own = self
            .frequencies
            .iter()
            .rev()
            .find(|f| f.channel == Some(channel));
        let all = self.frequencies.iter().rev().find(|f| f.channel.is_none());
        own.or(all).map(|f| f.hz)
    }
}

/// Where a buffer's first sample is on the anchored card clock.
#[derive(Debug, Clone, Copy)]
pub struct CaptureClock {
    pub anchor: TimeAnchor,
    /// Subtracted from a buffer's timestamp to reach its first sample: the
    /// buffer's fill time for a stored end-of-fill anchor with known rates
    /// (payload bytes / the card's byte rate over all channels), else 0
    /// (sample counters stamp the first sample; 1.0 recordings keep the
    /// times they had).
    pub fill_ns: u64,
}

impl CaptureClock {
    pub fn new(sb: &Superblock, anchor: TimeAnchor) -> CaptureClock {
        let byte_rate: f64 = sb
            .channels
            .iter()
            .map(|c| {
                c.sample_rate_hz * formats::datatype_sample_bytes(&c.datatype).unwrap_or(0) as f64
            })
            .sum();
        let end_of_fill = sb.time_anchor.is_some() && anchor.clock != CardClock::SampleCounter;
        let fill_ns = if end_of_fill && byte_rate > 0.0 {
            (sb.payload_bytes as f64 / byte_rate * 1e9).round() as u64
        } else {
            0
        };
        CaptureClock { anchor, fill_ns }
    }

    /// ns since the epoch of `entry`'s first sample.
    pub fn first_sample_ns(&self, entry: &IndexEntry) -> u64 {
        self.anchor
            .realtime_of(entry.card_timestamp_ns)
            .saturating_sub(self.fill_ns)
    }

    pub fn datetime(&self, entry: &IndexEntry) -> String {
        rfc3339_utc(self.first_sample_ns(entry))
    }
}

/// SHA-512 of a file, as lowercase hex (SigMF's `core:sha512`).
pub fn sha512_of_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("hashing {}", path.display()))?;
    let mut hasher = Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("hashing {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The base name SigMF uses for a `.sigmf-meta` path.
fn base_name(meta_path: &Path) -> String {
    let name = meta_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".sigmf-meta")
        .unwrap_or(&name)
        .to_string()
}

/// Packs a recording's pair into `BASE.sigmf` (a plain tar: `BASE/BASE.sigmf-meta`,
/// `BASE/BASE.sigmf-data`), then removes the pair. Returns the archive path.
pub fn archive(meta_path: &Path, data_path: &Path) -> Result<PathBuf> {
    let base = base_name(meta_path);
    let path = meta_path.with_file_name(format!("{base}.sigmf"));
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.mode(tar::HeaderMode::Deterministic);
    for (p, ext) in [(meta_path, "sigmf-meta"), (data_path, "sigmf-data")] {
        tar.append_path_with_name(p, format!("{base}/{base}.{ext}"))
            .with_context(|| format!("archiving {} into {}", p.display(), path.display()))?;
    }
    let out = tar
        .into_inner()
        .with_context(|| format!("writing {}", path.display()))?;
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    for p in [meta_path, data_path] {
        std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(path)
}

/// Writes `BASE.sigmf-collection` beside the recordings (SigMF 1.2.0
/// collection: `core:streams` of each recording's base name and the SHA-512
/// of its `.sigmf-meta`, hashed before any archiving).
pub fn write_collection(
    path: &Path,
    streams: &[(PathBuf, String)],
    description: &str,
) -> Result<()> {
    let streams: Vec<Value> = streams
        .iter()
        .map(|(meta, hash)| json!({ "name": base_name(meta), "hash": hash }))
        .collect();
    let value = json!({ "collection": {
        "core:version": SIGMF_VERSION,
        "core:description": description,
        "core:streams": streams,
    }});
    let text = serde_json::to_string_pretty(&value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub sample_start: u64,
    /// ISO 8601 UTC; None when unknown (zero filler before the first buffer).
    pub datetime: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub sample_start: u64,
    /// Samples of zero filler the annotation covers (0 with --gaps mark).
    pub sample_count: u64,
    pub lost_buffers: u64,
    pub lost_samples: u64,
    pub comment: String,
}

pub struct Meta {
    pub datatype: String,
    /// 0 when unknown (then omitted, as SigMF allows).
    pub sample_rate_hz: f64,
    pub description: String,
    /// `--meta` fields (they override the description).
    pub extra: Vec<(String, String)>,
    /// Centre frequency, in every capture.
    pub frequency_hz: Option<f64>,
    pub sha512: Option<String>,
    pub captures: Vec<Capture>,
    pub annotations: Vec<Annotation>,
}

impl Meta {
    pub fn to_json(&self) -> Value {
        let mut global = Map::new();
        global.insert("core:datatype".into(), json!(self.datatype));
        if self.sample_rate_hz > 0.0 {
            global.insert("core:sample_rate".into(), json!(self.sample_rate_hz));
        }
        global.insert("core:version".into(), json!(SIGMF_VERSION));
        global.insert("core:num_channels".into(), json!(1));
        global.insert("core:recorder".into(), json!("dmarec"));
        global.insert("core:description".into(), json!(self.description));
        for (key, value) in &self.extra {
            global.insert(key.clone(), json!(value));
        }
        if let Some(h) = &self.sha512 {
            global.insert("core:sha512".into(), json!(h));
        }
        global.insert(
            "core:extensions".into(),
            json!([{ "name": "dmarec", "version": "1.0.0", "optional": true }]),
        );
        let captures: Vec<Value> = self
            .captures
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("core:sample_start".into(), json!(c.sample_start));
                if let Some(t) = &c.datetime {
                    m.insert("core:datetime".into(), json!(t));
                }
                if let Some(f) = self.frequency_hz {
                    m.insert("core:frequency".into(), json!(f));
                }
                Value::Object(m)
            })
            .collect();
        let annotations: Vec<Value> = self
            .annotations
            .iter()
            .map(|a| {
                json!({
                    "core:sample_start": a.sample_start,
                    "core:sample_count": a.sample_count,
                    "core:label": "gap",
                    "core:comment": a.comment,
                    "dmarec:lost_buffers": a.lost_buffers,
                    "dmarec:lost_samples": a.lost_samples,
                })
            })
            .collect();
        json!({ "global": global, "captures": captures, "annotations": annotations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_and_optional_rate() {
        let m = Meta {
            datatype: "ci16_le".into(),
            sample_rate_hz: 0.0,
            description: "d".into(),
            extra: vec![],
            frequency_hz: None,
            sha512: None,
            captures: vec![Capture {
                sample_start: 0,
                datetime: Some("2026-01-01T00:00:00.000000000Z".into()),
            }],
            annotations: vec![Annotation {
                sample_start: 5,
                sample_count: 0,
                lost_buffers: 1,
                lost_samples: 1024,
                comment: "gap".into(),
            }],
        };
        let v = m.to_json();
        assert_eq!(v["global"]["core:datatype"], "ci16_le");
        assert_eq!(v["global"]["core:version"], "1.2.0");
        assert_eq!(v["global"]["core:recorder"], "dmarec");
        assert!(v["global"].get("core:sample_rate").is_none());
        assert_eq!(v["captures"][0]["core:sample_start"], 0);
        assert_eq!(v["annotations"][0]["core:sample_start"], 5);
        assert_eq!(v["annotations"][0]["core:comment"], "gap");
    }
}

#[cfg(test)]
mod option_tests {
    use super::*;
    use formats::time::CardClock;

    #[test]
    fn meta_keys_are_sigmf_globals_with_core_as_default_namespace() {
        assert_eq!(
            parse_meta("core:author=Jane Doe"),
            Ok(("core:author".into(), "Jane Doe".into()))
        );
        assert_eq!(parse_meta("hw=a=b"), Ok(("core:hw".into(), "a=b".into())));
        assert_eq!(
            parse_meta("license="),
            Ok(("core:license".into(), "".into()))
        );
        for bad in [
            "author",
            "core:datatype=ci8",
            "core:sha512=00",
            "x:y=1",
            "=v",
        ] {
            let err = parse_meta(bad).unwrap_err();
            assert!(err.contains("core:author"), "{bad}: {err}");
        }
    }

    #[test]
    fn frequencies_per_channel_override_the_default() {
        let f = |t: &str| t.parse::<Frequency>();
        assert_eq!(f("915e6").unwrap().hz, 915e6);
        assert_eq!(f("2.4G").unwrap().hz, 2.4e9);
        assert_eq!(f("10k").unwrap().hz, 1e4);
        assert_eq!(f("-3M").unwrap().hz, -3e6);
        assert_eq!(
            f("1=100").unwrap(),
            Frequency {
                channel: Some(1),
                hz: 100.0
            }
        );
        for bad in ["", "x", "nan", "inf", "2e12", "1=", "a=5", "5T"] {
            assert!(f(bad).is_err(), "{bad}");
        }
        let o = SigmfOptions {
            frequencies: vec![f("1=100").unwrap(), f("7").unwrap(), f("1=200").unwrap()],
            ..Default::default()
        };
        assert_eq!(o.frequency_of(1), Some(200.0), "the last given wins");
        assert_eq!(o.frequency_of(0), Some(7.0));
        assert_eq!(SigmfOptions::default().frequency_of(0), None);
    }

    fn superblock(anchor: Option<TimeAnchor>, rate_hz: f64) -> Superblock {
        let channel = |name: &str| formats::Channel {
            name: name.into(),
            datatype: "ci16_le".into(),
            sample_rate_hz: rate_hz,
        };
        Superblock {
            version_minor: formats::FORMAT_VERSION_MINOR,
            recording_uuid: formats::Uuid([1; 16]),
            created_unix_ns: 0,
            payload_bytes: 4096,
            flags: 0,
            device_index: 0,
            channel_layout: formats::CHANNEL_LAYOUT_ROUND_ROBIN,
            members: vec![],
            channels: vec![channel("a"), channel("b")],
            time_anchor: anchor,
        }
    }

    /// A stored end-of-fill anchor reaches back one buffer's fill time (4096
    /// bytes at 2 channels × 1000 Hz × 4 bytes: 0.512 s); sample counters
    /// and 1.0 recordings do not.
    #[test]
    fn capture_clock_reaches_the_first_sample() {
        let anchor = |clock| TimeAnchor {
            clock,
            card_ns: 1_000,
            realtime_ns: 10_000_000_000,
        };
        let end = anchor(CardClock::HostMonotonicEndOfFill);
        let entry = IndexEntry {
            card_timestamp_ns: 2_000,
            ..Default::default()
        };
        let c = CaptureClock::new(&superblock(Some(end), 1000.0), end);
        assert_eq!(c.fill_ns, 512_000_000);
        assert_eq!(c.first_sample_ns(&entry), 10_000_001_000 - 512_000_000);
        let c = CaptureClock::new(&superblock(Some(end), 0.0), end);
        assert_eq!(c.fill_ns, 0, "no rate: no correction");
        let c = CaptureClock::new(&superblock(None, 1000.0), end);
        assert_eq!(c.fill_ns, 0, "derived 1.0 anchors keep their times");
        let counter = anchor(CardClock::SampleCounter);
        let c = CaptureClock::new(&superblock(Some(counter), 1000.0), counter);
        assert_eq!(c.first_sample_ns(&entry), 10_000_001_000);
        assert_eq!(c.datetime(&entry), "1970-01-01T00:00:10.000001000Z");
    }
}
