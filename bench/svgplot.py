#!/usr/bin/env python3
"""Small SVG plots of the bench results (no plotting library needed).

    svgplot.py scale <scale.tsv> <outdir>     log-log time and peak RSS per command
    svgplot.py bars <summary.tsv> <out.svg> <title> <unit>
        summary.tsv rows: label, median, min, max (a header line first)
"""
import csv
import math
import statistics
import sys
from collections import defaultdict

W, H, L, R, T, B = 720, 400, 80, 220, 40, 50
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


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
        out.append(f'<text x="{sx(hi) + 4:.1f}" y="{y + bh / 2 - 4:.1f}" font-size="10">{med:g}</text>')
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
    else:
        sys.exit(__doc__)
