# rose — every target documents itself: `make help`.
#
# One interpreter at a time: PYTHON (default python3) builds into target/<version>/ and
# rose/_rose.cpython-<ver>-*.so, so builds for several Pythons live side by side.
# `make test` runs everything on each of PYTHONS: 3.11 with this machine's python3.11, 3.13
# from ../shared/tools/cpython.sh, 3.14 and 3.15 inside the Debian sid chroot of
# ../shared/tools/sid.sh (both scripts build what is missing, and cache it).
PYTHON ?= python3
PYTHONS ?= 3.11 3.13 3.14 3.15
TOOLS ?= $(firstword $(wildcard ../shared/tools /work/shared/tools))

PY_INFO := $(shell $(PYTHON) -c "import sys, sysconfig; print('%d.%d' % sys.version_info[:2], sysconfig.get_config_var('EXT_SUFFIX'), sys.executable)" 2>/dev/null)
PYVER := $(word 1,$(PY_INFO))
SO := rose/_rose$(word 2,$(PY_INFO))
# pyo3's build script reads PYO3_PYTHON: the build is for this interpreter.
export PYO3_PYTHON := $(word 3,$(PY_INFO))
export PIP_ROOT_USER_ACTION := ignore
BUILD := target/$(PYVER)
CARGO_FLAGS := --target-dir $(BUILD)
# The requirements of an extra of pyproject.toml (one list, read where it is used).
# sid.sh run CMD, after dropping a stale bind mount of this checkout's parent: sid.sh binds the
# parent folder once and keeps the mount, so when that folder is deleted and made again (a CI
# machine's fresh checkout at the same path), the chroot still shows the old one and `cd` fails.
UP := $(patsubst %/,%,$(dir $(CURDIR)))
# The chroot's root is also made a mount point of its own (/opt/sid bound onto itself, with what
# is mounted inside): tests that make a mount namespace (`unshare -m`, tests/test_resolver.py)
# need a root whose propagation they can make private, which a plain directory is not.
SID = while mountpoint -q /opt/sid$(UP) && [ "$$(stat -c %d:%i $(UP))" != "$$(stat -c %d:%i /opt/sid$(UP))" ]; \
	  do umount -l /opt/sid$(UP) || break; done; $(TOOLS)/sid.sh setup && \
	  { mountpoint -q /opt/sid || mount --rbind /opt/sid /opt/sid; } && $(TOOLS)/sid.sh run
extra = $(shell $(PYTHON) -c "import tomllib; print(' '.join(repr(r) for r in tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['$(1)']))")

.PHONY: help install dev release check test $(addprefix test-,$(PYTHONS)) test-rust test-python \
	test-debug pyo3-async-ext integration services reliability fuzz soak tulip tulip-stdlib wheels bench bench-echo bench-http bench-http-profile bench-udp bench-rss bench-tls bench-dns bench-bridge lint \
	stubtest dev-deps clean

help:  ## list the targets
	@grep -E '^[a-z0-9. -]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## install rose (release build) with test and benchmark extras
	$(PYTHON) -m pip install -q ".[test,bench]"

dev:  ## debug build of the extension for PYTHON, in place (rose/_rose*.so), plus test dependencies
	$(PYTHON) -m pip install -q $(call extra,test) $(call extra,dev)
	cargo build $(CARGO_FLAGS) --features extension-module
	# a new inode: processes that have the old build loaded keep it intact
	cp $(BUILD)/debug/lib_rose.so $(SO).$$$$.tmp && mv -f $(SO).$$$$.tmp $(SO)

release:  ## optimised build of the extension for PYTHON, in place
	cargo build $(CARGO_FLAGS) --release --features extension-module
	cp $(BUILD)/release/lib_rose.so $(SO).$$$$.tmp && mv -f $(SO).$$$$.tmp $(SO)

test: lint $(addprefix test-,$(PYTHONS))  ## lint, then everything on every supported Python (PYTHONS="3.11 3.13 3.14 3.15")

test-3.11:  ## everything on CPython 3.11 (this machine's python3.11)
	$(MAKE) check PYTHON=python3.11

test-3.13: .venv/3.13/bin/python  ## everything on CPython 3.13 (built by cpython.sh if missing)
	$(MAKE) check PYTHON=.venv/3.13/bin/python

test-3.14 test-3.15: test-%: pyo3-async-ext  ## everything on CPython 3.14 / 3.15 (in the sid chroot of sid.sh)
	$(SID) sh -c '[ -x .venv/$*/bin/python ] || python$* -m venv .venv/$*; \
	  exec make check PYTHON=.venv/$*/bin/python'

.venv/3.13/bin/python:
	$$($(TOOLS)/cpython.sh 3.13) -m venv .venv/3.13

# The two pytest runs go side by side (2 jobs, each run's output in one piece): much of their
# time is spent waiting (timers, children, servers), and the sequence took most of CI's 40
# minutes. The suite is written for that: ports are the kernel's, files are temporary,
# dnsmasq takes a free loopback address, and timing bounds leave room for a busy machine.
check: test-rust dev stubtest  ## everything on PYTHON: cargo tests, stub check, pytest (also in debug mode), the integration tier, CPython's test_asyncio on rose and on stdlib
	$(MAKE) -j2 --output-sync=target test-python test-debug
	$(MAKE) integration tulip tulip-stdlib

# The test binary links libpython: an interpreter built with --enable-shared outside the loader's
# paths (cpython.sh's 3.13, whose own binary finds it by its RUNPATH) needs its LIBDIR named.
test-rust:  ## Rust unit tests (pure-Rust parts)
	LD_LIBRARY_PATH=$$($(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')")$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} \
	  cargo test $(CARGO_FLAGS) --lib

test-python: services pyo3-async-ext  ## pytest: every test on rose and on stdlib asyncio (tests/test_resolver.py runs dnsmasq)
	$(PYTHON) -m pytest tests -q --ignore=tests/integration

# tests/test_resolver.py runs each scenario in a child process without PYTHONASYNCIODEBUG (on
# rose, debug mode keeps asyncio's executor path), and tests/test_readme.py runs the README's
# command with no PYTHON* variable: in debug mode either would repeat the normal run.
test-debug: pyo3-async-ext  ## pytest again with PYTHONASYNCIODEBUG=1
	PYTHONASYNCIODEBUG=1 $(PYTHON) -m pytest tests -q -p no:cacheprovider --ignore=tests/integration \
	  --ignore=tests/test_resolver.py --ignore=tests/test_readme.py

# The test extension of tests/test_pyo3_async.py, written against pyo3-async-runtimes' tokio
# runtime: abi3, so one build serves every Python (the rule reruns only when its sources change).
# test-3.14/3.15 build it on the host first: a build in the sid chroot would link sid's newer
# glibc, which the host's Pythons could not load.
PYO3_ASYNC_EXT := tests/pyo3_async_ext/build/rose_pyo3_async_test.abi3.so

pyo3-async-ext: $(PYO3_ASYNC_EXT)  ## the test extension on pyo3-async-runtimes' tokio runtime (abi3: one build for every Python)

$(PYO3_ASYNC_EXT): tests/pyo3_async_ext/Cargo.toml tests/pyo3_async_ext/Cargo.lock $(wildcard tests/pyo3_async_ext/src/*.rs)
	cargo build --manifest-path tests/pyo3_async_ext/Cargo.toml --release --locked --target-dir target/pyo3_async_ext
	mkdir -p $(@D)
	cp target/pyo3_async_ext/release/librose_pyo3_async_test.so $@.$$$$.tmp && mv -f $@.$$$$.tmp $@

integration: services  ## real frameworks and real servers (PostgreSQL, Redis) on rose and on stdlib (tests/integration)
	$(PYTHON) -m pip install -q $(call extra,integration)
	$(PYTHON) -m pytest tests/integration -q

# The tests start their own servers: while installing, a policy-rc.d (when there is none) keeps
# the packages from starting theirs (a chroot has no init to stop them). Check-Valid-Until=false:
# sid's Release file can be past its Valid-Until on a machine whose clock runs ahead. Without
# recommends: they pull in an MTA (exim4), whose configuration fails in the chroot.
services:  ## Debian's postgresql and redis-server for the integration tier, dnsmasq and iproute2 (`ip`) for the resolver tests (installed when missing)
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	    || ! [ -x /usr/sbin/dnsmasq ] || ! command -v ip >/dev/null; then \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1; fi; \
	  apt-get -o Acquire::Check-Valid-Until=false update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql redis-server dnsmasq-base iproute2 >/dev/null; \
	  rc=$$?; [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; fi
	@# PostgreSQL runs as the postgres user, who must be able to reach its binaries from /; the
	@# root of sid.sh's chroot is made by mktemp -d, mode 700: give it the usual 755.
	@if [ "$$(stat -c %a /)" = 700 ]; then chmod 755 /; fi

reliability:  ## the reliability tier alone (fuzz, bad-input sweep, leaks, faults; part of test-python)
	$(PYTHON) -m pytest tests/reliability -q

fuzz:  ## the differential scheduling fuzz, long: ROSE_FUZZ_SEEDS seeds (default 5000)
	ROSE_FUZZ_SEEDS=$(or $(ROSE_FUZZ_SEEDS),5000) $(PYTHON) -m pytest tests/reliability/test_fuzz_scheduling.py -q

soak:  ## the leak checks, long (a million callbacks, 100,000 connections, ...)
	ROSE_SOAK=1 $(PYTHON) -m pytest tests/reliability/test_leaks.py -q -o timeout=3600

tulip:  ## CPython's test_asyncio (PYTHON's own) against rose (and `make tulip LOOP=asyncio`)
	$(PYTHON) tulip-suite/run.py --loop $(or $(LOOP),rose)

tulip-stdlib:  ## the same harness on PYTHON's stock loop: proves the harness on this version
	$(PYTHON) tulip-suite/run.py --loop asyncio

wheels:  ## a release wheel for each of PYTHONS, into dist/
	for v in $(PYTHONS); do $(MAKE) wheel-$$v || exit 1; done

wheel-3.11:
	$(MAKE) wheel PYTHON=python3.11

wheel-3.13: .venv/3.13/bin/python
	$(MAKE) wheel PYTHON=.venv/3.13/bin/python

wheel-3.14 wheel-3.15: wheel-%:
	$(SID) sh -c '[ -x .venv/$*/bin/python ] || python$* -m venv .venv/$*; \
	  exec make wheel PYTHON=.venv/$*/bin/python'

wheel:
	$(PYTHON) -m pip install -q "maturin>=1.5,<2"
	CARGO_TARGET_DIR=$(BUILD) $(PYTHON) -m maturin build --release -i $(PYO3_PYTHON) -o dist

bench: release  ## micro-benchmarks: asyncio, uvloop, rloop and rose side by side
	$(PYTHON) -m pip install -q uvloop rloop matplotlib
	$(PYTHON) benchmarks/micro.py

bench-echo: release  ## echo servers (protocol, streams, sock_*) under the Rust load generator, with the tokio floor
	$(PYTHON) -m pip install -q uvloop rloop
	$(PYTHON) benchmarks/echo.py

bench-http: release  ## HTTP hello world (uvicorn+httptools, aiohttp, a raw Protocol server) under wrk, the four loops side by side
	command -v wrk >/dev/null || { apt-get -o Acquire::Check-Valid-Until=false update -qq && apt-get install -y -qq wrk; }
	$(PYTHON) -m pip install -q uvloop rloop uvicorn httptools aiohttp
	$(PYTHON) benchmarks/http.py

bench-http-profile: release  ## instructions per HTTP request by shared object (callgrind): rose and uvloop on http.py's servers
	command -v wrk >/dev/null || { apt-get -o Acquire::Check-Valid-Until=false update -qq && apt-get install -y -qq wrk; }
	command -v valgrind >/dev/null || { apt-get -o Acquire::Check-Valid-Until=false update -qq && apt-get install -y -qq valgrind; }
	$(PYTHON) -m pip install -q uvloop uvicorn httptools aiohttp
	$(PYTHON) benchmarks/profile_http.py

bench-udp: release  ## UDP echo and subprocess spawn round trips, the four loops side by side
	$(PYTHON) -m pip install -q uvloop rloop
	$(PYTHON) benchmarks/udp_subprocess.py

bench-rss: release  ## RSS per idle connection with 5,000 connections open
	$(PYTHON) -m pip install -q uvloop rloop
	$(PYTHON) benchmarks/idle_rss.py

bench-tls: release  ## TLS echo at 1 KiB (asyncio, uvloop, rose; rloop has no TLS)
	$(PYTHON) -m pip install -q uvloop rloop trustme
	$(PYTHON) benchmarks/tls_echo.py

bench-dns: release  ## 1000 concurrent getaddrinfo against a local dnsmasq, and a cached one: asyncio, uvloop, aiodns (aiohttp's AsyncResolver), rose
	[ -x /usr/sbin/dnsmasq ] || { apt-get -o Acquire::Check-Valid-Until=false update -qq && apt-get install -y -qq --no-install-recommends dnsmasq-base; }
	$(PYTHON) -m pip install -q uvloop aiohttp aiodns
	$(PYTHON) benchmarks/dns.py

bench-bridge: release pyo3-async-ext  ## await of a completed Rust future: rose's bridge, RoseRuntime, pyo3-async-runtimes' tokio path
	$(PYTHON) -m pip install -q uvloop
	$(PYTHON) benchmarks/bridge.py

dev-deps:  ## what lint, stubtest and the typing test use (the dev extra), for PYTHON
	$(PYTHON) -m pip install -q $(call extra,dev)

lint: dev-deps  ## rustfmt, clippy, ruff (this machine's PYTHON; `make test` runs it first)
	cargo fmt --check
	cargo clippy $(CARGO_FLAGS) --features extension-module -- -D warnings
	$(PYTHON) -m ruff check rose tests benchmarks tulip-suite

stubtest: dev-deps  ## check rose/_rose.pyi and rose/__init__.pyi against the built module
	$(PYTHON) -m mypy.stubtest --mypy-config-file pyproject.toml --allowlist tests/stubtest-allowlist.txt rose

clean:  ## remove build products
	cargo clean
	rm -rf target rose/_rose*.so
