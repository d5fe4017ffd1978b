"""Loop metrics (`loop.metrics()`, slow-callback reports, `--stats`, `metrics_text`).

These APIs are rose's own, so most tests run on rose only, and check counts against known
workloads exactly where they are exact. The slow-callback report promises asyncio's format:
that test runs on both, stdlib in debug mode (where asyncio reports slow callbacks) and rose
without it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import re
import socket
import threading
import time

import pytest
from conftest import import_rose, run_python

rose = import_rose()


def delta(before, after):
    """Field-by-field difference of two snapshots (counters only)."""
    return {
        name: getattr(after, name) - getattr(before, name)
        for name in (
            "iterations",
            "callbacks_ready",
            "callbacks_timer",
            "callbacks_io",
            "timers_scheduled",
            "timers_cancelled",
            "timers_fired",
            "bytes_read",
            "bytes_written",
            "threadsafe_calls",
            "threadsafe_wakeups",
            "slow_callbacks",
            "parked_ns",
            "running_ns",
        )
    }


@pytest.fixture
def rloop():
    lp = rose.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture
def no_global_threshold():
    yield
    rose.set_slow_callback_threshold(None)


@pytest.fixture
def timing():
    """Every callback timed (off by default: see rose.set_callback_timing)."""
    rose.set_callback_timing(True)
    yield
    rose.set_callback_timing(False)


def test_snapshot_type_and_fresh_loop(rloop):
    m = rloop.metrics()
    assert isinstance(m, rose.LoopMetrics)
    assert m.iterations == 0 and m.callbacks == 0 and m.running_ns == 0 and m.callback_ns == 0
    assert m.callback_timing is False  # off unless asked for (or a threshold is set)
    assert m.longest == () and m.longest_callback is None and m.longest_callback_ns == 0
    assert len(m.histogram) == len(rose.HISTOGRAM_BOUNDS) + 1
    assert rose.HISTOGRAM_BOUNDS[0] == 1024e-9
    assert all(b == 2 * a for a, b in zip(rose.HISTOGRAM_BOUNDS[:-1], rose.HISTOGRAM_BOUNDS[1:], strict=True))
    assert m.as_dict()["iterations"] == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.iterations = 5


def test_ready_callbacks_and_iterations_exact(rloop, timing):
    before = rloop.metrics()
    for _ in range(100):
        rloop.call_soon(lambda: None)
    cancelled = rloop.call_soon(lambda: None)
    cancelled.cancel()
    rloop.call_soon(rloop.stop)
    rloop.run_forever()
    d = delta(before, rloop.metrics())
    # one iteration runs the 101 live callbacks (the cancelled one is not run)
    assert d["iterations"] == 1
    assert d["callbacks_ready"] == 101
    assert d["callbacks_timer"] == d["callbacks_io"] == 0
    assert sum(rloop.metrics().histogram) == rloop.metrics().callbacks


def test_untimed_by_default(rloop):
    rloop.set_debug(False)
    for _ in range(10):
        rloop.call_soon(lambda: None)
    rloop.call_soon(rloop.stop)
    rloop.run_forever()
    m = rloop.metrics()
    assert m.callbacks_ready == 11
    assert sum(m.histogram) == 0 and m.longest == () and m.callback_ns == 0
    assert m.running_ns > 0  # from the run step's own clock reads, timed or not
    assert "not timed" in rose.format_stats(m)


def test_threshold_times_callbacks(rloop, no_global_threshold):
    rloop.set_debug(False)
    rloop.set_slow_callback_threshold(10)  # nothing is that slow; callbacks are timed
    for _ in range(10):
        rloop.call_soon(lambda: None)
    rloop.call_soon(rloop.stop)
    rloop.run_forever()
    m = rloop.metrics()
    assert sum(m.histogram) == m.callbacks == 11 and 0 < m.callback_ns <= m.running_ns


def test_timer_counts_exact(rloop):
    before = rloop.metrics()
    for _ in range(10):
        rloop.call_later(0, lambda: None)
    far = [rloop.call_later(100, lambda: None) for _ in range(5)]
    for h in far:
        h.cancel()
        h.cancel()  # a second cancel counts once
    at = rloop.call_at(rloop.time() + 0.01, rloop.stop)
    rloop.run_forever()
    at.cancel()  # after it ran: not a cancellation of a scheduled timer
    d = delta(before, rloop.metrics())
    assert d["timers_scheduled"] == 16
    assert d["timers_cancelled"] == 5
    assert d["timers_fired"] == 11
    assert d["callbacks_timer"] == 11
    assert d["callbacks_ready"] == 0


def test_io_callbacks_and_fd_watchers(rloop):
    a, b = socket.socketpair()
    a.setblocking(False)
    calls = []

    def on_readable():
        calls.append(a.recv(1))
        assert rloop.metrics().fd_watchers == 1
        if len(calls) == 3:
            rloop.remove_reader(a)
            rloop.stop()

    try:
        before = rloop.metrics()
        rloop.add_reader(a, on_readable)
        assert rloop.metrics().fd_watchers == 1
        b.send(b"xyz")
        rloop.run_forever()
        d = delta(before, rloop.metrics())
        assert calls == [b"x", b"y", b"z"]
        assert d["callbacks_io"] == 3  # level-triggered: one callback per byte read
        assert d["callbacks_ready"] == 0
        assert rloop.metrics().fd_watchers == 0
    finally:
        a.close()
        b.close()


def test_signal_handler_callbacks_count_as_ready(rloop):
    import signal

    got = []
    rloop.add_signal_handler(signal.SIGUSR1, lambda: (got.append(1), rloop.stop()))
    try:
        before = rloop.metrics()
        rloop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        rloop.run_forever()
        d = delta(before, rloop.metrics())
        assert got == [1]
        assert d["callbacks_ready"] == 2  # os.kill and the handler
        assert d["callbacks_io"] == 0
    finally:
        rloop.remove_signal_handler(signal.SIGUSR1)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Client(asyncio.Protocol):
    def __init__(self, size, done):
        self.size, self.done, self.got = size, done, 0

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"x" * self.size)

    def data_received(self, data):
        self.got += len(data)
        if self.got == self.size:
            self.done.set_result(None)


def test_tcp_bytes_and_open_transports_exact(rloop):
    size = 100_000

    async def main():
        server = await rloop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        before = rloop.metrics()
        done = rloop.create_future()
        lost = rloop.create_future()
        client = Client(size, done)
        client.connection_lost = lambda exc: lost.set_result(exc)
        transport, _ = await rloop.create_connection(lambda: client, "127.0.0.1", port)
        await done
        during = rloop.metrics()
        transport.close()
        await lost
        server.close()
        await server.wait_closed()
        for _ in range(3):  # the server side's connection_lost
            await asyncio.sleep(0)
        return before, during, rloop.metrics()

    before, during, after = rloop.run_until_complete(main())
    assert before.transports == 0
    assert during.transports == 2  # the client's and the server's
    assert after.transports == 0
    d = delta(before, after)
    # both ends are rose transports on this loop: the client's bytes out and back
    assert d["bytes_written"] == 2 * size
    assert d["bytes_read"] == 2 * size
    assert d["callbacks_io"] > 0


def test_udp_bytes_exact(rloop):
    async def main():
        got = []
        done = rloop.create_future()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                got.append(data)
                if len(got) == 3:
                    done.set_result(None)

        recv_t, _ = await rloop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
        addr = recv_t.get_extra_info("sockname")
        send_t, _ = await rloop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=addr)
        before = rloop.metrics()
        assert before.transports == 2
        for n in (100, 200, 300):
            send_t.sendto(b"d" * n)
        await done
        after = rloop.metrics()
        send_t.close()
        recv_t.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return before, after, rloop.metrics(), got

    before, after, closed, got = rloop.run_until_complete(main())
    assert [len(g) for g in got] == [100, 200, 300]
    d = delta(before, after)
    assert d["bytes_written"] == 600 and d["bytes_read"] == 600
    assert closed.transports == 0


def test_threadsafe_calls_and_wakeups(rloop):
    before = rloop.metrics()
    # from the loop's own thread: a call, no wake-up (the loop is not parked)
    rloop.call_soon(rloop.call_soon_threadsafe, lambda: None)
    rloop.call_soon(rloop.stop)
    rloop.run_forever()
    d = delta(before, rloop.metrics())
    assert d["threadsafe_calls"] == 1 and d["threadsafe_wakeups"] == 0

    before = rloop.metrics()
    parked = threading.Event()
    rloop.call_soon(parked.set)
    far = rloop.call_later(30, rloop.stop)  # the loop parks until a wake-up

    def other():
        parked.wait(5)
        time.sleep(0.2)  # the loop is parked by now
        rloop.call_soon_threadsafe(rloop.stop)

    t = threading.Thread(target=other)
    t.start()
    rloop.run_forever()
    t.join()
    far.cancel()
    d = delta(before, rloop.metrics())
    assert d["threadsafe_calls"] == 1
    assert d["threadsafe_wakeups"] == 1


def test_idle_loop_is_parked_and_busy_loop_is_busy(rloop):
    before = rloop.metrics()
    rloop.run_until_complete(asyncio.sleep(0.2))
    idle = delta(before, rloop.metrics())
    assert idle["parked_ns"] >= 0.18e9
    assert idle["running_ns"] / (idle["running_ns"] + idle["parked_ns"]) < 0.2

    def burn(n):
        end = time.perf_counter() + 0.005
        while time.perf_counter() < end:
            pass
        if n:
            rloop.call_soon(burn, n - 1)
        else:
            rloop.stop()

    before = rloop.metrics()
    rloop.call_soon(burn, 40)
    rloop.run_forever()
    busy = delta(before, rloop.metrics())
    assert busy["running_ns"] >= 41 * 0.005e9
    assert busy["running_ns"] / (busy["running_ns"] + busy["parked_ns"]) > 0.9
    assert busy["callbacks_ready"] == 41


def test_histogram_and_longest(rloop, timing):
    def sleeper():
        time.sleep(0.03)

    for _ in range(50):
        rloop.call_soon(lambda: None)
    rloop.call_soon(sleeper)
    rloop.call_soon(rloop.stop)
    rloop.run_forever()
    m = rloop.metrics()
    assert sum(m.histogram) == m.callbacks == 52
    ns = m.longest_callback_ns
    assert 0.03e9 <= ns < 1e9
    # the slow callback is counted in the bucket its duration falls in
    k = sum(1 for bound in rose.HISTOGRAM_BOUNDS if bound * 1e9 <= ns)
    assert rose.HISTOGRAM_BOUNDS[k - 1] * 1e9 <= ns < rose.HISTOGRAM_BOUNDS[k] * 1e9
    assert m.histogram[k] >= 1
    # and the 50 empty ones well below 16 ms (bucket 15 starts at 2^24 ns)
    assert rose.HISTOGRAM_BOUNDS[14] == 2**24 / 1e9
    assert sum(m.histogram[:15]) >= 51  # 50 lambdas and stop()
    assert "sleeper()" in m.longest_callback and m.longest_callback.startswith("<Handle ")
    assert len(m.longest) == 5
    assert [ns for ns, _ in m.longest] == sorted((ns for ns, _ in m.longest), reverse=True)
    assert m.running_ns >= 0.03e9


def test_longest_names_a_task(rloop, timing):
    async def slow_task():
        time.sleep(0.02)

    rloop.run_until_complete(slow_task())
    longest = rloop.metrics().longest_callback
    assert longest is not None and "slow_task()" in longest and longest.startswith("<Task ")


SLOW = re.compile(r"^Executing <Handle .*sleepy\(\) at .*test_metrics\.py:\d+> took 0\.0\d\d seconds$")


def test_slow_callback_report_matches_asyncio(impl, loop, caplog, no_global_threshold):
    """rose without debug mode reports as asyncio's debug mode does."""

    def sleepy():
        time.sleep(0.03)

    if impl == "rose":
        loop.set_debug(False)  # (the suite also runs with PYTHONASYNCIODEBUG=1)
        rose.set_slow_callback_threshold(0.02)
    else:
        loop.set_debug(True)
        loop.slow_callback_duration = 0.02
    for _ in range(5):
        loop.call_soon(lambda: None)  # fast: not reported
    loop.call_soon(sleepy)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_forever()
    records = [r for r in caplog.records if r.name == "asyncio" and r.getMessage().startswith("Executing")]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].levelno == logging.WARNING
    assert SLOW.match(records[0].getMessage()), records[0].getMessage()
    if impl == "rose":
        assert loop.metrics().slow_callbacks == 1
        assert not loop.get_debug()


def test_slow_callback_threshold_settings(rloop, caplog, no_global_threshold):
    assert rose.get_slow_callback_threshold() is None
    assert rloop.get_slow_callback_threshold() is None
    rose.set_slow_callback_threshold(0.25)
    assert rose.get_slow_callback_threshold() == pytest.approx(0.25)
    assert rloop.get_slow_callback_threshold() == pytest.approx(0.25)  # follows the process-wide one
    rloop.set_slow_callback_threshold(0.5)
    assert rloop.get_slow_callback_threshold() == pytest.approx(0.5)
    rloop.set_slow_callback_threshold(None)  # off for this loop, whatever the process-wide one
    assert rloop.get_slow_callback_threshold() is None
    rose.set_slow_callback_threshold(0)
    rloop.call_soon(rloop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        rloop.run_forever()
    assert not [r for r in caplog.records if r.getMessage().startswith("Executing")]
    for bad, exc in [("1", TypeError), (True, TypeError), (-1, ValueError), (math.nan, ValueError)]:
        with pytest.raises(exc):
            rose.set_slow_callback_threshold(bad)
        with pytest.raises(exc):
            rloop.set_slow_callback_threshold(bad)
    assert rose.get_slow_callback_threshold() == 0.0


def test_zero_threshold_reports_every_callback(rloop, caplog):
    rloop.set_debug(False)  # in debug mode asyncio's own check reports instead
    rloop.set_slow_callback_threshold(0)
    for _ in range(3):
        rloop.call_soon(lambda: None)
    rloop.call_soon(rloop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        rloop.run_forever()
    assert len([r for r in caplog.records if r.getMessage().startswith("Executing")]) == 4
    assert rloop.metrics().slow_callbacks == 4


def test_failing_repr_does_not_stop_the_loop(rloop, caplog):
    class Odd:
        def __call__(self):
            time.sleep(0.001)

        def __repr__(self):
            raise RuntimeError("no repr")

    rloop.set_debug(False)
    rloop.set_slow_callback_threshold(0)  # every callback is formatted and logged
    rloop.call_soon(Odd())
    rloop.call_soon(rloop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        rloop.run_forever()
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Executing")]
    assert len(messages) == 2
    assert messages[0].startswith("Executing <rose._rose.Handle object at 0x")  # the fallback
    assert "<Handle Odd object()>" in [what for _, what in rloop.metrics().longest]


def parse_prometheus(text):
    """A strict reader of the text exposition format: {(name, labels): value}, {name: type}."""
    samples, types = {}, {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            assert name not in types
            types[name] = kind
            continue
        m = line_re.match(line)
        assert m, line
        labels = tuple(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def test_prometheus_text(rloop):
    async def main():
        await asyncio.sleep(0.01)
        return rose.metrics_text(labels={"app": 'a"b'})

    text = rloop.run_until_complete(main())
    m = rloop.metrics()
    samples, types = parse_prometheus(text)
    p = "rose_loop_"
    assert types[p + "callbacks_total"] == "counter"
    assert types[p + "callback_duration_seconds"] == "histogram"
    assert types[p + "transports"] == "gauge"
    lab = (("app", 'a\\"b'),)
    assert samples[(p + "timers_scheduled_total", lab)] == m.timers_scheduled == 1
    assert samples[(p + "callbacks_total", (("app", 'a\\"b'), ("kind", "timer")))] == 1
    buckets = [(v, labels) for (name, labels), v in samples.items() if name == p + "callback_duration_seconds_bucket"]
    assert len(buckets) == len(rose.HISTOGRAM_BOUNDS) + 1
    counts = [v for v, _ in buckets]
    assert counts == sorted(counts)  # cumulative
    assert samples[(p + "callback_duration_seconds_count", lab)] == counts[-1]
    assert dict(buckets[-1][1])["le"] == "+Inf"
    assert samples[(p + "parked_seconds_total", lab)] > 0.005
    stdlib_loop = asyncio.SelectorEventLoop()
    try:
        with pytest.raises(TypeError, match="rose loop"):
            rose.metrics_text(stdlib_loop)
    finally:
        stdlib_loop.close()


def test_stats_summary_at_close(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        "import asyncio, time\n"
        "async def main():\n"
        "    for _ in range(20):\n"
        "        await asyncio.sleep(0.001)\n"
        "    time.sleep(0.02)\n"
        "    print('done')\n"
        "asyncio.run(main())\n"
    )
    r = run_python(["-m", "rose", "--stats", str(script)])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done\n"
    err = r.stderr
    assert "rose loop statistics" in err
    iterations = int(re.search(r"iterations\s+([\d,]+)", err).group(1).replace(",", ""))
    assert iterations >= 20
    assert re.search(r"utilisation\s+\d+\.\d% busy", err)
    assert re.search(r"timers\s+scheduled 20, cancelled 0, fired 20", err)
    assert "callback durations" in err and "longest callbacks" in err
    assert re.search(r"\d+\.\d+ ms\s+<Task .*main\(\)", err)
    # without --stats, nothing is printed
    r = run_python(["-m", "rose", str(script)])
    assert r.returncode == 0 and r.stderr == "" and r.stdout == "done\n"


def test_metrics_survive_close(rloop):
    rloop.call_soon(rloop.stop)
    rloop.run_forever()
    rloop.close()
    m = rloop.metrics()
    assert m.callbacks == 1 and m.fd_watchers == 0


def test_debug_mode_counts_too(rloop):
    rloop.set_debug(True)
    rloop.slow_callback_duration = 10
    for _ in range(3):
        rloop.call_soon(lambda: None)
    rloop.call_soon(rloop.stop)
    rloop.run_forever()
    m = rloop.metrics()
    assert m.callbacks_ready == 4 and sum(m.histogram) == 4 and m.longest


def test_forked_child_keeps_counting(rloop):
    rloop.call_soon(rloop.stop)
    rloop.run_forever()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            rloop.call_soon(rloop.stop)
            rloop.run_forever()
            os._exit(0 if rloop.metrics().callbacks == 2 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
