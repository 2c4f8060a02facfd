//! Hostile input: every dmaplay command on random, corrupted and truncated
//! targets and indexes gives an error or a report, never a panic or a hang.
//! (The format parsers themselves are fuzzed by formats/examples/fuzz.rs.)

use e2e::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs dmaplay with a time limit; returns (exit code, stderr).
fn dmaplay_bounded(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(bin("dmaplay"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dmaplay {} hung", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn every_command(
    s: &Scratch,
    target: &str,
    index: Option<&str>,
) -> Vec<(String, Option<i32>, String)> {
    let out_raw = s.file("exp.raw");
    let out_sigmf = s.file("exp");
    let out_replay = s.file("replay.bin");
    let reidx = s.file("re.idx");
    let mut runs: Vec<Vec<&str>> = vec![
        vec!["inspect", "--json"],
        vec!["inspect", "--slots"],
        vec!["verify", "--quiet", "--pattern"],
        vec!["export", "--quiet", "--force", "--all", "--out", &out_raw],
        vec![
            "export",
            "--quiet",
            "--force",
            "--channel",
            "0",
            "--format",
            "sigmf",
            "--gaps",
            "zero",
            "--out",
            &out_sigmf,
        ],
        vec![
            "replay",
            "--quiet",
            "--force",
            "--speed",
            "max",
            "--out",
            &out_replay,
        ],
        vec!["reindex", "--quiet", "--force", "--index", &reidx],
    ];
    let mut results = Vec::new();
    for args in runs.iter_mut() {
        let reindex = args[0] == "reindex";
        if let (Some(i), false) = (index, reindex) {
            args.extend(["--index", i]);
        }
        args.push(target);
        let (code, stderr) = dmaplay_bounded(args);
        results.push((args.join(" "), code, stderr));
    }
    results
}

fn assert_no_crash(what: &str, results: &[(String, Option<i32>, String)]) {
    for (cmd, code, stderr) in results {
        match code {
            Some(0) | Some(3) => {}
            // 2: a usage error, also a selection with no slots (a
            // truncated copy may hold none): said, never a panic.
            Some(1) | Some(2) => assert!(
                stderr.contains("error"),
                "{what}: `dmaplay {cmd}` failed without saying why: {stderr}"
            ),
            other => {
                panic!("{what}: `dmaplay {cmd}` ended with {other:?} (panic or signal):\n{stderr}")
            }
        }
        assert!(
            !stderr.contains("panicked"),
            "{what}: `dmaplay {cmd}` panicked:\n{stderr}"
        );
    }
}

#[test]
fn every_command_survives_corrupted_truncated_and_random_inputs() {
    let mut rng = Rng::seeded("hostile", Some(0x5eed_cafe));
    let s = Scratch::new("hostile");
    let (img, idx) = record_to_file(
        &s,
        "r",
        "8M",
        "4M",
        &[
            "--payload-size",
            "16K",
            "--sim-drop-every",
            "7",
            "--channels",
            "3",
        ],
    );
    let good = std::fs::read(&img).unwrap();
    let good_idx = std::fs::read(&idx).unwrap();
    let variants = std::env::var("DMAREC_HOSTILE_VARIANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let (mut ok, mut errors, mut reports) = (0, 0, 0);
    for v in 0..variants {
        let mut bytes = good.clone();
        let what = match v % 6 {
            0 => {
                for _ in 0..1 + rng.index(16) {
                    let i = rng.index(8192);
                    bytes[i] ^= 1 << rng.index(8);
                }
                "bit flips in the superblock area"
            }
            1 => {
                for _ in 0..1 + rng.index(200) {
                    let i = rng.index(bytes.len());
                    bytes[i] = rng.next_u64() as u8;
                }
                "random bytes anywhere"
            }
            2 => {
                bytes.truncate(rng.index(bytes.len()));
                "truncated"
            }
            3 => {
                bytes = (0..(1 + rng.index(4)) << 20)
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                "random garbage"
            }
            4 => {
                // Slot headers damaged with valid-looking CRCs recomputed.
                let slot = 4096 + (16 << 10);
                for _ in 0..1 + rng.index(8) {
                    let at = (1 << 20) + rng.index(100) * slot;
                    let f = 16 + rng.index(72);
                    bytes[at + f] = rng.next_u64() as u8;
                    let crc = formats::crc32(&bytes[at..at + 4092]);
                    bytes[at + 4092..at + 4096].copy_from_slice(&crc.to_le_bytes());
                }
                "slot header fields changed, CRC repaired"
            }
            _ => {
                bytes.clear();
                "empty file"
            }
        };
        let t = s.file("v.img");
        std::fs::write(&t, &bytes).unwrap();
        // With the good index, no index, and a damaged index.
        let mut bad_idx = good_idx.clone();
        for _ in 0..1 + rng.index(20) {
            let i = rng.index(bad_idx.len());
            bad_idx[i] = rng.next_u64() as u8;
        }
        bad_idx.truncate(rng.index(bad_idx.len() + 1).max(bad_idx.len() / 2));
        let bi = s.file("bad.idx");
        std::fs::write(&bi, &bad_idx).unwrap();
        for (label, index) in [
            ("good index", Some(idx.as_str())),
            ("no index", None),
            ("damaged index", Some(bi.as_str())),
        ] {
            let results = every_command(&s, &t, index);
            let name = format!("variant {v} ({what}), {label}");
            assert_no_crash(&name, &results);
            for (_, code, _) in &results {
                match code {
                    Some(0) => ok += 1,
                    Some(3) => reports += 1,
                    _ => errors += 1,
                }
            }
        }
    }
    eprintln!("hostile: {variants} variants x 3 index cases x 7 commands: {ok} ok, {reports} reported bad slots, {errors} clear errors, 0 crashes");
    // Random garbage as the index itself, and an index of another recording.
    let (_other, other_idx) = record_to_file(&s, "o", "4M", "1M", &["--payload-size", "16K"]);
    let garbage = s.file("garbage.idx");
    std::fs::write(
        &garbage,
        (0..100_000)
            .map(|_| rng.next_u64() as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    for i in [&garbage, &other_idx] {
        let results = every_command(&s, &img, Some(i));
        assert_no_crash(&format!("index {i}"), &results);
        // The recording itself is intact: read commands succeed by scanning.
        let verify = &results[2];
        assert_eq!(
            verify.1,
            Some(0),
            "verify with a foreign index must fall back to scanning: {}",
            verify.2
        );
        assert!(
            verify.2.contains("scan"),
            "fallback must be announced: {}",
            verify.2
        );
    }
}
