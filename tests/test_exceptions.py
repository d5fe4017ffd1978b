"""Errors raised by callbacks, and the exception handler API."""

import asyncio
import gc
import logging

import pytest


def failing_callback():
    raise ZeroDivisionError("from callback")


def collect_contexts(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))
    return contexts


# -- exceptions in callbacks -------------------------------------------------------


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_soon_threadsafe"])
def test_callback_exception_goes_to_handler(loop, method):
    contexts = collect_contexts(loop)
    rec = []
    if method == "call_later":
        handle = loop.call_later(0, failing_callback)
    else:
        handle = getattr(loop, method)(failing_callback)
    loop.call_later(0.01, rec.append, "still running")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()

    assert rec == ["still running"]
    assert len(contexts) == 1
    lp, ctx = contexts[0]
    assert lp is loop
    assert ctx["message"].startswith("Exception in callback ")
    assert "failing_callback" in ctx["message"]
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert str(ctx["exception"]) == "from callback"
    assert ctx["handle"] is handle


def test_callback_exception_does_not_stop_other_callbacks(loop):
    contexts = collect_contexts(loop)
    rec = []
    loop.call_soon(rec.append, 1)
    loop.call_soon(failing_callback)
    loop.call_soon(rec.append, 2)
    loop.call_soon(failing_callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert rec == [1, 2]
    assert [type(ctx["exception"]) for _, ctx in contexts] == [ZeroDivisionError] * 2


def test_callback_exception_logged_by_default_handler(loop, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    loop.call_soon(failing_callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("Exception in callback")
    assert "failing_callback" in record.getMessage()
    assert record.exc_info[0] is ZeroDivisionError


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_propagates_from_run_forever(loop, exc_type):
    rec = []

    def raiser():
        raise exc_type("stop now")

    loop.call_soon(rec.append, "before")
    loop.call_soon(raiser)
    loop.call_soon(rec.append, "after")
    with pytest.raises(exc_type, match="stop now"):
        loop.run_forever()
    assert rec == ["before"]
    assert not loop.is_running()
    # The loop is usable again and the rest of the queue still runs.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert rec == ["before", "after"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_timer_propagates_from_run_until_complete(loop, exc_type):
    def raiser():
        raise exc_type()

    loop.call_later(0.01, raiser)
    with pytest.raises(exc_type):
        loop.run_until_complete(asyncio.sleep(5))
    assert not loop.is_running()


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_coroutine_propagates(loop, exc_type):
    async def main():
        await asyncio.sleep(0)
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(main())
    assert not loop.is_running()


def test_base_exception_in_exception_handler_propagates(loop):
    def handler(lp, ctx):
        raise KeyboardInterrupt

    loop.set_exception_handler(handler)
    loop.call_soon(failing_callback)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()


# -- exception handler API ------------------------------------------------------------


def test_exception_handler_default_is_none(loop):
    assert loop.get_exception_handler() is None


def test_set_get_exception_handler(loop):
    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize("bad", [1, "handler", object()], ids=["int", "str", "object"])
def test_set_exception_handler_rejects_non_callable(loop, bad):
    with pytest.raises(TypeError, match="A callable object or None is expected, got "):
        loop.set_exception_handler(bad)
    assert loop.get_exception_handler() is None


def test_call_exception_handler_uses_custom_handler(loop):
    contexts = collect_contexts(loop)
    ctx = {"message": "custom", "exception": ValueError("v"), "extra": 1}
    loop.call_exception_handler(ctx)
    assert contexts == [(loop, ctx)]


def test_call_exception_handler_default_logs(loop, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    loop.call_exception_handler({"message": "something broke", "exception": ValueError("v")})
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].getMessage().startswith("something broke")
    assert records[0].exc_info[0] is ValueError


def test_default_exception_handler_logs_message_and_keys(loop, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    loop.default_exception_handler({"message": "plain message", "custom_key": "custom-value"})
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    text = records[0].getMessage()
    assert text.startswith("plain message")
    assert "custom_key" in text and "custom-value" in text
    assert not records[0].exc_info


def test_default_exception_handler_without_message(loop, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    loop.default_exception_handler({"exception": KeyError("k")})
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert records[0].getMessage().startswith("Unhandled exception in event loop")
    assert records[0].exc_info[0] is KeyError


def test_exception_handler_that_raises_is_logged(loop, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")

    def handler(lp, ctx):
        raise RuntimeError("handler is broken")

    loop.set_exception_handler(handler)
    loop.call_exception_handler({"message": "original problem"})
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    text = records[0].getMessage()
    assert "Unhandled error in exception handler" in text
    assert "original problem" in text
    assert records[0].exc_info[0] is RuntimeError


def test_exception_handler_that_raises_during_run(loop, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    rec = []

    def handler(lp, ctx):
        raise RuntimeError("handler is broken")

    loop.set_exception_handler(handler)
    loop.call_soon(failing_callback)
    loop.call_soon(rec.append, "continued")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert rec == ["continued"]
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(messages) == 1
    assert "Unhandled error in exception handler" in messages[0]


def test_task_exception_never_retrieved_reaches_handler(loop):
    contexts = collect_contexts(loop)

    async def bad():
        raise ValueError("never retrieved")

    task = loop.create_task(bad())
    loop.run_until_complete(asyncio.sleep(0.01))
    assert task.done()
    del task
    gc.collect()
    assert len(contexts) == 1
    ctx = contexts[0][1]
    assert ctx["message"] == "Task exception was never retrieved"
    assert isinstance(ctx["exception"], ValueError)
    assert isinstance(ctx["future"], asyncio.Task)
