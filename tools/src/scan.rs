//! Finding a recording's slots without its index: read the 4 KiB header
//! page of every slot location on every member (O_DIRECT, io_uring, several
//! in flight per member) and keep the slots *valid for this recording at
//! their location* (docs/FORMAT.md, [`formats::check::check_header_at`]). In ring mode a location holds the slot
//! of the latest lap: only slot numbers within `capacity` of the newest one
//! are live. Everything else is counted and classified, so a report can say
//! why a slot number is missing.

use crate::stripe::StripeSet;
use crate::uring::{self, FnSink, Reader, Request};
use anyhow::Result;
use formats::check::{self, SlotProblem};
use formats::{FormatError, IndexEntry, SlotHeader, Uuid, SLOT_HEADER_BYTES};
use std::collections::BTreeMap;

/// What a slot location held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    /// A slot of this recording that belongs here and is live.
    Live,
    /// Never written: no slot magic (zeros or foreign data).
    Empty,
    /// A slot of another recording (an older one on the same device).
    OtherRecording,
    /// Slot magic, but the header does not decode (CRC, version, fields).
    DamagedHeader,
    /// A slot of this recording whose number does not belong at this location.
    Misplaced,
    /// A slot of this recording from a ring lap before the live window.
    OlderLap,
    /// The member holding this location was not given.
    Unavailable,
    /// The read failed (I/O error).
    ReadError,
    /// Not in the index (the index was used, the location was not read).
    NotInIndex,
    /// Valid header, payload CRC mismatch, among the newest slots (a write
    /// cut short by a crash).
    Torn,
}

impl Found {
    /// The snake_case name, as serde writes the variant (JSON map keys).
    pub fn key(self) -> &'static str {
        match self {
            Found::Live => "live",
            Found::Empty => "empty",
            Found::OtherRecording => "other_recording",
            Found::DamagedHeader => "damaged_header",
            Found::Misplaced => "misplaced",
            Found::OlderLap => "older_lap",
            Found::Unavailable => "unavailable",
            Found::ReadError => "read_error",
            Found::NotInIndex => "not_in_index",
            Found::Torn => "torn",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Found::Live => "live slot",
            Found::Empty => "never written (no slot header)",
            Found::OtherRecording => "holds a slot of another recording",
            Found::DamagedHeader => "slot header damaged",
            Found::Misplaced => "holds a slot of this recording that belongs elsewhere",
            Found::OlderLap => "holds an older ring lap (newer slot not written)",
            Found::Unavailable => "member missing",
            Found::ReadError => "read error",
            Found::NotInIndex => "not in the index (unwritten or destroyed)",
            Found::Torn => "torn (payload CRC mismatch at the newest slots)",
        }
    }
}

/// A run of consecutive slot numbers missing from the live window, with
/// what their location held.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MissingRun {
    pub first_slot_seq: u64,
    pub last_slot_seq: u64,
    pub found: Found,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScanReport {
    /// What the slot locations held: [`Found::key`] -> count.
    pub locations_read: u64,
    pub live_slots: u64,
    pub counts: BTreeMap<String, u64>,
    /// Recording UUIDs of other recordings' slots, with how many.
    pub other_recordings: BTreeMap<String, u64>,
    /// Damaged headers: (member, offset, error), the first few.
    pub damaged_headers: Vec<DamagedHeader>,
    /// Slot numbers missing between the oldest live slot and the newest.
    pub missing: Vec<MissingRun>,
    pub newest_slot_seq: Option<u64>,
    pub oldest_slot_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DamagedHeader {
    pub device_index: usize,
    pub offset_bytes: u64,
    pub error: String,
}

/// Most damaged headers listed by name (all are counted).
pub const MAX_LISTED_DAMAGED: usize = 1000;

impl ScanReport {
    /// `live 1000, empty 24` in the order of [`Found`]'s keys (text reports).
    pub fn counts_text(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(key, n)| format!("{} {n}", key.replace('_', " ")))
            .collect();
        parts.join(", ")
    }
}

/// What a scan found.
pub struct Scan {
    /// The live slots as index entries, sorted by slot_seq.
    pub entries: Vec<IndexEntry>,
    pub report: ScanReport,
    /// What each position `0..capacity` held.
    pub found: Vec<Found>,
}

/// Reads every header page of every present member. `progress` is called
/// with the locations read so far.
pub fn scan(stripe: &StripeSet, progress: &mut dyn FnMut(u64)) -> Result<Scan> {
    let layout = &stripe.layout;
    let capacity = layout.capacity_slots();
    let uuid = stripe.recording_uuid();
    let files: Vec<Option<&std::fs::File>> = stripe
        .members
        .iter()
        .map(|m| m.as_ref().map(|t| &t.file))
        .collect();
    // found[position] for every position 0..capacity; header of live candidates.
    let mut found = vec![Found::Unavailable; capacity as usize];
    let mut candidates: Vec<(u64, SlotHeader, u64)> = Vec::new();
    let mut report = ScanReport::default();
    let mut other: BTreeMap<Uuid, u64> = BTreeMap::new();
    // The positions of the scan's region, in slot order: round-robin over
    // the members, so every member has reads in flight.
    let mut requests = (0..capacity)
        .map(|position| layout.locate(position).expect("a position of the region"))
        .filter(|loc| files[loc.device_index].is_some())
        .map(|loc| Request {
            device_index: loc.device_index,
            offset_bytes: loc.offset_bytes,
            len_bytes: SLOT_HEADER_BYTES,
            tag: loc.device_slot,
        });
    let buffers = blockio::ReadBudget::SCAN.buffer_count(SLOT_HEADER_BYTES, files.len());
    let mut reader = Reader::new(&files, SLOT_HEADER_BYTES, buffers)?;
    let mut read = 0u64;
    reader.run(
        &mut requests,
        &mut FnSink(|page: &[u8], c: uring::Completion| {
            let d = c.request.device_index;
            let device_slot = c.request.tag;
            let position = layout
                .position_of(d, device_slot)
                .expect("scanned location is in the layout");
            read += 1;
            if read.is_multiple_of(4096) {
                progress(read);
            }
            let class = match c.result {
                Err(_) => Found::ReadError,
                Ok(()) => match check::check_header_at(page, uuid, layout, d, device_slot) {
                    Ok(h) => {
                        candidates.push((h.slot_seq, h, c.request.offset_bytes));
                        Found::Live
                    }
                    Err(SlotProblem::OtherRecording { recording_uuid, .. }) => {
                        *other.entry(recording_uuid).or_insert(0) += 1;
                        Found::OtherRecording
                    }
                    Err(SlotProblem::Misplaced { .. }) => Found::Misplaced,
                    Err(SlotProblem::BadHeader(FormatError::BadMagic { .. })) => Found::Empty,
                    Err(e) => {
                        if report.damaged_headers.len() < MAX_LISTED_DAMAGED {
                            report.damaged_headers.push(DamagedHeader {
                                device_index: d,
                                offset_bytes: c.request.offset_bytes,
                                error: match e {
                                    SlotProblem::BadHeader(format) => format.to_string(),
                                    other => other.to_string(),
                                },
                            });
                        }
                        Found::DamagedHeader
                    }
                },
            };
            found[position as usize] = class;
            Ok(())
        }),
    )?;
    progress(read);
    report.locations_read = read;
    candidates.sort_unstable_by_key(|c| c.0);
    let newest = candidates.last().map(|c| c.0);
    // The live window: the last `capacity` slot numbers (ring), else all.
    let oldest_live = newest
        .map(|n| (n + 1).saturating_sub(capacity))
        .unwrap_or(0);
    let mut entries = Vec::with_capacity(candidates.len());
    for (seq, h, offset) in &candidates {
        if *seq < oldest_live {
            found[(seq % capacity) as usize] = Found::OlderLap;
        } else {
            entries.push(IndexEntry::from_header(h, *offset));
        }
    }
    report.live_slots = entries.len() as u64;
    report.newest_slot_seq = newest;
    report.oldest_slot_seq = entries.first().map(|e| e.slot_seq);
    if let Some(newest) = newest {
        report.missing = missing_runs(&entries, oldest_live, newest, |seq| {
            found[(seq % capacity) as usize]
        });
    }
    for f in &found {
        *report.counts.entry(f.key().to_string()).or_insert(0) += 1;
    }
    report.other_recordings = other.into_iter().map(|(u, n)| (u.to_string(), n)).collect();
    Ok(Scan {
        entries,
        report,
        found,
    })
}

/// Runs of slot numbers in `first..=last` that `entries` (sorted) lack,
/// split where the location's finding changes.
pub fn missing_runs(
    entries: &[IndexEntry],
    first: u64,
    last: u64,
    found: impl Fn(u64) -> Found,
) -> Vec<MissingRun> {
    missing_runs_of(entries.iter().map(|e| e.slot_seq), first, last, found)
}

/// [`missing_runs`] over the slot numbers (sorted) of any sequence, so a
/// caller walking a mapped index needs no copy of its entries.
pub fn missing_runs_of(
    slot_seqs: impl IntoIterator<Item = u64>,
    first: u64,
    last: u64,
    found: impl Fn(u64) -> Found,
) -> Vec<MissingRun> {
    let mut runs: Vec<MissingRun> = Vec::new();
    // Every slot number is pushed at most once: at most this many runs.
    let max_runs = last.saturating_sub(first).saturating_add(1);
    let mut push = |seq: u64| {
        assert!(
            (runs.len() as u64) < max_runs,
            "missing_runs: more runs than slot numbers in {first}..={last}"
        );
        let f = found(seq);
        match runs.last_mut() {
            Some(r) if r.last_slot_seq + 1 == seq && r.found == f => r.last_slot_seq = seq,
            _ => runs.push(MissingRun {
                first_slot_seq: seq,
                last_slot_seq: seq,
                found: f,
            }),
        }
    };
    let mut expect = first;
    for slot_seq in slot_seqs {
        // Bounded by the live window: at most `capacity` numbers in all.
        while expect < slot_seq {
            push(expect);
            expect += 1;
        }
        expect = slot_seq + 1;
    }
    while expect <= last {
        push(expect);
        expect += 1;
    }
    runs
}

#[cfg(test)]
mod key_tests {
    use super::Found;

    #[test]
    fn keys_are_serdes_snake_case_spelling() {
        let all = [
            Found::Live,
            Found::Empty,
            Found::OtherRecording,
            Found::DamagedHeader,
            Found::Misplaced,
            Found::OlderLap,
            Found::Unavailable,
            Found::ReadError,
            Found::NotInIndex,
            Found::Torn,
        ];
        for f in all {
            assert_eq!(serde_json::to_value(f).unwrap(), f.key(), "{f:?}");
        }
    }
}
