#!/usr/bin/env bash
# dmarec benchmarks, side by side with fio on the same targets, tools
# alternated, several repetitions; median and spread (min/max) in
# $OUT/summary.md. See docs/BENCHMARKS.md.
#
#   sudo bash bench/run.sh                       # everything, a few minutes
#   REPS=3 SIZE=1G STEPS="record cpu" bash bench/run.sh
#
# Knobs (environment):
#   REPS=5            repetitions of every side-by-side measurement
#   SIZE=2G           bytes each tool writes/reads per run
#   BACKINGS="disk tmpfs"   (a) loop device on a file on the main disk (DISK_DIR)
#                           (b) loop device on a file in a tmpfs (no disk: CPU cost)
#   DISK_DIR=/var/tmp       where the disk-backed loop files go (must be the main disk)
#   STEPS="record sweep faults overrun read reindex stripe seek payload"
#   OVERRUN_RATE=1200 (MB/s) OVERRUN_BUFFERS="16 32 64"   card at a fixed rate: buffers lost per ring size
#   FIO_QDS="4 8 16 32"     fio iodepths measured (fio's best median is the reference)
#   SWEEP_QDS="4 8 16 32" SWEEP_BUFFERS="16 32 64 128" SWEEP_REPS=3
#   DMAREC_ARGS=""          extra arguments for every `dmarec record` (e.g. "--queue-depth 32")
#   INDEX_ON=same           where the disk runs keep dmarec's index: same (the disk) or other (the tmpfs)
#   SEEK_ENTRIES=524288     index entries (256 GiB / 512 KiB)  SEEK_PROCS=21  SEEK_WARM=10000
#   EXPORT_ARGS="--all --format raw --force"   dmaplay export arguments (output goes to files in the tmpfs)
#   OUT=bench/results/<timestamp>
#
# Needs root (losetup, mount), fio, /usr/bin/time, python3. Every loop device,
# mount and file it makes is removed on exit, also when a step fails.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
REPS=${REPS:-5}
SIZE=${SIZE:-2G}
BACKINGS=${BACKINGS:-"disk tmpfs"}
DISK_DIR=${DISK_DIR:-/var/tmp}
STEPS=${STEPS:-"record sweep faults overrun read reindex stripe seek payload"}
OVERRUN_RATE=${OVERRUN_RATE:-1200}
OVERRUN_BUFFERS=${OVERRUN_BUFFERS:-"16 32 64"}
FIO_QDS=${FIO_QDS:-"4 8 16 32"}
SWEEP_QDS=${SWEEP_QDS:-"4 8 16 32"}
SWEEP_BUFFERS=${SWEEP_BUFFERS:-"16 32 64 128"}
SWEEP_REPS=${SWEEP_REPS:-3}
DMAREC_ARGS=${DMAREC_ARGS:-}
INDEX_ON=${INDEX_ON:-same}
SEEK_ENTRIES=${SEEK_ENTRIES:-524288}
SEEK_PROCS=${SEEK_PROCS:-21}
SEEK_WARM=${SEEK_WARM:-10000}
EXPORT_ARGS=${EXPORT_ARGS:-"--all --format raw --force"}
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-$REPO/bench/results/$STAMP}

SIZE_B=$(numfmt --from=iec "${SIZE%iB}")
TINY_B=$((64 << 20))
MIB=$((1 << 20))
# A device holds SIZE of 516 KiB slots plus superblocks: SIZE + 1/128 + 64 MiB.
DEV_B=$(((SIZE_B + SIZE_B / 128 + 64 * MIB) / MIB * MIB))

[ "$(id -u)" = 0 ] || { echo "bench/run.sh: needs root (losetup, mount)" >&2; exit 1; }
for t in fio python3 /usr/bin/time losetup; do
    command -v "$t" >/dev/null || { echo "bench/run.sh: $t missing (apt-get install -y fio time python3)" >&2; exit 1; }
done

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/dmarec-bench.XXXXXX)
DISK_WORK=$(mktemp -d "$DISK_DIR/dmarec-bench.XXXXXX")
LOOPS=()
MOUNTS=()
cleanup() {
    set +e
    local l m
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
    rm -rf "$WORK" "$DISK_WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT/raw"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt" >&2; }

# ---------------------------------------------------------------- binaries
# Built now and copied, so a rebuild by someone else mid-run changes nothing.
log "building"
cargo build --release -p dmarec-recorder >/dev/null 2>&1 || cargo build --release -p dmarec-recorder
mkdir -p "$WORK/bin"
cp target/release/dmarec "$WORK/bin/"
HAVE_DMAPLAY=0
if cargo build --release -p dmarec-tools >/dev/null 2>&1 && [ -x target/release/dmaplay ]; then
    cp target/release/dmaplay "$WORK/bin/"
    HAVE_DMAPLAY=1
fi
(cd bench/seek-index && { cargo build --release --offline -q 2>/dev/null || cargo build --release -q; })
cp bench/seek-index/target/release/seek-index "$WORK/bin/"
(cd bench/payload-cost && { cargo build --release --offline -q 2>/dev/null || cargo build --release -q; })
cp bench/payload-cost/target/release/payload-cost "$WORK/bin/"
DMAREC="$WORK/bin/dmarec"
DMAPLAY="$WORK/bin/dmaplay"
# dmaplay_has <subcommand>: dmaplay is built and its --help lists the subcommand
dmaplay_has() { [ "$HAVE_DMAPLAY" = 1 ] && "$DMAPLAY" --help 2>&1 | grep -Eq "^ +$1( |$)"; }

# ---------------------------------------------------------------- machine
{
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "command: REPS=$REPS SIZE=$SIZE BACKINGS=\"$BACKINGS\" STEPS=\"$STEPS\" FIO_QDS=\"$FIO_QDS\" SWEEP_QDS=\"$SWEEP_QDS\" SWEEP_BUFFERS=\"$SWEEP_BUFFERS\" SWEEP_REPS=$SWEEP_REPS DMAREC_ARGS=\"$DMAREC_ARGS\" INDEX_ON=$INDEX_ON bash bench/run.sh"
    echo "git: $(git rev-parse --short HEAD); built from the work tree; uncommitted in recorder/ formats/ tools/: $(git status --short -- recorder formats tools | tr '\n' ' ' | sed 's/ *$//')"
    echo "cores: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel: $(uname -r)"
    echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB"
    src=$(df --output=source "$DISK_DIR" | tail -1)
    echo "disk: $DISK_DIR on $src ($(df --output=fstype "$DISK_DIR" | tail -1)), $(lsblk -dno SIZE,ROTA,MODEL "$src" 2>/dev/null | tr -s ' ' | sed 's/^ //') (ROTA=rotational), scheduler $(cat /sys/block/"$(basename "$src")"/queue/scheduler 2>/dev/null || echo '?')"
    echo "fio: $(fio --version)"
    echo "dmaplay: $([ "$HAVE_DMAPLAY" = 1 ] && "$DMAPLAY" --help 2>&1 | grep -E '^  [a-z]' | awk '{print $1}' | tr '\n' ' ' || echo 'not built')"
    echo "size_per_run: $SIZE ($SIZE_B bytes), device size $DEV_B bytes"
    echo "load_at_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- targets
# new_loop <backing> <name> <bytes>: prints the loop device
TMPFS=""
new_loop() {
    local dir
    case $1 in
        disk) dir=$DISK_WORK ;;
        tmpfs) dir=$TMPFS ;;
    esac
    truncate -s "$3" "$dir/$2.img"
    local l
    l=$(losetup -f --show --direct-io=on "$dir/$2.img")
    LOOPS+=("$l")
    [ "$(cat /sys/block/"$(basename "$l")"/loop/dio)" = 1 ] || log "WARNING: $l has no direct I/O"
    echo "$l"
}
drop_loop() {
    losetup -d "$1"
    local keep=() l
    for l in "${LOOPS[@]}"; do [ "$l" = "$1" ] || keep+=("$l"); done
    LOOPS=("${keep[@]}")
}
setup_tmpfs() {
    [ -n "$TMPFS" ] && return
    TMPFS="$WORK/tmpfs"
    mkdir -p "$TMPFS"
    # two devices for the stripe step + the index files
    mount -t tmpfs -o size=$((2 * DEV_B + 512 * MIB)) dmarec-bench "$TMPFS"
    MOUNTS+=("$TMPFS")
}
# Fill a fresh device once (allocates the backing file's blocks/pages), not measured.
prefill() { fio --name=prefill --filename="$1" --ioengine=io_uring --direct=1 --bs=1m --rw=write --iodepth=8 --size="$2" >/dev/null; }

# ---------------------------------------------------------------- runs
# run <step> <backing> <tool> <config> <rep> -- cmd...
# Runs cmd under /usr/bin/time (wall, user, sys, minor, major faults of the
# process and all its threads), keeps its stdout/stderr; one row in runs.tsv.
N=0
printf 'id\tstep\tbacking\ttool\tconfig\trep\n' > "$OUT/runs.tsv"
run() {
    local step=$1 backing=$2 tool=$3 config=$4 rep=$5
    shift 6
    N=$((N + 1))
    local id
    id=$(printf '%04d' $N)
    local rc=0
    /usr/bin/time -f '%e %U %S %R %F' -o "$OUT/raw/$id.time" "$@" >"$OUT/raw/$id.out" 2>"$OUT/raw/$id.err" || rc=$?
    echo "$rc" > "$OUT/raw/$id.rc"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$step" "$backing" "$tool" "$config" "$rep" >> "$OUT/runs.tsv"
    if [ "$rc" != 0 ]; then log "  run $id ($step $backing $tool $config) exited $rc: $(tail -2 "$OUT/raw/$id.err" | tr '\n' ' ')"; fi
    return 0
}
dmarec_rec() { # dmarec_rec <index> <bytes> <extra args...> -- targets...
    local idx=$1 size=$2
    shift 2
    local args=()
    while [ "$1" != -- ]; do args+=("$1"); shift; done
    shift
    local t=()
    for d in "$@"; do t+=(--target "$d"); done
    # shellcheck disable=SC2086
    echo "$DMAREC" record --source sim "${t[@]}" --index "$idx" --size "$size" --force --json --quiet $DMAREC_ARGS "${args[@]}"
}
fio_write() { # fio_write <dev> <qd> <bytes>
    echo fio --name=w --filename="$1" --ioengine=io_uring --direct=1 --fixedbufs=1 --registerfiles=1 \
        --bs=512k --rw=write --iodepth="$2" --size="$3" --output-format=json
}
fio_read() { # fio_read <dev> <qd> <offset> <bytes>
    echo fio --name=r --filename="$1" --ioengine=io_uring --direct=1 --fixedbufs=1 --registerfiles=1 \
        --bs=512k --rw=read --iodepth="$2" --offset="$3" --size="$4" --output-format=json
}
# alternate <step> <backing> <reps> <label>=<command> ...: rep r runs the
# commands rotated by r, so no tool always runs first or after the same one.
alternate() {
    local step=$1 backing=$2 reps=$3
    shift 3
    local items=("$@") n=$# r i k
    for ((r = 1; r <= reps; r++)); do
        log "  $step/$backing rep $r/$reps"
        for ((i = 0; i < n; i++)); do
            k=$(((i + r - 1) % n))
            local label=${items[$k]%%=*} cmd=${items[$k]#*=}
            # shellcheck disable=SC2086
            run "$step" "$backing" "${label%%:*}" "${label#*:}" "$r" -- $cmd
        done
    done
}
has_step() { [[ " $STEPS " == *" $1 "* ]]; }

for B in $BACKINGS; do
    [ "$B" = tmpfs ] && setup_tmpfs
    # The index beside the target on the same disk (INDEX_ON=same, default),
    # or on another device (INDEX_ON=other: the tmpfs), as in a deployment
    # where the targets are raw disks and the index is on the system disk.
    if [ "$B" = disk ] && [ "$INDEX_ON" = same ]; then IDXDIR=$DISK_WORK; else IDXDIR=$TMPFS; fi
    DEV=$(new_loop "$B" a "$DEV_B")
    log "backing $B: $DEV (dio), prefill"
    prefill "$DEV" "$DEV_B"

    # 1+2. record throughput and CPU, dmarec (current defaults) vs fio at every iodepth
    if has_step record; then
        items=("dmarec:default=$(dmarec_rec "$IDXDIR/r.idx" "$SIZE_B" -- "$DEV")")
        for q in $FIO_QDS; do items+=("fio:qd$q=$(fio_write "$DEV" "$q" "$SIZE_B")"); done
        # tiny runs: each tool's fixed start-up/teardown CPU, subtracted for the marginal CPU per GiB
        items+=("dmarec:tiny=$(dmarec_rec "$IDXDIR/t.idx" "$TINY_B" -- "$DEV")" "fio:tiny-qd8=$(fio_write "$DEV" 8 "$TINY_B")")
        alternate record "$B" "$REPS" "${items[@]}"
    fi

    # 1b. dmarec --queue-depth x --buffers sweep
    if has_step sweep; then
        items=()
        for q in $SWEEP_QDS; do for b in $SWEEP_BUFFERS; do
            items+=("dmarec:qd$q-b$b=$(dmarec_rec "$IDXDIR/s.idx" "$SIZE_B" --queue-depth "$q" --buffers "$b" -- "$DEV")")
        done; done
        alternate sweep "$B" "$SWEEP_REPS" "${items[@]}"
    fi

    # 3. page faults: whole-process faults (/usr/bin/time) at SIZE/2 and SIZE;
    # the difference over the extra buffers is the marginal fault rate,
    # independent of the recorder's own steady-state counter.
    if has_step faults; then
        half=$((SIZE_B / 2))
        items=("dmarec:half=$(dmarec_rec "$IDXDIR/f.idx" "$half" -- "$DEV")"
               "dmarec:full=$(dmarec_rec "$IDXDIR/f.idx" "$SIZE_B" -- "$DEV")")
        alternate faults "$B" "$REPS" "${items[@]}"
    fi

    # 1c. a card at a fixed rate: does a smaller ring lose buffers (overruns)?
    if has_step overrun; then
        items=()
        for b in $OVERRUN_BUFFERS; do
            q=16; [ "$b" -lt 16 ] && q=$b
            items+=("dmarec:rate$OVERRUN_RATE-b$b=$(dmarec_rec "$IDXDIR/o.idx" "$SIZE_B" --rate "$OVERRUN_RATE" --buffers "$b" --queue-depth "$q" -- "$DEV")")
        done
        alternate overrun "$B" "$REPS" "${items[@]}"
    fi

    # 5. dmaplay verify / export vs fio sequential read of the same bytes
    if has_step read || has_step reindex; then
        log "  read: recording $SIZE for the read steps"
        run readprep "$B" dmarec record 1 -- $(dmarec_rec "$IDXDIR/read.idx" "$SIZE_B" -- "$DEV")
        rec_bytes=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['bytes_written'])" "$OUT/raw/$(printf '%04d' $N).out")
        items=()
        for q in 8 16 32; do items+=("fio:read-qd$q=$(fio_read "$DEV" "$q" "$MIB" "$rec_bytes")"); done
        if has_step read; then
            if dmaplay_has verify; then
                items+=("dmaplay:verify=$DMAPLAY verify --quiet --json --index $IDXDIR/read.idx $DEV")
            else
                log "  read: dmaplay verify not available yet: measuring fio only"
            fi
            if dmaplay_has export; then
                # the exported files go to the tmpfs (RAM) for both backings, so
                # the export's own output costs a copy, not a second disk stream
                setup_tmpfs
                mkdir -p "$TMPFS/export"
                items+=("dmaplay:export=$DMAPLAY export --quiet --json --index $IDXDIR/read.idx $EXPORT_ARGS --out $TMPFS/export/x.raw $DEV")
            else
                log "  read: dmaplay export not available yet"
            fi
            alternate read "$B" "$REPS" "${items[@]}"
            [ -n "$TMPFS" ] && rm -rf "$TMPFS/export"
        fi
        # 6a. reindex: rebuild the index from the device
        if has_step reindex; then
            if dmaplay_has reindex; then
                alternate reindex "$B" "$REPS" \
                    "dmaplay:reindex=$DMAPLAY reindex --quiet --json --force --index $IDXDIR/reindexed.idx $DEV" \
                    "fio:read-qd16=$(fio_read "$DEV" 16 "$MIB" "$rec_bytes")"
            else
                log "  reindex: dmaplay reindex not available yet: skipped"
            fi
        fi
    fi
    drop_loop "$DEV"
    rm -f "$IDXDIR"/*.idx "$IDXDIR/a.img"

    # 7. stripe set of two loop devices vs fio on each alone and on both at once
    if has_step stripe; then
        half=$((SIZE_B / 2))
        half_dev=$(((DEV_B / 2 + 64 * MIB) / MIB * MIB))
        D1=$(new_loop "$B" s1 "$half_dev")
        D2=$(new_loop "$B" s2 "$half_dev")
        log "stripe $B: $D1 $D2, prefill"
        prefill "$D1" "$half_dev"
        prefill "$D2" "$half_dev"
        q=$(python3 "$REPO/bench/summarize.py" --best-fio-qd "$OUT" "$B" 2>/dev/null || echo 16)
        alternate stripe "$B" "$REPS" \
            "dmarec:stripe2=$(dmarec_rec "$IDXDIR/st.idx" "$SIZE_B" -- "$D1" "$D2")" \
            "fio:dev1-qd$q=$(fio_write "$D1" "$q" "$half")" \
            "fio:dev2-qd$q=$(fio_write "$D2" "$q" "$half")" \
            "fio:both-qd$q=fio --group_reporting --ioengine=io_uring --direct=1 --fixedbufs=1 --registerfiles=1 --bs=512k --rw=write --iodepth=$q --size=$half --output-format=json --name=a --filename=$D1 --name=b --filename=$D2"
        drop_loop "$D1"
        drop_loop "$D2"
        rm -f "$IDXDIR"/*.idx "$IDXDIR"/s1.img "$IDXDIR"/s2.img
    fi
done

# 6b. seek in an index of a 256 GiB recording, fresh process each time,
# cold (file evicted from the page cache) and warm; the index lives on the main disk.
if has_step seek; then
    log "seek: building a $SEEK_ENTRIES-entry index in $DISK_WORK"
    "$WORK/bin/seek-index" build "$DISK_WORK/seek.idx" "$SEEK_ENTRIES" > "$OUT/raw/seek-build.json"
    for ((i = 1; i <= SEEK_PROCS; i++)); do
        run seek disk seek-index cold-madv-random "$i" -- "$WORK/bin/seek-index" seek "$DISK_WORK/seek.idx" "$SEEK_WARM" "$i" --drop-cache --madv-random
        run seek disk seek-index cold "$i" -- "$WORK/bin/seek-index" seek "$DISK_WORK/seek.idx" "$SEEK_WARM" "$i" --drop-cache
        run seek disk seek-index warm "$i" -- "$WORK/bin/seek-index" seek "$DISK_WORK/seek.idx" "$SEEK_WARM" "$((i + 1000))"
    done
    # the reference: the same device's 4 KiB random read latency at depth 1
    run seek disk fio randread-4k-qd1 1 -- fio --name=lat --filename="$DISK_WORK/seek.idx" --ioengine=psync --direct=1 \
        --bs=4k --rw=randread --iodepth=1 --runtime=5 --time_based --output-format=json
fi

# CPU per GiB of the simulated card's fill and of the payload CRC, apart
# (one thread, no I/O), for the default ring and a small one.
if has_step payload; then
    alternate payload cpu "$REPS" \
        "payload-cost:b64=$WORK/bin/payload-cost 64 524288 $SIZE_B" \
        "payload-cost:b16=$WORK/bin/payload-cost 16 524288 $SIZE_B"
fi

log "summarizing"
python3 "$REPO/bench/summarize.py" "$OUT" | tee "$OUT/summary.md"
log "done: $OUT/summary.md"
