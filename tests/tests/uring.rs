//! dmarec's io_uring options (recorder/src/uring.rs): SQPOLL and a
//! registered ring fd record every slot (and SQPOLL's kernel thread is
//! really there); IOPOLL is refused, naming the fix, on targets that cannot
//! be polled (a file, a loop device). IOPOLL on NVMe poll queues is tested
//! in the QEMU guest (tests/qemu/disks/75-iopoll.sh).

use e2e::*;
use std::process::{Command, Stdio};

/// Records 16 MiB of 64 KiB slots to a new file with `options`; checks
/// every slot and returns the summary.
fn record_checked(s: &Scratch, name: &str, options: &[&str]) -> serde_json::Value {
    let mut extra = vec!["--payload-size", "64K", "--buffers", "32"];
    extra.extend_from_slice(options);
    let (img, idx, sum) = record_summary(s, name, "24M", "16M", &extra);
    assert_eq!(sum["slots"], 256, "{options:?}: {sum}");
    let c = check_recording(
        &[std::fs::read(&img).unwrap()],
        &std::fs::read(&idx).unwrap(),
    );
    assert_eq!((c.slots, c.lost_buffers), (256, 0), "{options:?}");
    sum
}

#[test]
fn sqpoll_and_a_registered_ring_fd_record_every_slot() {
    let s = Scratch::new("uring-opts");
    let plain = record_checked(&s, "plain", &[]);
    assert!(
        !plain["io_uring_setup"].as_str().unwrap().contains("sqpoll"),
        "{plain}"
    );
    let sqpoll = record_checked(&s, "sqpoll", &["--sqpoll", "--sqpoll-idle-ms", "50"]);
    assert_eq!(sqpoll["io_uring_setup"], "sqpoll+single_issuer", "{sqpoll}");
    let fd = record_checked(&s, "fd", &["--register-ring-fd"]);
    assert_eq!(
        fd["io_uring_setup"], "single_issuer+defer_taskrun, registered ring fd",
        "{fd}"
    );
    let both = record_checked(&s, "both", &["--sqpoll", "--register-ring-fd"]);
    assert_eq!(
        both["io_uring_setup"], "sqpoll+single_issuer, registered ring fd",
        "{both}"
    );
}

/// Thread names of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn sqpoll_runs_a_kernel_thread_in_the_recorders_process() {
    let s = Scratch::new("uring-sqthread");
    let (img, idx) = (s.file("r.img"), s.file("r.idx"));
    // A slow card for a few seconds: the polling thread lives while the ring does.
    let child = Command::new(bin("dmarec"))
        .args([
            "record",
            "--quiet",
            "--target",
            &img,
            "--file-size",
            "24M",
            "--index",
            &idx,
            "--payload-size",
            "64K",
            "--buffers",
            "32",
            "--rate",
            "4",
            "--duration",
            "4",
            "--sqpoll",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut seen = Vec::new();
    // Bounded: 40 looks, 0.1 s apart.
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        seen = thread_names(pid);
        if seen.iter().any(|n| n.starts_with("iou-sqp")) {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        seen.iter().any(|n| n.starts_with("iou-sqp")),
        "no iou-sqp thread in dmarec's process: {seen:?}"
    );
}

/// dmarec must refuse `--iopoll` on `target` (exit 1), naming why and the
/// fix, before writing anything.
fn iopoll_refused(s: &Scratch, target: &str, extra: &[&str], why: &str) {
    let idx = s.file("iopoll.idx");
    let mut args = vec![
        "record",
        "--quiet",
        "--target",
        target,
        "--index",
        &idx,
        "--payload-size",
        "64K",
        "--buffers",
        "16",
        "--size",
        "1M",
        "--iopoll",
    ];
    args.extend_from_slice(extra);
    let out = run("dmarec", &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(why), "message lacks {why:?}: {err}");
    assert!(err.contains("record without --iopoll"), "{err}");
    assert!(
        !std::path::Path::new(&idx).exists(),
        "an index was left behind"
    );
}

#[test]
fn iopoll_is_refused_on_a_file() {
    let s = Scratch::new("uring-iopoll-file");
    let img = s.file("r.img");
    iopoll_refused(&s, &img, &["--file-size", "8M"], "is a regular file");
    assert!(
        !std::path::Path::new(&img).exists(),
        "the new file was left behind"
    );
}

#[test]
fn iopoll_is_refused_on_a_loop_device_naming_poll_queues() {
    if !require_root("iopoll_is_refused_on_a_loop_device_naming_poll_queues") {
        return;
    }
    let s = Scratch::new("uring-iopoll-loop");
    let dev = LoopDevice::new(&s.path, "disk", 16 << 20).unwrap();
    iopoll_refused(&s, &dev.device, &[], "has no poll queues");
    // Nothing written: the device reads back as the zeroes it was made of.
    assert!(
        dev.read_backing().iter().all(|&b| b == 0),
        "the loop device was written"
    );
}
