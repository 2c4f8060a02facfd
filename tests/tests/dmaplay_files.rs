//! dmaplay on recordings made by `dmarec record --source sim` into regular
//! files: every command, checked against the recorder's own index and the
//! simulated card's pattern; damage (bit flips in slot headers and
//! payloads, truncated and corrupted index, an older recording underneath,
//! a missing stripe member) reported exactly.

use e2e::*;
use formats::{pattern, IndexEntry, SLOT_HEADER_BYTES};
use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::process::Output;

const PAYLOAD: usize = 65536;

fn record(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["record", "--quiet", "--json", "--payload-size", "64K"];
    all.extend_from_slice(args);
    let out = run("dmarec", &all);
    // 0: stopped as asked; 3: target full (ring tests stop by size).
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "dmarec {}: {}",
        all.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout))
}

fn dmaplay(args: &[&str]) -> Output {
    run("dmaplay", args)
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn flip(path: &str, offset: u64, bit: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 1 << bit;
    f.write_all_at(&b, offset).unwrap();
    f.sync_all().unwrap();
}

/// What channel `ch` exports to: the pattern of every recorded buffer of
/// the channel, zeros for lost ones when `zero`.
fn expected(es: &[IndexEntry], channels: u64, ch: u64, zero: bool) -> Vec<u8> {
    let recorded: BTreeSet<u64> = es.iter().map(|e| e.card_seq).collect();
    let (first, last) = (es[0].card_seq, es.last().unwrap().card_seq);
    let mut out = Vec::new();
    let mut buf = vec![0u8; PAYLOAD];
    for x in (first..=last).filter(|x| x % channels == ch) {
        if recorded.contains(&x) {
            pattern::fill(&mut buf, ch as u16, x);
            out.extend_from_slice(&buf);
        } else if zero {
            out.extend_from_slice(&vec![0u8; PAYLOAD]);
        }
    }
    out
}

fn bad_slots(value: &serde_json::Value) -> BTreeSet<u64> {
    value["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["slot_seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn inspect_verify_export_and_replay_agree_with_the_recorder() {
    let s = Scratch::new("dmaplay-all");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    let sum = record(&[
        "--target",
        &img,
        "--file-size",
        "64M",
        "--index",
        &idx,
        "--size",
        "20M",
        "--channels",
        "3",
        "--sim-drop-every",
        "7",
    ]);
    let es = index_entries(&idx);
    assert_eq!(es.len() as u64, sum["slots"].as_u64().unwrap());

    let ins = json(&stdout(&dmaplay(&[
        "inspect", &img, "--index", &idx, "--json",
    ])));
    assert_eq!(ins["recording_uuid"], sum["recording_uuid"]);
    assert_eq!(ins["slots"], sum["slots"]);
    assert_eq!(ins["buffers_lost"], sum["buffers_lost"]);
    assert_eq!(
        ins["gaps"].as_array().unwrap().len() as u64,
        sum["slots_with_gap"].as_u64().unwrap()
    );
    assert_eq!(ins["payload_bytes_recorded"], sum["payload_bytes_recorded"]);
    let per_channel: u64 = ins["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(per_channel, sum["payload_bytes_recorded"].as_u64().unwrap());
    assert_eq!(ins["catalog"], format!("index {idx}"));

    let out = dmaplay(&["verify", &img, "--index", &idx, "--pattern", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&stdout(&out));
    assert_eq!(
        (
            v["slots_checked"].as_u64(),
            v["bad"].as_array().unwrap().len()
        ),
        (Some(es.len() as u64), 0)
    );

    // Raw export of channel 1, with zero filler, byte for byte.
    let raw = s.file("ch1.raw");
    let out = dmaplay(&[
        "export",
        &img,
        "--index",
        &idx,
        "--channel",
        "1",
        "--out",
        &raw,
        "--gaps",
        "zero",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        std::fs::read(&raw).unwrap() == expected(&es, 3, 1, true),
        "channel 1 export differs from the pattern"
    );

    // SigMF of every channel.
    let base = s.file("rec");
    let out = dmaplay(&[
        "export", &img, "--index", &idx, "--all", "--format", "sigmf", "--out", &base, "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json(&stdout(&out));
    for ch in 0..3u64 {
        let gaps = report["channels"][ch as usize]["gaps"].as_array().unwrap();
        let followed = gaps
            .iter()
            .filter(|g| !g["before_slot_seq"].is_null())
            .count();
        let data = std::fs::read(s.file(&format!("rec-ch{ch}.sigmf-data"))).unwrap();
        assert!(
            data == expected(&es, 3, ch, false),
            "channel {ch} SigMF data differs"
        );
        let meta =
            json(&std::fs::read_to_string(s.file(&format!("rec-ch{ch}.sigmf-meta"))).unwrap());
        assert_eq!(meta["global"]["core:datatype"], "ci16_le");
        assert_eq!(meta["global"]["core:version"], "1.2.0");
        assert_eq!(meta["global"]["core:recorder"], "dmarec");
        let caps = meta["captures"].as_array().unwrap();
        let anns = meta["annotations"].as_array().unwrap();
        assert!(
            !anns.is_empty(),
            "drops every 7th buffer: channel {ch} has gaps"
        );
        assert_eq!(anns.len(), gaps.len());
        let lost: u64 = gaps
            .iter()
            .map(|g| g["buffers_lost"].as_u64().unwrap())
            .sum();
        let want_lost = (es[0].card_seq..=es.last().unwrap().card_seq)
            .filter(|x| x % 3 == ch && !es.iter().any(|e| e.card_seq == *x))
            .count() as u64;
        assert_eq!(lost, want_lost, "channel {ch} lost buffers");
        assert_eq!(
            caps.len(),
            followed + 1,
            "one capture to start and one after each gap followed by data"
        );
        let dt = caps[0]["core:datetime"].as_str().unwrap();
        assert!(
            dt.len() == 30 && dt.ends_with('Z') && dt.as_bytes()[10] == b'T',
            "{dt}"
        );
        for a in anns {
            assert!(
                a["core:sample_start"].is_u64()
                    && a["core:sample_count"].is_u64()
                    && a["core:comment"].is_string()
            );
        }
        let starts: Vec<u64> = caps
            .iter()
            .map(|c| c["core:sample_start"].as_u64().unwrap())
            .collect();
        assert!(
            starts.windows(2).all(|w| w[0] < w[1]),
            "captures sorted: {starts:?}"
        );
    }

    // Replay at max speed equals the channel's payloads.
    let stream = s.file("stream");
    let out = dmaplay(&[
        "replay",
        &img,
        "--index",
        &idx,
        "--channel",
        "2",
        "--speed",
        "max",
        "--out",
        &stream,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(std::fs::read(&stream).unwrap() == expected(&es, 3, 2, false));
    // And to stdout.
    let out = dmaplay(&[
        "replay",
        &img,
        "--index",
        &idx,
        "--channel",
        "0",
        "--speed",
        "x1000",
        "--quiet",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == expected(&es, 3, 0, false));

    // --gaps error stops at the first gap with status 1 and a clear message.
    let out = dmaplay(&[
        "export",
        &img,
        "--index",
        &idx,
        "--channel",
        "0",
        "--out",
        &s.file("e.raw"),
        "--gaps",
        "error",
    ]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("gap") && stderr(&out).contains("--gaps mark"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_reports_exactly_the_damaged_slots_with_and_without_the_index() {
    let s = Scratch::new("dmaplay-damage");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    record(&[
        "--target",
        &img,
        "--file-size",
        "64M",
        "--index",
        &idx,
        "--size",
        "16M",
        "--channels",
        "2",
    ]);
    let es = index_entries(&idx);
    let n = es.len() as u64;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut hit = BTreeSet::new();
    // Headers (not of the newest slot: a scan can't tell it from the end).
    while hit.len() < 5 {
        let seq = next(n - 1);
        if hit.insert(seq) {
            let e = es[seq as usize];
            flip(
                &img,
                e.device_offset_bytes + next(SLOT_HEADER_BYTES as u64),
                next(8) as u8,
            );
        }
    }
    let headers = hit.clone();
    while hit.len() < 12 {
        let seq = next(n);
        if hit.insert(seq) {
            let e = es[seq as usize];
            flip(
                &img,
                e.device_offset_bytes + SLOT_HEADER_BYTES as u64 + next(PAYLOAD as u64),
                next(8) as u8,
            );
        }
    }
    for index in [Some(idx.as_str()), None] {
        let mut args = vec!["verify", &img, "--json"];
        if let Some(i) = index {
            args.extend(["--index", i]);
        }
        let out = dmaplay(&args);
        assert_eq!(code(&out), 3, "bad slots give status 3: {}", stderr(&out));
        let v = json(&stdout(&out));
        assert_eq!(bad_slots(&v), hit, "with index {index:?}");
        for b in v["bad"].as_array().unwrap() {
            let seq = b["slot_seq"].as_u64().unwrap();
            assert_eq!(
                b["offset_bytes"].as_u64(),
                Some(es[seq as usize].device_offset_bytes)
            );
            assert_eq!(b["device"], img.as_str());
            let p = b["problem"].as_str().unwrap();
            if headers.contains(&seq) {
                assert!(p.contains("header"), "{p}");
            } else {
                assert!(p.contains("payload CRC mismatch"), "{p}");
                assert_eq!(b["card_seq"].as_u64(), Some(es[seq as usize].card_seq));
            }
        }
        if index.is_none() {
            assert!(stderr(&out).contains("scanning"), "{}", stderr(&out));
        }
    }
    // The text report names them too.
    let out = dmaplay(&["verify", &img, "--index", &idx, "--quiet"]);
    assert_eq!(code(&out), 3);
    assert!(
        stdout(&out).contains(&format!("{} bad slot(s)", hit.len())),
        "{}",
        stdout(&out)
    );
}

#[test]
fn reindex_rebuilds_the_recorders_index_and_index_damage_falls_back_to_a_scan() {
    let s = Scratch::new("dmaplay-reindex");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    record(&[
        "--target",
        &img,
        "--file-size",
        "48M",
        "--index",
        &idx,
        "--size",
        "8M",
        "--sim-drop-every",
        "5",
    ]);
    let original = std::fs::read(&idx).unwrap();
    let out = dmaplay(&["reindex", &img, "--index", &idx]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("exists") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    let rebuilt = s.file("rebuilt.idx");
    let out = dmaplay(&["reindex", &img, "--index", &rebuilt, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&stdout(&out));
    assert_eq!(r["slots_indexed"].as_u64(), Some(128));
    assert!(
        std::fs::read(&rebuilt).unwrap() == original,
        "reindex differs from the recorder's index"
    );

    // Torn tail: half an entry and a bad last entry are ignored and reported.
    let mut torn = original.clone();
    torn.truncate(original.len() - 64 - 20); // 126 entries and 44 bytes
    let in_last_full_entry = torn.len() - 44 - 10;
    torn[in_last_full_entry] ^= 4;
    std::fs::write(&idx, &torn).unwrap();
    let ins = json(&stdout(&dmaplay(&[
        "inspect", &img, "--index", &idx, "--json",
    ])));
    assert_eq!(ins["index_torn_tail_bytes"].as_u64(), Some(64 + 44));
    assert_eq!(ins["slots"].as_u64(), Some(125));
    assert!(ins["index_behind"].as_str().unwrap().contains("reindex"));
    // Damage inside: fall back to a scan, say so, find every slot.
    let mut bad = original.clone();
    bad[8192 + 64 * 40 + 3] ^= 0x10;
    std::fs::write(&idx, &bad).unwrap();
    let out = dmaplay(&["verify", &img, "--index", &idx, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is damaged (entry 40: index entry: CRC mismatch"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&stdout(&out))["slots_checked"].as_u64(), Some(128));
    // Truncated into the header: unusable, scanned instead.
    std::fs::write(&idx, &original[..6000]).unwrap();
    let out = dmaplay(&["inspect", &img, "--index", &idx, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not usable") && stderr(&out).contains("truncated"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&stdout(&out))["slots"].as_u64(), Some(128));
}

#[test]
fn an_older_recording_underneath_is_ignored_and_reported() {
    let s = Scratch::new("dmaplay-older");
    let (img, old_idx, idx) = (s.file("rec.img"), s.file("old.idx"), s.file("new.idx"));
    let old = record(&[
        "--target",
        &img,
        "--file-size",
        "32M",
        "--index",
        &old_idx,
        "--size",
        "20M",
    ]);
    // A ring scan owns every position of the set: reading it meets the
    // older recording's slots everywhere it did not write.
    let new = record(&[
        "--target",
        &img,
        "--index",
        &idx,
        "--size",
        "5M",
        "--force",
        "--on-full",
        "wrap",
    ]);
    assert_ne!(old["recording_uuid"], new["recording_uuid"]);
    let ins = json(&stdout(&dmaplay(&["inspect", &img, "--json"])));
    assert_eq!(ins["recording_uuid"], new["recording_uuid"]);
    assert_eq!(ins["slots"].as_u64(), Some(80));
    let stale = ins["scan"]["other_recordings"][old["scan_uuid"].as_str().unwrap()].as_u64();
    assert_eq!(stale, Some(320 - 80));
    let rebuilt = s.file("r.idx");
    let out = dmaplay(&["reindex", &img, "--index", &rebuilt]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "240 stale slot(s) of another recording {}",
            old["scan_uuid"].as_str().unwrap()
        )),
        "{}",
        stdout(&out)
    );
    assert!(std::fs::read(&rebuilt).unwrap() == std::fs::read(&idx).unwrap());
    // The old index does not belong to these targets: not used.
    let out = dmaplay(&["verify", &img, "--index", &old_idx, "--pattern"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is the index of recording"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stripe_of_unequal_files_in_any_order_and_a_missing_member() {
    let s = Scratch::new("dmaplay-stripe");
    let names = ["a.img", "b.img", "c.img"];
    for (n, size) in names.iter().zip([24u64 << 20, 40 << 20, 32 << 20]) {
        std::fs::File::create(s.join(n))
            .unwrap()
            .set_len(size)
            .unwrap();
    }
    let (a, b, c, idx) = (
        s.file("a.img"),
        s.file("b.img"),
        s.file("c.img"),
        s.file("rec.idx"),
    );
    let sum = record(&[
        "--target",
        &a,
        "--target",
        &b,
        "--target",
        &c,
        "--index",
        &idx,
        "--size",
        "80M",
        "--channels",
        "4",
    ]);
    let es = index_entries(&idx);
    assert_eq!(es.len() as u64, sum["slots"].as_u64().unwrap());
    let out = dmaplay(&["verify", &c, &a, &b, "--index", &idx, "--pattern", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        json(&stdout(&out))["slots_checked"].as_u64(),
        Some(es.len() as u64)
    );

    // Member 1 (b.img) not given.
    let ins = json(&stdout(&dmaplay(&[
        "inspect", &c, &a, "--index", &idx, "--json",
    ])));
    let missing_uuid = ins["missing_members"][0]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ins["missing_members"][0]["device_index"].as_u64(), Some(1));
    let out = dmaplay(&["verify", &c, &a, "--index", &idx, "--json"]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains(&"member 1 of recording".to_string())
            && stderr(&out).contains(&missing_uuid),
        "{}",
        stderr(&out)
    );
    let on_b: BTreeSet<u64> = es
        .iter()
        .filter(|e| e.device_index == 1)
        .map(|e| e.slot_seq)
        .collect();
    assert_eq!(bad_slots(&json(&stdout(&out))), on_b);
    let out = dmaplay(&["reindex", &c, &a, "--index", &s.file("x.idx")]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("missing: member 1 (uuid") && stderr(&out).contains(&missing_uuid),
        "{}",
        stderr(&out)
    );
    // Export across the missing member: its slots are gaps, zero-filled.
    let out = dmaplay(&[
        "export",
        &a,
        &c,
        "--index",
        &idx,
        "--channel",
        "3",
        "--out",
        &s.file("ch3.raw"),
        "--gaps",
        "zero",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let present: Vec<IndexEntry> = es.iter().copied().filter(|e| e.device_index != 1).collect();
    let mut want = Vec::new();
    let mut buf = vec![0u8; PAYLOAD];
    let (first, last) = (es[0].card_seq, es.last().unwrap().card_seq);
    let have: BTreeSet<u64> = present.iter().map(|e| e.card_seq).collect();
    for x in (first..=last).filter(|x| x % 4 == 3) {
        if have.contains(&x) {
            pattern::fill(&mut buf, 3, x);
            want.extend_from_slice(&buf);
        } else {
            want.extend_from_slice(&vec![0u8; PAYLOAD]);
        }
    }
    assert!(std::fs::read(s.file("ch3.raw")).unwrap() == want);
    let r = json(&stdout(&out));
    assert!(r["channels"][0]["gaps"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("member 1 was not given"));
}

#[test]
fn ring_mode_keeps_the_newest_lap() {
    let s = Scratch::new("dmaplay-ring");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    let sum = record(&[
        "--target",
        &img,
        "--file-size",
        "16M",
        "--index",
        &idx,
        "--size",
        "40M",
        "--on-full",
        "wrap",
    ]);
    let cap = sum["capacity_slots"].as_u64().unwrap();
    let es = index_entries(&idx);
    assert!(es.len() as u64 > 2 * cap);
    let ins = json(&stdout(&dmaplay(&[
        "inspect", &img, "--index", &idx, "--json",
    ])));
    assert_eq!(ins["slots"].as_u64(), Some(cap));
    assert_eq!(
        ins["ring_wraps"].as_u64(),
        Some((es.len() as u64 - 1) / cap)
    );
    assert_eq!(ins["first_slot_seq"].as_u64(), Some(es.len() as u64 - cap));
    for args in [
        vec!["verify", &img, "--index", &idx, "--pattern"],
        vec!["verify", &img, "--pattern"],
    ] {
        let out = dmaplay(&args);
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    }
    let rebuilt = s.file("r.idx");
    let out = dmaplay(&["reindex", &img, "--index", &rebuilt]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        index_entries(&rebuilt),
        es[es.len() - cap as usize..].to_vec()
    );
}

/// Writes `index` without the entries of `seqs` (their slots stay on the
/// target): slot numbers the index lacks.
fn drop_entries(index: &str, seqs: &[u64]) {
    use formats::index::{INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
    let bytes = std::fs::read(index).unwrap();
    let mut kept = bytes[..INDEX_HEADER_BYTES].to_vec();
    for (i, e) in index_entries(index).iter().enumerate() {
        if !seqs.contains(&e.slot_seq) {
            let at = INDEX_HEADER_BYTES + i * INDEX_ENTRY_BYTES;
            kept.extend_from_slice(&bytes[at..at + INDEX_ENTRY_BYTES]);
        }
    }
    std::fs::write(index, kept).unwrap();
}

/// `dmaplay verify --range A..B --json` on `img`: exit status and the bad
/// slots with their problems; checks it read only the range's slots.
fn verify_range(img: &str, idx: &str, range: &str) -> (i32, Vec<(u64, String)>) {
    let out = dmaplay(&["verify", img, "--index", idx, "--range", range, "--json"]);
    let v = json(&stdout(&out));
    let (first, last) = range.split_once("..").unwrap_or((range, range));
    let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
    let in_index = index_entries(idx)
        .iter()
        .filter(|e| (first..=last).contains(&e.slot_seq))
        .count();
    assert_eq!(
        v["slots_checked"].as_u64(),
        Some(in_index as u64),
        "{range}"
    );
    let bad = v["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let problem = b["problem"].as_str().unwrap().to_string();
            (b["slot_seq"].as_u64().unwrap(), problem)
        })
        .collect();
    (code(&out), bad)
}

#[test]
fn verify_range_reports_its_first_and_last_slot_missing_from_the_index() {
    let s = Scratch::new("dmaplay-range-edges");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    record(&[
        "--target",
        &img,
        "--file-size",
        "32M",
        "--index",
        &idx,
        "--size",
        "2M",
    ]);
    assert_eq!(index_entries(&idx).len(), 32);
    drop_entries(&idx, &[8, 10]);
    let missing = |seq: u64| {
        let why = "missing from the index: not in the index (unwritten or destroyed)";
        (seq, why.to_string())
    };
    // Both ends of the range, each alone at an end, and neither.
    assert_eq!(
        verify_range(&img, &idx, "8..10"),
        (3, vec![missing(8), missing(10)])
    );
    assert_eq!(verify_range(&img, &idx, "10..12"), (3, vec![missing(10)]));
    assert_eq!(verify_range(&img, &idx, "5..8"), (3, vec![missing(8)]));
    assert_eq!(verify_range(&img, &idx, "10"), (3, vec![missing(10)]));
    assert_eq!(verify_range(&img, &idx, "9..9"), (0, vec![]));
    assert_eq!(verify_range(&img, &idx, "11..31"), (0, vec![]));
}

#[test]
fn reindex_finds_a_torn_slot_that_is_not_the_newest() {
    let s = Scratch::new("dmaplay-torn-older");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    record(&[
        "--target",
        &img,
        "--file-size",
        "32M",
        "--index",
        &idx,
        "--size",
        "4M",
    ]);
    let es = index_entries(&idx);
    let n = es.len() as u64;
    assert_eq!(n, 64);
    // Writes in flight finish out of order: a crash can tear slots behind
    // the newest intact one. Tear the 3rd and the 6th newest.
    let torn_seqs = [n - 6, n - 3];
    for seq in torn_seqs {
        let e = es[seq as usize];
        flip(
            &img,
            e.device_offset_bytes + SLOT_HEADER_BYTES as u64 + 777,
            3,
        );
    }
    let reindex = |check_newest: Option<&str>| {
        let re = s.file(&format!("re-{}.idx", check_newest.unwrap_or("default")));
        let mut args = vec!["reindex", &img, "--index", &re, "--json"];
        args.extend(
            check_newest
                .map(|c| ["--check-newest", c])
                .into_iter()
                .flatten(),
        );
        let out = dmaplay(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let r = json(&stdout(&out));
        let torn: Vec<u64> = r["torn"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["slot_seq"].as_u64().unwrap())
            .collect();
        (torn, index_entries(&re), r)
    };
    // The default window reaches both; neither is indexed, the rest is the
    // recorder's index.
    let (torn, rebuilt, r) = reindex(None);
    assert_eq!(torn, torn_seqs.to_vec());
    let expect: Vec<IndexEntry> = es
        .iter()
        .filter(|e| !torn_seqs.contains(&e.slot_seq))
        .copied()
        .collect();
    assert_eq!(rebuilt, expect);
    assert_eq!(r["last_slot_seq"].as_u64(), Some(n - 1));
    let problems = r["torn"].to_string();
    assert!(problems.contains("payload CRC mismatch"), "{problems}");
    // The window's edge: the 6th newest is the oldest slot of a 6-slot
    // window and outside a 5-slot one (then indexed as it is).
    assert_eq!(reindex(Some("6")).0, torn_seqs.to_vec());
    let (torn, rebuilt, _) = reindex(Some("5"));
    assert_eq!(torn, vec![n - 3]);
    assert_eq!(rebuilt.len() as u64, n - 1);
    assert!(rebuilt.iter().any(|e| e.slot_seq == n - 6));
}

#[test]
fn reindex_of_a_wrapped_ring_with_torn_slots_reports_exactly_them_missing() {
    let s = Scratch::new("dmaplay-ring-torn");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    let sum = record(&[
        "--target",
        &img,
        "--file-size",
        "16M",
        "--index",
        &idx,
        "--size",
        "40M",
        "--on-full",
        "wrap",
    ]);
    let cap = sum["capacity_slots"].as_u64().unwrap();
    let es = index_entries(&idx);
    let n = es.len() as u64;
    assert!(n > 2 * cap, "the ring wrapped twice");
    // Intact: the scan reads every location and finds the newest lap whole.
    let r = reindex_json(&img, &s.file("intact.idx"));
    assert_eq!(r["scan"]["locations_read"].as_u64(), Some(cap));
    assert_eq!(r["scan"]["oldest_slot_seq"].as_u64(), Some(n - cap));
    assert_eq!(missing_runs(&r["scan"]), vec![]);
    assert_eq!(
        index_entries(&s.file("intact.idx")),
        es[(n - cap) as usize..]
    );
    let torn_seqs = [n - 6, n - 3];
    for seq in torn_seqs {
        let e = es[seq as usize];
        flip(
            &img,
            e.device_offset_bytes + SLOT_HEADER_BYTES as u64 + 99,
            5,
        );
    }
    let re = s.file("re.idx");
    let r = reindex_json(&img, &re);
    let torn: Vec<u64> = r["torn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slot_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(torn, torn_seqs.to_vec());
    // The live window is the newest lap; the torn slots are its only holes.
    let scan = &r["scan"];
    assert_eq!(scan["oldest_slot_seq"].as_u64(), Some(n - cap));
    assert_eq!(scan["newest_slot_seq"].as_u64(), Some(n - 1));
    let torn_run = |seq: u64| (seq, seq, "torn".to_string());
    assert_eq!(missing_runs(scan), vec![torn_run(n - 6), torn_run(n - 3)]);
    assert_eq!(scan["counts"]["live"].as_u64(), Some(cap - 2), "{scan}");
    assert_eq!(scan["counts"]["torn"].as_u64(), Some(2), "{scan}");
    assert_eq!(scan["live_slots"].as_u64(), Some(cap - 2));
    let expect: Vec<IndexEntry> = es[(n - cap) as usize..]
        .iter()
        .filter(|e| !torn_seqs.contains(&e.slot_seq))
        .copied()
        .collect();
    assert_eq!(index_entries(&re), expect);
}

/// `dmaplay reindex IMG --index RE --json` (exit 0 required): the report.
fn reindex_json(img: &str, re: &str) -> serde_json::Value {
    let out = dmaplay(&["reindex", img, "--index", re, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    json(&stdout(&out))
}

fn missing_runs(scan: &serde_json::Value) -> Vec<(u64, u64, String)> {
    scan["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let seq = |k: &str| m[k].as_u64().unwrap();
            let found = m["found"].as_str().unwrap().to_string();
            (seq("first_slot_seq"), seq("last_slot_seq"), found)
        })
        .collect()
}

#[test]
fn scan_counts_every_location_lists_1000_damaged_headers_and_finds_a_misplaced_slot() {
    let s = Scratch::new("dmaplay-scan-classes");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    let out = run(
        "dmarec",
        &[
            "record",
            "--quiet",
            "--json",
            "--payload-size",
            "4K",
            "--target",
            &img,
            "--file-size",
            "16M",
            "--index",
            &idx,
            "--size",
            "6M",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The locations of the scan: an ended scan owns its slots' positions
    // (docs/FORMAT.md "Scans"), fewer than the set's capacity.
    let set_capacity = json(&stdout(&out))["capacity_slots"].as_u64().unwrap();
    let listed = json(&stdout(&dmaplay(&["list", "--json", &img])));
    let cap = listed["scans"][0]["slot_count"].as_u64().unwrap();
    assert!(cap < set_capacity);
    let es = index_entries(&idx);
    let n = es.len() as u64;
    assert_eq!(n, 1536);
    // 1001 damaged headers in a row (card_seq byte: CRC mismatch), one more
    // than the report lists; slot 5's header page copied over slot 1200's.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let damaged = 100..=1100u64;
    for seq in damaged.clone() {
        let at = es[seq as usize].device_offset_bytes + 40;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x81], at).unwrap();
    }
    let mut page = vec![0u8; SLOT_HEADER_BYTES];
    f.read_exact_at(&mut page, es[5].device_offset_bytes)
        .unwrap();
    f.write_all_at(&page, es[1200].device_offset_bytes).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let r = reindex_json(&img, &s.file("re.idx"));
    let scan = &r["scan"];
    assert_eq!(scan["locations_read"].as_u64(), Some(cap));
    assert_eq!(scan["damaged_headers"].as_array().unwrap().len(), 1000);
    let counts = &scan["counts"];
    assert_eq!(counts["damaged_header"].as_u64(), Some(1001), "{counts}");
    assert_eq!(counts["misplaced"].as_u64(), Some(1), "{counts}");
    assert_eq!(counts["live"].as_u64(), Some(n - 1002), "{counts}");
    assert_eq!(cap, n, "the scan's region holds its slots only");
    assert_eq!(counts["empty"], serde_json::Value::Null, "{counts}");
    assert_eq!(
        missing_runs(scan),
        vec![
            (100, 1100, "damaged_header".to_string()),
            (1200, 1200, "misplaced".to_string())
        ]
    );
    let kept: Vec<IndexEntry> = es
        .iter()
        .filter(|e| !damaged.contains(&e.slot_seq) && e.slot_seq != 1200)
        .copied()
        .collect();
    assert_eq!(index_entries(&s.file("re.idx")), kept);
}

#[test]
fn reindex_writes_an_index_given_relative_to_the_working_directory_only_beside_it() {
    let s = Scratch::new("dmaplay-reindex-paths");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    record(&[
        "--target",
        &img,
        "--file-size",
        "16M",
        "--index",
        &idx,
        "--size",
        "1M",
    ]);
    let original = std::fs::read(&idx).unwrap();
    // A bare file name: written (and its directory synced) in the working
    // directory; an absolute path: the working directory is not written
    // (/proc refuses new files, even to root).
    for (cwd, index) in [
        (s.path.clone(), "rel.idx".to_string()),
        ("/proc".into(), s.file("abs.idx")),
    ] {
        let out = std::process::Command::new(bin("dmaplay"))
            .args(["reindex", &img, "--index", &index])
            .current_dir(&cwd)
            .output()
            .unwrap();
        assert_eq!(
            code(&out),
            0,
            "--index {index} in {}: {}",
            cwd.display(),
            stderr(&out)
        );
        assert!(
            std::fs::read(cwd.join(&index)).unwrap() == original,
            "{index}"
        );
    }
    let names: Vec<String> = std::fs::read_dir(&s.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".reindex-")),
        "temporary left: {names:?}"
    );
}

#[test]
fn verify_names_what_a_wrong_slot_holds() {
    use formats::index::{INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
    let s = Scratch::new("dmaplay-wrong-slot");
    let mut recs = Vec::new();
    for name in ["a", "b"] {
        let (img, idx) = (
            s.file(&format!("{name}.img")),
            s.file(&format!("{name}.idx")),
        );
        record(&[
            "--target",
            &img,
            "--file-size",
            "16M",
            "--index",
            &idx,
            "--size",
            "2M",
        ]);
        recs.push((img, idx));
    }
    let (img, idx) = &recs[0];
    let es = index_entries(idx);
    let slot_bytes = SLOT_HEADER_BYTES + PAYLOAD;
    let read_slot = |path: &str, seq: usize| {
        let mut b = vec![0u8; slot_bytes];
        let f = std::fs::File::open(path).unwrap();
        f.read_exact_at(&mut b, es[seq].device_offset_bytes)
            .unwrap();
        b
    };
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    // Slot 5 of recording b over a's slot 5; a's slot 7 over its slot 9.
    f.write_all_at(&read_slot(&recs[1].0, 5), es[5].device_offset_bytes)
        .unwrap();
    f.write_all_at(&read_slot(img, 7), es[9].device_offset_bytes)
        .unwrap();
    f.sync_all().unwrap();
    // Slot 12's index entry claims more payload than a slot holds.
    let e12 = IndexEntry {
        payload_bytes_used: PAYLOAD as u32 + 1,
        ..es[12]
    };
    let f = std::fs::OpenOptions::new().write(true).open(idx).unwrap();
    let at = INDEX_HEADER_BYTES + 12 * INDEX_ENTRY_BYTES;
    f.write_all_at(&e12.encode(), at as u64).unwrap();
    f.sync_all().unwrap();
    let out = dmaplay(&["verify", img, "--index", idx, "--json", "--threads", "3"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let v = json(&stdout(&out));
    // The report's figures agree with each other.
    assert_eq!(v["worker_threads"].as_u64(), Some(3));
    let checked = v["slots_checked"].as_u64().unwrap();
    assert_eq!(checked, es.len() as u64);
    let bytes_read = v["bytes_read"].as_u64().unwrap();
    assert_eq!(bytes_read, checked * slot_bytes as u64);
    let seconds = v["seconds"].as_f64().unwrap();
    assert!(seconds > 0.0);
    // (serde_json's float parsing may differ in the last bit.)
    let mb_per_s = bytes_read as f64 / seconds / 1e6;
    assert!((v["mb_per_s"].as_f64().unwrap() - mb_per_s).abs() <= 1e-9 * mb_per_s);
    let bad: Vec<(u64, String)> = v["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["slot_seq"].as_u64().unwrap(), b["problem"].to_string()))
        .collect();
    assert_eq!(bad.len(), 3, "{bad:?}");
    let expect = [
        (5, "holds a slot of another recording"),
        (9, "holds slot 7 instead"),
        (
            12,
            "payload_bytes_used 65537 exceeds the payload size 65536",
        ),
    ];
    for ((seq, problem), (want_seq, want)) in bad.iter().zip(expect) {
        assert_eq!(*seq, want_seq);
        assert!(problem.contains(want), "slot {seq}: {problem}");
    }
    let differs = "header differs from the catalog entry: payload_bytes_used 65536 vs 65537";
    assert!(bad[2].1.contains(differs), "{}", bad[2].1);
}

#[test]
fn a_ring_slot_whose_newer_lap_is_missing_shows_the_older_lap() {
    use formats::SlotHeader;
    let s = Scratch::new("dmaplay-older-lap");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    let sum = record(&[
        "--target",
        &img,
        "--file-size",
        "16M",
        "--index",
        &idx,
        "--size",
        "40M",
        "--on-full",
        "wrap",
    ]);
    let cap = sum["capacity_slots"].as_u64().unwrap();
    let es = index_entries(&idx);
    let n = es.len() as u64;
    // Slot n-10's header made into the previous lap's (its slot number minus
    // the capacity, same place): as if n-10 had never been written there.
    let seq = n - 10;
    let at = es[seq as usize].device_offset_bytes;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut page = vec![0u8; SLOT_HEADER_BYTES];
    f.read_exact_at(&mut page, at).unwrap();
    let h = SlotHeader::decode(&page).unwrap();
    let older = SlotHeader {
        slot_seq: seq - cap,
        ..h
    };
    f.write_all_at(&older.encode(), at).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let re = s.file("re.idx");
    let r = reindex_json(&img, &re);
    let scan = &r["scan"];
    assert_eq!(
        missing_runs(scan),
        vec![(seq, seq, "older_lap".to_string())]
    );
    assert_eq!(scan["counts"]["older_lap"].as_u64(), Some(1), "{scan}");
    assert_eq!(scan["counts"]["live"].as_u64(), Some(cap - 1), "{scan}");
    let expect: Vec<IndexEntry> = es[(n - cap) as usize..]
        .iter()
        .filter(|e| e.slot_seq != seq)
        .copied()
        .collect();
    assert_eq!(index_entries(&re), expect);
}

/// `export --force` onto a device node or a FIFO is refused before
/// anything is written, and the node is left in place: export removes its
/// outputs when it fails, and once removed `/dev/null` as root (its sync
/// fails with EINVAL there).
#[test]
fn export_refuses_an_output_that_is_not_a_regular_file_and_leaves_it() {
    use std::os::unix::fs::OpenOptionsExt;
    let s = Scratch::new("dmaplay-out-kind");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    let size = ["--file-size", "16M", "--size", "2M"];
    record(&[&["--target", &img, "--index", &idx][..], &size[..]].concat());
    let fifo = s.file("out.fifo");
    let c_fifo = std::ffi::CString::new(fifo.clone()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path this frame owns.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    // A reader, so that without the check export's open does not block:
    // its first write fails (ESPIPE) and it removes the FIFO.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let dir = s.file("out.dir");
    std::fs::create_dir(&dir).unwrap();
    let socket = s.file("out.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut outs = vec![(fifo, "a FIFO"), (dir, "a directory"), (socket, "a socket")];
    if is_root() {
        // /dev/null's number, and a block device of major 240 (local and
        // experimental use: no driver, an open of it fails with ENXIO).
        let nodes = [
            (
                "null",
                libc::S_IFCHR,
                libc::makedev(1, 3),
                "a character device",
            ),
            (
                "blk",
                libc::S_IFBLK,
                libc::makedev(240, 0),
                "a block device",
            ),
        ];
        for (name, kind_bits, dev, kind) in nodes {
            let node = s.file(name);
            let c_node = std::ffi::CString::new(node.clone()).unwrap();
            // SAFETY: mknod reads the NUL-terminated path this frame owns.
            let rc = unsafe { libc::mknod(c_node.as_ptr(), kind_bits | 0o600, dev) };
            assert_eq!(rc, 0, "mknod {node}");
            outs.push((node, kind));
        }
    }
    for (out, kind) in outs {
        let args = [
            "export",
            "--index",
            &idx,
            "--channel",
            "0",
            "--format",
            "raw",
        ];
        let o = dmaplay(&[&args[..], &["--force", "--out", &out, &img]].concat());
        assert_ne!(code(&o), 0, "export to {kind} succeeded");
        let e = stderr(&o);
        assert!(e.contains(&out) && e.contains(kind), "{e}");
        assert!(
            std::fs::symlink_metadata(&out).is_ok(),
            "{kind} {out} removed"
        );
    }
}
