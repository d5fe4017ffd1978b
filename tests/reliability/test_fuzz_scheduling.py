"""Differential scheduling fuzz: seeded random programs (scheduling_programs.py) log the same
events in the same order on rose as on the running interpreter's asyncio.

`make test` runs ROSE_FUZZ_SEEDS seeds (default 200); `make fuzz` runs many thousands. A
failing seed prints both logs from the first difference on; rerun it with
`ROSE_FUZZ_FIRST=<seed> ROSE_FUZZ_SEEDS=1`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys

import pytest
from conftest import import_rose

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scheduling_programs  # noqa: E402

FIRST = int(os.environ.get("ROSE_FUZZ_FIRST", "0"))
SEEDS = int(os.environ.get("ROSE_FUZZ_SEEDS", "200"))
CHUNK = 50  # seeds per test id, so that a failure names a small range


def _chunks():
    return [(start, min(start + CHUNK, FIRST + SEEDS)) for start in range(FIRST, FIRST + SEEDS, CHUNK)]


ATTEMPTS = 3  # a program whose two logs differ is run again, up to this many times


def _pair(rose, seed):
    """Both logs of one seed, with the collector paused (a long collection while a program
    runs would shift its timers: see scheduling_programs' note on timing)."""
    gc.collect()
    gc.disable()
    try:
        expected = scheduling_programs.run(asyncio.new_event_loop, seed)
        got = scheduling_programs.run(rose.new_event_loop, seed)
    finally:
        gc.enable()
    return expected, got


@pytest.mark.parametrize("seeds", _chunks(), ids=lambda r: f"seeds{r[0]}-{r[1] - 1}")
def test_programs_order_events_as_asyncio(seeds):
    rose = import_rose()
    for seed in range(*seeds):
        # A stall of the whole machine longer than a program's timer spacing can still
        # reorder one run; a real difference comes back every time.
        for _ in range(ATTEMPTS):
            expected, got = _pair(rose, seed)
            if got == expected:
                break
        if got != expected:
            pairs = zip(expected + [None], got + [None], strict=False)
            at = next(i for i, (a, b) in enumerate(pairs) if a != b)
            pytest.fail(
                f"seed {seed}: first difference at event {at}\n"
                f"asyncio: {expected[at:at + 12]}\nrose:    {got[at:at + 12]}\n"
                f"program: {scheduling_programs.make(seed)}",
                pytrace=False,
            )


def test_programs_do_things():
    # The generator makes programs that exercise what they should: every kind of action
    # appears, and a program's log is long enough to order.
    kinds = set()
    lengths = []
    for seed in range(100):
        program = scheduling_programs.make(seed)
        stack = list(program)
        while stack:
            act = stack.pop()
            kinds.add(act[0])
            for part in act:
                if isinstance(part, list) and part and isinstance(part[0], tuple):
                    stack.extend(part)
        lengths.append(len(scheduling_programs.run(asyncio.new_event_loop, seed)))
    assert kinds == {
        "soon", "later", "at", "threadsafe", "cancel", "future", "resolve", "task", "reader",
        "poke", "stop",
    }  # fmt: skip
    assert sum(lengths) / len(lengths) > 10
