//! The interleaved channel layout end to end: `dmarec record
//! --channel-layout interleaved` with the simulated card, `dmaplay verify
//! --pattern`, `inspect`, and `export --all` / `--channel` (raw and SigMF)
//! de-interleaving every buffer, checked byte for byte against the layout's
//! definition applied sample by sample to the simulated card's pattern
//! (docs/FORMAT.md, "Channel layouts").

use e2e::*;
use formats::{pattern, IndexEntry};
use std::collections::BTreeMap;

const PAYLOAD: usize = 65536;
const CHANNELS: usize = 3;
/// ci16_le: 4 bytes per sample; a frame of 3 channels is 12 bytes, so a
/// 64 KiB buffer holds 5461 frames (65532 bytes) and 4 bytes stay unused.
const SAMPLE_BYTES: usize = 4;
const FRAMES: usize = PAYLOAD / (CHANNELS * SAMPLE_BYTES);

/// Channel `ch` of buffer `card_seq` by the definition: sample k is at
/// byte k × frame + ch × sample_bytes of the buffer (channel 0's pattern).
fn channel_of_buffer(card_seq: u64, ch: usize) -> Vec<u8> {
    let mut buf = vec![0u8; PAYLOAD];
    pattern::fill(&mut buf, 0, card_seq);
    let frame = CHANNELS * SAMPLE_BYTES;
    (0..FRAMES)
        .flat_map(|k| {
            let at = k * frame + ch * SAMPLE_BYTES;
            buf[at..at + SAMPLE_BYTES].to_vec()
        })
        .collect()
}

/// What channel `ch` exports to with --gaps zero: every buffer from the
/// first recorded to the last, zeros for the lost ones.
fn expected(es: &[IndexEntry], ch: usize) -> Vec<u8> {
    let recorded: BTreeMap<u64, &IndexEntry> = es.iter().map(|e| (e.card_seq, e)).collect();
    let (first, last) = (es[0].card_seq, es.last().unwrap().card_seq);
    let mut out = Vec::new();
    for x in first..=last {
        match recorded.get(&x) {
            Some(_) => out.extend(channel_of_buffer(x, ch)),
            None => out.extend(vec![0u8; FRAMES * SAMPLE_BYTES]),
        }
    }
    out
}

#[test]
fn interleaved_recording_verifies_and_exports_each_channel_deinterleaved() {
    let s = Scratch::new("interleave");
    let (img, idx) = record_interleaved(&s, "8M", &[]);
    let es = index_entries(&idx);
    assert!(es.len() > 20, "{} slots", es.len());
    for e in &es {
        assert_eq!(e.channel, 0, "interleaved slots are channel 0");
        assert_eq!(
            e.payload_bytes_used as usize,
            FRAMES * CHANNELS * SAMPLE_BYTES
        );
    }
    assert!(
        es.iter().any(|e| e.gap_count > 0),
        "--sim-drop-every 5 loses buffers"
    );
    // The pattern (with its partial last word) and the header chain
    // (without the index: the scan checks channel 0 and whole frames).
    run_ok(
        "dmaplay",
        &["verify", "--quiet", "--pattern", &img, "--index", &idx],
    );
    run_ok("dmaplay", &["verify", "--quiet", "--pattern", &img]);
    let inspection = dmaplay_json(&["inspect", &img, "--index", &idx]);
    assert_eq!(inspection["channel_layout"], "interleaved");
    let lost: u64 = es.iter().map(|e| e.gap_count).sum();
    for ch in 0..CHANNELS {
        let c = &inspection["channels"][ch];
        assert_eq!(c["slots"], es.len() as u64, "every slot holds channel {ch}");
        assert_eq!(c["buffers_lost"], lost);
    }

    let raw = s.file("all.raw");
    let report = dmaplay_json(&[
        "export", &img, "--index", &idx, "--all", "--out", &raw, "--gaps", "zero",
    ]);
    for ch in 0..CHANNELS {
        let got = std::fs::read(s.join(&format!("all-ch{ch}.raw"))).unwrap();
        let want = expected(&es, ch);
        assert_eq!(got.len(), want.len(), "channel {ch} length");
        assert!(got == want, "channel {ch}: de-interleaved samples differ");
        let r = &report["channels"][ch];
        assert_eq!(r["samples"], (want.len() / SAMPLE_BYTES) as u64);
        assert_eq!(r["slots"], es.len() as u64);
    }

    // One channel as SigMF: the same samples, datatype and counts.
    let base = s.file("one");
    run_ok(
        "dmaplay",
        &[
            "export",
            "--quiet",
            &img,
            "--index",
            &idx,
            "--channel",
            "2",
            "--format",
            "sigmf",
            "--out",
            &base,
            "--gaps",
            "zero",
        ],
    );
    let data = std::fs::read(format!("{base}.sigmf-data")).unwrap();
    assert!(data == expected(&es, 2), "SigMF channel 2 differs");
    let meta = read_json(&format!("{base}.sigmf-meta"));
    assert_eq!(meta["global"]["core:datatype"], "ci16_le");
    let gaps = meta["annotations"].as_array().unwrap();
    assert_eq!(
        gaps.len() as u64,
        es.iter().filter(|e| e.gap_count > 0).count() as u64
    );
    for g in gaps {
        assert_eq!(
            g["core:sample_count"], FRAMES as u64,
            "a lost buffer is {FRAMES} samples"
        );
    }
}

#[test]
fn an_unknown_channel_layout_is_a_usage_error_naming_the_flag() {
    let s = Scratch::new("interleave-cli");
    let out = run(
        "dmarec",
        &[
            "record",
            "--quiet",
            "--target",
            &s.file("x.img"),
            "--file-size",
            "16M",
            "--index",
            &s.file("x.idx"),
            "--channel-layout",
            "diagonal",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--channel-layout"));
}
