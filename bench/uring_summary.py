#!/usr/bin/env python3
"""Summary of a bench/uring.sh run: uring_summary.py <OUT> <payload bytes>.

MB/s = the payload bytes / process wall time (start-up included, for both
tools); "device MB/s" is what the tool reports (dmarec: bytes written / time
to the last slot's completion; fio: its write bandwidth). CPU s/GiB = user +
sys of the whole process (every thread: SQPOLL's kernel thread is one of
them) per GiB of payload. Ratios are taken per repetition (the
configurations alternated within it) against the same tool's default, then
their median and range.
"""
import json
import os
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svgplot  # noqa: E402
from stats import med, successful_runs, write_rates  # noqa: E402

out, size_b = sys.argv[1], int(sys.argv[2])
gib = size_b / 2**30
runs = []
for row, raw in successful_runs(out):
    wall, user, sys_s = open(f"{raw}.time").read().split()[-3:]
    report = json.load(open(f"{raw}.out"))
    if row["tool"] == "fio":
        rw = "read" if row["config"].startswith("read") else "write"
        device = report["jobs"][0][rw]["bw_bytes"] / 1e6
        setup = ""
    else:
        device = report["rate_mb_per_s"]
        setup = report["io_uring_setup"]
        # getrusage(RUSAGE_SELF) at the summary, microseconds: every thread
        # (the iou-sqp thread included), finer than time's 10 ms
        row["rusage_cpu"] = report["cpu_user_s"] + report["cpu_sys_s"]
    row.update(wall=float(wall), cpu=float(user) + float(sys_s), device=device,
               load1=float(row["load1"]), setup=setup)
    runs.append(row)


lines = [f"# io_uring options run {os.path.basename(out)}", "",
         f"Payload {size_b} bytes per run. Median [min–max] over the repetitions.", ""]
by = defaultdict(list)
for r in runs:
    by[(r["backing"], r["tool"], r["config"])].append(r)
lines += ["| backing | tool | config | MB/s (wall) | device MB/s | CPU s/GiB | dmarec's rusage CPU s/GiB | load1 | n | io_uring_setup |",
          "|---|---|---|---|---|---|---|---|---|---|"]
rows = []
for (backing, tool, config), rs in sorted(by.items()):
    mbs = [size_b / r["wall"] / 1e6 for r in rs]
    loads = [r["load1"] for r in rs]
    setups = sorted({r["setup"] for r in rs})
    lines.append(f"| {backing} | {tool} | {config} | {med(mbs)} | {med([r['device'] for r in rs])} | "
                 f"{med([r['cpu'] / gib for r in rs], 3)} | "
                 f"{med([r['rusage_cpu'] / gib for r in rs], 3) if tool == 'dmarec' else '—'} | "
                 f"{min(loads):.1f}–{max(loads):.1f} | "
                 f"{len(rs)} | {' / '.join(setups)} |")
    rows.append((f"{backing} {tool} {config}", round(statistics.median(mbs)), min(mbs), max(mbs)))
write_rates(f"{out}/rates.tsv", rows)
if rows:
    svgplot.bars(f"{out}/rates.tsv", f"{out}/uring-rates.svg",
                 "dmarec io_uring options vs fio (same run, alternated)", "MB/s")

per_rep = defaultdict(dict)
for r in runs:
    per_rep[(r["backing"], r["rep"])][(r["tool"], r["config"])] = r
lines += ["", "Against the same tool's default (fio read-sqpoll: against fio read; paced runs: against default-paced), per repetition, then median [min–max]:", "",
          "| backing | tool | config | MB/s ratio | CPU s/GiB ratio (dmarec: its rusage) | n |", "|---|---|---|---|---|---|"]
for backing in sorted({b for b, _ in per_rep}):
    for tool, config in sorted({(t, c) for (b, _), d in per_rep.items() if b == backing for t, c in d}):
        base = ("read" if config.startswith("read")
                else "default-paced" if config.endswith("-paced") else "default")
        if config == base:
            continue
        pairs = [(d[(tool, config)], d[(tool, base)])
                 for (b, _), d in per_rep.items()
                 if b == backing and (tool, config) in d and (tool, base) in d]
        if not pairs:
            continue
        speed = [d0["wall"] / r["wall"] for r, d0 in pairs]
        key = "rusage_cpu" if tool == "dmarec" else "cpu"
        cpu = [r[key] / d0[key] for r, d0 in pairs if d0[key] > 0]
        # a paced run's wall time is the card's pace: its speed ratio says nothing
        shown = "—" if config.endswith("-paced") else med(speed, 2)
        lines.append(f"| {backing} | {tool} | {config} | {shown} | {med(cpu, 2)} | {len(pairs)} |")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
