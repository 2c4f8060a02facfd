//! Crashes and power cuts: SIGKILL at random moments, a device image copied
//! while writes are in flight, an index cut at arbitrary bytes. After
//! `dmaplay reindex`, every slot whose write completed is recovered with a
//! valid CRC and the right pattern, no slot is misread, torn slots are
//! reported and left out.

use e2e::*;
use formats::index::IndexView;
use formats::{IndexEntry, Layout, SlotHeader, SLOT_HEADER_BYTES};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Reindexes `targets` into `idx` and checks the result slot by slot against
/// the device bytes. Returns (entries, torn slot numbers).
fn reindex_and_check(
    targets: &[&str],
    images: &[Vec<u8>],
    idx: &str,
) -> (Vec<IndexEntry>, Vec<u64>) {
    let mut args = vec!["reindex", "--json", "--quiet", "--force", "--index", idx];
    args.extend_from_slice(targets);
    let report = json(&run_ok("dmaplay", &args));
    let torn: Vec<u64> = report["torn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slot_seq"].as_u64().or_else(|| t.as_u64()).unwrap())
        .collect();
    let bytes = std::fs::read(idx).unwrap();
    let view = IndexView::new(&bytes).unwrap();
    assert_eq!(view.torn_tail_bytes, 0);
    let sb = &view.header.superblock;
    let layout = Layout::from_superblock(sb);
    let mut entries = Vec::with_capacity(view.len());
    for i in 0..view.len() {
        let e = view.get(i).unwrap();
        if let Some(p) = entries.last() {
            let p: &IndexEntry = p;
            assert!(e.slot_seq > p.slot_seq, "reindexed entries out of order");
        }
        assert!(
            !torn.contains(&e.slot_seq),
            "torn slot {} was indexed",
            e.slot_seq
        );
        let loc = layout.locate(e.slot_seq).unwrap();
        let dev = &images[loc.device_index];
        let at = loc.offset_bytes as usize;
        let h = SlotHeader::decode(&dev[at..at + SLOT_HEADER_BYTES]).unwrap();
        assert_eq!(
            IndexEntry::from_header(&h, loc.offset_bytes),
            e,
            "slot {} misread",
            e.slot_seq
        );
        let payload =
            &dev[at + SLOT_HEADER_BYTES..at + SLOT_HEADER_BYTES + h.payload_bytes_used as usize];
        h.check_payload(payload)
            .unwrap_or_else(|err| panic!("reindexed slot {}: {err}", e.slot_seq));
        assert_eq!(
            formats::pattern::first_mismatch(payload, h.channel, h.card_seq),
            None,
            "slot {} pattern",
            e.slot_seq
        );
        entries.push(e);
    }
    (entries, torn)
}

/// The valid entries of an index written by a killed recorder.
fn surviving_entries(idx: &str) -> Vec<IndexEntry> {
    let Ok(bytes) = std::fs::read(idx) else {
        return Vec::new();
    };
    let Ok(view) = IndexView::new(&bytes) else {
        return Vec::new();
    };
    (0..view.len()).filter_map(|i| view.get(i).ok()).collect()
}

#[test]
fn sigkill_at_random_moments_loses_no_completed_slot() {
    if !require_root("sigkill_at_random_moments_loses_no_completed_slot") {
        return;
    }
    let mut rng = Rng::seeded("crash tests", None);
    let s = Scratch::new("kill");
    let dev = LoopDevice::new(&s.path, "disk", 96 << 20).unwrap();
    let trials = std::env::var("DMAREC_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut total_recovered = 0;
    for trial in 0..trials {
        let idx = s.file(&format!("t{trial}.idx"));
        let rate = ["0", "150", "400"][rng.below(3) as usize];
        let wrap = rng.below(2) == 0;
        let mut args = vec![
            "record",
            "--quiet",
            "--force",
            "--target",
            &dev.device,
            "--index",
            &idx,
            "--payload-size",
            "256K",
            // Kills are timed from the spawn: a small ring starts at once
            // (--buffers auto locks up to 1 s of the card first, seconds on a busy machine).
            "--buffers",
            "64",
        ];
        if rate != "0" {
            args.extend(["--rate", rate]);
        }
        if wrap {
            args.extend(["--on-full", "wrap"]);
        }
        let mut child = Command::new(bin("dmarec"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay_ms = 100 + rng.below(1200);
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        let before = surviving_entries(&idx);
        let image = dev.read_backing();
        let (after, torn) = reindex_and_check(
            &[&dev.device],
            std::slice::from_ref(&image),
            &s.file(&format!("t{trial}.re.idx")),
        );
        // Every slot the recorder had indexed (so its write completed) is
        // recovered identically, unless a later lap overwrote it.
        let newest = after.last().map(|e| e.slot_seq).unwrap_or(0);
        let capacity = Layout::from_superblock(
            &IndexView::new(&std::fs::read(s.file(&format!("t{trial}.re.idx"))).unwrap())
                .unwrap()
                .header
                .superblock,
        )
        .capacity_slots();
        for e in before.iter().filter(|e| e.slot_seq + capacity > newest) {
            assert!(after.contains(e), "trial {trial} (rate {rate}, wrap {wrap}, kill at {delay_ms} ms): slot {} was indexed before the crash but not recovered", e.slot_seq);
        }
        eprintln!(
            "trial {trial}: rate {rate} wrap {wrap} kill@{delay_ms}ms: index had {}, reindex recovered {} (slots {}..={}), torn {:?}",
            before.len(),
            after.len(),
            after.first().map(|e| e.slot_seq).unwrap_or(0),
            newest,
            torn
        );
        total_recovered += after.len();
        let _ = std::fs::remove_file(&idx);
    }
    assert!(total_recovered > 0);
}

#[test]
fn power_cut_image_copied_mid_write_is_recovered_without_misreads() {
    if !require_root("power_cut_image_copied_mid_write_is_recovered_without_misreads") {
        return;
    }
    let s = Scratch::new("cut");
    let dev = LoopDevice::new(&s.path, "disk", 64 << 20).unwrap();
    for trial in 0..3 {
        let idx = s.file(&format!("p{trial}.idx"));
        // A slow card keeps the copy close to a point in time: a real power
        // cut freezes the device with at most the queue depth in flight.
        let mut child = Command::new(bin("dmarec"))
            .args([
                "record",
                "--quiet",
                "--force",
                "--on-full",
                "wrap",
                "--rate",
                "40",
                // The copy is timed from the spawn: a ring that starts at once.
                "--buffers",
                "64",
                "--target",
                &dev.device,
                "--index",
                &idx,
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700 + 300 * trial));
        let copy = s.join(&format!("p{trial}.img"));
        std::fs::copy(&dev.backing, &copy).unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        let image = read_direct(&copy);
        let copy_path = copy.to_string_lossy().into_owned();
        let re = s.file(&format!("p{trial}.re.idx"));
        let (after, torn) = reindex_and_check(&[&copy_path], std::slice::from_ref(&image), &re);
        assert!(!after.is_empty());
        // dmaplay agrees: every slot the new index lists verifies. A power cut
        // can leave holes among the newest slots (in-flight writes finish out
        // of order); verify reports those as missing, never as corrupt.
        let out = run(
            "dmaplay",
            &[
                "verify",
                "--quiet",
                "--json",
                "--pattern",
                "--index",
                &re,
                &copy_path,
            ],
        );
        let report = json(&String::from_utf8_lossy(&out.stdout));
        let newest = after.last().unwrap().slot_seq;
        for bad in report["bad"].as_array().unwrap() {
            let what = bad.to_string();
            let seq = bad["slot_seq"].as_u64().unwrap();
            assert!(
                what.contains("missing from the index"),
                "power cut {trial}: slot {seq} is bad, not just missing: {what}"
            );
            assert!(
                seq + 64 > newest,
                "power cut {trial}: hole at slot {seq}, far behind the newest {newest}"
            );
        }
        eprintln!(
            "power cut {trial}: recovered {} slots, torn {:?}",
            after.len(),
            torn
        );
    }
}

#[test]
fn a_torn_final_slot_is_reported_and_left_out() {
    let s = Scratch::new("torn");
    let (img, idx) = record_to_file(&s, "r", "32M", "8M", &[]);
    // The last slot's write was cut short: its header landed, half of its
    // payload is what the disk held before (zeros).
    let mut image = std::fs::read(&img).unwrap();
    let entries = surviving_entries(&idx);
    let last = *entries.last().unwrap();
    let half = last.device_offset_bytes as usize + SLOT_HEADER_BYTES + 256 * 1024;
    image[half..half + 256 * 1024].fill(0);
    std::fs::write(&img, &image).unwrap();
    let (after, torn) = reindex_and_check(&[&img], std::slice::from_ref(&image), &s.file("re.idx"));
    assert_eq!(torn, vec![last.slot_seq]);
    assert_eq!(after.len(), entries.len() - 1);
    assert_eq!(&after[..], &entries[..entries.len() - 1]);
}

#[test]
fn an_index_cut_at_any_byte_is_detected_and_recovered() {
    let s = Scratch::new("idxcut");
    let (img, idx) = record_to_file(&s, "r", "48M", "16M", &["--payload-size", "128K"]);
    let full = std::fs::read(&idx).unwrap();
    let slots = surviving_entries(&idx).len();
    let mut rng = Rng::seeded("crash tests", None);
    let mut cuts: Vec<usize> = (0..12)
        .map(|_| rng.below(full.len() as u64) as usize)
        .collect();
    cuts.extend([0, 100, 4096, 8191, 8192, 8192 + 63, full.len() - 1]);
    for cut in cuts {
        let cut_idx = s.file("cut.idx");
        std::fs::write(&cut_idx, &full[..cut]).unwrap();
        // Read commands still verify every slot (from what the index holds
        // plus a scan, or from a scan alone) and say what they did.
        let out = run(
            "dmaplay",
            &[
                "verify",
                "--quiet",
                "--json",
                "--pattern",
                "--index",
                &cut_idx,
                &img,
            ],
        );
        assert!(
            out.status.success(),
            "verify with index cut at {cut}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = json(&String::from_utf8_lossy(&out.stdout));
        let checked = report["slots_checked"].as_u64().unwrap() as usize;
        let whole_entries = cut.saturating_sub(8192) / 64;
        assert!(
            checked >= whole_entries.min(slots),
            "cut at {cut}: checked {checked}"
        );
        if cut < full.len() {
            let said = !String::from_utf8_lossy(&out.stderr).trim().is_empty()
                || !report["index_behind"].is_null();
            assert!(
                said,
                "cut at {cut}: a damaged or short index must be mentioned"
            );
        }
        // And reindex restores the original index exactly.
        run_ok(
            "dmaplay",
            &["reindex", "--quiet", "--force", "--index", &cut_idx, &img],
        );
        assert!(
            std::fs::read(&cut_idx).unwrap() == full,
            "reindex after cut at {cut} differs from the recorder's index"
        );
    }
}

#[test]
fn a_truncated_copy_is_salvaged_up_to_its_end() {
    let s = Scratch::new("trunc");
    let (img, idx) = record_to_file(&s, "r", "32M", "8M", &["--payload-size", "64K"]);
    let entries = surviving_entries(&idx);
    // A copy cut at 5 MiB: slots wholly inside it survive, the rest is gone.
    let cut = 5u64 << 20;
    let copy = s.file("cut.img");
    let mut bytes = std::fs::read(&img).unwrap();
    bytes.truncate(cut as usize);
    std::fs::write(&copy, &bytes).unwrap();
    let slot_bytes = 4096 + (64 << 10);
    let whole: Vec<u64> = entries
        .iter()
        .filter(|e| e.device_offset_bytes + slot_bytes <= cut)
        .map(|e| e.slot_seq)
        .collect();
    assert!(!whole.is_empty() && whole.len() < entries.len());
    // verify names every unreadable slot and only those.
    let out = run(
        "dmaplay",
        &[
            "verify",
            "--quiet",
            "--json",
            "--pattern",
            "--index",
            &idx,
            &copy,
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("truncated copy"),
        "the short member must be named"
    );
    let report = json(&String::from_utf8_lossy(&out.stdout));
    let bad: Vec<u64> = report["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["slot_seq"].as_u64().unwrap())
        .collect();
    let lost: Vec<u64> = entries
        .iter()
        .map(|e| e.slot_seq)
        .filter(|s| !whole.contains(s))
        .collect();
    assert_eq!(bad, lost);
    // reindex recovers exactly the slots inside the copy.
    let image = read_direct(std::path::Path::new(&copy));
    let (after, torn) =
        reindex_and_check(&[&copy], std::slice::from_ref(&image), &s.file("re.idx"));
    assert_eq!(after.iter().map(|e| e.slot_seq).collect::<Vec<_>>(), whole);
    assert!(
        torn.len() <= 1,
        "at most the slot cut in two is torn: {torn:?}"
    );
}
