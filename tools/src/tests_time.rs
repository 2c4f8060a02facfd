//! Time addressing on the card time base, empty selections, and SigMF
//! times, on synthetic recordings (crate::synth).

use crate::catalog::{self, Catalog};
use crate::export::{self, ExportOptions, GapMode, OutputFormat};
use crate::inspect;
use crate::select::{self, Selection};
use crate::stripe::StripeSet;
use crate::synth::{Dir, Spec, Synth, ANCHOR_REALTIME_NS, CARD_STEP_NS, CARD_T0_NS, HOST_T0_NS};
use crate::timespec::TimeSpec;
use std::path::{Path, PathBuf};

fn nothing(_: u64) {}

fn catalog_of(stripe: &StripeSet, index: &Path) -> Catalog {
    catalog::open_planned(stripe, Some(index), &mut nothing, |c| {
        Ok(c.check_entries(stripe, c.live()))
    })
    .unwrap()
    .0
}

/// The card_seq of every slot `--from`/`--to` select.
fn selected(s: &Synth, from: Option<TimeSpec>, to: Option<TimeSpec>) -> Vec<u64> {
    let stripe = StripeSet::open(&s.paths).unwrap();
    let c = catalog_of(&stripe, &s.index);
    let sel = Selection {
        from,
        to,
        ..Selection::default()
    };
    let range = select::resolve(&c, &stripe, &sel).unwrap();
    range.map(|i| c.view().get(i).unwrap().card_seq).collect()
}

/// A ring of 40 slots written 66 and 70 times: an instant, a duration from
/// the start, a card sequence and a slot number name the same buffers in
/// both (only the oldest live slot moved).
#[test]
fn every_form_names_the_same_data_across_ring_wraps() {
    let d = Dir::new("time-wrap");
    let spec = |slots| Spec {
        ring: true,
        slots,
        channels: 1,
        anchored: true,
        ..Spec::default()
    };
    let short = Synth::write(&d, &["a"], &spec(66));
    let d2 = Dir::new("time-wrap2");
    let long = Synth::write(&d2, &["a"], &spec(70));
    assert!(long.live()[0].card_seq > short.live()[0].card_seq);
    let card_60 = ANCHOR_REALTIME_NS + 60 * CARD_STEP_NS;
    let cases = [
        (
            TimeSpec::At(card_60),
            TimeSpec::At(card_60 + 4 * CARD_STEP_NS),
        ),
        (
            TimeSpec::FromStart(60 * CARD_STEP_NS),
            TimeSpec::FromStart(64 * CARD_STEP_NS),
        ),
        (TimeSpec::CardSeq(60), TimeSpec::CardSeq(64)),
        (TimeSpec::Slot(60), TimeSpec::Slot(64)),
    ];
    for (from, to) in cases {
        let want: Vec<u64> = (60..=64).collect();
        assert_eq!(selected(&short, Some(from), Some(to)), want, "{from} {to}");
        assert_eq!(selected(&long, Some(from), Some(to)), want, "{from} {to}");
    }
    // Back from the end: the newest 5 ms.
    let end = selected(&long, Some(TimeSpec::BeforeEnd(4 * CARD_STEP_NS)), None);
    assert_eq!(end, (65..=69).collect::<Vec<u64>>());
}

/// A 1.0 recording (no stored anchor): time 0 is the oldest live slot, and
/// instants are read on its host time, as before 1.1.
#[test]
fn without_anchor_the_oldest_slot_is_the_start() {
    let d = Dir::new("time-derived");
    let s = Synth::write(&d, &["a"], &Spec::default());
    let got = selected(&s, Some(TimeSpec::FromStart(2 * CARD_STEP_NS)), None);
    assert_eq!(got.first(), Some(&2));
    let got = selected(
        &s,
        Some(TimeSpec::At(HOST_T0_NS + 7 * CARD_STEP_NS)),
        Some(TimeSpec::At(HOST_T0_NS + 8 * CARD_STEP_NS)),
    );
    assert_eq!(got, vec![7, 8]);
    let stripe = StripeSet::open(&s.paths).unwrap();
    let c = catalog_of(&stripe, &s.index);
    let i = inspect::inspect(&stripe, &c, None).unwrap();
    let t = i.time_base.unwrap();
    assert!(!t.anchor_stored);
    assert_eq!(t.anchor_card_ns, CARD_T0_NS);
    assert_eq!(t.drift.unwrap().max_ns, 0);
}

/// Inspect reads times on the anchored card clock and reports the host's
/// drift against it (the synthetic host jitter is 0..=49 ms plus the 3 ms
/// between the anchor and the first host time).
#[test]
fn inspect_reports_anchored_times_and_drift() {
    let d = Dir::new("time-inspect");
    let s = Synth::write(
        &d,
        &["a"],
        &Spec {
            anchored: true,
            slots: 200,
            member_bytes: vec![(1 << 20) + 200 * 8192 + 4096],
            ..Spec::default()
        },
    );
    let stripe = StripeSet::open(&s.paths).unwrap();
    let c = catalog_of(&stripe, &s.index);
    let i = inspect::inspect(&stripe, &c, None).unwrap();
    assert_eq!(
        i.start.as_deref(),
        Some(formats::time::rfc3339_utc(ANCHOR_REALTIME_NS).as_str())
    );
    let t = i.time_base.as_ref().unwrap();
    assert!(t.anchor_stored);
    assert_eq!(t.clock, "sample_counter");
    let drift = t.drift.as_ref().unwrap();
    let mut all: Vec<i64> = (0..200u64)
        .map(|k| 3_000_000 + ((k * 7_919) % 50 * 1_000_000) as i64)
        .collect();
    all.sort();
    assert_eq!(
        (drift.slots, drift.min_ns, drift.max_ns, drift.p99_ns),
        (200, all[0], all[199], all[197])
    );
    assert!(i.text().contains("time base: card clock sample_counter"));
}

fn export_opts(out: PathBuf, channel: Option<u16>) -> ExportOptions {
    ExportOptions {
        channel,
        out,
        format: OutputFormat::Sigmf,
        from: None,
        to: None,
        gaps: GapMode::Mark,
        force: false,
        quiet: true,
        sigmf: Default::default(),
    }
}

fn run_export(s: &Synth, o: &ExportOptions) -> anyhow::Result<export::ExportReport> {
    let stripe = StripeSet::open(&s.paths).unwrap();
    export::check_options(&stripe, o)?;
    let (c, range) = catalog::open_planned(&stripe, Some(&s.index), &mut nothing, |c| {
        export::plan(&stripe, c, o)
    })?;
    export::export(&stripe, &c, range, o)
}

/// `--from 3 --to 1`, past the end, and a channel with no slot in the
/// range: usage errors saying what exists, and no file written.
#[test]
fn empty_selections_are_usage_errors_that_say_what_exists() {
    let d = Dir::new("time-empty");
    let s = Synth::write(&d, &["a"], &Spec::default());
    let out = d.join("e.sigmf");
    let ms = |n: u64| Some(TimeSpec::FromStart(n * CARD_STEP_NS));
    let cases = [
        (
            None,
            ms(3),
            ms(1),
            "--from start+0.003s --to start+0.001s selects no slots",
        ),
        (Some(0), ms(100), None, "selects no slots"),
        (
            Some(0),
            Some(TimeSpec::CardSeq(4)),
            Some(TimeSpec::CardSeq(4)),
            "selects no slots of channel 0",
        ),
    ];
    for (channel, from, to, says) in cases {
        let mut o = export_opts(out.clone(), channel);
        o.from = from;
        o.to = to;
        let err = run_export(&s, &o).expect_err(says);
        assert!(select::is_usage_error(&err), "{err:#}");
        let text = format!("{err:#}");
        assert!(text.contains(says), "{text}");
        assert!(
            text.contains("the recording holds slot:0..slot:29, card:0..card:29"),
            "{text}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("e"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
