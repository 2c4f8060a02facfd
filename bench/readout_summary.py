#!/usr/bin/env python3
"""Summary of a bench/readout.sh run: readout_summary.py <OUT> <recorded bytes>.

MB/s = the recording's bytes / process wall time for every tool (fio's
start-up included, as dmaplay's). Ratios are taken per repetition (the
tools alternated within it), then their median and range.
"""
import json
import os
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svgplot  # noqa: E402
from stats import med, successful_runs, write_rates  # noqa: E402

out, rec_b = sys.argv[1], int(sys.argv[2])
gib = rec_b / 2**30
runs = []
for row, raw in successful_runs(out):
    wall, user, sys_s, rss = open(f"{raw}.time").read().split()[-4:]
    row.update(wall=float(wall), cpu=float(user) + float(sys_s), rss_kb=int(rss),
               load1=float(row["load1"]), out=open(f"{raw}.out").read())
    if row["tool"] != "perf":  # the profiled runs (PROFILE=1) are not timed
        runs.append(row)


by = defaultdict(list)
for r in runs:
    by[(r["tool"], r["config"])].append(r)
lines = [f"# readout run {os.path.basename(out)}", "",
         f"Recording: {rec_b} bytes. MB/s = those bytes / wall time; median [min–max].", "",
         "| tool | what | MB/s | CPU s/GiB | peak RSS MiB | load1 at start | n |",
         "|---|---|---|---|---|---|---|"]
rows = []
for (tool, config), rs in sorted(by.items()):
    if config.startswith("replay-original"):
        continue
    mbs = [rec_b / r["wall"] / 1e6 for r in rs]
    cpu = statistics.median(r["cpu"] / gib for r in rs)
    rss = statistics.median(r["rss_kb"] for r in rs) / 1024
    loads = [r["load1"] for r in rs]
    lines.append(f"| {tool} | {config} | {med(mbs)} | {cpu:.3f} | {rss:.0f} | "
                 f"{min(loads):.1f}–{max(loads):.1f} | {len(rs)} |")
    rows.append((f"{tool} {config}", round(statistics.median(mbs)), min(mbs), max(mbs)))
write_rates(f"{out}/rates.tsv", rows)
if rows:
    svgplot.bars(f"{out}/rates.tsv", f"{out}/readout-rates.svg",
                 "Reading a recording back vs fio (same run, alternated)", "MB/s")

per_rep = defaultdict(dict)
for r in runs:
    per_rep[r["rep"]][(r["tool"], r["config"])] = rec_b / r["wall"] / 1e6
ratios = [(tool, f"export-{out}", f"write-{out}")
          for tool in sorted({t for t, c in by if c.startswith("export-")}, key=lambda t: (t != "dmaplay", t))
          for out in ("tmpfs", "disk")]
lines += ["", "Per repetition, then median [min–max]:", "",
          "| ratio | median [min–max] | n |", "|---|---|---|"]
for tool, config, write in ratios:
    v = [d[(tool, config)] / min(d[("fio", "read-target")], d[("fio", write)])
         for d in per_rep.values()
         if (tool, config) in d and ("fio", "read-target") in d and ("fio", write) in d]
    if v:
        lines.append(f"| {tool} {config} / min(fio read of the target, fio {write}) | "
                     f"{med(v, 2)} | {len(v)} |")
for tool, config, write in ratios:
    if config != "export-disk":
        continue
    v = [d[(tool, config)] / d[("fio", "copy-disk")] for d in per_rep.values()
         if (tool, config) in d and ("fio", "copy-disk") in d]
    if v:
        lines.append(f"| {tool} {config} / fio copy-disk (read of the target and write to the disk at once) | "
                     f"{med(v, 2)} | {len(v)} |")
for tool in sorted({t for t, c in by if c == "replay-max"}):
    v = [d[(tool, "replay-max")] / d[("dmaplay", "verify")] for d in per_rep.values()
         if (tool, "replay-max") in d and ("dmaplay", "verify") in d]
    if v:
        lines.append(f"| {tool} replay --speed max / verify | {med(v, 2)} | {len(v)} |")

paced = [r for r in runs if r["config"].startswith("replay-original")]
if paced:
    lines += ["", "Replay at the original rate (lateness of every slot against its card timestamp):", "",
              "| rep | how | seconds | slots | p50 ms | p99 ms | max ms | slots > 1 ms (arrived late) | load1 |",
              "|---|---|---|---|---|---|---|---|---|"]
    prow = []
    for r in paced:
        j = json.loads(r["out"])
        p = j["pacing"]
        how = "--realtime" if r["config"].endswith("-rt") else "default"
        if r["tool"] != "dmaplay":
            how = f"{r['tool']} {how}"
        lines.append(f"| {r['rep']} | {how} | {j['seconds']:.1f} | {p['slots']} | {p['p50_ms']:.3f} | "
                     f"{p['p99_ms']:.3f} | {p['max_ms']:.3f} | {p['slots_late_over_1ms']} "
                     f"({p.get('slots_late_over_1ms_arrived_late', '-')}) | {r['load1']:.1f} |")
        prow += [(f"rep {r['rep']} {how} p50", p["p50_ms"], p["p50_ms"], p["p50_ms"]),
                 (f"rep {r['rep']} {how} p99", p["p99_ms"], p["p99_ms"], p["p99_ms"])]
    write_rates(f"{out}/pacing.tsv", prow)
    svgplot.bars(f"{out}/pacing.tsv", f"{out}/readout-pacing.svg",
                 "replay at the original rate: lateness per slot", "ms")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
