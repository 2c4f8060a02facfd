//! Which slots a command works on: a slot-number range (`--seq A..B`), a
//! time range (`--from/--to`, seconds relative to the card timestamp of the
//! first live slot), and a channel. Ranges are found by binary search in
//! the catalog ([`IndexView::lower_bound`]); only the channel is filtered
//! entry by entry.

use crate::catalog::{Catalog, IndexDamage};
use formats::index::IndexView;
use formats::IndexEntry;
use std::ops::Range;

/// `A..B` (both included), `A..` or `..B`; a single `N` is `N..N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

impl std::str::FromStr for SeqRange {
    type Err = String;
    fn from_str(text: &str) -> Result<SeqRange, String> {
        let bad =
            || format!("{text:?} is not a slot range: use A..B (both included), A.., ..B or N");
        let num = |t: &str, default: u64| -> Result<u64, String> {
            if t.is_empty() {
                Ok(default)
            } else {
                t.trim().parse().map_err(|_| bad())
            }
        };
        if text.trim().is_empty() {
            return Err(bad());
        }
        let r = match text.split_once("..") {
            Some((a, b)) => SeqRange {
                first: num(a, 0)?,
                last: num(b, u64::MAX)?,
            },
            None => {
                let n = num(text, 0)?;
                SeqRange { first: n, last: n }
            }
        };
        if r.first > r.last {
            return Err(format!("{text:?}: the first slot is after the last"));
        }
        Ok(r)
    }
}

/// Seconds relative to the first live slot's card timestamp, non-negative.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('s').parse::<f64>() {
        // At most what u64 nanoseconds hold (584 years).
        Ok(v) if v.is_finite() && v >= 0.0 && v <= u64::MAX as f64 / 1e9 => Ok(v),
        _ => Err(format!(
            "{text:?} is not a time: give seconds from the start of the recording, e.g. 12.5 (at most 1.8e10)"
        )),
    }
}

#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub channel: Option<u16>,
    pub from_s: Option<f64>,
    pub to_s: Option<f64>,
    pub seq: Option<SeqRange>,
}

/// The card timestamp (ns) where time 0 is: the first live slot's.
pub fn time_origin_ns(catalog: &Catalog) -> Result<Option<u64>, IndexDamage> {
    let live = catalog.live();
    if live.is_empty() {
        return Ok(None);
    }
    Ok(Some(catalog.view().get(live.start)?.card_timestamp_ns))
}

fn s_to_ns(seconds: f64) -> u64 {
    (seconds * 1e9).round().min(u64::MAX as f64) as u64
}

/// The catalog positions the selection covers (before the channel filter),
/// found by binary search; checks the entries in the range.
pub fn resolve(
    catalog: &Catalog,
    stripe: &crate::stripe::StripeSet,
    sel: &Selection,
) -> Result<Range<usize>, IndexDamage> {
    let live = catalog.live();
    let view = catalog.view();
    let mut lo = live.start;
    let mut hi = live.end;
    if let Some(origin) = time_origin_ns(catalog)? {
        if let Some(from) = sel.from_s {
            lo = lo.max(bound(&view, origin.saturating_add(s_to_ns(from)), |e| {
                e.card_timestamp_ns
            })?);
        }
        if let Some(to) = sel.to_s {
            hi = hi.min(bound(
                &view,
                origin.saturating_add(s_to_ns(to)).saturating_add(1),
                |e| e.card_timestamp_ns,
            )?);
        }
    }
    if let Some(r) = sel.seq {
        lo = lo.max(bound(&view, r.first, |e| e.slot_seq)?);
        hi = hi.min(bound(&view, r.last.saturating_add(1), |e| e.slot_seq)?);
    }
    let range = lo..hi.max(lo);
    catalog.check_entries(stripe, range.clone())?;
    Ok(range)
}

fn bound(
    view: &IndexView<'_>,
    target: u64,
    key: impl Fn(&IndexEntry) -> u64,
) -> Result<usize, IndexDamage> {
    Ok(view.lower_bound(target, key)?)
}

impl Selection {
    pub fn wants(&self, entry: &IndexEntry) -> bool {
        self.channel.is_none_or(|c| entry.channel as u16 == c)
    }
}
