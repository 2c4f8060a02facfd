#!/usr/bin/env bash
# The main job on the embedded default: the simulated card records for 10 s
# (or 2 GiB) to a loop device (as root) or a preallocated file, then dmaplay
# inspects and verifies every slot. Everything is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace -q
bin=target/release
work=$(mktemp -d "${TMPDIR:-/tmp}/dmarec-demo.XXXXXX")
loopdev=""
cleanup() {
  [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

truncate -s 3G "$work/disk.img"
if [ "$(id -u)" -eq 0 ] && loopdev=$(losetup -f --show --direct-io=on "$work/disk.img" 2>/dev/null); then
  target=$loopdev
  echo "demo: recording to loop device $target (3 GiB, backed by $work/disk.img)"
else
  loopdev=""
  rm -f "$work/disk.img"
  target=$work/disk.img
  echo "demo: recording to file $target (3 GiB; run as root to use a loop device)"
  extra=(--file-size 3G)
fi
"$bin/dmarec" record --source sim --channels 4 --target "$target" ${extra[@]+"${extra[@]}"} \
  --index "$work/rec.idx" --duration 10 --size 2G --status-interval 2
echo
"$bin/dmaplay" inspect "$target" --index "$work/rec.idx"
echo
"$bin/dmaplay" verify "$target" --index "$work/rec.idx" --pattern
