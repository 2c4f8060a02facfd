#!/bin/bash
# Build dmarec.ko against Debian's 6.1 and 6.12 headers, boot each matching
# kernel in QEMU (TCG) with a busybox initramfs, run the guest tests in
# tests/qemu/guest/*.sh and check the result and the guest's dmesg.
#
# usage: tests/qemu/run.sh [options]
#   -k, --kernel VER     kernel release(s) to test (repeatable; default: the
#                        newest installed 6.1.* and 6.12.* that have both an
#                        image in /boot and headers in /usr/src)
#   -a, --add PATH       add an ELF binary (with the shared libraries ldd
#                        lists) to the guest's /usr/bin, or a plain file to
#                        /opt/dmarec/ (repeatable)
#   -t, --test GLOB      only run guest tests whose file name matches GLOB
#   -g, --guest-dir DIR  also run DIR/*.sh as guest tests (repeatable)
#   -T, --timeout SECS   limit for one boot (default 300)
#   -K, --keep           keep the temporary directory (after a failure the
#                        logs are kept anyway)
# environment:
#   DMAREC_ADD="bin1 bin2"     same as --add for each word
#   DMAREC_GUEST_DIRS="d1 d2"  same as --guest-dir
#   DMAREC_TESTS=GLOB          same as --test
#   DMAREC_FUZZ_ITERS=N        fuzz iterations in the guest (default 5000)
#   DMAREC_CYCLES=N            insmod/rmmod cycles (default 100)
#   DMAREC_DISKS=N             scratch virtio disks /dev/vda.. (default 1)
#   DMAREC_DISK_MB=N           size of each scratch disk (default 64)
#   DMAREC_MEM_MB=N            guest RAM (default 1024)
#   DMAREC_QEMU_ARGS="..."     extra qemu-system-x86_64 arguments (split at
#                              spaces), e.g. "-device intel-iommu -device edu"
#   DMAREC_APPEND="..."        extra guest kernel command line
#
# Guest tests are shell scripts run by busybox sh as root in sorted order;
# each gets DMAREC_KO (module path), DMAREC_DISK (/dev/vda, a scratch raw
# disk; more as /dev/vdb.. with DMAREC_DISKS), DMAREC_DISKS, KVER and
# KVER_MAJOR_MINOR, and passes by exiting 0.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)

kernels=()
adds=()
guest_dirs=("$here/guest")
test_glob=${DMAREC_TESTS:-*}
timeout_s=300
keep=0
for a in ${DMAREC_ADD:-}; do adds+=("$a"); done
for d in ${DMAREC_GUEST_DIRS:-}; do guest_dirs+=("$d"); done

while [ $# -gt 0 ]; do
	case "$1" in
	-k|--kernel) kernels+=("$2"); shift 2 ;;
	-a|--add) adds+=("$2"); shift 2 ;;
	-t|--test) test_glob=$2; shift 2 ;;
	-g|--guest-dir) guest_dirs+=("$2"); shift 2 ;;
	-T|--timeout) timeout_s=$2; shift 2 ;;
	-K|--keep) keep=1; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

for tool in qemu-system-x86_64 busybox cpio gcc make xz timeout sparse; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool missing (scripts/install-deps.sh)" >&2; exit 2; }
done
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q dynamic && {
	echo "run.sh: /bin/busybox is dynamic; install busybox-static" >&2; exit 2; }

work=$(mktemp -d /tmp/dmarec-qemu.XXXXXX)
cleanup() {
	local rc=$?
	if [ "$keep" = 1 ]; then
		echo "run.sh: kept $work"
	elif [ "$keep" = logs ]; then
		# after a failure keep only the logs
		find "$work" -mindepth 1 -maxdepth 1 ! -name '*.log' ! -name '*.txt' \
			-exec rm -rf {} +
		echo "run.sh: logs kept in $work"
	else
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

newest() { # newest release matching a prefix with image + headers
	local prefix=$1 v best=
	for img in /boot/vmlinuz-"$prefix"*; do
		[ -e "$img" ] || continue
		v=${img#/boot/vmlinuz-}
		[ -d "/usr/src/linux-headers-$v" ] && [ -d "/lib/modules/$v" ] || continue
		best=$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -1)
	done
	echo "$best"
}

if [ ${#kernels[@]} -eq 0 ]; then
	for p in 6.1. 6.12.; do
		v=$(newest "$p")
		if [ -z "$v" ]; then
			echo "run.sh: no kernel $p* with headers installed" >&2
			exit 2
		fi
		kernels+=("$v")
	done
fi

# ---- host-side builds shared by all kernels ----
echo "== building dmarec-test (static)"
gcc -static -O2 -Wall -Wextra -Wno-sign-compare -Werror \
	-o "$work/dmarec-test" "$here/dmarec-test.c" -lpthread
echo "== building dmarec-test32 (static, -m32: the driver's compat ioctl path)"
gcc -m32 -D_FILE_OFFSET_BITS=64 -static -O2 -Wall -Wextra -Wno-sign-compare -Werror \
	-o "$work/dmarec-test32" "$here/dmarec-test.c" -lpthread || {
	echo "run.sh: gcc -m32 failed: install gcc-multilib (scripts/install-deps.sh)" >&2; exit 2; }

# copy ELF $1 and its shared libraries into root $2 (binary to $3)
copy_elf() {
	local bin=$1 root=$2 dest=$3 lib
	install -D -m 0755 "$bin" "$root$dest"
	if ldd "$bin" >/dev/null 2>&1; then
		for lib in $(ldd "$bin" | grep -oE '/[^ ]+' | sort -u); do
			[ -e "$lib" ] || continue
			[ -e "$root$lib" ] && continue
			install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
		done
	fi
}

# insmod order for a module and its dependencies (modules.dep)
mod_deps() {
	local kver=$1 name=$2 line mod dep
	line=$(grep -E "(^|/)$name\.ko(\.xz|\.zst|\.gz)?:" "/lib/modules/$kver/modules.dep" || true)
	[ -n "$line" ] || return 0
	mod=${line%%:*}
	for dep in $(echo "${line#*:}" | tr ' ' '\n' | tac); do
		echo "$dep"
	done
	echo "$mod"
}

# decompress a module file into the initramfs
add_module() {
	local kver=$1 rel=$2 root=$3 src base
	src=/lib/modules/$kver/$rel
	base=$(basename "$rel")
	base=${base%.xz}; base=${base%.zst}; base=${base%.gz}
	[ -e "$root/lib/modules/$base" ] && return 0
	case "$src" in
	*.xz) xz -dc "$src" >"$root/lib/modules/$base" ;;
	*.zst) zstd -dc "$src" >"$root/lib/modules/$base" ;;
	*.gz) gzip -dc "$src" >"$root/lib/modules/$base" ;;
	*) cp "$src" "$root/lib/modules/$base" ;;
	esac
	echo "$base" >>"$root/lib/modules/load.order"
}

build_initramfs() {
	local kver=$1 ko=$2 out=$3 root=$work/root-$kver g f m n=0
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,lib/modules,tests,opt/dmarec}
	cp /bin/busybox "$root/bin/busybox"
	for f in sh mount umount mkdir cat echo sleep insmod rmmod lsmod dmesg grep \
		poweroff sync ls uname seq kill sed tr wc cut head tail date dd cmp \
		true false test [ printf awk sort basename ps; do
		ln -sf busybox "$root/bin/$f"
	done
	# virtio transport and block driver, whatever is modular in this kernel
	for m in virtio_pci virtio_blk; do
		for f in $(mod_deps "$kver" "$m"); do
			add_module "$kver" "$f" "$root"
		done
	done
	touch "$root/lib/modules/load.order"
	cp "$ko" "$root/lib/modules/dmarec.ko"
	cp "$work/dmarec-test" "$root/usr/bin/dmarec-test"
	cp "$work/dmarec-test32" "$root/usr/bin/dmarec-test32"
	for g in "${guest_dirs[@]}"; do
		[ -d "$g" ] || { echo "run.sh: no guest dir $g" >&2; exit 2; }
		for f in "$g"/*.sh; do
			[ -e "$f" ] || continue
			# shellcheck disable=SC2254
			case "$(basename "$f")" in $test_glob) ;; *) continue ;; esac
			cp "$f" "$root/tests/"
			n=$((n + 1))
		done
	done
	[ "$n" -gt 0 ] || { echo "run.sh: no guest test matches '$test_glob'" >&2; exit 2; }
	for f in "${adds[@]}"; do
		[ -e "$f" ] || { echo "run.sh: --add $f: no such file" >&2; exit 2; }
		if head -c 4 "$f" | grep -q 'ELF'; then
			copy_elf "$f" "$root" "/usr/bin/$(basename "$f")"
		else
			cp -r "$f" "$root/opt/dmarec/"
		fi
	done
	cp "$here/init" "$root/init"
	chmod 0755 "$root/init" "$root"/tests/*.sh
	printf 'KVER=%s\nDMAREC_FUZZ_ITERS=%s\nDMAREC_CYCLES=%s\nDMAREC_DISKS=%s\n' "$kver" \
		"${DMAREC_FUZZ_ITERS:-5000}" "${DMAREC_CYCLES:-100}" "${DMAREC_DISKS:-1}" >"$root/etc.env"
	(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 >"$out"
}

# kernel messages that fail a run (searched in the guest's dmesg and in
# the kernel lines of the serial console, which also has panics)
bad_re='BUG:|WARNING:|Oops|general protection|leak|Call Trace|kernel BUG|refcount_t|list_(add|del) corruption|INFO: task .* blocked|Kernel panic'
# IOMMU faults (a device DMA to an address nobody mapped) and swiotlb trouble
bad_re+='|DMAR: DRHD: handling fault|DMAR: \[DMA (Read|Write)|IO_PAGE_FAULT|swiotlb buffer is full'

overall=0
summary=()
for kver in "${kernels[@]}"; do
	echo "== kernel $kver"
	kdir=/usr/src/linux-headers-$kver
	bdir=$work/build-$kver
	make -s -C "$top/kmod" KDIR="$kdir" O="$bdir" W=1 C=1 >"$work/build-$kver.log" 2>&1 || {
		cat "$work/build-$kver.log"; echo "run.sh: module build failed for $kver" >&2; exit 1; }
	if grep -E 'warning:|error:' "$work/build-$kver.log"; then
		echo "run.sh: module build for $kver has warnings" >&2
		exit 1
	fi
	build_initramfs "$kver" "$bdir/dmarec.ko" "$work/initrd-$kver.gz"
	drives=()
	for ((d = 0; d < ${DMAREC_DISKS:-1}; d++)); do
		truncate -s "${DMAREC_DISK_MB:-64}M" "$work/disk$d-$kver.img"
		drives+=(-drive "file=$work/disk$d-$kver.img,format=raw,if=virtio,cache=none")
	done
	log=$work/serial-$kver.log
	echo "   booting (timeout ${timeout_s}s), serial log $log"
	start=$(date +%s)
	set +e
	# shellcheck disable=SC2086 # DMAREC_QEMU_ARGS is a list of words
	timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 \
		-machine q35 -accel tcg -cpu max -smp 2 -m "${DMAREC_MEM_MB:-1024}" \
		-nographic -no-reboot -monitor none -serial stdio \
		-kernel "/boot/vmlinuz-$kver" -initrd "$work/initrd-$kver.gz" \
		-append "console=ttyS0 panic=1 oops=panic loglevel=4 init_on_alloc=0 rdinit=/init${DMAREC_APPEND:+ $DMAREC_APPEND}" \
		${DMAREC_QEMU_ARGS:-} "${drives[@]}" \
		</dev/null >"$log" 2>&1
	qrc=$?
	set -e
	secs=$(( $(date +%s) - start ))
	tr -d '\r' <"$log" >"$log.txt"
	# the guest's own output (tests), without kernel console lines
	sed -n '/DMAREC-BOOTED/,/^DMAREC-RESULT/p' "$log.txt" |
		grep -vE '^\[ *[0-9]+\.[0-9]+\]' | sed 's/.*DMAREC-BOOTED/DMAREC-BOOTED/; s/^/   | /' || true
	result=FAIL
	why=
	if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
		why="timeout after ${timeout_s}s"
	elif ! grep -q '^DMAREC-RESULT PASS$' "$log.txt"; then
		why="no DMAREC-RESULT PASS marker (qemu rc $qrc)"
	else
		# the guest's dmesg, dumped between markers at the end
		sed -n '/^DMAREC-DMESG-BEGIN$/,/^DMAREC-DMESG-END$/p' "$log.txt" >"$work/dmesg-$kver.txt"
		if ! grep -q '^DMAREC-DMESG-END$' "$work/dmesg-$kver.txt"; then
			why="no dmesg dump"
		elif { cat "$work/dmesg-$kver.txt"; grep -E '^\[ *[0-9]+\.[0-9]+\]' "$log.txt"; } |
			grep -E "$bad_re" | head -20 | grep .; then
			why="kernel reported a problem (see above)"
		else
			result=PASS
		fi
	fi
	echo "== kernel $kver: $result ${why:+($why) }in ${secs}s"
	if [ "$result" != PASS ]; then
		overall=1
		tail -60 "$log.txt"
		[ "$keep" = 1 ] || keep=logs
	fi
	summary+=("$kver: $result")
done
echo "== summary"
printf '   %s\n' "${summary[@]}"
npass=0; nfail=0
for s in "${summary[@]}"; do case "$s" in *PASS) npass=$((npass+1));; *) nfail=$((nfail+1));; esac; done
echo "qemu kernels: $npass passed, $nfail failed"
exit $overall
