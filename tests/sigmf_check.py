#!/usr/bin/env python3
"""Validates dmaplay's SigMF exports with the `sigmf` package (PyPI), the
reference reader: every PATH (a .sigmf-meta, a .sigmf archive or a
.sigmf-collection) is loaded by sigmf.fromfile (which checks core:sha512
when present and a collection's stream hashes), validated against the
schema with warnings as errors, and checked:

- the data holds a whole number of samples, the captures and annotations
  lie inside it, in order;
- every capture's core:datetime agrees with the sample counts: capture i
  starts (samples before it + samples lost before it) / sample_rate after
  capture 0, to within one sample period (lost samples: an annotation's
  dmarec:lost_samples minus the filler it covers, core:sample_count).

Prints one JSON object: path -> {samples, captures, annotations, lost,
max_datetime_error_ns, datetimes_ns}. Exits 1 with the reason on the first
failure.

Usage: sigmf_check.py PATH...
"""
import json
import re
import sys
import warnings

import hashlib
import tarfile
from pathlib import Path

import sigmf
from sigmf import sigmffile

DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$"
)


def datetime_ns(text):
    """An RFC 3339 UTC time as integer ns since the epoch (exact)."""
    import calendar

    m = DATETIME.match(text)
    if not m:
        raise SystemExit(f"core:datetime {text!r} is not RFC 3339 UTC")
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = (m.group(7) or "").ljust(9, "0")
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    return secs * 1_000_000_000 + int(frac)


def fail(path, why):
    print(f"sigmf_check: {path}: {why}", file=sys.stderr)
    sys.exit(1)


def check_recording(path, rec):
    rec.validate()
    meta = rec._metadata
    glob = meta["global"]
    samples = rec.sample_count
    size = rec.data_size_bytes if hasattr(rec, "data_size_bytes") else None
    rate = glob.get("core:sample_rate")
    captures = meta["captures"]
    annotations = meta["annotations"]
    if not captures:
        fail(path, "no capture segment")
    if samples == 0:
        fail(path, "no samples (an empty selection must be refused, not exported)")
    last = -1
    for c in captures:
        if not last <= c["core:sample_start"] < samples:
            fail(path, f"capture at {c['core:sample_start']} outside 0..{samples} or out of order")
        last = c["core:sample_start"]
    for a in annotations:
        end = a["core:sample_start"] + a.get("core:sample_count", 0)
        if end > samples:
            fail(path, f"annotation {a} reaches past sample {samples}")
    lost = sum(a.get("dmarec:lost_samples", 0) for a in annotations)
    out = {
        "samples": samples,
        "captures": len(captures),
        "annotations": len(annotations),
        "lost": lost,
        "datetimes_ns": [],
        "max_datetime_error_ns": 0,
    }
    if not rate:
        return out
    period_ns = 1e9 / rate
    dated = [c for c in captures if "core:datetime" in c]
    if not dated:
        fail(path, "no capture has a core:datetime")
    t0 = datetime_ns(dated[0]["core:datetime"])
    s0 = dated[0]["core:sample_start"]
    worst = 0.0
    for c in dated:
        start = c["core:sample_start"]
        # Samples lost (not filled) between capture 0 and this one.
        missing = sum(
            a.get("dmarec:lost_samples", 0) - a.get("core:sample_count", 0)
            for a in annotations
            if s0 < a["core:sample_start"] <= start
        )
        expect = t0 + (start - s0 + missing) * 1e9 / rate
        got = datetime_ns(c["core:datetime"])
        err = abs(got - expect)
        worst = max(worst, err)
        out["datetimes_ns"].append(got)
        if err > period_ns:
            fail(
                path,
                f"capture at sample {start}: core:datetime {c['core:datetime']} is "
                f"{(got - expect) / 1e3:.3f} us from what the sample counts imply "
                f"(one sample is {period_ns / 1e3:.3f} us)",
            )
    out["max_datetime_error_ns"] = worst
    return out


def check_collection_streams(path, loaded):
    """core:streams as the reference library writes them (objects of name
    and hash; its bundled collection schema wants arrays, which its own
    SigMFCollection.set_streams does not write, so that schema is not
    used), every hash the SHA-512 of the stream's .sigmf-meta: loading
    checked those on disk; those inside .sigmf archives are checked here."""
    streams = loaded.get_collection_field("core:streams", [])
    if not streams:
        fail(path, "a collection of no streams")
    base = Path(path).parent
    on_disk = [s for s in streams if (base / f"{s['name']}.sigmf-meta").is_file()]
    if on_disk:
        reference = sigmffile.SigMFCollection(
            metafiles=[f"{s['name']}.sigmf-meta" for s in on_disk], base_path=base
        )
        if reference.get_collection_field("core:streams") != on_disk:
            fail(path, f"core:streams {on_disk} differ from the library's {reference.get_collection_field('core:streams')}")
    for s in streams:
        if s in on_disk:
            continue
        archive = base / f"{s['name']}.sigmf"
        if not archive.is_file():
            fail(path, f"stream {s['name']}: neither .sigmf-meta nor .sigmf beside the collection")
        with tarfile.open(archive) as tar:
            meta = tar.extractfile(f"{s['name']}/{s['name']}.sigmf-meta").read()
        if hashlib.sha512(meta).hexdigest() != s["hash"]:
            fail(path, f"stream {s['name']}: hash differs from its archived .sigmf-meta")


def main(paths):
    warnings.simplefilter("error")
    report = {}
    for path in paths:
        try:
            loaded = sigmffile.fromfile(path)
        except Exception as e:  # the reader's own error, quoted
            fail(path, f"sigmf {sigmf.__version__} cannot read it: {type(e).__name__}: {e}")
        if isinstance(loaded, sigmffile.SigMFCollection):
            check_collection_streams(path, loaded)
            streams = {}
            for name in loaded.get_stream_names():
                rec = loaded.get_SigMFFile(stream_name=name)
                if rec is None:
                    fail(path, f"stream {name} cannot be opened")
                streams[name] = check_recording(f"{path}:{name}", rec)
            report[path] = {"streams": streams}
        else:
            report[path] = check_recording(path, loaded)
    print(json.dumps(report))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
