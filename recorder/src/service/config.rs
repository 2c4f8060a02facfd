//! `dmarec serve`'s configuration file (TOML; the documented example is
//! packaging/dmarec.toml). Sizes, rates and durations are strings in the
//! command line's own units (crate::units), so the file reads like the
//! `dmarec record` options it stands for.

use crate::journal::TargetSync;
use crate::source::kmod::MemoryMode;
use crate::uring::UringOptions;
use crate::{defaults, units, RecordOptions, SourceChoice, MAX_BUFFERS};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `dmarec serve` and `dmarec ctl` look without --config.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dmarec/dmarec.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub service: ServiceSection,
    pub recording: RecordingSection,
    #[serde(default)]
    pub metrics: MetricsSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// The control socket (JSON lines; `dmarec ctl`).
    pub socket: PathBuf,
    /// Group owning the socket (mode 0660): its members may run `dmarec ctl`.
    /// Unset: the service's own group.
    pub socket_group: Option<String>,
    /// Index files go here, one per scan: `<index_dir>/<scan name>.idx`.
    pub index_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSection {
    /// `sim` or the driver's device, e.g. /dev/dmarec0.
    #[serde(default = "default_source")]
    pub source: String,
    pub targets: Vec<PathBuf>,
    /// Size of regular-file targets that do not exist yet (tests, demos).
    pub file_size: Option<String>,
    #[serde(default = "default_payload_size")]
    pub payload_size: String,
    /// A count, or "auto" (as `dmarec record --buffers`).
    #[serde(default = "default_buffers")]
    pub buffers: String,
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    /// io_uring SQPOLL (`dmarec record --sqpoll`).
    #[serde(default)]
    pub sqpoll: bool,
    /// With `sqpoll`: ms before the polling thread sleeps
    /// (`--sqpoll-idle-ms`); unset: [`defaults::SQPOLL_IDLE_MS`].
    pub sqpoll_idle_ms: Option<u32>,
    /// `dmarec record --register-ring-fd`.
    #[serde(default)]
    pub register_ring_fd: bool,
    /// `dmarec record --iopoll` (targets with poll queues only).
    #[serde(default)]
    pub iopoll: bool,
    pub channels: Option<u16>,
    /// How the card puts channels in its buffers: "round-robin" (a buffer
    /// per channel in turn) or "interleaved" (frames of every channel).
    #[serde(default = "default_channel_layout")]
    pub channel_layout: String,
    /// Simulated card's rate (MB/s or a size per second); unset: unlimited.
    pub rate: Option<String>,
    #[serde(default)]
    pub sim_drop_every: u64,
    #[serde(default = "default_memory")]
    pub memory: String,
    #[serde(default = "default_index_sync_ms")]
    pub index_sync_ms: u64,
    #[serde(default = "default_target_sync")]
    pub target_sync: String,
    /// How often the status and metrics are refreshed while recording.
    #[serde(default = "default_status_interval")]
    pub status_interval: String,
    /// Let a scan erase everything the targets hold and start a new stripe
    /// set (`dmarec record --force`); without it each scan is appended.
    #[serde(default)]
    pub replace_previous_recording: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// HTTP address for Prometheus to scrape /metrics, e.g. 127.0.0.1:9464.
    pub listen: Option<String>,
    /// node-exporter textfile (written to a temporary file, renamed over it).
    pub textfile: Option<PathBuf>,
}

fn default_channel_layout() -> String {
    defaults::CHANNEL_LAYOUT.into()
}
fn default_source() -> String {
    defaults::SOURCE.into()
}
fn default_payload_size() -> String {
    defaults::PAYLOAD_SIZE.into()
}
fn default_buffers() -> String {
    defaults::BUFFERS.into()
}
fn default_queue_depth() -> usize {
    defaults::QUEUE_DEPTH
}
fn default_memory() -> String {
    defaults::MEMORY.into()
}
fn default_index_sync_ms() -> u64 {
    defaults::INDEX_SYNC_MS
}
fn default_target_sync() -> String {
    defaults::TARGET_SYNC.into()
}
/// The service refreshes its status and metrics every second, not every
/// `dmarec record --status-interval`.
fn default_status_interval() -> String {
    "1".into()
}

/// What a `start` request may set for one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScanLimits {
    pub duration: Option<Duration>,
    pub size_bytes: Option<u64>,
    /// Ring mode: wrap when the targets are full instead of stopping.
    pub wrap: bool,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "config {}: cannot read (give --config FILE; an example is packaging/dmarec.toml)",
                path.display()
            )
        })?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        config
            .record_options("check", ScanLimits::default())
            .with_context(|| format!("config {}", path.display()))?;
        Ok(config)
    }

    /// The index of scan `name`.
    pub fn index_path(&self, name: &str) -> PathBuf {
        self.service.index_dir.join(format!("{name}.idx"))
    }

    /// `dmarec record`'s options for scan `name`: every value checked as
    /// the command line checks it, each error naming its key.
    pub fn record_options(&self, name: &str, limits: ScanLimits) -> Result<RecordOptions> {
        let r = &self.recording;
        if r.targets.is_empty() {
            bail!("[recording] targets: give at least one target");
        }
        fn key(k: &'static str) -> impl Fn(String) -> anyhow::Error {
            move |e| anyhow::anyhow!("[recording] {k}: {e}")
        }
        let payload_size =
            units::parse_payload_size(&r.payload_size).map_err(key("payload_size"))?;
        let rate_bytes_per_s = r
            .rate
            .as_deref()
            .map(units::parse_rate)
            .transpose()
            .map_err(key("rate"))?;
        let source = match r.source.as_str() {
            "sim" => SourceChoice::Sim,
            dev => SourceChoice::Device(PathBuf::from(dev)),
        };
        let buffers = match r.buffers.as_str() {
            // As `dmarec record --buffers auto`: sized to the card's rate when known.
            "auto" => {
                let limit = crate::ring_limit_buffers(&source);
                crate::auto_buffers(payload_size, rate_bytes_per_s, limit).0
            }
            n => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_BUFFERS).contains(&n) => n,
                _ => bail!("[recording] buffers: {n:?}: a count 1..={MAX_BUFFERS} or \"auto\""),
            },
        };
        let memory_mode = match r.memory.as_str() {
            "auto" => MemoryMode::Auto,
            "mmap" => MemoryMode::Mmap,
            "userptr" => MemoryMode::Userptr,
            m => bail!("[recording] memory: {m:?}: one of auto, mmap, userptr"),
        };
        let interleaved = match r.channel_layout.as_str() {
            "round-robin" => false,
            "interleaved" => true,
            l => bail!("[recording] channel_layout: {l:?}: one of round-robin, interleaved"),
        };
        let target_sync = match r.target_sync.as_str() {
            "flush" => TargetSync::Flush,
            "dsync" => TargetSync::Dsync,
            t => bail!("[recording] target_sync: {t:?}: one of flush, dsync"),
        };
        let uring = r.uring_options()?;
        if !(1..=defaults::INDEX_SYNC_MS_MAX).contains(&r.index_sync_ms) {
            bail!(
                "[recording] index_sync_ms: {}: 1..={}",
                r.index_sync_ms,
                defaults::INDEX_SYNC_MS_MAX
            );
        }
        Ok(RecordOptions {
            source,
            // Appended after the set's last scan (`dmarec record --scan`).
            scan: Some(name.to_string()),
            size_bytes: limits.size_bytes,
            duration: limits.duration,
            payload_size,
            buffers,
            queue_depth: r.queue_depth,
            uring,
            ring: limits.wrap,
            force: r.replace_previous_recording,
            new_file_size_bytes: r
                .file_size
                .as_deref()
                .map(units::parse_size)
                .transpose()
                .map_err(key("file_size"))?,
            channels: r.channels,
            rate_bytes_per_s,
            sim_drop_every: r.sim_drop_every,
            interleaved,
            memory_mode,
            status_interval: units::parse_duration(&r.status_interval)
                .map_err(key("status_interval"))?,
            index_sync_interval: Duration::from_millis(r.index_sync_ms),
            target_sync,
            quiet: true,
            ..RecordOptions::new(r.targets.clone(), self.index_path(name))
        })
    }
}

impl RecordingSection {
    /// The io_uring options, checked as `dmarec record` checks
    /// `--sqpoll-idle-ms` (1..=60000, only with `--sqpoll`).
    fn uring_options(&self) -> Result<UringOptions> {
        let idle_ms = self.sqpoll_idle_ms.unwrap_or(defaults::SQPOLL_IDLE_MS);
        if self.sqpoll_idle_ms.is_some() && !self.sqpoll {
            bail!("[recording] sqpoll_idle_ms: only with sqpoll = true");
        }
        if !(1..=defaults::SQPOLL_IDLE_MS_MAX).contains(&idle_ms) {
            bail!(
                "[recording] sqpoll_idle_ms: {idle_ms}: 1..={}",
                defaults::SQPOLL_IDLE_MS_MAX
            );
        }
        Ok(UringOptions {
            sqpoll_idle_ms: self.sqpoll.then_some(idle_ms),
            register_ring_fd: self.register_ring_fd,
            iopoll: self.iopoll,
        })
    }
}

/// A scan name: 1..=64 of `A-Z a-z 0-9 . _ -`, not starting with `.`
/// (it names the index file).
pub fn check_scan_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 64 || name.starts_with('.') || !name.chars().all(ok_char) {
        return Err(format!(
            "scan name {name:?}: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[service]
socket = "/run/dmarec/dmarec.sock"
index_dir = "/var/lib/dmarec"
[recording]
targets = ["/dev/sdb"]
"#;

    #[test]
    fn a_minimal_config_takes_the_command_line_defaults() {
        let c: Config = toml::from_str(MINIMAL).unwrap();
        let o = c.record_options("s1", ScanLimits::default()).unwrap();
        assert!(matches!(o.source, SourceChoice::Sim));
        assert_eq!(o.payload_size.bytes(), 512 << 10);
        assert_eq!(o.queue_depth, 8);
        assert_eq!(o.index, PathBuf::from("/var/lib/dmarec/s1.idx"));
        assert!(!o.force && !o.ring && o.quiet);
        assert_eq!(o.status_interval, Duration::from_secs(1));
        assert_eq!(o.index_sync_interval, Duration::from_millis(1000));
        assert_eq!(o.target_sync, TargetSync::Flush);
        assert_eq!(o.memory_mode, MemoryMode::Auto);
        assert_eq!(
            o.buffers,
            crate::auto_buffers(o.payload_size, None, crate::MAX_BUFFERS).0
        );
        assert_eq!(
            (o.channels, o.rate_bytes_per_s, o.sim_drop_every),
            (None, None, 0)
        );
        assert!(c.metrics.listen.is_none() && c.metrics.textfile.is_none());
    }

    #[test]
    fn every_recording_key_reaches_the_recorder() {
        // Each key away from its default: a key ignored (its field left to
        // RecordOptions::new) fails here.
        let text = MINIMAL.replace(
            "targets = [\"/dev/sdb\"]",
            r#"targets = ["/dev/sdb", "/dev/sdc"]
source = "/dev/dmarec9"
file_size = "1G"
payload_size = "64K"
buffers = "100"
queue_depth = 3
sqpoll = true
register_ring_fd = true
channels = 2
channel_layout = "interleaved"
rate = "100"
sim_drop_every = 7
memory = "mmap"
index_sync_ms = 250
target_sync = "dsync"
status_interval = "5s"
replace_previous_recording = true"#,
        );
        let c: Config = toml::from_str(&text).unwrap();
        let limits = ScanLimits {
            duration: Some(Duration::from_secs(5)),
            size_bytes: Some(1 << 30),
            wrap: true,
        };
        let o = c.record_options("s2", limits).unwrap();
        assert!(matches!(&o.source, SourceChoice::Device(p) if p == Path::new("/dev/dmarec9")));
        assert_eq!(
            o.targets,
            [PathBuf::from("/dev/sdb"), PathBuf::from("/dev/sdc")]
        );
        assert_eq!(o.index, PathBuf::from("/var/lib/dmarec/s2.idx"));
        assert_eq!(o.scan.as_deref(), Some("s2"));
        assert_eq!(
            (o.duration, o.size_bytes, o.ring),
            (limits.duration, limits.size_bytes, true)
        );
        assert_eq!(o.new_file_size_bytes, Some(1 << 30));
        assert_eq!(
            (o.payload_size.bytes(), o.buffers, o.queue_depth),
            (64 << 10, 100, 3)
        );
        assert_eq!(o.uring.sqpoll_idle_ms, Some(defaults::SQPOLL_IDLE_MS));
        assert!(o.uring.register_ring_fd && !o.uring.iopoll);
        assert_eq!((o.channels, o.interleaved), (Some(2), true));
        assert_eq!(
            (o.rate_bytes_per_s, o.sim_drop_every),
            (Some(100_000_000), 7)
        );
        assert_eq!(o.memory_mode, MemoryMode::Mmap);
        assert_eq!(o.index_sync_interval, Duration::from_millis(250));
        assert_eq!(o.target_sync, TargetSync::Dsync);
        assert_eq!(o.status_interval, Duration::from_secs(5));
        assert!(o.force && o.quiet && !o.sim_fill_once && o.live.is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (line, key) in [
            ("payload_size = \"3K\"", "payload_size"),
            ("buffers = \"0\"", "buffers"),
            ("memory = \"dma\"", "memory"),
            ("rate = \"fast\"", "rate"),
            ("index_sync_ms = 0", "index_sync_ms"),
            ("sqpoll_idle_ms = 50", "sqpoll_idle_ms"),
            ("sqpoll = true\nsqpoll_idle_ms = 0", "sqpoll_idle_ms"),
            ("sqpoll = true\nsqpoll_idle_ms = 60001", "sqpoll_idle_ms"),
        ] {
            let c: Config = toml::from_str(&format!("{MINIMAL}{line}\n")).unwrap();
            let e = c.record_options("s", ScanLimits::default()).unwrap_err();
            assert!(e.to_string().contains(key), "{line}: {e}");
        }
        let unknown = toml::from_str::<Config>(&format!("{MINIMAL}colour = 1\n"));
        assert!(unknown.unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn the_io_uring_keys_reach_the_recorder() {
        let o = |lines: &str| {
            let c: Config = toml::from_str(&format!("{MINIMAL}{lines}\n")).unwrap();
            c.record_options("s", ScanLimits::default()).unwrap().uring
        };
        assert_eq!(o(""), UringOptions::default());
        assert_eq!(
            o("sqpoll = true\nsqpoll_idle_ms = 50\nregister_ring_fd = true\niopoll = true"),
            UringOptions {
                sqpoll_idle_ms: Some(50),
                register_ring_fd: true,
                iopoll: true
            }
        );
        // As the command line: --sqpoll alone idles 1000 ms.
        assert_eq!(
            o("sqpoll = true").sqpoll_idle_ms,
            Some(defaults::SQPOLL_IDLE_MS)
        );
        assert_eq!(
            o("register_ring_fd = true"),
            UringOptions {
                register_ring_fd: true,
                ..UringOptions::default()
            }
        );
    }

    #[test]
    fn the_limits_of_a_scan_reach_the_recorder() {
        let c: Config = toml::from_str(MINIMAL).unwrap();
        let limits = ScanLimits {
            duration: Some(Duration::from_secs(5)),
            size_bytes: Some(1 << 30),
            wrap: true,
        };
        let o = c.record_options("s", limits).unwrap();
        assert_eq!(o.duration, limits.duration);
        assert_eq!(o.size_bytes, limits.size_bytes);
        assert!(o.ring);
    }

    #[test]
    fn scan_names_are_safe_file_names() {
        for good in ["scan1", "2026-11-30_a.b", &"x".repeat(64)] {
            assert!(check_scan_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(65), "é"] {
            assert!(check_scan_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_packaged_example_config_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/dmarec.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let c: Config = toml::from_str(&text).unwrap();
        c.record_options("scan1", ScanLimits::default()).unwrap();
    }
}
