"""Seeded random scheduling programs for the differential fuzz (test_fuzz_scheduling.py).

A program is a tree of actions, made from a seed alone: `call_soon`, `call_later` (zero,
negative, infinite, equal and small positive delays, far-off ones), `call_at`, `cancel`,
`call_soon_threadsafe`, `stop` (the loop is run again), futures resolved from callbacks, tasks
that step, await futures and sleep, and readers and writers on socketpairs. Each callback logs
its label and performs its child actions. Run on two loops, a program must log the same
events in the same order: the order asyncio defines (FIFO ready queue, timers by deadline and
then as heapq keeps them, I/O callbacks before the timers due in the same iteration).

Only top-level timers get positive delays: multiples of 20 ms from one instant taken when the
program starts, so equal delays are equal deadlines (ordered as asyncio's heap orders them)
and different ones are far apart. Timers made by callbacks are due at once, in the past or
far off. A program's own work between two deadlines takes microseconds, so which timer comes
first never depends on how fast (or loaded) the machine is, nor on how late each loop wakes
for a deadline (rose wakes on time, asyncio up to a millisecond late), unless it stalls for
20 ms.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket

STEP = 0.02  # positive delays are multiples of this
FAR = 1000.0  # a timer that never fires in the program's time (cancelled or left pending)
MAX_NODES = 60


def make(seed):
    """The program of `seed`: a list of top-level actions (nested tuples)."""
    rng = random.Random(seed)
    counter = iter(range(10**6))
    budget = [MAX_NODES]
    futures = []
    readers = []

    def label(kind):
        return f"{kind}{next(counter)}"

    def children(depth):
        if depth > 3 or budget[0] <= 0:
            return []
        return [action(depth + 1) for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))]

    def action(depth):
        budget[0] -= 1
        kind = rng.choice(
            ["soon"] * 5 + ["later"] * 4 + ["at"] * 2 + ["threadsafe", "cancel", "cancel",
             "future", "resolve", "task", "reader", "poke", "stop"]
        )  # fmt: skip
        if kind == "soon" or kind == "threadsafe":
            return (kind, label(kind), children(depth))
        positive = [STEP, STEP, 2 * STEP, 3 * STEP] if depth == 0 else []
        if kind == "later":
            delay = rng.choice([0, 0.0, -1, -math.inf, FAR, *positive])
            return ("later", delay, label("later"), children(depth))
        if kind == "at":
            offset = rng.choice([0, -5, FAR, *positive[1:]])
            return ("at", offset, label("at"), children(depth))
        if kind == "cancel":
            return ("cancel", rng.randrange(next(counter) + 1))
        if kind == "future":
            name = label("fut")
            futures.append(name)
            return ("future", name)
        if kind == "resolve":
            return ("resolve", rng.choice(futures) if futures else None, rng.random() < 0.2)
        if kind == "task":
            steps = [rng.choice(["sleep0", "sleep", "await", "log"]) for _ in range(rng.randint(1, 4))]
            return ("task", label("task"), steps, rng.choice(futures) if futures else None)
        if kind == "reader":
            name = label("reader")
            readers.append(name)
            return ("reader", name, rng.choice([True, False]), children(depth))
        if kind == "poke":
            return ("poke", rng.choice(readers) if readers else None)
        return ("stop", label("stop"))

    return [action(0) for _ in range(rng.randint(3, 8))]


class Run:
    """One program on one loop: the log of what happened, in order."""

    def __init__(self, loop, program):
        self.loop = loop
        self.program = program
        self.log = []
        self.handles = {}  # number in the label -> handle
        self.futures = {}
        self.pairs = {}
        self.tasks = []
        self.finished = False
        self.over = False
        self.start = loop.time()

    def _log(self, event):
        if not self.over:
            self.log.append(event)

    def _number(self, name):
        return int("".join(c for c in name if c.isdigit()))

    def _callback(self, name, kids):
        def callback(*args):
            if self.over:  # what is left runs while the program is taken down: not performed
                return
            self._log(name if not args else f"{name}:{args[0]}")
            for kid in kids:
                self.perform(kid)

        return callback

    def _future(self, name):
        if name not in self.futures:
            fut = self.loop.create_future()
            fut.add_done_callback(lambda f, n=name: self._log(f"{n} done:{_result(f)}"))
            self.futures[name] = fut
        return self.futures[name]

    def perform(self, act):
        loop, kind = self.loop, act[0]
        if kind == "soon":
            self.handles[self._number(act[1])] = loop.call_soon(self._callback(act[1], act[2]))
        elif kind == "threadsafe":
            self.handles[self._number(act[1])] = loop.call_soon_threadsafe(self._callback(act[1], act[2]))
        elif kind == "later":
            delay, name, kids = act[1], act[2], act[3]
            if 0 < delay < FAR:  # a deadline counted from the program's start (module note)
                handle = loop.call_at(self.start + delay, self._callback(name, kids))
            else:
                handle = loop.call_later(delay, self._callback(name, kids))
            self.handles[self._number(name)] = handle
        elif kind == "at":
            offset, name, kids = act[1], act[2], act[3]
            base = self.start if 0 < offset < FAR else loop.time()
            self.handles[self._number(name)] = loop.call_at(base + offset, self._callback(name, kids))
        elif kind == "cancel":
            handle = self.handles.get(act[1])
            if handle is not None:
                handle.cancel()
                self._log(f"cancel{act[1]}")
        elif kind == "future":
            self._future(act[1])
        elif kind == "resolve":
            if act[1] is not None:
                fut = self._future(act[1])
                if not fut.done():
                    if act[2]:
                        fut.cancel()
                    else:
                        fut.set_result(act[1])
        elif kind == "task":
            name, steps, fut_name = act[1], act[2], act[3]
            fut = self._future(fut_name) if fut_name else None
            self.tasks.append(loop.create_task(self._task(name, steps, fut)))
        elif kind == "reader":
            name, write, kids = act[1], act[2], act[3]
            pair = socket.socketpair()
            for s in pair:
                s.setblocking(False)
            self.pairs[name] = pair
            mine, peer = pair
            if write:
                # A writer: writable at once; it writes to the peer and stops watching.
                def writable(name=name, mine=mine, kids=kids):
                    loop.remove_writer(mine)
                    mine.send(b"w")
                    self._callback(name + " writable", kids)()

                loop.add_writer(mine, writable)
            else:

                def readable(name=name, mine=mine, kids=kids):
                    data = mine.recv(100)
                    loop.remove_reader(mine)
                    self._callback(f"{name} read {len(data)}", kids)()

                loop.add_reader(mine, readable)
        elif kind == "poke":
            pair = self.pairs.get(act[1])
            if pair is not None:  # (its reader may be made later, or never)
                pair[1].send(b"p")
                self._log(f"poke {act[1]}")
        elif kind == "stop":
            loop.stop()
            self._log(act[1])

    async def _task(self, name, steps, fut):
        self._log(f"{name} start")
        for i, step in enumerate(steps):
            if step == "sleep0":
                await asyncio.sleep(0)
            elif step == "sleep":
                await asyncio.sleep(-1)  # due at once too, through the timer path
            elif step == "await" and fut is not None:
                try:
                    await asyncio.shield(fut)
                except asyncio.CancelledError:
                    self._log(f"{name} saw cancelled")
                    return
            self._log(f"{name} step{i}")
        self._log(f"{name} end")

    def _end(self):
        self.finished = True
        self.log.append("end")
        self.loop.stop()

    def execute(self):
        loop = self.loop
        for act in self.program:
            self.perform(act)
        # The end: after the last positive deadline (there are no others, see the module note).
        loop.call_at(self.start + 4 * STEP, self._end)
        runs = 0
        while not self.finished and runs < 50:
            loop.run_forever()
            runs += 1
            self.log.append("run returned")
        self.over = True
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            loop.run_until_complete(asyncio.gather(*self.tasks, return_exceptions=True))
        for fut in self.futures.values():
            fut.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        for mine, peer in self.pairs.values():
            loop.remove_reader(mine)
            loop.remove_writer(mine)
            mine.close()
            peer.close()
        return self.log


def _result(fut):
    return "cancelled" if fut.cancelled() else repr(fut.result())


def run(new_event_loop, seed):
    loop = new_event_loop()
    try:
        return Run(loop, make(seed)).execute()
    finally:
        loop.close()
