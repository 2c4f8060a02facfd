#!/bin/sh
# caps, full-pattern streaming in both memory modes (two cards at once),
# overruns, error paths, mmap bounds, lifetime (close while streaming,
# SIGKILL while pinned) and a memory-return check.
set -e
insmod $DMAREC_KO cards=2 channels=3
test -c /dev/dmarec0 && test -c /dev/dmarec1
dmarec-test caps
# the second card streams concurrently and independently
dmarec-test -d /dev/dmarec1 stream >/tmp/card1.log 2>&1 &
card1=$!
dmarec-test stream
dmarec-test overrun
if ! wait $card1; then
	cat /tmp/card1.log
	exit 1
fi
echo "card1: $(tail -1 /tmp/card1.log)"
dmarec-test --disk "$DMAREC_DISK" userptr
for t in errors mmap lifetime leak; do
	dmarec-test $t
done
rmmod dmarec
test ! -e /dev/dmarec0
