#!/bin/sh
# insmod/rmmod cycles; rmmod must be refused while a file or mapping is open.
set -e
n=${DMAREC_CYCLES:-100}
i=0
while [ $i -lt $n ]; do
	insmod $DMAREC_KO cards=$((i % 4 + 1)) channels=$((i % 64 + 1)) rate=$((i * 4096))
	if [ $((i % 10)) = 0 ]; then
		dmarec-test -d /dev/dmarec$((i % 4)) quick >/tmp/quick.log || { cat /tmp/quick.log; exit 1; }
	fi
	rmmod dmarec
	i=$((i + 1))
done
echo "cycles: $n insmod/rmmod done"
insmod $DMAREC_KO
# open file pins the module
exec 3</dev/dmarec0
if rmmod dmarec 2>/dev/null; then echo "FAIL rmmod with open file"; exit 1; fi
exec 3<&-
# a mapping of a streaming ring pins it too (fd already closed by holder)
dmarec-test hold >/tmp/hold.log &
pid=$!
i=0
while ! grep -q ready /tmp/hold.log && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
grep -q ready /tmp/hold.log
if rmmod dmarec 2>/dev/null; then echo "FAIL rmmod with live mapping"; exit 1; fi
kill -9 $pid
wait $pid || true
rmmod dmarec
echo "cycles: rmmod refused while in use, clean after"
# insmod with bad parameters fails cleanly
if insmod $DMAREC_KO cards=33 2>/dev/null; then echo "FAIL cards=33 loaded"; exit 1; fi
# cards=0: no simulated card (PCI cards only)
insmod $DMAREC_KO cards=0
test ! -e /dev/dmarec0
rmmod dmarec
if insmod $DMAREC_KO channels=65 2>/dev/null; then echo "FAIL channels=65 loaded"; exit 1; fi
! lsmod | grep -q '^dmarec'
