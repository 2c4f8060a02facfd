//! SigMF exports and time addressing end to end: a recording from the
//! simulated card at a set rate (its clock is its sample counter) with
//! lost buffers, exported by dmaplay and read back by the `sigmf` package
//! from PyPI (tests/sigmf_check.py, in the venv scripts/install-deps.sh
//! makes), which validates each export and checks that every capture's
//! datetime agrees with the sample counts to within one sample period.

use e2e::{dmaplay_json, json, read_json, record_interleaved, record_to_file, run, Scratch};
use serde_json::Value;
use std::path::PathBuf;

/// The venv's python (DMAREC_SIGMF_VENV or .venv-sigmf at the repository).
fn python() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::env::var_os("DMAREC_SIGMF_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv-sigmf"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/install-deps.sh (it installs the sigmf package from PyPI into {})",
        py.display(),
        venv.display()
    );
    py
}

/// Runs tests/sigmf_check.py on `paths`; its JSON report.
fn sigmf_check(paths: &[String]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sigmf_check.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .args(paths)
        .output()
        .expect("running sigmf_check.py");
    assert!(
        out.status.success(),
        "the sigmf reader refused {paths:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout))
}

/// 8 MB in 64 KiB buffers from 2 channels at 40 MB/s, every 5th buffer lost.
fn recording(s: &Scratch) -> (String, String) {
    record_to_file(
        s,
        "rec",
        "16M",
        "8M",
        &[
            "--rate",
            "40MB/s",
            "--channels",
            "2",
            "--sim-drop-every",
            "5",
            "--payload-size",
            "64K",
        ],
    )
}

#[test]
fn sigmf_exports_pass_the_reference_reader_with_times_on_the_card_clock() {
    let s = Scratch::new("sigmf");
    let (img, idx) = recording(&s);
    let ins = dmaplay_json(&["inspect", &img, "--index", &idx]);
    assert_eq!(ins["time_base"]["clock"], "sample_counter", "{ins}");
    assert_eq!(ins["time_base"]["anchor_stored"], true);
    let slots = dmaplay_json(&[
        "inspect",
        &img,
        "--index",
        &idx,
        "--slots",
        "--channel",
        "1",
    ]);
    let first_ch1 = &slots["slot_list"][0];

    // One channel, gaps marked, with the global extras.
    let base = s.file("ch1");
    let r = dmaplay_json(&[
        "export",
        &img,
        "--index",
        &idx,
        "--channel",
        "1",
        "--format",
        "sigmf",
        "--out",
        &base,
        "--meta",
        "core:author=Jane Doe",
        "--meta",
        "hw=sim card",
        "--frequency",
        "915e6",
        "--frequency",
        "0=1G",
        "--sha512",
    ]);
    let meta_path = format!("{base}.sigmf-meta");
    let checked = &sigmf_check(std::slice::from_ref(&meta_path))[&meta_path];
    let ch = &r["channels"][0];
    assert_eq!(checked["samples"], ch["samples"]);
    let gaps = ch["gaps"].as_array().unwrap();
    assert!(!gaps.is_empty(), "every 5th buffer was lost: {r}");
    assert_eq!(checked["annotations"].as_u64(), Some(gaps.len() as u64));
    // A new capture after every gap but one after the channel's last slot.
    let inner = gaps
        .iter()
        .filter(|g| !g["before_slot_seq"].is_null())
        .count();
    assert_eq!(checked["captures"].as_u64(), Some(inner as u64 + 1));
    let meta = read_json(&meta_path);
    assert_eq!(meta["global"]["core:author"], "Jane Doe");
    assert_eq!(meta["global"]["core:hw"], "sim card");
    assert_eq!(meta["global"]["core:sha512"].as_str().unwrap().len(), 128);
    for c in meta["captures"].as_array().unwrap() {
        assert_eq!(c["core:frequency"], 915e6, "channel 1 takes the default");
    }
    // The first capture starts at the first slot's anchored card time.
    assert_eq!(meta["captures"][0]["core:datetime"], first_ch1["datetime"]);

    // Every channel, zero filler: one collection of both.
    let all = s.file("all");
    let r = dmaplay_json(&[
        "export", &img, "--index", &idx, "--all", "--format", "sigmf", "--out", &all, "--gaps",
        "zero",
    ]);
    let collection = format!("{all}.sigmf-collection");
    assert_eq!(r["collection_path"], collection.as_str());
    let checked = &sigmf_check(std::slice::from_ref(&collection))[&collection]["streams"];
    for c in r["channels"].as_array().unwrap() {
        let name = format!("all-ch{}", c["channel"]);
        assert_eq!(checked[&name]["samples"], c["samples"], "{name}");
        // Filler covers every lost sample: nothing is missing in time.
        assert_eq!(
            checked[&name]["lost"].as_u64(),
            c["gaps"].as_array().map(|g| {
                g.iter()
                    .map(|g| g["filler_samples"].as_u64().unwrap())
                    .sum::<u64>()
            })
        );
    }

    // Archives: NAME.sigmf only, and a collection naming them.
    let ar = s.file("ar");
    let r = dmaplay_json(&[
        "export",
        &img,
        "--index",
        &idx,
        "--all",
        "--format",
        "sigmf",
        "--out",
        &ar,
        "--archive",
    ]);
    let archives: Vec<String> = r["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["archive_path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        archives,
        [format!("{ar}-ch0.sigmf"), format!("{ar}-ch1.sigmf")]
    );
    assert!(!PathBuf::from(format!("{ar}-ch0.sigmf-data")).exists());
    let mut paths = archives.clone();
    paths.push(format!("{ar}.sigmf-collection"));
    let checked = sigmf_check(&paths);
    assert_eq!(
        checked[&archives[1]]["samples"],
        r["channels"][1]["samples"]
    );
}

/// Every time form on the command line; empty selections and bad forms
/// are usage errors (exit 2) that say what exists, and write nothing.
#[test]
fn time_addressing_and_empty_selections_end_to_end() {
    let s = Scratch::new("sigmf-time");
    let (img, idx) = recording(&s);
    let slots = dmaplay_json(&["inspect", &img, "--index", &idx, "--slots"]);
    let rows = slots["slot_list"].as_array().unwrap();
    let at_10 = rows[10]["datetime"].as_str().unwrap().to_string();
    let card_20 = rows[20]["card_seq"].as_u64().unwrap();
    let out = s.file("r.raw");
    let card_to = format!("card:{card_20}");
    let r = dmaplay_json(&[
        "export", &img, "--index", &idx, "--all", "--out", &out, "--from", &at_10, "--to", &card_to,
    ]);
    assert_eq!(
        (r["first_slot_seq"].as_u64(), r["last_slot_seq"].as_u64()),
        (Some(10), Some(20))
    );
    let r = dmaplay_json(&[
        "export", &img, "--index", &idx, "--all", "--out", &out, "--force", "--from", "slot:3",
        "--to", "end",
    ]);
    let last = rows.last().unwrap()["slot_seq"].as_u64();
    assert_eq!(
        (r["first_slot_seq"].as_u64(), r["last_slot_seq"].as_u64()),
        (Some(3), last)
    );

    let refused = |args: &[&str], says: &[&str]| {
        let out = run("dmaplay", args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for s in says {
            assert!(err.contains(s), "{args:?}: {err}");
        }
    };
    let empty = s.file("empty");
    let holds = "the recording holds slot:0..slot:";
    refused(
        &[
            "export",
            &img,
            "--index",
            &idx,
            "--channel",
            "0",
            "--out",
            &empty,
            "--from",
            "3",
            "--to",
            "1",
        ],
        &["selects no slots", holds],
    );
    refused(
        &[
            "export",
            &img,
            "--index",
            &idx,
            "--channel",
            "0",
            "--format",
            "sigmf",
            "--out",
            &empty,
            "--from",
            "1h",
        ],
        &["selects no slots", holds],
    );
    refused(
        &[
            "replay",
            &img,
            "--index",
            &idx,
            "--from",
            "card:100000",
            "--out",
            &empty,
        ],
        &["selects no slots", holds],
    );
    refused(
        &[
            "export",
            &img,
            "--index",
            &idx,
            "--channel",
            "1",
            "--out",
            &empty,
            "--from",
            "card:0",
            "--to",
            "card:0",
        ],
        &["selects no slots of channel 1", holds],
    );
    refused(
        &[
            "inspect", &img, "--index", &idx, "--slots", "--from", "tomorrow",
        ],
        &["--from", "accepted: an RFC 3339 instant"],
    );
    refused(
        &[
            "export",
            &img,
            "--channel",
            "0",
            "--out",
            &empty,
            "--to",
            "-10m",
        ],
        &["--to", "end-10m"],
    );
    refused(
        &[
            "export",
            &img,
            "--channel",
            "0",
            "--out",
            &empty,
            "--meta",
            "core:datatype=cf32_le",
        ],
        &["--meta", "core:author"],
    );
    refused(
        &[
            "export",
            &img,
            "--channel",
            "0",
            "--out",
            &empty,
            "--sha512",
        ],
        &["need --format sigmf"],
    );
    let left: Vec<_> = std::fs::read_dir(&s.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("empty"))
        .collect();
    assert!(left.is_empty(), "refused runs wrote {left:?}");
}

/// An interleaved recording (3 channels in every 64 KiB buffer: 5461
/// frames) exported per channel: the reference reader accepts every
/// de-interleaved channel, with 5461 samples per buffer kept or lost and
/// capture times on the card clock.
#[test]
fn deinterleaved_sigmf_exports_pass_the_reference_reader() {
    let s = Scratch::new("sigmf-interleaved");
    let (img, idx) = record_interleaved(&s, "4M", &["--rate", "40"]);
    let base = s.file("il");
    let report = dmaplay_json(&[
        "export", &img, "--index", &idx, "--all", "--format", "sigmf", "--gaps", "zero", "--out",
        &base,
    ]);
    let metas: Vec<String> = (0..3).map(|c| format!("{base}-ch{c}.sigmf-meta")).collect();
    let checked = sigmf_check(&metas);
    for (c, meta) in metas.iter().enumerate() {
        let samples = checked[meta]["samples"].as_u64().unwrap();
        assert_eq!(
            samples % 5461,
            0,
            "channel {c}: whole buffers of 5461 samples"
        );
        assert_eq!(samples, report["channels"][c]["samples"].as_u64().unwrap());
        assert!(
            checked[meta]["annotations"].as_u64().unwrap() > 0,
            "gaps marked"
        );
    }
}
