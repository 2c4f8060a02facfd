#!/bin/sh
# Refusals on real disks, each with its reason in the message and nothing
# written: a whole disk with a partition table, a disk whose partition is
# mounted (and that partition itself), a member of a device-mapper device
# (what an LVM physical volume is; the disk and a disk whose partition is
# one), and a disk holding another recording. A sibling partition of a
# mounted one is a device of its own and is accepted. The driver refuses
# USERPTR memory mapped from an ext4 file (dmarec-test userptr-file).
set -eu
T=85-refusals
. /opt/dmarec/disklib
DM_NAMES="member"
trap 'umount /mnt/p2 2>/dev/null || true; dm_cleanup' EXIT
disk=$(sd_by_model DMR-SATA0)
other=$(sd_by_model DMR-SCSI1)

# refused WHAT PATTERN TARGET [--force]: dmarec must exit 1 with PATTERN in
# its message and leave the target's first MiB as it was
refused() {
	what=$1 pattern=$2; shift 2
	dd if=$1 bs=64K count=16 2>/dev/null | md5sum >/tmp/before
	rm -f /tmp/r.idx
	rc=0
	dmarec record --source sim --target "$@" --index /tmp/r.idx --quiet --payload-size 64K \
		--buffers 16 --size 1M 2>/tmp/r.err >/dev/null || rc=$?
	[ $rc = 1 ] || fail "$what: dmarec exited $rc, expected a refusal (1): $(cat /tmp/r.err)"
	grep -q "$pattern" /tmp/r.err || fail "$what: message lacks '$pattern': $(cat /tmp/r.err)"
	dd if=$1 bs=64K count=16 2>/dev/null | md5sum | cmp -s - /tmp/before || fail "$what: $1 was written"
	[ ! -e /tmp/r.idx ] || fail "$what: an index was left behind"
	say "$what: refused: $(cat /tmp/r.err)"
}

# GPT with two partitions
printf 'label: gpt\nstart=2048, size=32M\nstart=67584\n' | sfdisk -q $disk >/dev/null 2>&1 || fail "sfdisk $disk"
blockdev --rereadpt $disk 2>/dev/null || true
i=0; while [ ! -b ${disk}2 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -b ${disk}2 ] || fail "${disk}2 did not appear"
refused "whole disk with a GPT" "holds a GPT partition table" $disk

$MKFS_EXT4 ${disk}2
mkdir -p /mnt/p2
# Mounted read-only for the refusals (a clean new file system: no journal
# replay, no write): ext4 mounted read-write writes its own first MiB now
# and then, which the "was written" check took for dmarec (one CI run on
# 6.12). Then read-write, for the USERPTR file below.
mount -t ext4 -o ro ${disk}2 /mnt/p2
refused "disk with a mounted partition" "${disk}2 is mounted on /mnt/p2" $disk --force
refused "the mounted partition" "${disk}2 is mounted on /mnt/p2" ${disk}2 --force
mount -o remount,rw /mnt/p2
record ${disk}1 -- --size 2M || fail "sibling ${disk}1 of a mounted partition: dmarec exited $?: $(cat /tmp/r.err)"
verify ${disk}1 >/dev/null
say "sibling partition ${disk}1 of the mounted ${disk}2: recorded and verified (a device of its own)"
# the driver refuses USERPTR memory that is an ext4 file (shared or private)
insmod "$DMAREC_KO"
dmarec-test userptr-file /mnt/p2/userptr || fail "USERPTR of an ext4 file"
rmmod dmarec
umount /mnt/p2

# device-mapper member (as an LVM PV is): the disk itself, then a partition
dmsetup create member --table "0 2048 linear $other 0"
refused "device-mapper member" "in use by dm-" $other --force
dmsetup remove member
dmsetup create member --table "0 2048 linear ${disk}1 0"
refused "disk whose partition is a device-mapper member" "${disk}1 is in use by dm-" $disk --force
dmsetup remove member

# a disk holding another recording (made by this test), without --force
record $other -- --size 1M || fail "recording on $other: dmarec exited $?: $(cat /tmp/r.err)"
uuid=$(field recording_uuid /tmp/r.json)
refused "disk holding a recording" "holds a dmarec recording" $other
grep -q "$uuid" /tmp/r.err || fail "the refusal does not name the recording $uuid: $(cat /tmp/r.err)"
say PASS
