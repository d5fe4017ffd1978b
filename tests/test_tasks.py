"""create_future, create_task, task factories and asynchronous generators."""

import asyncio
import contextvars
import gc
import sys

import pytest
from conftest import capture_exception_contexts

# -- futures and tasks ------------------------------------------------------------------


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_soon(fut.set_result, "value")
    assert loop.run_until_complete(fut) == "value"


def test_create_future_uses_the_future_class_of_asyncio_futures(loop, monkeypatch):
    """asyncio's create_future() looks `futures.Future` up at each call: a patched class (as
    some test helpers install) is what it makes."""

    class MyFuture(asyncio.Future):
        pass

    monkeypatch.setattr(asyncio.futures, "Future", MyFuture)
    fut = loop.create_future()
    assert type(fut) is MyFuture
    assert fut.get_loop() is loop
    monkeypatch.undo()
    assert type(loop.create_future()) is asyncio.Future


def test_create_task(loop):
    async def main():
        await asyncio.sleep(0)
        return asyncio.current_task()

    task = loop.create_task(main())
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) is task


def test_create_task_name(loop):
    async def main():
        return asyncio.current_task().get_name()

    named = loop.create_task(main(), name="my-task")
    unnamed = loop.create_task(main())
    assert named.get_name() == "my-task"
    assert unnamed.get_name().startswith("Task-")
    assert loop.run_until_complete(named) == "my-task"
    loop.run_until_complete(unnamed)


def test_create_task_context(loop):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "from-ctx")

    async def main():
        seen = var.get()
        await asyncio.sleep(0)
        var.set("changed-in-task")
        return seen

    task = loop.create_task(main(), context=ctx)
    assert loop.run_until_complete(task) == "from-ctx"
    assert ctx[var] == "changed-in-task"
    assert var.get() == "default"


def test_create_task_rejects_non_coroutine(loop):
    with pytest.raises(TypeError):
        loop.create_task(42)


def _error_of(call):
    try:
        call()
    except Exception as exc:
        return type(exc), str(exc)
    return None


def _create_task_error(make_loop, *args, **kwargs):
    """What create_task(coroutine, *args, **kwargs) raises on a fresh loop of the kind."""
    lp = make_loop()

    async def coro():
        pass

    c = coro()
    try:
        return _error_of(lambda: lp.create_task(c, *args, **kwargs))
    finally:
        c.close()
        lp.close()


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("positional-name",), {}),
        ((), {"nosuch": 1}),
        ((), {"name": "n", "nosuch": 1}),
        ((), {"eager_start": False}),
    ],
    ids=["extra-positional", "unknown-keyword", "name-and-unknown", "eager_start"],
)
def test_create_task_argument_errors_are_asyncios(loop_factory, args, kwargs):
    """rose's create_task takes the running asyncio's route for anything but the common
    case, so its argument errors (or, where the version accepts the keyword, its result) are
    asyncio's."""
    assert _create_task_error(loop_factory, *args, **kwargs) == _create_task_error(
        asyncio.new_event_loop, *args, **kwargs
    )


def test_create_task_on_a_closed_loop(loop):
    loop.close()

    async def coro():
        pass

    c = coro()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.create_task(c)
    c.close()


def test_create_task_in_debug_mode_drops_its_own_frame(loop):
    """asyncio removes create_task's frame from the task's source traceback."""
    loop.set_debug(True)

    async def coro():
        pass

    task = loop.create_task(coro())
    last = task._source_traceback[-1]
    assert last.name == "test_create_task_in_debug_mode_drops_its_own_frame"
    loop.run_until_complete(task)


def test_create_task_uses_asyncio_task_at_call_time(loop, monkeypatch):
    made = []

    class MyTask(asyncio.Task):
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get("name"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(asyncio.tasks, "Task", MyTask)

    async def coro():
        return 1

    task = loop.create_task(coro(), name="x")
    assert type(task) is MyTask
    assert loop.run_until_complete(task) == 1
    assert made == ["x"]


def test_all_tasks_and_current_task(loop):
    async def child():
        await asyncio.sleep(0.01)

    async def main():
        t = loop.create_task(child(), name="child")
        tasks = asyncio.all_tasks()
        await t
        return {x.get_name() for x in tasks}, asyncio.current_task().get_name()

    names, current = loop.run_until_complete(loop.create_task(main(), name="main"))
    assert names == {"main", "child"}
    assert current == "main"


def test_gather_and_wait_for(loop):
    async def slow(x, delay):
        await asyncio.sleep(delay)
        return x

    async def main():
        results = await asyncio.gather(slow(1, 0.02), slow(2, 0.01), slow(3, 0))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slow(4, 1), 0.02)
        return results

    assert loop.run_until_complete(main()) == [1, 2, 3]


# -- task factory -------------------------------------------------------------------------


def test_task_factory_default_is_none(loop):
    assert loop.get_task_factory() is None


def task_factory_calls(loop):
    """What a task factory receives from create_task(), with and without name/context."""
    calls = []

    def factory(lp, coro, **kwargs):
        calls.append((lp is loop, sorted(kwargs)))
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def main():
        return "ok"

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    task = loop.create_task(main(), name="via-factory")
    assert task.get_name() == "via-factory"
    assert loop.run_until_complete(task) == "ok"
    task = loop.create_task(main(), context=contextvars.copy_context())
    assert loop.run_until_complete(task) == "ok"
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    assert loop.run_until_complete(main()) == "ok"
    return calls


def test_task_factory(loop):
    calls = task_factory_calls(loop)
    # The factory gets what this Python's create_task passes on: `context` only when given
    # (the name is set on the task afterwards), and, since 3.14, `name` too.
    assert calls in (
        [(True, []), (True, ["context"])],
        [(True, ["name"]), (True, ["context"])],
    )
    oracle = asyncio.new_event_loop()
    try:
        assert calls == task_factory_calls(oracle)
    finally:
        oracle.close()


def test_task_factory_used_by_run_until_complete(loop):
    made = []

    def factory(lp, coro):
        task = asyncio.Task(coro, loop=lp)
        made.append(task)
        return task

    async def main():
        return 9

    loop.set_task_factory(factory)
    assert loop.run_until_complete(main()) == 9
    assert len(made) == 1


@pytest.mark.parametrize("bad", [1, "factory", object()], ids=["int", "str", "object"])
def test_set_task_factory_rejects_non_callable(loop, bad):
    with pytest.raises(TypeError, match="task factory must be a callable or None"):
        loop.set_task_factory(bad)
    assert loop.get_task_factory() is None


# -- asynchronous generators -----------------------------------------------------------


def make_agen(events):
    async def agen():
        try:
            events.append("started")
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            events.append("closed")

    return agen()


def test_shutdown_asyncgens_closes_unfinished(loop):
    events = []
    gen = make_agen(events)

    async def first():
        return await gen.__anext__()

    assert loop.run_until_complete(first()) == 1
    assert events == ["started"]
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert events == ["started", "closed"]
    assert gen.ag_frame is None  # finished


def test_shutdown_asyncgens_reports_errors(loop):
    contexts = capture_exception_contexts(loop)

    async def bad_agen():
        try:
            yield 1
        finally:
            raise ValueError("cannot close")

    gen = bad_agen()

    async def first():
        return await gen.__anext__()

    loop.run_until_complete(first())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert len(contexts) == 1
    assert "an error occurred during closing of asynchronous generator" in contexts[0]["message"]
    assert isinstance(contexts[0]["exception"], ValueError)
    assert contexts[0]["asyncgen"] is gen


def test_asyncgen_finalizer_runs_aclose_on_loop(loop):
    events = []

    async def main():
        gen = make_agen(events)
        assert await gen.__anext__() == 1
        del gen
        gc.collect()
        for _ in range(20):
            if "closed" in events:
                break
            await asyncio.sleep(0)
        return list(events)

    assert loop.run_until_complete(main()) == ["started", "closed"]


def test_asyncgen_hooks_restored_after_run(loop):
    before = sys.get_asyncgen_hooks()
    seen = []

    async def main():
        seen.append(sys.get_asyncgen_hooks())

    loop.run_until_complete(main())
    assert sys.get_asyncgen_hooks() == before
    # While running, the loop's own hooks were installed.
    assert seen[0].firstiter is not None and seen[0].finalizer is not None
    assert seen[0] != before
