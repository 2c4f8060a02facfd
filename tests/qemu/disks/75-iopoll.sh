#!/bin/sh
# dmarec --iopoll (io_uring IORING_SETUP_IOPOLL) on an NVMe namespace with
# poll queues. First, without poll queues (the nvme driver as loaded at
# boot), --iopoll must be refused naming nvme.poll_queues, nothing written.
# Then the nvme driver is reloaded with poll_queues=1 (the guest loads
# modules with insmod, which does not read nvme.poll_queues= from the kernel
# command line): queue/io_poll becomes 1, a recording with --iopoll (and one
# with --iopoll --sqpoll --register-ring-fd) must verify with dmaplay, and its
# slot writes must complete without interrupts (polled on the poll queue, which
# has none): at queue depth 1 (no completions to coalesce) the nvme I/O
# queues' interrupts must grow by at least half the slots without --iopoll (the
# count sees the writes) and by less than an eighth with it (superblocks,
# scan table and flushes go through the interrupt queues).
# Speed in TCG says nothing about a real device; none is measured here. The
# driver is reloaded without poll queues at the end.
set -eu
T=75-iopoll
. /opt/dmarec/disklib

nvme_reload() { # nvme_reload [PARAM=VALUE]: rmmod + insmod nvme, wait for its namespaces
	# A ring's teardown ends after its process (io_uring's exit work,
	# the SQPOLL thread): the module stays busy until then. Bounded: 10 s.
	i=0
	until rmmod nvme 2>/tmp/rmmod.err; do
		i=$((i + 1))
		[ $i -lt 100 ] || fail "rmmod nvme: $(cat /tmp/rmmod.err)"
		sleep 0.1
	done
	# shellcheck disable=SC2086
	insmod /lib/modules/nvme.ko $* || fail "insmod nvme $*"
	i=0
	while { [ ! -b /dev/nvme0n1 ] || [ ! -b /dev/nvme0n2 ]; } && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i + 1))
	done
	[ -b /dev/nvme0n1 ] && [ -b /dev/nvme0n2 ] || fail "nvme namespaces did not come back after insmod nvme $*"
}
reloaded=0
trap 'if [ $reloaded = 1 ]; then nvme_reload; fi' EXIT

# Interrupts of the nvme controller's I/O queues (nvme0q1.., not the admin queue q0).
nvme_io_irqs() {
	awk '$NF ~ /^nvme0q[1-9][0-9]*$/ { for (i = 2; $i ~ /^[0-9]+$/; i++) s += $i }
		END { print s + 0 }' /proc/interrupts
}
io_poll() { cat "/sys/block/${1##*/}/queue/io_poll"; }

ns=$(nvme_ns 1)
# ---- no poll queues: refused, nothing written ----
[ "$(io_poll $ns)" = 0 ] || fail "$ns: queue/io_poll is $(io_poll $ns) before poll queues were asked for"
dd if=$ns bs=64K count=16 2>/dev/null | md5sum >/tmp/before
rc=0
record $ns -- --size 1M --iopoll || rc=$?
[ $rc = 1 ] || fail "--iopoll without poll queues: dmarec exited $rc, expected 1: $(cat /tmp/r.err)"
grep -q "has no poll queues" /tmp/r.err && grep -q "nvme.poll_queues" /tmp/r.err ||
	fail "--iopoll without poll queues: message lacks the reason or the fix: $(cat /tmp/r.err)"
dd if=$ns bs=64K count=16 2>/dev/null | md5sum | cmp -s - /tmp/before || fail "refused --iopoll wrote to $ns"
say "without poll queues: refused: $(cat /tmp/r.err)"

# ---- poll queues ----
reloaded=1
nvme_reload poll_queues=1
ns=$(nvme_ns 1)
[ "$(io_poll $ns)" = 1 ] || fail "$ns: queue/io_poll is $(io_poll $ns) with poll_queues=1"

# polled_run NAME DMAREC-ARGS...: 16 MiB (256 slots of 64 KiB) recorded at
# queue depth 1 and verified; sets irqs and setup
polled_run() {
	name=$1; shift
	i0=$(nvme_io_irqs)
	rm -f /tmp/r.idx /tmp/r.json
	dmarec record --source sim --target $ns --index /tmp/r.idx --force --quiet --json \
		--payload-size 64K --buffers 16 --queue-depth 1 --size 16M "$@" >/tmp/r.json 2>/tmp/r.err ||
		fail "$name: dmarec exited $?: $(cat /tmp/r.err)"
	irqs=$(($(nvme_io_irqs) - i0))
	slots=$(field slots /tmp/r.json)
	[ "$slots" = 256 ] || fail "$name: $slots slots, expected 256"
	checked=$(verify $ns)
	[ "$checked" = 256 ] || fail "$name: verify checked $checked of 256 slots"
	setup=$(field io_uring_setup /tmp/r.json)
}
polled_run interrupts
irqs_plain=$irqs
case $setup in iopoll*) fail "without --iopoll: io_uring_setup is $setup" ;; esac
polled_run iopoll --iopoll
irqs_polled=$irqs
case $setup in iopoll+*", journal ring "*) ;; *) fail "--iopoll: io_uring_setup is '$setup'" ;; esac
say "--iopoll: 256 slots verified ($setup); nvme I/O queue interrupts: $irqs_polled with --iopoll, $irqs_plain without"
[ "$irqs_plain" -ge 128 ] || fail "without --iopoll only $irqs_plain interrupts for 256 slot writes: the count does not see the writes"
[ "$irqs_polled" -lt 32 ] ||
	fail "--iopoll: $irqs_polled interrupts for 256 slot writes ($irqs_plain without): the slot writes were not polled"
polled_run all --iopoll --sqpoll --register-ring-fd
case $setup in sqpoll+iopoll+*) ;; *) fail "--iopoll --sqpoll: io_uring_setup is '$setup'" ;; esac
say "--iopoll --sqpoll --register-ring-fd: 256 slots verified ($setup, $irqs interrupts)"
