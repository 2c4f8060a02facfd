# shellcheck shell=bash
# Set-up shared by the benchmark scripts that record on a loop device and
# keep scratch data in a tmpfs (bench/uring.sh, bench/readout.sh). Sourced:
#
#   . "$REPO/bench/lib.sh"
#   bench_require NAME                  root, fio, python3, /usr/bin/time, losetup
#   bench_scratch NAME TMPFS_BYTES      WORK (in DISK_DIR), TMPFS (a tmpfs of TMPFS_BYTES),
#                                       $OUT/raw; everything removed on exit
#   bench_machine "COMMAND" PATHS...    $OUT/machine.txt (git status of PATHS)
#   bench_loop IMAGE BYTES              LOOP: IMAGE made BYTES big, attached with
#                                       direct I/O and written once (no sparse reads)
#   log MESSAGE                         to stderr and $OUT/log.txt
#
# The loop device in LOOP and the mount in MOUNTED are released on exit,
# also when a step fails; a script that detaches LOOP itself clears it.
# Directories a script adds to BENCH_EXTRA_DIRS are removed then too.

bench_require() { # bench_require NAME
    local name=$1 t
    [ "$(id -u)" = 0 ] || { echo "bench/$name.sh: needs root (losetup, mount)" >&2; exit 1; }
    for t in fio python3 /usr/bin/time losetup; do
        command -v "$t" >/dev/null || { echo "bench/$name.sh: $t missing (apt-get install -y fio time python3)" >&2; exit 1; }
    done
}

bench_cleanup() {
    set +e
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    [ -n "$MOUNTED" ] && umount "$MOUNTED"
    rm -rf "$WORK" "$TMPFS" ${BENCH_EXTRA_DIRS:-}
}

bench_scratch() { # bench_scratch NAME TMPFS_BYTES
    local name=$1 tmpfs_bytes=$2
    WORK=$(mktemp -d "$DISK_DIR/dmarec-$name.XXXXXX")
    TMPFS=$(mktemp -d "/dev/shm/dmarec-$name.XXXXXX" 2>/dev/null || mktemp -d)
    LOOP=""
    MOUNTED=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    mount -t tmpfs -o size="$tmpfs_bytes" "dmarec-$name" "$TMPFS"
    MOUNTED=$TMPFS
    mkdir -p "$OUT/raw"
}

bench_need_ram() { # bench_need_ram BYTES WHAT: refuse to start without BYTES of RAM available
    local bytes=$1 what=$2 avail_kib
    avail_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    if [ $((avail_kib * 1024)) -lt "$bytes" ]; then
        echo "$what needs $((bytes >> 20)) MiB of RAM and $((avail_kib >> 10)) MiB are available: use a smaller SIZE" >&2
        exit 1
    fi
}

log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt" >&2; }

bench_machine() { # bench_machine "COMMAND" PATHS...
    local command=$1
    shift
    {
        echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
        echo "command: $command"
        echo "git: $(git rev-parse --short HEAD); uncommitted: $(git status --short -- "$@" | tr '\n' ' ')"
        echo "cores: $(nproc), kernel $(uname -r), fio $(fio --version)"
        echo "disk: $DISK_DIR on $(df --output=source "$DISK_DIR" | tail -1) ($(df --output=fstype "$DISK_DIR" | tail -1))"
        echo "load_at_start: $(cut -d' ' -f1-3 /proc/loadavg)"
    } > "$OUT/machine.txt"
}

bench_loop() { # bench_loop IMAGE BYTES
    local image=$1 bytes=$2
    truncate -s "$bytes" "$image"
    LOOP=$(losetup -f --show --direct-io=on "$image")
    fio --name=prefill --filename="$LOOP" --ioengine=io_uring --direct=1 --bs=1m --rw=write \
        --iodepth=8 --size="$bytes" >/dev/null
}
