#!/bin/sh
# Power cut with a volatile write cache. The recording target and the
# index's ext4 are two regions (dm-linear, dm-flakey) of ONE dm-log-writes device, so
# every write and flush of both is in one totally ordered log. lwreplay
# then replays that log as two disks with their own caches would be left
# by a power cut at every flush or FUA after the recording started: the
# target keeps only what a target flush (or FUA) made durable, the index
# keeps every write it got (the worst case). At each cut:
#  - the index fs mounts (journal recovery) and every entry of the index
#    file there names a slot that `dmaplay verify` accepts;
#  - `dmaplay reindex` indexes exactly the slots whose every sector is
#    durable (nothing torn or missing is called good), and they verify.
# Needs the recorder to flush the targets before the index write + sync
# that covers their slots (issue 12 item 1): without it this fails.
set -eu
T=60-powercut
. /opt/dmarec/disklib
data=/dev/vda log=/dev/vdb
PAYLOAD_BYTES=65536
SLOT_BYTES=$((4096 + PAYLOAD_BYTES))
DATA_START_BYTES=1048576
DM_NAMES="rtgt lwidx lwtgt lw"
trap 'umount /mnt/idx 2>/dev/null || true; umount /mnt/r 2>/dev/null || true; dm_cleanup' EXIT

for d in vda vdb; do
	[ "$(cat /sys/block/$d/queue/write_cache)" = "write back" ] ||
		fail "/dev/$d has no volatile write cache ($(cat /sys/block/$d/queue/write_cache)): flushes would not reach dm-log-writes"
done
total_sectors=$(blockdev --getsz $data)
split_sectors=$((40 * 2048))                 # target: 40 MiB
idx_sectors=$((total_sectors - split_sectors)) # index ext4: the rest (24 MiB)

# powercut MODE SIZE: record SIZE with --target-sync MODE under dm-log-writes,
# then replay and check every cut point
powercut() {
	mode=$1 size=$2
	dd if=/dev/zero of=$log bs=1M count=1 conv=fsync 2>/dev/null
	dmsetup create lw --table "0 $total_sectors log-writes $data $log"
	dmsetup create lwtgt --table "0 $split_sectors linear /dev/mapper/lw 0"
	# dm-flakey (never down) instead of dm-linear for the index region: it
	# remaps empty flushes to its start sector, dm-linear leaves them at
	# sector 0 (and 6.10+ sends them past the target), so the log could not
	# tell them apart.
	dmsetup create lwidx --table "0 $idx_sectors flakey /dev/mapper/lw $split_sectors 86400 0"
	# An empty flush sent to the index region: lwreplay checks it is logged
	# inside that region (so flushes can be told apart by sector).
	dmsetup message lw 0 mark probe-index-flush
	dd if=/dev/zero of=/dev/mapper/lwidx bs=4096 count=1 conv=fsync 2>/dev/null
	$MKFS_EXT4 /dev/mapper/lwidx
	mount -t ext4 /dev/mapper/lwidx /mnt/idx
	dmsetup message lw 0 mark rec-start
	# at 4 MB/s with an index sync round every 150 ms: tens of cut points
	dmarec record --source sim --target /dev/mapper/lwtgt --index /mnt/idx/r.idx --force --quiet \
		--json --payload-size 64K --buffers 16 --queue-depth 8 --size $size --rate 4 \
		--index-sync-ms 150 --target-sync $mode >/tmp/pc.json 2>/tmp/pc.err ||
		fail "$mode: dmarec exited $?: $(cat /tmp/pc.err)"
	slots=$(field slots /tmp/pc.json)
	umount /mnt/idx
	dmsetup message lw 0 mark rec-end
	dmsetup remove lwidx
	dmsetup remove lwtgt
	dmsetup remove lw # writes the log's final super

	dd if=/dev/zero of=$data bs=1M count=40 conv=fsync 2>/dev/null
	dmsetup create rtgt --table "0 $split_sectors linear $data 0"
	rm -f /tmp/pc-stats
	lwreplay --log $log --split $split_sectors --index-bytes $((idx_sectors * 512)) \
		--target /dev/mapper/rtgt --index-image /tmp/pc-idx.img --complete-list /tmp/pc-complete \
		--slot-first $DATA_START_BYTES --slot-bytes $SLOT_BYTES \
		--from-mark rec-start --probe-mark probe-index-flush \
		--exec ". /opt/dmarec/disklib; T=$T; pc_check" >/tmp/pc-replay.out ||
		fail "$mode: replay: $(tail -3 /tmp/pc-replay.out)"
	dmsetup remove rtgt
	cuts=$(wc -l </tmp/pc-stats)
	entries=$(awk '{ s += $2 } END { print s + 0 }' /tmp/pc-stats)
	recovered=$(awk '{ s += $3 } END { print s + 0 }' /tmp/pc-stats)
	last=$(tail -1 /tmp/pc-stats | cut -d' ' -f3)
	holes=$(awk '{ s += $4 } END { print s + 0 }' /tmp/pc-stats)
	say "--target-sync $mode, $slots slots: $(sed 's/^lwreplay: //' /tmp/pc-replay.out)"
	say "--target-sync $mode: power cuts replayed: $cuts; durable index entries checked: $entries; slots recovered by reindex: $recovered; holes among them (not durable, writes completed out of order): $holes (sums over the cuts); after the last cut: $last"
	[ "$cuts" -ge 10 ] || fail "$mode: only $cuts cut points (expected tens)"
	# teeth: cuts in the middle of the recording, with some entries durable
	mid=$(awk -v n="$slots" '$2 > 0 && $2 < n' /tmp/pc-stats | wc -l)
	[ "$mid" -ge 5 ] || fail "$mode: only $mid cuts with part of the index durable"
	[ "$last" = "$slots" ] || fail "$mode: after the last flush reindex finds $last slots, the recording has $slots"
}

mkdir -p /mnt/idx /mnt/r
powercut flush 8M
# dsync: a flush or FUA per slot write, so a cut point per slot: 2 MiB
powercut dsync 2M
say PASS
