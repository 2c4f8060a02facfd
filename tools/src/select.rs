//! Which slots a command works on: a slot-number range (`--seq A..B`), a
//! range of `--from/--to` ([`TimeSpec`]: instants and durations on the
//! card time base, card sequence and slot numbers), and a channel. Ranges are found by binary search in
//! the catalog ([`IndexView::lower_bound`]); only the channel is filtered
//! entry by entry.

use crate::catalog::{Catalog, IndexDamage};
use crate::timespec::TimeSpec;
use formats::index::IndexView;
use formats::time::{rfc3339_utc, TimeAnchor};
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

#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub channel: Option<u16>,
    pub from: Option<TimeSpec>,
    pub to: Option<TimeSpec>,
    pub seq: Option<SeqRange>,
}

/// A selection that names no data, or another mistake in what was asked:
/// dmaplay exits 2 (usage error) for it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether `error` (or an error it wraps) is a [`UsageError`].
pub fn is_usage_error(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<UsageError>())
}

/// The live range's time base: its anchor and its oldest and newest entries.
pub struct TimeBase {
    pub anchor: TimeAnchor,
    pub first: IndexEntry,
    pub last: IndexEntry,
}

/// None when nothing is live.
pub fn time_base(
    catalog: &Catalog,
    stripe: &crate::stripe::StripeSet,
) -> Result<Option<TimeBase>, IndexDamage> {
    let live = catalog.live();
    if live.is_empty() {
        return Ok(None);
    }
    let view = catalog.view();
    let first = view.get(live.start)?;
    let last = view.get(live.end - 1)?;
    let anchor = stripe
        .superblock
        .anchor_or(Some((first.card_timestamp_ns, first.host_timestamp_ns)))
        .expect("an anchor is derived when none is stored");
    Ok(Some(TimeBase {
        anchor,
        first,
        last,
    }))
}

/// Where `spec` falls: the first catalog position at or after it (for
/// `--to`, `after` = true: the first position after it).
fn position(
    view: &IndexView<'_>,
    base: &TimeBase,
    spec: TimeSpec,
    after: bool,
) -> Result<usize, IndexDamage> {
    let card_ns = |ns: u64| ns.saturating_add(after as u64);
    let key = |n: u64| n.saturating_add(after as u64);
    match spec {
        TimeSpec::At(ns) => bound(view, card_ns(base.anchor.card_of(ns)), |e| {
            e.card_timestamp_ns
        }),
        TimeSpec::FromStart(d) => {
            bound(view, card_ns(base.anchor.card_ns.saturating_add(d)), |e| {
                e.card_timestamp_ns
            })
        }
        TimeSpec::BeforeEnd(d) => bound(
            view,
            card_ns(base.last.card_timestamp_ns.saturating_sub(d)),
            |e| e.card_timestamp_ns,
        ),
        TimeSpec::CardSeq(n) => bound(view, key(n), |e| e.card_seq),
        TimeSpec::Slot(n) => bound(view, key(n), |e| e.slot_seq),
    }
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
    if let Some(base) = time_base(catalog, stripe)? {
        if let Some(from) = sel.from {
            lo = lo.max(position(&view, &base, from, false)?);
        }
        if let Some(to) = sel.to {
            hi = hi.min(position(&view, &base, to, true)?);
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

/// [`resolve`], refusing a selection with no slot of each channel in
/// `channels` (an empty list checks only the range) as a [`UsageError`]
/// that says what exists.
pub fn resolve_nonempty(
    catalog: &Catalog,
    stripe: &crate::stripe::StripeSet,
    sel: &Selection,
    channels: &[u16],
) -> anyhow::Result<Result<Range<usize>, IndexDamage>> {
    let range = match resolve(catalog, stripe, sel) {
        Ok(r) => r,
        Err(damage) => return Ok(Err(damage)),
    };
    let asked = describe_selection(sel);
    let view = catalog.view();
    let missing: Vec<u16> = if range.is_empty() {
        Vec::new()
    } else {
        // Interleaved: every slot holds every channel.
        let interleaved = formats::ChannelLayout::of(&stripe.superblock).interleaved();
        let mut seen = vec![interleaved; stripe.superblock.channels.len()];
        // Bounded by the range, which the catalog bounds.
        for i in range.clone() {
            match view.get(i) {
                Ok(e) => seen.get_mut(e.channel as usize).map(|s| *s = true),
                Err(damage) => return Ok(Err(damage.into())),
            };
        }
        channels
            .iter()
            .copied()
            .filter(|&c| !seen.get(c as usize).copied().unwrap_or(false))
            .collect()
    };
    if !range.is_empty() && missing.is_empty() {
        return Ok(Ok(range));
    }
    let what = if range.is_empty() {
        "selects no slots".to_string()
    } else {
        let list: Vec<String> = missing.iter().map(|c| c.to_string()).collect();
        format!("selects no slots of channel {}", list.join(", "))
    };
    let exists = match time_base(catalog, stripe) {
        Ok(Some(base)) => describe_live(&base),
        Ok(None) => "the recording holds no slots".to_string(),
        Err(damage) => return Ok(Err(damage)),
    };
    Err(UsageError(format!("{asked} {what}: {exists}")).into())
}

/// The flags as given, for messages.
fn describe_selection(sel: &Selection) -> String {
    let mut parts = Vec::new();
    if let Some(c) = sel.channel {
        parts.push(format!("--channel {c}"));
    }
    if let Some(f) = sel.from {
        parts.push(format!("--from {f}"));
    }
    if let Some(t) = sel.to {
        parts.push(format!("--to {t}"));
    }
    if let Some(r) = sel.seq {
        parts.push(format!("--seq {}..{}", r.first, r.last));
    }
    if parts.is_empty() {
        "the selection".to_string()
    } else {
        parts.join(" ")
    }
}

/// What the live range holds, in every addressing form.
pub fn describe_live(base: &TimeBase) -> String {
    let (f, l, a) = (&base.first, &base.last, &base.anchor);
    let from_start = |e: &IndexEntry| e.card_timestamp_ns as f64 / 1e9 - a.card_ns as f64 / 1e9;
    format!(
        "the recording holds slot:{}..slot:{}, card:{}..card:{}, {} to {} (start+{:.3}s to start+{:.3}s)",
        f.slot_seq,
        l.slot_seq,
        f.card_seq,
        l.card_seq,
        rfc3339_utc(a.realtime_of(f.card_timestamp_ns)),
        rfc3339_utc(a.realtime_of(l.card_timestamp_ns)),
        from_start(f),
        from_start(l)
    )
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
