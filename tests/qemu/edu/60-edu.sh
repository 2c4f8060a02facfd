#!/bin/sh
# QEMU's edu PCI card as a dmarec card (kmod/dmarec-edu.c), in the boot's
# configuration (tests/qemu/edu.sh boots three): under an IOMMU with the
# card's default 28-bit DMA mask; without an IOMMU with a 64-bit mask (and
# the 28-bit mask refused); with swiotlb=force (refused). Streams in both
# memory modes with every byte checked, overruns, SIGKILL during DMA,
# sysfs unbind/rebind while streaming, rmmod refused while streaming.
set -eu
fail() { echo "60-edu: FAIL: $*"; exit 1; }
drv=/sys/bus/pci/drivers/dmarec
# edu_bdf: the PCI address of the (first) edu device, bound or not
edu_bdf() {
	for d in /sys/bus/pci/devices/*; do
		if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then
			basename "$d"
			return 0
		fi
	done
	return 1
}
# edu_node BDF: /dev/dmarecN of the bound card (waits for the node)
edu_node() {
	i=0
	while [ $i -lt 50 ]; do
		n=$(ls "/sys/bus/pci/devices/$1/misc" 2>/dev/null | head -n1)
		if [ -n "$n" ] && [ -c "/dev/$n" ]; then
			echo "/dev/$n"
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
# the boot's configuration, from the kernel command line
grep -q 'intel_iommu=on' /proc/cmdline && iommu=1 || iommu=0
grep -q 'swiotlb=force' /proc/cmdline && swiotlb_force=1 || swiotlb_force=0
# dmesg lines since the last mark (the log itself is never cleared: the
# final dump must still show every warning)
mark() { since=$(dmesg | wc -l); }
newlog() { dmesg | tail -n +$((since + 1)); }
bdf=$(edu_bdf) || fail "no edu PCI device (QEMU -device edu missing?)"
echo "60-edu: edu at $bdf, iommu=$iommu swiotlb_force=$swiotlb_force"

refused() { # $1: module parameters; zero copy must be refused with a reason
	mark
	insmod "$DMAREC_KO" $1
	node=$(edu_node "$bdf") || fail "no node for $bdf ($1)"
	dmarec-test -d "$node" edu-refuse || fail "edu-refuse on $node ($1)"
	newlog | grep -q "zero copy refused" || fail "no refusal message in dmesg ($1)"
	echo "60-edu: $1: $(newlog | grep -o 'zero copy refused.*' | head -n1)"
	rmmod dmarec
}

if [ "$swiotlb_force" = 1 ]; then
	refused "edu_dma_bits=64"
	echo "60-edu: swiotlb=force: refused, as expected"
	exit 0
fi
if [ "$iommu" = 0 ]; then
	# QEMU's edu runs with dma_mask=64 bits here; a driver that believes
	# 28 bits and has no IOMMU must refuse instead of bouncing
	refused "edu_dma_bits=28"
	params="edu_dma_bits=64"
else
	params=""	# the default 28 bits: the IOMMU maps below them
fi

mark
insmod "$DMAREC_KO" $params
node=$(edu_node "$bdf") || fail "no device node for $bdf"
newlog | grep "edu card" || fail "no probe message"
if [ "$iommu" = 1 ]; then
	newlog | grep -q "IOMMU translation" || fail "card not behind the IOMMU"
else
	newlog | grep -q "no IOMMU" || fail "IOMMU where none was expected"
fi
dmarec-test -d "$node" edu || fail "dmarec-test edu"
# the card's MSI: under the IOMMU it goes through interrupt remapping
# (edu.sh boots intel-iommu,intremap=on), without one it is plain PCI-MSI
irqline=$(grep 'dmarec-edu' /proc/interrupts) || fail "no dmarec-edu line in /proc/interrupts"
echo "60-edu: $irqline"
if [ "$iommu" = 1 ]; then
	dmesg | grep -q 'Enabled IRQ remapping' || fail "interrupt remapping is off (QEMU -device intel-iommu,intremap=on expected)"
	echo "$irqline" | grep -q 'IR-PCI-MSI' || fail "the edu card's MSI bypasses interrupt remapping"
fi
# random ioctls and mmaps from two threads and two files against real DMA
# (streams started and stopped at random points of a transfer)
dmarec-test -d "$node" fuzz 2000 || fail "fuzz on the edu card"

# unbind while streaming, both memory modes; rebind gives a working card
for mem in mmap userptr; do
	: >/tmp/unbind.log
	dmarec-test -d "$node" edu-unbind $mem >/tmp/unbind.log 2>&1 &
	pid=$!
	i=0
	while ! grep -q ready /tmp/unbind.log && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	grep -q ready /tmp/unbind.log || { cat /tmp/unbind.log; fail "unbind helper did not start"; }
	sleep 1		# a few transfers in flight
	echo "$bdf" >"$drv/unbind"
	wait $pid || { cat /tmp/unbind.log; fail "edu-unbind $mem"; }
	tail -n1 /tmp/unbind.log
	[ ! -e "$node" ] || fail "$node still there after unbind"
	echo "$bdf" >"$drv/bind"
	node=$(edu_node "$bdf") || fail "no node after rebind"
	echo "60-edu: unbind/rebind while streaming ($mem): card back as $node"
done

# ATTACH (pinning fresh memory) in a loop while the card is unbound through
# sysfs, then rebound: every pin comes back (VmPin, FOLL_PIN counts)
dmarec-test edu-attach-race "$bdf" || fail "ATTACH vs. unbind race"
node=$(edu_node "$bdf") || fail "no node after the ATTACH race"

# rmmod is refused while a process streams from the card
: >/tmp/unbind.log
dmarec-test -d "$node" edu-unbind mmap >/tmp/unbind.log 2>&1 &
pid=$!
i=0
while ! grep -q ready /tmp/unbind.log && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
if rmmod dmarec 2>/dev/null; then fail "rmmod while streaming succeeded"; fi
kill -9 $pid
wait $pid || true
rmmod dmarec
[ ! -e "$node" ] || fail "$node left after rmmod"
echo "60-edu: PASS"
