#!/usr/bin/env bash
# What durability costs: the same recording with the recorder before the
# durability order (BEFORE=<commit>: no target flush while recording, one at
# the end), with it (--target-sync flush: a sync round every second) and with
# per-write durability (--target-sync dsync), beside fio with the same end
# flush (--end_fsync=1) and with a flush about every second (--fdatasync).
# Alternated, REPS repetitions, one loop device on the main disk, the index
# on the same filesystem (the expensive placement). See docs/BENCHMARKS.md,
# "Durability cost".
#
#   sudo bash bench/durability.sh            # BEFORE=3e7c35e REPS=3 SIZE=2G
#
# Knobs: BEFORE=3e7c35e REPS=3 SIZE=2G DISK_DIR=/var/tmp FIO_SYNC_EVERY=2048 (writes between fio's fsyncs)
#        OUT=bench/results/durability-<timestamp>
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
BEFORE=${BEFORE:-3e7c35e}
REPS=${REPS:-3}
SIZE=${SIZE:-2G}
DISK_DIR=${DISK_DIR:-/var/tmp}
FIO_SYNC_EVERY=${FIO_SYNC_EVERY:-2048}
OUT=${OUT:-$REPO/bench/results/durability-$(date -u +%Y%m%d-%H%M%S)}

[ "$(id -u)" = 0 ] || { echo "bench/durability.sh: needs root" >&2; exit 1; }
WORK=$(mktemp -d "$DISK_DIR/dmarec-durability.XXXXXX")
LOOP=""
cleanup() {
	set +e
	[ -n "$LOOP" ] && losetup -d "$LOOP"
	[ -d "$WORK/before-src" ] && git worktree remove --force "$WORK/before-src"
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT/raw"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt" >&2; }

log "building the recorder at HEAD and at $BEFORE"
cargo build --release -p dmarec-recorder >/dev/null 2>&1 || cargo build --release -p dmarec-recorder
cp target/release/dmarec "$WORK/dmarec-after"
git worktree add -q --detach "$WORK/before-src" "$BEFORE"
(cd "$WORK/before-src" && CARGO_TARGET_DIR=$REPO/target/bench-before cargo build --release -q -p dmarec-recorder)
cp target/bench-before/release/dmarec "$WORK/dmarec-before"

SIZE_B=$(numfmt --from=iec "${SIZE%iB}")
DEV_B=$(((SIZE_B + SIZE_B / 128 + (64 << 20)) >> 20 << 20))
truncate -s "$DEV_B" "$WORK/target.img"
LOOP=$(losetup -f --show --direct-io=on "$WORK/target.img")
fio --name=prefill --filename="$LOOP" --ioengine=io_uring --direct=1 --bs=1m --rw=write \
	--iodepth=8 --size="$DEV_B" >/dev/null
{
	echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
	echo "command: BEFORE=$BEFORE REPS=$REPS SIZE=$SIZE FIO_SYNC_EVERY=$FIO_SYNC_EVERY bash bench/durability.sh"
	echo "git: $(git rev-parse --short HEAD) $(git status --short -- recorder formats | tr '\n' ' ')"
	echo "cores: $(nproc); kernel: $(uname -r)"
	echo "disk: $DISK_DIR on $(df --output=source,fstype "$DISK_DIR" | tail -1 | tr -s ' ')"
	echo "load_at_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

fio_cmd() { # extra fio args
	echo fio --name=w --filename="$LOOP" --ioengine=io_uring --direct=1 \
		--registerfiles=1 --bs=512k --rw=write --iodepth=8 --size="$SIZE_B" --output-format=json "$@"
}
dmarec_cmd() { # binary, extra args
	local bin=$1
	shift
	echo "$WORK/$bin" record --target "$LOOP" --index "$WORK/rec.idx" --force --size "$SIZE_B" \
		--buffers 64 --json --quiet "$@"
}
# fio 3.33's io_uring engine with --fixedbufs=1 sends no flush for
# --end_fsync or --fdatasync (the device's flush counter does not move; seen
# 2026-11-30), and --fdatasync is not counted in its JSON: the reference with
# the end flush runs without fixed buffers (the flush column shows it
# happened), the periodic one uses --fsync, which fio counts and sends.
configs=(
	"fio-fixedbufs=$(fio_cmd --fixedbufs=1 --end_fsync=1)"
	"fio-end_fsync=$(fio_cmd --end_fsync=1)"
	"fio-fsync=$(fio_cmd --end_fsync=1 --fsync="$FIO_SYNC_EVERY")"
	"dmarec-before=$(dmarec_cmd dmarec-before)"
	"dmarec-flush=$(dmarec_cmd dmarec-after --target-sync flush)"
	"dmarec-dsync=$(dmarec_cmd dmarec-after --target-sync dsync)"
)
printf 'rep\tconfig\tfile\tdiskstats_flushes\n' >"$OUT/runs.tsv"
dev=$(basename "$LOOP")
flushes() { awk -v d="$dev" '$3==d{print $19}' /proc/diskstats; }
n=${#configs[@]}
for ((rep = 1; rep <= REPS; rep++)); do
	for ((i = 0; i < n; i++)); do
		k=$(((i + rep - 1) % n))
		label=${configs[$k]%%=*}
		cmd=${configs[$k]#*=}
		log "rep $rep: $label"
		f0=$(flushes)
		# shellcheck disable=SC2086
		$cmd >"$OUT/raw/$label-$rep.json" 2>"$OUT/raw/$label-$rep.err" || log "  $label exited $?"
		printf '%s\t%s\t%s\t%s\n' "$rep" "$label" "$label-$rep.json" "$(($(flushes) - f0))" >>"$OUT/runs.tsv"
		rm -f "$WORK/rec.idx"
	done
done
echo "load_at_end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import csv, json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
print((out / "machine.txt").read_text())
rows = list(csv.DictReader(open(out / "runs.tsv"), delimiter="\t"))
by = {}
for r in rows:
    j = json.loads((out / "raw" / r["file"]).read_text())
    if r["config"].startswith("fio"):
        job = j["jobs"][0]
        mb = job["write"]["bw_bytes"] / 1e6
        total_s = job["job_runtime"] / 1e3
        end = "-"
    else:
        mb = j["rate_mb_per_s"]
        total_s = j["seconds"]
        end = f'{j["final_flush_s"]:.3f}'
    by.setdefault(r["config"], []).append((mb, total_s, int(r["diskstats_flushes"]), end))
def spread(v, f="{:.0f}"):
    return f"{f.format(statistics.median(v))} [{f.format(min(v))}-{f.format(max(v))}]"
ref = statistics.median(m for m, *_ in by["fio-end_fsync"])
print("| config | MB/s | vs fio --end_fsync=1 | wall s | device flushes | dmarec final flush s |")
print("|---|---|---|---|---|---|")
for c, v in by.items():
    mbs = [m for m, *_ in v]
    print(f"| {c} | {spread(mbs)} | {statistics.median(mbs) / ref:.3f} | {spread([t for _, t, _, _ in v], '{:.2f}')} "
          f"| {spread([f for _, _, f, _ in v])} | {', '.join(e for *_, e in v)} |")
EOF
python3 bench/svgplot.py table "$OUT/summary.md" "MB/s" "$OUT/durability-rates.svg" \
	"durability cost: MB/s (same run, alternated)"
