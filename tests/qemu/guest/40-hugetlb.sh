#!/bin/sh
# USERPTR rings in hugetlb memory: streaming and io_uring WRITE_FIXED.
set -e
echo 32 >/proc/sys/vm/nr_hugepages
n=$(awk '/^HugePages_Total/ {print $2}' /proc/meminfo)
echo "hugetlb: $n x 2 MiB pages reserved"
test "$n" -ge 8
insmod $DMAREC_KO
dmarec-test --disk $DMAREC_DISK hugetlb
rmmod dmarec
echo 0 >/proc/sys/vm/nr_hugepages
