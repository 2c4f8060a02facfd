#!/usr/bin/env bash
# Hours at the disk's limit, in minutes: ring-mode recording against fio's
# sustained write rate on the same loop device, both index placements, with
# dmarec's durability on (a flush of the target and an fdatasync of the index
# every second) and fio flushing as often. See docs/BENCHMARKS.md, "Sustained".
# Plots (bench/svgplot.py): $OUT/sustained-rate.svg (fio's 100 ms windows,
# dmarec's written rate every 5 s) and $OUT/sustained-headroom.svg.
#
#   sudo bash bench/sustained.sh                     # 60 s runs, 2 reps
#   DURATION=300 REPS=3 bash bench/sustained.sh      # the issue's 5 minutes
#
# Per rep, alternated (fio first on odd reps, dmarec first on even ones):
#   fio   io_uring qd8 512 KiB, --time_based for DURATION on the loop
#         device, an fsync every FIO_SYNC_EVERY writes (about 1 s);
#   dmarec --on-full wrap --rate FRACTION x fio's rate of that rep, for
#         DURATION, the index on the same filesystem as the loop's backing
#         file (INDEX_ON=same: one disk, as a recorder writing to a partition
#         of its only disk) or on a tmpfs (other);
# while dmarec runs its RSS and open fds are sampled every 5 s.
#
# Knobs: DURATION=60 REPS=2 FRACTIONS="0.9" PLACEMENTS="same other"
#        DEV_SIZE=1G DISK_DIR=/var/tmp BUFFERS=auto FIO_SYNC_EVERY=2048
#        DMAREC_ARGS=--sim-fill-once OUT=bench/results/sustained-<timestamp>
# Needs root, fio, python3. Removes every loop device, mount and file it
# made on exit, also when a step fails.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DURATION=${DURATION:-60}
REPS=${REPS:-2}
FRACTIONS=${FRACTIONS:-0.9}
PLACEMENTS=${PLACEMENTS:-"same other"}
DEV_SIZE=${DEV_SIZE:-1G}
DISK_DIR=${DISK_DIR:-/var/tmp}
BUFFERS=${BUFFERS:-auto}
FIO_SYNC_EVERY=${FIO_SYNC_EVERY:-2048}
DMAREC_ARGS=${DMAREC_ARGS:---sim-fill-once}
OUT=${OUT:-$REPO/bench/results/sustained-$(date -u +%Y%m%d-%H%M%S)}

[ "$(id -u)" = 0 ] || { echo "bench/sustained.sh: needs root (losetup, mount)" >&2; exit 1; }
for t in fio python3 losetup; do
	command -v "$t" >/dev/null || { echo "bench/sustained.sh: $t missing" >&2; exit 1; }
done

WORK=$(mktemp -d "$DISK_DIR/dmarec-sustained.XXXXXX")
TMPFS=$(mktemp -d /tmp/dmarec-sustained-idx.XXXXXX)
LOOP=""
cleanup() {
	set +e
	[ -n "$LOOP" ] && losetup -d "$LOOP"
	umount "$TMPFS" 2>/dev/null
	rm -rf "$WORK" "$TMPFS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT/raw"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt" >&2; }

cargo build --release -p dmarec-recorder >/dev/null 2>&1 || cargo build --release -p dmarec-recorder
cp target/release/dmarec "$WORK/dmarec"
DMAREC=$WORK/dmarec
mount -t tmpfs -o size=2g dmarec-sustained "$TMPFS"  # the index: 64 B a slot, ~100 MB in 5 min at 2.5 GB/s

truncate -s "$DEV_SIZE" "$WORK/target.img"
LOOP=$(losetup -f --show --direct-io=on "$WORK/target.img")
fio --name=prefill --filename="$LOOP" --ioengine=io_uring --direct=1 --bs=1m --rw=write \
	--iodepth=8 --size="$DEV_SIZE" >/dev/null
{
	echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
	echo "command: DURATION=$DURATION REPS=$REPS FRACTIONS=\"$FRACTIONS\" PLACEMENTS=\"$PLACEMENTS\" DEV_SIZE=$DEV_SIZE BUFFERS=$BUFFERS FIO_SYNC_EVERY=$FIO_SYNC_EVERY DMAREC_ARGS=\"$DMAREC_ARGS\" bash bench/sustained.sh"
	echo "git: $(git rev-parse --short HEAD) $(git status --short -- recorder formats | tr '\n' ' ')"
	echo "cores: $(nproc); kernel: $(uname -r); memory: $(free -g | awk '/Mem:/{print $2}') GiB"
	echo "disk: $DISK_DIR on $(df --output=source,fstype "$DISK_DIR" | tail -1 | tr -s ' ')"
	echo "target: $LOOP on $WORK/target.img ($DEV_SIZE, direct I/O)"
	echo "load_at_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# fio_run <rep>: prints fio's write rate in MB/s
fio_run() {
	local out=$OUT/raw/fio-$1.json
	# No --fixedbufs: fio 3.33's io_uring engine then sends no flush for its
	# syncs (bench/durability.sh); --fsync, which it counts and sends.
	fio --name=sustained --filename="$LOOP" --ioengine=io_uring --direct=1 \
		--registerfiles=1 --bs=512k --rw=write --iodepth=8 --size="$DEV_SIZE" --time_based \
		--runtime="$DURATION" --fsync="$FIO_SYNC_EVERY" --output-format=json \
		--write_bw_log="$OUT/raw/fio-$1" --log_avg_msec=100 >"$out"
	python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["jobs"][0]["write"]["bw_bytes"]/1e6, 1))' "$out"
}

# dmarec_run <rep> <placement> <rate MB/s> <fraction>
dmarec_run() {
	local rep=$1 placement=$2 rate=$3 fraction=$4 idx
	case $placement in
	same) idx=$WORK/rec.idx ;;
	other) idx=$TMPFS/rec.idx ;;
	esac
	local tag=dmarec-$rep-$placement-$fraction
	# shellcheck disable=SC2086
	"$DMAREC" record --target "$LOOP" --index "$idx" --force --on-full wrap --rate "$rate" \
		--duration "$DURATION" --buffers "$BUFFERS" --status-interval 5 --json $DMAREC_ARGS \
		>"$OUT/raw/$tag.json" 2>"$OUT/raw/$tag.err" &
	local pid=$!
	: >"$OUT/raw/$tag.samples"
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		[ -r "/proc/$pid/status" ] || break
		printf '%s %s %s\n' "$(date +%s)" \
			"$(awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null)" \
			"$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)" >>"$OUT/raw/$tag.samples"
	done
	wait "$pid" || log "  dmarec exited $? ($tag): $(tail -1 "$OUT/raw/$tag.err")"
	rm -f "$idx"
	printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$placement" "$fraction" "$rate" "$tag" >>"$OUT/dmarec.tsv"
}

printf 'rep\tfio_mb_per_s\n' >"$OUT/fio.tsv"
printf 'rep\tplacement\tfraction\tcard_mb_per_s\ttag\n' >"$OUT/dmarec.tsv"
for ((rep = 1; rep <= REPS; rep++)); do
	if ((rep % 2 == 1)); then
		log "rep $rep: fio $DURATION s"
		fio_rate=$(fio_run "$rep")
		printf '%s\t%s\n' "$rep" "$fio_rate" >>"$OUT/fio.tsv"
		log "  fio $fio_rate MB/s"
	fi
	for placement in $PLACEMENTS; do
		for fraction in $FRACTIONS; do
			rate=${fio_rate:-$(tail -1 "$OUT/fio.tsv" | cut -f2)}
			card=$(python3 -c "print(round($rate * $fraction, 1))")
			log "rep $rep: dmarec, index $placement, card $card MB/s ($fraction x fio)"
			dmarec_run "$rep" "$placement" "$card" "$fraction"
		done
	done
	if ((rep % 2 == 0)); then
		log "rep $rep: fio $DURATION s"
		fio_rate=$(fio_run "$rep")
		printf '%s\t%s\n' "$rep" "$fio_rate" >>"$OUT/fio.tsv"
		log "  fio $fio_rate MB/s"
	fi
done
echo "load_at_end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
python3 bench/sustained_summary.py "$OUT" | tee "$OUT/summary.md"
python3 bench/svgplot.py sustained "$OUT"  # sustained-rate.svg, sustained-headroom.svg
