# rose — every target documents itself: `make help`.
PYTHON ?= python3
SO := rose/_rose$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")

.PHONY: help install dev release test test-rust test-python test-debug tulip bench bench-echo bench-udp bench-rss bench-tls lint stubtest clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## install rose (release build) with test and benchmark extras
	$(PYTHON) -m pip install -q ".[test,bench]"

dev:  ## debug build of the extension, in place (rose/_rose*.so), plus test dependencies
	$(PYTHON) -m pip install -q "pytest>=7" "pytest-timeout>=2" "trustme>=1"
	cargo build --features extension-module
	# a new inode: processes that have the old build loaded keep it intact
	cp target/debug/lib_rose.so $(SO).tmp && mv -f $(SO).tmp $(SO)

release:  ## optimised build of the extension, in place
	cargo build --release --features extension-module
	cp target/release/lib_rose.so $(SO).tmp && mv -f $(SO).tmp $(SO)

test: test-rust dev test-python test-debug tulip  ## build, then run every test: cargo tests, pytest (also in debug mode), CPython's test_asyncio

test-rust:  ## Rust unit tests (pure-Rust parts)
	cargo test --lib

test-python:  ## pytest: every test on rose and on stdlib asyncio
	$(PYTHON) -m pytest tests -q

test-debug:  ## pytest again with PYTHONASYNCIODEBUG=1
	PYTHONASYNCIODEBUG=1 $(PYTHON) -m pytest tests -q

tulip:  ## CPython's test_asyncio against rose (and `make tulip LOOP=asyncio`)
	$(PYTHON) tulip-suite/run.py --loop $(or $(LOOP),rose)

bench: release  ## micro-benchmarks: asyncio, uvloop, rloop and rose side by side
	$(PYTHON) -m pip install -q uvloop rloop matplotlib
	$(PYTHON) benchmarks/micro.py

bench-echo: release  ## echo servers (protocol, streams, sock_*) under the Rust load generator, with the tokio floor
	$(PYTHON) -m pip install -q uvloop rloop
	$(PYTHON) benchmarks/echo.py

bench-udp: release  ## UDP echo and subprocess spawn round trips, the four loops side by side
	$(PYTHON) -m pip install -q uvloop rloop
	$(PYTHON) benchmarks/udp_subprocess.py

bench-rss: release  ## RSS per idle connection with 5,000 connections open
	$(PYTHON) -m pip install -q uvloop rloop
	$(PYTHON) benchmarks/idle_rss.py

bench-tls: release  ## TLS echo at 1 KiB (asyncio, uvloop, rose; rloop has no TLS)
	$(PYTHON) -m pip install -q uvloop rloop trustme
	$(PYTHON) benchmarks/tls_echo.py

lint:  ## rustfmt, clippy, ruff
	cargo fmt --check
	cargo clippy --features extension-module -- -D warnings
	$(PYTHON) -m ruff check rose tests benchmarks tulip-suite

stubtest:  ## check rose/_rose.pyi against the built module
	$(PYTHON) -m mypy.stubtest --mypy-config-file pyproject.toml rose._rose

clean:  ## remove build products
	cargo clean
	rm -f rose/_rose*.so
