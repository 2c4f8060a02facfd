//! Failing devices and overruns: dmarec reports the device and offset,
//! keeps everything before the failure consistent and indexed, exits 4;
//! a card faster than the disk produces counted gaps, never silent loss,
//! with memory bounded by the ring.

use e2e::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn summary_of(out: &std::process::Output) -> serde_json::Value {
    json(&String::from_utf8_lossy(&out.stdout))
}

/// A tmpfs of `size` mounted in `dir`; unmounted on drop.
struct Tmpfs(std::path::PathBuf);
impl Tmpfs {
    fn new(dir: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs");
        Tmpfs(dir)
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn eio_from_a_full_backing_store_stops_cleanly_with_exit_4() {
    if !require_root("eio_from_a_full_backing_store_stops_cleanly_with_exit_4") {
        return;
    }
    let s = Scratch::new("eio");
    let fs = Tmpfs::new(s.join("small"), "40M");
    // 200 MiB device on a 40 MiB tmpfs: writes fail for real once it fills.
    let dev = LoopDevice::new(&fs.0, "disk", 200 << 20).unwrap();
    let idx = s.file("rec.idx");
    let out = run(
        "dmarec",
        &[
            "record",
            "--quiet",
            "--json",
            "--force",
            "--target",
            &dev.device,
            "--index",
            &idx,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = summary_of(&out);
    assert_eq!(sum["stop_reason"], "io_error");
    let err = sum["error"].as_str().unwrap();
    assert!(
        err.contains(&format!("write failed on {}", dev.device))
            && err.contains("at offset")
            && err.contains("(slot "),
        "{err}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("write failed on"), "{stderr}");
    // Everything before the failure is indexed and checks.
    let slots = sum["slots"].as_u64().unwrap();
    assert!(slots > 10, "some slots before the tmpfs filled");
    assert_eq!(sum["index_entries_durable"].as_u64().unwrap(), slots);
    // The slot that straddles the point where the tmpfs filled up was cut
    // short, and the loop driver completes a short write as a success: the
    // recorder read it back and left it out (with the fix removed, the check
    // below fails with a CRC mismatch in that slot).
    let dropped = sum["slots_dropped_after_error"].as_u64().unwrap();
    if dropped > 0 {
        assert!(err.contains("read back after the error"), "{err}");
    }
    let image = std::fs::read(&dev.backing).unwrap();
    let c = check_recording(&[image], &std::fs::read(&idx).unwrap());
    assert_eq!(c.slots, slots);
    eprintln!("eio: {slots} slots indexed, {dropped} dropped after the read-back");
}

#[test]
fn device_set_read_only_mid_recording_stops_with_exit_4() {
    if !require_root("device_set_read_only_mid_recording_stops_with_exit_4") {
        return;
    }
    let s = Scratch::new("ro");
    let dev = LoopDevice::new(&s.path, "disk", 1 << 30).unwrap();
    let idx = s.file("rec.idx");
    let child = spawn_record(&["--rate", "100", "--target", &dev.device, "--index", &idx]);
    wait_until_indexed(&idx);
    assert!(Command::new("blockdev")
        .args(["--setro", &dev.device])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let _ = Command::new("blockdev")
        .args(["--setrw", &dev.device])
        .status();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = summary_of(&out);
    let err = sum["error"].as_str().unwrap();
    assert!(
        err.contains(&dev.device) && err.contains("at offset"),
        "{err}"
    );
    let slots = sum["slots"].as_u64().unwrap();
    assert_eq!(sum["index_entries_durable"].as_u64().unwrap(), slots);
    let c = check_recording(&[dev.read_backing()], &std::fs::read(&idx).unwrap());
    assert_eq!(c.slots, slots);
}

#[test]
fn detach_while_recording_is_deferred_and_the_recording_completes() {
    if !require_root("detach_while_recording_is_deferred_and_the_recording_completes") {
        return;
    }
    let s = Scratch::new("detach");
    let dev = LoopDevice::new(&s.path, "disk", 256 << 20).unwrap();
    let idx = s.file("rec.idx");
    let child = spawn_record(&["--rate", "100", "--target", &dev.device, "--index", &idx]);
    wait_until_indexed(&idx);
    // The kernel only marks an open loop device for autoclear.
    let _ = Command::new("losetup").args(["-d", &dev.device]).status();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "runs to target full");
    let sum = summary_of(&out);
    let c = check_recording(
        &[std::fs::read(&dev.backing).unwrap()],
        &std::fs::read(&idx).unwrap(),
    );
    assert_eq!(c.slots, sum["slots"].as_u64().unwrap());
}

#[test]
fn overruns_become_counted_gaps_and_memory_stays_bounded() {
    if !require_root("overruns_become_counted_gaps_and_memory_stays_bounded") {
        return;
    }
    let s = Scratch::new("overrun");
    let dev = LoopDevice::new(&s.path, "disk", 1 << 30).unwrap();
    let idx = s.file("rec.idx");
    // The disk takes 20 MB/s, the card delivers 100 MB/s.
    let throttle = Throttle::new(&dev.device, 20 << 20).unwrap();
    let args = [
        "record",
        "--quiet",
        "--json",
        "--force",
        "--rate",
        "100",
        "--duration",
        "3",
        "--buffers",
        "16",
        "--queue-depth",
        "4",
        "--target",
        &dev.device,
        "--index",
        &idx,
    ];
    let mut child = throttle
        .command(&bin("dmarec"), &args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut max_rss_kib = 0u64;
    while child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let rss = st
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            max_rss_kib = max_rss_kib.max(rss.unwrap_or(0));
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dmarec exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = summary_of(&out);
    let lost = sum["buffers_lost"].as_u64().unwrap();
    let overruns = sum["card_overruns"].as_u64().unwrap();
    assert!(
        lost > 0,
        "a 100 MB/s card must overrun a 20 MB/s disk: {sum}"
    );
    // Every buffer the card produced is accounted for: recorded, lost before a
    // recorded slot (its gap count), or after the last one, or filled when
    // the recording stopped.
    let slots = sum["slots"].as_u64().unwrap();
    let filled = sum["card_filled"].as_u64().unwrap();
    let after = sum["buffers_lost_after_last_slot"].as_u64().unwrap();
    let unrecorded = sum["buffers_filled_not_recorded"].as_u64().unwrap();
    assert_eq!(overruns, lost + after, "{sum}");
    assert_eq!(filled, slots + unrecorded, "{sum}");
    assert_eq!(
        sum["last_card_seq"].as_u64().unwrap() + 1,
        slots + lost,
        "{sum}"
    );
    let c = check_recording(&[dev.read_backing()], &std::fs::read(&idx).unwrap());
    assert_eq!(c.slots, slots);
    assert_eq!(c.lost_buffers, lost, "gap counts on disk = losses reported");
    // 16 buffers of 516 KiB = 8 MiB of ring: RSS stays bounded by it plus code.
    assert!(
        max_rss_kib > 0 && max_rss_kib < 48 * 1024,
        "RSS {max_rss_kib} KiB"
    );
}

/// Starts `dmarec record --quiet --json --force ARGS` in the background,
/// its stdout (the JSON summary) and stderr piped.
fn spawn_record(args: &[&str]) -> std::process::Child {
    Command::new(bin("dmarec"))
        .args(["record", "--quiet", "--json", "--force"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the recorder has made its first index entries durable (its
/// first sync round), however long its start-up takes (locking a large
/// ring on a busy machine takes seconds); at most 60 s.
fn wait_until_indexed(index: &str) {
    let header = formats::index::INDEX_HEADER_BYTES as u64;
    for _ in 0..600 {
        if std::fs::metadata(index).is_ok_and(|m| m.len() > header) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{index}: no index entry after 60 s");
}

/// Waits for `child` at most `limit`, killing it (and failing) on timeout.
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("dmarec did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

const BAD_SLOT: u64 = 20;
const SLOT_BYTES: u64 = (512 + 4) << 10;

/// Records to a loop device over a fully allocated file on an otherwise full
/// tmpfs, with one page of slot 20 punched out at `hole_in_slot` bytes into
/// the slot: writing that page fails for real, everything else works.
fn record_over_hole(
    hole_in_slot: u64,
) -> (Scratch, Tmpfs, LoopDevice, String, std::process::Output) {
    let s = Scratch::new("hole");
    let fs = Tmpfs::new(s.join("t"), "80M");
    let backing = fs.0.join("disk");
    // A fully allocated 64 MiB device file...
    std::fs::write(&backing, vec![0u8; 64 << 20]).unwrap();
    // ...with one page of slot 20 punched out...
    let hole_at = (1 << 20) + BAD_SLOT * SLOT_BYTES + hole_in_slot;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&backing)
        .unwrap();
    use std::os::unix::io::AsRawFd;
    // SAFETY: fallocate on a file we own.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            hole_at as i64,
            4096,
        )
    };
    assert_eq!(rc, 0, "punch hole");
    drop(f);
    // ...on a tmpfs that is otherwise full: writing the hole fails, the rest works.
    let filler = std::fs::File::create(fs.0.join("filler")).unwrap();
    use std::io::Write;
    let mut w = std::io::BufWriter::new(filler);
    let chunk = vec![1u8; 1 << 20];
    while w.write_all(&chunk).and_then(|_| w.flush()).is_ok() {}
    drop(w);
    let dev = LoopDevice::attach(backing).unwrap();
    // No request merging: the block layer would merge slot 19's write with
    // slot 20's, and the loop driver completes the merged write, cut short at
    // the hole, as a success (lo_complete_rq: only short reads are errors).
    // These tests are about one slot's write failing or being cut short.
    let dev_name = dev.device.trim_start_matches("/dev/");
    std::fs::write(format!("/sys/block/{dev_name}/queue/nomerges"), "2").unwrap();
    let idx = s.file("rec.idx");
    let child = spawn_record(&[
        "--target",
        &dev.device,
        "--index",
        &idx,
        "--buffers",
        "16",
        "--queue-depth",
        "8",
    ]);
    let out = wait_bounded(child, Duration::from_secs(60));
    (s, fs, dev, idx, out)
}

#[test]
fn one_failing_slot_in_the_middle_ends_the_index_before_it_without_hanging() {
    if !require_root("one_failing_slot_in_the_middle_ends_the_index_before_it_without_hanging") {
        return;
    }
    // A hole at the slot's first page: the write fails outright.
    let (_s, _fs, dev, idx, out) = record_over_hole(0);
    let (bad_slot, slot_bytes) = (BAD_SLOT, SLOT_BYTES);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = summary_of(&out);
    let err = sum["error"].as_str().unwrap();
    assert!(err.contains(&format!("(slot {bad_slot},")), "{err}");
    assert!(
        err.contains(&format!("at offset {}", (1 << 20) + bad_slot * slot_bytes)),
        "{err}"
    );
    // The index ends right before the failed slot, and what it holds checks.
    assert_eq!(
        sum["index_entries_durable"].as_u64().unwrap(),
        bad_slot,
        "{sum}"
    );
    let image = dev.read_backing();
    let c = check_recording(&[image], &std::fs::read(&idx).unwrap());
    assert_eq!((c.slots, c.last_slot), (bad_slot, bad_slot - 1));
}

#[test]
fn a_short_write_reported_as_success_is_caught_by_verify() {
    if !require_root("a_short_write_reported_as_success_is_caught_by_verify") {
        return;
    }
    // A hole 64 KiB into the slot: the loop driver completes the short write
    // as a success, so the recorder cannot know; the payload CRC does.
    let (_s, _fs, dev, idx, out) = record_over_hole(64 << 10);
    assert_eq!(
        out.status.code(),
        Some(3),
        "recording runs to the end: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = run(
        "dmaplay",
        &["verify", "--quiet", "--json", "--index", &idx, &dev.device],
    );
    assert_eq!(
        v.status.code(),
        Some(3),
        "verify must report the damaged slot"
    );
    let report = json(&String::from_utf8_lossy(&v.stdout));
    let bad: Vec<u64> = report["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["slot_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(bad, vec![BAD_SLOT], "{report}");
    assert!(report["bad"][0].to_string().contains("CRC"), "{report}");
}
