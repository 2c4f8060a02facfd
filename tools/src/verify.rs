//! `dmaplay verify`: read every selected slot (O_DIRECT io_uring reads into
//! registered buffers, several per member in flight) and check it: the
//! header decodes, belongs to this recording and this slot number, agrees
//! with the catalog entry, the payload CRC matches, and with `--pattern`
//! the payload is the simulated card's. CRC work runs on worker threads
//! (one per core), so the disks are the limit. Every bad slot is listed:
//! member, offset, slot number, card sequence number, what is wrong. The
//! slot rules are the format's ([`formats::check`]). Without an index (a
//! scan of the headers) verify also checks what the headers imply about
//! each other: the card_seq/gap_count chain, the round-robin channel rule,
//! card time never going back. Every member's backup superblock is checked
//! against its primary, and its reserved area (4 KiB .. 1 MiB) for zeros.

use crate::aligned::BufferPool;
use crate::catalog::{Catalog, IndexDamage};
use crate::checkpool::{CheckPool, CheckSpec, Checked};
use crate::scan::Found;
use crate::select::{self, Selection};
use crate::stripe::StripeSet;
use crate::target::read_exact_direct;
use crate::uring::{Completion, Reader, Request, Sink};
use anyhow::Result;
use formats::{
    check, pattern, IndexEntry, Uuid, DATA_START_BYTES, SLOT_HEADER_BYTES, SUPERBLOCK_BYTES,
};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Instant;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BadSlot {
    pub slot_seq: u64,
    /// From the catalog (the header may be the damaged part); None when
    /// the slot is missing from the catalog.
    pub card_seq: Option<u64>,
    pub device_index: usize,
    pub device: String,
    pub offset_bytes: u64,
    pub problem: String,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub schema_version: u32,
    pub recording_uuid: String,
    pub catalog: String,
    pub slots_checked: u64,
    pub bytes_read: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub pattern_checked: bool,
    pub registered_buffers: bool,
    pub worker_threads: usize,
    pub index_behind: Option<String>,
    pub bad: Vec<BadSlot>,
    /// Superblock and reserved-area problems of the members present.
    pub member_problems: Vec<MemberIssue>,
}

/// A problem of a member's superblocks or reserved area.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemberIssue {
    pub device_index: usize,
    pub device: String,
    pub problem: String,
}

pub struct VerifyOptions {
    pub range: Option<select::SeqRange>,
    pub pattern: bool,
    pub quiet: bool,
    /// Worker threads for CRC and pattern checks (0: one per core).
    pub threads: usize,
}

/// Finds the catalog positions to verify (checked entries).
pub fn plan(
    stripe: &StripeSet,
    catalog: &Catalog,
    options: &VerifyOptions,
) -> Result<std::ops::Range<usize>, IndexDamage> {
    let sel = Selection {
        seq: options.range,
        ..Default::default()
    };
    select::resolve(catalog, stripe, &sel)
}

/// What is wrong with a slot read into `slot` (header page + payload):
/// [`formats::check_slot`], the one definition of a good slot; when the
/// header is the problem, the payload is also checked against the catalog
/// entry; with `with_pattern`, the payload against the simulated card's.
pub fn check_slot(
    slot: &[u8],
    entry: &IndexEntry,
    uuid: Uuid,
    payload_bytes: usize,
    with_pattern: bool,
) -> Option<String> {
    let mut problems: Vec<String> = Vec::new();
    let payload = &slot[SLOT_HEADER_BYTES..SLOT_HEADER_BYTES + payload_bytes];
    if let Err(problem) = formats::check_slot(slot, entry, uuid, payload_bytes) {
        problems.push(problem.to_string());
        if !problem.is_payload() {
            let against_entry = check::check_payload(
                payload,
                entry.payload_bytes_used,
                entry.payload_crc32,
                payload_bytes,
            );
            if let Err(payload_problem) = against_entry {
                problems.push(payload_problem.to_string());
            }
        }
    }
    let used = entry.payload_bytes_used as usize;
    if with_pattern && used <= payload_bytes {
        if let Some(at) =
            pattern::first_mismatch(&payload[..used], entry.channel as u16, entry.card_seq)
        {
            problems.push(format!(
                "payload differs from the simulated card's pattern at byte {at}"
            ));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

struct VerifySink<'a> {
    stripe: &'a StripeSet,
    checks: CheckPool,
    bad: Vec<BadSlot>,
    checked: u64,
    bar: Option<indicatif::ProgressBar>,
    slot_bytes: u64,
    /// Catalog position and entry of each read in flight, in request order.
    in_flight: &'a RefCell<VecDeque<(u64, IndexEntry)>>,
}

impl VerifySink<'_> {
    fn record(&mut self, done: &Checked) {
        self.checked += 1;
        if let Some(bar) = &self.bar {
            bar.inc(self.slot_bytes);
        }
        if let Some(problem) = &done.problem {
            self.bad
                .push(bad(self.stripe, &done.entry, problem.clone()));
        }
    }
}

fn bad(stripe: &StripeSet, entry: &IndexEntry, problem: String) -> BadSlot {
    BadSlot {
        slot_seq: entry.slot_seq,
        card_seq: Some(entry.card_seq),
        device_index: entry.device_index as usize,
        device: stripe.describe(entry.device_index as usize),
        offset_bytes: entry.device_offset_bytes,
        problem,
    }
}

impl Sink for VerifySink<'_> {
    fn deliver(&mut self, _pool: &BufferPool, completion: Completion) -> Result<Option<usize>> {
        let (position, entry) = self
            .in_flight
            .borrow_mut()
            .pop_front()
            .expect("a read delivered was requested");
        assert_eq!(
            position, completion.request.tag,
            "reads are delivered in request order"
        );
        if let Err(why) = completion.result {
            self.checked += 1;
            self.bad
                .push(bad(self.stripe, &entry, format!("read failed: {why}")));
            return Ok(Some(completion.buffer));
        }
        self.checks
            .send(completion.buffer, completion.request.tag, entry)?;
        Ok(None)
    }

    fn reclaim(&mut self, wait: bool) -> Result<Option<usize>> {
        let Some(d) = self.checks.recv(wait)? else {
            return Ok(None);
        };
        self.record(&d);
        Ok(Some(d.buffer))
    }
}

/// Checks every present member's first MiB (primary superblock, zeroed
/// reserved area) and its backup superblock ([`check::check_member_head`]).
fn check_members(stripe: &StripeSet) -> Vec<MemberIssue> {
    let mut issues = Vec::new();
    for (device_index, member) in stripe.members.iter().enumerate() {
        let Some(t) = member else { continue };
        let backup_at = formats::Superblock::backup_offset(t.size_bytes);
        let head = read_exact_direct(&t.file, 0, DATA_START_BYTES as usize, &t.path);
        let backup = read_exact_direct(&t.file, backup_at, SUPERBLOCK_BYTES, &t.path);
        let problems: Vec<String> = match (head, backup) {
            (Ok(head), Ok(backup)) => check::check_member_head(&head, &backup)
                .iter()
                .map(|p| p.to_string())
                .collect(),
            (Err(e), _) | (_, Err(e)) => vec![format!("{e:#}")],
        };
        issues.extend(problems.into_iter().map(|problem| MemberIssue {
            device_index,
            device: t.path.display().to_string(),
            problem,
        }));
    }
    issues
}

/// Slot numbers the catalog lacks in the live window (the last `capacity`
/// numbers up to the newest slot, or 0 ..= newest), within `range`, found
/// from the catalog's slot numbers in order ([`MissingInWindow::see`]).
struct MissingInWindow {
    last: u64,
    expect: u64,
    missing: Vec<u64>,
}

impl MissingInWindow {
    fn new(
        stripe: &StripeSet,
        catalog: &Catalog,
        range: Option<select::SeqRange>,
    ) -> Result<Option<MissingInWindow>> {
        let live = catalog.live();
        if live.is_empty() {
            return Ok(None);
        }
        let newest = catalog.view().get(live.end - 1)?.slot_seq;
        let mut first = (newest + 1).saturating_sub(stripe.layout.capacity_slots());
        let mut last = newest;
        if let Some(r) = range {
            first = first.max(r.first);
            last = last.min(r.last);
        }
        Ok(Some(MissingInWindow {
            last,
            expect: first,
            missing: Vec::new(),
        }))
    }

    /// The next catalog slot number (increasing).
    fn see(&mut self, seq: u64) {
        // Bounded by the window: at most `capacity` slot numbers in all.
        while self.expect < seq && self.expect <= self.last {
            self.missing.push(self.expect);
            self.expect += 1;
        }
        self.expect = self.expect.max(seq.saturating_add(1));
    }

    fn finish(mut self) -> Vec<u64> {
        self.see(self.last.saturating_add(1));
        self.missing
    }
}

/// What verify finds without reading a slot, in one pass over the catalog
/// range: slots on members not given, breaks of the header chain (a scan's
/// catalog: [`check::check_chain_in`]), slot numbers missing from the live
/// window; and how many slots are to be read.
struct Listed {
    bad: Vec<BadSlot>,
    to_read: u64,
}

fn list_unread(
    stripe: &StripeSet,
    catalog: &Catalog,
    range: std::ops::Range<usize>,
    seq_range: Option<select::SeqRange>,
) -> Result<Listed> {
    let layout = formats::ChannelLayout::of(&stripe.superblock);
    let mut unavailable = Vec::new();
    let mut chain = Vec::new();
    let mut window = MissingInWindow::new(stripe, catalog, seq_range)?;
    let mut previous = match range.start {
        0 => None,
        start => Some(catalog.view().get(start - 1)?),
    };
    let mut to_read = 0u64;
    for item in catalog.pass(range) {
        let (_, e) =
            item.map_err(|IndexDamage(why)| anyhow::anyhow!("{}: {why}", catalog.describe()))?;
        if let Some(w) = window.as_mut() {
            w.see(e.slot_seq);
        }
        if stripe.member(e.device_index as usize).is_none() {
            let why = format!("unavailable: member {} was not given", e.device_index);
            unavailable.push(bad(stripe, &e, why));
        } else {
            to_read += 1;
        }
        if catalog.is_scan() {
            let problems = check::check_chain_in(previous.as_ref(), &e, &layout);
            if !problems.is_empty() {
                let texts: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                let problem = format!("header chain: {}", texts.join("; "));
                chain.push(bad(stripe, &e, problem));
            }
        }
        previous = Some(e);
    }
    let missing = window.map(MissingInWindow::finish).unwrap_or_default();
    let mut bad_slots = unavailable;
    bad_slots.extend(chain);
    bad_slots.extend(
        missing
            .into_iter()
            .map(|seq| missing_slot(stripe, catalog, seq)),
    );
    Ok(Listed {
        bad: bad_slots,
        to_read,
    })
}

/// Slot `seq`, which the catalog lacks, as a bad slot saying why.
fn missing_slot(stripe: &StripeSet, catalog: &Catalog, seq: u64) -> BadSlot {
    let found = catalog
        .scan
        .as_ref()
        .and_then(|r| {
            r.missing
                .iter()
                .find(|m| (m.first_slot_seq..=m.last_slot_seq).contains(&seq))
                .map(|m| m.found)
        })
        .unwrap_or(Found::NotInIndex);
    let loc = stripe
        .layout
        .locate(seq)
        .expect("a slot between live slots is in the layout");
    BadSlot {
        slot_seq: seq,
        card_seq: None,
        device_index: loc.device_index,
        device: stripe.describe(loc.device_index),
        offset_bytes: loc.offset_bytes,
        problem: format!(
            "missing from the {}: {}",
            if catalog.is_scan() { "scan" } else { "index" },
            found.describe()
        ),
    }
}

pub fn verify(
    stripe: &StripeSet,
    catalog: &Catalog,
    range: std::ops::Range<usize>,
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let sb = &stripe.superblock;
    let slot_bytes = sb.slot_bytes() as usize;
    let uuid = stripe.recording_uuid();
    // Slots on missing members and slot numbers the catalog lacks are bad
    // without reading.
    let listed = list_unread(stripe, catalog, range.clone(), options.range)?;
    let mut bad_slots = listed.bad;
    let files: Vec<Option<&std::fs::File>> = stripe
        .members
        .iter()
        .map(|m| m.as_ref().map(|t| &t.file))
        .collect();
    let count = blockio::ReadBudget::VERIFY.buffer_count(slot_bytes, files.len());
    let mut reader = Reader::new(&files, slot_bytes, count)?;
    let spec = CheckSpec {
        uuid,
        payload_bytes: sb.payload_bytes as usize,
        with_pattern: options.pattern,
    };
    let checks = CheckPool::start(reader.pool().clone(), options.threads, spec);
    let threads = checks.threads();
    let bar =
        crate::progress::bytes_bar(listed.to_read * slot_bytes as u64, "verify", options.quiet);
    // The entries of the reads in flight, in request order (the reader
    // delivers in that order): at most `count`, not one per slot.
    let in_flight = RefCell::new(VecDeque::with_capacity(count + 1));
    let stopped: RefCell<Option<IndexDamage>> = RefCell::new(None);
    let mut requests = catalog
        .pass(range)
        .map_while(|item| match item {
            Ok(pe) => Some(pe),
            Err(damage) => {
                *stopped.borrow_mut() = Some(damage);
                None
            }
        })
        .filter(|(_, e)| stripe.member(e.device_index as usize).is_some())
        .map(|(i, e)| {
            in_flight.borrow_mut().push_back((i as u64, e));
            Request {
                device_index: e.device_index as usize,
                offset_bytes: e.device_offset_bytes,
                len_bytes: slot_bytes,
                tag: i as u64,
            }
        });
    let mut sink = VerifySink {
        stripe,
        checks,
        bad: Vec::new(),
        checked: 0,
        bar,
        slot_bytes: slot_bytes as u64,
        in_flight: &in_flight,
    };
    reader.run(&mut requests, &mut sink)?;
    if let Some(IndexDamage(why)) = stopped.into_inner() {
        anyhow::bail!("{}: {why}", catalog.describe());
    }
    if let Some(bar) = &sink.bar {
        bar.finish_and_clear();
    }
    bad_slots.extend(sink.bad);
    bad_slots.sort_by_key(|b| b.slot_seq);
    let seconds = started.elapsed().as_secs_f64();
    let bytes_read = sink.checked * slot_bytes as u64;
    Ok(VerifyReport {
        schema_version: crate::JSON_SCHEMA_VERSION,
        recording_uuid: uuid.to_string(),
        catalog: catalog.describe(),
        slots_checked: sink.checked,
        bytes_read,
        seconds,
        mb_per_s: if seconds > 0.0 {
            bytes_read as f64 / seconds / 1e6
        } else {
            0.0
        },
        pattern_checked: options.pattern,
        registered_buffers: reader.registered_buffers(),
        worker_threads: threads,
        index_behind: catalog.behind_targets(stripe),
        bad: bad_slots,
        member_problems: check_members(stripe),
    })
}

impl VerifyReport {
    /// Nothing bad: every slot checks and every member's superblocks and
    /// reserved area do.
    pub fn all_good(&self) -> bool {
        self.bad.is_empty() && self.member_problems.is_empty()
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ =
            writeln!(
            s,
            "verified {} slots of recording {} ({}) from the {}: {:.1} MB in {:.2} s, {:.1} MB/s",
            self.slots_checked,
            self.recording_uuid,
            if self.pattern_checked { "CRC and pattern" } else { "CRC" },
            self.catalog,
            self.bytes_read as f64 / 1e6,
            self.seconds,
            self.mb_per_s
        );
        if let Some(w) = &self.index_behind {
            let _ = writeln!(s, "warning: {w}");
        }
        for m in &self.member_problems {
            let _ = writeln!(s, "member {} ({}): {}", m.device_index, m.device, m.problem);
        }
        if self.bad.is_empty() {
            let _ = writeln!(s, "all slots good");
        } else {
            let _ = writeln!(s, "{} bad slot(s):", self.bad.len());
            for b in &self.bad {
                let _ = writeln!(
                    s,
                    "  slot {} card_seq {} on {} (member {}) offset {}: {}",
                    b.slot_seq,
                    b.card_seq
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "?".into()),
                    b.device,
                    b.device_index,
                    b.offset_bytes,
                    b.problem
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use crate::synth::{flip, Dir, Spec, Synth};
    use std::os::unix::fs::FileExt;

    fn verify_of(synth: &Synth, with_index: bool) -> VerifyReport {
        let stripe = StripeSet::open(&synth.paths).unwrap();
        let o = VerifyOptions {
            range: None,
            pattern: false,
            quiet: true,
            threads: 1,
        };
        let index = with_index.then_some(synth.index.as_path());
        let (c, range) =
            catalog::open_planned(&stripe, index, &mut |_| {}, |c| Ok(plan(&stripe, c, &o)))
                .unwrap();
        verify(&stripe, &c, range, &o).unwrap()
    }

    /// Rewrites slot `slot_seq`'s header with `change` applied (a valid
    /// header: the CRC is recomputed), as a recorder with a bug would.
    fn rewrite_header(synth: &Synth, slot_seq: u64, change: impl Fn(&mut formats::SlotHeader)) {
        let at = synth.layout.locate(slot_seq).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&synth.paths[at.device_index])
            .unwrap();
        let mut page = [0u8; SLOT_HEADER_BYTES];
        file.read_exact_at(&mut page, at.offset_bytes).unwrap();
        let mut header = formats::SlotHeader::decode(&page).unwrap();
        change(&mut header);
        file.write_all_at(&header.encode(), at.offset_bytes)
            .unwrap();
    }

    #[test]
    fn without_an_index_verify_names_a_broken_header_chain() {
        let d = Dir::new("chain");
        let s = Synth::write(&d, &["a"], &Spec::default());
        rewrite_header(&s, 10, |h| h.card_seq += 3); // no gap_count for the jump
        rewrite_header(&s, 20, |h| h.channel = (h.channel + 1) % 3);
        rewrite_header(&s, 25, |h| h.card_timestamp_ns = 0);
        let r = verify_of(&s, false);
        let problems: Vec<(u64, &str)> = r
            .bad
            .iter()
            .map(|b| (b.slot_seq, b.problem.as_str()))
            .collect();
        assert!(
            r.bad
                .iter()
                .all(|b| b.problem.starts_with("header chain: ")),
            "{problems:?}"
        );
        // Slot 10 jumps ahead, so slot 11 falls back behind it.
        let seqs: Vec<u64> = r.bad.iter().map(|b| b.slot_seq).collect();
        assert_eq!(seqs, vec![10, 11, 20, 25], "{problems:?}");
        assert!(
            problems[0].1.contains("card_seq 13 with gap_count 0"),
            "{problems:?}"
        );
        assert!(problems[2].1.contains("round-robin"), "{problems:?}");
        assert!(
            problems[3].1.contains("card timestamp 0 ns"),
            "{problems:?}"
        );
        assert!(!r.all_good());
    }

    #[test]
    fn verify_names_damaged_superblocks_and_a_dirty_reserved_area() {
        let d = Dir::new("members");
        let s = Synth::write(
            &d,
            &["a", "b"],
            &Spec {
                member_bytes: vec![Spec::default().member_bytes[0]; 2],
                ..Spec::default()
            },
        );
        assert!(verify_of(&s, true).all_good());
        flip(&s.paths[0], 8192, 0); // reserved area of member 0
        let size = std::fs::metadata(&s.paths[1]).unwrap().len();
        flip(
            &s.paths[1],
            formats::Superblock::backup_offset(size) + 20,
            3,
        );
        let r = verify_of(&s, true);
        assert!(r.bad.is_empty(), "the slots are intact: {:?}", r.bad);
        let issues: Vec<(usize, &str)> = r
            .member_problems
            .iter()
            .map(|m| (m.device_index, m.problem.as_str()))
            .collect();
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert!(
            issues[0].0 == 0 && issues[0].1.contains("reserved area"),
            "{issues:?}"
        );
        assert!(
            issues[1].0 == 1 && issues[1].1.starts_with("backup superblock: "),
            "{issues:?}"
        );
        assert!(!r.all_good());
        assert!(r.text().contains("member 0 ("), "{}", r.text());
    }
}
