#!/usr/bin/env bash
# dmaplay at growing recording sizes: time and peak RSS of inspect, verify,
# reindex and a 1-second export by time, on recordings of 4 KiB payloads
# (many slots in little disk). Designed growth: time linear in the slots a
# command reads (inspect and the 1 s export: constant), RSS flat (the index
# is mapped, not loaded; read buffers are a fixed budget).
#
#   sudo bash bench/scale.sh                      # 2^17 .. 2^20 slots, REPS=3
#   SLOTS="131072 262144" REPS=1 bash bench/scale.sh
#
# Writes $OUT/scale.tsv (one row per run), $OUT/machine.txt, and the
# log-log plots $OUT/scale-time.svg, $OUT/scale-rss.svg (bench/svgplot.py).
# Every file it makes is removed on exit, also when a step fails.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
SLOTS=${SLOTS:-"131072 262144 524288 1048576"}
REPS=${REPS:-3}
COMMANDS=${COMMANDS:-"inspect verify reindex export-1s"}   # which to measure
RATE=${RATE:-100}        # MB/s of the simulated card: 25600 slots per second
DISK_DIR=${DISK_DIR:-/var/tmp}
OUT=${OUT:-$REPO/bench/results/scale-$(date -u +%Y%m%d-%H%M%S)}
for t in python3 /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "bench/scale.sh: $t missing (apt-get install -y time python3)" >&2; exit 1; }
done
WORK=$(mktemp -d "$DISK_DIR/dmarec-scale.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT"
cargo build --release --quiet -p dmarec-recorder -p dmarec-tools
DMAREC=$REPO/target/release/dmarec
DMAPLAY=$REPO/target/release/dmaplay
{
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "command: SLOTS=\"$SLOTS\" REPS=$REPS RATE=$RATE COMMANDS=\"$COMMANDS\" bash bench/scale.sh"
    echo "git: $(git rev-parse --short HEAD)"
    echo "cores: $(nproc), kernel $(uname -r)"
    echo "load_at_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
printf 'slots\tcommand\trep\twall_s\tmax_rss_kb\tload1\trc\n' > "$OUT/scale.tsv"
measure() { # measure <slots> <command> <rep> cmd...
    local n=$1 name=$2 rep=$3 rc=0
    shift 3
    [[ " $COMMANDS " == *" $name "* ]] || return 0
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    [ "$rc" = 0 ] || echo "  $name at $n slots exited $rc: $(tail -2 "$WORK/err" | tr '\n' ' ')" >&2
    read -r wall rss < <(tail -1 "$WORK/time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$name" "$rep" "$wall" "$rss" \
        "$(cut -d' ' -f1 /proc/loadavg)" "$rc" >> "$OUT/scale.tsv"
}
for n in $SLOTS; do
    img=$WORK/rec.img idx=$WORK/rec.idx
    # 8 KiB slots (4 KiB header + 4 KiB payload) + superblocks and slack.
    echo "[$(date +%H:%M:%S)] recording $n slots" >&2
    "$DMAREC" record --source sim --target "$img" --file-size $((n * 8192 + (64 << 20))) \
        --index "$idx" --payload-size 4K --size $((n * 4096)) --rate "$RATE" \
        --force --quiet --json > "$OUT/record-$n.json"
    for ((r = 1; r <= REPS; r++)); do
        echo "[$(date +%H:%M:%S)]   $n slots rep $r/$REPS" >&2
        measure "$n" inspect "$r" "$DMAPLAY" inspect --json --index "$idx" "$img"
        measure "$n" verify "$r" "$DMAPLAY" verify --quiet --json --index "$idx" "$img"
        measure "$n" reindex "$r" "$DMAPLAY" reindex --quiet --json --force --index "$WORK/re.idx" "$img"
        measure "$n" export-1s "$r" "$DMAPLAY" export --quiet --json --index "$idx" --all \
            --from 1 --to 2 --format raw --force --out "$WORK/x.raw" "$img"
        rm -f "$WORK"/x*.raw "$WORK/re.idx"
    done
    rm -f "$img" "$idx"
done
python3 bench/svgplot.py scale "$OUT/scale.tsv" "$OUT"
echo "results in $OUT" >&2
