#!/bin/sh
# caps, full-pattern streaming in both memory modes, overruns, error paths,
# mmap bounds and lifetime (close while streaming, SIGKILL while pinned).
set -e
insmod $DMAREC_KO cards=2 channels=3
test -c /dev/dmarec0 && test -c /dev/dmarec1
for t in caps stream overrun errors mmap lifetime leak; do
	dmarec-test $t
done
# the second card works independently
dmarec-test -d /dev/dmarec1 stream
rmmod dmarec
test ! -e /dev/dmarec0
