# Drover — common tasks. `make help` lists them.
SWIFT      ?= swift
BUILD_DIR  ?= .build
CONFIG     ?= Config/drover.conf
PYTEST     ?= python3 -m pytest
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= $(PREFIX)/etc
DESTDIR    ?=
# Drover refuses to run pools as root unless told (-R), like php-fpm.
ROOT_FLAG  := $(shell [ "$$(id -u)" = 0 ] && echo -R)

.PHONY: help deps build release demo run test unit integration bench install clean

help:
	@echo "make demo         install dependencies, build, run Drover on Config/ (foreground)"
	@echo "make test         install dependencies, build, run unit and integration tests"
	@echo "make build        debug build (.build/debug/drover, droverctl)"
	@echo "make release      release build"
	@echo "make bench        side-by-side benchmark vs php-fpm and spawn-fcgi (bench/)"
	@echo "make install      install binaries and config under PREFIX/DESTDIR"

deps:
	@scripts/install-deps

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

demo: deps build
	@echo
	@echo "Drover is starting on $(CONFIG) (Ctrl-C stops it). From another shell:"
	@echo "  $(BUILD_DIR)/debug/droverctl request /tmp/drover-demo-www.sock $(CURDIR)/Config/demo/hello.php"
	@echo "  $(BUILD_DIR)/debug/droverctl request /tmp/drover-demo-www.sock /status --query full"
	@echo "  $(BUILD_DIR)/debug/droverctl request /tmp/drover-demo-cgi.sock $(CURDIR)/Config/demo/hello.cgi"
	@echo "  $(BUILD_DIR)/debug/droverctl status --socket /tmp/drover-demo.ctl"
	@echo "  curl http://127.0.0.1:9180/metrics"
	@echo
	$(BUILD_DIR)/debug/drover -F $(ROOT_FLAG) -y $(CONFIG)

run: demo

unit: build
	$(SWIFT) test

integration: build
	$(PYTEST) -q Tests/Integration

test: deps build
	$(SWIFT) test
	$(PYTEST) -q Tests/Integration
	scripts/fuzz 30

bench: deps
	bench/run

install: release
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/drover/pool.d
	install -m 0755 $(BUILD_DIR)/release/drover $(DESTDIR)$(SBINDIR)/drover
	install -m 0755 $(BUILD_DIR)/release/droverctl $(DESTDIR)$(BINDIR)/droverctl
	install -m 0644 Config/drover.conf $(DESTDIR)$(SYSCONFDIR)/drover/drover.conf
	install -m 0644 Config/pool.d/*.conf $(DESTDIR)$(SYSCONFDIR)/drover/pool.d/

clean:
	rm -rf $(BUILD_DIR)
