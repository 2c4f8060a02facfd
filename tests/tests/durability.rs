//! Durability reaches the devices: every sync round flushes the targets'
//! write caches before the index entries of their slots are written, and
//! the index's fdatasync reaches the index's own device. Counted by the
//! kernel (/proc/diskstats flush requests), not by the recorder. The order
//! itself is unit-tested in recorder/src/journal.rs and checked at every
//! flush of a power cut in tests/qemu (dm-log-writes).

use e2e::*;
use std::process::Command;

/// Flush requests the kernel completed for `device` (/dev/loopN).
fn flushes(device: &str) -> u64 {
    let name = device.trim_start_matches("/dev/");
    let stats = std::fs::read_to_string("/proc/diskstats").unwrap();
    let line = stats
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(name))
        .unwrap_or_else(|| panic!("{name} not in /proc/diskstats"));
    // Field 19 (1-based): flush requests completed (Linux 5.5+).
    line.split_whitespace()
        .nth(18)
        .unwrap_or_else(|| panic!("no flush counter in {line:?}"))
        .parse()
        .unwrap()
}

/// An ext4 filesystem on `device`, mounted in `dir`; unmounted on drop.
struct Mounted(std::path::PathBuf);
impl Mounted {
    fn ext4(device: &str, dir: std::path::PathBuf) -> Mounted {
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F", device])
            .status()
            .unwrap();
        assert!(ok.success(), "mkfs.ext4 {device}");
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .arg(device)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount {device}");
        Mounted(dir)
    }
}
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn every_sync_round_flushes_the_targets_and_the_index_device() {
    if !require_root("every_sync_round_flushes_the_targets_and_the_index_device") {
        return;
    }
    let s = Scratch::new("durable");
    let target = LoopDevice::new(&s.path, "target", 256 << 20).unwrap();
    let index_dev = LoopDevice::new(&s.path, "indexfs", 64 << 20).unwrap();
    let fs = Mounted::ext4(&index_dev.device, s.join("mnt"));
    let index = fs.0.join("rec.idx");
    let (target_before, index_before) = (flushes(&target.device), flushes(&index_dev.device));
    // 16384 slots of 4 KiB and no timed round (1 h interval): rounds start
    // because sealed index batches fill half the pool (4096 entries), so
    // there are at least 4 of them whatever the machine's speed.
    let out = run_ok(
        "dmarec",
        &[
            "record",
            "--quiet",
            "--json",
            "--target",
            &target.device,
            "--index",
            index.to_str().unwrap(),
            "--payload-size",
            "4K",
            "--size",
            "64M",
            "--index-sync-ms",
            "3600000",
        ],
    );
    let sum = json(&out);
    let (target_after, index_after) = (flushes(&target.device), flushes(&index_dev.device));
    let rounds = sum["index_sync_rounds"].as_u64().unwrap();
    let target_flushes = sum["target_flushes"].as_u64().unwrap();
    eprintln!(
        "{rounds} rounds, {target_flushes} target flushes; kernel: target {} flushes, index device {}",
        target_after - target_before,
        index_after - index_before
    );
    assert_eq!(sum["slots"], 16384);
    assert_eq!(sum["index_entries_durable"], 16384);
    assert!(rounds >= 4, "{rounds} sync rounds for 16384 slots");
    assert!(
        target_flushes >= rounds - 1 && target_flushes <= rounds,
        "{target_flushes} target flushes in {rounds} rounds"
    );
    assert!(
        target_after - target_before >= target_flushes,
        "the target's device saw {} flushes, the recorder issued {target_flushes}",
        target_after - target_before
    );
    assert!(
        index_after - index_before >= rounds,
        "the index's device saw {} flushes for {rounds} fdatasyncs",
        index_after - index_before
    );
    let index_bytes = std::fs::read(&index).unwrap();
    drop(fs);
    let c = check_recording(&[target.read_backing()], &index_bytes);
    assert_eq!((c.slots, c.first_slot, c.last_slot), (16384, 0, 16383));
}
