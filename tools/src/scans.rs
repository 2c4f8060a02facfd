//! The scans of a stripe set (docs/FORMAT.md "Scans"): read from the scan
//! table's copies on the members given (the newest valid generation), one
//! selected by `--scan NAME|UUID`, and `dmaplay list`. A format 1.0 set
//! holds one scan without a table ("untracked").

use crate::target::{read_exact_direct, Target};
use anyhow::{bail, Result};
use formats::scan::{self, SCAN_TABLE_COPY_BYTES};
use formats::{Layout, ScanEntry, ScanState, Superblock, Uuid};
use serde::Serialize;

/// One scan of the set, numbered from 1 in table order.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanInfo {
    pub number: usize,
    pub entry: ScanEntry,
    /// False for the one scan of a format 1.0 set (no table: no name,
    /// state or end recorded).
    pub tracked: bool,
}

impl ScanInfo {
    pub fn state(&self) -> &'static str {
        if self.tracked {
            self.entry.state.as_str()
        } else {
            "untracked"
        }
    }

    /// Whether the table records the scan's end (counts and duration).
    pub fn ended(&self) -> bool {
        self.tracked && self.entry.state != ScanState::Live
    }

    /// The layout of the scan's region within the set's `set_layout`.
    pub fn layout(&self, set_layout: &Layout) -> Layout {
        let e = &self.entry;
        let region = e.region_slots(set_layout.set_capacity_slots());
        set_layout.region(e.first_slot, region, e.ring())
    }
}

/// The scans of a set and what reading the table found.
#[derive(Debug, Clone, PartialEq)]
pub struct Scans {
    pub scans: Vec<ScanInfo>,
    /// Generation of the table used (0: a 1.0 set).
    pub generation: u64,
    /// Copies that failed their checks (torn update or damage), one line each.
    pub damaged_copies: Vec<String>,
}

/// Reads the scans of the set whose member-0 superblock is `sb` from the
/// members present.
pub fn read_scans(members: &[Option<Target>], sb: &Superblock) -> Result<Scans> {
    if !sb.has_scan_table() {
        return Ok(Scans {
            scans: vec![legacy_scan(sb)],
            generation: 0,
            damaged_copies: Vec::new(),
        });
    }
    let mut copies = Vec::with_capacity(2 * members.len());
    for (i, t) in members.iter().enumerate() {
        let Some(t) = t else { continue };
        for copy in 0..2 {
            let at = scan::copy_offset_bytes(copy);
            let bytes = read_exact_direct(&t.file, at, SCAN_TABLE_COPY_BYTES, &t.path)?;
            if bytes[..8] != [0; 8] {
                // A copy never written is zero; anything else is checked.
                copies.push((
                    format!("member {i} ({}) copy {copy}", t.path.display()),
                    bytes,
                ));
            }
        }
    }
    let choice = scan::choose_table(
        sb.recording_uuid,
        copies.iter().map(|(what, b)| (what.clone(), &b[..])),
    );
    let Some(table) = choice.table else {
        bail!(
            "set {}: no valid scan table on the members given ({}); the scans cannot be located",
            sb.recording_uuid,
            if choice.damaged_copies.is_empty() {
                "no copy written".to_string()
            } else {
                choice.damaged_copies.join("; ")
            }
        );
    };
    let capacity = Layout::from_superblock(sb).set_capacity_slots();
    table.validate(Some(capacity))?;
    Ok(Scans {
        scans: table
            .scans
            .into_iter()
            .enumerate()
            .map(|(i, entry)| ScanInfo {
                number: i + 1,
                entry,
                tracked: true,
            })
            .collect(),
        generation: table.generation,
        damaged_copies: choice.damaged_copies,
    })
}

/// The one scan of a format 1.0 set: the recording itself.
fn legacy_scan(sb: &Superblock) -> ScanInfo {
    ScanInfo {
        number: 1,
        entry: ScanEntry {
            uuid: sb.recording_uuid,
            name: "recording".to_string(),
            first_slot: 0,
            slot_count: 0,
            start_unix_ns: sb.created_unix_ns,
            end_unix_ns: 0,
            payload_bytes: 0,
            buffers_lost: 0,
            state: ScanState::Live,
            flags: if sb.ring() {
                formats::SCAN_FLAG_RING
            } else {
                0
            },
            time_anchor: sb.time_anchor,
        },
        tracked: false,
    }
}

impl Scans {
    /// The scan `wanted` names (its name, or its UUID), or without it the
    /// only or newest scan; the second value says whether the choice was a
    /// default among several (to be said aloud).
    pub fn select(&self, wanted: Option<&str>) -> Result<(&ScanInfo, bool)> {
        let newest = self.scans.last().expect("a set has a scan");
        let Some(wanted) = wanted else {
            return Ok((newest, self.scans.len() > 1));
        };
        let by_uuid = Uuid::parse(wanted);
        let found = self
            .scans
            .iter()
            .find(|s| s.entry.name == wanted || Some(s.entry.uuid) == by_uuid);
        match found {
            Some(s) => Ok((s, false)),
            None => {
                let names: Vec<String> = self
                    .scans
                    .iter()
                    .map(|s| format!("{:?} ({})", s.entry.name, s.entry.uuid))
                    .collect();
                bail!(
                    "--scan {wanted:?}: no such scan in this set; its scans: {} (`dmaplay list` shows them)",
                    names.join(", ")
                )
            }
        }
    }
}

/// `dmaplay list --json` (docs/JSON.md).
#[derive(Debug, Serialize)]
pub struct ListReport {
    pub schema_version: u32,
    pub set_uuid: String,
    pub format_version: String,
    pub table_generation: u64,
    pub damaged_table_copies: Vec<String>,
    pub capacity_slots: u64,
    pub slot_bytes: u64,
    /// Set positions after the last scan (none after a live or ring scan,
    /// which owns the rest of the set).
    pub slots_left: u64,
    pub bytes_left: u64,
    pub scans: Vec<ListedScan>,
}

#[derive(Debug, Serialize)]
pub struct ListedScan {
    pub number: usize,
    pub name: String,
    pub uuid: String,
    pub state: &'static str,
    pub ring: bool,
    pub start: String,
    pub start_unix_ns: u64,
    /// From the start to the last slot; null while the end is not recorded.
    pub duration_s: Option<f64>,
    pub first_slot: u64,
    /// Slot numbers used; null while the end is not recorded.
    pub slot_count: Option<u64>,
    pub payload_bytes: Option<u64>,
    /// Card buffers lost; null while the end is not recorded.
    pub buffers_lost: Option<u64>,
}

pub const LIST_SCHEMA_VERSION: u32 = 1;

pub fn list(stripe: &crate::stripe::StripeSet) -> ListReport {
    let sb = &stripe.superblock;
    let capacity = stripe.set_layout.set_capacity_slots();
    let last = stripe.scans.scans.last().expect("a set has a scan");
    let slots_left = if last.ended() && !last.entry.ring() {
        capacity.saturating_sub(last.entry.first_slot + last.entry.slot_count)
    } else {
        0
    };
    let scans = stripe.scans.scans.iter().map(listed).collect();
    ListReport {
        schema_version: LIST_SCHEMA_VERSION,
        set_uuid: sb.recording_uuid.to_string(),
        format_version: format!("{}.{}", formats::FORMAT_VERSION_MAJOR, sb.version_minor),
        table_generation: stripe.scans.generation,
        damaged_table_copies: stripe.scans.damaged_copies.clone(),
        capacity_slots: capacity,
        slot_bytes: stripe.set_layout.slot_bytes(),
        slots_left,
        bytes_left: slots_left * stripe.set_layout.slot_bytes(),
        scans,
    }
}

fn listed(s: &ScanInfo) -> ListedScan {
    let e = &s.entry;
    let ended = s.ended();
    let duration_s = (ended && e.end_unix_ns >= e.start_unix_ns)
        .then(|| (e.end_unix_ns - e.start_unix_ns) as f64 / 1e9);
    ListedScan {
        number: s.number,
        name: e.name.clone(),
        uuid: e.uuid.to_string(),
        state: s.state(),
        ring: e.ring(),
        start: formats::time::rfc3339_utc(e.start_unix_ns),
        start_unix_ns: e.start_unix_ns,
        duration_s,
        first_slot: e.first_slot,
        slot_count: ended.then_some(e.slot_count),
        payload_bytes: ended.then_some(e.payload_bytes),
        buffers_lost: ended.then_some(e.buffers_lost),
    }
}

impl ListReport {
    pub fn text(&self) -> String {
        let mut s = format!(
            "set {} (format {}): {} scans, {} slots left of {} ({} bytes)\n",
            self.set_uuid,
            self.format_version,
            self.scans.len(),
            self.slots_left,
            self.capacity_slots,
            self.bytes_left
        );
        for d in &self.damaged_table_copies {
            s += &format!("  note: scan table {d}\n");
        }
        s += &format!(
            "  {:>3}  {:<20} {:<36}  {:<30} {:>10} {:>14} {:>8}  {}\n",
            "#", "name", "uuid", "start", "duration_s", "payload_bytes", "lost", "state"
        );
        let unknown = || "-".to_string();
        for c in &self.scans {
            s += &format!(
                "  {:>3}  {:<20} {:<36}  {:<30} {:>10} {:>14} {:>8}  {}{}\n",
                c.number,
                c.name,
                c.uuid,
                c.start,
                c.duration_s.map_or_else(unknown, |d| format!("{d:.3}")),
                c.payload_bytes.map_or_else(unknown, |b| b.to_string()),
                c.buffers_lost.map_or_else(unknown, |b| b.to_string()),
                c.state,
                if c.ring { " (ring)" } else { "" }
            );
        }
        if self.scans.iter().any(|c| c.state == "live") {
            s += "  live: no end recorded (being recorded now, or cut by a crash: `dmaplay reindex --scan NAME` indexes it up to the crash)\n";
        }
        s
    }
}
