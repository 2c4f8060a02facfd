#!/usr/bin/env bash
# Reading a recording back, side by side with fio on the same disk, tools
# alternated, REPS repetitions, load average recorded per run:
#   fio sequential read of the target (the bytes the recording holds),
#   fio sequential write of as many bytes to the output's file system
#     (--end_fsync=1: export fdatasyncs its files; no --fixedbufs, which
#     drops the final sync in fio 3.33's io_uring engine),
#   fio copy-disk: both at once, the read of the target and the write to
#     the disk's file system, as export to the disk does (the same disk:
#     equal work),
#   dmaplay verify, dmaplay export --all (to the tmpfs and to the disk),
#   dmaplay replay --speed max (to /dev/null),
#   optionally OLD_DMAPLAY's export (before/after in the same run),
# then per rep one replay at the original rate (pacing over the whole
# recording, >= 60 s by default: a card at RATE MB/s for SIZE).
#
#   sudo bash bench/readout.sh                 # SIZE=2G RATE=32 REPS=3
#   OLD_DMAPLAY=/path/to/old/dmaplay sudo bash bench/readout.sh
#       (the old binary's export and replay --speed max in the same run;
#       PACED_OLD=1: also its --realtime replay at the original rate)
#   LAYOUT=interleaved sudo bash bench/readout.sh   # de-interleaving export
#   TARGET_IN_RAM=1: the recording on a loop device backed by /dev/shm, so
#       export to the disk only writes the disk (two devices, as fio's
#       read and write references assume); copy-disk then reads RAM too
#   ALSO="name=/path/to/dmaplay ..."  # more binaries' export and replay --speed max
#   PROFILE=1: after the reps, `perf record -e cpu-clock -g` of each dmaplay
#       and old-dmaplay run once more; `perf report`'s top in $OUT/perf-<tool>-<what>.txt
#
# $OUT/runs.tsv, raw outputs in $OUT/raw, $OUT/summary.md and plots
# (bench/readout_summary.py). Every loop device, mount and file it makes is
# removed on exit, also when a step fails.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
. bench/lib.sh
SIZE=${SIZE:-2G}
RATE=${RATE:-32}
REPS=${REPS:-3}
DISK_DIR=${DISK_DIR:-/var/tmp}
OLD_DMAPLAY=${OLD_DMAPLAY:-}
PACED=${PACED:-1}        # 0: no original-rate replay
PACED_RT=${PACED_RT:-0}  # 1: also one with --realtime (SCHED_FIFO) per rep, alternated
THROUGHPUT=${THROUGHPUT:-1}  # 0: only the paced replays
PACED_OLD=${PACED_OLD:-0}    # 1: OLD_DMAPLAY's --realtime paced replay too, per rep
LAYOUT=${LAYOUT:-round-robin}  # the recording's --channel-layout
TARGET_IN_RAM=${TARGET_IN_RAM:-0}  # 1: the recording's loop device on a file in /dev/shm, outputs on the disk
ALSO=${ALSO:-}
PROFILE=${PROFILE:-0}
OUT=${OUT:-$REPO/bench/results/readout-$(date -u +%Y%m%d-%H%M%S)}
bench_require readout
SIZE_B=$(numfmt --from=iec "${SIZE%iB}")
MIB=$((1 << 20))
DEV_B=$(((SIZE_B + SIZE_B / 128 + 64 * MIB) / MIB * MIB))
# The tmpfs holds an export of the whole recording; TARGET_IN_RAM adds the
# recording's device image, also in /dev/shm. Beside them: 512 MiB for the
# tools' buffers (export's read buffers and stage, fio's).
TMPFS_B=$((SIZE_B + 256 * MIB))
RAM_B=$((TMPFS_B + 512 * MIB))
[ "$TARGET_IN_RAM" = 1 ] && RAM_B=$((RAM_B + DEV_B))
bench_need_ram "$RAM_B" "SIZE=$SIZE (TARGET_IN_RAM=$TARGET_IN_RAM)"
bench_scratch readout "$TMPFS_B"
cargo build --release --quiet -p dmarec-recorder -p dmarec-tools
DMAREC=$REPO/target/release/dmarec
DMAPLAY=$REPO/target/release/dmaplay
bench_machine "SIZE=$SIZE RATE=$RATE REPS=$REPS PACED=$PACED PACED_RT=$PACED_RT PACED_OLD=$PACED_OLD THROUGHPUT=$THROUGHPUT LAYOUT=$LAYOUT TARGET_IN_RAM=$TARGET_IN_RAM PROFILE=$PROFILE OLD_DMAPLAY=$OLD_DMAPLAY ALSO=\"$ALSO\" bash bench/readout.sh" tools formats recorder

TARGET_DIR=$WORK
if [ "$TARGET_IN_RAM" = 1 ]; then
    TARGET_DIR=$(mktemp -d /dev/shm/dmarec-readout-target.XXXXXX)
    BENCH_EXTRA_DIRS=$TARGET_DIR
fi
bench_loop "$TARGET_DIR/target.img" "$DEV_B"
log "recording $SIZE at $RATE MB/s on $LOOP, $LAYOUT"
"$DMAREC" record --source sim --target "$LOOP" --index "$WORK/rec.idx" --size "$SIZE_B" \
    --rate "$RATE" --channel-layout "$LAYOUT" --force --json --quiet > "$OUT/record.json"
REC_B=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['bytes_written'])" "$OUT/record.json")
printf 'id\ttool\tconfig\trep\tload1\n' > "$OUT/runs.tsv"
N=0
run() { # run <tool> <config> <rep> cmd...
    local tool=$1 config=$2 rep=$3 rc=0 id
    shift 3
    N=$((N + 1)); id=$(printf '%04d' $N)
    sync; echo 3 > /proc/sys/vm/drop_caches
    printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$tool" "$config" "$rep" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/runs.tsv"
    /usr/bin/time -f '%e %U %S %M' -o "$OUT/raw/$id.time" "$@" >"$OUT/raw/$id.out" 2>"$OUT/raw/$id.err" || rc=$?
    echo "$rc" > "$OUT/raw/$id.rc"
    [ "$rc" = 0 ] || log "  $id $tool $config exited $rc: $(tail -2 "$OUT/raw/$id.err" | tr '\n' ' ')"
    rm -rf "$TMPFS"/x* "$WORK"/x* "$WORK"/fio.w
}
IDX=$WORK/rec.idx
items=(
    "fio|read-target|fio --name=r --filename=$LOOP --ioengine=io_uring --direct=1 --bs=512k --rw=read --iodepth=8 --offset=$MIB --size=$REC_B --output-format=json"
    "fio|write-tmpfs|fio --name=w --filename=$TMPFS/x.fio --ioengine=io_uring --direct=0 --bs=512k --rw=write --iodepth=8 --size=$REC_B --end_fsync=1 --output-format=json"
    "fio|write-disk|fio --name=w --filename=$WORK/x.fio --ioengine=io_uring --direct=1 --bs=512k --rw=write --iodepth=8 --size=$REC_B --end_fsync=1 --output-format=json"
    "fio|copy-disk|fio --ioengine=io_uring --direct=1 --bs=512k --iodepth=8 --output-format=json --name=r --filename=$LOOP --rw=read --offset=$MIB --size=$REC_B --name=w --filename=$WORK/x.fio --rw=write --size=$REC_B --end_fsync=1"
    "dmaplay|verify|$DMAPLAY verify --quiet --json --index $IDX $LOOP"
    "dmaplay|export-tmpfs|$DMAPLAY export --quiet --json --index $IDX --all --format raw --force --out $TMPFS/x.raw $LOOP"
    "dmaplay|export-disk|$DMAPLAY export --quiet --json --index $IDX --all --format raw --force --out $WORK/x.raw $LOOP"
    "dmaplay|replay-max|$DMAPLAY replay --json --speed max --out /dev/null --index $IDX $LOOP"
)
if [ -n "$OLD_DMAPLAY" ]; then
    items+=("old-dmaplay|export-tmpfs|$OLD_DMAPLAY export --quiet --json --index $IDX --all --format raw --force --out $TMPFS/x.raw $LOOP"
            "old-dmaplay|export-disk|$OLD_DMAPLAY export --quiet --json --index $IDX --all --format raw --force --out $WORK/x.raw $LOOP"
            "old-dmaplay|replay-max|$OLD_DMAPLAY replay --json --speed max --out /dev/null --index $IDX $LOOP")
fi
for extra in $ALSO; do
    name=${extra%%=*} bin=${extra#*=}
    items+=("$name|export-tmpfs|$bin export --quiet --json --index $IDX --all --format raw --force --out $TMPFS/x.raw $LOOP"
            "$name|export-disk|$bin export --quiet --json --index $IDX --all --format raw --force --out $WORK/x.raw $LOOP"
            "$name|replay-max|$bin replay --json --speed max --out /dev/null --index $IDX $LOOP")
done
n=${#items[@]}
for ((r = 1; r <= REPS; r++)); do
    log "rep $r/$REPS (load $(cut -d' ' -f1 /proc/loadavg))"
    for ((i = 0; i < n * THROUGHPUT; i++)); do
        k=$(((i + r - 1) % n))
        IFS='|' read -r tool config cmd <<< "${items[$k]}"
        # shellcheck disable=SC2086
        run "$tool" "$config" "$r" $cmd
    done
    paced=()
    [ "$PACED" = 1 ] && paced+=(replay-original)
    [ "$PACED_RT" = 1 ] && paced+=(replay-original-rt)
    [ "$PACED_OLD" = 1 ] && [ -n "$OLD_DMAPLAY" ] && paced+=(old-replay-original-rt)
    # Rotated per rep, so no variant always runs first.
    for ((j = 0; j < ${#paced[@]}; j++)); do
        p=${paced[$(((j + r - 1) % ${#paced[@]}))]}
        log "  rep $r: $p"
        rt=(); [ "${p%-rt}" != "$p" ] && rt=(--realtime)
        bin=$DMAPLAY tool=dmaplay
        [ "${p#old-}" != "$p" ] && bin=$OLD_DMAPLAY tool=old-dmaplay
        run "$tool" "${p#old-}" "$r" "$bin" replay --json --speed original "${rt[@]}" --out /dev/null --index "$IDX" "$LOOP"
    done
done
if [ "$PROFILE" = 1 ]; then
    for item in "${items[@]}"; do
        IFS='|' read -r tool config cmd <<< "$item"
        case $tool in dmaplay | old-dmaplay) ;; *) continue ;; esac
        log "  perf record: $tool $config"
        # shellcheck disable=SC2086
        run perf "$tool-$config" 0 perf record -q -e cpu-clock -g -o "$OUT/raw/perf-$tool-$config.data" $cmd
        perf report -i "$OUT/raw/perf-$tool-$config.data" --stdio --no-children --percent-limit 1.5 \
            2>/dev/null | grep -v '^$' | head -150 > "$OUT/perf-$tool-$config.txt" || true
    done
fi
python3 bench/readout_summary.py "$OUT" "$REC_B"
log "results in $OUT"
