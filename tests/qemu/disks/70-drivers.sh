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

# one_target NAME TARGET...: record + verify, SIGKILL + reindex + verify
one_target() {
	name=$1; shift
	w0=0
	for t in "$@"; do w0=$((w0 + $(writes_of $t))); done
	record "$@" -- --size 8M || fail "$name: dmarec exited $?: $(cat /tmp/r.err)"
	slots=$(field slots /tmp/r.json)
	[ "$slots" = 128 ] || fail "$name: $slots slots, expected 128 (8 MiB of 64 KiB)"
	w1=0
	for t in "$@"; do w1=$((w1 + $(writes_of $t))); done
	checked=$(verify "$@")
	[ "$checked" = "$slots" ] || fail "$name: verify checked $checked of $slots slots"
	writes=$((w1 - w0))
	[ "$writes" -ge "$slots" ] || fail "$name: $writes write requests for $slots slots (diskstats of the wrong device?)"
	geo=
	for t in "$@"; do
		d=${t##*/}
		[ -e /sys/class/block/$d/partition ] && d=$(basename "$(dirname "$(readlink -f /sys/class/block/$d)")")
		geo="$geo ${t##*/}: lbs $(cat /sys/block/$d/queue/logical_block_size) max_sectors_kb $(cat /sys/block/$d/queue/max_sectors_kb);"
	done
	say "$name: $slots slots of 68 KiB verified; $writes write requests = $((writes * 100 / slots / 100)).$((writes * 100 / slots % 100)) per slot (incl. superblocks, index-free target);$geo"

	# SIGKILL mid-recording, once the target has taken 20 more writes
	rm -f /tmp/r.idx
	dmarec record --source sim $(for t in "$@"; do printf -- '--target %s ' $t; done) --index /tmp/r.idx \
		--force --quiet --payload-size 64K --buffers 16 --queue-depth 8 --size 16M --rate 4 \
		2>/tmp/r.err &
	pid=$!
	i=0
	while [ $i -lt 300 ]; do
		w=0
		for t in "$@"; do w=$((w + $(writes_of $t))); done
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
[ "$(cat /sys/block/nvme0n1/queue/logical_block_size)" = 512 ] || fail "nvme0n1 is not 512-byte"
[ "$(cat /sys/block/nvme0n2/queue/logical_block_size)" = 4096 ] || fail "nvme0n2 is not 4096-byte"

one_target "AHCI $sata" $sata
one_target "virtio-scsi $scsi1" $scsi1

# GPT with one partition from 1 MiB to the end
printf 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E3D-3D8A5A0A7AA4\n' |
	sfdisk -q $scsi0 >/dev/null 2>&1 || fail "sfdisk $scsi0"
blockdev --rereadpt $scsi0 2>/dev/null || true
i=0; while [ ! -b ${scsi0}1 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -b ${scsi0}1 ] || fail "${scsi0}1 did not appear after sfdisk"
one_target "GPT partition ${scsi0}1" ${scsi0}1

one_target "NVMe 512 nvme0n1" /dev/nvme0n1
one_target "NVMe 4096 nvme0n2" /dev/nvme0n2
one_target "stripe $scsi1 (40 MiB) + nvme0n1 (64 MiB)" $scsi1 /dev/nvme0n1
# both members really hold slots of the stripe set
dmaplay inspect $scsi1 /dev/nvme0n1 --index /tmp/r.idx --slots --json |
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
	for c in /sys/class/nvme/nvme*; do
		[ "$(cat $c/transport)" = tcp ] || continue
		for n in $c/nvme*n*; do [ -e "$n" ] && [ -b /dev/${n##*/} ] && tcpdev=/dev/${n##*/}; done
	done
	sleep 0.1; i=$((i + 1))
done
[ -n "$tcpdev" ] || fail "no namespace of the nvme-tcp controller appeared"
one_target "NVMe/TCP $tcpdev (nvmet /dev/vdc)" $tcpdev
say PASS
