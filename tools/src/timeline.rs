//! `dmaplay timeline`: an SVG picture of a recording from its catalog (no
//! payload is read): the rate of every channel over time, the card's gaps
//! (red vertical lines, exactly inspect's gaps) and the ring wraps (purple
//! lines), on a time axis in seconds of the card clock from the
//! recording's start (its time anchor, whose UTC instant labels the axis),
//! as inspect's times. Drawn with `plotters`' SVG backend.

use crate::catalog::{Catalog, IndexDamage};
use crate::inspect;
use crate::select;
use crate::stripe::StripeSet;
use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

/// Gap marks (and ring-wrap marks) drawn at most; more are counted.
pub const MAX_MARKS: usize = 10_000;
/// Stroke colour of a gap mark (no channel uses it).
pub const GAP_RGB: (u8, u8, u8) = (214, 39, 40);
/// Stroke colour of a ring-wrap mark.
pub const WRAP_RGB: (u8, u8, u8) = (148, 103, 189);
const CHANNEL_RGB: [(u8, u8, u8); 6] = [
    (31, 119, 180),
    (44, 160, 44),
    (255, 127, 14),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
];

pub struct TimelineOptions {
    pub out: PathBuf,
    /// Time bins of the rate curves.
    pub bins: usize,
    pub width_px: u32,
    pub height_px: u32,
    pub force: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub slot_seq: u64,
    /// Seconds from the first live slot, card clock.
    pub time_s: f64,
    /// Horizontal position in the SVG.
    pub x_px: i32,
}

#[derive(Debug, Serialize)]
pub struct TimelineReport {
    pub recording_uuid: String,
    pub out: String,
    /// The axis: the first live slot's time, from the recording's start.
    pub start_s: f64,
    pub duration_s: f64,
    pub bin_s: f64,
    pub peak_mb_per_s: f64,
    pub gaps: Vec<Mark>,
    pub gaps_not_drawn: u64,
    pub ring_wraps: Vec<Mark>,
    /// SVG x of `start_s` and of `start_s + duration_s` (the axis' ends).
    pub x0_px: i32,
    pub x1_px: i32,
}

/// Refuses an existing output (without --force) and one naming a target.
pub fn check_options(stripe: &StripeSet, options: &TimelineOptions) -> Result<()> {
    stripe.refuse_output(&options.out, "--out")?;
    if !options.force && options.out.exists() {
        bail!(
            "output {} exists: remove it, choose another --out, or give --force",
            options.out.display()
        );
    }
    if options.bins == 0 || options.bins > 100_000 {
        bail!("--bins {}: use 1..=100000", options.bins);
    }
    Ok(())
}

/// What the picture shows, from the catalog ([`collect`]).
pub struct Data {
    start_s: f64,
    /// UTC of the recording's start (the anchor), for the axis label.
    anchor_datetime: Option<String>,
    duration_s: f64,
    bin_s: f64,
    /// MB/s per channel per bin.
    rates: Vec<Vec<f64>>,
    gaps: Vec<(u64, f64)>,
    gaps_not_drawn: u64,
    wraps: Vec<(u64, f64)>,
}

/// Rates per bin, gaps (inspect's) and ring wraps, from the catalog.
pub fn collect(stripe: &StripeSet, catalog: &Catalog, bins: usize) -> Result<Data, IndexDamage> {
    assert!(bins > 0, "at least one bin");
    let inspection = inspect::inspect(stripe, catalog, None)?;
    let capacity = stripe.layout.capacity_slots().max(1);
    let base = select::time_base(catalog, stripe)?;
    let anchor = base.as_ref().map(|b| b.anchor);
    // Seconds from the recording's start, as inspect's.
    let time_s = |ns: u64| anchor.map_or(0.0, |a| (ns as f64 - a.card_ns as f64) / 1e9);
    let start_s = base
        .as_ref()
        .map_or(0.0, |b| time_s(b.first.card_timestamp_ns));
    let duration_s = inspection.duration_s.max(1e-3);
    let bin_s = duration_s / bins as f64;
    let channels = stripe.superblock.channels.len();
    let mut bytes = vec![vec![0u64; bins]; channels];
    let mut wraps = Vec::new();
    let view = catalog.view();
    let mut prev_lap: Option<u64> = None;
    for i in catalog.live() {
        let e = view.get(i)?;
        let t = time_s(e.card_timestamp_ns);
        let bin = (((t - start_s).max(0.0) / bin_s) as usize).min(bins - 1);
        if let Some(c) = bytes.get_mut(e.channel as usize) {
            c[bin] += e.payload_bytes_used as u64;
        }
        let lap = e.slot_seq / capacity;
        if prev_lap.is_some_and(|p| p != lap) && wraps.len() < MAX_MARKS {
            wraps.push((e.slot_seq, t));
        }
        prev_lap = Some(lap);
    }
    let gaps: Vec<(u64, f64)> = inspection
        .gaps
        .iter()
        .take(MAX_MARKS)
        .map(|g| (g.slot_seq, g.time_s))
        .collect();
    Ok(Data {
        start_s,
        anchor_datetime: anchor.map(|a| formats::time::rfc3339_utc(a.realtime_ns)),
        duration_s,
        bin_s,
        rates: bytes
            .iter()
            .map(|c| c.iter().map(|&b| b as f64 / bin_s / 1e6).collect())
            .collect(),
        gaps_not_drawn: (inspection.gaps.len() - gaps.len()) as u64,
        gaps,
        wraps,
    })
}

/// Draws `data` and writes the SVG to `options.out`.
pub fn write_svg(
    stripe: &StripeSet,
    data: &Data,
    options: &TimelineOptions,
) -> Result<TimelineReport> {
    let mut svg = String::new();
    let report = draw(stripe, data, options, &mut svg)?;
    std::fs::write(&options.out, svg)
        .with_context(|| format!("writing {}", options.out.display()))?;
    Ok(report)
}

fn rgb(c: (u8, u8, u8)) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

fn draw(
    stripe: &StripeSet,
    data: &Data,
    options: &TimelineOptions,
    svg: &mut String,
) -> Result<TimelineReport> {
    let e = |e: plotters::drawing::DrawingAreaErrorKind<_>| anyhow!("drawing the timeline: {e}");
    let sb = &stripe.superblock;
    let peak = data.rates.iter().flatten().cloned().fold(0.0f64, f64::max);
    let y_top = if peak > 0.0 { peak * 1.15 } else { 1.0 };
    let root =
        SVGBackend::with_string(svg, (options.width_px, options.height_px)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let title = format!("recording {}: rate per channel", sb.recording_uuid);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(data.start_s..data.start_s + data.duration_s, 0f64..y_top)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(match &data.anchor_datetime {
            Some(at) => format!("seconds from the recording's start, {at} (card clock)"),
            None => "seconds (card clock)".to_string(),
        })
        .y_desc("MB/s")
        .draw()
        .map_err(e)?;
    for (c, rates) in data.rates.iter().enumerate() {
        let color = rgb(CHANNEL_RGB[c % CHANNEL_RGB.len()]);
        let points = rates
            .iter()
            .enumerate()
            .map(|(b, &r)| (data.start_s + (b as f64 + 0.5) * data.bin_s, r));
        let name = format!("ch{c} {}", sb.channels[c].name);
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    let vline = |t: f64, style: ShapeStyle| PathElement::new(vec![(t, 0.0), (t, y_top)], style);
    let gap_style = rgb(GAP_RGB).stroke_width(1);
    chart
        .draw_series(data.gaps.iter().map(|&(_, t)| vline(t, gap_style)))
        .map_err(e)?;
    let wrap_style = rgb(WRAP_RGB).stroke_width(2);
    chart
        .draw_series(data.wraps.iter().map(|&(_, t)| vline(t, wrap_style)))
        .map_err(e)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    let x_of = |t: f64| chart.backend_coord(&(t, 0.0)).0;
    let marks = |v: &[(u64, f64)]| {
        v.iter()
            .map(|&(slot_seq, time_s)| Mark {
                slot_seq,
                time_s,
                x_px: x_of(time_s),
            })
            .collect::<Vec<_>>()
    };
    let report = TimelineReport {
        recording_uuid: sb.recording_uuid.to_string(),
        out: options.out.display().to_string(),
        start_s: data.start_s,
        duration_s: data.duration_s,
        bin_s: data.bin_s,
        peak_mb_per_s: peak,
        gaps: marks(&data.gaps),
        gaps_not_drawn: data.gaps_not_drawn,
        ring_wraps: marks(&data.wraps),
        x0_px: x_of(data.start_s),
        x1_px: x_of(data.start_s + data.duration_s),
    };
    root.present().map_err(e)?;
    Ok(report)
}

impl TimelineReport {
    pub fn text(&self) -> String {
        format!(
            "timeline of {}: {:.3} s, {} bins of {:.6} s, peak {:.1} MB/s, {} gap(s){}, {} ring wrap(s) -> {}\n",
            self.recording_uuid,
            self.duration_s,
            ((self.duration_s / self.bin_s).round()) as u64,
            self.bin_s,
            self.peak_mb_per_s,
            self.gaps.len(),
            if self.gaps_not_drawn > 0 {
                format!(" (+{} not drawn)", self.gaps_not_drawn)
            } else {
                String::new()
            },
            self.ring_wraps.len(),
            self.out
        )
    }
}
