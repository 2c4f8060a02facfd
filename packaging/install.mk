# make install: binaries, man pages and shell completions (generated from the
# binaries' own command lines), the systemd unit, the example config, the udev
# rule, modules-load.d and modprobe.d files, and the driver's DKMS source.
#   make install                          # into /usr/local (the unit, rules: /usr/local/lib/...)
#   make install PREFIX=/usr DESTDIR=/tmp/stage
# Runs as root for the group and udev reload only when DESTDIR is empty.
# make deb builds dist/dmarec_<version>_amd64.deb over a staged install
# (packaging/deb.sh).
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
BINDIR := $(PREFIX)/bin
MANDIR := $(PREFIX)/share/man/man1
LIBDIR_SYSTEM := $(if $(filter /usr,$(PREFIX)),/usr/lib,$(PREFIX)/lib)
UNITDIR ?= $(LIBDIR_SYSTEM)/systemd/system
UDEVRULESDIR ?= $(LIBDIR_SYSTEM)/udev/rules.d
MODULESLOADDIR ?= $(LIBDIR_SYSTEM)/modules-load.d
MODPROBEDIR ?= $(LIBDIR_SYSTEM)/modprobe.d
DOCDIR := $(PREFIX)/share/doc/dmarec
# One version: the crates' (Cargo.toml [workspace.package]); dkms.conf and the
# .deb take it from here.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DKMSDIR := $(PREFIX)/src/dmarec-$(VERSION)
# Every source of the driver (a file added to kmod/ is packaged without a change here).
KMOD_SOURCES := Kbuild Makefile 99-dmarec.rules \
	$(patsubst kmod/%,%,$(wildcard kmod/*.c kmod/*.h kmod/include/uapi/*.h))
GENERATED := target/generated-docs

.PHONY: install install-bin install-docs install-service install-dkms version
version:
	@echo $(VERSION)

install: install-bin install-docs install-service install-dkms
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ]; then \
		getent group dmarec >/dev/null || groupadd -r dmarec; \
		getent passwd dmarec >/dev/null || useradd -r -g dmarec -d /var/lib/dmarec -s /usr/sbin/nologin dmarec; \
		udevadm control --reload 2>/dev/null || true; \
		systemctl daemon-reload 2>/dev/null || true; \
	fi

target/release/dmarec target/release/dmaplay:
	cargo build --release -p dmarec-recorder -p dmarec-tools

install-bin: target/release/dmarec target/release/dmaplay
	install -D -m 0755 target/release/dmarec $(DESTDIR)$(BINDIR)/dmarec
	install -D -m 0755 target/release/dmaplay $(DESTDIR)$(BINDIR)/dmaplay

# Generated at install time by the binaries themselves (hidden subcommand).
install-docs: target/release/dmarec target/release/dmaplay
	rm -rf $(GENERATED)
	target/release/dmarec generate-docs $(GENERATED)
	target/release/dmaplay generate-docs $(GENERATED)
	install -d $(DESTDIR)$(MANDIR)
	install -m 0644 $(GENERATED)/man/*.1 $(DESTDIR)$(MANDIR)/
	for b in dmarec dmaplay; do \
		install -D -m 0644 $(GENERATED)/completions/$$b.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$b && \
		install -D -m 0644 $(GENERATED)/completions/_$$b $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_$$b && \
		install -D -m 0644 $(GENERATED)/completions/$$b.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/$$b.fish \
		|| exit 1; \
	done
	install -D -m 0644 packaging/dmarec.toml $(DESTDIR)$(DOCDIR)/dmarec.toml
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md

install-service:
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/dmarec|$(BINDIR)/dmarec|g' packaging/dmarec.service > $(DESTDIR)$(UNITDIR)/dmarec.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/dmarec.service
	install -D -m 0644 kmod/99-dmarec.rules $(DESTDIR)$(UDEVRULESDIR)/99-dmarec.rules
	install -D -m 0644 packaging/modules-load.conf $(DESTDIR)$(MODULESLOADDIR)/dmarec.conf
	install -D -m 0644 packaging/modprobe.conf $(DESTDIR)$(MODPROBEDIR)/dmarec.conf
	@# The config is the administrator's: never overwritten.
	test -e $(DESTDIR)$(SYSCONFDIR)/dmarec/dmarec.toml || \
		install -D -m 0640 packaging/dmarec.toml $(DESTDIR)$(SYSCONFDIR)/dmarec/dmarec.toml

# The driver's source for DKMS: dkms add/build/install dmarec/$(VERSION).
install-dkms:
	install -d $(DESTDIR)$(DKMSDIR)/include/uapi
	for f in $(KMOD_SOURCES); do install -m 0644 kmod/$$f $(DESTDIR)$(DKMSDIR)/$$f || exit 1; done
	install -m 0755 packaging/dkms-udev.sh $(DESTDIR)$(DKMSDIR)/dkms-udev.sh
	sed 's/@VERSION@/$(VERSION)/' kmod/dkms.conf > $(DESTDIR)$(DKMSDIR)/dkms.conf

.PHONY: deb
deb:
	bash packaging/deb.sh
