//! dmaplay on recordings on block devices (loop devices): a stripe of two
//! unequal devices verified and damaged through the backing files, torn
//! newest slots found by reindex after the index is lost, a stripe of three
//! unequal devices filled to the end with every slot where an independent
//! model of the layout puts it, and every read command working on a
//! read-only device (dmaplay never opens a target for writing).

use e2e::*;
use formats::index::IndexView;
use formats::{Superblock, DATA_START_BYTES, SLOT_HEADER_BYTES};
use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A read-only loop device over an existing file; detached on drop.
struct ReadOnlyLoop {
    device: String,
}

impl ReadOnlyLoop {
    fn attach(backing: &PathBuf) -> ReadOnlyLoop {
        let out = Command::new("losetup")
            .args(["-f", "--show", "-r", "--direct-io=on"])
            .arg(backing)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ReadOnlyLoop {
            device: String::from_utf8(out.stdout).unwrap().trim().to_string(),
        }
    }
}

impl Drop for ReadOnlyLoop {
    fn drop(&mut self) {
        for _ in 0..50 {
            if Command::new("losetup")
                .arg("-d")
                .arg(&self.device)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn record(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["record", "--quiet", "--json", "--payload-size", "64K"];
    all.extend_from_slice(args);
    let out = run("dmarec", &all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "dmarec {}: {}",
        all.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout))
}

fn dmaplay(args: &[&str]) -> Output {
    run("dmaplay", args)
}

fn flip(path: &PathBuf, offset: u64, bit: u8) {
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

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn stripe_on_loop_devices_damage_and_torn_slots() {
    if !require_root("stripe_on_loop_devices_damage_and_torn_slots") {
        return;
    }
    let s = Scratch::new("dmaplay-loop");
    let d0 = LoopDevice::new(&s.path, "d0", 48 << 20).unwrap();
    let d1 = LoopDevice::new(&s.path, "d1", 80 << 20).unwrap();
    let idx = s.file("rec.idx");
    let sum = record(&[
        "--target",
        &d0.device,
        "--target",
        &d1.device,
        "--index",
        &idx,
        "--size",
        "90M",
        "--channels",
        "2",
        "--sim-drop-every",
        "11",
    ]);
    let es = index_entries(&idx);
    assert_eq!(es.len() as u64, sum["slots"].as_u64().unwrap());
    let out = dmaplay(&[
        "verify",
        &d1.device,
        &d0.device,
        "--index",
        &idx,
        "--pattern",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["slots_checked"].as_u64(), Some(es.len() as u64));
    assert_eq!(v["registered_buffers"], true);

    // Payload flips at chosen slots on both members, through the backing files.
    let backing = [d0.backing.clone(), d1.backing.clone()];
    let hit: BTreeSet<u64> = [3u64, 77, 200, es.len() as u64 / 2].into();
    for &seq in &hit {
        let e = es[seq as usize];
        flip(
            &backing[e.device_index as usize],
            e.device_offset_bytes + SLOT_HEADER_BYTES as u64 + 4096 + seq,
            (seq % 8) as u8,
        );
    }
    let out = dmaplay(&["verify", &d0.device, &d1.device, "--index", &idx, "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    let got: BTreeSet<u64> = v["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["slot_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, hit);
    for b in v["bad"].as_array().unwrap() {
        let e = es[b["slot_seq"].as_u64().unwrap() as usize];
        let dev = if e.device_index == 0 {
            &d0.device
        } else {
            &d1.device
        };
        assert_eq!(b["device"].as_str(), Some(dev.as_str()));
    }

    // A crash: the index is lost and the newest slot is torn.
    let newest = *es.last().unwrap();
    flip(
        &backing[newest.device_index as usize],
        newest.device_offset_bytes + SLOT_HEADER_BYTES as u64 + 100,
        1,
    );
    std::fs::remove_file(&idx).unwrap();
    let out = dmaplay(&["reindex", &d0.device, &d1.device, "--index", &idx, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let r = json(&String::from_utf8_lossy(&out.stdout));
    let torn: Vec<u64> = r["torn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slot_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(torn, vec![newest.slot_seq]);
    assert_eq!(r["slots_indexed"].as_u64(), Some(es.len() as u64 - 1));
    assert_eq!(
        index_entries(&idx),
        es[..es.len() - 1].to_vec(),
        "the rebuilt index is the recorder's without the torn slot"
    );
}

#[test]
fn every_read_command_works_on_a_read_only_device() {
    if !require_root("every_read_command_works_on_a_read_only_device") {
        return;
    }
    let s = Scratch::new("dmaplay-ro");
    let (img, idx) = (s.file("rec.img"), s.file("rec.idx"));
    record(&[
        "--target",
        &img,
        "--file-size",
        "32M",
        "--index",
        &idx,
        "--size",
        "10M",
        "--channels",
        "2",
    ]);
    let ro = ReadOnlyLoop::attach(&s.join("rec.img"));
    let dev = ro.device.as_str();
    let cmds: Vec<Vec<String>> = vec![
        vec!["inspect".into(), dev.into(), "--index".into(), idx.clone()],
        vec![
            "inspect".into(),
            dev.into(),
            "--slots".into(),
            "--seq".into(),
            "0..9".into(),
        ],
        vec![
            "verify".into(),
            dev.into(),
            "--index".into(),
            idx.clone(),
            "--pattern".into(),
        ],
        vec![
            "export".into(),
            dev.into(),
            "--index".into(),
            idx.clone(),
            "--all".into(),
            "--format".into(),
            "sigmf".into(),
            "--out".into(),
            s.file("x"),
        ],
        vec![
            "replay".into(),
            dev.into(),
            "--index".into(),
            idx.clone(),
            "--speed".into(),
            "max".into(),
            "--out".into(),
            s.file("stream"),
        ],
        vec![
            "reindex".into(),
            dev.into(),
            "--index".into(),
            s.file("re.idx"),
        ],
    ];
    for c in cmds {
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        let out = dmaplay(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "dmaplay {}: {}",
            args.join(" "),
            err(&out)
        );
    }
    assert!(std::fs::read(s.file("re.idx")).unwrap() == std::fs::read(&idx).unwrap());
    assert_eq!(std::fs::metadata(s.file("stream")).unwrap().len(), 10 << 20);
}

/// Where slot n must be, as (member, slot on the member), for members of
/// `slot_counts` slots, written without formats::Layout: round r puts slot r
/// of every member that has more than r slots, in member order.
fn layout_model(slot_counts: &[u64]) -> Vec<(usize, u64)> {
    let rounds = slot_counts.iter().copied().max().unwrap_or(0);
    let mut places = Vec::new();
    for round in 0..rounds {
        for (member, &count) in slot_counts.iter().enumerate() {
            if count > round {
                places.push((member, round));
            }
        }
    }
    places
}

#[test]
fn stripe_of_three_unequal_loop_devices_filled_to_the_end() {
    if !require_root("stripe_of_three_unequal_loop_devices_filled_to_the_end") {
        return;
    }
    let s = Scratch::new("dmaplay-stripe3");
    // Member order is not size order: the middle member fills first.
    let devs = [
        LoopDevice::new(&s.path, "d0", 40 << 20).unwrap(),
        LoopDevice::new(&s.path, "d1", 24 << 20).unwrap(),
        LoopDevice::new(&s.path, "d2", 56 << 20).unwrap(),
    ];
    let idx = s.file("rec.idx");
    let (d0, d1, d2) = (&devs[0].device, &devs[1].device, &devs[2].device);
    let mut args = vec!["record", "--quiet", "--json", "--payload-size", "64K"];
    args.extend(["--target", d0, "--target", d1, "--target", d2]);
    args.extend(["--index", &idx, "--size", "1G", "--channels", "3"]);
    let out = run("dmarec", &args);
    assert_eq!(out.status.code(), Some(3), "stops full: {}", err(&out));
    let index = std::fs::read(&idx).unwrap();
    let sb = IndexView::new(&index).unwrap().header.superblock;
    let counts: Vec<u64> = sb.members.iter().map(|m| m.slot_count).collect();
    for (count, d) in counts.iter().zip(&devs) {
        let size_bytes = std::fs::metadata(&d.backing).unwrap().len();
        assert_eq!(*count, Superblock::slots_for_device(size_bytes, 65536));
    }
    let places = layout_model(&counts);
    let es = index_entries(&idx);
    assert_eq!(es.len(), places.len(), "every slot of every member used");
    let slot_bytes = (SLOT_HEADER_BYTES + 65536) as u64;
    for (e, &(member, device_slot)) in es.iter().zip(&places) {
        assert_eq!(
            (e.device_index as usize, e.device_offset_bytes),
            (member, DATA_START_BYTES + device_slot * slot_bytes),
            "slot {} misplaced (slot counts {counts:?})",
            e.slot_seq
        );
    }
    // The bytes on the members: headers, CRCs and the card's pattern.
    let images: Vec<Vec<u8>> = devs.iter().map(LoopDevice::read_backing).collect();
    let c = check_recording(&images, &index);
    assert_eq!(c.slots, es.len() as u64);
    // dmaplay reads them back in any member order, with and without the index.
    let out = dmaplay(&["verify", d2, d0, d1, "--index", &idx, "--pattern", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["slots_checked"].as_u64(), Some(es.len() as u64));
    let re = s.file("re.idx");
    let out = dmaplay(&["reindex", d1, d2, d0, "--index", &re, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    assert!(
        std::fs::read(&re).unwrap() == index,
        "reindex differs from the recorder's index"
    );
}
