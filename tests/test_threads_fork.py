"""Loops in several threads at once, and loops after os.fork()."""

import asyncio
import threading

import pytest
from conftest import run_child


def test_two_loops_in_two_threads_at_once(new_loop):
    loops = [new_loop(), new_loop()]
    barrier = threading.Barrier(2, timeout=2)
    results = {}
    errors = []

    async def main(index):
        await asyncio.sleep(0.01)
        # Both loops are inside run_until_complete at this point, or the barrier times out.
        barrier.wait()
        assert asyncio.get_running_loop() is loops[index]
        values = []
        for i in range(5):
            await asyncio.sleep(0.005)
            values.append(i)
        return threading.get_ident(), values

    def worker(index):
        try:
            results[index] = loops[index].run_until_complete(main(index))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert not errors
    assert sorted(results) == [0, 1]
    assert results[0][0] != results[1][0]
    assert results[0][1] == results[1][1] == [0, 1, 2, 3, 4]
    assert not any(lp.is_running() for lp in loops)


def test_loops_talk_across_threads(new_loop):
    main_loop = new_loop()
    thread_loop = new_loop()
    started = threading.Event()
    thread_loop.call_soon(started.set)
    runner = threading.Thread(target=thread_loop.run_forever)
    runner.start()
    assert started.wait(2)

    async def double_in_other_loop(x):
        await asyncio.sleep(0.01)
        assert asyncio.get_running_loop() is thread_loop
        return 2 * x

    async def main():
        futures = [
            asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(double_in_other_loop(i), thread_loop)
            )
            for i in range(10)
        ]
        return await asyncio.gather(*futures)

    try:
        assert main_loop.run_until_complete(main()) == [2 * i for i in range(10)]
    finally:
        thread_loop.call_soon_threadsafe(thread_loop.stop)
        runner.join(2)
    assert not runner.is_alive()


def test_loop_in_non_main_thread(loop):
    out = {}

    def worker():
        out["result"] = loop.run_until_complete(asyncio.sleep(0.01, result="thread"))
        out["thread"] = threading.current_thread() is not threading.main_thread()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert out == {"result": "thread", "thread": True}


FORK_HELPERS = """
import time, traceback

def child_main():
    try:
        loop2 = new_event_loop()
        result = loop2.run_until_complete(asyncio.sleep(0.01, result=42))
        loop2.close()
        return 0 if result == 42 else 1
    except BaseException:
        traceback.print_exc()
        return 2

def wait_child(pid, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "timeout"
"""

FORK_AFTER_RUN = (
    FORK_HELPERS
    + """
loop = new_event_loop()
loop.run_until_complete(asyncio.sleep(0.01))
pid = os.fork()
if pid == 0:
    os._exit(child_main())
print("child", wait_child(pid))
print("parent", loop.run_until_complete(asyncio.sleep(0.01, result="ok")))
loop.close()
"""
)

FORK_IN_CALLBACK = (
    FORK_HELPERS
    + """
loop = new_event_loop()

async def main():
    await asyncio.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        os._exit(child_main())
    code = wait_child(pid)
    await asyncio.sleep(0.01)
    return code

print("child", loop.run_until_complete(main()))
print("parent", loop.run_until_complete(asyncio.sleep(0.01, result="ok")))
loop.close()
"""
)


@pytest.mark.parametrize(
    "body", [FORK_AFTER_RUN, FORK_IN_CALLBACK], ids=["after-run", "inside-running-loop"]
)
def test_new_loop_in_forked_child(impl, body):
    proc = run_child(impl, body)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["child 0", "parent ok"], proc.stderr
