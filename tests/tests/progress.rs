//! Progress bars that tell the truth: on a terminal (stderr a pty), export's
//! bar counts toward the payload bytes of its selection and reindex's
//! toward the slot locations it scans, in slots; with stderr not a
//! terminal there is no bar at all.

use e2e::*;
use std::io::Read;
use std::process::{Command, Stdio};

/// Runs dmaplay with stderr on a fresh pty; returns (status, what the
/// terminal showed).
fn on_terminal(args: &[&str]) -> (Option<i32>, String) {
    let (master, slave, _) = pty();
    let reader = std::thread::spawn(move || {
        let mut shown = Vec::new();
        // Ends with EIO once every slave handle is closed.
        let _ = (&master).read_to_end(&mut shown);
        String::from_utf8_lossy(&shown).into_owned()
    });
    let status = Command::new(bin("dmaplay"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(slave)
        .status()
        .unwrap();
    (status.code(), reader.join().unwrap())
}

#[test]
fn export_and_reindex_bars_have_real_totals_and_units() {
    let s = Scratch::new("progress");
    let (img, idx) = record_to_file(
        &s,
        "p",
        "16M",
        "2M",
        &["--payload-size", "64K", "--buffers", "16"],
    );
    let capacity = json(&run_ok(
        "dmaplay",
        &["inspect", "--json", &img, "--index", &idx],
    ))["capacity_slots"]
        .as_u64()
        .unwrap();

    // 2 MiB recorded, all 4 channels exported: the selection is 2 MiB.
    let raw = s.file("x.raw");
    let (code, shown) = on_terminal(&["export", "--all", "--out", &raw, &img, "--index", &idx]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("export ["), "no export bar: {shown:?}");
    assert!(
        shown.contains("/2.00 MiB"),
        "export's total is the selection's bytes: {shown:?}"
    );
    // Just channel 1: a quarter of it.
    let (code, shown) = on_terminal(&[
        "export",
        "--channel",
        "1",
        "--force",
        "--out",
        &raw,
        &img,
        "--index",
        &idx,
    ]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("/512.00 KiB"),
        "one channel's bytes: {shown:?}"
    );

    let (code, shown) = on_terminal(&["reindex", "--index", &s.file("n.idx"), &img]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains(&format!("/{capacity} slots")),
        "reindex counts slot locations of the device ({capacity}): {shown:?}"
    );
    assert!(!shown.contains("{\""), "no raw map: {shown:?}");

    // Not a terminal: no bar.
    let out = run(
        "dmaplay",
        &[
            "export", "--all", "--force", "--out", &raw, &img, "--index", &idx,
        ],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("export ["));
}
