"""asyncio API that newer Pythons added or changed, on the version that has it, with that
version's semantics: eager tasks (3.12), timeouts and wait_for on them (3.11/3.12),
shutdown_default_executor(timeout) (3.12), asyncio.run(loop_factory=) (3.12), TaskGroup,
create_unix_server(cleanup_socket=) (3.13). Each test runs on stdlib and on rose; a test of an
API this Python lacks is skipped, saying which version added it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import socket
import threading
import time
import warnings

import pytest
from conftest import STDLIB, import_rose

needs_eager = pytest.mark.skipif(
    not hasattr(asyncio, "eager_task_factory"), reason="eager tasks are 3.12+ API"
)
needs_run_loop_factory = pytest.mark.skipif(
    "loop_factory" not in inspect.signature(asyncio.run).parameters,
    reason="asyncio.run(loop_factory=) is 3.12+",
)
needs_executor_timeout = pytest.mark.skipif(
    "timeout" not in inspect.signature(asyncio.BaseEventLoop.shutdown_default_executor).parameters,
    reason="shutdown_default_executor(timeout) is 3.12+",
)
needs_cleanup_socket = pytest.mark.skipif(
    not STDLIB.UNIX_SERVER_CLEANUP, reason="create_unix_server(cleanup_socket=) is 3.13+"
)


# -- eager tasks --------------------------------------------------------------------------


@needs_eager
def test_eager_task_factory_runs_until_first_suspension(loop):
    steps = []

    async def child(name):
        steps.append(f"{name} started")
        await asyncio.sleep(0)
        steps.append(f"{name} resumed")
        return name

    async def instant():
        steps.append("instant ran")
        return "instant"

    async def main():
        loop.set_task_factory(asyncio.eager_task_factory)
        task = asyncio.create_task(child("a"))
        steps.append("after create_task")  # "a started" came first: the task began at once
        done = asyncio.create_task(instant())
        assert done.done() and done.result() == "instant"  # finished without the loop
        return await task

    assert loop.run_until_complete(main()) == "a"
    assert steps == ["a started", "after create_task", "instant ran", "a resumed"]


@needs_eager
def test_create_eager_task_factory_with_custom_task(loop):
    made = []

    class MyTask(asyncio.Task):
        def __init__(self, *args, **kwargs):
            made.append(self)
            super().__init__(*args, **kwargs)

    async def work():
        return asyncio.current_task()

    async def main():
        loop.set_task_factory(asyncio.create_eager_task_factory(MyTask))
        task = asyncio.create_task(work(), name="custom")
        assert task.done()
        return task, await task

    task, current = loop.run_until_complete(main())
    assert isinstance(task, MyTask) and current is task
    assert made == [task] and task.get_name() == "custom"


@needs_eager
def test_eager_task_sees_the_current_context(loop):
    var = contextvars.ContextVar("var", default="unset")

    async def read():
        return var.get()

    async def main():
        loop.set_task_factory(asyncio.eager_task_factory)
        var.set("caller")
        task = asyncio.create_task(read())
        assert task.done()
        return task.result()

    assert loop.run_until_complete(main()) == "caller"


# -- timeouts and wait_for ------------------------------------------------------------------


def test_timeout_expires_and_reschedules(loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01) as cm:
                await asyncio.sleep(1)
        assert cm.expired()
        async with asyncio.timeout(0.01) as cm:
            cm.reschedule(loop.time() + 1)
            await asyncio.sleep(0.03)
        assert not cm.expired()
        async with asyncio.timeout(None) as cm:
            assert cm.when() is None
            await asyncio.sleep(0)
        # A deadline in the past cancels at the first suspension.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout_at(loop.time() - 1):
                await asyncio.sleep(0)
        return "ok"

    assert loop.run_until_complete(main()) == "ok"


def test_wait_for_timeout_cancels_the_inner_task(loop):
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slow(), 0.01)
        assert await asyncio.wait_for(asyncio.sleep(0, "done"), 1) == "done"
        assert await asyncio.wait_for(asyncio.sleep(0, "no limit"), None) == "no limit"
        return cancelled

    assert loop.run_until_complete(main()) == [True]


def test_wait_for_outer_cancel_is_not_a_timeout(loop):
    async def main():
        inner = asyncio.ensure_future(asyncio.wait_for(asyncio.sleep(1), 5))
        await asyncio.sleep(0.01)
        inner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await inner
        return inner.cancelled()

    assert loop.run_until_complete(main()) is True


def test_taskgroup_cancels_siblings_and_groups_errors(loop):
    async def fail():
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    async def wait_forever(cancelled):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        cancelled = []
        with pytest.raises(ExceptionGroup) as info:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(wait_forever(cancelled))
                tg.create_task(fail())
        return cancelled, [type(e) for e in info.value.exceptions]

    assert loop.run_until_complete(main()) == ([True], [ValueError])


# -- executors ------------------------------------------------------------------------------


@needs_executor_timeout
def test_shutdown_default_executor_timeout(loop):
    release = threading.Event()

    async def main():
        loop.run_in_executor(None, release.wait, 5)
        await asyncio.sleep(0)
        started = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await loop.shutdown_default_executor(timeout=0.1)
        return time.monotonic() - started, [(w.category, str(w.message)) for w in caught]

    try:
        elapsed, caught = loop.run_until_complete(main())
    finally:
        release.set()
    assert 0.1 <= elapsed < 2
    assert caught == [
        (RuntimeWarning, "The executor did not finishing joining its threads within 0.1 seconds.")
    ]


# -- asyncio.run(loop_factory=) -------------------------------------------------------------


@needs_run_loop_factory
def test_asyncio_run_with_loop_factory(impl, loop_factory):
    async def main():
        return type(asyncio.get_running_loop())

    loop_type = asyncio.run(main(), loop_factory=loop_factory)
    if impl == "rose":
        assert loop_type is import_rose().Loop
    else:
        assert issubclass(loop_type, asyncio.BaseEventLoop)


# -- create_unix_server(cleanup_socket=) ------------------------------------------------------


@needs_cleanup_socket
@pytest.mark.parametrize("cleanup", [True, False])
def test_unix_server_removes_its_socket_file(loop, short_tmp, cleanup):
    path = os.path.join(short_tmp, "s")

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path, cleanup_socket=cleanup)
        existed = os.path.exists(path)
        server.close()
        await server.wait_closed()
        return existed, os.path.exists(path)

    assert loop.run_until_complete(main()) == (True, not cleanup)


@needs_cleanup_socket
def test_unix_server_leaves_a_file_that_replaced_its_socket(loop, short_tmp):
    path = os.path.join(short_tmp, "s")

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path)
        os.unlink(path)
        with open(path, "w") as f:  # someone else's file now
            f.write("keep me")
        server.close()
        await server.wait_closed()
        with open(path) as f:
            return f.read()

    assert loop.run_until_complete(main()) == "keep me"


@needs_cleanup_socket
def test_unix_server_on_a_given_socket_cleans_up_too(loop, short_tmp):
    path = os.path.join(short_tmp, "s")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, sock=sock)
        server.close()
        await server.wait_closed()
        return os.path.exists(path)

    assert loop.run_until_complete(main()) is False
