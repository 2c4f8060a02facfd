#!/bin/sh
# Recording through real block drivers: /dev/sdX via AHCI and via
# virtio-scsi, a GPT partition, NVMe with 512 and 4096-byte logical blocks,
# a stripe over an sd disk and an NVMe namespace of unequal sizes, and
# NVMe over Fabrics (nvmet-tcp exporting /dev/vdc, nvme-tcp connecting over
# loopback). On each: a recording verified with --pattern, then a SIGKILL
# mid-recording, `dmaplay reindex` and verify; and how many write requests
# one slot became (diskstats) against the queue's max_sectors_kb.
set -eu
T=70-drivers
. /opt/dmarec/disklib
NQN=nqn.2026-11.org.dmarec:nvmet-vdc
cleanup() {
	[ -e /sys/class/nvme-fabrics/ctl ] && for c in /sys/class/nvme/nvme*; do
		[ "$(cat $c/transport 2>/dev/null)" = tcp ] && echo 1 >$c/delete_controller 2>/dev/null
	done
	cfs=/sys/kernel/config/nvmet
	rm -f $cfs/ports/1/subsystems/$NQN 2>/dev/null
	rmdir $cfs/ports/1 $cfs/subsystems/$NQN/namespaces/1 $cfs/subsystems/$NQN 2>/dev/null
	true
}
trap cleanup EXIT

# stats_sum TARGET...: write requests, merges and sectors written, summed
stats_sum() {
	for t in "$@"; do stats_of $t; done | awk '{ w += $1; m += $2; s += $3 } END { print w, m, s }'
}
# ratio A B: A/B with two decimals
ratio() { printf '%d.%02d' $(($1 / $2)) $(($1 * 100 / $2 % 100)); }

# one_target NAME TARGET...: record + verify, SIGKILL + reindex + verify
one_target() {
	name=$1; shift
	stats_sum "$@" >/tmp/ds0
	record "$@" -- --size 8M || fail "$name: dmarec exited $?: $(cat /tmp/r.err)"
	slots=$(field slots /tmp/r.json)
	[ "$slots" = 128 ] || fail "$name: $slots slots, expected 128 (8 MiB of 64 KiB)"
	stats_sum "$@" >/tmp/ds1
	checked=$(verify "$@")
	[ "$checked" = "$slots" ] || fail "$name: verify checked $checked of $slots slots"
	read -r w0 m0 s0 </tmp/ds0
	read -r w1 m1 s1 </tmp/ds1
	writes=$((w1 - w0)) merged=$((m1 - m0)) sectors=$((s1 - s0))
	# 68 KiB (136 sectors) per slot at least: diskstats of the right device
	[ "$sectors" -ge $((slots * 136)) ] || fail "$name: $sectors sectors written for $slots slots (diskstats of the wrong device?)"
	geo=
	for t in "$@"; do
		d=${t##*/}
		[ -e /sys/class/block/$d/partition ] && d=$(basename "$(dirname "$(readlink -f /sys/class/block/$d)")")
		geo="$geo ${t##*/}: lbs $(cat /sys/block/$d/queue/logical_block_size), max_sectors_kb $(cat /sys/block/$d/queue/max_sectors_kb);"
	done
	say "$name: $slots slots of 68 KiB verified; $writes write requests ($merged merges) = $(ratio $writes $slots) per slot, superblocks included;$geo"

	# SIGKILL mid-recording, once the target has taken 20 more writes
	rm -f /tmp/r.idx
	dmarec record --source sim $(for t in "$@"; do printf -- '--target %s ' $t; done) --index /tmp/r.idx \
		--force --quiet --payload-size 64K --buffers 16 --queue-depth 8 --size 16M --rate 4 \
		2>/tmp/r.err &
	pid=$!
	i=0
	while [ $i -lt 300 ]; do
		w=$(stats_sum "$@" | cut -d' ' -f1)
		[ $((w - w1)) -ge 20 ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1; i=$((i + 1))
	done
	kill -9 $pid 2>/dev/null || fail "$name: dmarec ended before the SIGKILL: $(cat /tmp/r.err)"
	wait $pid 2>/dev/null || true
	dmaplay reindex "$@" --index /tmp/r.idx --force --quiet --json >/tmp/re.json 2>/tmp/re.err ||
		fail "$name: reindex after SIGKILL: $(cat /tmp/re.err)"
	found=$(field slots_indexed /tmp/re.json)
	[ "$found" -gt 0 ] && [ "$found" -lt 256 ] || fail "$name: reindex after SIGKILL found $found slots (of 256 planned)"
	checked=$(verify "$@")
	[ "$checked" = "$found" ] || fail "$name: verify checked $checked of $found reindexed slots"
	say "$name: SIGKILL mid-recording: reindex found $found slots, all verify"
}

sata=$(sd_by_model DMR-SATA0)
scsi0=$(sd_by_model DMR-SCSI0)
scsi1=$(sd_by_model DMR-SCSI1)
readlink -f /sys/block/${sata#/dev/}/device | grep -q /ata || fail "$sata is not on an ATA (AHCI) port"
readlink -f /sys/block/${scsi1#/dev/}/device | grep -q /virtio || fail "$scsi1 is not on virtio-scsi"
nv512=$(nvme_ns 1)
nv4k=$(nvme_ns 2)
[ "$(cat /sys/block/${nv512#/dev/}/queue/logical_block_size)" = 512 ] || fail "$nv512 (nsid 1) is not 512-byte"
[ "$(cat /sys/block/${nv4k#/dev/}/queue/logical_block_size)" = 4096 ] || fail "$nv4k (nsid 2) is not 4096-byte"

one_target "AHCI $sata" $sata
one_target "virtio-scsi $scsi1" $scsi1

# GPT with one partition from 1 MiB to the end
printf 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E3D-3D8A5A0A7AA4\n' |
	sfdisk -q $scsi0 >/dev/null 2>&1 || fail "sfdisk $scsi0"
blockdev --rereadpt $scsi0 2>/dev/null || true
i=0; while [ ! -b ${scsi0}1 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -b ${scsi0}1 ] || fail "${scsi0}1 did not appear after sfdisk"
one_target "GPT partition ${scsi0}1" ${scsi0}1

one_target "NVMe 512 $nv512" $nv512
one_target "NVMe 4096 $nv4k" $nv4k
one_target "stripe $scsi1 (40 MiB) + $nv512 (64 MiB)" $scsi1 $nv512
# both members really hold slots of the stripe set
dmaplay inspect $scsi1 $nv512 --index /tmp/r.idx --slots --json |
	grep -q '"device_index": 1' || fail "stripe: no slot on the second member"

# NVMe over TCP on loopback: nvmet exports /dev/vdc, nvme-tcp connects.
ip link set lo up
mount -t configfs none /sys/kernel/config 2>/dev/null || true
cfs=/sys/kernel/config/nvmet
mkdir $cfs/subsystems/$NQN
echo 1 >$cfs/subsystems/$NQN/attr_allow_any_host
mkdir $cfs/subsystems/$NQN/namespaces/1
echo /dev/vdc >$cfs/subsystems/$NQN/namespaces/1/device_path
echo 1 >$cfs/subsystems/$NQN/namespaces/1/enable
mkdir $cfs/ports/1
echo tcp >$cfs/ports/1/addr_trtype
echo ipv4 >$cfs/ports/1/addr_adrfam
echo 127.0.0.1 >$cfs/ports/1/addr_traddr
echo 4420 >$cfs/ports/1/addr_trsvcid
ln -s $cfs/subsystems/$NQN $cfs/ports/1/subsystems/$NQN
echo "transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=$NQN" >/dev/nvme-fabrics ||
	fail "nvme-tcp connect to 127.0.0.1:4420 failed"
tcpdev=
i=0
while [ -z "$tcpdev" ] && [ $i -lt 100 ]; do
	# the namespace's block device (a multipath head, nvmeXnY, whose
	# parent is the subsystem) carries the subsystem's NQN
	for b in /sys/block/nvme*; do
		[ "$(cat $b/device/subsysnqn 2>/dev/null)" = $NQN ] && [ -b /dev/${b##*/} ] && tcpdev=/dev/${b##*/}
	done
	sleep 0.1; i=$((i + 1))
done
[ -n "$tcpdev" ] || fail "no namespace of the nvme-tcp controller appeared"
one_target "NVMe/TCP $tcpdev (nvmet /dev/vdc)" $tcpdev
say PASS
