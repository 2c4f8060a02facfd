//! Unit tests of the commands on recordings synthesized with the formats
//! crate ([`crate::synth`]): intact, damaged (bit flips in headers and
//! payloads, torn newest slots), with a truncated or corrupted index, an
//! older recording underneath, a missing stripe member, and ring wraps.

use crate::catalog::{self, Catalog};
use crate::export::{self, ExportOptions, GapMode, OutputFormat};
use crate::inspect;
use crate::reindex::{self, ReindexOptions};
use crate::replay::{self, ReplayOptions, Speed};
use crate::scan::Found;
use crate::select::{Selection, SeqRange};
use crate::stripe::StripeSet;
use crate::synth::{flip, Dir, Rng, Spec, Synth, CARD_STEP_NS, HOST_T0_NS};
use crate::timespec::TimeSpec;
use crate::verify::{self, VerifyOptions, VerifyReport};
use formats::{pattern, SLOT_HEADER_BYTES};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SLOT40: u64 = (1 << 20) + 40 * 8192 + 4096; // 40 slots of 4 KiB payload
const SLOT25: u64 = (1 << 20) + 25 * 8192 + 4096;
const SLOT33: u64 = (1 << 20) + 33 * 8192 + 8000; // not 4 KiB-aligned at the end

fn nothing(_: u64) {}

fn verify_with(paths: &[PathBuf], index: Option<&Path>, pattern: bool) -> VerifyReport {
    let stripe = StripeSet::open(paths).unwrap();
    let o = VerifyOptions {
        range: None,
        pattern,
        quiet: true,
        threads: 2,
    };
    let (c, range) = catalog::open_planned(&stripe, index, &mut nothing, |c| {
        Ok(verify::plan(&stripe, c, &o))
    })
    .unwrap();
    verify::verify(&stripe, &c, range, &o).unwrap()
}

fn catalog_of(stripe: &StripeSet, index: Option<&Path>) -> Catalog {
    catalog::open_planned(stripe, index, &mut nothing, |c| {
        Ok(c.check_entries(stripe, c.live()))
    })
    .unwrap()
    .0
}

fn bad_set(report: &VerifyReport) -> BTreeSet<u64> {
    report.bad.iter().map(|b| b.slot_seq).collect()
}

#[test]
fn verify_intact_unequal_stripe_given_in_any_order() {
    let d = Dir::new("intact");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT25, SLOT33],
        slots: 95,
        drop_every: 7,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b", "c"], &spec);
    assert_eq!(s.layout.capacity_slots(), 98);
    let shuffled = vec![s.paths[2].clone(), s.paths[0].clone(), s.paths[1].clone()];
    for index in [Some(s.index.as_path()), None] {
        let r = verify_with(&shuffled, index, true);
        assert!(r.bad.is_empty(), "{:?}", r.bad);
        assert_eq!(r.slots_checked, 95);
    }
}

#[test]
fn verify_reports_exactly_the_flipped_slots() {
    let d = Dir::new("flips");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT40],
        slots: 70,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b"], &spec);
    let mut rng = Rng(0x9E37_79B9);
    let mut payload_hits = BTreeSet::new();
    let mut header_hits = BTreeSet::new();
    // Header flips never on the newest slot: a scan cannot tell a destroyed
    // newest slot from the end of the recording.
    while header_hits.len() < 4 {
        header_hits.insert(rng.below(69));
    }
    while payload_hits.len() < 4 {
        let seq = rng.below(70);
        if !header_hits.contains(&seq) {
            payload_hits.insert(seq);
        }
    }
    for &seq in &header_hits {
        let e = s.entry(seq);
        let (at, bit) = (rng.below(SLOT_HEADER_BYTES as u64), rng.below(8) as u8);
        flip(
            &s.paths[e.device_index as usize],
            e.device_offset_bytes + at,
            bit,
        );
    }
    for &seq in &payload_hits {
        let e = s.entry(seq);
        let at = e.device_offset_bytes + SLOT_HEADER_BYTES as u64 + rng.below(4096);
        flip(&s.paths[e.device_index as usize], at, rng.below(8) as u8);
    }
    let all: BTreeSet<u64> = header_hits.union(&payload_hits).copied().collect();
    let r = verify_with(&s.paths, Some(&s.index), true);
    assert_eq!(bad_set(&r), all);
    for b in &r.bad {
        let e = s.entry(b.slot_seq);
        assert_eq!(b.card_seq, Some(e.card_seq));
        assert_eq!(b.offset_bytes, e.device_offset_bytes);
        assert_eq!(
            b.device,
            s.paths[e.device_index as usize].display().to_string()
        );
        if header_hits.contains(&b.slot_seq) {
            assert!(
                b.problem.starts_with("header: slot header: CRC mismatch"),
                "{}",
                b.problem
            );
        } else {
            assert!(
                b.problem.contains("payload CRC mismatch") && b.problem.contains("pattern"),
                "{}",
                b.problem
            );
        }
    }
    assert_eq!(r.slots_checked, 70);
    // Without the index: damaged headers are slots missing from the scan.
    let r = verify_with(&s.paths, None, false);
    assert_eq!(bad_set(&r), all);
    for b in r.bad.iter().filter(|b| header_hits.contains(&b.slot_seq)) {
        assert!(b.problem.contains("slot header damaged"), "{}", b.problem);
    }
}

#[test]
fn torn_index_tail_is_ignored_and_reported_and_a_short_index_falls_back() {
    let d = Dir::new("trunc");
    let s = Synth::write(&d, &["a"], &Spec::default());
    let full = std::fs::read(&s.index).unwrap();
    std::fs::write(&s.index, &full[..8192 + 20 * 64 + 30]).unwrap();
    let stripe = StripeSet::open(&s.paths).unwrap();
    let c = catalog_of(&stripe, Some(&s.index));
    assert!(!c.is_scan());
    assert_eq!((c.live(), c.torn_tail_bytes), (0..20, 30));
    let i = inspect::inspect(&stripe, &c, None).unwrap();
    assert_eq!(i.slots, 20);
    assert!(
        i.index_behind.as_deref().unwrap().contains("holds slot 20"),
        "{:?}",
        i.index_behind
    );
    // A tail entry whose CRC fails is torn too.
    let mut torn = full.clone();
    let last = torn.len() - 3;
    torn[last] ^= 1;
    std::fs::write(&s.index, &torn).unwrap();
    let c = catalog_of(&stripe, Some(&s.index));
    assert_eq!((c.live().len(), c.torn_tail_bytes), (29, 64));
    // Cut inside the header: unusable, the targets are scanned instead.
    std::fs::write(&s.index, &full[..5000]).unwrap();
    let r = verify_with(&s.paths, Some(&s.index), true);
    assert!(r.catalog.contains("scan"), "{}", r.catalog);
    assert_eq!((r.slots_checked, r.bad.len()), (30, 0));
}

#[test]
fn damaged_index_entry_falls_back_to_a_scan() {
    let d = Dir::new("badidx");
    let s = Synth::write(&d, &["a"], &Spec::default());
    flip(&s.index, 8192 + 10 * 64 + 9, 3);
    let stripe = StripeSet::open(&s.paths).unwrap();
    let c = Catalog::from_index(&stripe, &s.index).unwrap();
    let why = c.check_entries(&stripe, c.live()).unwrap_err().0;
    assert!(
        why.starts_with("entry 10: index entry: CRC mismatch"),
        "{why}"
    );
    let r = verify_with(&s.paths, Some(&s.index), true);
    assert!(r.catalog.contains("scan"));
    assert_eq!((r.slots_checked, r.bad.len()), (30, 0));
    // An index of another recording is not used either.
    let other = Dir::new("badidx-other");
    let o = Synth::write(
        &other,
        &["x"],
        &Spec {
            seed: 9,
            ..Spec::default()
        },
    );
    let why = Catalog::from_index(&stripe, &o.index).err().unwrap().0;
    assert!(why.contains("index of recording"), "{why}");
}

#[test]
fn slots_of_an_older_recording_are_ignored_and_counted() {
    let d = Dir::new("older");
    let old = Synth::write(
        &d,
        &["a"],
        &Spec {
            slots: 40,
            seed: 2,
            ..Spec::default()
        },
    );
    let new = Synth::write(
        &d,
        &["a"],
        &Spec {
            slots: 15,
            seed: 1,
            ..Spec::default()
        },
    );
    let stripe = StripeSet::open(&new.paths).unwrap();
    assert_eq!(stripe.recording_uuid(), new.sb.recording_uuid);
    let c = catalog_of(&stripe, None);
    let report = c.scan.as_ref().unwrap();
    assert_eq!(report.live_slots, 15);
    assert_eq!(
        report
            .other_recordings
            .get(&old.sb.recording_uuid.to_string()),
        Some(&25)
    );
    assert!(report.missing.is_empty());
    let r = verify_with(&new.paths, None, true);
    assert_eq!((r.slots_checked, r.bad.len()), (15, 0));
    let idx = d.join("rebuilt.idx");
    let o = ReindexOptions {
        index: idx.clone(),
        force: false,
        check_newest: 64,
        quiet: true,
    };
    let rep = reindex::reindex(&stripe, &o).unwrap();
    assert_eq!(rep.slots_indexed, 15);
    assert_eq!(
        std::fs::read(&idx).unwrap(),
        std::fs::read(&new.index).unwrap()
    );
}

#[test]
fn a_missing_member_is_named_and_its_slots_are_unavailable() {
    let d = Dir::new("missing");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT25, SLOT40],
        slots: 60,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b", "c"], &spec);
    let given = vec![s.paths[2].clone(), s.paths[0].clone()];
    let stripe = StripeSet::open(&given).unwrap();
    let missing = stripe.missing();
    assert_eq!(missing.len(), 1);
    assert_eq!(
        (missing[0].device_index, missing[0].uuid.clone()),
        (1, s.sb.members[1].uuid.to_string())
    );
    let err = reindex::reindex(
        &stripe,
        &ReindexOptions {
            index: d.join("x.idx"),
            force: false,
            check_newest: 64,
            quiet: true,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("missing: member 1 (uuid ") && err.contains(&s.sb.members[1].uuid.to_string()),
        "{err}"
    );
    let on_b: BTreeSet<u64> = s
        .entries
        .iter()
        .filter(|e| e.device_index == 1)
        .map(|e| e.slot_seq)
        .collect();
    assert!(!on_b.is_empty());
    let r = verify_with(&given, Some(&s.index), true);
    assert_eq!(bad_set(&r), on_b);
    assert!(r
        .bad
        .iter()
        .all(|b| b.problem.contains("member 1 was not given")));
    assert_eq!(r.slots_checked as usize, 60 - on_b.len());
    // From a scan: the missing member's slots are missing, for that reason.
    let r = verify_with(&given, None, false);
    let newest_present = s
        .entries
        .iter()
        .rev()
        .find(|e| e.device_index != 1)
        .unwrap()
        .slot_seq;
    let expect: BTreeSet<u64> = on_b
        .iter()
        .copied()
        .filter(|&q| q < newest_present)
        .collect();
    assert_eq!(bad_set(&r), expect);
    assert!(
        r.bad.iter().all(|b| b.problem.contains("member missing")),
        "{:?}",
        r.bad
    );
}

#[test]
fn two_recordings_and_duplicate_members_are_refused() {
    let d = Dir::new("mixed");
    let a = Synth::write(
        &d,
        &["a"],
        &Spec {
            seed: 1,
            ..Spec::default()
        },
    );
    let b = Synth::write(
        &d,
        &["b"],
        &Spec {
            seed: 2,
            ..Spec::default()
        },
    );
    let err = StripeSet::open(&[a.paths[0].clone(), b.paths[0].clone()])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&a.sb.recording_uuid.to_string())
            && err.contains(&b.sb.recording_uuid.to_string()),
        "{err}"
    );
    let two = Synth::write(
        &d,
        &["c", "e"],
        &Spec {
            member_bytes: vec![SLOT40, SLOT40],
            seed: 3,
            ..Spec::default()
        },
    );
    let err = StripeSet::open(&[two.paths[0].clone(), two.paths[0].clone()])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("both member 0"), "{err}");
    let junk = d.join("junk");
    std::fs::write(&junk, vec![0u8; 1 << 21]).unwrap();
    let err = StripeSet::open(&[junk]).err().unwrap().to_string();
    assert!(
        err.contains("not a dmarec recording member") && err.contains("bad magic"),
        "{err}"
    );
}

#[test]
fn the_backup_superblock_stands_in_for_a_damaged_primary() {
    let d = Dir::new("backup");
    let s = Synth::write(&d, &["a"], &Spec::default());
    flip(&s.paths[0], 20, 1);
    let stripe = StripeSet::open(&s.paths).unwrap();
    assert!(stripe.members[0]
        .as_ref()
        .unwrap()
        .primary_damage
        .as_deref()
        .unwrap()
        .contains("CRC mismatch"));
    let r = verify_with(&s.paths, Some(&s.index), true);
    assert_eq!((r.slots_checked, r.bad.len()), (30, 0));
}

#[test]
fn reindex_rebuilds_the_recorders_index_and_refuses_to_overwrite() {
    let d = Dir::new("reindex");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT25, SLOT33],
        slots: 98,
        drop_every: 4,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b", "c"], &spec);
    let stripe = StripeSet::open(&s.paths).unwrap();
    let err = reindex::reindex(
        &stripe,
        &ReindexOptions {
            index: s.index.clone(),
            force: false,
            check_newest: 64,
            quiet: true,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    let idx = d.join("new.idx");
    let rep = reindex::reindex(
        &stripe,
        &ReindexOptions {
            index: idx.clone(),
            force: false,
            check_newest: 64,
            quiet: true,
        },
    )
    .unwrap();
    assert_eq!(
        (rep.slots_indexed, rep.torn.len(), rep.scan.missing.len()),
        (98, 0, 0)
    );
    assert_eq!(
        std::fs::read(&idx).unwrap(),
        std::fs::read(&s.index).unwrap()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&d.0)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("reindex")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn reindex_leaves_out_torn_slots_and_reports_destroyed_ones() {
    let d = Dir::new("torn");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT40],
        slots: 50,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b"], &spec);
    // Torn: the newest slot and one two before it (writes complete out of order).
    for seq in [49u64, 47] {
        let e = s.entry(seq);
        flip(
            &s.paths[e.device_index as usize],
            e.device_offset_bytes + 4096 + 1000,
            0,
        );
    }
    // Destroyed header in the middle.
    let e = s.entry(20);
    flip(
        &s.paths[e.device_index as usize],
        e.device_offset_bytes + 40,
        5,
    );
    let stripe = StripeSet::open(&s.paths).unwrap();
    let idx = d.join("r.idx");
    let rep = reindex::reindex(
        &stripe,
        &ReindexOptions {
            index: idx.clone(),
            force: false,
            check_newest: 16,
            quiet: true,
        },
    )
    .unwrap();
    let torn: Vec<u64> = rep.torn.iter().map(|t| t.slot_seq).collect();
    assert_eq!(torn, vec![47, 49]);
    assert!(rep
        .torn
        .iter()
        .all(|t| t.problem.contains("payload CRC mismatch")));
    assert_eq!(rep.slots_indexed, 47);
    assert_eq!(rep.last_slot_seq, Some(48));
    let missing: Vec<(u64, u64, Found)> = rep
        .scan
        .missing
        .iter()
        .map(|m| (m.first_slot_seq, m.last_slot_seq, m.found))
        .collect();
    assert_eq!(
        missing,
        vec![(20, 20, Found::DamagedHeader), (47, 47, Found::Torn)]
    );
    assert_eq!(rep.scan.damaged_headers.len(), 1);
    let view_bytes = std::fs::read(&idx).unwrap();
    let view = formats::index::IndexView::new(&view_bytes).unwrap();
    let seqs: Vec<u64> = (0..view.len())
        .map(|i| view.get(i).unwrap().slot_seq)
        .collect();
    let expect: Vec<u64> = (0..49).filter(|q| *q != 20 && *q != 47).collect();
    assert_eq!(seqs, expect);
}

#[test]
fn ring_wraps_keep_the_newest_lap() {
    let d = Dir::new("ring");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT25],
        ring: true,
        slots: 200,
        drop_every: 9,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b"], &spec);
    let live: Vec<u64> = s.live().iter().map(|e| e.slot_seq).collect();
    assert_eq!(live, (135..200).collect::<Vec<_>>());
    let stripe = StripeSet::open(&s.paths).unwrap();
    for index in [Some(s.index.as_path()), None] {
        let c = catalog_of(&stripe, index);
        let i = inspect::inspect(&stripe, &c, None).unwrap();
        assert_eq!(
            (i.slots, i.first_slot_seq, i.last_slot_seq, i.ring_wraps),
            (65, Some(135), Some(199), 3)
        );
        let r = verify_with(&s.paths, index, true);
        assert_eq!((r.slots_checked, r.bad.len()), (65, 0));
    }
    let idx = d.join("r.idx");
    let rep = reindex::reindex(
        &stripe,
        &ReindexOptions {
            index: idx.clone(),
            force: false,
            check_newest: 64,
            quiet: true,
        },
    )
    .unwrap();
    assert_eq!(
        (rep.slots_indexed, rep.first_slot_seq, rep.ring_wraps),
        (65, Some(135), 3)
    );
    let bytes = std::fs::read(&idx).unwrap();
    let view = formats::index::IndexView::new(&bytes).unwrap();
    let got: Vec<formats::IndexEntry> = (0..view.len()).map(|i| view.get(i).unwrap()).collect();
    assert_eq!(got, s.live());
}

#[test]
fn inspect_lists_gaps_per_channel_and_selects_slots() {
    let d = Dir::new("inspect");
    let s = Synth::write(
        &d,
        &["a"],
        &Spec {
            slots: 40,
            drop_every: 5,
            ..Spec::default()
        },
    );
    let stripe = StripeSet::open(&s.paths).unwrap();
    let c = catalog_of(&stripe, Some(&s.index));
    let sel = Selection {
        channel: Some(1),
        from: Some(TimeSpec::FromStart(10_000_000)),
        to: Some(TimeSpec::FromStart(30_000_000)),
        seq: None,
    };
    let i = inspect::inspect(&stripe, &c, Some(&sel)).unwrap();
    // 40 slots hold card seqs 0..=48 without every fifth (4, 9, ..., 44):
    // 9 lost buffers (card seq 49 would show only in a 41st slot).
    assert_eq!(i.buffers_lost, 9);
    assert_eq!(i.gaps.len(), 9);
    assert_eq!(
        (
            i.gaps[0].slot_seq,
            i.gaps[0].card_seq,
            i.gaps[0].buffers_lost
        ),
        (4, 5, 1)
    );
    let lost: Vec<u64> = i.channels.iter().map(|c| c.buffers_lost).collect();
    let expect: Vec<u64> = (0..3)
        .map(|ch| (0..49u64).filter(|x| x % 5 == 4 && x % 3 == ch).count() as u64)
        .collect();
    assert_eq!(lost, expect);
    let rows = i.slot_list.unwrap();
    let card: Vec<u64> = rows.iter().map(|r| r.card_seq).collect();
    let expect: Vec<u64> = (10..=30).filter(|x| x % 5 != 4 && x % 3 == 1).collect();
    assert_eq!(card, expect);
    let sel = Selection {
        seq: Some("3..5".parse().unwrap()),
        ..Selection::default()
    };
    let rows = inspect::inspect(&stripe, &c, Some(&sel))
        .unwrap()
        .slot_list
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.slot_seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
}

#[test]
fn lost_buffers_per_channel_and_ranges_parse() {
    use crate::inspect::lost_of_channel;
    for first in 0..20 {
        for count in 0..20 {
            for ch in 0..4 {
                let brute = (first..first + count).filter(|x| x % 4 == ch).count() as u64;
                assert_eq!(lost_of_channel(first, count, ch, 4), brute);
            }
        }
    }
    assert_eq!(
        "3..7".parse::<SeqRange>().unwrap(),
        SeqRange { first: 3, last: 7 }
    );
    assert_eq!(
        "5".parse::<SeqRange>().unwrap(),
        SeqRange { first: 5, last: 5 }
    );
    assert_eq!(
        "..7".parse::<SeqRange>().unwrap(),
        SeqRange { first: 0, last: 7 }
    );
    assert!("7..3".parse::<SeqRange>().is_err());
    assert!("a..b".parse::<SeqRange>().is_err());
}

fn export_opts(
    out: PathBuf,
    channel: Option<u16>,
    format: OutputFormat,
    gaps: GapMode,
) -> ExportOptions {
    ExportOptions {
        channel,
        out,
        format,
        from: None,
        to: None,
        gaps,
        force: false,
        quiet: true,
        sigmf: Default::default(),
    }
}

fn run_export(
    paths: &[PathBuf],
    index: Option<&Path>,
    o: &ExportOptions,
) -> anyhow::Result<export::ExportReport> {
    let stripe = StripeSet::open(paths).unwrap();
    export::check_options(&stripe, o)?;
    let (c, range) = catalog::open_planned(&stripe, index, &mut nothing, |c| {
        export::plan(&stripe, c, o)
    })?;
    export::export(&stripe, &c, range, o)
}

/// What channel `ch` should hold for card seqs `first..=last`: the pattern
/// where the buffer was recorded (and not in `damaged`), zeros (or
/// nothing, when not `zero`) where it was lost.
fn expected_channel(
    s: &Synth,
    ch: u64,
    first: u64,
    last: u64,
    zero: bool,
    damaged: &BTreeSet<u64>,
) -> Vec<u8> {
    let n = s.sb.channels.len() as u64;
    let recorded: BTreeSet<u64> = s.entries.iter().map(|e| e.card_seq).collect();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    for x in (first..=last).filter(|x| x % n == ch) {
        if recorded.contains(&x) && !damaged.contains(&x) {
            pattern::fill(&mut buf, ch as u16, x);
            out.extend_from_slice(&buf);
        } else if zero {
            out.extend_from_slice(&[0u8; 4096]);
        }
    }
    out
}

#[test]
fn export_raw_is_the_pattern_byte_for_byte_with_gaps_marked_zeroed_or_refused() {
    let d = Dir::new("export");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT40],
        slots: 70,
        drop_every: 5,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b"], &spec);
    let last_card = s.entries.last().unwrap().card_seq;
    let none = BTreeSet::new();
    let r = run_export(
        &s.paths,
        Some(&s.index),
        &export_opts(
            d.join("mark.raw"),
            Some(1),
            OutputFormat::Raw,
            GapMode::Mark,
        ),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(d.join("mark.raw")).unwrap(),
        expected_channel(&s, 1, 0, last_card, false, &none)
    );
    let lost_ch1 = (0..=last_card).filter(|x| x % 5 == 4 && x % 3 == 1).count() as u64;
    assert_eq!(
        r.channels[0]
            .gaps
            .iter()
            .map(|g| g.buffers_lost)
            .sum::<u64>(),
        lost_ch1
    );
    run_export(
        &s.paths,
        Some(&s.index),
        &export_opts(
            d.join("zero.raw"),
            Some(1),
            OutputFormat::Raw,
            GapMode::Zero,
        ),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(d.join("zero.raw")).unwrap(),
        expected_channel(&s, 1, 0, last_card, true, &none)
    );
    let err = run_export(
        &s.paths,
        Some(&s.index),
        &export_opts(
            d.join("err.raw"),
            Some(1),
            OutputFormat::Raw,
            GapMode::Error,
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("channel 1: gap: 1 buffer(s)") && err.contains("--gaps mark"),
        "{err}"
    );
    assert!(
        !d.join("err.raw").exists(),
        "a failed export leaves no file"
    );
    // All channels, by scan, into -chN files.
    run_export(
        &s.paths,
        None,
        &export_opts(d.join("all.raw"), None, OutputFormat::Raw, GapMode::Zero),
    )
    .unwrap();
    for ch in 0..3 {
        let got = std::fs::read(d.join(&format!("all-ch{ch}.raw"))).unwrap();
        assert_eq!(
            got,
            expected_channel(&s, ch, 0, last_card, true, &none),
            "channel {ch}"
        );
    }
    let err = run_export(
        &s.paths,
        None,
        &export_opts(
            d.join("mark.raw"),
            Some(1),
            OutputFormat::Raw,
            GapMode::Mark,
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    let err = run_export(
        &s.paths,
        None,
        &export_opts(d.join("x.raw"), Some(3), OutputFormat::Raw, GapMode::Mark),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--channel 3") && err.contains("0..=2"),
        "{err}"
    );
}

#[test]
fn export_time_range_and_damaged_slots() {
    let d = Dir::new("export-range");
    let spec = Spec {
        member_bytes: vec![SLOT40],
        slots: 40,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a"], &spec);
    // Card time is card_seq ms from the first slot: 0.010 s .. 0.030 s is card_seq 10..=30.
    let mut o = export_opts(d.join("r.raw"), Some(2), OutputFormat::Raw, GapMode::Mark);
    o.from = Some(TimeSpec::FromStart(10_000_000));
    o.to = Some(TimeSpec::FromStart(30_000_000));
    let r = run_export(&s.paths, Some(&s.index), &o).unwrap();
    assert_eq!((r.first_slot_seq, r.last_slot_seq), (Some(10), Some(30)));
    assert_eq!(
        std::fs::read(d.join("r.raw")).unwrap(),
        expected_channel(&s, 2, 10, 30, false, &BTreeSet::new())
    );
    assert!(r.channels[0].gaps.is_empty());
    // A damaged payload on channel 2 becomes a marked gap naming the slot.
    let e = s.entry(17);
    assert_eq!(e.channel, 2);
    flip(&s.paths[0], e.device_offset_bytes + 4096 + 8, 2);
    let mut o = export_opts(d.join("z.raw"), Some(2), OutputFormat::Raw, GapMode::Zero);
    o.from = Some(TimeSpec::FromStart(10_000_000));
    o.to = Some(TimeSpec::FromStart(30_000_000));
    let r = run_export(&s.paths, Some(&s.index), &o).unwrap();
    let damaged: BTreeSet<u64> = [17].into();
    assert_eq!(
        std::fs::read(d.join("z.raw")).unwrap(),
        expected_channel(&s, 2, 10, 30, true, &damaged)
    );
    let g = &r.channels[0].gaps;
    assert_eq!(g.len(), 1);
    assert!(
        g[0].reason
            .contains("slot 17 damaged (payload CRC mismatch"),
        "{}",
        g[0].reason
    );
    assert_eq!(g[0].before_slot_seq, Some(20));
}

#[test]
fn export_sigmf_has_the_required_fields_captures_and_annotations() {
    let d = Dir::new("sigmf");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT40],
        slots: 60,
        drop_every: 6,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b"], &spec);
    let r = run_export(
        &s.paths,
        Some(&s.index),
        &export_opts(
            d.join("rec.sigmf-data"),
            Some(2),
            OutputFormat::Sigmf,
            GapMode::Zero,
        ),
    )
    .unwrap();
    let last_card = s.entries.last().unwrap().card_seq;
    let data = std::fs::read(d.join("rec.sigmf-data")).unwrap();
    assert_eq!(
        data,
        expected_channel(&s, 2, 0, last_card, true, &BTreeSet::new())
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("rec.sigmf-meta")).unwrap()).unwrap();
    let g = &meta["global"];
    assert_eq!(g["core:datatype"], "ci16_le");
    assert_eq!(g["core:sample_rate"], 1000.0);
    assert_eq!(g["core:version"], "1.2.0");
    assert_eq!(g["core:recorder"], "dmarec");
    // Channel 2 loses card seqs x ≡ 5 (mod 6) with x ≡ 2 (mod 3): 5, 11, 17, ...
    let lost: Vec<u64> = (0..=last_card)
        .filter(|x| x % 6 == 5 && x % 3 == 2)
        .collect();
    let ann = meta["annotations"].as_array().unwrap();
    assert_eq!(ann.len(), lost.len());
    assert_eq!(r.channels[0].gaps.len(), lost.len());
    let caps = meta["captures"].as_array().unwrap();
    assert_eq!(caps.len(), 1 + lost.len(), "a new capture after each gap");
    assert_eq!(caps[0]["core:sample_start"], 0);
    assert_eq!(
        caps[0]["core:datetime"],
        formats::time::rfc3339_utc(HOST_T0_NS + 2 * CARD_STEP_NS)
    );
    // ci16_le: 4 bytes per sample, 1024 samples per 4 KiB buffer. The first
    // lost buffer of channel 2 is card_seq 5, after buffer 2: sample 1024.
    assert_eq!(ann[0]["core:sample_start"], 1024);
    assert_eq!(ann[0]["core:sample_count"], 1024);
    assert!(ann[0]["core:comment"]
        .as_str()
        .unwrap()
        .contains("1 buffer(s) (1024 samples) of channel 2 missing before slot"));
    assert_eq!(caps[1]["core:sample_start"], 2048);
    assert_eq!(
        caps[1]["core:datetime"],
        formats::time::rfc3339_utc(HOST_T0_NS + 8 * CARD_STEP_NS)
    );
    for a in ann {
        for key in ["core:sample_start", "core:sample_count", "core:comment"] {
            assert!(a.get(key).is_some(), "annotation lacks {key}");
        }
    }
    // --gaps mark: no filler, zero-length annotations at the resume point.
    run_export(
        &s.paths,
        Some(&s.index),
        &export_opts(d.join("m"), Some(2), OutputFormat::Sigmf, GapMode::Mark),
    )
    .unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("m.sigmf-meta")).unwrap()).unwrap();
    assert_eq!(meta["annotations"][0]["core:sample_start"], 1024);
    assert_eq!(meta["annotations"][0]["core:sample_count"], 0);
    assert_eq!(meta["captures"][1]["core:sample_start"], 1024);
}

#[test]
fn replay_at_max_speed_streams_the_channel_and_paces_at_x_speed() {
    let d = Dir::new("replay");
    let s = Synth::write(
        &d,
        &["a"],
        &Spec {
            slots: 40,
            drop_every: 7,
            ..Spec::default()
        },
    );
    let stripe = StripeSet::open(&s.paths).unwrap();
    let run = |o: &ReplayOptions| {
        replay::check_options(&stripe, o).unwrap();
        let (c, range) = catalog::open_planned(&stripe, Some(&s.index), &mut nothing, |c| {
            replay::plan(&stripe, c, o)
        })
        .unwrap();
        replay::replay(&stripe, &c, range, o).unwrap()
    };
    let out = d.join("stream");
    let o = ReplayOptions {
        channel: Some(0),
        speed: Speed::Max,
        from: None,
        to: None,
        out: Some(out.clone()),
        force: false,
        realtime: false,
    };
    let r = run(&o);
    let last_card = s.entries.last().unwrap().card_seq;
    assert_eq!(
        std::fs::read(&out).unwrap(),
        expected_channel(&s, 0, 0, last_card, false, &BTreeSet::new())
    );
    assert_eq!(r.bytes, std::fs::metadata(&out).unwrap().len());
    assert!(
        replay::check_options(&stripe, &o).is_err(),
        "an existing file is not overwritten without --force"
    );
    // Card time spans 45 ms; at x3 the stream takes at least 15 ms.
    let o = ReplayOptions {
        channel: None,
        speed: Speed::Factor(3.0),
        from: None,
        to: None,
        out: Some(d.join("s2")),
        force: false,
        realtime: false,
    };
    let r = run(&o);
    let span_s =
        (s.entries.last().unwrap().card_timestamp_ns - s.entries[0].card_timestamp_ns) as f64 / 1e9;
    assert!(
        r.seconds >= span_s / 3.0,
        "{} < {}",
        r.seconds,
        span_s / 3.0
    );
    assert_eq!(r.slots, 40);
    // Every slot written is measured against its due time, none early.
    let p = r.pacing.expect("a paced replay reports its pacing");
    assert_eq!(p.slots, 40);
    assert!(
        p.p50_ms >= 0.0 && p.p99_ms >= p.p50_ms && p.max_ms >= p.p99_ms,
        "{p:?}"
    );
    assert_eq!(
        run(&ReplayOptions {
            force: true,
            speed: Speed::Max,
            ..o
        })
        .pacing,
        None,
        "--speed max is not paced"
    );
    assert_eq!(Speed::parse("x0.5"), Ok(Speed::Factor(0.5)));
    assert!(Speed::parse("x0").is_err() && Speed::parse("fast").is_err());
}

#[test]
fn replay_streams_every_good_slot_in_slot_order_while_workers_check_them() {
    let d = Dir::new("replay-order");
    let s = Synth::write(
        &d,
        &["a"],
        &Spec {
            member_bytes: vec![(1 << 20) + 400 * 8192 + 4096],
            slots: 400,
            ..Spec::default()
        },
    );
    let damaged: BTreeSet<u64> = [3, 4, 150, 399].into();
    for &seq in &damaged {
        let e = s.entry(seq);
        flip(
            &s.paths[0],
            e.device_offset_bytes + SLOT_HEADER_BYTES as u64 + seq,
            1,
        );
    }
    let stripe = StripeSet::open(&s.paths).unwrap();
    let o = ReplayOptions {
        channel: None,
        speed: Speed::Max,
        from: None,
        to: None,
        out: Some(d.join("all")),
        force: false,
        realtime: false,
    };
    let (c, range) = catalog::open_planned(&stripe, Some(&s.index), &mut nothing, |c| {
        replay::plan(&stripe, c, &o)
    })
    .unwrap();
    let r = replay::replay(&stripe, &c, range, &o).unwrap();
    let mut want = Vec::new();
    let mut buf = vec![0u8; 4096];
    for e in s.entries.iter().filter(|e| !damaged.contains(&e.slot_seq)) {
        pattern::fill(&mut buf, e.channel as u16, e.card_seq);
        want.extend_from_slice(&buf);
    }
    assert!(
        std::fs::read(d.join("all")).unwrap() == want,
        "the stream is every good slot's payload in slot order"
    );
    assert_eq!(r.slots, 396);
    let skipped: Vec<u64> = r
        .skipped
        .iter()
        .map(|m| m.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(skipped, vec![3, 4, 150, 399], "{:?}", r.skipped);
    assert!(
        r.skipped.iter().all(|m| m.contains("CRC")),
        "{:?}",
        r.skipped
    );
}

#[test]
fn outputs_never_name_a_target() {
    let d = Dir::new("guard");
    let s = Synth::write(&d, &["a"], &Spec::default());
    let before = std::fs::read(&s.paths[0]).unwrap();
    let stripe = StripeSet::open(&s.paths).unwrap();
    let mut o = export_opts(
        s.paths[0].clone(),
        Some(0),
        OutputFormat::Raw,
        GapMode::Mark,
    );
    o.force = true;
    let err = export::check_options(&stripe, &o).unwrap_err().to_string();
    assert!(
        err.contains("is target") && err.contains("never writes to a target"),
        "{err}"
    );
    let err = reindex::reindex(
        &stripe,
        &ReindexOptions {
            index: s.paths[0].clone(),
            force: true,
            check_newest: 64,
            quiet: true,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--index") && err.contains("is target"),
        "{err}"
    );
    let o = ReplayOptions {
        channel: None,
        speed: Speed::Max,
        from: None,
        to: None,
        out: Some(s.paths[0].clone()),
        force: true,
        realtime: false,
    };
    assert!(replay::check_options(&stripe, &o)
        .unwrap_err()
        .to_string()
        .contains("is target"));
    assert!(std::fs::read(&s.paths[0]).unwrap() == before);
}

#[test]
fn missing_runs_reach_past_the_last_entry() {
    use crate::scan::missing_runs;
    // Slots 2, 3 and 6 of 0..=9: runs split where the finding changes,
    // including after the last entry.
    let entry = |slot_seq| formats::IndexEntry {
        slot_seq,
        ..Default::default()
    };
    let entries = [entry(2), entry(3), entry(6)];
    let found = |seq: u64| {
        if seq < 8 {
            Found::Empty
        } else {
            Found::DamagedHeader
        }
    };
    let runs: Vec<(u64, u64, Found)> = missing_runs(&entries, 0, 9, found)
        .iter()
        .map(|r| (r.first_slot_seq, r.last_slot_seq, r.found))
        .collect();
    assert_eq!(
        runs,
        [
            (0, 1, Found::Empty),
            (4, 5, Found::Empty),
            (7, 7, Found::Empty),
            (8, 9, Found::DamagedHeader)
        ]
    );
}

#[test]
fn a_format_1_0_set_reads_as_its_one_untracked_scan() {
    let d = Dir::new("legacy");
    let s = Synth::write(&d, &["a"], &Spec::default());
    assert!(!s.sb.has_scan_table(), "synth writes format 1.0 sets");
    let mut stripe = StripeSet::open(&s.paths).unwrap();
    let listed = crate::scans::list(&stripe);
    assert_eq!(listed.format_version, "1.0");
    assert_eq!((listed.table_generation, listed.slots_left), (0, 0));
    assert_eq!(listed.scans.len(), 1);
    let scan = &listed.scans[0];
    assert_eq!((scan.name.as_str(), scan.state), ("recording", "untracked"));
    assert_eq!(scan.uuid, s.sb.recording_uuid.to_string());
    assert_eq!((scan.slot_count, scan.duration_s), (None, None));
    for wanted in [None, Some("recording"), Some(scan.uuid.as_str())] {
        stripe.select_scan(wanted).unwrap();
        assert_eq!(stripe.recording_uuid(), s.sb.recording_uuid);
        assert_eq!(stripe.layout, s.layout);
    }
    let err = stripe.select_scan(Some("other")).unwrap_err().to_string();
    assert!(
        err.contains("no such scan") && err.contains("\"recording\""),
        "{err}"
    );
    let r = verify_with(&s.paths, Some(&s.index), true);
    assert_eq!((r.slots_checked, r.bad.len()), (30, 0));
}

/// A ring wrapped mid-file whose newest slot is torn and where the location
/// of slot 198 still holds slot 133 of the lap before (its write never
/// happened): the index is slots 135..=197, in slot order; 133 (the window
/// reaches back to newest intact + 1 - capacity) is an older lap, 134's
/// location holds the torn 199. No temporary file is left.
#[test]
fn reindex_of_a_wrapped_ring_with_an_older_lap_and_a_torn_newest_slot() {
    let d = Dir::new("ring-older");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT25],
        ring: true,
        slots: 200,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b"], &spec);
    assert_eq!(s.layout.capacity_slots(), 65);
    // Slot 133 back at its location (where 198 is now).
    let old = s.entry(133);
    let mut slot = vec![0u8; SLOT_HEADER_BYTES + 4096];
    let (head, payload) = slot.split_at_mut(SLOT_HEADER_BYTES);
    pattern::fill(payload, old.channel as u16, old.card_seq);
    formats::SlotHeader {
        recording_uuid: s.sb.recording_uuid,
        slot_seq: 133,
        card_seq: old.card_seq,
        card_timestamp_ns: old.card_timestamp_ns,
        host_timestamp_ns: old.host_timestamp_ns,
        gap_count: old.gap_count,
        payload_bytes_used: old.payload_bytes_used,
        payload_crc32: old.payload_crc32,
        channel: old.channel as u16,
        flags: old.flags,
        device_index: old.device_index as u16,
    }
    .encode_into(head);
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::OpenOptions::new()
            .write(true)
            .open(&s.paths[old.device_index as usize])
            .unwrap(),
        &slot,
        old.device_offset_bytes,
    )
    .unwrap();
    let newest = s.entry(199);
    flip(
        &s.paths[newest.device_index as usize],
        newest.device_offset_bytes + 4096 + 7,
        2,
    );
    let stripe = StripeSet::open(&s.paths).unwrap();
    let idx = d.join("r.idx");
    let rep = reindex::reindex(
        &stripe,
        &ReindexOptions {
            index: idx.clone(),
            force: false,
            check_newest: 64,
            quiet: true,
        },
    )
    .unwrap();
    let torn: Vec<u64> = rep.torn.iter().map(|t| t.slot_seq).collect();
    assert_eq!(torn, [199]);
    assert_eq!(
        (
            rep.slots_indexed,
            rep.first_slot_seq,
            rep.last_slot_seq,
            rep.ring_wraps
        ),
        (63, Some(135), Some(197), 3)
    );
    let missing: Vec<(u64, u64, Found)> = rep
        .scan
        .missing
        .iter()
        .map(|m| (m.first_slot_seq, m.last_slot_seq, m.found))
        .collect();
    assert_eq!(
        missing,
        [(133, 133, Found::OlderLap), (134, 134, Found::Torn)]
    );
    let counts: Vec<(&str, u64)> = rep
        .scan
        .counts
        .iter()
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    assert_eq!(counts, [("live", 63), ("older_lap", 1), ("torn", 1)]);
    assert_eq!(
        (
            rep.scan.live_slots,
            rep.scan.newest_slot_seq,
            rep.scan.oldest_slot_seq
        ),
        (63, Some(197), Some(135))
    );
    let bytes = std::fs::read(&idx).unwrap();
    let view = formats::index::IndexView::new(&bytes).unwrap();
    let got: Vec<formats::IndexEntry> = (0..view.len()).map(|i| view.get(i).unwrap()).collect();
    let expect: Vec<formats::IndexEntry> = (135..=197).map(|q| s.entry(q)).collect();
    assert_eq!(got, expect);
    let names: Vec<String> = std::fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

/// `verify --range` reads only that range, with and without the index (a
/// scan's catalog checks the header chain from the entry before the range).
#[test]
fn verify_reads_only_the_range() {
    let d = Dir::new("range");
    let spec = Spec {
        member_bytes: vec![SLOT40, SLOT25],
        slots: 60,
        drop_every: 5,
        ..Spec::default()
    };
    let s = Synth::write(&d, &["a", "b"], &spec);
    let stripe = StripeSet::open(&s.paths).unwrap();
    let o = VerifyOptions {
        range: Some(SeqRange {
            first: 10,
            last: 19,
        }),
        pattern: true,
        quiet: true,
        threads: 2,
    };
    for index in [Some(s.index.as_path()), None] {
        let (c, range) = catalog::open_planned(&stripe, index, &mut nothing, |c| {
            Ok(verify::plan(&stripe, c, &o))
        })
        .unwrap();
        assert_eq!(range, 10..20);
        let r = verify::verify(&stripe, &c, range, &o).unwrap();
        assert_eq!((r.slots_checked, r.bad.len()), (10, 0), "{:?}", r.bad);
    }
}

/// Export sizes its outputs (allocated ahead) and its progress bar from
/// one pass: the payload bytes of the entries kept, per channel and in
/// all; an entry of a channel past the recording's counts in all only.
#[test]
fn export_selection_bytes_counts_the_entries_kept_per_channel_and_in_all() {
    let d = Dir::new("selection-bytes");
    let s = Synth::write(
        &d,
        &["a"],
        &Spec {
            slots: 12,
            ..Spec::default()
        },
    );
    let stripe = StripeSet::open(&s.paths).unwrap();
    let mut bytes = formats::index::IndexHeader {
        superblock: stripe.superblock.clone(),
        scan_uuid: formats::Uuid::NIL,
    }
    .encode();
    for e in s.live() {
        // 3 channels round-robin, no loss: slot k is channel k % 3.
        assert_eq!(u64::from(e.channel), e.slot_seq % 3);
        let mut e = *e;
        e.payload_bytes_used = 100 + e.slot_seq as u32;
        if e.slot_seq == 4 {
            e.channel = 3;
        }
        bytes.extend_from_slice(&e.encode());
    }
    let view = formats::index::IndexView::new(&bytes).unwrap();
    let even = |e: &formats::IndexEntry| e.slot_seq % 2 == 0;
    // Slots 1..=10, the even ones: 2 (ch 2), 4 (ch 3), 6 (ch 0), 8 (ch 2), 10 (ch 1).
    let got = export::selection_bytes(&view, 1..11, 3, even).unwrap();
    assert_eq!(
        got,
        (vec![106, 110, 102 + 108], 102 + 104 + 106 + 108 + 110)
    );
}
