#!/usr/bin/env python3
"""Small SVG plots of the bench results (no plotting library needed).

    svgplot.py scale <scale.tsv> <outdir>     log-log time and peak RSS per command
    svgplot.py bars <summary.tsv> <out.svg> <title> <unit>
        summary.tsv rows: label, median, min, max (a header line first)
    svgplot.py sustained <run dir>    bench/sustained.sh: rate and ring headroom over time
        (from raw/: fio's --write_bw_log 100 ms windows, dmarec's status lines)
    svgplot.py deinterleave <run dir> bench/deinterleave.sh: MB/s per tool (results.txt)
    svgplot.py table <summary.md> <column> <out.svg> <title>
        bars of a markdown table's "median [min-max]" column, one per row
"""
import csv
import math
import os
import re
import statistics
import sys
from collections import defaultdict

W, H, L, R, T, B = 720, 400, 80, 220, 40, 50
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
          "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header(title):
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'font-family="sans-serif" font-size="12">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{esc(title)}</text>']


def log_ticks(lo, hi):
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo * 0.9999 <= v <= hi * 1.0001:
                ticks.append(v)
        e += 1
    return ticks or [lo, hi]


def fmt(v):
    return f"{v:g}" if v < 1e4 else f"{v:.0e}".replace("e+0", "e")


def line_plot(series, title, xlabel, ylabel):
    """series: {name: [(x, y), ...]}, drawn on log-log axes."""
    pts = [p for s in series.values() for p in s if p[0] > 0 and p[1] > 0]
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts) / 1.5, max(p[1] for p in pts) * 1.5
    if x0 == x1:
        x0, x1 = x0 / 2, x1 * 2

    def sx(x):
        return L + (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0)) * (W - L - R)

    def sy(y):
        return H - B - (math.log(y) - math.log(y0)) / (math.log(y1) - math.log(y0)) * (H - T - B)

    out = header(title)
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="black"/>')
    for v in log_ticks(y0, y1):
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{fmt(v)}</text>')
    xs = sorted({p[0] for p in pts})
    for v in xs:
        out.append(f'<text x="{sx(v):.1f}" y="{H - B + 16}" text-anchor="middle">{fmt(v)}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(T + H - B) / 2})">{esc(ylabel)}</text>')
    base_names = sorted({n.split(" (")[0] for n in series})
    for i, (name, s) in enumerate(sorted(series.items())):
        # A series "cmd (note)" has cmd's colour and open markers.
        c = COLORS[base_names.index(name.split(" (")[0]) % len(COLORS)]
        fill = "white" if " (" in name else c
        s = sorted(p for p in s if p[0] > 0 and p[1] > 0)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for x, y in s:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{fill}" stroke="{c}" stroke-width="2"/>')
        ly = T + 14 + 18 * i
        out.append(f'<line x1="{W - R + 10}" x2="{W - R + 30}" y1="{ly - 4}" y2="{ly - 4}" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{W - R + 36}" y="{ly}">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def bar_plot(rows, title, unit):
    """rows: [(label, median, lo, hi)]: horizontal bars with min-max whiskers."""
    top = max(r[3] for r in rows) * 1.1
    lw = 260
    bh = (H - T - B) / max(len(rows), 1)

    def sx(v):
        return lw + v / top * (W - lw - 30)

    out = header(title)
    for i, (label, med, lo, hi) in enumerate(rows):
        y = T + i * bh
        c = COLORS[i % len(COLORS)]
        out.append(f'<text x="{lw - 6}" y="{y + bh / 2 + 4:.1f}" text-anchor="end">{esc(label)}</text>')
        out.append(f'<rect x="{lw}" y="{y + bh * 0.2:.1f}" width="{sx(med) - lw:.1f}" height="{bh * 0.6:.1f}" fill="{c}"/>')
        out.append(f'<line x1="{sx(lo):.1f}" x2="{sx(hi):.1f}" y1="{y + bh / 2:.1f}" y2="{y + bh / 2:.1f}" stroke="black"/>')
        out.append(f'<text x="{sx(hi) + 4:.1f}" y="{y + bh / 2 - 4:.1f}" font-size="10">{med:.0f}</text>' if med >= 10 else
                   f'<text x="{sx(hi) + 4:.1f}" y="{y + bh / 2 - 4:.1f}" font-size="10">{med:.3g}</text>')
    out.append(f'<line x1="{lw}" x2="{lw}" y1="{T}" y2="{H - B}" stroke="black"/>')
    out.append(f'<text x="{(lw + W) / 2}" y="{H - 16}" text-anchor="middle">{esc(unit)} (median, line: min-max)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def median_range(values):
    return statistics.median(values), min(values), max(values)


def ratio_lines(runs):
    """With two tools: after/before wall time and peak RSS inside each
    repetition (the tools ran back to back), median [min-max]."""
    keys = sorted({k[1:] for k in runs if k[0] == "after"} & {k[1:] for k in runs if k[0] == "before"},
                  key=lambda k: (k[1], k[0], k[2]))
    if not keys:
        return []
    out = ["", "| recording | command | slots | wall after/before | peak RSS after/before |", "|---|---|---|---|---|"]
    for kind, cmd, n in keys:
        by_rep = {tool: {r["rep"]: r for r in runs[(tool, kind, cmd, n)]} for tool in ("after", "before")}
        reps = sorted(set(by_rep["after"]) & set(by_rep["before"]))
        wall = [float(by_rep["after"][r]["wall_s"]) / max(float(by_rep["before"][r]["wall_s"]), 0.005) for r in reps]
        rss = [int(by_rep["after"][r]["max_rss_kb"]) / int(by_rep["before"][r]["max_rss_kb"]) for r in reps]
        w, m = median_range(wall), median_range(rss)
        out.append(f"| {kind} | {cmd} | {n} | {w[0]:.2f} [{w[1]:.2f}–{w[2]:.2f}] | {m[0]:.3f} [{m[1]:.3f}–{m[2]:.3f}] |")
    return out


def lin_ticks(lo, hi, n=6):
    """Round ticks from lo to hi (about n of them)."""
    span = max(hi - lo, 1e-9)
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 5, 10):
        if span / (m * step) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def time_plot(series, title, xlabel, ylabel, ymax=None):
    """series: [(name, [(x, y), ...], stroke width)] on linear axes; a thin
    line is drawn half transparent (dense traces such as 100 ms windows)."""
    pts = [p for _, s, _ in series for p in s]
    x0, x1 = 0.0, max(p[0] for p in pts) or 1.0
    y0, y1 = 0.0, (ymax or max(p[1] for p in pts) * 1.1) or 1.0

    def sx(x):
        return L + (x - x0) / (x1 - x0) * (W - L - R)

    def sy(y):
        return H - B - (y - y0) / (y1 - y0) * (H - T - B)

    out = header(title)
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="black"/>')
    for v in lin_ticks(y0, y1):
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for v in lin_ticks(x0, x1):
        out.append(f'<text x="{sx(v):.1f}" y="{H - B + 16}" text-anchor="middle">{v:g}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(T + H - B) / 2})">{esc(ylabel)}</text>')
    for i, (name, s, width) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(min(y, y1)):.1f}" for x, y in sorted(s))
        opacity = 0.5 if width < 1.5 else 1.0
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="{width}" '
                   f'stroke-opacity="{opacity}"/>')
        ly = T + 14 + 18 * i
        out.append(f'<line x1="{W - R + 10}" x2="{W - R + 30}" y1="{ly - 4}" y2="{ly - 4}" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{W - R + 34}" y="{ly}" font-size="10">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


STATUS = re.compile(r"dmarec: (\d+) s .*?([\d.]+) MB/s now.*ring headroom (\d+)/(\d+)")


def dmarec_status(path):
    """(seconds, written MB/s, ring headroom, ring buffers) per status line."""
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            m = STATUS.search(line)
            if m:
                rows.append((int(m[1]), float(m[2]), int(m[3]), int(m[4])))
    return rows


def fio_windows(path):
    """(seconds, MB/s) per window of fio's --write_bw_log (ms, KiB/s, dir 1)."""
    rows = []
    with open(path) as f:
        for line in f:
            fields = [x.strip() for x in line.split(",")]
            if len(fields) >= 3 and fields[2] == "1":
                rows.append((int(fields[0]) / 1000, int(fields[1]) * 1024 / 1e6))
    return rows


def sustained(outdir):
    """rate and ring headroom over time of a bench/sustained.sh run (raw/)."""
    raw = f"{outdir}/raw"
    rate, headroom, ring = [], [], None
    for name in sorted(os.listdir(raw)):
        m = re.fullmatch(r"fio-(\d+)_bw\.1\.log", name)
        if m:
            rate.append((f"fio {m[1]} (100 ms)", fio_windows(f"{raw}/{name}"), 1))
    with open(f"{outdir}/dmarec.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            st = dmarec_status(f"{raw}/{row['tag']}.err")
            if not st:
                continue
            label = f"dmarec {row['rep']} {row['placement']} {row['fraction']}x"
            rate.append((f"{label} (5 s)", [(t, mb) for t, mb, _, _ in st], 2.5))
            headroom.append((label, [(t, h) for t, _, h, _ in st], 2.5))
            ring = st[0][3]
    if rate:
        with open(f"{outdir}/sustained-rate.svg", "w") as f:
            f.write(time_plot(rate, "written MB/s: fio alone, dmarec (rep, index, card/fio)",
                              "seconds into the run", "MB/s"))
    if headroom:
        with open(f"{outdir}/sustained-headroom.svg", "w") as f:
            f.write(time_plot(headroom, f"dmarec ring headroom over time (of {ring} buffers)",
                              "seconds into the run", "free buffers (lowest in 5 s)", ymax=ring))


def deinterleave(outdir):
    """MB/s per tool of a bench/deinterleave.sh run (results.txt, summary.md)."""
    with open(f"{outdir}/summary.md") as f:
        total = int(f.readline().split()[0])
    rates = defaultdict(list)
    with open(f"{outdir}/results.txt") as f:
        for line in f:
            tool, _, wall, _ = line.split()
            rates[tool].append(total / float(wall) / 1e6)
    rows = [(t, statistics.median(v), min(v), max(v)) for t, v in rates.items()]
    with open(f"{outdir}/deinterleave-rates.svg", "w") as f:
        f.write(bar_plot(rows, "export of an interleaved vs a round-robin recording, fio read", "MB/s"))


SPREAD = re.compile(r"\**([\d.]+)\**\s*\[([\d.]+)[-–]([\d.]+)\]")


def table(md, column, out, title):
    """Bars from a markdown table of a run's summary: each row's first cell
    and its `column` cell, written as "median [min-max]"."""
    rows, head = [], None
    with open(md) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not line.startswith("|") or set("".join(cells)) <= set("-: "):
                continue
            if head is None or column not in head:
                head = cells
                continue
            m = SPREAD.fullmatch(cells[head.index(column)]) if len(cells) == len(head) else None
            if m:
                rows.append((cells[0], float(m[1]), float(m[2]), float(m[3])))
    with open(out, "w") as f:
        f.write(bar_plot(rows, title, column))


def scale(tsv, outdir):
    """Plots per tool (scale-time.svg / scale-rss.svg for "after", the only
    tool of a run without BEFORE; scale-*-before.svg for "before"), with
    the synthetic recording's points as open circles, and summary.md."""
    runs = defaultdict(list)
    with open(tsv) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["rc"] == "0":
                key = (row.get("tool", "after"), row.get("kind", "real"), row["command"], int(row["slots"]))
                runs[key].append(row)
    lines = ["| tool | recording | command | slots | wall s median [min–max] | peak RSS MiB median [min–max] | load1 |",
             "|---|---|---|---|---|---|---|"]
    plots = defaultdict(lambda: (defaultdict(list), defaultdict(list)))
    for (tool, kind, cmd, n), rs in sorted(runs.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][3], kv[0][0])):
        w = median_range([float(r["wall_s"]) for r in rs])
        m = median_range([int(r["max_rss_kb"]) / 1024 for r in rs])
        loads = [float(r["load1"]) for r in rs]
        lines.append(f"| {tool} | {kind} | {cmd} | {n} | {w[0]:.2f} [{w[1]:.2f}–{w[2]:.2f}] | "
                     f"{m[0]:.1f} [{m[1]:.1f}–{m[2]:.1f}] | {min(loads):.1f}–{max(loads):.1f} |")
        name = cmd if kind == "real" else f"{cmd} (1 TiB synthetic)"
        time_s, rss = plots[tool]
        time_s[name].append((n, max(w[0], 0.005)))
        rss[name].append((n, m[0]))
    lines += ratio_lines(runs)
    with open(f"{outdir}/summary.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    for tool, (time_s, rss) in plots.items():
        suffix = "" if tool == "after" else f"-{tool}"
        label = "" if tool == "after" else f" ({tool})"
        with open(f"{outdir}/scale-time{suffix}.svg", "w") as f:
            f.write(line_plot(time_s, f"dmaplay wall time by recording size{label}", "slots", "seconds"))
        with open(f"{outdir}/scale-rss{suffix}.svg", "w") as f:
            f.write(line_plot(rss, f"dmaplay peak RSS by recording size{label}", "slots", "MiB"))


def bars(tsv, out, title, unit):
    with open(tsv) as f:
        r = csv.reader(f, delimiter="\t")
        next(r)
        rows = [(a, float(b), float(c), float(d)) for a, b, c, d in r]
    with open(out, "w") as f:
        f.write(bar_plot(rows, title, unit))


if __name__ == "__main__":
    if sys.argv[1] == "scale":
        scale(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "bars":
        bars(*sys.argv[2:6])
    elif sys.argv[1] == "sustained":
        sustained(sys.argv[2])
    elif sys.argv[1] == "deinterleave":
        deinterleave(sys.argv[2])
    elif sys.argv[1] == "table":
        table(*sys.argv[2:6])
    else:
        sys.exit(__doc__)
