#!/bin/sh
# A non-root user in the nodes' group: the nodes set up as kmod/99-dmarec.rules
# does (root:dmarec 0660; the guest has no udev, so chgrp/chmod here), then
# dmarec-test's children become uid 1000/1001 (in the group) and 1002 (not):
# the per-user RLIMIT_MEMLOCK charge across processes and users, EACCES
# outside the group, and max_mmap_mb=4 over both cards refusing with ENOMEM.
set -e
gid=4242
insmod $DMAREC_KO cards=2 max_mmap_mb=4
for n in /dev/dmarec0 /dev/dmarec1; do
	chgrp $gid $n
	chmod 0660 $n
done
dmarec-test -d /dev/dmarec0 group /dev/dmarec1 $gid
rmmod dmarec
