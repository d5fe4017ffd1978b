"""examples/metrics_aiohttp.py, as the README tells a user to run it: an aiohttp application
under `python -m rose` serving its loop's metrics on /metrics (Prometheus text format) and
logging slow callbacks through the asyncio logger. Metrics are rose's own API: rose only."""

from __future__ import annotations

import os
import re
import signal

import aiohttp
from frameworks import free_port, import_rose, python, run, server_fixture  # noqa: F401 -- the `server` fixture


EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples",
                       "metrics_aiohttp.py")  # fmt: skip
SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def samples(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) rose_loop_[a-z_]+ ", line), line
            continue
        m = SAMPLE.match(line)
        assert m, line
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def test_example_serves_metrics_and_reports_slow_callbacks(server):
    rose = import_rose()
    port = free_port()
    srv = server(python("-m", "rose", EXAMPLE, str(port)))
    srv.wait_port(port)

    async def main():
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.get(url + "/") as resp:
                    assert resp.status == 200 and await resp.text() == "hello\n"
            async with session.get(url + "/slow") as resp:
                assert await resp.text() == "slow\n"
            async with session.get(url + "/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert resp.headers["X-Loop"] == "Loop"
                return await resp.text()

    text = run(rose.new_event_loop, main())
    got = samples(text)
    lab = '{app="example"}'
    assert got[("rose_loop_slow_callbacks_total", lab)] >= 1
    assert got[("rose_loop_transports", lab)] >= 1  # this request's connection
    assert got[("rose_loop_read_bytes_total", lab)] > 0
    assert got[("rose_loop_callbacks_total", '{app="example",kind="io"}')] > 0
    assert got[("rose_loop_callback_duration_seconds_bucket", '{app="example",le="+Inf"}')] == got[
        ("rose_loop_callback_duration_seconds_count", lab)
    ]
    assert got[("rose_loop_longest_callback_seconds", lab)] >= 0.2
    assert srv.stop(signal.SIGINT) == 0
    # the slow handler was logged in asyncio's format (the Task running aiohttp's handler)
    assert re.search(r"WARNING:asyncio:Executing <Task .*> took 0\.2\d\d seconds", srv.out), srv.out
