#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (as root):
# QEMU, Debian's 6.1 and 6.12 kernels and headers (the driver is built and
# booted against both), busybox for the guest initramfs, fio for the
# benchmarks, e2fsprogs/util-linux for the loop-device tests, gcc-multilib
# (the driver's 32-bit compat test), sparse (kmod/ is built with C=1), and
# dmsetup, sfdisk (fdisk) and mke2fs copied into the QEMU disks guest
# (tests/qemu/disks), python3-venv for the venv (.venv-sigmf) that holds
# the `sigmf` package from PyPI, the reference reader the SigMF export
# tests validate every export with (tests/sigmf_check.py).
# Idempotent: installs only what is missing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${DMAREC_SIGMF_VENV:-$repo/.venv-sigmf}
sigmf_version=1.14.0

# The sigmf reader in a venv (needs python3-venv; PyPI over the network).
sigmf_venv() {
  if "$venv/bin/python" -c "import sigmf, sys; sys.exit(sigmf.__version__ != '$sigmf_version')" 2>/dev/null; then
    return 0
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "sigmf==$sigmf_version"
  echo "install-deps: sigmf $sigmf_version in $venv"
}

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static fio dwarves \
         e2fsprogs util-linux cpio xz-utils kmod gcc make bc libc6-dev fdisk gcc-multilib sparse \
         dmsetup python3-venv; do
  have "$p" || need+=("$p")
done
if ! ls /boot/vmlinuz-6.12.*-amd64 >/dev/null 2>&1 || ! ls -d /usr/src/linux-headers-6.12.*-amd64 >/dev/null 2>&1; then
  need+=(__612__)
fi
[ ${#need[@]} -eq 0 ] && { sigmf_venv; echo "install-deps: everything present"; exit 0; }

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${need[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
pkgs=()
for p in "${need[@]}"; do [ "$p" = __612__ ] || pkgs+=("$p"); done
if printf '%s\n' "${need[@]}" | grep -q __612__; then
  # The newest 6.12 version that has both an unsigned image and headers.
  ver=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' \
        | sed -E 's/^linux-image-(6\.12\.[0-9]+\+deb12)-amd64-unsigned.*/\1/' | sort -V -r \
        | while read -r v; do apt-cache show "linux-headers-$v-amd64" >/dev/null 2>&1 && { echo "$v"; break; }; done)
  [ -n "$ver" ] || { echo "install-deps: no linux-image-6.12.*-amd64-unsigned with headers in apt" >&2; exit 1; }
  pkgs+=("linux-image-$ver-amd64-unsigned" "linux-headers-$ver-amd64")
fi
apt-get install -y -q --no-install-recommends "${pkgs[@]}"
echo "install-deps: installed ${pkgs[*]}"
sigmf_venv
