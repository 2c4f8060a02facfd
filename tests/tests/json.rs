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
