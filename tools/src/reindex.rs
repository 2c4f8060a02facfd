//! `dmaplay reindex`: rebuild a recording's index from its members, after a
//! crash or a lost index. The slots come from a header scan ([`crate::scan`]):
//! only this recording's slots with a valid header at the location the
//! layout gives their number, in ring mode only the newest lap. The newest
//! slots are read whole and checked ([`formats::check_slot`]) to find torn
//! ones (a write cut short by a crash: valid header, payload CRC mismatch);
//! what counts as the torn tail and what is done with it is the format's
//! rule, [`formats::TornTail`], which the recorder's read-back follows too:
//! a torn slot is left out, since the index has no flag for it. The index is written to a temporary file
//! beside the target path, synced and renamed over it.

use crate::catalog::index_image;
use crate::scan::{self, Found, ScanReport};
use crate::stripe::StripeSet;
use crate::uring::{self, FnSink, Reader, Request};
use anyhow::{bail, Context, Result};
use blockio::ReadBudget;
use formats::{check::SlotProblem, IndexEntry, TornTail};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Newest slots whose payload is read to find torn writes
/// ([`TornTail::DEFAULT_WINDOW_SLOTS`]).
pub const DEFAULT_CHECK_NEWEST: usize = TornTail::DEFAULT_WINDOW_SLOTS as usize;

pub struct ReindexOptions {
    pub index: PathBuf,
    pub force: bool,
    pub check_newest: usize,
    pub quiet: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TornSlot {
    pub slot_seq: u64,
    pub card_seq: u64,
    pub device: String,
    pub offset_bytes: u64,
    pub problem: String,
}

#[derive(Debug, Serialize)]
pub struct ReindexReport {
    pub schema_version: u32,
    pub recording_uuid: String,
    pub index: String,
    pub slots_indexed: u64,
    pub first_slot_seq: Option<u64>,
    pub last_slot_seq: Option<u64>,
    pub ring_wraps: u64,
    pub payloads_checked: u64,
    pub torn: Vec<TornSlot>,
    pub scan: ScanReport,
}

pub fn reindex(stripe: &StripeSet, options: &ReindexOptions) -> Result<ReindexReport> {
    stripe.require_complete("reindex")?;
    stripe.refuse_output(&options.index, "--index")?;
    if options.index.exists() && !options.force {
        bail!(
            "index {} exists: give --force to replace it (or choose another --index path)",
            options.index.display()
        );
    }
    let bar = crate::progress::count_bar(
        stripe.layout.capacity_slots(),
        "slots",
        "scan headers",
        options.quiet,
    );
    let mut s = scan::scan(stripe, &mut |n| {
        if let Some(b) = &bar {
            b.set_position(n)
        }
    })?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let torn = find_torn(stripe, &s.entries, options.check_newest)?;
    let torn_seqs: BTreeSet<u64> = torn.iter().map(|t| t.slot_seq).collect();
    let payloads_checked = window_of(options.check_newest)
        .window(s.entries.len())
        .len() as u64;
    if !torn_seqs.is_empty() {
        s.entries.retain(|e| !torn_seqs.contains(&e.slot_seq));
        let capacity = stripe.layout.capacity_slots();
        for seq in &torn_seqs {
            s.found[(seq % capacity) as usize] = Found::Torn;
        }
        // The newest slot may have been torn: the live window ends at the
        // newest intact slot; torn slots inside it are missing numbers.
        let r = &mut s.report;
        r.live_slots = s.entries.len() as u64;
        r.newest_slot_seq = s.entries.last().map(|e| e.slot_seq);
        r.oldest_slot_seq = s.entries.first().map(|e| e.slot_seq);
        r.missing = match (r.oldest_slot_seq, r.newest_slot_seq) {
            (Some(a), Some(b)) => {
                let oldest_window = (b + 1).saturating_sub(capacity).min(a);
                scan::missing_runs(&s.entries, oldest_window, b, |seq| {
                    s.found[(seq % capacity) as usize]
                })
            }
            _ => Vec::new(),
        };
        let counts = &mut r.counts;
        *counts.entry(Found::Live.key().into()).or_insert(0) -= torn_seqs.len() as u64;
        *counts.entry(Found::Torn.key().into()).or_insert(0) += torn_seqs.len() as u64;
    }
    write_index(&options.index, &index_image(stripe, &s.entries))?;
    Ok(ReindexReport {
        schema_version: crate::JSON_SCHEMA_VERSION,
        recording_uuid: stripe.recording_uuid().to_string(),
        index: options.index.display().to_string(),
        slots_indexed: s.entries.len() as u64,
        first_slot_seq: s.entries.first().map(|e| e.slot_seq),
        last_slot_seq: s.entries.last().map(|e| e.slot_seq),
        ring_wraps: s
            .entries
            .last()
            .map(|e| e.slot_seq / stripe.layout.capacity_slots())
            .unwrap_or(0),
        payloads_checked,
        torn,
        scan: s.report,
    })
}

fn window_of(check_newest: usize) -> TornTail {
    TornTail {
        window_slots: check_newest as u64,
    }
}

/// Reads the newest `newest` slots whole; returns the torn ones (those the
/// torn-tail rule leaves out).
fn find_torn(stripe: &StripeSet, entries: &[IndexEntry], newest: usize) -> Result<Vec<TornSlot>> {
    let rule = window_of(newest);
    let tail = &entries[rule.window(entries.len())];
    if tail.is_empty() {
        return Ok(Vec::new());
    }
    let slot_bytes = stripe.superblock.slot_bytes() as usize;
    let payload_bytes = stripe.superblock.payload_bytes as usize;
    let files: Vec<Option<&std::fs::File>> = stripe
        .members
        .iter()
        .map(|m| m.as_ref().map(|t| &t.file))
        .collect();
    let count = ReadBudget::TORN_TAIL.buffer_count(slot_bytes, files.len());
    let mut reader = Reader::new(&files, slot_bytes, count)?;
    let mut torn = Vec::new();
    let mut requests = tail.iter().enumerate().map(|(i, e)| Request {
        device_index: e.device_index as usize,
        offset_bytes: e.device_offset_bytes,
        len_bytes: slot_bytes,
        tag: i as u64,
    });
    reader.run(
        &mut requests,
        &mut FnSink(|slot: &[u8], c: uring::Completion| {
            let e = &tail[c.request.tag as usize];
            let check = match c.result {
                Err(why) if why == uring::END_OF_DEVICE => Err(SlotProblem::EndOfDevice),
                Err(why) => Err(SlotProblem::ReadFailed(why)),
                Ok(()) => formats::check_slot(slot, e, stripe.recording_uuid(), payload_bytes),
            };
            if let (false, Err(problem)) = (rule.keeps(&check), check) {
                torn.push(TornSlot {
                    slot_seq: e.slot_seq,
                    card_seq: e.card_seq,
                    device: stripe.describe(e.device_index as usize),
                    offset_bytes: e.device_offset_bytes,
                    problem: problem.to_string(),
                });
            }
            Ok(())
        }),
    )?;
    Ok(torn)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it
/// over `path` and syncs the directory.
fn write_index(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    let tmp = dir.join(format!(".{name}.reindex-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing directory {}", dir.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl ReindexReport {
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "wrote {}: {} slots of recording {} (slot {} .. {}), ring wraps {}",
            self.index,
            self.slots_indexed,
            self.recording_uuid,
            self.first_slot_seq
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            self.last_slot_seq
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            self.ring_wraps
        );
        let _ = writeln!(
            s,
            "scanned {} slot locations: {}",
            self.scan.locations_read,
            self.scan.counts_text()
        );
        let _ = writeln!(
            s,
            "payloads of the newest {} slots checked, {} torn (not indexed)",
            self.payloads_checked,
            self.torn.len()
        );
        for t in &self.torn {
            let _ = writeln!(
                s,
                "  torn slot {} (card_seq {}) on {} offset {}: {}",
                t.slot_seq, t.card_seq, t.device, t.offset_bytes, t.problem
            );
        }
        for (uuid, n) in &self.scan.other_recordings {
            let _ = writeln!(s, "{n} stale slot(s) of another recording {uuid} (ignored)");
        }
        for d in &self.scan.damaged_headers {
            let _ = writeln!(
                s,
                "damaged slot header on member {} offset {}: {}",
                d.device_index, d.offset_bytes, d.error
            );
        }
        for m in &self.scan.missing {
            let _ = writeln!(
                s,
                "slots {}..{} missing (unwritten or destroyed): {}",
                m.first_slot_seq,
                m.last_slot_seq,
                m.found.describe()
            );
        }
        s
    }
}
