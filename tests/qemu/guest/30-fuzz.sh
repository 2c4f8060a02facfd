#!/bin/sh
# random ioctl numbers and argument structs, random mmaps, two files.
set -e
insmod $DMAREC_KO
dmarec-test fuzz ${DMAREC_FUZZ_ITERS:-5000}
DMAREC_FUZZ_SEED=0xdead dmarec-test fuzz ${DMAREC_FUZZ_ITERS:-5000}
rmmod dmarec
