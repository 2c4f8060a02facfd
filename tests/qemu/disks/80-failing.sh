#!/bin/sh
# Disks that fail under a recording, through real drivers:
#  - a virtio-scsi disk deleted mid-recording (sysfs delete, as a pulled
#    cable): exit 4 naming the device; after a rescan brings it back, every
#    slot the index names verifies and reindex finds at least those;
#  - a device whose writes start failing mid-recording (dm-error in the
#    middle of an AHCI disk): exit 4 naming it, the indexed slots verify;
#  - a full target: exit 3, every slot of the capacity recorded and verified.
set -eu
T=80-failing
. /opt/dmarec/disklib
DM_NAMES="halfbad"
trap dm_cleanup EXIT

# ---- hot-unplug ----
dev=$(sd_by_model DMR-UNPLUG)
host=$(readlink -f /sys/block/${dev#/dev/}/device | sed -n 's|.*/\(host[0-9]*\)/.*|\1|p')
[ -n "$host" ] || fail "no SCSI host for $dev"
w0=$(writes_of $dev)
rm -f /tmp/r.idx
dmarec record --source sim --target $dev --index /tmp/r.idx --force --quiet --payload-size 64K \
	--buffers 16 --queue-depth 8 --size 32M --rate 4 --index-sync-ms 100 2>/tmp/r.err &
pid=$!
i=0
while [ $i -lt 300 ] && [ $(($(writes_of $dev) - w0)) -lt 30 ]; do
	kill -0 $pid 2>/dev/null || fail "dmarec on $dev ended before the unplug: $(cat /tmp/r.err)"
	sleep 0.1; i=$((i + 1))
done
echo 1 >/sys/block/${dev#/dev/}/device/delete
rc=0
wait $pid || rc=$?
[ $rc = 4 ] || fail "unplug of $dev: dmarec exited $rc, expected 4: $(cat /tmp/r.err)"
grep -q "$dev" /tmp/r.err || fail "unplug: the error does not name $dev: $(cat /tmp/r.err)"
grep -q "the device is gone" /tmp/r.err || fail "unplug: the error does not say the device went away: $(cat /tmp/r.err)"
say "unplug of $dev mid-recording: exit 4: $(grep -m1 error /tmp/r.err)"
echo "- - -" >/sys/class/scsi_host/$host/scan
i=0; dev2=
while [ -z "$dev2" ] && [ $i -lt 100 ]; do dev2=$(sd_by_model DMR-UNPLUG 2>/dev/null) || true; sleep 0.1; i=$((i + 1)); done
[ -n "$dev2" ] || fail "the deleted disk did not come back on a rescan of $host"
n=$(verify $dev2)
[ "$n" -gt 0 ] || fail "unplug: no slot indexed before the unplug"
dmaplay reindex $dev2 --index /tmp/re.idx --force --quiet --json >/tmp/re.json 2>/tmp/re.err ||
	fail "unplug: reindex: $(cat /tmp/re.err)"
found=$(field slots_indexed /tmp/re.json)
[ "$found" -ge "$n" ] || fail "unplug: reindex found $found slots, the index had $n"
say "unplug: the $n indexed slots verify on $dev2 after a rescan; reindex finds $found"

# ---- writes failing mid-recording: dm-error over 4 MiB in the middle ----
sata=$(sd_by_model DMR-SATA0)
sz=$(blockdev --getsz $sata)
bad_at=$((16 * 2048)) bad_len=$((4 * 2048))
dmsetup create halfbad --table "0 $bad_at linear $sata 0
$bad_at $bad_len error
$((bad_at + bad_len)) $((sz - bad_at - bad_len)) linear $sata $((bad_at + bad_len))"
rc=0
record /dev/mapper/halfbad -- --size 48M --index-sync-ms 100 || rc=$?
[ $rc = 4 ] || fail "failing writes: dmarec exited $rc, expected 4: $(cat /tmp/r.err)"
grep -q "/dev/mapper/halfbad" /tmp/r.err || fail "failing writes: the error does not name the device: $(cat /tmp/r.err)"
slots=$(field slots /tmp/r.json)
n=$(verify /dev/mapper/halfbad)
# the slots before the bad window: (16 MiB - 1 MiB) / 68 KiB = 225
[ "$n" -gt 0 ] && [ "$n" -le 225 ] || fail "failing writes: $n slots indexed, expected 1..225 (before the bad window)"
say "writes failing at 16 MiB: exit 4 ($(grep -m1 error /tmp/r.err)); summary $slots slots, the $n indexed verify"
dmsetup remove halfbad

# ---- a full target ----
nv4k=$(nvme_ns 2)
rc=0
record $nv4k -- --index-sync-ms 200 || rc=$?
[ $rc = 3 ] || fail "full target: dmarec exited $rc, expected 3: $(cat /tmp/r.err)"
slots=$(field slots /tmp/r.json)
cap=$(( ($(blockdev --getsize64 $nv4k) / 4096 - 1) * 4096 - 1048576 ))
cap=$((cap / (4096 + 65536)))
[ "$slots" = "$cap" ] || fail "full target: $slots slots, capacity is $cap"
n=$(verify $nv4k)
[ "$n" = "$slots" ] || fail "full target: verify checked $n of $slots"
say "full target $nv4k (4096-byte blocks): exit 3 after $slots slots (its capacity), all verify"
say PASS
