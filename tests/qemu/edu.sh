#!/bin/bash
# The edu PCI card backend (kmod/dmarec-edu.c) in the three DMA setups that
# matter, one boot each per kernel (run.sh options, e.g. -k VER, pass on):
#   iommu    q35 + intel-iommu (DMA remapping; interrupt remapping off),
#            intel_iommu=on iommu.strict=1, edu's default
#            28-bit DMA mask (the IOMMU maps below it); a DMAR fault fails
#   direct   no IOMMU, edu with a 64-bit DMA mask (and a 28-bit driver
#            setting refused)
#   swiotlb  no IOMMU, swiotlb=force: zero copy refused
# The first two boot with page_poison=1 init_on_free=1.
# EDU_CONFIGS="iommu direct" limits the boots; EDU_RECORD=1 adds
# tests/qemu/edu-record (needs -a dmarec -a dmaplay).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dirs=(-g "$here/edu")
glob='6[0-9]-edu*'
if [ "${EDU_RECORD:-0}" = 1 ]; then
	dirs+=(-g "$here/edu-record")
fi
# freed pages poisoned and checked: a DMA or CPU write after free shows
poison="page_poison=1 init_on_free=1"
rc=0
for cfg in ${EDU_CONFIGS:-iommu direct swiotlb}; do
	case "$cfg" in
	# intremap=off: with interrupt remapping the TCG guest's IO-APIC timer
	# check can panic under load ("timer doesn't work through
	# Interrupt-remapped IO-APIC", seen here); DMA remapping is what we test
	iommu) qemu="-device intel-iommu,intremap=off -device edu"; append="intel_iommu=on iommu.strict=1 $poison" ;;
	direct) qemu="-device edu,dma_mask=0xffffffffffffffff"; append="$poison" ;;
	swiotlb) qemu="-device edu,dma_mask=0xffffffffffffffff"; append="swiotlb=force" ;;
	*) echo "edu.sh: unknown config $cfg" >&2; exit 2 ;;
	esac
	echo "=== edu config $cfg: $qemu ${append:+(append $append)}"
	DMAREC_QEMU_ARGS="$qemu" DMAREC_APPEND="$append" \
		"$here/run.sh" "${dirs[@]}" -t "$glob" "$@" || rc=1
done
exit $rc
