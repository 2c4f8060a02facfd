#!/bin/sh
# dmarec records from QEMU's edu PCI card (bus-master DMA into the ring,
# MSI completion) to the guest's disk, and dmaplay verifies every payload
# against the card's pattern. Memory modes as 50-record: USERPTR always,
# MMAP where the kernel registers driver pages (6.5+). With swiotlb=force
# the recording must be refused with the driver's reason.
set -eu
fail() { echo "65-edu-record: FAIL: $*"; exit 1; }
field() { sed -n "s/^  \"$1\": \"\{0,1\}\(.*\)/\1/p" "$2" | head -n1 | sed 's/,$//; s/"$//'; }
edu_bdf() {
	for d in /sys/bus/pci/devices/*; do
		if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then
			basename "$d"
			return 0
		fi
	done
	return 1
}
grep -q 'intel_iommu=on' /proc/cmdline && iommu=1 || iommu=0
grep -q 'swiotlb=force' /proc/cmdline && swiotlb_force=1 || swiotlb_force=0
bdf=$(edu_bdf) || fail "no edu PCI device"
if [ "$iommu" = 1 ]; then insmod "$DMAREC_KO" cards=0; else insmod "$DMAREC_KO" cards=0 edu_dma_bits=64; fi
node=/dev/$(ls "/sys/bus/pci/devices/$bdf/misc" | head -n1)
[ -c "$node" ] || fail "no node for $bdf"
major=${KVER_MAJOR_MINOR%%.*}
minor=${KVER_MAJOR_MINOR#*.}
if [ "$major" -gt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -ge 5 ]; }; then modes="auto userptr mmap"; else modes="auto userptr"; fi

record() { # mode
	rm -f /tmp/r.idx /tmp/r.json
	dmarec record --source "$node" --memory "$1" --target "$DMAREC_DISK" --index /tmp/r.idx \
		--force --quiet --json --payload-size 4K --buffers 8 --queue-depth 4 --size 128K >/tmp/r.json
}

if [ "$swiotlb_force" = 1 ]; then
	if record userptr 2>/tmp/err; then fail "recording with swiotlb=force succeeded"; fi
	grep -q "refuses zero copy" /tmp/err || fail "refusal not explained: $(cat /tmp/err)"
	echo "65-edu-record: swiotlb=force refused: $(head -c 300 /tmp/err)"
	rmmod dmarec
	exit 0
fi
for mode in $modes; do
	record "$mode" || fail "dmarec --memory $mode from $node exited $?"
	slots=$(field slots /tmp/r.json)
	inplace=$(field writes_from_card_buffers /tmp/r.json)
	mem=$(field memory /tmp/r.json)
	lost=$(field buffers_lost /tmp/r.json)
	after=$(field buffers_lost_after_last_slot /tmp/r.json)
	overruns=$(field card_overruns /tmp/r.json)
	echo "65-edu-record: --memory $mode: memory $mem, $slots slots, $inplace writes from the card's buffers in place, card overruns $overruns = $lost in gaps + $after after the last slot"
	[ "$slots" = 32 ] || fail "expected 32 slots, got $slots"
	[ "$inplace" = 32 ] || fail "$inplace of 32 writes read the card's buffers in place"
	[ "$overruns" = $((lost + after)) ] || fail "driver overruns $overruns != $lost + $after"
	dmaplay verify "$DMAREC_DISK" --index /tmp/r.idx --pattern --quiet || fail "dmaplay verify --pattern after --memory $mode"
done
rmmod dmarec
echo "65-edu-record: PASS"
