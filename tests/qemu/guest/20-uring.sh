#!/bin/sh
# io_uring registration of ring buffers + O_DIRECT WRITE_FIXED to virtio-blk.
# USERPTR (anonymous user memory) registers on every kernel; MMAP (driver
# pages, vm_insert_pages) only where GUP allows long-term pins of such
# file-backed mappings (6.12 yes, 6.1 no: io_uring refuses file-backed VMAs).
set -e
case "$KVER_MAJOR_MINOR" in
6.1|6.2|6.3|6.4) expect=eopnotsupp ;;
*) expect=ok ;;
esac
insmod $DMAREC_KO
dmarec-test --disk $DMAREC_DISK --expect-mmap $expect uring
rmmod dmarec
