"""Loop metrics for operators: `loop.metrics()`, slow-callback reports, the `--stats` summary
and the Prometheus text format (`metrics_text`).

The counters are kept by the compiled run step as it goes and are always on (src/metrics.rs
says what they cost); everything here only reads them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from typing import Any

from . import _rose

__all__ = [
    "HISTOGRAM_BOUNDS",
    "LoopMetrics",
    "format_stats",
    "metrics_text",
    "set_callback_timing",
    "set_slow_callback_threshold",
    "get_slow_callback_threshold",
]

#: Upper bounds (exclusive, in seconds) of the callback-duration histogram's buckets: 1.024 µs,
#: 2.048 µs, ... doubling to 17.2 s. `LoopMetrics.histogram` has one more bucket, for
#: everything from the last bound on.
HISTOGRAM_BOUNDS: tuple[float, ...] = tuple(ns / 1e9 for ns in _rose._HISTOGRAM_BOUNDS_NS)


@dataclasses.dataclass(frozen=True)
class LoopMetrics:
    """A snapshot of one loop's counters, totals since the loop was made.

    Durations are in nanoseconds. A callback's duration runs from the end of the callback
    before it in the same iteration to its own end: the callback and rose's bookkeeping
    around it (tens of nanoseconds)."""

    #: run-step iterations (asyncio's `_run_once`)
    iterations: int
    #: callbacks run from the ready queue (`call_soon`, `call_soon_threadsafe`, signal handlers)
    callbacks_ready: int
    #: timer callbacks run (`call_later`, `call_at`)
    callbacks_timer: int
    #: fd callbacks run (`add_reader`/`add_writer` and transports' own)
    callbacks_io: int
    #: time spent parked in the reactor, waiting for I/O, a timer or a wake-up
    parked_ns: int
    #: time spent running (callbacks and the run step's own work) while `run_forever` ran
    running_ns: int
    #: the timed callbacks' durations, added up (see `callback_timing`)
    callback_ns: int
    #: whether callbacks are being timed: with `set_callback_timing(True)`, a slow-callback
    #: threshold, or debug mode; the histogram and `longest` count timed callbacks only
    callback_timing: bool
    #: the longest timed callbacks so far, longest first: (ns, "<Handle name()>" or "<Task ... coro=name()>")
    longest: tuple[tuple[int, str], ...]
    #: timers scheduled
    timers_scheduled: int
    #: scheduled timers cancelled before they ran
    timers_cancelled: int
    #: timers that came due (moved to the ready queue)
    timers_fired: int
    #: fd watches registered now (each direction of each fd counts once)
    fd_watchers: int
    #: rose transports (TCP, Unix, UDP) open now: made, and `connection_lost` not yet called
    transports: int
    #: bytes received by rose's transports
    bytes_read: int
    #: bytes sent by rose's transports
    bytes_written: int
    #: `call_soon_threadsafe` calls
    threadsafe_calls: int
    #: `call_soon_threadsafe` calls that woke the loop from its park
    threadsafe_wakeups: int
    #: callbacks at or over the slow-callback threshold (counted only while one is set)
    slow_callbacks: int
    #: callback durations: counts per bucket of `HISTOGRAM_BOUNDS` (and one bucket past it)
    histogram: tuple[int, ...]

    @property
    def callbacks(self) -> int:
        """Callbacks run, of every kind."""
        return self.callbacks_ready + self.callbacks_timer + self.callbacks_io

    @property
    def utilisation(self) -> float:
        """The share of the loop's time spent running rather than parked (0.0 to 1.0)."""
        total = self.parked_ns + self.running_ns
        return self.running_ns / total if total else 0.0

    @property
    def longest_callback_ns(self) -> int:
        """The longest callback's duration so far (0 if none ran)."""
        return self.longest[0][0] if self.longest else 0

    @property
    def longest_callback(self) -> str | None:
        """The longest timed callback so far, named briefly (what ran, no source location)."""
        return self.longest[0][1] if self.longest else None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def snapshot(loop: Any) -> LoopMetrics:
    raw = loop._metrics()
    raw["longest"] = tuple((int(ns), str(what)) for ns, what in raw["longest"])
    return LoopMetrics(**raw)


def set_callback_timing(enabled: bool) -> None:
    """Time every callback of every rose loop, for the duration histogram and the longest
    callbacks (`LoopMetrics.histogram`, `longest`). Off by default: it costs a few percent of
    the run step on callback-bound work (benchmarks/results/metrics_cost-*). Callbacks are
    timed anyway while a slow-callback threshold is set, in debug mode and under
    `python -m rose --stats` (or with ROSE_CALLBACK_TIMING=1 in the environment)."""
    _rose._set_callback_timing(bool(enabled))


def set_slow_callback_threshold(seconds: float | None) -> None:
    """Report callbacks that take at least `seconds` through the `asyncio` logger (WARNING,
    asyncio's debug-mode message: "Executing <Handle ...> took 0.123 seconds"), without debug
    mode. None turns it off (the default). Applies to every rose loop that has not set its
    own with `loop.set_slow_callback_threshold()`. In debug mode asyncio's own check
    (`loop.slow_callback_duration`) reports instead."""
    if seconds is not None:
        seconds = _seconds(seconds)
    _rose._set_slow_callback_threshold(seconds)


def get_slow_callback_threshold() -> float | None:
    """The process-wide slow-callback threshold in seconds, or None."""
    return _rose._get_slow_callback_threshold()


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a threshold must be a number of seconds or None, not {type(value).__name__}")
    if not value >= 0:  # NaN too
        raise ValueError(f"a threshold must be a non-negative number of seconds, not {value!r}")
    return float(value)


def _duration(ns: int) -> str:
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.3f} s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.3f} ms"
    if ns >= 1_000:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns} ns"


def _bound_label(k: int) -> str:
    if k >= len(HISTOGRAM_BOUNDS):
        return f">= {_duration(int(HISTOGRAM_BOUNDS[-1] * 1e9))}"
    return f"< {_duration(int(HISTOGRAM_BOUNDS[k] * 1e9))}"


def format_stats(metrics: LoopMetrics, *, width: int = 40) -> str:
    """The one-screen summary `python -m rose --stats` prints when a loop closes."""
    m = metrics
    lines = ["rose loop statistics"]
    lines.append(f"  iterations      {m.iterations:,}")
    lines.append(
        f"  utilisation     {m.utilisation:.1%} busy: running callbacks {_duration(m.running_ns)},"
        f" parked {_duration(m.parked_ns)}"
    )
    lines.append(
        f"  callbacks       {m.callbacks:,} (ready {m.callbacks_ready:,}, timer {m.callbacks_timer:,},"
        f" I/O {m.callbacks_io:,})"
    )
    lines.append(
        f"  timers          scheduled {m.timers_scheduled:,}, cancelled {m.timers_cancelled:,},"
        f" fired {m.timers_fired:,}"
    )
    lines.append(
        f"  transports      read {m.bytes_read:,} B, written {m.bytes_written:,} B;"
        f" call_soon_threadsafe {m.threadsafe_calls:,} ({m.threadsafe_wakeups:,} wake-ups)"
    )
    used = [k for k, n in enumerate(m.histogram) if n]
    if used:
        lines.append("  callback durations")
        peak = max(m.histogram)
        for k in range(used[0], used[-1] + 1):
            n = m.histogram[k]
            bar = "#" * max(1 if n else 0, round(n / peak * width))
            lines.append(f"    {_bound_label(k):>12}  {n:>10,}  {bar}")
    if not any(m.histogram):
        lines.append("  callback durations: not timed (rose.set_callback_timing(True) times them)")
    if m.longest:
        lines.append("  longest callbacks")
        for ns, what in m.longest:
            lines.append(f"    {_duration(ns):>12}  {what}")
    if m.slow_callbacks:
        lines.append(f"  slow callbacks  {m.slow_callbacks:,} at or over the threshold")
    return "\n".join(lines)


_COUNTERS = [
    ("iterations_total", "counter", "Run-step iterations of the event loop.", "iterations"),
    ("parked_seconds_total", "counter", "Time the loop spent parked in the reactor.", "parked_ns"),
    ("running_seconds_total", "counter", "Time the loop spent running (not parked).", "running_ns"),
    ("timers_scheduled_total", "counter", "Timers scheduled.", "timers_scheduled"),
    ("timers_cancelled_total", "counter", "Scheduled timers cancelled before they ran.", "timers_cancelled"),
    ("timers_fired_total", "counter", "Timers that came due.", "timers_fired"),
    ("fd_watchers", "gauge", "File-descriptor watches registered now.", "fd_watchers"),
    ("transports", "gauge", "rose transports open now.", "transports"),
    ("read_bytes_total", "counter", "Bytes received by rose's transports.", "bytes_read"),
    ("written_bytes_total", "counter", "Bytes sent by rose's transports.", "bytes_written"),
    ("threadsafe_calls_total", "counter", "call_soon_threadsafe calls.", "threadsafe_calls"),
    (
        "threadsafe_wakeups_total",
        "counter",
        "call_soon_threadsafe calls that woke the parked loop.",
        "threadsafe_wakeups",
    ),
    ("slow_callbacks_total", "counter", "Callbacks at or over the slow-callback threshold.", "slow_callbacks"),
    ("longest_callback_seconds", "gauge", "The longest callback so far.", "longest_callback_ns"),
]


def _labels(labels: dict[str, str], extra: dict[str, str] | None = None) -> str:
    items = dict(labels)
    if extra:
        items.update(extra)
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(str(v))}"' for k, v in items.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def metrics_text(loop: Any = None, *, prefix: str = "rose_loop_", labels: dict[str, str] | None = None) -> str:
    """`loop`'s metrics (the running loop by default) in the Prometheus text exposition format
    (version 0.0.4), ready to serve on `/metrics` with content type
    `text/plain; version=0.0.4; charset=utf-8`. `labels` are added to every sample."""
    if loop is None:
        loop = asyncio.get_running_loop()
    if not hasattr(loop, "_metrics"):
        raise TypeError(f"{type(loop).__name__} keeps no metrics: metrics_text() needs a rose loop")
    m = snapshot(loop)
    labels = labels or {}
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {prefix}{name} {help_text}")
        out.append(f"# TYPE {prefix}{name} {kind}")

    family("callbacks_total", "counter", "Callbacks run, by what queued them.")
    for kind in ("ready", "timer", "io"):
        value = getattr(m, f"callbacks_{kind}")
        out.append(f"{prefix}callbacks_total{_labels(labels, {'kind': kind})} {value}")
    for name, kind, help_text, field in _COUNTERS:
        value = getattr(m, field)
        if field.endswith("_ns"):
            value = value / 1e9
        family(name, kind, help_text)
        out.append(f"{prefix}{name}{_labels(labels)} {_number(value)}")
    family("callback_duration_seconds", "histogram", "Durations of the loop's callbacks.")
    cumulative = 0
    for k, bound in enumerate(HISTOGRAM_BOUNDS):
        cumulative += m.histogram[k]
        out.append(f"{prefix}callback_duration_seconds_bucket{_labels(labels, {'le': repr(bound)})} {cumulative}")
    cumulative += sum(m.histogram[len(HISTOGRAM_BOUNDS) :])
    out.append(f"{prefix}callback_duration_seconds_bucket{_labels(labels, {'le': '+Inf'})} {cumulative}")
    out.append(f"{prefix}callback_duration_seconds_sum{_labels(labels)} {_number(m.callback_ns / 1e9)}")
    out.append(f"{prefix}callback_duration_seconds_count{_labels(labels)} {cumulative}")
    return "\n".join(out) + "\n"


# `python -m rose --stats`: each rose loop prints its summary to stderr as it closes (the
# environment variable reaches the program's own children, uvicorn's workers among them).
STATS_ENV = "ROSE_STATS"
TIMING_ENV = "ROSE_CALLBACK_TIMING"
if os.environ.get(STATS_ENV) or os.environ.get(TIMING_ENV, "") not in ("", "0"):
    _rose._set_callback_timing(True)


def _print_stats_on_close(loop: Any) -> None:
    try:
        wanted = os.environ.get(STATS_ENV)
    except AttributeError:  # module teardown at interpreter exit (os is None): say nothing
        return
    if not wanted:
        return
    try:
        text = format_stats(snapshot(loop))
    except Exception as exc:  # noqa: BLE001 -- a summary must never break close()
        text = f"rose loop statistics unavailable: {exc!r}"
    print(f"\n{text}", file=sys.stderr, flush=True)
