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
use formats::{FormatError, IndexEntry, Uuid, SLOT_HEADER_BYTES};
use std::collections::{BTreeMap, BTreeSet};

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

/// What each slot location (position `0..capacity`) held when it was read,
/// as runs: a valid slot of this recording counts as [`Found::Live`] here
/// (whether it is live depends on the newest slot, known at the end). A
/// healthy recording has a few runs, so this stays small at any size.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// (first position, finding) of each run; a run ends where the next starts.
    runs: Vec<(u64, Found)>,
    /// Positions recorded so far (the next one expected).
    end: u64,
}

impl Findings {
    /// Records `found` at `position` (increasing); positions skipped since
    /// the last one were not read: their member is missing.
    fn record(&mut self, position: u64, found: Found) {
        assert!(position >= self.end, "positions recorded in order");
        if position > self.end {
            self.push(self.end, Found::Unavailable);
        }
        self.push(position, found);
        self.end = position + 1;
    }

    fn push(&mut self, position: u64, found: Found) {
        if self.runs.last().is_none_or(|&(_, last)| last != found) {
            self.runs.push((position, found));
        }
    }

    /// Ends the record at `capacity` positions.
    fn close(&mut self, capacity: u64) {
        if capacity > self.end {
            self.push(self.end, Found::Unavailable);
        }
        self.end = capacity;
    }

    /// What position `position` held when read.
    pub fn at(&self, position: u64) -> Found {
        assert!(position < self.end, "position {position} beyond the scan");
        let run = self.runs.partition_point(|&(first, _)| first <= position);
        self.runs[run - 1].1
    }

    /// Positions per finding, [`Found::key`] -> count (present ones only).
    fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        let ends = self.runs.iter().skip(1).map(|r| r.0).chain([self.end]);
        for (&(first, found), end) in self.runs.iter().zip(ends) {
            *counts.entry(found.key().to_string()).or_insert(0) += end - first;
        }
        counts
    }

    /// A slot number of the live window the index lacks: what its location
    /// holds. A valid slot there (read as live) is one from an older lap,
    /// or torn (`torn`: positions of slots found torn afterwards).
    pub fn of_missing(&self, seq: u64, capacity: u64, torn: &BTreeSet<u64>) -> Found {
        let position = seq % capacity;
        match self.at(position) {
            Found::Live if torn.contains(&position) => Found::Torn,
            Found::Live => Found::OlderLap,
            other => other,
        }
    }
}

/// What reading every header page found, before the live window is known.
pub struct Headers {
    /// locations_read, other_recordings and damaged_headers filled in.
    pub report: ScanReport,
    pub findings: Findings,
    /// Valid slots found (each was emitted), the first and the highest
    /// slot number, and whether the slot numbers grew in location order.
    pub valid: u64,
    pub first_seq: Option<u64>,
    pub newest: Option<u64>,
    pub increasing: bool,
}

impl Headers {
    /// The oldest slot number of the live window: the last `capacity`
    /// numbers up to the newest (ring), else 0.
    pub fn oldest_live(&self, capacity: u64) -> u64 {
        self.newest
            .map(|n| (n + 1).saturating_sub(capacity))
            .unwrap_or(0)
    }

    /// Whether the slots in location order are the live ones in slot order
    /// (no ring wrap, no older lap): what was emitted is the index.
    pub fn emitted_in_slot_order(&self, capacity: u64) -> bool {
        self.increasing
            && self
                .first_seq
                .is_none_or(|first| first >= self.oldest_live(capacity))
    }

    /// Fills in the rest of the report from the live slots (`live`, the
    /// oldest `oldest`) and their slot numbers in order (`live_seqs`), with
    /// `older_lap` valid slots left out as older than the live window.
    pub fn finish(
        mut self,
        capacity: u64,
        live: u64,
        oldest: Option<u64>,
        live_seqs: impl IntoIterator<Item = u64>,
    ) -> (ScanReport, Findings) {
        let older_lap = self.valid - live;
        let mut counts = self.findings.counts();
        if older_lap > 0 {
            let key = Found::Live.key().to_string();
            let live_positions = counts.get(&key).copied().unwrap_or(0) - older_lap;
            if live_positions == 0 {
                counts.remove(&key);
            } else {
                counts.insert(key, live_positions);
            }
            *counts.entry(Found::OlderLap.key().into()).or_insert(0) += older_lap;
        }
        let oldest_live = self.oldest_live(capacity);
        let r = &mut self.report;
        r.counts = counts;
        r.live_slots = live;
        r.newest_slot_seq = self.newest;
        r.oldest_slot_seq = oldest;
        if let Some(newest) = self.newest {
            let none = BTreeSet::new();
            let findings = &self.findings;
            r.missing = missing_runs_of(live_seqs, oldest_live, newest, |seq| {
                findings.of_missing(seq, capacity, &none)
            });
        }
        (self.report, self.findings)
    }
}

/// What a scan found.
pub struct Scan {
    /// The live slots as index entries, sorted by slot_seq.
    pub entries: Vec<IndexEntry>,
    pub report: ScanReport,
    /// What each position `0..capacity` held.
    pub findings: Findings,
}

/// Reads every header page of every present member and collects the live
/// slots ([`scan_headers`]). `progress` is called with the locations read
/// so far.
pub fn scan(stripe: &StripeSet, progress: &mut dyn FnMut(u64)) -> Result<Scan> {
    let capacity = stripe.layout.capacity_slots();
    let mut entries = Vec::new();
    let headers = scan_headers(stripe, progress, &mut |e| {
        entries.push(e);
        Ok(())
    })?;
    entries.sort_unstable_by_key(|e| e.slot_seq);
    let oldest_live = headers.oldest_live(capacity);
    entries.retain(|e| e.slot_seq >= oldest_live);
    let oldest = entries.first().map(|e| e.slot_seq);
    let seqs = entries.iter().map(|e| e.slot_seq);
    let (report, findings) = headers.finish(capacity, entries.len() as u64, oldest, seqs);
    Ok(Scan {
        entries,
        report,
        findings,
    })
}

/// Reads every header page of every present member, in location order,
/// and emits each valid slot of this recording as an index entry, in that
/// order (in ring mode older laps too: [`Headers::oldest_live`] says which
/// are live). Keeps no entry itself.
pub fn scan_headers(
    stripe: &StripeSet,
    progress: &mut dyn FnMut(u64),
    emit: &mut dyn FnMut(IndexEntry) -> Result<()>,
) -> Result<Headers> {
    let layout = &stripe.layout;
    let capacity = layout.capacity_slots();
    let uuid = stripe.recording_uuid();
    let files: Vec<Option<&std::fs::File>> = stripe
        .members
        .iter()
        .map(|m| m.as_ref().map(|t| &t.file))
        .collect();
    let mut h = Headers {
        report: ScanReport::default(),
        findings: Findings::default(),
        valid: 0,
        first_seq: None,
        newest: None,
        increasing: true,
    };
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
                    Ok(header) => {
                        h.valid += 1;
                        h.first_seq.get_or_insert(header.slot_seq);
                        h.increasing &= h.newest.is_none_or(|n| header.slot_seq > n);
                        h.newest = h.newest.max(Some(header.slot_seq));
                        emit(IndexEntry::from_header(&header, c.request.offset_bytes))?;
                        Found::Live
                    }
                    Err(SlotProblem::OtherRecording { recording_uuid, .. }) => {
                        *other.entry(recording_uuid).or_insert(0) += 1;
                        Found::OtherRecording
                    }
                    Err(SlotProblem::Misplaced { .. }) => Found::Misplaced,
                    Err(SlotProblem::BadHeader(FormatError::BadMagic { .. })) => Found::Empty,
                    Err(e) => {
                        damaged(&mut h.report, d, c.request.offset_bytes, e);
                        Found::DamagedHeader
                    }
                },
            };
            h.findings.record(position, class);
            Ok(())
        }),
    )?;
    progress(read);
    h.findings.close(capacity);
    h.report.locations_read = read;
    h.report.other_recordings = other.into_iter().map(|(u, n)| (u.to_string(), n)).collect();
    Ok(h)
}

/// Lists a damaged header (the first [`MAX_LISTED_DAMAGED`]).
fn damaged(report: &mut ScanReport, device_index: usize, offset_bytes: u64, e: SlotProblem) {
    if report.damaged_headers.len() < MAX_LISTED_DAMAGED {
        report.damaged_headers.push(DamagedHeader {
            device_index,
            offset_bytes,
            error: match e {
                SlotProblem::BadHeader(format) => format.to_string(),
                other => other.to_string(),
            },
        });
    }
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

#[cfg(test)]
mod findings_tests {
    use super::*;

    fn key_counts(pairs: &[(Found, u64)]) -> BTreeMap<String, u64> {
        pairs
            .iter()
            .map(|(f, n)| (f.key().to_string(), *n))
            .collect()
    }

    /// Positions 0..10: live 0..4, 5 not read (member missing), empty 6..7,
    /// live 8, damaged 9, then closed at 12 (10, 11 not read).
    fn sample() -> Findings {
        let mut f = Findings::default();
        for p in 0..5 {
            f.record(p, Found::Live);
        }
        f.record(6, Found::Empty);
        f.record(7, Found::Empty);
        f.record(8, Found::Live);
        f.record(9, Found::DamagedHeader);
        f.close(12);
        f
    }

    #[test]
    fn findings_are_runs_with_unread_positions_unavailable() {
        let f = sample();
        let at: Vec<Found> = (0..12).map(|p| f.at(p)).collect();
        use Found::*;
        assert_eq!(
            at,
            [
                Live,
                Live,
                Live,
                Live,
                Live,
                Unavailable,
                Empty,
                Empty,
                Live,
                DamagedHeader,
                Unavailable,
                Unavailable
            ]
        );
        assert_eq!(f.runs.len(), 6, "one run per change: {:?}", f.runs);
        assert_eq!(
            f.counts(),
            key_counts(&[(Live, 6), (Unavailable, 3), (Empty, 2), (DamagedHeader, 1)])
        );
        // Closing at the end already reached adds nothing.
        let mut g = f.clone();
        g.close(12);
        assert_eq!(g.runs, f.runs);
        let mut all_read = Findings::default();
        (0..3).for_each(|p| all_read.record(p, Live));
        all_read.close(3);
        assert_eq!(all_read.runs, [(0, Live)]);
        assert_eq!(all_read.counts(), key_counts(&[(Live, 3)]));
    }

    #[test]
    fn a_missing_slot_at_a_valid_slots_location_is_an_older_lap_or_torn() {
        let f = sample();
        let torn: BTreeSet<u64> = [3].into();
        // Capacity 12: slot 15 is at position 3 (torn), 16 at 4 (live: older lap).
        assert_eq!(f.of_missing(15, 12, &torn), Found::Torn);
        assert_eq!(f.of_missing(16, 12, &torn), Found::OlderLap);
        assert_eq!(f.of_missing(18, 12, &torn), Found::Empty);
        assert_eq!(f.of_missing(17, 12, &torn), Found::Unavailable);
    }

    fn headers(valid: u64, first_seq: u64, newest: u64, increasing: bool) -> Headers {
        Headers {
            report: ScanReport::default(),
            findings: sample(),
            valid,
            first_seq: Some(first_seq),
            newest: Some(newest),
            increasing,
        }
    }

    #[test]
    fn the_live_window_and_whether_location_order_is_slot_order() {
        // Capacity 12, newest 20: the live window is 9..=20.
        assert_eq!(headers(6, 12, 20, false).oldest_live(12), 9);
        assert_eq!(headers(6, 0, 5, true).oldest_live(12), 0);
        assert_eq!(headers(6, 0, 11, true).oldest_live(12), 0);
        assert_eq!(headers(6, 0, 12, true).oldest_live(12), 1);
        // Increasing from a live first slot: in order.
        assert!(headers(6, 9, 20, true).emitted_in_slot_order(12));
        // Increasing, but the first is an older lap (8 < 9): not the index.
        assert!(!headers(6, 8, 20, true).emitted_in_slot_order(12));
        assert!(!headers(6, 12, 20, false).emitted_in_slot_order(12));
        let none = Headers {
            first_seq: None,
            newest: None,
            ..headers(0, 0, 0, true)
        };
        assert!(none.emitted_in_slot_order(12));
        assert_eq!(none.oldest_live(12), 0);
    }

    #[test]
    fn finish_counts_older_laps_and_finds_the_missing_runs() {
        // Capacity 12, newest 20 (window 9..=20); 6 valid slots, 5 live:
        // 12, 13, 14, 15 at positions 0..3 and 20 at 8; the slot at
        // position 4 is from an older lap (4).
        let (r, _) = headers(6, 12, 20, false).finish(12, 5, Some(12), [12, 13, 14, 15, 20]);
        use Found::*;
        assert_eq!(
            r.counts,
            key_counts(&[
                (Live, 5),
                (OlderLap, 1),
                (Unavailable, 3),
                (Empty, 2),
                (DamagedHeader, 1)
            ])
        );
        assert_eq!(
            (r.live_slots, r.newest_slot_seq, r.oldest_slot_seq),
            (5, Some(20), Some(12))
        );
        let runs: Vec<(u64, u64, Found)> = r
            .missing
            .iter()
            .map(|m| (m.first_slot_seq, m.last_slot_seq, m.found))
            .collect();
        assert_eq!(
            runs,
            [
                (9, 9, DamagedHeader),
                (10, 11, Unavailable),
                (16, 16, OlderLap),
                (17, 17, Unavailable),
                (18, 19, Empty)
            ]
        );
        // Every valid slot live: no older-lap key.
        let (r, _) = headers(6, 0, 8, true).finish(12, 6, Some(0), [0, 1, 2, 3, 4, 8]);
        assert_eq!(
            r.counts,
            key_counts(&[(Live, 6), (Unavailable, 3), (Empty, 2), (DamagedHeader, 1)])
        );
        // All positions' valid slots older laps but one: live keeps 1.
        let (r, _) = headers(6, 0, 8, true).finish(12, 1, Some(8), [8]);
        assert_eq!(r.counts[Live.key()], 1);
        assert_eq!(r.counts[OlderLap.key()], 5);
    }
}
