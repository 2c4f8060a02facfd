//! `dmaplay timeline`: the SVG parses, and its gap and ring-wrap marks sit
//! exactly at inspect's gaps and at the slots that start a new lap.

use crate::catalog;
use crate::inspect;
use crate::stripe::StripeSet;
use crate::synth::{Dir, Spec, Synth};
use crate::timeline::{self, TimelineOptions, GAP_RGB, WRAP_RGB};

/// x of every vertical line drawn with `rgb` in the SVG.
fn marks(svg: &str, rgb: (u8, u8, u8)) -> Vec<i32> {
    let color = format!("#{:02X}{:02X}{:02X}", rgb.0, rgb.1, rgb.2);
    let doc = roxmltree::Document::parse(svg).expect("the timeline is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let mut xs: Vec<i32> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(color.as_str()))
        .map(|n| {
            let points: Vec<(i32, i32)> = n
                .attribute("points")
                .unwrap()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            assert_eq!(points.len(), 2, "a mark is one vertical line");
            assert_eq!(points[0].0, points[1].0, "a mark is vertical");
            points[0].0
        })
        .collect();
    xs.sort();
    xs
}

#[test]
fn timeline_svg_marks_inspects_gaps_and_the_ring_wraps() {
    let d = Dir::new("timeline");
    // Ring of 40 slots, 100 written: the live window crosses a lap start.
    let s = Synth::write(
        &d,
        &["a"],
        &Spec {
            ring: true,
            slots: 100,
            drop_every: 7,
            ..Spec::default()
        },
    );
    let stripe = StripeSet::open(&s.paths).unwrap();
    let (c, inspection) = catalog::open_planned(&stripe, Some(&s.index), &mut |_| {}, |c| {
        Ok(inspect::inspect(&stripe, c, None))
    })
    .unwrap();
    assert!(inspection.gaps.len() >= 3, "the recording has gaps");
    let o = TimelineOptions {
        out: d.join("t.svg"),
        bins: 50,
        width_px: 800,
        height_px: 400,
        force: false,
    };
    timeline::check_options(&stripe, &o).unwrap();
    let data = timeline::collect(&stripe, &c, o.bins).unwrap();
    let report = timeline::write_svg(&stripe, &data, &o).unwrap();
    assert!(
        timeline::check_options(&stripe, &o).is_err(),
        "an existing SVG is not overwritten without --force"
    );
    let svg = std::fs::read_to_string(&o.out).unwrap();
    // The time axis: x0 at the first live slot, x1 at the last.
    let (x0, x1) = (report.x0_px as f64, report.x1_px as f64);
    assert!(x1 - x0 > 400.0, "axis {x0}..{x1}");
    // t: seconds after the first live slot.
    let x_at = |t: f64| (x0 + t / inspection.duration_s * (x1 - x0)).round() as i32;
    let mut want: Vec<i32> = inspection
        .gaps
        .iter()
        .map(|g| x_at(g.time_s - report.start_s))
        .collect();
    want.sort();
    let got = marks(&svg, GAP_RGB);
    assert_eq!(got.len(), want.len(), "one mark per gap inspect reports");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1,
            "gap marks {got:?}, inspect's gaps at {want:?}"
        );
    }
    // Ring wraps: where a live slot number is a multiple of the capacity.
    let cap = stripe.layout.capacity_slots();
    let view = c.view();
    let origin = view.get(c.live().start).unwrap().card_timestamp_ns;
    let want: Vec<i32> = c
        .live()
        .map(|i| view.get(i).unwrap())
        .filter(|e| e.slot_seq % cap == 0)
        .map(|e| x_at((e.card_timestamp_ns - origin) as f64 / 1e9))
        .collect();
    assert_eq!(want.len(), 1, "the live window holds one lap start");
    let got = marks(&svg, WRAP_RGB);
    assert_eq!(got.len(), 1, "wrap marks {got:?}");
    assert!(
        (got[0] - want[0]).abs() <= 1,
        "wrap mark {got:?}, lap start at {want:?}"
    );
    // Every channel is drawn and named in the legend.
    for ch in &stripe.superblock.channels {
        assert!(svg.contains(&ch.name), "legend lacks {}", ch.name);
    }
}
