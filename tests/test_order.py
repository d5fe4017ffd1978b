"""Callback order must be exactly stdlib asyncio's.

Each scenario records the order callbacks ran in and compares it with a fixed
list. The lists were produced by CPython 3.11's asyncio (and the asyncio param
re-checks them on every run): FIFO ``call_soon``; due timers are appended to
the ready queue after the callbacks already there, in ``heapq`` pop order (so
timers with equal deadlines come out in heap order, not FIFO); callbacks
scheduled by a callback run in the next iteration; cancelled timers stay in the
heap until they reach its head, unless more than half of more than 100 are
cancelled, which rebuilds the heap (``heapify``).
"""

import random

# Produced by stdlib asyncio (see the module docstring).
EQUAL_20 = [
    0,
    2,
    6,
    14,
    13,
    19,
    18,
    17,
    16,
    15,
    5,
    11,
    12,
    10,
    9,
    8,
    7,
    1,
    3,
    4,
]

EQUAL_150_CLEANUP = [
    90,
    42,
    18,
    6,
    0,
    87,
    33,
    69,
    141,
    3,
    135,
    63,
    129,
    27,
    123,
    57,
    117,
    9,
    111,
    51,
    105,
    21,
    99,
    45,
    93,
    84,
    81,
    39,
    15,
    75,
    72,
    144,
    12,
    132,
    60,
    120,
    24,
    108,
    48,
    96,
    78,
    147,
    36,
    30,
    126,
    54,
    102,
    138,
    114,
    66,
]

EQUAL_30_LAZY = [
    2,
    6,
    14,
    29,
    13,
    27,
    28,
    26,
    25,
    24,
    23,
    22,
    21,
    20,
    19,
    18,
    17,
    16,
    15,
    11,
    10,
    9,
    8,
    3,
    4,
]

VARIED_200 = [
    26,
    61,
    113,
    103,
    104,
    106,
    191,
    193,
    195,
    196,
    38,
    43,
    177,
    184,
    190,
    182,
    159,
    174,
    165,
    64,
    72,
    156,
    157,
    148,
    127,
    137,
    28,
    59,
    126,
    60,
    1,
    116,
    57,
    112,
    114,
    107,
    110,
    5,
    105,
    11,
    51,
    100,
    95,
    98,
    194,
    162,
    186,
    46,
    175,
    86,
    172,
    173,
    167,
    168,
    80,
    81,
    161,
    36,
    158,
    77,
    76,
    34,
    144,
    139,
    142,
    140,
    20,
    131,
    63,
    192,
    120,
    55,
    115,
    111,
    52,
    50,
    49,
    99,
    128,
    24,
    79,
    47,
    189,
    4,
    91,
    146,
    90,
    21,
    87,
    9,
    82,
    39,
    73,
    145,
    67,
    135,
    65,
    129,
    130,
    15,
    125,
    123,
    31,
    121,
    41,
    58,
    118,
    14,
    54,
    53,
    108,
    83,
    48,
    94,
    88,
    42,
    0,
    169,
    78,
    37,
    152,
    141,
    70,
    16,
    138,
    7,
    180,
    10,
    119,
    179,
    68,
    84,
    56,
    170,
    198,
    183,
    166,
    101,
    3,
    19,
    122,
    132,
    160,
    187,
    185,
    89,
    176,
    151,
    164,
    22,
    143,
    75,
    71,
    149,
    35,
    17,
    178,
    66,
    136,
    25,
    62,
    93,
    44,
    45,
    92,
    134,
    150,
    117,
    197,
    155,
    2,
    171,
    33,
    133,
    69,
    30,
    97,
    153,
    147,
    199,
    40,
    6,
    8,
    12,
    18,
    181,
    109,
    29,
    74,
    163,
    13,
    102,
    27,
    124,
    154,
    85,
    23,
    188,
    96,
    32,
]


def test_call_soon_fifo(loop):
    rec = []
    for i in range(100):
        loop.call_soon(rec.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert rec == list(range(100))


def test_call_soon_threadsafe_is_fifo_with_call_soon(loop):
    rec = []
    loop.call_soon(rec.append, 1)
    loop.call_soon_threadsafe(rec.append, 2)
    loop.call_soon(rec.append, 3)
    loop.call_soon_threadsafe(rec.append, 4)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert rec == [1, 2, 3, 4]


def test_call_soon_threadsafe_fifo_inside_callback(loop):
    rec = []

    def cb():
        loop.call_soon(rec.append, "x")
        loop.call_soon_threadsafe(rec.append, "y")
        loop.call_soon(rec.append, "z")
        loop.call_soon(loop.stop)

    loop.call_soon(cb)
    loop.run_forever()
    assert rec == ["x", "y", "z"]


def test_call_later_zero_runs_after_call_soon(loop):
    rec = []
    loop.call_later(0, rec.append, "T1")
    loop.call_soon(rec.append, "S1")
    loop.call_later(0, rec.append, "T2")
    loop.call_soon(rec.append, "S2")
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert rec == ["S1", "S2", "T1", "T2"]


def test_scheduled_during_callback_runs_next_iteration(loop):
    rec = []

    def a():
        rec.append("A")
        loop.call_soon(rec.append, "A2")
        loop.call_later(0, rec.append, "AT")
        loop.call_soon(rec.append, "A3")

    def b():
        rec.append("B")
        loop.call_soon(rec.append, "B2")

    loop.call_soon(a)
    loop.call_soon(b)
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert rec == ["A", "B", "A2", "A3", "B2", "AT"]


def test_timer_falling_due_while_callbacks_queued(loop):
    """A timer that falls due during an iteration waits for the next one."""
    rec = []

    def start():
        due = loop.time() + 0.03

        def a():
            rec.append("A")
            while loop.time() < due + 0.005:
                pass
            loop.call_soon(rec.append, "C")

        loop.call_at(due, rec.append, "T")
        loop.call_soon(a)
        loop.call_soon(rec.append, "B")
        loop.call_at(due + 0.02, loop.stop)

    loop.call_soon(start)
    loop.run_forever()
    assert rec == ["A", "B", "C", "T"]


def test_timers_distinct_deadlines_run_in_time_order(loop):
    rec = []
    base = loop.time() + 0.01
    offsets = list(range(50))
    random.Random(7).shuffle(offsets)
    for k in offsets:
        loop.call_at(base + k * 0.0005, rec.append, k)
    loop.call_at(base + 0.05, loop.stop)
    loop.run_forever()
    assert rec == list(range(50))


def _run_equal_deadlines(loop, n, cancel=()):
    rec = []
    when = loop.time() + 0.01
    handles = [loop.call_at(when, rec.append, i) for i in range(n)]
    for i in cancel:
        handles[i].cancel()
    loop.call_at(when + 0.01, loop.stop)
    loop.run_forever()
    return rec


def test_timers_equal_deadlines_heap_order(loop):
    assert _run_equal_deadlines(loop, 20) == EQUAL_20


def test_timers_equal_deadlines_lazy_cancel_order(loop):
    rec = _run_equal_deadlines(loop, 30, cancel=[0, 1, 5, 7, 12])
    assert rec == EQUAL_30_LAZY


def test_timers_equal_deadlines_after_cleanup_rule(loop):
    # 100 of 150 timers cancelled: over half of more than 100, so the heap is rebuilt.
    rec = _run_equal_deadlines(loop, 150, cancel=[i for i in range(150) if i % 3])
    assert rec == EQUAL_150_CLEANUP


def test_many_timers_varied_deadlines(loop):
    rec = []
    rng = random.Random(2024)
    base = loop.time() + 0.01
    for i in range(200):
        loop.call_at(base + rng.randrange(6) * 0.002, rec.append, i)
    loop.call_at(base + 0.02, loop.stop)
    loop.run_forever()
    assert rec == VARIED_200


def test_order_is_reproducible_on_fresh_loops(new_loop):
    """The same schedule gives the same order on every fresh loop (no leaked state)."""
    results = [_run_equal_deadlines(new_loop(), 20) for _ in range(3)]
    assert results == [EQUAL_20] * 3
