#!/bin/sh
# Suspend while streaming: the simulated card (a freezable kthread, paced)
# and the edu card (bus-master DMA, MSI) each stream to a dmarec-test while
# the guest goes through `echo freeze > /sys/power/state` with pm_test at
# "freezer" (tasks frozen and thawed) and at "devices" (every device's
# suspend and resume callbacks run: PCI disables bus mastering of a device
# whose driver does not stop it), then `echo disk` (hibernation) at
# "devices" (the freeze and thaw callbacks; no image is written). Both streams must go on afterwards with
# every byte right and every lost buffer counted (dmarec-test
# suspend-stream); the guest log must stay clean (run.sh).
set -eu
fail() { echo "62-edu-suspend: FAIL: $*"; exit 1; }
if [ ! -e /sys/power/pm_test ] || ! grep -qw freeze /sys/power/state ||
	! grep -qw disk /sys/power/state; then
	# Debian's 6.1 and 6.12 have CONFIG_PM_DEBUG, suspend-to-idle and
	# hibernation
	fail "no /sys/power/pm_test or no freeze/disk in /sys/power/state ($(cat /sys/power/state); CONFIG_PM_DEBUG, CONFIG_SUSPEND, CONFIG_HIBERNATION)"
fi
bdf=
for d in /sys/bus/pci/devices/*; do
	if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then
		bdf=$(basename "$d")
	fi
done
[ -n "$bdf" ] || fail "no edu PCI device"
if grep -q 'swiotlb=force' /proc/cmdline; then
	echo "62-edu-suspend: swiotlb=force: the edu card refuses zero copy, nothing to stream"
	exit 0
fi
grep -q 'intel_iommu=on' /proc/cmdline && params="" || params="edu_dma_bits=64"
insmod "$DMAREC_KO" $params
i=0
while [ ! -c /dev/dmarec0 ] || [ -z "$(ls "/sys/bus/pci/devices/$bdf/misc" 2>/dev/null)" ]; do
	[ $i -lt 50 ] || fail "no device nodes"
	sleep 0.1
	i=$((i + 1))
done
edu=/dev/$(ls "/sys/bus/pci/devices/$bdf/misc" | head -n1)
sim=/dev/dmarec0
[ "$edu" != "$sim" ] || fail "edu card is $sim"

wait_ready() { # $1: log
	i=0
	while ! grep -q ready "$1" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	grep -q ready "$1" || { cat "$1"; fail "stream did not start ($1)"; }
}
for cycle in freeze:freezer freeze:devices disk:devices; do
	state=${cycle%%:*} level=${cycle#*:}
	rm -f /tmp/resumed
	dmarec-test -d "$sim" suspend-stream /tmp/resumed >/tmp/susp-sim.log 2>&1 &
	psim=$!
	dmarec-test -d "$edu" suspend-stream /tmp/resumed >/tmp/susp-edu.log 2>&1 &
	pedu=$!
	wait_ready /tmp/susp-sim.log
	wait_ready /tmp/susp-edu.log
	sleep 1		# edu transfers in flight, sim buffers due
	echo "$level" >/sys/power/pm_test
	echo 1 >/sys/module/suspend/parameters/pm_test_delay 2>/dev/null || true
	echo "$state" >/sys/power/state || fail "$state (pm_test=$level) failed"
	echo none >/sys/power/pm_test
	touch /tmp/resumed
	rc=0
	wait $psim || rc=1
	cat /tmp/susp-sim.log
	wait $pedu || rc=1
	cat /tmp/susp-edu.log
	[ $rc = 0 ] || fail "stream across $state (pm_test=$level)"
	echo "62-edu-suspend: $state, pm_test=$level: both cards streamed through"
done
rmmod dmarec
echo "62-edu-suspend: PASS"
