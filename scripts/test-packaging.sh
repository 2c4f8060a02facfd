#!/usr/bin/env bash
# Packaging tests (make test): the .deb is built over a staged `make install`
# and its contents checked; its man pages render and its completions parse;
# `systemd-analyze verify` passes on its unit; `make install PREFIX=/usr/local`
# points the unit at /usr/local/bin; the driver's DKMS source is added, built
# and installed for both kernel header trees the QEMU tests use, in scratch
# DKMS trees (nothing under /var/lib/dkms or /lib/modules is touched), and
# DKMS installs the udev rule. Needs the release binaries (make test builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d /tmp/dmarec-packaging.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
fail() { echo "test-packaging: FAIL: $*" >&2; exit 1; }
version=$(make -s version)
[ -n "$version" ] || fail "no version in Cargo.toml"

echo "--- .deb"
deb=$(bash packaging/deb.sh)
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "$deb: Version is not $version"
dpkg-deb --contents "$deb" | awk '{print $6}' | sed 's|^\./|/|' > "$scratch/contents"
for f in /usr/bin/dmarec /usr/bin/dmaplay /usr/lib/systemd/system/dmarec.service \
         /usr/lib/udev/rules.d/99-dmarec.rules /usr/lib/modules-load.d/dmarec.conf \
         /usr/lib/modprobe.d/dmarec.conf /etc/dmarec/dmarec.toml \
         /usr/share/man/man1/dmarec.1.gz /usr/share/man/man1/dmarec-serve.1.gz \
         /usr/share/man/man1/dmarec-ctl.1.gz /usr/share/man/man1/dmaplay.1.gz \
         /usr/share/man/man1/dmaplay-export.1.gz \
         /usr/share/bash-completion/completions/dmarec /usr/share/bash-completion/completions/dmaplay \
         /usr/share/zsh/vendor-completions/_dmarec /usr/share/fish/vendor_completions.d/dmaplay.fish \
         "/usr/src/dmarec-$version/dkms.conf" "/usr/src/dmarec-$version/dmarec-core.c" \
         "/usr/src/dmarec-$version/include/uapi/dmarec.h" "/usr/src/dmarec-$version/99-dmarec.rules" \
         "/usr/src/dmarec-$version/dkms-udev.sh"; do
  grep -qx "$f" "$scratch/contents" || fail "$deb lacks $f"
done
[ "$(dpkg-deb -f "$deb" Depends)" != "" ] || fail "no Depends"
[ "$(dpkg-deb -I "$deb" conffiles)" = /etc/dmarec/dmarec.toml ] || fail "conffiles is not /etc/dmarec/dmarec.toml"
root=$scratch/root
dpkg-deb -x "$deb" "$root"
grep -qx "PACKAGE_VERSION=\"$version\"" "$root/usr/src/dmarec-$version/dkms.conf" \
  || fail "dkms.conf's version is not the crates' $version"
grep -q 'GROUP="dmarec"' "$root/usr/lib/udev/rules.d/99-dmarec.rules" || fail "udev rule without group dmarec"
"$root/usr/bin/dmarec" --version | grep -qx "dmarec $version" || fail "dmarec --version is not $version"

echo "--- man pages and completions"
pages=0
for page in "$root"/usr/share/man/man1/*.1.gz; do
  out=$(MANWIDTH=80 man -l "$page" 2>"$scratch/man.err") || fail "man -l $page"
  [ ! -s "$scratch/man.err" ] || fail "man -l $page warns: $(cat "$scratch/man.err")"
  grep -q '^NAME' <<<"$out" && grep -q '^SYNOPSIS' <<<"$out" || fail "$page: no NAME/SYNOPSIS"
  pages=$((pages + 1))
done
[ "$pages" -ge 10 ] || fail "only $pages man pages"
for b in dmarec dmaplay; do
  c=$root/usr/share/bash-completion/completions/$b
  bash -n "$c" || fail "$c: bash syntax"
  # Loaded, it completes the subcommands.
  words=$(bash -c "source '$c'; COMP_WORDS=($b ''); COMP_CWORD=1; COMP_LINE='$b '; COMP_POINT=\${#COMP_LINE}; _$b $b '' $b; echo \"\${COMPREPLY[*]}\"")
  case $b in
    dmarec) for w in record serve ctl; do grep -qw "$w" <<<"$words" || fail "bash completion of dmarec lacks $w: $words"; done ;;
    dmaplay) for w in inspect verify export; do grep -qw "$w" <<<"$words" || fail "bash completion of dmaplay lacks $w: $words"; done ;;
  esac
  grep -q "generate-docs" <<<"$words" && fail "hidden generate-docs completed"
  if command -v zsh >/dev/null; then zsh -n "$root/usr/share/zsh/vendor-completions/_$b" || fail "_$b: zsh syntax"; fi
  if command -v fish >/dev/null; then fish -n "$root/usr/share/fish/vendor_completions.d/$b.fish" || fail "$b.fish: fish syntax"; fi
  grep -q -- "complete -c $b" "$root/usr/share/fish/vendor_completions.d/$b.fish" || fail "$b.fish is not a fish completion"
done
echo "$pages man pages render, bash completions load and complete"

echo "--- systemd-analyze verify"
# A root with the system's own units (sysinit.target, ...) and the package.
mkdir -p "$root/usr/lib/systemd/system"
cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
[ -e "$root/lib" ] || ln -s usr/lib "$root/lib"
MANPATH=$root/usr/share/man SYSTEMD_LOG_LEVEL=notice \
  systemd-analyze verify --root="$root" /usr/lib/systemd/system/dmarec.service 2>&1 | tee "$scratch/verify"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "systemd-analyze verify"
[ ! -s "$scratch/verify" ] || fail "systemd-analyze verify warns"
for key in Type=notify LimitMEMLOCK= AmbientCapabilities=CAP_IPC_LOCK User=dmarec DeviceAllow=/dev/dmarec0 Restart=on-failure; do
  grep -q "^$key" "$root/usr/lib/systemd/system/dmarec.service" || fail "unit lacks $key"
done
make -s install-service PREFIX=/usr/local DESTDIR="$scratch/local" >/dev/null
grep -qx 'ExecStart=/usr/local/bin/dmarec serve --config /etc/dmarec/dmarec.toml' \
  "$scratch/local/usr/local/lib/systemd/system/dmarec.service" || fail "PREFIX=/usr/local: ExecStart"

echo "--- DKMS add/build/install for both kernels (scratch trees)"
dkms_root=$scratch/dkms
mkdir -p "$dkms_root"/{tree,src,install,udev}
cp -a "$root/usr/src/dmarec-$version" "$dkms_root/src/"
# The signing key (dkms makes one if missing) and the udev rule go to scratch too.
export mok_signing_key=$dkms_root/mok.key mok_certificate=$dkms_root/mok.pub
export DMAREC_UDEV_RULES_DIR=$dkms_root/udev
dkms=(dkms --dkmstree "$dkms_root/tree" --sourcetree "$dkms_root/src" --installtree "$dkms_root/install" --no-depmod)
"${dkms[@]}" add -m dmarec -v "$version" >/dev/null
kernels=0
for headers in /usr/src/linux-headers-6.1.*-amd64 /usr/src/linux-headers-6.12.*-amd64; do
  [ -d "$headers" ] || fail "no headers $headers (scripts/install-deps.sh installs them)"
  k=${headers#/usr/src/linux-headers-}
  mkdir -p "$dkms_root/install/$k"
  "${dkms[@]}" build -m dmarec -v "$version" -k "$k" --kernelsourcedir "$headers" >"$scratch/dkms.log" 2>&1 \
    || { cat "$scratch/dkms.log" "$dkms_root/tree/dmarec/$version/build/make.log" 2>/dev/null; fail "dkms build for $k"; }
  "${dkms[@]}" install -m dmarec -v "$version" -k "$k" --kernelsourcedir "$headers" >"$scratch/dkms.log" 2>&1 \
    || { cat "$scratch/dkms.log"; fail "dkms install for $k"; }
  ko=$(ls "$dkms_root/install/$k/updates/dkms/dmarec.ko"* 2>/dev/null | head -n 1)
  [ -n "$ko" ] || fail "dkms install for $k: no dmarec.ko"
  modinfo -F vermagic "$ko" | grep -q "^$k " || fail "$ko is not built for $k: $(modinfo -F vermagic "$ko")"
  echo "$k: $(basename "$ko") installed"
  kernels=$((kernels + 1))
done
[ "$kernels" -eq 2 ] || fail "$kernels kernels"
"${dkms[@]}" status | grep -c ': installed' | grep -qx 2 || fail "dkms status: $("${dkms[@]}" status)"
cmp "$dkms_root/udev/99-dmarec.rules" kmod/99-dmarec.rules || fail "dkms install did not install the udev rule"
"${dkms[@]}" remove -m dmarec -v "$version" --all >/dev/null 2>&1
[ ! -e "$dkms_root/udev/99-dmarec.rules" ] || fail "dkms remove left the udev rule"
ls "$dkms_root"/install/*/updates/dkms/dmarec.ko* >/dev/null 2>&1 && fail "dkms remove left modules"
echo "test-packaging: all passed"
