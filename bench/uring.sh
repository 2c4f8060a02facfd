#!/usr/bin/env bash
# io_uring options of the recorder's write path, side by side in one run
# (docs/BENCHMARKS.md, Session 4, #16 item 4): dmarec default, --sqpoll,
# --register-ring-fd, both; fio's io_uring engine plain and with
# sqthread_poll as the reference of what SQPOLL gives on the same device,
# and fio's sequential read plain and with sqthread_poll (dmaplay's reads);
# and dmarec from a card at RATE MB/s (below the device's speed) plain and
# with --sqpoll (idle SQPOLL_IDLE_MS, and 1 ms): the CPU a real card's pace costs.
# Configurations alternated (rotated per repetition), REPS repetitions, on
# BACKINGS: a direct-I/O loop device on a file on the main disk (DISK_DIR)
# and on a file in a tmpfs (no disk: the CPU path). Load average recorded
# per run.
#
#   sudo bash bench/uring.sh                 # SIZE=1G REPS=3 BACKINGS="disk tmpfs"
#
# dmarec records from the simulated card with --sim-fill-once (a DMA engine
# that costs the host nothing), PAYLOAD (512K) payloads, queue depth 8, its index
# in the tmpfs; fio writes PAYLOAD blocks at iodepth 8 with fixedbufs and
# registerfiles and --end_fsync=1 (dmarec flushes the device every second).
# CPU = user + sys of the whole process from /usr/bin/time (wait4: every
# thread, SQPOLL's iou-sqp thread included). Results: $OUT/runs.tsv,
# $OUT/raw, $OUT/summary.md (bench/uring_summary.py). Every loop device,
# mount and file it makes is removed on exit, also when a step fails.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
. bench/lib.sh
SIZE=${SIZE:-1G}
PAYLOAD=${PAYLOAD:-512K}   # dmarec --payload-size and fio --bs
REPS=${REPS:-3}
BACKINGS=${BACKINGS:-"disk tmpfs"}
DISK_DIR=${DISK_DIR:-/var/tmp}
SQPOLL_IDLE_MS=${SQPOLL_IDLE_MS:-1000}
RATE=${RATE:-200}   # MB/s of the card in the -paced runs (below the device: CPU per GiB at a real card's pace)
OUT=${OUT:-$REPO/bench/results/uring-$(date -u +%Y%m%d-%H%M%S)}
bench_require uring
SIZE_B=$(numfmt --from=iec "${SIZE%iB}")
PAYLOAD_B=$(numfmt --from=iec "${PAYLOAD%iB}")
MIB=$((1 << 20))
# SIZE of slots (a 4 KiB header per payload) plus superblocks
DEV_B=$(((SIZE_B / PAYLOAD_B * (PAYLOAD_B + 4096) + 64 * MIB) / MIB * MIB))
bench_scratch uring $((DEV_B + 64 * MIB))
cargo build --release --quiet -p dmarec-recorder
DMAREC=$REPO/target/release/dmarec
bench_machine "SIZE=$SIZE REPS=$REPS PAYLOAD=$PAYLOAD RATE=$RATE BACKINGS=\"$BACKINGS\" SQPOLL_IDLE_MS=$SQPOLL_IDLE_MS bash bench/uring.sh" recorder

printf 'id\tbacking\ttool\tconfig\trep\tload1\n' > "$OUT/runs.tsv"
N=0
run() { # run <backing> <tool> <config> <rep> cmd...
    local backing=$1 tool=$2 config=$3 rep=$4 rc=0 id
    shift 4
    N=$((N + 1)); id=$(printf '%04d' $N)
    sync; echo 3 > /proc/sys/vm/drop_caches
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$backing" "$tool" "$config" "$rep" \
        "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/runs.tsv"
    /usr/bin/time -f '%e %U %S' -o "$OUT/raw/$id.time" "$@" >"$OUT/raw/$id.out" 2>"$OUT/raw/$id.err" || rc=$?
    echo "$rc" > "$OUT/raw/$id.rc"
    [ "$rc" = 0 ] || log "  $id $tool $config exited $rc: $(tail -2 "$OUT/raw/$id.err" | tr '\n' ' ')"
}

for B in $BACKINGS; do
    if [ "$B" = disk ]; then img=$WORK/target.img; else img=$TMPFS/target.img; fi
    bench_loop "$img" "$DEV_B"
    rec="$DMAREC record --source sim --sim-fill-once --target $LOOP --index $TMPFS/r.idx --force --json --quiet --size $SIZE_B --payload-size $PAYLOAD --buffers 64 --queue-depth 8"
    fio_w="fio --name=w --filename=$LOOP --ioengine=io_uring --direct=1 --fixedbufs=1 --registerfiles=1 --bs=$PAYLOAD --rw=write --iodepth=8 --size=$SIZE_B --end_fsync=1 --output-format=json"
    # dmaplay's reads use the same submission path: fio's sequential read with
    # and without SQPOLL says whether the option would pay there
    fio_r="fio --name=r --filename=$LOOP --ioengine=io_uring --direct=1 --fixedbufs=1 --registerfiles=1 --bs=$PAYLOAD --rw=read --iodepth=8 --size=$SIZE_B --output-format=json"
    items=(
        "dmarec|default|$rec"
        "dmarec|sqpoll|$rec --sqpoll --sqpoll-idle-ms $SQPOLL_IDLE_MS"
        "dmarec|ringfd|$rec --register-ring-fd"
        "dmarec|sqpoll+ringfd|$rec --sqpoll --sqpoll-idle-ms $SQPOLL_IDLE_MS --register-ring-fd"
        "fio|default|$fio_w"
        "fio|sqpoll|$fio_w --sqthread_poll=1"
        "dmarec|default-paced|$rec --rate $RATE"
        "dmarec|sqpoll-paced|$rec --rate $RATE --sqpoll --sqpoll-idle-ms $SQPOLL_IDLE_MS"
        "dmarec|sqpoll-idle1-paced|$rec --rate $RATE --sqpoll --sqpoll-idle-ms 1"
        "fio|read|$fio_r"
        "fio|read-sqpoll|$fio_r --sqthread_poll=1"
    )
    n=${#items[@]}
    for ((r = 1; r <= REPS; r++)); do
        log "$B ($LOOP) rep $r/$REPS (load $(cut -d' ' -f1 /proc/loadavg))"
        for ((i = 0; i < n; i++)); do
            k=$(((i + r - 1) % n))
            IFS='|' read -r tool config cmd <<< "${items[$k]}"
            # shellcheck disable=SC2086
            run "$B" "$tool" "$config" "$r" $cmd
        done
    done
    losetup -d "$LOOP"; LOOP=""
    rm -f "$img" "$TMPFS/r.idx"
done
python3 bench/uring_summary.py "$OUT" "$SIZE_B"
log "results in $OUT"
