#!/usr/bin/env python3
"""Summary of a bench/sustained.sh run: fio's sustained rate, and per index
placement and card-rate fraction dmarec's losses, stalls, RSS and fds
(medians with [min-max] over the reps)."""
import csv
import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])


def rows(name):
    with open(out / name) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def spread(values, fmt="{:.1f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{fmt.format(med)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def fio_trace(rep):
    """fio's write rate per 100 ms window (MB/s), from its --write_bw_log."""
    path = out / "raw" / f"fio-{rep}_bw.1.log"
    if not path.exists():
        return []
    rates = []
    for line in path.read_text().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 3 and fields[2] == "1":
            rates.append(int(fields[1]) * 1024 / 1e6)
    return rates


def ring_peak_mb(trace, card_mb_per_s, window_s=0.1):
    """The most a ring holds when a card at a constant rate feeds a writer
    that drains at fio's measured rate of each window (a leaky bucket: time
    the device had and nothing to write is not banked)."""
    queued_mb = peak_mb = 0.0
    for rate in trace:
        queued_mb = max(0.0, queued_mb + (card_mb_per_s - rate) * window_s)
        peak_mb = max(peak_mb, queued_mb)
    return peak_mb


def lost_fraction(trace, card_mb_per_s, ring_mb, window_s=0.1):
    """The share of the card's data fio's stream would have dropped with a
    ring of ring_mb: what the full ring could not take."""
    queued_mb = lost_mb = 0.0
    for rate in trace:
        queued_mb = max(0.0, queued_mb + (card_mb_per_s - rate) * window_s)
        lost_mb += max(0.0, queued_mb - ring_mb)
        queued_mb = min(queued_mb, ring_mb)
    return lost_mb / (card_mb_per_s * window_s * len(trace))


def lossless_card_rate(trace, ring_mb):
    """The highest constant card rate fio's own write stream would have
    carried without overflowing a ring of ring_mb: the device's bound for
    any recorder with that ring, at that time."""
    low, high = 0.0, max(trace)
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if ring_peak_mb(trace, mid) <= ring_mb else (low, mid)
    return low


fio = [float(r["fio_mb_per_s"]) for r in rows("fio.tsv")]
print((out / "machine.txt").read_text())
print(f"fio sustained write (io_uring qd8 512 KiB, time_based, fsync every FIO_SYNC_EVERY writes): "
      f"{spread(fio)} MB/s over {len(fio)} runs: {', '.join(f'{v:.0f}' for v in fio)}\n")

ring_mb = None
groups = {}
for r in rows("dmarec.tsv"):
    j = json.loads((out / "raw" / f"{r['tag']}.json").read_text())
    samples = [line.split() for line in (out / "raw" / f"{r['tag']}.samples").read_text().splitlines()]
    rss = [int(s[1]) for s in samples if len(s) == 3 and s[1]]
    fds = [int(s[2]) for s in samples if len(s) == 3]
    groups.setdefault((r["placement"], r["fraction"]), []).append((float(r["card_mb_per_s"]), j, rss, fds))
    ring_mb = j["buffers"] * j["payload_bytes"] / 1e6

print("| index | card / fio | card MB/s | written MB/s | buffers lost / filled | runs with loss | write p99 ms | longest write ms "
      "| longest flush ms | longest index sync ms | min ring headroom | RSS MB first→last (max) | fds |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (placement, fraction), runs in sorted(groups.items()):
    lost = [j["buffers_lost"] + j["buffers_lost_after_last_slot"] for _, j, _, _ in runs]
    filled = [j["card_filled"] + j["card_overruns"] for _, j, _, _ in runs]
    st = [j["stalls"] for _, j, _, _ in runs]
    rss_first = [r[0] / 1024 for _, _, r, _ in runs if r]
    rss_last = [r[-1] / 1024 for _, _, r, _ in runs if r]
    rss_max = [max(r) / 1024 for _, _, r, _ in runs if r]
    fd_all = [f for _, _, _, fds in runs for f in fds]
    print(f"| {placement} | {fraction} | {spread([c for c, _, _, _ in runs])} "
          f"| {spread([j['rate_mb_per_s'] for _, j, _, _ in runs])} "
          f"| {', '.join(f'{a}/{b}' for a, b in zip(lost, filled))} "
          f"| {sum(1 for v in lost if v)}/{len(runs)} "
          f"| {spread([s['write_latency_p99_ms'] for s in st])} "
          f"| {spread([s['max_write_latency_ms'] for s in st])} "
          f"| {spread([s['max_target_flush_ms'] for s in st])} "
          f"| {spread([s['max_index_sync_ms'] for s in st])} "
          f"| {spread([s['min_ring_headroom_buffers'] for s in st], '{:.0f}')}/{runs[0][1]['buffers']} "
          f"| {spread(rss_first)}→{spread(rss_last)} ({spread(rss_max)}) "
          f"| {min(fd_all) if fd_all else '-'}-{max(fd_all) if fd_all else '-'} |")

# The device's own bound: what fio's trace allows with the same ring.
print("\nfio's own write stream as a recorder (its rate per 100 ms window, a card at a constant rate, "
      f"a ring of {ring_mb:.0f} MB as dmarec's):\n")
print("| fio rep | average MB/s | 100 ms windows: min / p1 / p50 MB/s | ring it needs at 0.9 x average | "
      "lost at 0.9 x average with this ring | highest lossless card rate with this ring |")
print("|---|---|---|---|---|---|")
for r in rows("fio.tsv"):
    trace = fio_trace(r["rep"])
    if not trace or ring_mb is None:
        continue
    average = float(r["fio_mb_per_s"])
    ordered = sorted(trace)
    best = lossless_card_rate(trace, ring_mb)
    print(f"| {r['rep']} | {average:.0f} | {ordered[0]:.0f} / {ordered[len(ordered) // 100]:.0f} / "
          f"{statistics.median(ordered):.0f} | {ring_peak_mb(trace, 0.9 * average):.0f} MB | "
          f"{100 * lost_fraction(trace, 0.9 * average, ring_mb):.1f} % | "
          f"{best:.0f} MB/s = {best / average:.2f} x average |")
