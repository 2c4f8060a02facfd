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


fio = [float(r["fio_mb_per_s"]) for r in rows("fio.tsv")]
print((out / "machine.txt").read_text())
print(f"fio sustained write (io_uring qd8 512 KiB, time_based, fsync every FIO_SYNC_EVERY writes): "
      f"{spread(fio)} MB/s over {len(fio)} runs: {', '.join(f'{v:.0f}' for v in fio)}\n")

groups = {}
for r in rows("dmarec.tsv"):
    j = json.loads((out / "raw" / f"{r['tag']}.json").read_text())
    samples = [line.split() for line in (out / "raw" / f"{r['tag']}.samples").read_text().splitlines()]
    rss = [int(s[1]) for s in samples if len(s) == 3 and s[1]]
    fds = [int(s[2]) for s in samples if len(s) == 3]
    groups.setdefault((r["placement"], r["fraction"]), []).append((float(r["card_mb_per_s"]), j, rss, fds))

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
