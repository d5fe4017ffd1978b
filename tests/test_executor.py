"""run_in_executor, set_default_executor, shutdown_default_executor."""

import asyncio
import concurrent.futures
import threading
import time

import pytest


def thread_info(x):
    return x, threading.get_ident(), threading.current_thread().name


def test_run_in_executor_default(loop):
    assert hasattr(loop, "_default_executor")
    fut = loop.run_in_executor(None, thread_info, 5)
    assert isinstance(fut, asyncio.Future)
    value, ident, _ = loop.run_until_complete(fut)
    assert value == 5
    assert ident != threading.get_ident()
    assert isinstance(loop._default_executor, concurrent.futures.ThreadPoolExecutor)


def test_run_in_executor_many_concurrently(loop):
    barrier = threading.Barrier(3, timeout=2)

    async def main():
        # Three calls that can only finish if they run at the same time.
        return await asyncio.gather(*(loop.run_in_executor(None, barrier.wait) for _ in range(3)))

    assert sorted(loop.run_until_complete(main())) == [0, 1, 2]


def test_run_in_executor_exception(loop):
    def boom():
        raise LookupError("in executor")

    with pytest.raises(LookupError, match="in executor"):
        loop.run_until_complete(loop.run_in_executor(None, boom))


def test_run_in_explicit_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="explicit") as executor:
        _, _, name = loop.run_until_complete(loop.run_in_executor(executor, thread_info, 1))
    assert name.startswith("explicit")


def test_set_default_executor(loop):
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="custom-default")
    try:
        loop.set_default_executor(executor)
        assert loop._default_executor is executor
        _, _, name = loop.run_until_complete(loop.run_in_executor(None, thread_info, 1))
        assert name.startswith("custom-default")
    finally:
        executor.shutdown(wait=True)


@pytest.mark.parametrize(
    "bad",
    [object(), None, "executor"],
    ids=["object", "None", "str"],
)
def test_set_default_executor_rejects_non_thread_pool(loop, bad):
    with pytest.raises(TypeError, match="executor must be ThreadPoolExecutor instance"):
        loop.set_default_executor(bad)


def test_shutdown_default_executor(loop):
    loop.run_until_complete(loop.run_in_executor(None, time.sleep, 0.01))
    executor = loop._default_executor
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError):
        executor.submit(print)
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, print)
    # An explicit executor still works.
    with concurrent.futures.ThreadPoolExecutor(1) as other:
        assert loop.run_until_complete(loop.run_in_executor(other, thread_info, 2))[0] == 2


def test_shutdown_default_executor_waits_for_work(loop):
    done = []

    def work():
        time.sleep(0.05)
        done.append(True)

    async def main():
        loop.run_in_executor(None, work)
        await asyncio.sleep(0)
        await loop.shutdown_default_executor()
        return list(done)

    assert loop.run_until_complete(main()) == [True]


def test_shutdown_default_executor_without_executor(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, print)


def test_close_shuts_down_default_executor(loop):
    loop.run_until_complete(loop.run_in_executor(None, time.sleep, 0))
    executor = loop._default_executor
    loop.close()
    with pytest.raises(RuntimeError):
        executor.submit(print)
