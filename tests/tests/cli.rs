//! The command lines never panic: both binaries run with generated
//! arguments (flags from their real option sets, values from a vocabulary of
//! numbers, NaN, infinities, negatives, huge values, units and garbage) and
//! must end with an exit status from their documented set, never a signal
//! or a Rust panic. Seeded (`DMAREC_TEST_SEED` replays a run).

use e2e::*;
use std::process::Command;

/// Values a flag may get: valid ones, edge cases and nonsense.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "-5",
    "2.5",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "18446744073709551616",
    "4096",
    "4K",
    "64K",
    "512K",
    "1.5G",
    "3K",
    "64M",
    "128M",
    "10GB",
    "500MB/s",
    "800",
    "0.2",
    "90s",
    "10m",
    "1h30m",
    "0s",
    "250ms",
    "auto",
    "x0",
    "xnan",
    "interleaved",
    "",
    " ",
    "abc",
    "--",
    "0..3",
    "3..1",
    "..2",
    "5..",
    "x..y",
    "\u{7f}",
    "ÿ",
];

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.index(from.len())]
}

/// Runs `bin` with `args`; the exit status must be in `allowed`. Returns it.
fn check(bin_name: &str, args: &[String], allowed: &[i32]) -> i32 {
    let out = Command::new(bin(bin_name))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        code.is_some_and(|c| allowed.contains(&c)) && !stderr.contains("panicked"),
        "{bin_name} {args:?}: status {:?}, stderr: {stderr}",
        out.status
    );
    code.unwrap()
}

#[test]
fn dmarec_never_panics_on_generated_arguments() {
    let flags = [
        "--size",
        "--duration",
        "--rate",
        "--channels",
        "--payload-size",
        "--buffers",
        "--queue-depth",
        "--file-size",
        "--status-interval",
        "--index-sync-ms",
        "--sim-drop-every",
        "--on-full",
        "--memory",
        "--target-sync",
        "--channel-layout",
    ];
    let s = Scratch::new("cli-dmarec");
    let mut rng = Rng::seeded("dmarec_never_panics_on_generated_arguments", None);
    let mut outcomes = std::collections::BTreeMap::new();
    for case in 0..80 {
        let target = s.file(&format!("t{case}.img"));
        let index = s.file(&format!("t{case}.idx"));
        let mut args: Vec<String> = [
            "record", "--quiet", "--force", "--target", &target, "--index", &index,
        ]
        .map(String::from)
        .to_vec();
        let mut given = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let flag = pick(&mut rng, &flags);
            // Half the values are valid for the flag, so runs get past clap.
            let value = match rng.below(2) {
                0 => pick(&mut rng, valid_dmarec(flag)),
                _ => pick(&mut rng, VALUES),
            };
            if given.contains(&flag) || !bounded(flag, value) {
                continue;
            }
            given.push(flag);
            args.extend([flag.to_string(), value.to_string()]);
        }
        // Bounded whatever was generated: a small new file, a short run, a
        // small ring.
        for (flag, value) in [
            ("--file-size", "16M"),
            ("--duration", "0.3"),
            ("--buffers", "16"),
        ] {
            if !given.contains(&flag) {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        // 0 done, 1 refused, 2 usage, 3 target full, 4 I/O error.
        let code = check("dmarec", &args, &[0, 1, 2, 3, 4]);
        *outcomes.entry(code).or_insert(0) += 1;
        let _ = std::fs::remove_file(&target);
        let _ = std::fs::remove_file(&index);
    }
    eprintln!("dmarec exit statuses (status: runs): {outcomes:?}");
}

/// Values a dmaplay `flag` accepts.
fn valid_dmaplay(flag: &str) -> &'static [&'static str] {
    match flag {
        "--channel" => &["0", "3"],
        "--from" | "--to" => &[
            "0",
            "0.01",
            "1",
            "90s",
            "end-1s",
            "card:3",
            "slot:2",
            "2026-11-30T08:55:16Z",
        ],
        "--seq" | "--range" => &["0..3", "5..", "..2", "7"],
        "--threads" => &["1", "0"],
        "--format" => &["raw", "sigmf"],
        "--gaps" => &["mark", "zero", "error"],
        "--speed" => &["max", "x1000", "x2"],
        "--check-newest" => &["1", "64"],
        _ => &[""],
    }
}

/// Values `flag` accepts that keep a run short and small.
fn valid_dmarec(flag: &str) -> &'static [&'static str] {
    match flag {
        "--size" | "--file-size" => &["4M", "1.5M", "8MB", "16777216"],
        "--duration" | "--status-interval" => &["0.2", "250ms", "0.1s"],
        "--rate" => &["50", "20MB/s", "1.5G/s", "1e3"],
        "--channels" => &["1", "3", "32"],
        "--payload-size" => &["4K", "64K", "128KiB"],
        "--buffers" => &["16", "8"],
        "--queue-depth" => &["1", "4", "8"],
        "--index-sync-ms" => &["1", "50", "3600000"],
        "--sim-drop-every" => &["0", "3"],
        "--on-full" => &["stop", "wrap"],
        "--memory" => &["auto", "userptr"],
        "--target-sync" => &["flush", "dsync"],
        "--channel-layout" => &["round-robin", "interleaved"],
        _ => &[""],
    }
}

/// Whether `flag value` keeps a run short and small (long durations, big
/// files and rings are left out; invalid values stay in).
fn bounded(flag: &str, value: &str) -> bool {
    let size = |v: &str| recorder_size(v);
    match flag {
        // Only short or invalid durations: "64M" is 64 months to humantime.
        "--duration" | "--status-interval" => match value.parse::<f64>() {
            Ok(seconds) => !seconds.is_finite() || seconds < 1.0,
            Err(_) => !value.chars().any(|c| c.is_ascii_digit()) || matches!(value, "250ms" | "0s"),
        },
        "--file-size" | "--size" => size(value).is_none_or(|b| b <= 64 << 20),
        // auto locks a 512 MiB ring: seconds per run on a busy machine.
        "--buffers" | "--queue-depth" => {
            value != "auto" && value.parse::<u64>().map_or(true, |n| n <= 64)
        }
        "--payload-size" => size(value).is_none_or(|b| b <= 1 << 20),
        _ => true,
    }
}

/// A size as dmarec reads the plain forms the vocabulary has (K, M, G).
fn recorder_size(text: &str) -> Option<u64> {
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let n: f64 = number.parse().ok()?;
    let mult = match unit {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1048576.0,
        "G" | "GB" => 1e9,
        _ => return None,
    };
    Some((n * mult) as u64)
}

#[test]
fn dmaplay_never_panics_on_generated_arguments() {
    let s = Scratch::new("cli-dmaplay");
    let (img, idx) = record_to_file(&s, "rec", "32M", "8M", &["--payload-size", "64K"]);
    let commands: &[(&str, &[&str])] = &[
        (
            "inspect",
            &["--slots", "--channel", "--from", "--to", "--seq"],
        ),
        ("verify", &["--range", "--pattern", "--threads"]),
        (
            "export",
            &[
                "--channel",
                "--from",
                "--to",
                "--seq",
                "--format",
                "--gaps",
                "--out",
            ],
        ),
        (
            "replay",
            &["--channel", "--from", "--to", "--speed", "--out"],
        ),
        ("reindex", &["--check-newest", "--index"]),
    ];
    let mut rng = Rng::seeded("dmaplay_never_panics_on_generated_arguments", None);
    let mut outcomes = std::collections::BTreeMap::new();
    for case in 0..150 {
        let (command, flags) = commands[rng.index(commands.len())];
        let mut args: Vec<String> = vec![command.into(), "--quiet".into(), img.clone()];
        if rng.below(3) > 0 && command != "reindex" {
            args.extend(["--index".to_string(), idx.clone()]);
        }
        for _ in 0..1 + rng.below(3) {
            let flag = pick(&mut rng, flags);
            args.push(flag.to_string());
            if !matches!(flag, "--slots" | "--pattern") {
                let value = match flag {
                    // Outputs stay in the scratch directory.
                    "--out" | "--index" => s.file(&format!("out{case}")),
                    _ if rng.below(2) == 0 => pick(&mut rng, valid_dmaplay(flag)).to_string(),
                    _ => pick(&mut rng, VALUES).to_string(),
                };
                args.push(value);
            }
        }
        if command == "export" || command == "replay" {
            args.push("--force".into());
        }
        // 0 success, 1 error, 2 usage, 3 verify found bad slots.
        let code = check("dmaplay", &args, &[0, 1, 2, 3]);
        *outcomes.entry(code).or_insert(0) += 1;
    }
    eprintln!("dmaplay exit statuses (status: runs): {outcomes:?}");
}

/// A small round-robin recording of 4 channels (64 KiB payloads).
fn small_recording(s: &Scratch) -> (String, String) {
    record_to_file(
        s,
        "rec",
        "16M",
        "2M",
        &["--payload-size", "64K", "--buffers", "16"],
    )
}

#[test]
fn every_dmaplay_subcommand_help_has_examples() {
    for sub in ["inspect", "verify", "export", "replay", "reindex"] {
        let help = run_ok("dmaplay", &[sub, "--help"]);
        let examples = help
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("dmaplay {sub} --help has no Examples:\n{help}"));
        let lines: Vec<&str> = examples.lines().take_while(|l| !l.is_empty()).collect();
        assert!(
            lines.len() >= 2 && lines.iter().all(|l| l.contains(&format!("dmaplay {sub} "))),
            "dmaplay {sub} --help: examples must be runnable lines of `dmaplay {sub}`: {lines:?}"
        );
    }
}

#[test]
fn dmaplay_numeric_flags_refuse_nonsense_with_status_2_naming_the_flag() {
    let s = Scratch::new("cli-numeric");
    let (img, idx) = small_recording(&s);
    let out = s.file("out");
    let nonsense = [
        "nan",
        "NaN",
        "inf",
        "-inf",
        "-1",
        "1e400",
        "18446744073709551616",
        "",
        "abc",
    ];
    let cases: &[(&str, &str, &[&str])] = &[
        ("inspect", "--channel", &["--slots"]),
        ("export", "--channel", &["--out", &out]),
        ("replay", "--channel", &["--out", &out]),
        ("verify", "--threads", &[]),
        ("reindex", "--check-newest", &["--index", &out]),
        ("inspect", "--from", &["--slots"]),
        ("export", "--to", &["--all", "--out", &out]),
        ("replay", "--from", &["--out", &out]),
        ("inspect", "--seq", &["--slots"]),
        ("verify", "--range", &[]),
    ];
    let mut checked = 0;
    for (sub, flag, extra) in cases {
        // Out of range for the flag itself, and for this 4-channel recording.
        let specific: &[&str] = match *flag {
            "--channel" => &["32", "4", "65536"],
            "--threads" => &["257", "100000"],
            "--seq" | "--range" => &["3..1", "-1..2", "1..nan"],
            _ => &[],
        };
        for value in nonsense.iter().chain(specific) {
            // --flag=value: "-1" after a bare --flag would be an option.
            let given = format!("{flag}={value}");
            let mut args = vec![*sub, "--quiet", &img, &given];
            args.extend_from_slice(extra);
            if *sub != "reindex" {
                args.extend(["--index", &idx]);
            }
            let o = run("dmaplay", &args);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "dmaplay {args:?}: {stderr}");
            assert!(
                stderr.contains(flag),
                "dmaplay {args:?}: message must name {flag}: {stderr}"
            );
            checked += 1;
        }
    }
    for speed in ["x0", "x-1", "xnan", "xinf", "x1e400", "fast", "0"] {
        let given = format!("--speed={speed}");
        let args = ["replay", "--quiet", &img, &given, "--out", &out];
        let o = run("dmaplay", &args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "dmaplay {args:?}: {stderr}");
        assert!(stderr.contains("--speed"), "{args:?}: {stderr}");
        checked += 1;
    }
    eprintln!("{checked} nonsense values refused with status 2");
}

#[test]
fn replay_refuses_a_terminal_as_output_with_status_2() {
    let s = Scratch::new("cli-tty");
    let (img, idx) = small_recording(&s);
    let (master, slave, slave_path) = pty();
    // Drain the terminal, so a replay that wrongly streams to it ends
    // (and fails the status check) instead of blocking on a full pty.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut &master, &mut std::io::sink());
    });
    // stdout is the terminal.
    let o = Command::new(bin("dmaplay"))
        .args(["replay", "--quiet", "--speed", "max", &img, "--index", &idx])
        .stdout(slave.try_clone().unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("stdout is a terminal") && stderr.contains("redirect"),
        "{stderr}"
    );
    // --out names the terminal.
    let o = run(
        "dmaplay",
        &[
            "replay",
            "--quiet",
            "--speed",
            "max",
            "--out",
            &slave_path,
            &img,
            "--index",
            &idx,
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--out {slave_path} is a terminal")),
        "{stderr}"
    );
}

#[test]
fn replay_json_goes_where_its_help_says() {
    let s = Scratch::new("cli-replay-json");
    let (img, idx) = small_recording(&s);
    let help = run_ok("dmaplay", &["replay", "--help"]);
    assert!(
        help.contains("--json  Print the report as JSON: on stdout with --out, on stderr when the stream goes to stdout")
            || help.contains("Print the report as JSON: on stdout with --out, on stderr when the stream goes to stdout"),
        "{help}"
    );
    // With --out: the report is stdout.
    let stdout = run_ok(
        "dmaplay",
        &[
            "replay",
            "--json",
            "--speed",
            "max",
            "--out",
            &s.file("r.raw"),
            &img,
            "--index",
            &idx,
        ],
    );
    let report = json(&stdout);
    let bytes = report["bytes"].as_u64().unwrap();
    assert_eq!(std::fs::metadata(s.join("r.raw")).unwrap().len(), bytes);
    // Without --out: stdout is the stream, exactly; the report is stderr.
    let o = run(
        "dmaplay",
        &["replay", "--json", "--speed", "max", &img, "--index", &idx],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        o.stdout.len() as u64,
        bytes,
        "stdout carries only the stream"
    );
    let report = json(&String::from_utf8_lossy(&o.stderr));
    assert_eq!(report["bytes"].as_u64(), Some(bytes));
}
