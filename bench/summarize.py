#!/usr/bin/env python3
"""Summarize a bench/run.sh result directory: median [min-max] of every
measurement, ratios dmarec/fio. Prints Markdown; writes metrics.csv.

    python3 bench/summarize.py bench/results/<stamp>
    python3 bench/summarize.py --best-fio-qd <dir> <backing>   # e.g. 16
"""
import csv
import json
import os
import statistics
import sys

GIB = 1 << 30


def load_json(text):
    """The JSON object in a tool's stdout (fio may print notes around it)."""
    i, j = text.find("{"), text.rfind("}")
    if i < 0 or j < 0:
        return None
    try:
        return json.loads(text[i : j + 1])
    except json.JSONDecodeError:
        return None


def load(d):
    rows = []
    with open(os.path.join(d, "runs.tsv")) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            raw = os.path.join(d, "raw", r["id"])
            try:
                wall, user, sys_, minf, majf = open(raw + ".time").read().split()[-5:]
                r.update(wall=float(wall), user=float(user), sys=float(sys_),
                         minflt=int(minf), majflt=int(majf))
            except (OSError, ValueError):
                continue
            r["rc"] = int(open(raw + ".rc").read().strip() or 1)
            r["json"] = load_json(open(raw + ".out", errors="replace").read())
            r["cpu"] = r["user"] + r["sys"]
            metrics(r)
            rows.append(r)
    return rows


def metrics(r):
    j = r["json"] or {}
    r["bytes"] = r["rate"] = None
    if r["tool"] == "dmarec" and "bytes_written" in j:
        r["bytes"] = j["bytes_written"]
        r["rate"] = j["rate_mb_per_s"]
    elif r["tool"] == "fio" and "jobs" in j:
        kind = "read" if "read" in r["config"] else "write"
        r["bytes"] = sum(x[kind]["io_bytes"] for x in j["jobs"])
        r["rate"] = sum(x[kind]["bw_bytes"] for x in j["jobs"]) / 1e6
        r["lat_us"] = j["jobs"][0][kind]["clat_ns"]["mean"] / 1e3
    elif r["tool"] == "dmaplay" and "mb_per_s" in j:
        r["rate"] = j["mb_per_s"]
    # CPU without the simulated card's thread (dmarec --source sim): the
    # work a real card's DMA engine does; fio has no card.
    r["own_cpu"] = r["cpu"] - (j.get("card_cpu_s", 0.0) if r["tool"] == "dmarec" else 0.0)
    if r["bytes"] and r["wall"] > 0:
        r["wall_rate"] = r["bytes"] / 1e6 / r["wall"]
        r["cpu_per_gib"] = r["cpu"] / (r["bytes"] / GIB)
        r["own_cpu_per_gib"] = r["own_cpu"] / (r["bytes"] / GIB)


def med(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs), len(xs)


def fmt(m, p=0):
    if m is None:
        return "–"
    return f"{m[0]:.{p}f} [{m[1]:.{p}f}–{m[2]:.{p}f}]"


def sel(rows, **kw):
    return [r for r in rows if r["rc"] == 0 and all(r.get(k) == v for k, v in kw.items())]


def configs(rows, **kw):
    seen = []
    for r in sel(rows, **kw):
        c = (r["tool"], r["config"])
        if c not in seen:
            seen.append(c)
    return seen


def best_fio(rows, step, backing, prefix="qd"):
    best = None
    for tool, cfg in configs(rows, step=step, backing=backing, tool="fio"):
        if not cfg.startswith(prefix):
            continue
        m = med(r["rate"] for r in sel(rows, step=step, backing=backing, config=cfg))
        if m and (best is None or m[0] > best[1][0]):
            best = (cfg, m)
    return best


def paired_ratio(rows, step, backing, a, b, key):
    """Per repetition a/b (a and b ran back to back in the same rep)."""
    ra = {r["rep"]: r.get(key) for r in sel(rows, step=step, backing=backing, config=a[1], tool=a[0])}
    rb = {r["rep"]: r.get(key) for r in sel(rows, step=step, backing=backing, config=b[1], tool=b[0])}
    return med(ra[k] / rb[k] for k in ra if k in rb and ra[k] and rb[k])


def main():
    if sys.argv[1] == "--best-fio-qd":
        rows = load(sys.argv[2])
        b = best_fio(rows, "record", sys.argv[3])
        print(b[0][2:] if b else 16)
        return
    d = sys.argv[1]
    rows = load(d)
    out = []
    p = out.append
    failed = [r for r in rows if r["rc"] != 0]
    backings = []
    for r in rows:
        if r["backing"] not in backings and r["step"] not in ("seek", "payload"):
            backings.append(r["backing"])
    p(f"# bench results: {os.path.basename(os.path.abspath(d))}\n")
    p("```\n" + open(os.path.join(d, "machine.txt")).read().rstrip() + "\n```\n")
    p("Every cell: median [min–max] over the repetitions. MB/s = 10^6 bytes/s of bytes the tool wrote "
      "(dmarec: slots = 4 KiB header + payload). CPU s/GiB = (user+sys of the whole process, "
      "/usr/bin/time) / GiB written, the same method for both tools.\n")
    if failed:
        p(f"**{len(failed)} run(s) failed** (exit status ≠ 0): " + ", ".join(
            f"{r['id']} {r['step']}/{r['backing']}/{r['tool']}:{r['config']}" for r in failed) + "\n")

    # 1+2 record
    if sel(rows, step="record"):
        p("## 1–2. Record throughput and CPU: dmarec (sim card, CRC + index) vs fio write\n")
        p("| backing | tool | config | MB/s (tool's own) | MB/s (bytes / process wall time) | CPU s/GiB | CPU s/GiB without the simulated card | n |")
        p("|---|---|---|---|---|---|---|---|")
        for b in backings:
            for tool, cfg in configs(rows, step="record", backing=b):
                rs = sel(rows, step="record", backing=b, tool=tool, config=cfg)
                p(f"| {b} | {tool} | {cfg} | {fmt(med(r['rate'] for r in rs))} | {fmt(med(r.get('wall_rate') for r in rs))} "
                  f"| {fmt(med(r.get('cpu_per_gib') for r in rs), 3)} | {fmt(med(r.get('own_cpu_per_gib') for r in rs), 3)} | {len(rs)} |")
        p("")
        p("| backing | fio best iodepth | dmarec / fio throughput (ratio of medians) | per-rep ratio median [min–max] | dmarec / fio CPU per GiB (ratio of medians) | per-rep CPU ratio | same, without the simulated card | per-rep |")
        p("|---|---|---|---|---|---|---|---|")
        for b in backings:
            bf = best_fio(rows, "record", b)
            if not bf:
                continue
            dm = med(r["rate"] for r in sel(rows, step="record", backing=b, tool="dmarec", config="default"))
            dc = med(r.get("cpu_per_gib") for r in sel(rows, step="record", backing=b, tool="dmarec", config="default"))
            fc = med(r.get("cpu_per_gib") for r in sel(rows, step="record", backing=b, config=bf[0]))
            pr = paired_ratio(rows, "record", b, ("dmarec", "default"), ("fio", bf[0]), "rate")
            pc = paired_ratio(rows, "record", b, ("dmarec", "default"), ("fio", bf[0]), "cpu_per_gib")
            do = med(r.get("own_cpu_per_gib") for r in sel(rows, step="record", backing=b, tool="dmarec", config="default"))
            po = paired_ratio(rows, "record", b, ("dmarec", "default"), ("fio", bf[0]), "own_cpu_per_gib")
            p(f"| {b} | {bf[0]} | **{dm[0] / bf[1][0]:.3f}** | {fmt(pr, 3)} | **{dc[0] / fc[0]:.2f}** | {fmt(pc, 2)} "
              f"| **{do[0] / fc[0]:.2f}** | {fmt(po, 2)} |")
        p("")
        p("Marginal CPU per GiB: (median CPU of the SIZE runs − median CPU of the 64 MiB runs) / (GiB difference); "
          "removes each tool's fixed start-up and teardown (fio's job setup, dmarec's locked slot memory and final syncs).\n")
        p("| backing | dmarec marginal CPU s/GiB | fio (best iodepth) marginal CPU s/GiB | ratio | dmarec without the simulated card | ratio |")
        p("|---|---|---|---|---|---|")
        for b in backings:
            bf = best_fio(rows, "record", b)
            def marg(tool, big, small, key="cpu"):
                B = sel(rows, step="record", backing=b, tool=tool, config=big)
                S = sel(rows, step="record", backing=b, tool=tool, config=small)
                if not B or not S:
                    return None
                mb, ms = med(r["bytes"] for r in B)[0], med(r["bytes"] for r in S)[0]
                return (med(r[key] for r in B)[0] - med(r[key] for r in S)[0]) / ((mb - ms) / GIB)
            if bf:
                md, mf = marg("dmarec", "default", "tiny"), marg("fio", bf[0], "tiny-qd8")
                mo = marg("dmarec", "default", "tiny", "own_cpu")
                if md is not None and mf:
                    p(f"| {b} | {md:.3f} | {mf:.3f} | **{md / mf:.2f}** | {mo:.3f} | **{mo / mf:.2f}** |")
        p("")
        p("dmarec's own accounting (JSON) in the same runs:\n")
        p("| backing | memory | cpu_user_s | cpu_sys_s | card_cpu_s | cpu_s_per_gib (JSON) | recorder_cpu_s_per_gib (JSON) | payload_bytes_copied / payload byte |")
        p("|---|---|---|---|---|---|---|---|")
        for b in backings:
            rs = [r for r in sel(rows, step="record", backing=b, tool="dmarec", config="default") if r["json"]]
            cp = med(r["json"]["payload_bytes_copied"] / r["json"]["payload_bytes_recorded"] for r in rs)
            mem = "/".join(sorted({r["json"].get("memory", "?") for r in rs}))
            p(f"| {b} | {mem} | {fmt(med(r['json']['cpu_user_s'] for r in rs), 3)} | {fmt(med(r['json']['cpu_sys_s'] for r in rs), 3)} "
              f"| {fmt(med(r['json'].get('card_cpu_s', 0.0) for r in rs), 3)} "
              f"| {fmt(med(r['json']['cpu_s_per_gib'] for r in rs), 3)} | {fmt(med(r['json'].get('recorder_cpu_s_per_gib', 0.0) for r in rs), 3)} | {fmt(cp, 3)} |")
        p("")

    # sweep
    if sel(rows, step="sweep"):
        p("## 1b. dmarec --queue-depth × --buffers sweep (MB/s; CPU s/GiB)\n")
        for b in backings:
            cf = configs(rows, step="sweep", backing=b)
            if not cf:
                continue
            qds = sorted({int(c.split("-")[0][2:]) for _, c in cf})
            bufs = sorted({int(c.split("-b")[1]) for _, c in cf})
            p(f"**{b}** (rows --queue-depth, columns --buffers)\n")
            p("| qd \\ buffers | " + " | ".join(map(str, bufs)) + " |")
            p("|---|" + "---|" * len(bufs))
            ranking = []
            for q in qds:
                cells = []
                for bb in bufs:
                    rs = sel(rows, step="sweep", backing=b, config=f"qd{q}-b{bb}")
                    m = med(r["rate"] for r in rs)
                    c = med(r.get("cpu_per_gib") for r in rs)
                    cells.append(f"{fmt(m)}; {c[0]:.3f}" if m else "–")
                    if m:
                        ranking.append((m[0], q, bb, m))
                p(f"| {q} | " + " | ".join(cells) + " |")
            ranking.sort(reverse=True)
            p("\nBest medians: " + ", ".join(f"qd {q} × {bb} buffers {fmt(m)}" for _, q, bb, m in ranking[:4]) + "\n")

    # 1c overrun
    if sel(rows, step="overrun"):
        p("## 1c. Card at a fixed rate: buffers lost per ring size\n")
        p("| backing | config | MB/s | buffers lost (card overruns) | slots with a gap | CPU s/GiB | n |")
        p("|---|---|---|---|---|---|---|")
        for b in backings:
            for tool, cfg in configs(rows, step="overrun", backing=b):
                rs = [r for r in sel(rows, step="overrun", backing=b, config=cfg) if r["json"]]
                p(f"| {b} | {cfg} | {fmt(med(r['rate'] for r in rs))} | {fmt(med(r['json']['buffers_lost'] for r in rs))} "
                  f"| {fmt(med(r['json']['slots_with_gap'] for r in rs))} | {fmt(med(r.get('cpu_per_gib') for r in rs), 3)} | {len(rs)} |")
        p("")

    # 3 faults
    if sel(rows, step="faults") or sel(rows, step="record", tool="dmarec"):
        p("## 3. Page faults in dmarec's steady state\n")
        p("| backing | faults per 1000 buffers (JSON, steady state) | steady minor | steady major | steady slots | "
          "cross-check: marginal faults per 1000 buffers, /usr/bin/time %R+%F at SIZE vs SIZE/2 | whole-process minor faults at SIZE |")
        p("|---|---|---|---|---|---|---|")
        for b in backings:
            rs = [r for r in sel(rows, backing=b, tool="dmarec") if r["json"] and r["step"] in ("record", "faults", "sweep")
                  and r["config"] in ("default", "full", "half")]
            fj = med(r["json"]["faults_per_1000_buffers"] for r in rs)
            fmin = med(r["json"]["steady_state_minor_faults"] for r in rs)
            fmaj = med(r["json"]["steady_state_major_faults"] for r in rs)
            fsl = med(r["json"]["steady_state_slots"] for r in rs)
            half = {r["rep"]: r for r in sel(rows, step="faults", backing=b, config="half") if r["json"]}
            full = {r["rep"]: r for r in sel(rows, step="faults", backing=b, config="full") if r["json"]}
            marg = med(((full[k]["minflt"] + full[k]["majflt"]) - (half[k]["minflt"] + half[k]["majflt"])) * 1000
                       / (full[k]["json"]["slots"] - half[k]["json"]["slots"]) for k in full if k in half)
            whole = med(r["minflt"] for r in full.values())
            p(f"| {b} | {fmt(fj, 2)} | {fmt(fmin)} | {fmt(fmaj)} | {fmt(fsl)} | {fmt(marg, 2)} | {fmt(whole)} |")
        p("")

    # 5 read
    rd = sel(rows, step="read")
    if rd:
        p("## 5. Reading a recording: dmaplay verify / export vs fio sequential read (same bytes)\n")
        prep = {r["backing"]: r for r in sel(rows, step="readprep") if r["json"]}
        p("| backing | tool | config | MB/s (bytes / process wall time) | MB/s (tool's own) | CPU s/GiB | n |")
        p("|---|---|---|---|---|---|---|")
        for b in backings:
            nbytes = prep[b]["json"]["bytes_written"] if b in prep else None
            for tool, cfg in configs(rows, step="read", backing=b):
                rs = sel(rows, step="read", backing=b, tool=tool, config=cfg)
                for r in rs:
                    if r["tool"] == "dmaplay" and nbytes and r["wall"] > 0:
                        r["bytes"] = nbytes
                        r["wall_rate"] = nbytes / 1e6 / r["wall"]
                        r["cpu_per_gib"] = r["cpu"] / (nbytes / GIB)
                p(f"| {b} | {tool} | {cfg} | {fmt(med(r.get('wall_rate') for r in rs))} | {fmt(med(r.get('rate') for r in rs))} "
                  f"| {fmt(med(r.get('cpu_per_gib') for r in rs), 3)} | {len(rs)} |")
        for b in backings:
            bf = best_fio(rows, "read", b, prefix="read")
            if not bf:
                continue
            fw = med(r.get("wall_rate") for r in sel(rows, step="read", backing=b, config=bf[0]))
            for cfg in ("verify", "export"):
                dm = med(r.get("wall_rate") for r in sel(rows, step="read", backing=b, tool="dmaplay", config=cfg))
                if dm:
                    p(f"\n{b}: dmaplay {cfg} / fio {bf[0]} (both bytes / wall time) = **{dm[0] / fw[0]:.3f}**")
            if not sel(rows, step="read", backing=b, tool="dmaplay"):
                p(f"\n{b}: dmaplay verify/export were not available in this run; fio's read reference only.")
        p("")

    # 6 reindex + seek
    ri = sel(rows, step="reindex", tool="dmaplay")
    if ri:
        p("## 6a. dmaplay reindex\n")
        p("| backing | reindex wall s | fio read of the whole recording, wall s |")
        p("|---|---|---|")
        for b in backings:
            p(f"| {b} | {fmt(med(r['wall'] for r in sel(rows, step='reindex', backing=b, tool='dmaplay')), 3)} "
              f"| {fmt(med(r['wall'] for r in sel(rows, step='reindex', backing=b, tool='fio')), 3)} |")
        p("")
    sk = sel(rows, step="seek", tool="seek-index")
    if sk:
        build = load_json(open(os.path.join(d, "raw", "seek-build.json")).read()) or {}
        p(f"## 6b. Seek to a card timestamp: IndexView::lower_bound, {build.get('entries')} entries "
          f"({build.get('bytes', 0) / 2**20:.1f} MiB index, = 256 GiB of 512 KiB slots), fresh process each time, index on the main disk\n")
        p("| page cache | first seek incl. open+mmap+IndexView::new, ms | of which open+mmap+view, ms | first lower_bound, ms | major faults in the first seek | later seeks in the same process, median µs | p99 µs | processes |")
        p("|---|---|---|---|---|---|---|---|")
        for c in ("cold", "cold-madv-random", "warm"):
            rs = [r["json"] for r in sel(rows, step="seek", config=c) if r["json"]]
            p(f"| {c} | {fmt(med(x['first_seek_us'] / 1e3 for x in rs), 3)} | {fmt(med(x['open_map_view_us'] / 1e3 for x in rs), 3)} "
              f"| {fmt(med(x['first_lower_bound_us'] / 1e3 for x in rs), 3)} | {fmt(med(x['first_seek_major_faults'] for x in rs))} "
              f"| {fmt(med(x['warm_median_us'] for x in rs), 2)} | {fmt(med(x['warm_p99_us'] for x in rs), 2)} | {len(rs)} |")
        lat = sel(rows, step="seek", tool="fio")
        if lat:
            p(f"\nReference: fio 4 KiB random read, depth 1, on the same file: mean latency {lat[0]['lat_us'] / 1e3:.3f} ms.")
        p("")

    pc = sel(rows, step="payload")
    if pc:
        p("## CPU of the card's fill and of the CRC, apart (payload-cost: one thread, no I/O)\n")
        p("| ring | fill s/GiB (sim card) | crc s/GiB (recorder) | fill then crc, s/GiB | n |")
        p("|---|---|---|---|---|")
        for cfg in ("b64", "b16"):
            rs = [r["json"] for r in sel(rows, step="payload", config=cfg) if r["json"]]
            if rs:
                p(f"| {cfg[1:]} buffers × 516 KiB | {fmt(med(x['fill_s_per_gib'] for x in rs), 4)} | {fmt(med(x['crc_s_per_gib'] for x in rs), 4)} "
                  f"| {fmt(med(x['fill_crc_s_per_gib'] for x in rs), 4)} | {len(rs)} |")
        p("")

    # 7 stripe
    if sel(rows, step="stripe"):
        p("## 7. Stripe set of two loop devices\n")
        p("| backing | dmarec stripe of 2 | fio dev1 alone | fio dev2 alone | sum of the two alone | fio both at once (2 jobs) | dmarec / sum | dmarec / both |")
        p("|---|---|---|---|---|---|---|---|")
        for b in backings:
            cf = dict((c.split("-")[0], c) for t, c in configs(rows, step="stripe", backing=b) if t == "fio")
            if not cf:
                continue
            g = lambda c: med(r["rate"] for r in sel(rows, step="stripe", backing=b, config=c))
            dm, f1, f2, fb = g("stripe2"), g(cf.get("dev1")), g(cf.get("dev2")), g(cf.get("both"))
            sm = f1[0] + f2[0] if f1 and f2 else None
            p(f"| {b} | {fmt(dm)} | {fmt(f1)} ({cf.get('dev1')}) | {fmt(f2)} | {sm:.0f} | {fmt(fb)} "
              f"| **{dm[0] / sm:.3f}** | **{dm[0] / fb[0]:.3f}** |")
        p("")

    print("\n".join(out))
    with open(os.path.join(d, "metrics.csv"), "w", newline="") as f:
        keys = ["id", "step", "backing", "tool", "config", "rep", "rc", "wall", "user", "sys", "minflt", "majflt",
                "bytes", "rate", "wall_rate", "cpu_per_gib"]
        w = csv.writer(f)
        w.writerow(keys + ["faults_per_1000_buffers"])
        for r in rows:
            j = r["json"] or {}
            w.writerow([r.get(k) for k in keys] + [j.get("faults_per_1000_buffers")])


if __name__ == "__main__":
    main()
