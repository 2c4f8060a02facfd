//! docs/JSON.md and the real `--json` outputs have the same fields with the
//! same types: a field added, removed or retyped on either side fails here.

use e2e::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// The `| field | type | meaning |` table after `<!-- fields: NAME -->`.
fn documented(name: &str) -> BTreeMap<String, String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/JSON.md")).unwrap();
    let marker = format!("<!-- fields: {name} -->");
    let table = doc
        .split(&marker)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/JSON.md has no {marker}"));
    table
        .lines()
        .skip(3) // marker line rest, header, separator
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            (
                cells[0].trim_start_matches("| ").to_string(),
                cells[1].replace("\\|", "|"),
            )
        })
        .collect()
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of `object` is documented with a type that admits its
/// value, and every documented field is there.
fn check(name: &str, object: &Value) {
    let doc = documented(name);
    let map = object.as_object().expect("an object");
    let got: Vec<&String> = map.keys().collect();
    let want: Vec<&String> = doc.keys().collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "{name}: fields differ from docs/JSON.md");
    for (field, value) in map {
        let allowed = &doc[field];
        let t = type_of(value);
        let ok = allowed
            .split('|')
            .any(|a| a == t || (a == "number" && t == "integer"));
        assert!(
            ok,
            "{name}.{field}: {t} ({value}) but docs/JSON.md says {allowed}"
        );
    }
}

#[test]
fn dmarec_record_json_is_as_documented() {
    let s = Scratch::new("json");
    let img = s.file("j.img");
    let idx = s.file("j.idx");
    let out = run_ok(
        "dmarec",
        &[
            "record",
            "--quiet",
            "--json",
            "--target",
            &img,
            "--file-size",
            "64M",
            "--index",
            &idx,
            "--size",
            "8M",
            "--buffers",
            "16",
        ],
    );
    let summary = json(&out);
    assert_eq!(summary["schema_version"], 1);
    check("dmarec record", &summary);
    check("dmarec record targets[]", &summary["targets"][0]);
    check("dmarec record stalls", &summary["stalls"]);
}

#[test]
fn dmaplay_list_json_is_as_documented() {
    let s = Scratch::new("jsonlist");
    let img = s.file("l.img");
    for (scan, size) in [("one", "2M"), ("two", "1M")] {
        let idx = s.file(&format!("{scan}.idx"));
        let mut args = vec!["record", "--quiet", "--target", &img, "--index", &idx];
        args.extend(["--scan", scan, "--size", size, "--buffers", "16"]);
        args.extend(["--file-size", "64M"]);
        run_ok("dmarec", &args);
    }
    let listed = json(&run_ok("dmaplay", &["list", "--json", &img]));
    assert_eq!(listed["schema_version"], 1);
    check("dmaplay list", &listed);
    assert_eq!(listed["scans"].as_array().unwrap().len(), 2);
    check("dmaplay list scans[]", &listed["scans"][1]);
}

/// Checks `array`'s elements against `name`, requiring at least one (so
/// the table is really compared, not skipped).
fn check_each(name: &str, array: &Value) {
    let items = array
        .as_array()
        .unwrap_or_else(|| panic!("{name}: not an array"));
    assert!(!items.is_empty(), "{name}: empty, nothing compared");
    for item in items {
        check(name, item);
    }
}

/// A recording with gaps, a damaged payload (slot 3) and a damaged header
/// (slot 5), so every nested table has rows to compare.
fn damaged_recording(s: &Scratch) -> (String, String) {
    use std::os::unix::fs::FileExt;
    let (img, idx) = record_to_file(
        s,
        "d",
        "32M",
        "4M",
        &[
            "--payload-size",
            "64K",
            "--buffers",
            "16",
            "--sim-drop-every",
            "5",
        ],
    );
    let slot_bytes = 4096 + 65536u64;
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    let slot = |k: u64| (1 << 20) + k * slot_bytes;
    f.write_all_at(&[0xAA], slot(3) + 4096 + 10).unwrap();
    f.write_all_at(&[0xAA], slot(5) + 100).unwrap();
    f.sync_all().unwrap();
    (img, idx)
}

#[test]
fn dmaplay_json_is_as_documented_and_versioned() {
    let s = Scratch::new("json-dmaplay");
    let (img, idx) = damaged_recording(&s);

    let inspect = json(&run_ok(
        "dmaplay",
        &["inspect", "--json", "--slots", "--seq", "0..3", &img],
    ));
    assert_eq!(inspect["schema_version"], 1);
    check("dmaplay inspect", &inspect);
    check("dmaplay inspect time_base", &inspect["time_base"]);
    check(
        "dmaplay inspect time_base drift",
        &inspect["time_base"]["drift"],
    );
    check_each("dmaplay inspect devices[]", &inspect["devices"]);
    check_each("dmaplay inspect channels[]", &inspect["channels"]);
    check_each("dmaplay inspect gaps[]", &inspect["gaps"]);
    check_each("dmaplay inspect slot_list[]", &inspect["slot_list"]);
    check_each("dmaplay scan missing[]", &inspect["missing_slots"]);
    check("dmaplay scan", &inspect["scan"]);
    check_each(
        "dmaplay scan damaged_headers[]",
        &inspect["scan"]["damaged_headers"],
    );
    check_each("dmaplay scan missing[]", &inspect["scan"]["missing"]);
    // One spelling: snake_case keys and values, as documented.
    let counts = inspect["scan"]["counts"].as_object().unwrap();
    for key in counts.keys() {
        assert!(
            key.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "counts key {key:?} is not snake_case"
        );
    }
    assert!(counts.contains_key("damaged_header"), "{counts:?}");
    let without_slots = json(&run_ok(
        "dmaplay",
        &["inspect", "--json", &img, "--index", &idx],
    ));
    check("dmaplay inspect", &without_slots);
    assert!(without_slots["slot_list"].is_null());

    let out = run(
        "dmaplay",
        &["verify", "--json", "--quiet", &img, "--index", &idx],
    );
    assert_eq!(out.status.code(), Some(3), "bad slots were made");
    let verify = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(verify["schema_version"], 1);
    check("dmaplay verify", &verify);
    check_each("dmaplay verify bad[]", &verify["bad"]);

    let raw = s.file("x.raw");
    let export = json(&run_ok(
        "dmaplay",
        &[
            "export", "--json", "--quiet", "--all", "--out", &raw, &img, "--index", &idx,
        ],
    ));
    assert_eq!(export["schema_version"], 1);
    check("dmaplay export", &export);
    check_each("dmaplay export channels[]", &export["channels"]);
    check_each("dmaplay export gaps[]", &export["channels"][0]["gaps"]);

    let replay = json(&run_ok(
        "dmaplay",
        &[
            "replay",
            "--json",
            "--quiet",
            "--speed",
            "max",
            "--out",
            &s.file("r.raw"),
            &img,
            "--index",
            &idx,
        ],
    ));
    assert_eq!(replay["schema_version"], 1);
    check("dmaplay replay", &replay);
    assert!(replay["pacing"].is_null(), "--speed max is not paced");
    let paced = json(&run_ok(
        "dmaplay",
        &[
            "replay",
            "--json",
            "--quiet",
            "--speed",
            "original",
            "--out",
            &s.file("p.raw"),
            &img,
            "--index",
            &idx,
        ],
    ));
    check("dmaplay replay", &paced);
    check("dmaplay replay pacing", &paced["pacing"]);

    let reindex = json(&run_ok(
        "dmaplay",
        &[
            "reindex",
            "--json",
            "--quiet",
            "--check-newest",
            "1000",
            "--index",
            &s.file("n.idx"),
            &img,
        ],
    ));
    assert_eq!(reindex["schema_version"], 1);
    check("dmaplay reindex", &reindex);
    check("dmaplay scan", &reindex["scan"]);
    check_each("dmaplay reindex torn[]", &reindex["torn"]);
}
