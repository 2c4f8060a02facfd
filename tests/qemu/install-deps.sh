#!/bin/bash
# Install what tests/qemu/run.sh needs on Debian 12 (run as root):
# QEMU, busybox-static, build tools, the 6.1 kernel + headers (bookworm's
# default) and the newest 6.12 kernel (unsigned image) + headers.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq qemu-system-x86 busybox-static cpio xz-utils gcc make \
	libc6-dev dwarves linux-image-amd64 linux-headers-amd64 >/dev/null
v612=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' |
	awk '{print $1}' | sed -E 's/^linux-image-(.*)-unsigned$/\1/' | sort -V | tail -1)
if [ -z "$v612" ]; then
	echo "install-deps: no linux-image-6.12.*-amd64-unsigned in the archive" >&2
	exit 1
fi
apt-get install -y -qq "linux-image-$v612-unsigned" "linux-headers-$v612" >/dev/null
echo "install-deps: kernels $(ls /boot/vmlinuz-* | sed 's|/boot/vmlinuz-||' | tr '\n' ' ')"
