//! `dmaplay inspect`: what a recording holds, from the catalog alone (no
//! payload is read): members, time span, bytes, per-channel bytes and
//! rates, every gap the card reported, slot numbers missing from the
//! catalog, ring wraps, and optionally the slots themselves.

use crate::catalog::{Catalog, IndexDamage};
use crate::drift::DriftStats;
use crate::scan::{self, Found, MissingRun, ScanReport};
use crate::select::{self, Selection};
use crate::stripe::{MissingMember, StripeSet};
use anyhow::Result;
use formats::time::rfc3339_utc;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Device {
    pub device_index: usize,
    pub uuid: String,
    pub path: Option<String>,
    pub size_bytes: u64,
    pub slot_count: u64,
    /// "primary", "backup" (primary damaged) or "missing".
    pub superblock: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ChannelSummary {
    pub channel: u16,
    pub name: String,
    pub datatype: String,
    pub sample_rate_hz: f64,
    pub slots: u64,
    pub bytes: u64,
    pub bytes_per_s: f64,
    pub buffers_lost: u64,
}

#[derive(Debug, Serialize)]
pub struct Gap {
    pub slot_seq: u64,
    pub card_seq: u64,
    /// Seconds from the first live slot (card clock).
    pub time_s: f64,
    /// Host time the slot after the gap was taken.
    pub datetime: String,
    pub buffers_lost: u64,
}

#[derive(Debug, Serialize)]
pub struct SlotRow {
    pub slot_seq: u64,
    pub card_seq: u64,
    pub channel: u8,
    pub time_s: f64,
    pub datetime: String,
    pub device_index: u8,
    pub offset_bytes: u64,
    pub payload_bytes_used: u32,
    pub gap_count: u64,
}

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub schema_version: u32,
    pub recording_uuid: String,
    pub created: String,
    pub ring_mode: bool,
    /// `round_robin` or `interleaved` (docs/FORMAT.md, "Channel layouts").
    pub channel_layout: &'static str,
    pub payload_bytes: u32,
    pub slot_bytes: u64,
    pub capacity_slots: u64,
    pub devices: Vec<Device>,
    pub missing_members: Vec<MissingMember>,
    /// "index PATH" or "scan of the targets' slot headers".
    pub catalog: String,
    pub index_torn_tail_bytes: usize,
    pub index_behind: Option<String>,
    pub slots: u64,
    pub first_slot_seq: Option<u64>,
    pub last_slot_seq: Option<u64>,
    /// How often the ring wrapped (newest slot / capacity).
    pub ring_wraps: u64,
    pub start: Option<String>,
    pub end: Option<String>,
    pub duration_s: f64,
    /// The card clock, its anchor and the host's drift against it.
    pub time_base: Option<TimeBaseReport>,
    pub payload_bytes_recorded: u64,
    pub buffers_lost: u64,
    pub channels: Vec<ChannelSummary>,
    pub gaps: Vec<Gap>,
    /// Slot numbers in the live window that the catalog lacks.
    pub missing_slots: Vec<MissingRun>,
    /// Live slots on members that were not given.
    pub unavailable_slots: u64,
    pub scan: Option<ScanReport>,
    /// With --slots: the selected slots (null without).
    pub slot_list: Option<Vec<SlotRow>>,
}

/// Lost buffers of `channel` among card sequence numbers `first..first+count`
/// (round-robin layout: buffer `s` belongs to channel `s mod channels`).
pub fn lost_of_channel(first: u64, count: u64, channel: u64, channels: u64) -> u64 {
    assert!(channels > 0 && channel < channels);
    let below = |x: u64| -> u64 {
        // How many s in 0..x with s mod channels == channel.
        x / channels + u64::from(x % channels > channel)
    };
    below(first.saturating_add(count)) - below(first)
}

/// The recording's time base (format 1.1 stores the anchor; for 1.0 it is
/// derived from the oldest live slot: card time = its host time).
#[derive(Debug, Serialize)]
pub struct TimeBaseReport {
    pub clock: &'static str,
    pub anchor_stored: bool,
    pub anchor_card_ns: u64,
    pub anchor_datetime: String,
    pub drift: Option<DriftStats>,
}

pub fn inspect(
    stripe: &StripeSet,
    catalog: &Catalog,
    list: Option<&Selection>,
) -> Result<Inspection, IndexDamage> {
    let sb = &stripe.superblock;
    let layout = &stripe.layout;
    let n_channels = sb.channels.len() as u64;
    let channel_layout = formats::ChannelLayout::of(sb);
    let live = catalog.live();
    catalog.check_entries(stripe, live.clone())?;
    let view = catalog.view();
    let base = select::time_base(catalog, stripe)?;
    let anchor = base.as_ref().map(|b| b.anchor);
    // Seconds from the recording's start (its anchor; negative before it).
    let time_s = |ns: u64| anchor.map_or(0.0, |a| (ns as f64 - a.card_ns as f64) / 1e9);
    // The anchored card time: the instant every reader agrees on.
    let datetime = |ns: u64| rfc3339_utc(anchor.map_or(ns, |a| a.realtime_of(ns)));
    let mut channels: Vec<ChannelSummary> = sb
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| ChannelSummary {
            channel: i as u16,
            name: c.name.clone(),
            datatype: c.datatype.clone(),
            sample_rate_hz: c.sample_rate_hz,
            slots: 0,
            bytes: 0,
            bytes_per_s: 0.0,
            buffers_lost: 0,
        })
        .collect();
    let mut gaps = Vec::new();
    let (mut first, mut last): (Option<formats::IndexEntry>, Option<formats::IndexEntry>) =
        (None, None);
    let mut unavailable = 0u64;
    let mut recorded = 0u64;
    let mut lost = 0u64;
    // Drift extremes here; its p99 takes passes of its own (DriftStats).
    let (mut drift_min_ns, mut drift_max_ns) = (i64::MAX, i64::MIN);
    for item in catalog.pass(live.clone()) {
        let (_, e) = item?;
        if let Some(a) = &anchor {
            let d = a.drift_ns(e.card_timestamp_ns, e.host_timestamp_ns);
            drift_min_ns = drift_min_ns.min(d);
            drift_max_ns = drift_max_ns.max(d);
        }
        first.get_or_insert(e);
        last = Some(e);
        recorded += e.payload_bytes_used as u64;
        if channel_layout.interleaved() {
            // Every slot holds an equal share of every channel.
            for c in channels.iter_mut() {
                c.slots += 1;
                c.bytes += e.payload_bytes_used as u64 / n_channels;
            }
        } else if let Some(c) = channels.get_mut(e.channel as usize) {
            c.slots += 1;
            c.bytes += e.payload_bytes_used as u64;
        }
        if stripe.member(e.device_index as usize).is_none() {
            unavailable += 1;
        }
        if e.gap_count > 0 {
            lost += e.gap_count;
            let first_lost = e.card_seq.saturating_sub(e.gap_count);
            for (ch, c) in channels.iter_mut().enumerate() {
                c.buffers_lost += if channel_layout.interleaved() {
                    e.gap_count
                } else {
                    lost_of_channel(first_lost, e.gap_count, ch as u64, n_channels)
                };
            }
            gaps.push(Gap {
                slot_seq: e.slot_seq,
                card_seq: e.card_seq,
                time_s: time_s(e.card_timestamp_ns),
                datetime: datetime(e.card_timestamp_ns),
                buffers_lost: e.gap_count,
            });
        }
    }
    let duration_s = match (first, last) {
        (Some(a), Some(b)) => b.card_timestamp_ns.saturating_sub(a.card_timestamp_ns) as f64 / 1e9,
        _ => 0.0,
    };
    for c in channels.iter_mut() {
        c.bytes_per_s = if duration_s > 0.0 {
            c.bytes as f64 / duration_s
        } else {
            0.0
        };
    }
    let missing_slots = match (&catalog.scan, first, last) {
        (Some(report), _, _) => report.missing.clone(),
        (None, Some(a), Some(b)) => {
            // Every live entry was read above (item?): none fails here.
            let seqs = catalog
                .pass(live.clone())
                .filter_map(|item| item.ok().map(|(_, e)| e.slot_seq));
            scan::missing_runs_of(seqs, a.slot_seq, b.slot_seq, |_| Found::NotInIndex)
        }
        _ => Vec::new(),
    };
    let slot_list = match list {
        None => None,
        Some(sel) => {
            let range = select::resolve(catalog, stripe, sel)?;
            let mut rows = Vec::with_capacity(range.len());
            for i in range {
                let e = view.get(i)?;
                // Interleaved: every slot holds every channel.
                if channel_layout.interleaved() || sel.wants(&e) {
                    rows.push(SlotRow {
                        slot_seq: e.slot_seq,
                        card_seq: e.card_seq,
                        channel: e.channel,
                        time_s: time_s(e.card_timestamp_ns),
                        datetime: datetime(e.card_timestamp_ns),
                        device_index: e.device_index,
                        offset_bytes: e.device_offset_bytes,
                        payload_bytes_used: e.payload_bytes_used,
                        gap_count: e.gap_count,
                    });
                }
            }
            Some(rows)
        }
    };
    let devices = sb
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let t = stripe.member(i);
            Device {
                device_index: i,
                uuid: m.uuid.to_string(),
                path: t.map(|t| t.path.display().to_string()),
                size_bytes: m.size_bytes,
                slot_count: m.slot_count,
                superblock: match t {
                    None => "missing",
                    Some(t) if t.primary_damage.is_some() => "backup",
                    Some(_) => "primary",
                },
            }
        })
        .collect();
    Ok(Inspection {
        schema_version: crate::JSON_SCHEMA_VERSION,
        recording_uuid: sb.recording_uuid.to_string(),
        created: rfc3339_utc(sb.created_unix_ns),
        ring_mode: sb.ring(),
        channel_layout: channel_layout.name(),
        payload_bytes: sb.payload_bytes,
        slot_bytes: sb.slot_bytes(),
        capacity_slots: layout.capacity_slots(),
        devices,
        missing_members: stripe.missing(),
        catalog: catalog.describe(),
        index_torn_tail_bytes: catalog.torn_tail_bytes,
        index_behind: catalog.behind_targets(stripe),
        slots: live.len() as u64,
        first_slot_seq: first.map(|e| e.slot_seq),
        last_slot_seq: last.map(|e| e.slot_seq),
        ring_wraps: last
            .map(|e| e.slot_seq / layout.capacity_slots())
            .unwrap_or(0),
        start: first.map(|e| datetime(e.card_timestamp_ns)),
        end: last.map(|e| datetime(e.card_timestamp_ns)),
        time_base: anchor.map(|a| TimeBaseReport {
            clock: a.clock.name(),
            anchor_stored: sb.time_anchor.is_some(),
            anchor_card_ns: a.card_ns,
            anchor_datetime: rfc3339_utc(a.realtime_ns),
            // Every live entry was read above (item?): none fails here.
            drift: DriftStats::from_extremes(live.len() as u64, drift_min_ns, drift_max_ns, || {
                catalog
                    .pass(live.clone())
                    .filter_map(|item| item.ok())
                    .map(|(_, e)| a.drift_ns(e.card_timestamp_ns, e.host_timestamp_ns))
            }),
        }),
        duration_s,
        payload_bytes_recorded: recorded,
        buffers_lost: lost,
        channels,
        gaps,
        missing_slots,
        unavailable_slots: unavailable,
        scan: catalog.scan.clone(),
        slot_list,
    })
}

fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

impl Inspection {
    /// The report for people.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "recording {}  created {}",
            self.recording_uuid, self.created
        );
        let _ = writeln!(
            s,
            "geometry: {} payload bytes per slot, capacity {} slots{}, channels {}",
            self.payload_bytes,
            self.capacity_slots,
            if self.ring_mode { ", ring mode" } else { "" },
            self.channel_layout
        );
        for d in &self.devices {
            let _ = writeln!(
                s,
                "  member {}: {} uuid {} {} bytes, {} slots (superblock: {})",
                d.device_index,
                d.path.as_deref().unwrap_or("<not given>"),
                d.uuid,
                d.size_bytes,
                d.slot_count,
                d.superblock
            );
        }
        let _ = writeln!(s, "catalog: {}", self.catalog);
        if self.index_torn_tail_bytes > 0 {
            let _ = writeln!(
                s,
                "  ignored a torn index tail of {} bytes",
                self.index_torn_tail_bytes
            );
        }
        if let Some(w) = &self.index_behind {
            let _ = writeln!(s, "  warning: {w}");
        }
        let _ = writeln!(
            s,
            "slots: {} (slot {} .. {}), ring wraps: {}",
            self.slots,
            opt(self.first_slot_seq),
            opt(self.last_slot_seq),
            self.ring_wraps
        );
        let _ = writeln!(
            s,
            "time: {} .. {} ({:.3} s by the card clock)",
            self.start.as_deref().unwrap_or("-"),
            self.end.as_deref().unwrap_or("-"),
            self.duration_s
        );
        if let Some(t) = &self.time_base {
            let _ = writeln!(
                s,
                "time base: card clock {}, card {} ns = {}{}",
                t.clock,
                t.anchor_card_ns,
                t.anchor_datetime,
                if t.anchor_stored {
                    ""
                } else {
                    " (format 1.0: derived from the oldest slot)"
                }
            );
            if let Some(d) = &t.drift {
                let _ = writeln!(s, "  drift: {}", d.text());
            }
        }
        let _ = writeln!(
            s,
            "payload: {} bytes ({}), buffers lost: {}",
            self.payload_bytes_recorded,
            mb(self.payload_bytes_recorded as f64),
            self.buffers_lost
        );
        for c in &self.channels {
            let _ = writeln!(
                s,
                "  channel {} {:<8} {:<8} {} slots, {} bytes, {}/s, {} buffers lost{}",
                c.channel,
                c.name,
                c.datatype,
                c.slots,
                c.bytes,
                mb(c.bytes_per_s),
                c.buffers_lost,
                if c.sample_rate_hz > 0.0 {
                    format!(", {} Hz", c.sample_rate_hz)
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(s, "gaps: {}", self.gaps.len());
        for g in &self.gaps {
            let _ = writeln!(
                s,
                "  before slot {} (card_seq {}) at {:.6} s ({}): {} buffer(s) lost",
                g.slot_seq, g.card_seq, g.time_s, g.datetime, g.buffers_lost
            );
        }
        if !self.missing_slots.is_empty() {
            let _ = writeln!(s, "slot numbers missing from the catalog:");
            for r in &self.missing_slots {
                let _ = writeln!(
                    s,
                    "  slots {}..{}: {}",
                    r.first_slot_seq,
                    r.last_slot_seq,
                    r.found.describe()
                );
            }
        }
        for m in &self.missing_members {
            let _ = writeln!(
                s,
                "member {} (uuid {}) missing: {} of the slots are unavailable",
                m.device_index, m.uuid, self.unavailable_slots
            );
        }
        if let Some(scan) = &self.scan {
            let _ = writeln!(
                s,
                "scan: {} slot locations read: {}",
                scan.locations_read,
                scan.counts_text()
            );
            for (uuid, n) in &scan.other_recordings {
                let _ = writeln!(s, "  {n} slot(s) of another recording {uuid}");
            }
        }
        if let Some(rows) = &self.slot_list {
            let _ = writeln!(
                s,
                "{:>10} {:>10} {:>3} {:>14} {:>4} {:>14} {:>9} {:>5}",
                "slot", "card_seq", "ch", "time_s", "dev", "offset", "bytes", "gap"
            );
            for r in rows {
                let _ = writeln!(
                    s,
                    "{:>10} {:>10} {:>3} {:>14.6} {:>4} {:>14} {:>9} {:>5}",
                    r.slot_seq,
                    r.card_seq,
                    r.channel,
                    r.time_s,
                    r.device_index,
                    r.offset_bytes,
                    r.payload_bytes_used,
                    r.gap_count
                );
            }
        }
        s
    }
}

fn opt(value: Option<u64>) -> String {
    value
        .map(|value| value.to_string())
        .unwrap_or_else(|| "-".into())
}
