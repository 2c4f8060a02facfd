#!/bin/bash
# The edu PCI card backend (kmod/dmarec-edu.c) in the three DMA setups that
# matter, one boot each per kernel (run.sh options, e.g. -k VER, pass on):
#   iommu    q35 + intel-iommu (DMA and interrupt remapping: the MSI too),
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
	# interrupt remapping on (xAPIC mode: QEMU 7.2 allows eim=on only with
	# KVM's split irqchip). no_timer_check: at boot the kernel checks that
	# the PIT ticks 4 times within ~160M TSC cycles (timer_irq_works); a
	# TCG vCPU on a loaded host misses that, and with interrupt remapping
	# on the kernel may not fall back to the 8259A and panics instead
	# ("timer doesn't work through Interrupt-remapped IO-APIC", seen here)
	iommu) qemu="-device intel-iommu,intremap=on -device edu"; append="intel_iommu=on iommu.strict=1 no_timer_check $poison" ;;
	direct) qemu="-device edu,dma_mask=0xffffffffffffffff"; append="$poison" ;;
	swiotlb) qemu="-device edu,dma_mask=0xffffffffffffffff"; append="swiotlb=force" ;;
	*) echo "edu.sh: unknown config $cfg" >&2; exit 2 ;;
	esac
	echo "=== edu config $cfg: $qemu ${append:+(append $append)}"
	DMAREC_QEMU_ARGS="$qemu" DMAREC_APPEND="$append" \
		"$here/run.sh" "${dirs[@]}" -t "$glob" "$@" || rc=1
done
exit $rc
