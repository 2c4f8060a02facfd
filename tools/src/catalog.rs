//! The list of a recording's slots in slot order: the index file when it
//! is usable, else an index image built by scanning the targets' header
//! pages ([`crate::scan`]), so every command seeks the same way (binary
//! search with [`IndexView::lower_bound`]).
//!
//! The index is checked where it is used: its header and recording against
//! the targets, and every entry a command touches (CRC, increasing slot
//! numbers, placement by the layout). A command asks for the entries it
//! needs through [`open_planned`]; if the index is damaged there, the
//! command falls back to a scan and says so on stderr.

use crate::scan::{self, ScanReport};
use crate::stripe::StripeSet;
use anyhow::{bail, Context, Result};
use formats::index::{IndexView, INDEX_ENTRY_BYTES};
use formats::{IndexEntry, IndexHeader, SLOT_HEADER_BYTES};
use std::ops::Range;
use std::path::{Path, PathBuf};

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Index(PathBuf),
    Scan,
}

pub struct Catalog {
    bytes: Bytes,
    pub origin: Origin,
    /// Bytes of a torn index tail that were ignored.
    pub torn_tail_bytes: usize,
    /// Entries in the file (or image).
    len: usize,
    /// First live entry (ring mode: the last `capacity` slot numbers).
    live_start: usize,
    /// Set when the catalog comes from a scan.
    pub scan: Option<ScanReport>,
}

/// Why an index cannot be used where a command needs it.
#[derive(Debug)]
pub struct IndexDamage(pub String);

impl From<formats::FormatError> for IndexDamage {
    fn from(error: formats::FormatError) -> Self {
        IndexDamage(error.to_string())
    }
}

/// Builds the index file image (header page, member 0's superblock, entries).
pub fn index_image(stripe: &StripeSet, entries: &[IndexEntry]) -> Vec<u8> {
    let header = IndexHeader {
        superblock: stripe.superblock.clone(),
        // A 1.0 set's index names no scan (its slots carry the recording's UUID).
        scan_uuid: if stripe.superblock.has_scan_table() {
            stripe.recording_uuid()
        } else {
            formats::Uuid::NIL
        },
    };
    let mut bytes = header.encode();
    bytes.reserve_exact(entries.len() * INDEX_ENTRY_BYTES);
    for e in entries {
        bytes.extend_from_slice(&e.encode());
    }
    bytes
}

impl Catalog {
    pub fn view(&self) -> IndexView<'_> {
        let bytes: &[u8] = match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        };
        IndexView::new(bytes).expect("catalog header was checked when it was opened")
    }

    /// Positions of the live entries.
    pub fn live(&self) -> Range<usize> {
        self.live_start..self.len
    }

    pub fn is_scan(&self) -> bool {
        self.origin == Origin::Scan
    }

    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::Index(p) => format!("index {}", p.display()),
            Origin::Scan => "scan of the targets' slot headers".to_string(),
        }
    }

    /// Opens `path` as the index of the stripe set's recording.
    pub fn from_index(stripe: &StripeSet, path: &Path) -> Result<Catalog, IndexDamage> {
        let file =
            std::fs::File::open(path).map_err(|e| IndexDamage(format!("cannot open: {e}")))?;
        // SAFETY: the map is read-only; the recorder only appends to an index
        // (never rewrites bytes in place) and the map has a fixed length.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| IndexDamage(format!("cannot map: {e}")))?;
        // A seek is a binary search touching ~20 pages; with the default
        // readahead (8 MiB here) a cold seek read 8 MiB per probe (28 ms in
        // bench/seek-index; 1.5 ms with random access advice). Full passes
        // over the entries ask for sequential readahead (check_entries).
        let _ = map.advise(memmap2::Advice::Random);
        let view = IndexView::new(&map)?;
        let sb = &view.header.superblock;
        if sb.recording_uuid != stripe.superblock.recording_uuid {
            return Err(IndexDamage(format!(
                "it is the index of recording {}, the targets hold recording {}",
                sb.recording_uuid, stripe.superblock.recording_uuid
            )));
        }
        if view.header.slots_uuid() != stripe.recording_uuid() {
            return Err(IndexDamage(format!(
                "it is the index of scan {}, not of scan {:?} ({}) read here (choose the scan with --scan)",
                view.header.slots_uuid(),
                stripe.scan.entry.name,
                stripe.recording_uuid()
            )));
        }
        if *sb != stripe.superblock {
            return Err(IndexDamage(
                "its copy of the superblock differs from the targets'".to_string(),
            ));
        }
        let (len, torn) = (view.len(), view.torn_tail_bytes);
        drop(view);
        let mut c = Catalog {
            bytes: Bytes::Mapped(map),
            origin: Origin::Index(path.into()),
            torn_tail_bytes: torn,
            len,
            live_start: 0,
            scan: None,
        };
        c.live_start = c.find_live_start(stripe)?;
        Ok(c)
    }

    /// Builds the catalog by scanning every slot header of the targets.
    pub fn from_scan(stripe: &StripeSet, progress: &mut dyn FnMut(u64)) -> Result<Catalog> {
        let found = scan::scan(stripe, progress)?;
        let image = index_image(stripe, &found.entries);
        let len = found.entries.len();
        Ok(Catalog {
            bytes: Bytes::Owned(image),
            origin: Origin::Scan,
            torn_tail_bytes: 0,
            len,
            live_start: 0,
            scan: Some(found.report),
        })
    }

    fn find_live_start(&self, stripe: &StripeSet) -> Result<usize, IndexDamage> {
        if self.len == 0 {
            return Ok(0);
        }
        let view = self.view();
        let newest = view.get(self.len - 1)?.slot_seq;
        let oldest_live = (newest + 1).saturating_sub(stripe.layout.capacity_slots());
        Ok(view.lower_bound(oldest_live, |e| e.slot_seq)?)
    }

    /// Checks entries `range`: CRC, strictly increasing slot numbers, each
    /// placed where the layout puts it.
    pub fn check_entries(
        &self,
        stripe: &StripeSet,
        range: Range<usize>,
    ) -> Result<(), IndexDamage> {
        const SEQUENTIAL_ENTRIES: usize = 4096;
        if let (Bytes::Mapped(m), true) = (&self.bytes, range.len() > SEQUENTIAL_ENTRIES) {
            // A full pass: read ahead again over just this range.
            let off = formats::index::INDEX_HEADER_BYTES + range.start * INDEX_ENTRY_BYTES;
            let _ = m.advise_range(
                memmap2::Advice::Sequential,
                off & !4095,
                range.len() * INDEX_ENTRY_BYTES + (off & 4095),
            );
        }
        let view = self.view();
        let mut prev: Option<u64> = if range.start > 0 {
            Some(
                view.get(range.start - 1)
                    .map_err(|e| at(range.start - 1, e))?
                    .slot_seq,
            )
        } else {
            None
        };
        for item in self.pass(range) {
            let (i, e) = item?;
            if prev.is_some_and(|p| e.slot_seq <= p) {
                return Err(IndexDamage(format!(
                    "entry {i}: slot {} after slot {} (not increasing)",
                    e.slot_seq,
                    prev.unwrap()
                )));
            }
            let loc = stripe.layout.locate(e.slot_seq);
            if !loc.is_some_and(|l| {
                l.device_index == e.device_index as usize && l.offset_bytes == e.device_offset_bytes
            }) {
                return Err(IndexDamage(format!(
                    "entry {i}: slot {} recorded at member {} offset {}, but the layout places it elsewhere",
                    e.slot_seq, e.device_index, e.device_offset_bytes
                )));
            }
            prev = Some(e.slot_seq);
        }
        Ok(())
    }

    /// Looks at the slot after the last entry on the targets: if it is a
    /// valid slot of this recording, the index is behind (a crash lost its
    /// tail). Returns a warning to print.
    pub fn behind_targets(&self, stripe: &StripeSet) -> Option<String> {
        if self.is_scan() {
            return None;
        }
        // An index without entries is behind if slot 0 is on the targets.
        let next = match self.len {
            0 => 0,
            n => self.view().get(n - 1).ok()?.slot_seq + 1,
        };
        let loc = stripe.layout.locate(next)?;
        let t = stripe.member(loc.device_index)?;
        let page =
            crate::target::read_exact_direct(&t.file, loc.offset_bytes, SLOT_HEADER_BYTES, &t.path)
                .ok()?;
        let h = formats::check::check_header(&page, stripe.recording_uuid()).ok()?;
        (h.slot_seq == next).then(|| {
            let ends = match next {
                0 => "the index lists no slot".to_string(),
                n => format!("the index ends at slot {}", n - 1),
            };
            format!(
                "{ends}, but {} holds slot {next} of this recording: the index is behind the targets (a crash?); run `dmaplay reindex` to index every slot",
                t.path.display(),
            )
        })
    }
}

/// Entries per step of a [`Pass`]: the mapped pages of each finished step
/// (64 B × 16384 = 1 MiB) leave the process's RSS.
pub const PASS_STEP_ENTRIES: usize = 16384;

impl Catalog {
    /// Releases the mapped pages that lie wholly inside entries `range` from
    /// this process (the page cache keeps them; a later access maps them
    /// again). A pass over a large index then holds at most one step of it
    /// resident. Nothing to do for a catalog built in memory (a scan's).
    pub fn release(&self, range: Range<usize>) {
        let Bytes::Mapped(m) = &self.bytes else {
            return;
        };
        let page = 4096;
        let start = formats::index::INDEX_HEADER_BYTES + range.start * INDEX_ENTRY_BYTES;
        let end = (formats::index::INDEX_HEADER_BYTES + range.end * INDEX_ENTRY_BYTES).min(m.len());
        // The map's last page is the entries' alone, also where it is partial.
        let last = match end == m.len() {
            true => end.div_ceil(page) * page,
            false => end / page * page,
        };
        let first = start.div_ceil(page) * page;
        if first < last {
            // SAFETY: the map is shared, read-only and file-backed: MADV_DONTNEED
            // only drops this process's page table entries; the next access
            // maps the same bytes again from the page cache (the file is only
            // ever appended to, see from_index), so every slice borrowed from
            // the map keeps its contents.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first)
            };
        }
    }

    /// One pass over entries `range` in order, keeping RSS flat (see
    /// [`Catalog::release`]).
    pub fn pass(&self, range: Range<usize>) -> Pass<'_> {
        Pass {
            catalog: self,
            view: self.view(),
            next: range.start,
            end: range.end,
            released_to: range.start,
        }
    }
}

/// Entries of a catalog range with their positions; see [`Catalog::pass`].
pub struct Pass<'c> {
    catalog: &'c Catalog,
    view: IndexView<'c>,
    next: usize,
    end: usize,
    released_to: usize,
}

impl Iterator for Pass<'_> {
    type Item = Result<(usize, IndexEntry), IndexDamage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next - self.released_to >= PASS_STEP_ENTRIES || self.next == self.end {
            self.catalog.release(self.released_to..self.next);
            self.released_to = self.next;
        }
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        Some(self.view.get(i).map(|e| (i, e)).map_err(|err| at(i, err)))
    }
}

fn at(position: usize, error: formats::FormatError) -> IndexDamage {
    IndexDamage(format!("entry {position}: {error}"))
}

/// Opens the catalog and runs `plan` on it (which finds and checks the
/// entries a command needs). With no index, or an index that is unusable
/// or damaged where `plan` looked, says so on stderr and scans the targets.
pub fn open_planned<T>(
    stripe: &StripeSet,
    index: Option<&Path>,
    progress: &mut dyn FnMut(u64),
    plan: impl Fn(&Catalog) -> Result<Result<T, IndexDamage>>,
) -> Result<(Catalog, T)> {
    match index {
        None => eprintln!("dmaplay: no --index given: scanning the targets' slot headers"),
        Some(path) => match Catalog::from_index(stripe, path) {
            Ok(c) => match plan(&c)? {
                Ok(t) => return Ok((c, t)),
                Err(IndexDamage(why)) => eprintln!(
                    "dmaplay: index {} is damaged ({why}); falling back to scanning the targets' slot headers (run `dmaplay reindex` to rebuild it)",
                    path.display()
                ),
            },
            Err(IndexDamage(why)) => eprintln!(
                "dmaplay: index {} is not usable ({why}); falling back to scanning the targets' slot headers",
                path.display()
            ),
        },
    }
    let c = Catalog::from_scan(stripe, progress).context("scanning the targets")?;
    match plan(&c)? {
        Ok(t) => Ok((c, t)),
        Err(IndexDamage(why)) => bail!("internal: the scanned catalog fails its own check: {why}"),
    }
}

#[cfg(test)]
mod pass_tests {
    use super::*;
    use crate::synth::{Dir, Spec, Synth};
    use formats::index::INDEX_HEADER_BYTES;

    /// Resident bytes of the mapping that starts at `start` (smaps' Rss).
    fn resident_kb(start: *const u8) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{:x}-", start as usize);
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
        assert!(lines.next().is_some(), "mapping {head} not in smaps");
        let rss = lines.find(|l| l.starts_with("Rss:")).unwrap();
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A catalog over an index of `n` entries (the synth recording's
    /// header; entries only need their CRCs and increasing slot numbers).
    fn big_index(d: &Dir, n: usize) -> (StripeSet, PathBuf) {
        let s = Synth::write(d, &["a"], &Spec::default());
        let mut bytes = std::fs::read(&s.index).unwrap()[..INDEX_HEADER_BYTES].to_vec();
        for i in 0..n as u64 {
            let e = IndexEntry {
                slot_seq: i,
                ..Default::default()
            };
            bytes.extend_from_slice(&e.encode());
        }
        let path = d.join("big.idx");
        std::fs::write(&path, bytes).unwrap();
        (StripeSet::open(&s.paths).unwrap(), path)
    }

    #[test]
    fn a_pass_releases_the_mapped_pages_behind_it() {
        let d = Dir::new("pass");
        let n = 16 * PASS_STEP_ENTRIES + 100; // 16 MiB of entries and a bit
        let (stripe, path) = big_index(&d, n);
        let c = Catalog::from_index(&stripe, &path).unwrap();
        let Bytes::Mapped(m) = &c.bytes else {
            panic!("an index file is mapped")
        };
        let start = m.as_ptr();
        let view = c.view();
        let touch_all = || (0..n).for_each(|i| assert_eq!(view.get(i).unwrap().slot_seq, i as u64));
        touch_all();
        let all_kb = resident_kb(start);
        assert!(
            all_kb >= (n * 64 / 1024) as u64,
            "{all_kb} kB resident after reading all"
        );
        // At most the header pages stay, and the pages of entries 0 and
        // n-1, which hold other entries too (whether the header pages are
        // mapped at all depends on the file system's fault-around: on ext4
        // 4 kB stay, on tmpfs 16).
        c.release(1..n - 1);
        assert!(resident_kb(start) <= 16, "{} kB", resident_kb(start));
        touch_all();
        let mut pass = c.pass(0..n);
        let read = 12 * PASS_STEP_ENTRIES + PASS_STEP_ENTRIES / 2;
        for i in 0..read {
            assert_eq!(pass.next().unwrap().unwrap(), (i, view.get(i).unwrap()));
        }
        // Twelve steps released: what stays is the step in progress, the
        // rest not yet reached, and what a fault maps around the page it
        // needs (a file system's large folio: up to 2 MiB on ext4).
        let step_kb = (PASS_STEP_ENTRIES * 64 / 1024) as u64;
        let bound_kb = all_kb - 12 * step_kb + 2048 + 8;
        assert!(
            resident_kb(start) <= bound_kb,
            "{} kB resident after 12.5 of 16 steps (bound {bound_kb} kB)",
            resident_kb(start)
        );
        let rest: Vec<usize> = pass.map(|r| r.unwrap().0).collect();
        assert_eq!(rest, (read..n).collect::<Vec<_>>());
        // The pass's end released everything but the header.
        assert!(resident_kb(start) <= 8, "{} kB", resident_kb(start));
    }
}
