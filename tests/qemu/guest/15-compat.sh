#!/bin/sh
# The same driver tests from a 32-bit (gcc -m32) process: the compat ioctl
# path (compat_ptr_ioctl) and 32-bit user addresses for USERPTR and mmap
# (fuzz, leak and the io_uring tests stay 64-bit only).
set -e
insmod $DMAREC_KO cards=2 channels=3
for t in caps stream overrun errors mmap lifetime; do
	dmarec-test32 $t
done
dmarec-test32 --disk "$DMAREC_DISK" userptr
rmmod dmarec
