#!/usr/bin/env bash
# dmaplay at growing recording sizes: time and peak RSS of inspect, list,
# verify, reindex and a 1-second export by time, on recordings of 4 KiB
# payloads (many slots in little disk), and on a synthetic recording of
# 1 TiB (2^21 slots of 512 KiB; tools/examples/sparse_recording.rs: a sparse
# file with real superblocks, scan table and index, and real slots only
# where the commands read them). Designed growth: time linear in the slots
# a command reads (inspect: the index; list and the 1 s export: constant),
# RSS flat (the index is mapped and released behind each pass; read buffers
# are a fixed budget).
#
#   sudo bash bench/scale.sh                  # 2^18 .. 2^20 slots + 1 TiB, REPS=3
#   SLOTS="131072" SYNTH_SLOTS= REPS=1 bash bench/scale.sh
#   BEFORE=/path/to/old/dmaplay sudo bash bench/scale.sh   # old and new alternated
#
# With BEFORE, every command runs with both binaries in each repetition,
# in alternating order (tool column "before" / "after"). The page cache is
# dropped before every run (root). On the synthetic recording verify reads
# only its real slots (--range), reindex scans every header location (the
# holes read as zeros: it indexes the real slots only), export reads the
# real slots of seconds 1..2.
#
# Writes $OUT/scale.tsv (one row per run, with load1), $OUT/machine.txt, the
# tables $OUT/summary.md and the log-log plots $OUT/scale-{time,rss}*.svg
# (bench/svgplot.py). Every file it makes is removed on exit, also when a
# step fails.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
SLOTS=${SLOTS:-"262144 524288 1048576"}
SYNTH_SLOTS=${SYNTH_SLOTS-2097152}   # empty: no synthetic recording
SYNTH_RATE=${SYNTH_RATE:-400000000}  # bytes/s of the synthetic card
REPS=${REPS:-3}
COMMANDS=${COMMANDS:-"inspect list verify reindex export-1s"}   # which to measure
RATE=${RATE:-100}        # MB/s of the simulated card: 25600 slots per second
BEFORE=${BEFORE:-}       # an older dmaplay binary to run beside this one
DISK_DIR=${DISK_DIR:-/var/tmp}
OUT=${OUT:-$REPO/bench/results/scale-$(date -u +%Y%m%d-%H%M%S)}
for t in python3 /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "bench/scale.sh: $t missing (apt-get install -y time python3)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/scale.sh: run as root (it drops the page cache before each run)" >&2; exit 1; }
WORK=$(mktemp -d "$DISK_DIR/dmarec-scale.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT"
cargo build --release --quiet -p dmarec-recorder -p dmarec-tools --bins --examples
DMAREC=$REPO/target/release/dmarec
DMAPLAY=$REPO/target/release/dmaplay
SPARSE=$REPO/target/release/examples/sparse_recording
TOOLS="after"
[ -z "$BEFORE" ] || TOOLS="before after"
{
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "command: SLOTS=\"$SLOTS\" SYNTH_SLOTS=$SYNTH_SLOTS SYNTH_RATE=$SYNTH_RATE REPS=$REPS RATE=$RATE COMMANDS=\"$COMMANDS\" BEFORE=$BEFORE bash bench/scale.sh"
    echo "git: $(git rev-parse --short HEAD); uncommitted: $(git status --short -- tools formats | tr '\n' ' ')"
    [ -z "$BEFORE" ] || echo "before: $BEFORE ($(cat "$(dirname "$BEFORE")/REV" 2>/dev/null || echo '?'))"
    echo "cores: $(nproc), kernel $(uname -r)"
    echo "disk: $DISK_DIR on $(df --output=source "$DISK_DIR" | tail -1) ($(df --output=fstype "$DISK_DIR" | tail -1))"
    echo "load_at_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
printf 'kind\tslots\tcommand\ttool\trep\twall_s\tmax_rss_kb\tload1\trc\n' > "$OUT/scale.tsv"
measure() { # measure <kind> <slots> <command> <tool> <rep> cmd...
    local kind=$1 n=$2 name=$3 tool=$4 rep=$5 rc=0 load
    shift 5
    sync; echo 3 > /proc/sys/vm/drop_caches
    load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    [ "$rc" = 0 ] || echo "  $name ($tool) at $n slots exited $rc: $(tail -2 "$WORK/err" | tr '\n' ' ')" >&2
    read -r wall rss < <(tail -1 "$WORK/time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$n" "$name" "$tool" "$rep" "$wall" "$rss" \
        "$load" "$rc" >> "$OUT/scale.tsv"
    rm -f "$WORK"/x*.raw "$WORK/re.idx"
}
# run_commands <kind> <slots> <rep> <img> <idx> <verify-range>: every command
# with every tool, the tools' order alternating by repetition.
run_commands() {
    local kind=$1 n=$2 r=$3 img=$4 idx=$5 range=$6 tools=$TOOLS bin name
    [ $((r % 2)) = 1 ] || tools=$(echo "$TOOLS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for name in $COMMANDS; do
        for tool in $tools; do
            bin=$DMAPLAY
            [ "$tool" = after ] || bin=$BEFORE
            case $name in
                inspect) measure "$kind" "$n" "$name" "$tool" "$r" "$bin" inspect --json --index "$idx" "$img" ;;
                list) measure "$kind" "$n" "$name" "$tool" "$r" "$bin" list --json "$img" ;;
                verify) measure "$kind" "$n" "$name" "$tool" "$r" "$bin" verify --quiet --json $range --index "$idx" "$img" ;;
                reindex) measure "$kind" "$n" "$name" "$tool" "$r" "$bin" reindex --quiet --json --force --index "$WORK/re.idx" "$img" ;;
                export-1s) measure "$kind" "$n" "$name" "$tool" "$r" "$bin" export --quiet --json --index "$idx" --all \
                    --from 1 --to 2 --format raw --force --out "$WORK/x.raw" "$img" ;;
                *) echo "bench/scale.sh: unknown command $name" >&2; exit 1 ;;
            esac
        done
    done
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
        run_commands real "$n" "$r" "$img" "$idx" ""
    done
    rm -f "$img" "$idx"
done
if [ -n "$SYNTH_SLOTS" ]; then
    img=$WORK/synth.img idx=$WORK/synth.idx
    payload=$((512 << 10))
    # Real slots: the first 2.2 s of the card (the export reads 1..2 s).
    last_real=$(( (22 * SYNTH_RATE / 10 + payload - 1) / payload ))
    echo "[$(date +%H:%M:%S)] synthetic recording: $SYNTH_SLOTS slots of 512 KiB, slots 0..$last_real real" >&2
    "$SPARSE" --target "$img" --index "$idx" --slots "$SYNTH_SLOTS" --payload-bytes "$payload" \
        --rate "$SYNTH_RATE" --real "0..$last_real" > "$OUT/synthetic.json"
    for ((r = 1; r <= REPS; r++)); do
        echo "[$(date +%H:%M:%S)]   synthetic rep $r/$REPS" >&2
        run_commands synthetic "$SYNTH_SLOTS" "$r" "$img" "$idx" "--range 0..$last_real"
    done
    rm -f "$img" "$idx"
fi
python3 bench/svgplot.py scale "$OUT/scale.tsv" "$OUT"
echo "results in $OUT" >&2
