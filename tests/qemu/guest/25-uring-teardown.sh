#!/bin/sh
# io_uring registered ring buffers after the ring is gone: torn down and
# closed, then also after rmmod. io_uring's pins keep the pages, so
# WRITE_FIXED writes the card's data and READ_FIXED lands in the buffer;
# the default boot has page_poison=1 init_on_free=1, so a page the driver
# freed under io_uring would read back zeroed. MMAP registers on 6.5+ only
# (see 20-uring); on 6.1 the rmmod case uses a USERPTR ring.
set -e
case "$KVER_MAJOR_MINOR" in
6.1|6.2|6.3|6.4) expect=eopnotsupp ;;
*) expect=ok ;;
esac
insmod $DMAREC_KO
dmarec-test --disk $DMAREC_DISK --expect-mmap $expect uring-teardown
dmarec-test --disk $DMAREC_DISK --expect-mmap $expect uring-rmmod
! lsmod | grep -q '^dmarec'
