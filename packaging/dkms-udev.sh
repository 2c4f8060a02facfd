#!/bin/sh
# DKMS POST_INSTALL/POST_REMOVE of dmarec (dkms.conf): the driver's udev rule
# (/dev/dmarec* to group dmarec, mode 0660) and the group, for installs that
# come from DKMS alone. A package that ships the rule in /usr/lib/udev/rules.d
# (the .deb) makes this a no-op. DMAREC_UDEV_RULES_DIR overrides
# /etc/udev/rules.d (tests install into a scratch directory).
set -eu
here=$(dirname "$0")
rules_dir=${DMAREC_UDEV_RULES_DIR:-/etc/udev/rules.d}
rule=99-dmarec.rules
case "${1:-}" in
install)
  if [ -e "/usr/lib/udev/rules.d/$rule" ] && [ -z "${DMAREC_UDEV_RULES_DIR:-}" ]; then
    exit 0 # the package's own rule
  fi
  mkdir -p "$rules_dir"
  cp "$here/$rule" "$rules_dir/$rule"
  if [ -z "${DMAREC_UDEV_RULES_DIR:-}" ]; then
    getent group dmarec >/dev/null || groupadd -r dmarec
    udevadm control --reload 2>/dev/null || true
  fi
  ;;
remove)
  # Only when no kernel has the module any more.
  if ! ls /lib/modules/*/updates/dkms/dmarec.ko* >/dev/null 2>&1 || [ -n "${DMAREC_UDEV_RULES_DIR:-}" ]; then
    rm -f "$rules_dir/$rule"
  fi
  ;;
*)
  echo "usage: $0 install|remove" >&2
  exit 2
  ;;
esac
