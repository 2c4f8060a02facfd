#!/bin/sh
# dmarec recording from the driver inside a real kernel, verified by dmaplay
# in the same guest: memory mode auto (MMAP where the kernel can register
# driver pages, USERPTR where it cannot), each mode forced, and overruns of a
# card faster than the recorder, checked against the driver's own counter.
set -eu
fail() { echo "50-record: FAIL: $*"; exit 1; }
# A top-level JSON field of dmarec's pretty-printed summary: "key": value,
field() { sed -n "s/^  \"$1\": \"\{0,1\}\(.*\)/\1/p" "$2" | head -n1 | sed 's/,$//; s/"$//'; }

insmod "$DMAREC_KO"
[ -c /dev/dmarec0 ] || fail "/dev/dmarec0 missing after insmod"
disk=$DMAREC_DISK
major=${KVER_MAJOR_MINOR%%.*}
minor=${KVER_MAJOR_MINOR#*.}
# MMAP-mode driver pages register with io_uring from about 6.5 on (recorder/src/source/kmod.rs).
if [ "$major" -gt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -ge 5 ]; }; then mmap_ok=1; else mmap_ok=0; fi

record() { # mode, extra args...
	mode=$1; shift
	rm -f /tmp/r.idx /tmp/r.json
	dmarec record --source /dev/dmarec0 --memory "$mode" --target "$disk" --index /tmp/r.idx \
		--force --quiet --json --payload-size 64K "$@" > /tmp/r.json
}

for mode in auto userptr mmap; do
	if [ "$mode" = mmap ] && [ "$mmap_ok" = 0 ]; then
		if record mmap --size 4M --buffers 16 --queue-depth 8 2>/tmp/err; then fail "MMAP mode registered on $KVER_MAJOR_MINOR"; fi
		grep -q "registration" /tmp/err || fail "MMAP refusal not explained: $(cat /tmp/err)"
		echo "50-record: mmap on $KVER_MAJOR_MINOR refused as expected: $(cat /tmp/err)"
		continue
	fi
	record "$mode" --size 16M --buffers 16 --queue-depth 8 || fail "dmarec --memory $mode exited $?"
	src=$(field source /tmp/r.json)
	mem=$(field memory /tmp/r.json)
	slots=$(field slots /tmp/r.json)
	inplace=$(field writes_from_card_buffers /tmp/r.json)
	echo "50-record: --memory $mode: source '$src', memory $mem, $slots slots, $inplace writes checked in place"
	[ "$slots" = 256 ] || fail "expected 256 slots, got $slots"
	[ "$inplace" = 256 ] || fail "$inplace of 256 writes read the card's buffers in place"
	# memory: driver = the driver's MMAP buffers; huge_tlb/anonymous = the
	# recorder's own buffers handed to the driver (USERPTR).
	case "$mode/$mmap_ok" in
	auto/1|mmap/1) [ "$mem" = driver ] && echo "$src" | grep -q "Mmap memory" || fail "expected MMAP on $KVER_MAJOR_MINOR, got $mem / $src" ;;
	auto/0|userptr/*) [ "$mem" != driver ] && echo "$src" | grep -q "Userptr memory" || fail "expected USERPTR, got $mem / $src" ;;
	esac
	dmaplay verify "$disk" --index /tmp/r.idx --pattern --quiet || fail "dmaplay verify after --memory $mode"
done

# Overruns: a 200 MB/s card against a recorder under TCG with a 2-buffer ring.
record auto --rate 200 --buffers 2 --queue-depth 1 --size 24M --duration 10 --channels 2 || fail "overrun recording exited $?"
lost=$(field buffers_lost /tmp/r.json)
after=$(field buffers_lost_after_last_slot /tmp/r.json)
overruns=$(field card_overruns /tmp/r.json)
echo "50-record: overrun run: driver overruns $overruns = $lost in gaps + $after after the last slot"
[ "$lost" -gt 0 ] || fail "no gaps from a card faster than the recorder"
[ "$overruns" = $((lost + after)) ] || fail "driver overruns $overruns != $lost + $after"
dmaplay inspect "$disk" --index /tmp/r.idx --json > /tmp/i.json || fail "inspect"
grep -q "\"buffers_lost\": $lost" /tmp/i.json || fail "inspect does not report $lost lost buffers: $(grep -i lost /tmp/i.json | head -3)"
# The driver's simulated card at a rate stamps buffers from its sample
# counter (docs/FORMAT.md, time base); the recording anchors it.
grep -q '"clock": "sample_counter"' /tmp/i.json || fail "time base not the sample counter: $(grep -A4 time_base /tmp/i.json)"
grep -q '"anchor_stored": true' /tmp/i.json || fail "no time anchor stored"
# export --all wants a slot of every channel in the range: with the card's
# losses, slots 2..5 may all be channel 0's. The range ends at slot 5 or at
# the first slot from 2 on of the channel that comes later.
first_slot_of() { # first_slot_of CHANNEL: its first slot from slot 2 on
	dmaplay inspect "$disk" --index /tmp/r.idx --slots --channel "$1" --from slot:2 --json |
		sed -n '/"slot_list"/,$p' | sed -n 's/^ *"slot_seq": \([0-9]*\).*/\1/p' | head -n1
}
to=5
for c in 0 1; do
	slot=$(first_slot_of $c)
	[ -n "$slot" ] || fail "no slot of channel $c from slot 2 on"
	if [ "$slot" -gt "$to" ]; then to=$slot; fi
done
dmaplay export "$disk" --index /tmp/r.idx --all --from slot:2 --to slot:$to --out /tmp/x.raw --json --quiet > /tmp/x.json ||
	fail "export by slot number (slot:2..slot:$to)"
grep -q '"first_slot_seq": 2' /tmp/x.json && grep -q "\"last_slot_seq\": $to" /tmp/x.json || fail "export slot:2..slot:$to: $(cat /tmp/x.json)"
if dmaplay export "$disk" --index /tmp/r.idx --channel 0 --from end+1s --out /tmp/y.raw 2>/tmp/err; then fail "a bad --from was taken"; fi
rm -f /tmp/x.raw* /tmp/x.json /tmp/y.raw*
dmaplay verify "$disk" --index /tmp/r.idx --pattern --quiet || fail "verify of the overrun recording"

# Interleaved layout: the driver's card as one stream of 3-channel frames
# (SIM_CONFIG channels=1), each 64 KiB buffer 5461 frames of 3 x ci16_le.
record auto --size 4M --buffers 16 --channels 3 --channel-layout interleaved || fail "interleaved recording exited $?"
slots=$(field slots /tmp/r.json)
dmaplay verify "$disk" --index /tmp/r.idx --pattern --quiet || fail "verify --pattern of the interleaved recording"
dmaplay export "$disk" --index /tmp/r.idx --channel 1 --out /tmp/c1.raw --quiet || fail "export of an interleaved channel"
size=$(wc -c < /tmp/c1.raw)
[ "$size" -eq $((slots * 5461 * 4)) ] || fail "channel 1: $size bytes, expected $slots x 5461 x 4"
echo "50-record: interleaved: $slots slots, channel 1 de-interleaved to $size bytes"

rmmod dmarec
echo "50-record: PASS"
