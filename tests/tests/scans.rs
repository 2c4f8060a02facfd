//! Many scans on one stripe set (docs/FORMAT.md "Scans"): appended one after
//! another, listed, each verified and exported on its own; a crash during a
//! scan never touches the scans before it and the crashed scan is recovered
//! by reindex; a ring scan takes the rest of the set; a full set refuses.
//! Every recording is checked slot by slot independently of dmaplay
//! (`check_recording`, with the scan's region read from the scan table).

use e2e::*;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const PAYLOAD: &str = "64K";
const PAYLOAD_BYTES: u64 = 64 << 10;

/// `dmarec record` of scan `name` onto `img` with the index `idx`, in
/// these tests' payload size and channels.
fn scan_args<'a>(img: &'a str, idx: &'a str, name: &'a str) -> Vec<&'a str> {
    vec![
        "record",
        "--quiet",
        "--target",
        img,
        "--payload-size",
        PAYLOAD,
        "--channels",
        "2",
        "--index",
        idx,
        "--scan",
        name,
    ]
}

/// Records scan `name` onto `img` (a new file of 64 MiB when it does not
/// exist) with the index `<name>.idx`; returns the index path.
fn record_scan(s: &Scratch, img: &str, name: &str, size: &str, extra: &[&str]) -> String {
    let idx = s.file(&format!("{name}.idx"));
    let mut args = scan_args(img, &idx, name);
    args.extend(["--file-size", "64M", "--buffers", "32", "--size", size]);
    args.extend_from_slice(extra);
    run_ok("dmarec", &args);
    idx
}

/// Tries to record scan `name` onto the existing set `img` (index
/// `<name>.idx`), `size_bytes` of it or until the set is full: dmarec's
/// output, whatever its exit status.
fn try_scan(s: &Scratch, img: &str, name: &str, size_bytes: Option<&str>) -> Output {
    let idx = s.file(&format!("{name}.idx"));
    let mut args = scan_args(img, &idx, name);
    if let Some(size) = size_bytes {
        args.extend(["--size", size]);
    }
    run("dmarec", &args)
}

fn list(img: &str) -> serde_json::Value {
    dmaplay_json(&["list", img])
}

/// Bytes of scan `number` (1-based) in `list`'s region on a one-member set.
fn region_bytes(image: &[u8], listed: &serde_json::Value, number: usize) -> Vec<u8> {
    let scan = &listed["scans"][number - 1];
    let first = scan["first_slot"].as_u64().unwrap();
    let count = scan["slot_count"].as_u64().unwrap();
    let slot_bytes = listed["slot_bytes"].as_u64().unwrap();
    let at = ((1 << 20) + first * slot_bytes) as usize;
    image[at..at + (count * slot_bytes) as usize].to_vec()
}

fn verify(img: &str, scan: &str, index: Option<&str>) -> serde_json::Value {
    let mut args = vec!["verify", "--pattern", "--scan", scan, img];
    if let Some(i) = index {
        args.extend(["--index", i]);
    }
    let v = dmaplay_json(&args);
    assert_eq!(v["bad"].as_array().unwrap().len(), 0, "{scan}: {v}");
    assert_eq!(
        v["member_problems"].as_array().unwrap().len(),
        0,
        "{scan}: {v}"
    );
    v
}

#[test]
fn three_scans_on_one_set_are_listed_verified_and_exported_each() {
    let s = Scratch::new("scans3");
    let img = s.file("set.img");
    let sizes = [
        ("alpha", "6M", 96u64),
        ("beta", "4M", 64),
        ("gamma", "2M", 32),
    ];
    let mut indexes = Vec::new();
    for (name, size, _) in sizes {
        indexes.push(record_scan(&s, &img, name, size, &[]));
    }
    let listed = list(&img);
    assert_eq!(listed["schema_version"], 1);
    assert_eq!(listed["format_version"], "1.2");
    let scans = listed["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 3);
    let mut first_slot = 0;
    for (i, (name, _, slots)) in sizes.iter().enumerate() {
        let scan = &scans[i];
        assert_eq!(scan["number"], i + 1);
        assert_eq!(scan["name"], *name);
        assert_eq!(scan["state"], "complete");
        assert_eq!(scan["ring"], false);
        assert_eq!(
            scan["first_slot"], first_slot,
            "{name} starts after the one before"
        );
        assert_eq!(scan["slot_count"], *slots, "{name}");
        assert_eq!(scan["payload_bytes"], slots * PAYLOAD_BYTES, "{name}");
        assert_eq!(scan["buffers_lost"], 0);
        assert!(scan["duration_s"].as_f64().unwrap() >= 0.0);
        first_slot += slots;
    }
    let capacity = listed["capacity_slots"].as_u64().unwrap();
    assert_eq!(listed["slots_left"], capacity - first_slot);
    let uuids: std::collections::HashSet<_> = scans.iter().map(|s| s["uuid"].clone()).collect();
    assert_eq!(uuids.len(), 3, "each scan has its own UUID");

    let image = std::fs::read(&img).unwrap();
    for (i, (name, _, slots)) in sizes.iter().enumerate() {
        let idx = std::fs::read(&indexes[i]).unwrap();
        let checked = check_recording(std::slice::from_ref(&image), &idx);
        assert_eq!((checked.slots, checked.first_slot), (*slots, 0), "{name}");
        // By its index, and by its slot headers alone (no index).
        assert_eq!(
            verify(&img, name, Some(&indexes[i]))["slots_checked"],
            *slots
        );
        let scanned = verify(&img, name, None);
        assert_eq!(scanned["slots_checked"], *slots, "{name} by header scan");
        assert_eq!(scanned["recording_uuid"], scans[i]["uuid"]);
        // Export channel 0: half the slots (two channels, round-robin).
        let out = s.file(&format!("{name}.ch0"));
        let by_uuid = scans[i]["uuid"].as_str().unwrap();
        run_ok(
            "dmaplay",
            &[
                "export",
                "--quiet",
                "--scan",
                by_uuid,
                "--channel",
                "0",
                "--out",
                &out,
                &img,
            ],
        );
        let exported = std::fs::read(&out).unwrap();
        assert_eq!(
            exported.len() as u64,
            slots / 2 * PAYLOAD_BYTES,
            "{name} export"
        );
    }
    // Each scan starts its own card time: its anchor was taken when its
    // card started, after the scan before it started and before its own
    // table entry (RFC 3339 strings of one format sort as times).
    for i in 0..3 {
        let name = sizes[i].0;
        let index = &indexes[i];
        let ins = dmaplay_json(&["inspect", "--scan", name, "--index", index, &img]);
        let anchor = ins["time_base"]["anchor_datetime"]
            .as_str()
            .unwrap()
            .to_string();
        let start = scans[i]["start"].as_str().unwrap();
        assert!(
            anchor.as_str() <= start,
            "{name}: anchor {anchor} after its start {start}"
        );
        if i > 0 {
            let before = scans[i - 1]["start"].as_str().unwrap();
            assert!(
                before < anchor.as_str(),
                "{name}: anchor {anchor} is the scan before's ({before})"
            );
        }
    }
    // Without --scan: the newest, named on stderr.
    let out = run("dmaplay", &["inspect", &img]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reading scan \"gamma\" (3 of 3"),
        "{stderr}"
    );
    // An index read for another scan is refused (falls back to the headers).
    let out = run(
        "dmaplay",
        &[
            "verify",
            "--quiet",
            "--scan",
            "alpha",
            "--index",
            &indexes[1],
            &img,
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("it is the index of scan"));
    let out = run("dmaplay", &["verify", "--scan", "delta", &img]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such scan"));
}

#[test]
fn appending_is_refused_where_the_rules_say_so() {
    let s = Scratch::new("scansrule");
    let img = s.file("set.img");
    record_scan(&s, &img, "one", "1M", &[]);
    let refused = |args: &[&str], code: i32, needle: &str| {
        let out = run("dmarec", args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    };
    let idx = s.file("x.idx");
    let base = [
        "record",
        "--quiet",
        "--target",
        &img,
        "--index",
        &idx,
        "--payload-size",
        PAYLOAD,
        "--channels",
        "2",
        "--size",
        "1M",
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        a
    };
    refused(
        &with(&["--scan", "one"]),
        1,
        "a scan named \"one\" exists already",
    );
    refused(&with(&[]), 1, "pass --scan NAME");
    refused(
        &with(&["--scan", "01234567-89ab-4def-8f00-1032547698ba"]),
        2,
        "a UUID cannot be a scan name",
    );
    let mut other_payload = with(&["--scan", "two"]);
    other_payload[7] = "128K";
    refused(&other_payload, 1, "payload size is 65536 bytes");
    let mut other_channels = with(&["--scan", "two"]);
    other_channels[9] = "3";
    refused(&other_channels, 1, "differ from the set's");
    assert_eq!(
        list(&img)["scans"].as_array().unwrap().len(),
        1,
        "nothing appended"
    );
    // --force erases every scan: a new set.
    let set = list(&img)["set_uuid"].clone();
    run_ok("dmarec", &with(&["--force", "--scan", "fresh"]));
    let after = list(&img);
    assert_ne!(after["set_uuid"], set);
    assert_eq!(after["scans"].as_array().unwrap().len(), 1);
    assert_eq!(after["scans"][0]["name"], "fresh");
}

/// Spawns a slow recording of scan `name` and SIGKILLs it once its index
/// lists `entries` slots (so slots are durable and more are in flight).
fn record_and_kill(img: &str, idx: &str, name: &str, entries: u64) {
    let mut child = Command::new(bin("dmarec"))
        .args([
            "record",
            "--quiet",
            "--target",
            img,
            "--payload-size",
            PAYLOAD,
            "--channels",
            "2",
            "--buffers",
            "32",
            "--rate",
            "20",
            "--index",
            idx,
            "--scan",
            name,
            "--index-sync-ms",
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let indexed = || std::fs::metadata(idx).map_or(0, |m| m.len().saturating_sub(8192) / 64);
    // Bounded: 20 MB/s fills `entries` slots of 64 KiB in well under a second.
    for _ in 0..600 {
        if indexed() >= entries {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert!(
        indexed() >= entries,
        "the recorder never indexed {entries} slots"
    );
}

#[test]
fn sigkill_during_scan_2_leaves_scan_1_intact_and_scan_2_recoverable() {
    let s = Scratch::new("scanskill");
    let img = s.file("set.img");
    // The sample rate (from --rate) is part of the set's channel table.
    let idx1 = record_scan(&s, &img, "first", "3M", &["--rate", "20"]);
    let before = list(&img);
    let scan1_bytes = region_bytes(&std::fs::read(&img).unwrap(), &before, 1);
    let idx2 = s.file("second.idx");
    record_and_kill(&img, &idx2, "second", 40);
    let crashed = list(&img);
    assert_eq!(crashed["scans"][1]["state"], "live", "{crashed}");
    assert_eq!(crashed["scans"][1]["slot_count"], serde_json::Value::Null);
    assert_eq!(
        crashed["scans"][0], before["scans"][0],
        "scan 1's entry changed"
    );
    let re = s.file("second.re.idx");
    let report = dmaplay_json(&[
        "reindex", "--force", "--scan", "second", "--index", &re, &img,
    ]);
    let recovered = report["slots_indexed"].as_u64().unwrap();
    let image = std::fs::read(&img).unwrap();
    let checked = check_recording(std::slice::from_ref(&image), &std::fs::read(&re).unwrap());
    assert_eq!(checked.slots, recovered);
    // What the killed recorder had indexed is all recovered.
    let had = std::fs::read(&idx2).unwrap().len().saturating_sub(8192) / 64;
    assert!(
        recovered as usize >= had,
        "reindex found {recovered}, the index had {had}"
    );
    assert_eq!(
        region_bytes(&image, &crashed, 1),
        scan1_bytes,
        "scan 1's slots changed"
    );
    verify(&img, "second", Some(&s.file("second.re.idx")));
    // Scan 3 seals scan 2 after its last slot and starts behind it.
    let idx3 = record_scan(&s, &img, "third", "2M", &["--rate", "20"]);
    let after = list(&img);
    let (second, third) = (&after["scans"][1], &after["scans"][2]);
    assert_eq!(second["state"], "interrupted");
    let sealed = second["slot_count"].as_u64().unwrap();
    assert!(
        sealed >= recovered,
        "sealed at {sealed}, {recovered} slots recovered"
    );
    assert_eq!(
        third["first_slot"].as_u64().unwrap(),
        second["first_slot"].as_u64().unwrap() + sealed
    );
    let image = std::fs::read(&img).unwrap();
    assert_eq!(
        region_bytes(&image, &after, 1),
        scan1_bytes,
        "scan 1's slots changed"
    );
    verify(&img, "first", Some(&idx1));
    let v2 = verify(&img, "second", Some(&s.file("second.re.idx")));
    assert_eq!(v2["slots_checked"], recovered, "scan 3 overwrote scan 2");
    verify(&img, "third", Some(&idx3));
    check_recording(std::slice::from_ref(&image), &std::fs::read(&idx3).unwrap());
}

#[test]
fn a_ring_scan_wraps_in_the_rest_of_the_set_and_must_be_last() {
    let s = Scratch::new("scansring");
    let img = s.file("set.img");
    let idx1 = record_scan(&s, &img, "before", "20M", &[]);
    let scan1 = region_bytes(&std::fs::read(&img).unwrap(), &list(&img), 1);
    // 60 MiB into the rest (about 40 MiB): the ring wraps.
    let idx2 = record_scan(&s, &img, "ring", "60M", &["--on-full", "wrap"]);
    let listed = list(&img);
    let ring = &listed["scans"][1];
    assert_eq!(
        (ring["ring"].as_bool(), ring["state"].as_str()),
        (Some(true), Some("complete"))
    );
    let capacity = listed["capacity_slots"].as_u64().unwrap();
    let region = capacity - ring["first_slot"].as_u64().unwrap();
    assert_eq!(ring["slot_count"], 960, "60 MiB of 64 KiB slots");
    assert!(960 > region, "the ring must wrap for this test");
    assert_eq!(listed["slots_left"], 0);
    let image = std::fs::read(&img).unwrap();
    assert_eq!(
        region_bytes(&image, &listed, 1),
        scan1,
        "the ring overwrote scan 1"
    );
    let checked = check_recording(std::slice::from_ref(&image), &std::fs::read(&idx2).unwrap());
    assert_eq!(checked.slots, region, "the live window is the region");
    let inspect = dmaplay_json(&["inspect", "--scan", "ring", "--index", &idx2, &img]);
    assert_eq!(inspect["ring_wraps"], 960 / region);
    verify(&img, "ring", Some(&idx2));
    verify(&img, "before", Some(&idx1));
    let out = try_scan(&s, &img, "after", Some("1M"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("is a ring scan, which owns the rest of the set"));
}

#[test]
fn a_full_set_stops_with_status_3_and_refuses_another_scan() {
    let s = Scratch::new("scansfull");
    let img = s.file("set.img");
    record_scan(&s, &img, "half", "30M", &[]);
    // No --size: the scan fills the rest of the set and stops, status 3.
    let out = try_scan(&s, &img, "rest", None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = list(&img);
    let capacity = listed["capacity_slots"].as_u64().unwrap();
    assert_eq!(listed["scans"][1]["slot_count"], capacity - 480);
    assert_eq!(listed["scans"][1]["state"], "complete");
    assert_eq!(listed["slots_left"], 0);
    verify(&img, "rest", Some(&s.file("rest.idx")));
    let out = try_scan(&s, &img, "more", Some("1M"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no slot left ({capacity} of {capacity} slots used by 2 scans, 0 bytes left)"
        )),
        "{stderr}"
    );
    assert!(
        !s.join("more.idx").exists(),
        "a refused start leaves no index"
    );
    assert_eq!(list(&img)["scans"].as_array().unwrap().len(), 2);
}

#[test]
fn scans_on_two_unequal_members_given_in_any_order() {
    let s = Scratch::new("scans2m");
    let (a, b) = (s.file("a.img"), s.file("b.img"));
    // Member a exists (16 MiB, blank), member b is created (24 MiB).
    std::fs::File::create(&a)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let common = [
        "record",
        "--quiet",
        "--payload-size",
        PAYLOAD,
        "--channels",
        "2",
    ];
    let idx1 = s.file("one.idx");
    let mut args = common.to_vec();
    args.extend(["--target", &a, "--target", &b, "--file-size", "24M"]);
    args.extend(["--index", &idx1, "--scan", "one", "--size", "3M"]);
    run_ok("dmarec", &args);
    // The members in the other order: the recorder puts them in member order.
    let idx2 = s.file("two.idx");
    let mut args = common.to_vec();
    args.extend(["--target", &b, "--target", &a]);
    args.extend(["--index", &idx2, "--scan", "two", "--size", "5M"]);
    run_ok("dmarec", &args);
    let images = [std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()];
    assert_eq!(
        check_recording(&images, &std::fs::read(&idx1).unwrap()).slots,
        48
    );
    assert_eq!(
        check_recording(&images, &std::fs::read(&idx2).unwrap()).slots,
        80
    );
    let listed = dmaplay_json(&["list", &b, &a]);
    assert_eq!(listed["scans"][1]["first_slot"], 48);
    let v = dmaplay_json(&[
        "verify",
        "--pattern",
        "--scan",
        "two",
        "--index",
        &idx2,
        &b,
        &a,
    ]);
    assert_eq!(
        (
            v["slots_checked"].as_u64(),
            v["bad"].as_array().map(Vec::len)
        ),
        (Some(80), Some(0))
    );
}

#[test]
fn a_torn_scan_table_update_falls_back_to_the_previous_generation() {
    let s = Scratch::new("scanstorn");
    let img = s.file("set.img");
    record_scan(&s, &img, "one", "1M", &[]);
    let idx2 = record_scan(&s, &img, "two", "1M", &[]);
    let intact = list(&img);
    let generation = intact["table_generation"].as_u64().unwrap();
    assert_eq!(generation, 4, "two scans: start and end each");
    // Tear the newest update: its copy's entry page keeps stale bytes.
    let copy_at = 4096 + (generation % 2) * 262144;
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    f.seek(SeekFrom::Start(copy_at + 4096 + 256 + 24)).unwrap();
    f.write_all(&[0xAA; 8]).unwrap();
    drop(f);
    let torn = list(&img);
    assert_eq!(torn["table_generation"], generation - 1);
    let damaged = torn["damaged_table_copies"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{torn}");
    assert!(
        damaged[0].as_str().unwrap().contains("CRC mismatch"),
        "{torn}"
    );
    // Generation 3: scan two started, its end not yet written.
    assert_eq!(torn["scans"][0], intact["scans"][0]);
    assert_eq!(torn["scans"][1]["state"], "live");
    // Its slots are all there: read by their index and by their headers.
    verify(&img, "two", Some(&idx2));
    assert_eq!(verify(&img, "two", None)["slots_checked"], 16);
    let out = run("dmaplay", &["verify", "--quiet", "--scan", "two", &img]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("all slots good"));
}
