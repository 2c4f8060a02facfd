#!/usr/bin/env bash
# De-interleaving export at disk speed: the same amount of data recorded
# once interleaved (--channel-layout interleaved) and once round-robin, each
# on its own loop device; then, alternated, REPS times: fio reading the
# interleaved device sequentially (O_DIRECT, io_uring, qd 8, slot-sized
# blocks), `dmaplay export --all --format raw` of the interleaved recording
# (reads + de-interleaves + writes every channel) and of the round-robin one
# (reads + writes, no transpose). Outputs go to a tmpfs, so the comparison is
# reading + corner turning against reading. Median [min-max] in
# $OUT/summary.md, plotted in $OUT/deinterleave-rates.svg. See docs/BENCHMARKS.md,
# "De-interleaving export".
#
#   sudo bash bench/deinterleave.sh              # REPS=5 SIZE=1G CHANNELS=4
#
# Knobs: REPS=5 SIZE=1G CHANNELS=4 PAYLOAD=512K BACKING=disk|tmpfs
#        DISK_DIR=/var/tmp OUT=bench/results/deinterleave-<timestamp>
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
REPS=${REPS:-5}
SIZE=${SIZE:-1G}
CHANNELS=${CHANNELS:-4}
PAYLOAD=${PAYLOAD:-512K}
BACKING=${BACKING:-disk}
DISK_DIR=${DISK_DIR:-/var/tmp}
OUT=${OUT:-$REPO/bench/results/deinterleave-$(date -u +%Y%m%d-%H%M%S)}

[ "$(id -u)" = 0 ] || { echo "bench/deinterleave.sh: needs root (losetup)" >&2; exit 1; }
for t in fio python3 /usr/bin/time losetup; do
	command -v "$t" >/dev/null || { echo "bench/deinterleave.sh: $t missing (apt-get install -y fio time python3)" >&2; exit 1; }
done
case "$BACKING" in
disk) BASE=$DISK_DIR ;;
tmpfs) BASE=/dev/shm ;;
*) echo "BACKING=disk or tmpfs" >&2; exit 2 ;;
esac
WORK=$(mktemp -d "$BASE/dmarec-deinterleave.XXXXXX")
EXPORT_DIR=$(mktemp -d /dev/shm/dmarec-deinterleave-out.XXXXXX)
LOOPS=()
cleanup() {
	set +e
	local l
	for l in "${LOOPS[@]}"; do losetup -d "$l"; done
	rm -rf "$WORK" "$EXPORT_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT/raw"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt" >&2; }

cargo build --release -q -p dmarec-recorder -p dmarec-tools
DMAREC=$REPO/target/release/dmarec
DMAPLAY=$REPO/target/release/dmaplay
SIZE_B=$(numfmt --from=iec "${SIZE%iB}")
PAYLOAD_B=$(numfmt --from=iec "${PAYLOAD%iB}")
SLOT_B=$((PAYLOAD_B + 4096))
DEV_B=$(((SIZE_B + SIZE_B / 64 + (64 << 20)) >> 20 << 20))

# One recording per layout, each on its own loop device.
declare -A DEV IDX
for layout in interleaved round-robin; do
	truncate -s "$DEV_B" "$WORK/$layout.img"
	DEV[$layout]=$(losetup -f --show --direct-io=on "$WORK/$layout.img")
	LOOPS+=("${DEV[$layout]}")
	IDX[$layout]=$WORK/$layout.idx
	"$DMAREC" record --quiet --force --target "${DEV[$layout]}" --index "${IDX[$layout]}" \
		--size "$SIZE" --payload-size "$PAYLOAD" --channels "$CHANNELS" \
		--channel-layout "$layout" --buffers 64 >/dev/null
done
SLOTS=$(( ($(stat -c %s "${IDX[interleaved]}") - 8192) / 64 ))
BYTES=$((SLOTS * SLOT_B))
log "recorded $SLOTS slots per layout ($BYTES slot bytes), $CHANNELS channels, $PAYLOAD payload, backing $BACKING"
git rev-parse --short HEAD >"$OUT/commit.txt"

# Runs "$@" under /usr/bin/time; appends "tool rep wall_s cpu_s" to results.
measure() {
	local tool=$1 rep=$2
	shift 2
	sync
	echo 3 >/proc/sys/vm/drop_caches
	/usr/bin/time -f "%e %U %S" -o "$WORK/time" "$@" >"$OUT/raw/$tool-$rep.out" 2>&1
	read -r wall user sys <"$WORK/time"
	echo "$tool $rep $wall $(python3 -c "print($user + $sys)")" >>"$OUT/results.txt"
	log "$tool rep $rep: ${wall} s"
}

: >"$OUT/results.txt"
for rep in $(seq 1 "$REPS"); do
	measure fio-read "$rep" fio --name=read --filename="${DEV[interleaved]}" --rw=read \
		--bs="$SLOT_B" --direct=1 --ioengine=io_uring --iodepth=8 \
		--offset=1M --size="$((SLOTS * SLOT_B))" --output-format=terse
	for layout in interleaved round-robin; do
		rm -f "$EXPORT_DIR"/*
		measure "export-$layout" "$rep" "$DMAPLAY" export --quiet --json --index "${IDX[$layout]}" \
			--all --format raw --force --out "$EXPORT_DIR/x.raw" "${DEV[$layout]}"
	done
done
rm -f "$EXPORT_DIR"/*

python3 - "$OUT/results.txt" "$BYTES" "$REPS" "$CHANNELS" "$PAYLOAD" "$BACKING" >"$OUT/summary.md" <<'EOF'
import statistics, sys
path, total, reps, channels, payload, backing = sys.argv[1:]
total = int(total)
rows = {}
for line in open(path):
    tool, _, wall, cpu = line.split()
    rows.setdefault(tool, []).append((float(wall), float(cpu)))
print(f"{total} slot bytes, {channels} channels, {payload} payload, backing {backing}, {reps} reps\n")
print("| tool | MB/s (slot bytes / wall) median [min-max] | CPU s/GiB median | n |")
print("|---|---|---|---|")
med = {}
for tool in ("fio-read", "export-interleaved", "export-round-robin"):
    r = rows.get(tool, [])
    if not r:
        continue
    rates = [total / w / 1e6 for w, _ in r]
    cpus = [c / (total / 2**30) for _, c in r]
    med[tool] = statistics.median(rates)
    print(f"| {tool} | {med[tool]:.0f} [{min(rates):.0f}-{max(rates):.0f}] | {statistics.median(cpus):.3f} | {len(r)} |")
if "fio-read" in med:
    for tool in ("export-interleaved", "export-round-robin"):
        if tool in med:
            print(f"\n{tool} / fio-read = {med[tool] / med['fio-read']:.2f}", end="")
    print()
EOF
python3 bench/svgplot.py deinterleave "$OUT"  # deinterleave-rates.svg
cat "$OUT/summary.md"
