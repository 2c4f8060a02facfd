//! dmarec record on real block devices (loop devices) and files: every
//! slot read back and checked, striping over unequal devices, ring wrap,
//! injected drops as gaps, and each refusal of an unsafe target.

use e2e::*;
use std::process::Command;

fn record(args: &[&str]) -> serde_json::Value {
    record_exit(args, 0)
}

/// Records and requires exit status `code` (3 = target full).
fn record_exit(args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["record", "--quiet", "--json"];
    all.extend_from_slice(args);
    let out = run("dmarec", &all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "dmarec {}: {}",
        all.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout))
}

fn record_fails(args: &[&str]) -> (i32, String) {
    let mut all = vec!["record", "--quiet"];
    all.extend_from_slice(args);
    let out = run("dmarec", &all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn records_to_a_loop_device_and_every_slot_checks() {
    if !require_root("records_to_a_loop_device_and_every_slot_checks") {
        return;
    }
    let s = Scratch::new("loop");
    let dev = LoopDevice::new(&s.path, "disk", 256 << 20).unwrap();
    let idx = s.file("rec.idx");
    let sum = record(&[
        "--target",
        &dev.device,
        "--index",
        &idx,
        "--size",
        "100M",
        "--channels",
        "3",
    ]);
    assert_eq!(sum["stop_reason"], "size_reached");
    assert_eq!(sum["slots"], 200);
    // Every write was checked to read the card's buffer in place.
    assert_eq!(sum["writes_from_card_buffers"], 200);
    assert_eq!(sum["index_entries_durable"], 200);
    let c = check_recording(&[dev.read_backing()], &std::fs::read(&idx).unwrap());
    assert_eq!(
        (c.slots, c.first_slot, c.last_slot, c.lost_buffers),
        (200, 0, 199, 0)
    );
}

#[test]
fn records_to_a_new_file_until_full() {
    let s = Scratch::new("file");
    let img = s.file("rec.img");
    let idx = s.file("rec.idx");
    let sum = record_exit(
        &[
            "--target",
            &img,
            "--file-size",
            "40M",
            "--index",
            &idx,
            "--payload-size",
            "64K",
        ],
        3,
    );
    assert_eq!(sum["stop_reason"], "target_full");
    let cap = sum["capacity_slots"].as_u64().unwrap();
    assert_eq!(cap, (40 * 1024 - 1024 - 4) / 68); // (size - 1 MiB - backup) / slot, in KiB
    assert_eq!(sum["slots"], cap);
    let c = check_recording(
        &[std::fs::read(&img).unwrap()],
        &std::fs::read(&idx).unwrap(),
    );
    assert_eq!(c.slots, cap);
    // Exit status 3 = target full, documented in --help.
    let out = run(
        "dmarec",
        &[
            "record",
            "--quiet",
            "--target",
            &s.file("b.img"),
            "--file-size",
            "8M",
            "--index",
            &s.file("b.idx"),
        ],
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn stripes_over_two_unequal_loop_devices() {
    if !require_root("stripes_over_two_unequal_loop_devices") {
        return;
    }
    let s = Scratch::new("stripe");
    let small = LoopDevice::new(&s.path, "small", 48 << 20).unwrap();
    let big = LoopDevice::new(&s.path, "big", 96 << 20).unwrap();
    let idx = s.file("rec.idx");
    let sum = record_exit(
        &[
            "--target",
            &small.device,
            "--target",
            &big.device,
            "--index",
            &idx,
        ],
        3,
    );
    assert_eq!(sum["stop_reason"], "target_full");
    let per: Vec<u64> = sum["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slot_count"].as_u64().unwrap())
        .collect();
    assert!(per[1] > per[0]);
    assert_eq!(
        sum["slots"].as_u64().unwrap(),
        per[0] + per[1],
        "every slot of both members used"
    );
    let c = check_recording(
        &[small.read_backing(), big.read_backing()],
        &std::fs::read(&idx).unwrap(),
    );
    assert_eq!(c.slots, per[0] + per[1]);
}

#[test]
fn ring_mode_wraps_and_keeps_the_newest_slots() {
    let s = Scratch::new("ring");
    let img = s.file("ring.img");
    let idx = s.file("ring.idx");
    let sum = record(&[
        "--target",
        &img,
        "--file-size",
        "24M",
        "--index",
        &idx,
        "--on-full",
        "wrap",
        "--size",
        "100M",
        "--payload-size",
        "256K",
    ]);
    assert_eq!(sum["stop_reason"], "size_reached");
    let cap = sum["capacity_slots"].as_u64().unwrap();
    assert_eq!(sum["slots"], 400);
    assert_eq!(sum["ring_laps"].as_u64().unwrap(), 399 / cap);
    let c = check_recording(
        &[std::fs::read(&img).unwrap()],
        &std::fs::read(&idx).unwrap(),
    );
    assert_eq!(c.slots, cap, "exactly one lap of live slots checked");
    assert_eq!(c.last_slot, 399);
}

#[test]
fn injected_drops_appear_as_gaps() {
    let s = Scratch::new("gaps");
    let img = s.file("g.img");
    let idx = s.file("g.idx");
    let sum = record(&[
        "--target",
        &img,
        "--file-size",
        "64M",
        "--index",
        &idx,
        "--size",
        "20M",
        "--payload-size",
        "64K",
        "--sim-drop-every",
        "5",
    ]);
    // Every 5th card buffer is lost: card_seq 4, 9, 14, ... never recorded.
    let slots = sum["slots"].as_u64().unwrap();
    assert_eq!(slots, 320);
    let c = check_recording(
        &[std::fs::read(&img).unwrap()],
        &std::fs::read(&idx).unwrap(),
    );
    assert_eq!(c.lost_buffers, sum["buffers_lost"].as_u64().unwrap());
    // One lost buffer before every fourth recorded one but the first
    // (card_seq 4, 9, ...; the loss after the last recorded slot precedes nothing).
    assert_eq!(c.lost_buffers, slots / 4 - 1);
    assert_eq!(sum["slots_with_gap"].as_u64().unwrap(), c.lost_buffers);
}

#[test]
fn refuses_unsafe_targets_with_clear_errors() {
    if !require_root("refuses_unsafe_targets_with_clear_errors") {
        return;
    }
    let s = Scratch::new("refuse");
    let dev = LoopDevice::new(&s.path, "fs", 64 << 20).unwrap();
    let idx = s.file("x.idx");
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", &dev.device])
        .status()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(mkfs.success());
    // A filesystem signature: refused without --force, nothing written.
    let before = dev.read_backing();
    let (code, err) = record_fails(&["--target", &dev.device, "--index", &idx]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("holds an ext2/3/4 filesystem") && err.contains("--force"),
        "{err}"
    );
    assert!(dev.read_backing() == before, "refused target was modified");
    assert!(!std::path::Path::new(&idx).exists() || std::fs::metadata(&idx).unwrap().len() == 0);
    let _ = std::fs::remove_file(&idx);
    // Mounted: refused even with --force.
    let mnt = s.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    assert!(Command::new("mount")
        .arg(&dev.device)
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    let (code, err) = record_fails(&["--target", &dev.device, "--index", &idx, "--force"]);
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    wait_unclaimed(&dev.device);
    assert_eq!(code, 1, "{err}");
    // Refused for being mounted (found in /proc/self/mountinfo), not for the
    // exclusive open's EBUSY, which a mount also causes.
    let mounted_on = format!(
        "target {0}: {0} is mounted on {1}; unmount it first",
        dev.device,
        std::fs::canonicalize(&mnt).unwrap().display()
    );
    assert!(err.contains(&mounted_on) && !err.contains("busy"), "{err}");
    // An existing recording: refused without --force, accepted with it.
    let _ = std::fs::remove_file(&idx);
    record(&[
        "--target",
        &dev.device,
        "--index",
        &idx,
        "--force",
        "--size",
        "4M",
    ]);
    let (code, err) = record_fails(&["--target", &dev.device, "--index", &s.file("y.idx")]);
    assert_eq!(code, 1);
    assert!(err.contains("holds a dmarec recording"), "{err}");
    // An existing index is never overwritten without --force.
    let (code, err) = record_fails(&[
        "--target",
        &s.file("new.img"),
        "--file-size",
        "8M",
        "--index",
        &idx,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert!(
        !s.join("new.img").exists(),
        "the target file a refused start created was left behind"
    );
    // Sizes and alignments that do not fit, named with their numbers.
    let (code, err) = record_fails(&[
        "--target",
        &dev.device,
        "--index",
        &s.file("z.idx"),
        "--payload-size",
        "3000",
        "--force",
    ]);
    assert_eq!(code, 2, "a usage error");
    assert!(
        err.contains("--payload-size") && err.contains("3000") && err.contains("power of two"),
        "{err}"
    );
    let tiny = LoopDevice::new(&s.path, "tiny", 1 << 20).unwrap();
    let (code, err) = record_fails(&[
        "--target",
        &tiny.device,
        "--index",
        &s.file("t.idx"),
        "--force",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("too small for one slot") && err.contains("1048576 bytes"),
        "{err}"
    );
    let (code, err) = record_fails(&[
        "--target",
        &dev.device,
        "--target",
        &dev.device,
        "--index",
        &s.file("d.idx"),
        "--force",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("busy") || err.contains("given twice"), "{err}");
}

#[test]
fn too_little_locked_memory_is_refused_with_the_fix_and_leaves_nothing_behind() {
    if !require_root("too_little_locked_memory_is_refused_with_the_fix_and_leaves_nothing_behind") {
        return;
    }
    let s = Scratch::new("memlock");
    std::fs::set_permissions(&s.path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (img, idx) = (s.file("r.img"), s.file("r.idx"));
    // An unprivileged user (no CAP_IPC_LOCK) with a 1 MiB locked-memory limit.
    let as_nobody = |extra: &[&str]| {
        let mut c = Command::new("prlimit");
        c.args([
            "--memlock=1048576:1048576",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(bin("dmarec"))
        .args([
            "record",
            "--quiet",
            "--target",
            &img,
            "--file-size",
            "16M",
            "--index",
            &idx,
            "--size",
            "1M",
        ])
        .args(extra);
        c.output().unwrap()
    };
    let out = as_nobody(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RLIMIT_MEMLOCK")
            && err.contains("1048576 bytes")
            && err.contains("ulimit -l"),
        "{err}"
    );
    assert!(
        !std::path::Path::new(&img).exists() && !std::path::Path::new(&idx).exists(),
        "a refused start left files behind"
    );
    // A ring that fits the limit records.
    let out = as_nobody(&[
        "--buffers",
        "2",
        "--queue-depth",
        "1",
        "--payload-size",
        "64K",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = check_recording(
        &[std::fs::read(&img).unwrap()],
        &std::fs::read(&idx).unwrap(),
    );
    assert_eq!(c.slots, 16);
}

#[test]
fn refuses_a_disk_whose_partition_is_mounted_and_active_swap() {
    if !require_root("refuses_a_disk_whose_partition_is_mounted_and_active_swap") {
        return;
    }
    let s = Scratch::new("part");
    let disk = LoopDevice::new(&s.path, "disk", 128 << 20).unwrap();
    // One partition, added by the kernel (no udev here: make its node if needed).
    let sfdisk = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo ',64M,L' | sfdisk -q {} && partx -a {}",
            disk.device, disk.device
        ))
        .status()
        .unwrap();
    assert!(sfdisk.success(), "sfdisk/partx (package fdisk)");
    let name = disk.device.trim_start_matches("/dev/").to_string();
    let part = format!("/dev/{name}p1");
    if !std::path::Path::new(&part).exists() {
        let dev = std::fs::read_to_string(format!("/sys/block/{name}/{name}p1/dev")).unwrap();
        let (ma, mi) = dev.trim().split_once(':').unwrap();
        assert!(Command::new("mknod")
            .args([&part, "b", ma, mi])
            .status()
            .unwrap()
            .success());
    }
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F", &part])
        .status()
        .unwrap()
        .success());
    let mnt = s.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    assert!(Command::new("mount")
        .arg(&part)
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    // The whole disk is refused (even with --force) because its partition is mounted.
    let (code, err) = record_fails(&[
        "--target",
        &disk.device,
        "--index",
        &s.file("a.idx"),
        "--force",
        "--size",
        "4M",
    ]);
    let _ = Command::new("umount").arg(&mnt).status();
    let _ = Command::new("partx").args(["-d", &disk.device]).status();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{part} is mounted on")), "{err}");
    // Active swap is refused too.
    let swap = LoopDevice::new(&s.path, "swap", 32 << 20).unwrap();
    assert!(Command::new("mkswap")
        .args(["-q", &swap.device])
        .status()
        .unwrap()
        .success());
    if Command::new("swapon")
        .arg(&swap.device)
        .status()
        .unwrap()
        .success()
    {
        let (code, err) = record_fails(&[
            "--target",
            &swap.device,
            "--index",
            &s.file("b.idx"),
            "--force",
            "--size",
            "1M",
        ]);
        let _ = Command::new("swapoff").arg(&swap.device).status();
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("is active swap") && err.contains("swapoff"),
            "{err}"
        );
    } else {
        eprintln!("swapon not permitted here: the swap refusal is not exercised");
    }
}
