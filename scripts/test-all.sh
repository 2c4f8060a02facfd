#!/usr/bin/env bash
# Every test: install what is missing, unit/property tests, bounded fuzzing
# of the format parsers, end-to-end tests on loop devices, and the driver in
# Debian's 6.1 and 6.12 kernels under QEMU. Bounded: ~15-30 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n=== %s\n' "$*"; }

step "dependencies"
bash scripts/install-deps.sh

step "build"
cargo build --release --workspace --all-targets

step "unit, property and end-to-end tests"
cargo test --release --workspace

step "packaging: .deb contents, man pages, completions, systemd-analyze verify, DKMS for both kernels"
bash scripts/test-packaging.sh

step "fuzz the format parsers (bounded)"
for t in superblock slot index scantable; do
  cargo run --release -q -p dmarec-formats --example fuzz -- "$t" "${FUZZ_ITERATIONS:-300000}"
done

step "kernel driver and recorder in QEMU (Debian 6.1 and 6.12)"
# The driver's own tests, plus dmarec recording from /dev/dmarec0 in every
# memory mode and dmaplay verifying it, inside each guest; then a second boot
# per kernel with real disks (tests/qemu/disks/qemu.conf): AHCI, virtio-scsi,
# a GPT partition, NVMe 512/4096, a stripe, NVMe/TCP, a dm-log-writes power
# cut, failing disks and refusals.
bash tests/qemu/run.sh -a target/release/dmarec -a target/release/dmaplay \
  -g tests/qemu/recorder -g tests/qemu/disks

step "QEMU's edu PCI card: IOMMU, direct DMA, swiotlb refusal (Debian 6.1 and 6.12)"
# Real bus-master DMA into the ring with MSI, recorded by dmarec, verified by dmaplay.
EDU_RECORD=1 bash tests/qemu/edu.sh -a target/release/dmarec -a target/release/dmaplay

step "all tests passed"
