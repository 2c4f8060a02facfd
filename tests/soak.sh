#!/usr/bin/env bash
# Soak run (not in CI): ring mode for SOAK_MINUTES (default 30) on a loop
# device, sampling dmarec's RSS, open fds and locked (pinned) memory every
# SAMPLE_S seconds, then verifying the live slots with the formats checker
# (dmaplay verify when available). Prints a table for docs/RELIABILITY.md.
#   usage: sudo bash tests/soak.sh [minutes]    env: RATE_MB=200 DEVICE_GIB=2
#          BUFFERS=auto FILL_ONCE=0 (1: the card fills each buffer once, as a
#          DMA engine costs the host no CPU; then verify checks CRCs, not the pattern)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-${SOAK_MINUTES:-30}}
rate=${RATE_MB:-200}
gib=${DEVICE_GIB:-2}
sample_s=${SAMPLE_S:-10}
buffers=${BUFFERS:-auto}
fill_once=${FILL_ONCE:-0}
extra=()
verify=(--pattern)
if [ "$fill_once" = 1 ]; then extra=(--sim-fill-once); verify=(); fi
cargo build --release -q -p dmarec-recorder
work=$(mktemp -d /var/tmp/dmarec-soak.XXXXXX)
dev=""
cleanup() { [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
truncate -s "${gib}G" "$work/disk.img"
dev=$(losetup -f --show --direct-io=on "$work/disk.img")
target/release/dmarec record --target "$dev" --index "$work/soak.idx" --force --on-full wrap \
  --rate "$rate" --duration $((minutes * 60)) --buffers "$buffers" "${extra[@]}" --status-interval 60 \
  --json > "$work/summary.json" 2> "$work/status.log" &
pid=$!
echo "# soak: ${minutes} min, ring mode, ${rate} MB/s, ${gib} GiB loop device $dev, pid $pid"
printf '%8s %10s %6s %10s\n' elapsed_s rss_kib fds locked_kib
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
  if [ -r /proc/$pid/status ]; then
    rss=$(awk '/^VmRSS:/{print $2}' /proc/$pid/status 2>/dev/null || echo -)
    lck=$(awk '/^VmLck:/{print $2}' /proc/$pid/status 2>/dev/null || echo -)
    fds=$(ls /proc/$pid/fd 2>/dev/null | wc -l)
    printf '%8d %10s %6s %10s\n' $(( $(date +%s) - start )) "$rss" "$fds" "$lck"
  fi
  sleep "$sample_s"
done
wait "$pid"; echo "# dmarec exit status $?"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("# " + ", ".join(f"{k}={d[k]}" for k in ["stop_reason","slots","ring_laps","rate_mb_per_s","buffers","buffers_lost","index_entries_durable","faults_per_1000_buffers","cpu_s_per_gib"]) + "; stalls: " + ", ".join(f"{k}={v}" for k, v in d["stalls"].items()))' "$work/summary.json"
grep -E "^dmarec: (ring|[0-9]+ s )" "$work/status.log" | sed 's/^/# /' 
if target/release/dmaplay --help >/dev/null 2>&1; then
  target/release/dmaplay verify "$dev" --index "$work/soak.idx" "${verify[@]}" && echo "# dmaplay verify ${verify[*]}: OK"
fi
