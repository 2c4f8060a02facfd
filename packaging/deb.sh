#!/usr/bin/env bash
# Builds dist/dmarec_<version>_<arch>.deb with dpkg-deb over a staged
# `make install PREFIX=/usr DESTDIR=...` (no debhelper, no network): the
# binaries, man pages, completions, systemd unit, udev rule, modules-load.d and
# modprobe.d files, the example config as a conffile, and the driver as DKMS
# source in /usr/src/dmarec-<version> (built for the running kernel on install).
# The version is the crates' (Cargo.toml), as in dkms.conf.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(make -s version)
arch=$(dpkg --print-architecture)
stage=target/deb/dmarec_${version}_${arch}
rm -rf "$stage"
make -s install PREFIX=/usr SYSCONFDIR=/etc DESTDIR="$PWD/$stage"
strip --strip-debug "$stage/usr/bin/dmarec" "$stage/usr/bin/dmaplay"
gzip -9n "$stage"/usr/share/man/man1/*.1
mkdir -p "$stage/DEBIAN"
installed_kib=$(du -sk "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: dmarec
Version: $version
Architecture: $arch
Maintainer: dmarec developers <dmarec@localhost>
Installed-Size: $installed_kib
Depends: libc6 (>= 2.34), dkms (>= 2.1)
Recommends: linux-headers-amd64
Section: misc
Priority: optional
Homepage: https://github.com/dmarec/dmarec
Description: records a data-acquisition card's DMA buffers to raw disks
 dmarec records a card's DMA buffers to raw block devices at the disk's full
 speed with zero copies (io_uring WRITE_FIXED, O_DIRECT), as a command
 (dmarec record) or a service (dmarec serve, dmarec.service, dmarec ctl) with
 Prometheus metrics. dmaplay inspects, verifies, exports and replays the
 recordings. The card's driver is built by DKMS.
CONTROL
echo /etc/dmarec/dmarec.toml > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<POSTINST
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
  getent group dmarec >/dev/null || addgroup --system dmarec
  getent passwd dmarec >/dev/null || adduser --system --ingroup dmarec --home /var/lib/dmarec --no-create-home --shell /usr/sbin/nologin dmarec
  chgrp dmarec /etc/dmarec/dmarec.toml || true
  if ! dkms status -m dmarec -v $version | grep -q .; then
    dkms add -m dmarec -v $version
  fi
  # For the running kernel if its headers are there (else at its next boot: AUTOINSTALL).
  if [ -e "/lib/modules/\$(uname -r)/build" ]; then
    dkms install -m dmarec -v $version || echo "dmarec: dkms install failed; see /var/lib/dkms/dmarec/$version/build/make.log" >&2
  fi
  udevadm control --reload 2>/dev/null || true
  systemctl daemon-reload 2>/dev/null || true
fi
POSTINST
cat > "$stage/DEBIAN/prerm" <<PRERM
#!/bin/sh
set -e
if [ "\$1" = remove ] || [ "\$1" = upgrade ]; then
  systemctl stop dmarec.service 2>/dev/null || true
  dkms remove -m dmarec -v $version --all || true
fi
PRERM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm"
mkdir -p dist
dpkg-deb --root-owner-group -Zxz --build "$stage" "dist/dmarec_${version}_${arch}.deb" >/dev/null
echo "dist/dmarec_${version}_${arch}.deb"
