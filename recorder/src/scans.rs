//! Scans on a stripe set (docs/FORMAT.md "Scans"): which scan a recording
//! run becomes, and the crash-safe updates of the scan table around it.
//!
//! [`plan`] decides, before anything is written, whether the run starts a new
//! set (blank targets or `--force`) or appends a scan after the set's last
//! one, and refuses what cannot be (a taken name, a ring scan to follow, a
//! full set, another geometry). [`begin`] makes the new scan's `live` entry
//! durable on every member before the first slot write; [`end`] writes its
//! end after the final sync round. A `live` scan left by a crash is sealed
//! first ([`seal_live`]), so a new scan never overwrites its slots.

use crate::target::{read_aligned, write_aligned, Target};
use anyhow::{bail, Context, Result};
use formats::scan::{self, check_name, ScanEntry, ScanState, ScanTable, SCAN_TABLE_COPY_BYTES};
use formats::{Layout, Superblock, Uuid, SUPERBLOCK_BYTES};

/// Most consecutive positions without a slot of a live scan that sealing
/// reads past its last slot found: the recorder never has more buffers in
/// flight ([`crate::MAX_BUFFERS`]), so no slot of the scan lies further on.
pub const SEAL_MISS_RUN_SLOTS: u64 = crate::MAX_BUFFERS as u64;

/// A set that has no room for another scan: `dmarec` exits 3 ("target full").
#[derive(Debug)]
pub struct SetFull(pub String);

impl std::fmt::Display for SetFull {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for SetFull {}

/// What the targets already hold, read before the run starts.
pub enum Existing {
    /// Blank targets, or `--force`: a new set.
    NewSet,
    /// A set with a scan table, targets put in member order.
    Set {
        superblock: Superblock,
        table: ScanTable,
    },
}

/// Reads member superblocks and the scan table for an append (`--scan`
/// without `--force`), and puts `targets` in member order.
pub fn read_existing(targets: &mut Vec<Target>, force: bool) -> Result<Existing> {
    let mut found = Vec::with_capacity(targets.len());
    for t in targets.iter() {
        let head = read_aligned(&t.file, 0, SUPERBLOCK_BYTES)?;
        found.push(Superblock::decode(&head).ok());
    }
    if force || found.iter().all(Option::is_none) {
        return Ok(Existing::NewSet);
    }
    let Some(Some(first)) = found.iter().find(|f| f.is_some()).cloned() else {
        unreachable!("some target holds a superblock");
    };
    if !first.has_scan_table() {
        bail!(
            "target {} holds a format 1.{} dmarec recording (one scan, no scan table): scans cannot be appended to it; pass --force to erase it and start a new set",
            targets[0].path.display(),
            first.version_minor
        );
    }
    check_members(targets, &found, &first)?;
    let mut ordered: Vec<(u16, Target)> = found
        .iter()
        .map(|sb| sb.as_ref().map_or(u16::MAX, |sb| sb.device_index))
        .zip(targets.drain(..))
        .collect();
    ordered.sort_by_key(|(device_index, _)| *device_index);
    targets.extend(ordered.into_iter().map(|(_, t)| t));
    let superblock = Superblock {
        device_index: 0,
        ..first
    };
    let table = read_table(targets, &superblock)?;
    Ok(Existing::Set { superblock, table })
}

/// Every member of the set given once, and nothing else.
fn check_members(
    targets: &[Target],
    found: &[Option<Superblock>],
    first: &Superblock,
) -> Result<()> {
    let mut seen = vec![false; first.members.len()];
    for (t, sb) in targets.iter().zip(found) {
        let Some(sb) = sb
            .as_ref()
            .filter(|sb| sb.recording_uuid == first.recording_uuid)
        else {
            bail!(
                "target {} is not a member of set {} (the other targets' set): to append a scan give exactly that set's {} members; --force starts a new set on these targets",
                t.path.display(),
                first.recording_uuid,
                first.members.len()
            );
        };
        seen[sb.device_index as usize] = true;
    }
    if targets.len() != first.members.len() || seen.iter().any(|s| !s) {
        bail!(
            "set {} has {} members, {} targets were given: to append a scan give every member once",
            first.recording_uuid,
            first.members.len(),
            targets.len()
        );
    }
    Ok(())
}

/// The newest valid scan table copy on the members (both copies of each).
pub fn read_table(targets: &[Target], sb: &Superblock) -> Result<ScanTable> {
    let mut copies = Vec::with_capacity(2 * targets.len());
    for (i, t) in targets.iter().enumerate() {
        for copy in 0..2 {
            let bytes = read_aligned(
                &t.file,
                scan::copy_offset_bytes(copy),
                SCAN_TABLE_COPY_BYTES,
            )
            .with_context(|| format!("target {}: reading the scan table", t.path.display()))?;
            if bytes[..8] != [0; 8] {
                // A copy never written is zero; anything else is checked.
                copies.push((
                    format!("target {} (member {i}) copy {copy}", t.path.display()),
                    bytes,
                ));
            }
        }
    }
    let choice = scan::choose_table(
        sb.recording_uuid,
        copies.iter().map(|(what, b)| (what.clone(), &b[..])),
    );
    for damage in &choice.damaged_copies {
        eprintln!("dmarec: note: scan table {damage} (an update cut short by a crash leaves the other copy)");
    }
    let Some(table) = choice.table else {
        bail!(
            "set {}: no valid scan table on any member (both copies damaged); the scans cannot be located, so nothing can be appended: pass --force to start a new set",
            sb.recording_uuid
        );
    };
    Ok(table)
}

/// The scan this run records, and where.
pub struct Plan {
    /// The table to write before the first slot: the new scan, live, last.
    pub table: ScanTable,
    /// The new set's superblock is written first (blank targets, --force).
    pub new_set: bool,
    pub layout: Layout,
}

impl Plan {
    pub fn scan(&self) -> &ScanEntry {
        self.table.scans.last().expect("a plan has its scan")
    }
}

/// Decides the new scan: its name (`name`, or `scan-N`), UUID and region,
/// after the last scan of `table` (none for a new set). Refuses a taken
/// name, a set whose last scan is a ring or live (seal it first), a full
/// table or set.
pub fn plan(
    sb: &Superblock,
    table: Option<ScanTable>,
    name: Option<&str>,
    ring: bool,
    uuid: Uuid,
    start_unix_ns: u64,
    time_anchor: Option<formats::time::TimeAnchor>,
) -> Result<Plan> {
    let new_set = table.is_none();
    let mut table = table.unwrap_or(ScanTable {
        set_uuid: sb.recording_uuid,
        generation: 0,
        scans: Vec::new(),
    });
    let name = name.map_or_else(|| format!("scan-{}", table.scans.len() + 1), str::to_string);
    check_name(&name).map_err(|e| crate::UsageError(format!("--scan {e}")))?;
    check_can_append(sb, &table, &name)?;
    let set_layout = Layout::from_superblock(sb);
    let capacity = set_layout.set_capacity_slots();
    let first_slot = table.end_slot();
    let left = capacity.saturating_sub(first_slot);
    if left == 0 {
        bail!(SetFull(format!(
            "target full: set {} has no slot left ({} of {capacity} slots used by {} scans, 0 bytes left); pass --force to erase it",
            sb.recording_uuid,
            first_slot,
            table.scans.len()
        )));
    }
    table.generation += 1;
    table.scans.push(ScanEntry {
        uuid,
        name,
        first_slot,
        slot_count: 0,
        start_unix_ns,
        end_unix_ns: 0,
        payload_bytes: 0,
        buffers_lost: 0,
        state: ScanState::Live,
        flags: if ring { scan::SCAN_FLAG_RING } else { 0 },
        time_anchor,
    });
    table.validate(Some(capacity))?;
    Ok(Plan {
        layout: set_layout.region(first_slot, left, ring),
        table,
        new_set,
    })
}

/// Refuses a taken name, a set whose last scan is a ring, a full table.
fn check_can_append(sb: &Superblock, table: &ScanTable, name: &str) -> Result<()> {
    if let Some(s) = table.scans.iter().find(|s| s.name == name) {
        bail!(
            "set {}: a scan named {name:?} exists already (uuid {}); scan names are unique in a set: choose another --scan NAME",
            sb.recording_uuid,
            s.uuid
        );
    }
    if let Some(last) = table.scans.last() {
        assert_ne!(
            last.state,
            ScanState::Live,
            "a live last scan is sealed before planning"
        );
        if last.ring() {
            bail!(
                "set {}: its last scan {:?} is a ring scan, which owns the rest of the set: nothing can follow it; pass --force to erase the set",
                sb.recording_uuid,
                last.name
            );
        }
    }
    if table.scans.len() >= scan::MAX_SCANS {
        bail!(SetFull(format!(
            "set {}: the scan table is full ({} scans); pass --force to erase the set",
            sb.recording_uuid,
            scan::MAX_SCANS
        )));
    }
    Ok(())
}

/// Writes `table` to its copy on every member and flushes each: when this
/// returns, the table is durable (docs/FORMAT.md "Crash-safe update").
pub fn write_table(targets: &[Target], table: &ScanTable) -> Result<()> {
    let bytes = table.encode();
    let offset = scan::copy_offset_bytes(table.copy());
    for t in targets {
        write_aligned(&t.file, offset, &bytes)
            .and_then(|_| t.file.sync_data().map_err(Into::into))
            .with_context(|| {
                format!(
                    "target {}: writing scan table generation {}",
                    t.path.display(),
                    table.generation
                )
            })?;
    }
    Ok(())
}

/// The end of the run's scan: its counts and state, in the next generation.
pub fn ended(table: ScanTable, end: ScanEnd) -> ScanTable {
    let mut table = with_end(table, end);
    table.generation += 1;
    table
}

/// The table with its live last scan ended, same generation.
fn with_end(mut table: ScanTable, end: ScanEnd) -> ScanTable {
    let last = table.scans.last_mut().expect("the run's scan");
    assert_eq!(last.state, ScanState::Live, "only a live scan ends");
    last.slot_count = end.slot_count;
    last.end_unix_ns = end.end_unix_ns;
    last.payload_bytes = end.payload_bytes;
    last.buffers_lost = end.buffers_lost;
    last.state = end.state;
    table
}

#[derive(Debug, Clone, Copy)]
pub struct ScanEnd {
    pub slot_count: u64,
    pub end_unix_ns: u64,
    pub payload_bytes: u64,
    pub buffers_lost: u64,
    pub state: ScanState,
}

/// Seals a live last scan left by a crash: reads its slot headers from its
/// first position on until [`SEAL_MISS_RUN_SLOTS`] positions in a row hold
/// none of its slots (or the set ends), and returns the table with the scan
/// `interrupted` after the last slot found. Not written, same generation:
/// it goes to disk in one update with the next scan's entry (the two copies
/// alternate, so each write is exactly one generation newer).
pub fn seal_live(targets: &[Target], sb: &Superblock, table: ScanTable) -> Result<ScanTable> {
    let last = table.scans.last().expect("a table has scans").clone();
    assert_eq!(last.state, ScanState::Live);
    let set_layout = Layout::from_superblock(sb);
    let region = last.region_slots(set_layout.set_capacity_slots());
    let layout = set_layout.region(last.first_slot, region, false);
    let mut end = ScanEnd {
        slot_count: 0,
        end_unix_ns: 0,
        payload_bytes: 0,
        buffers_lost: 0,
        state: ScanState::Interrupted,
    };
    let mut misses = 0u64;
    // Bounded by the region and by the run of misses.
    for n in 0..region {
        if misses >= SEAL_MISS_RUN_SLOTS {
            break;
        }
        let loc = layout.locate(n).expect("inside the region");
        let t = &targets[loc.device_index];
        let page = read_aligned(&t.file, loc.offset_bytes, formats::SLOT_HEADER_BYTES)?;
        match formats::check::check_header(&page, last.uuid) {
            Ok(h) if h.slot_seq == n => {
                misses = 0;
                end.slot_count = n + 1;
                end.end_unix_ns = h.host_timestamp_ns;
                end.payload_bytes += h.payload_bytes_used as u64;
                end.buffers_lost += h.gap_count;
            }
            _ => misses += 1,
        }
    }
    eprintln!(
        "dmarec: scan {:?} (uuid {}) was left live by a crash: sealed as interrupted after {} slots",
        last.name, last.uuid, end.slot_count
    );
    Ok(with_end(table, end))
}
