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
#
# Device sets: a guest dir with a qemu.conf boots on its own (once per
# kernel) with the devices, modules, memory and kernel command line that
# file declares (see tests/qemu/README.md, "Device sets"); all dirs without
# one share the default boot (virtio disks from DMAREC_DISKS).
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

# build_initramfs KVER KO OUT SET: the guest dirs are in set_dirs, the
# set's extra modules and files in set_modules / set_adds
build_initramfs() {
	local kver=$1 ko=$2 out=$3 set=$4 root=$work/root-$kver-$4 g f m n=0
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,lib/modules,tests,opt/dmarec}
	cp /bin/busybox "$root/bin/busybox"
	# every applet (blockdev, losetup, ip, timeout, hexdump, ... for the
	# disk tests); init and linuxrc are left out (rdinit=/init)
	for f in $(/bin/busybox --list); do
		case "$f" in busybox|init|linuxrc) continue ;; esac
		ln -sf busybox "$root/bin/$f"
	done
	# virtio transport and block driver, whatever is modular in this kernel
	for m in virtio_pci virtio_blk $set_modules; do
		[ -n "$(mod_deps "$kver" "$m")" ] || modinfo -k "$kver" "$m" >/dev/null 2>&1 || {
			echo "run.sh: module $m not found for $kver (set $set)" >&2; exit 2; }
		for f in $(mod_deps "$kver" "$m"); do
			add_module "$kver" "$f" "$root"
		done
	done
	touch "$root/lib/modules/load.order"
	cp "$ko" "$root/lib/modules/dmarec.ko"
	cp "$work/dmarec-test" "$root/usr/bin/dmarec-test"
	cp "$work/dmarec-test32" "$root/usr/bin/dmarec-test32"
	for g in "${set_dirs[@]}"; do
		# a set's C helpers (e.g. disks/lwreplay.c) become static /usr/bin tools
		for f in "$g"/*.c; do
			[ -e "$f" ] || continue
			gcc -static -O2 -Wall -Wextra -Werror -o "$root/usr/bin/$(basename "$f" .c)" "$f"
		done
		for f in "$g"/*.sh; do
			[ -e "$f" ] || continue
			# shellcheck disable=SC2254
			case "$(basename "$f")" in $test_glob) ;; *) continue ;; esac
			cp "$f" "$root/tests/"
			n=$((n + 1))
		done
	done
	[ "$n" -gt 0 ] || return 1
	for f in "${adds[@]}" $set_adds; do
		[ -e "$f" ] || { echo "run.sh: --add $f: no such file" >&2; exit 2; }
		if head -c 4 "$f" | grep -q 'ELF'; then
			copy_elf "$f" "$root" "/usr/bin/$(basename "$f")"
		else
			cp -r "$f" "$root/opt/dmarec/"
		fi
	done
	cp "$here/init" "$root/init"
	chmod 0755 "$root/init" "$root"/tests/*.sh
	printf 'KVER=%s\nDMAREC_FUZZ_ITERS=%s\nDMAREC_CYCLES=%s\nDMAREC_DISKS=%s\nDMAREC_SET=%s\nDMAREC_WAIT_DEVS="%s"\n' \
		"$kver" "${DMAREC_FUZZ_ITERS:-5000}" "${DMAREC_CYCLES:-100}" "$set_virtio_disks" "$set" \
		"$set_wait_devs" >"$root/etc.env"
	(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 >"$out"
}

# kernel messages that fail a run (searched in the guest's dmesg and in
# the kernel lines of the serial console, which also has panics)
bad_re='BUG:|WARNING:|Oops|general protection|leak|Call Trace|kernel BUG|refcount_t|list_(add|del) corruption|INFO: task .* blocked|Kernel panic'
# IOMMU faults (a device DMA to an address nobody mapped) and swiotlb trouble
bad_re+='|DMAR: DRHD: handling fault|DMAR: \[DMA (Read|Write)|IO_PAGE_FAULT|swiotlb buffer is full'

# ---- device sets: the default boot, plus one per guest dir with a qemu.conf ----
for g in "${guest_dirs[@]}"; do
	[ -d "$g" ] || { echo "run.sh: no guest dir $g" >&2; exit 2; }
done
sets=(default)
for g in "${guest_dirs[@]}"; do [ -e "$g/qemu.conf" ] && sets+=("$g"); done

# load_set SET: sets set_dirs, set_qemu_args (array), set_disks,
# set_modules, set_append, set_mem_mb, set_timeout_s, set_adds,
# set_wait_devs, set_virtio_disks and set_name from SET's qemu.conf
# (or the defaults for the default set)
load_set() {
	local set=$1 g
	QEMU_ARGS= QEMU_DISKS= QEMU_MODULES= QEMU_APPEND= QEMU_MEM_MB= QEMU_TIMEOUT_S=
	QEMU_ADD= QEMU_WAIT_DEVS=
	set_dirs=()
	if [ "$set" = default ]; then
		for g in "${guest_dirs[@]}"; do [ -e "$g/qemu.conf" ] || set_dirs+=("$g"); done
		set_name=default
		set_virtio_disks=${DMAREC_DISKS:-1}
		QEMU_WAIT_DEVS=/dev/vda
		# a page freed while something still uses it reads back zeroed
		# or poisoned (25-uring-teardown)
		QEMU_APPEND="page_poison=1 init_on_free=1"
	else
		# shellcheck disable=SC1091
		QEMU_CONF_DIR=$set . "$set/qemu.conf"
		set_dirs=("$set")
		set_name=$(basename "$set")
		set_virtio_disks=0
	fi
	read -r -d '' -a set_qemu_args <<<"$QEMU_ARGS" || true # words over all lines
	set_disks=$QEMU_DISKS
	set_modules=$QEMU_MODULES
	set_append=$QEMU_APPEND
	set_mem_mb=${QEMU_MEM_MB:-${DMAREC_MEM_MB:-1024}}
	set_timeout_s=${QEMU_TIMEOUT_S:-$timeout_s}
	set_adds=$QEMU_ADD
	set_wait_devs=$QEMU_WAIT_DEVS
}

# set_drives KVER: the QEMU arguments of the current set with its disk
# images created (sparse) and every @name@ replaced by the image's path
set_drives() {
	local kver=$1 d name mb a img
	drives=()
	if [ "$set_name" = default ]; then
		for ((d = 0; d < set_virtio_disks; d++)); do
			truncate -s "${DMAREC_DISK_MB:-64}M" "$work/disk$d-$kver.img"
			drives+=(-drive "file=$work/disk$d-$kver.img,format=raw,if=virtio,cache=none")
		done
		return 0
	fi
	for d in $set_disks; do
		name=${d%%:*} mb=${d#*:}
		truncate -s "${mb}M" "$work/$set_name-$name-$kver.img"
	done
	for a in "${set_qemu_args[@]}"; do
		while [[ $a =~ @([A-Za-z0-9_]+)@ ]]; do
			img=$work/$set_name-${BASH_REMATCH[1]}-$kver.img
			[ -e "$img" ] || { echo "run.sh: $set_name/qemu.conf: @${BASH_REMATCH[1]}@ is not in QEMU_DISKS" >&2; exit 2; }
			a=${a//"${BASH_REMATCH[0]}"/$img}
		done
		drives+=("$a")
	done
}

# run_qemu KVER TAG LOG: boots the current set once; sets qrc, writes LOG
# and LOG.txt (without carriage returns)
run_qemu() {
	local kver=$1 tag=$2 log=$3
	set +e
	# shellcheck disable=SC2086 # DMAREC_QEMU_ARGS is a list of words
	timeout --foreground -k 10 "$set_timeout_s" qemu-system-x86_64 \
		-machine q35 -accel tcg -cpu max -smp 2 -m "$set_mem_mb" \
		-nographic -no-reboot -monitor none -serial stdio \
		-kernel "/boot/vmlinuz-$kver" -initrd "$work/initrd-$tag.gz" \
		-append "console=ttyS0 panic=1 oops=panic loglevel=4 init_on_alloc=0 rdinit=/init $set_append${DMAREC_APPEND:+ $DMAREC_APPEND}" \
		${DMAREC_QEMU_ARGS:-} "${drives[@]}" \
		</dev/null >"$log" 2>&1
	qrc=$?
	set -e
	tr -d '\r' <"$log" >"$log.txt"
}

# check_boot KVER TAG QRC: sets result and why from the serial log
check_boot() {
	local kver=$1 tag=$2 qrc=$3 log=$work/serial-$2.log
	result=FAIL
	why=
	if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
		why="timeout after ${set_timeout_s}s"
	elif ! grep -q '^DMAREC-RESULT PASS$' "$log.txt"; then
		why="no DMAREC-RESULT PASS marker (qemu rc $qrc)"
	else
		# the guest's dmesg, dumped between markers at the end
		sed -n '/^DMAREC-DMESG-BEGIN$/,/^DMAREC-DMESG-END$/p' "$log.txt" >"$work/dmesg-$tag.txt"
		if ! grep -q '^DMAREC-DMESG-END$' "$work/dmesg-$tag.txt"; then
			why="no dmesg dump"
		elif { cat "$work/dmesg-$tag.txt"; grep -E '^\[ *[0-9]+\.[0-9]+\]' "$log.txt"; } |
			grep -E "$bad_re" | head -20 | grep .; then
			why="kernel reported a problem (see above)"
		else
			result=PASS
		fi
	fi
}

# boot_set KVER: build the current set's initramfs, boot it, check it
boot_set() {
	local kver=$1 tag=$1-$set_name qrc secs start log
	if ! build_initramfs "$kver" "$bdir/dmarec.ko" "$work/initrd-$tag.gz" "$set_name"; then
		return 0 # no test of this set matches --test
	fi
	ran=$((ran + 1))
	set_drives "$kver"
	log=$work/serial-$tag.log
	echo "   set $set_name: booting (timeout ${set_timeout_s}s), serial log $log"
	start=$(date +%s)
	run_qemu "$kver" "$tag" "$log"
	# A kernel that dies before the guest's init starts (seen once: an int3
	# oops in sched_clock_cpu at 1.7 s on 6.12 under TCG, before any module
	# of ours was loaded) has run no test: boot it again, once, and say so.
	if ! grep -q 'DMAREC-BOOTED' "$log.txt"; then
		echo "   set $set_name: the kernel died before init: $(grep -m1 -E 'Oops|BUG:|panic' "$log.txt" || tail -1 "$log.txt"); booting once more"
		cp "$log.txt" "$log.first-boot.txt"
		set_drives "$kver"
		run_qemu "$kver" "$tag" "$log"
	fi
	secs=$(( $(date +%s) - start ))
	# the guest's own output (tests), without kernel console lines
	sed -n '/DMAREC-BOOTED/,/^DMAREC-RESULT/p' "$log.txt" |
		grep -vE '^\[ *[0-9]+\.[0-9]+\]' | sed 's/.*DMAREC-BOOTED/DMAREC-BOOTED/; s/^/   | /' || true
	check_boot "$kver" "$tag" "$qrc"
	echo "== kernel $kver, set $set_name: $result ${why:+($why) }in ${secs}s"
	if [ "$result" != PASS ]; then
		overall=1
		tail -60 "$log.txt"
		[ "$keep" = 1 ] || keep=logs
	fi
	summary+=("$kver $set_name: $result (${secs}s)")
}

overall=0
summary=()
ran=0
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
	for s in "${sets[@]}"; do
		load_set "$s"
		boot_set "$kver"
	done
done
[ "$ran" -gt 0 ] || { echo "run.sh: no guest test matches '$test_glob'" >&2; exit 2; }
echo "== summary"
printf '   %s\n' "${summary[@]}"
npass=0; nfail=0
for s in "${summary[@]}"; do case "$s" in *PASS*) npass=$((npass+1));; *) nfail=$((nfail+1));; esac; done
echo "qemu boots: $npass passed, $nfail failed"
exit $overall
