"""rose.run, asyncio.Runner(loop_factory=...), rose.install(), ``python -m rose``.

These entry points are rose's own; each test runs the stdlib equivalent for the
``asyncio`` param (``asyncio.run``, the default policy, ``python script.py``)
so both params must give the same observable behaviour.
"""

import asyncio
import concurrent.futures
import json
import signal
import textwrap
import time
import warnings

import pytest
from conftest import STDLIB, child_env, import_rose, is_impl_loop, policy_api, run_python


@pytest.fixture
def run(impl):
    """``asyncio.run`` or ``rose.run``."""
    return import_rose().run if impl == "rose" else asyncio.run


def install(impl):
    """Make ``impl`` the loop every asyncio entry point uses (deprecated on 3.14+)."""
    if impl == "rose":
        with policy_api():
            import_rose().install()
    else:
        policy = STDLIB.POLICY_BASE()
        with policy_api():
            asyncio.set_event_loop_policy(policy)


def policy_class(impl):
    """``rose.EventLoopPolicy`` or ``asyncio.DefaultEventLoopPolicy`` (each looked up as a
    user would: deprecated on 3.14+)."""
    with policy_api():
        return import_rose().EventLoopPolicy if impl == "rose" else asyncio.DefaultEventLoopPolicy


# -- rose.run / asyncio.run ----------------------------------------------------------


def test_run_returns_result_on_impl_loop(impl, run):
    async def main():
        await asyncio.sleep(0.01)
        return "result", asyncio.get_running_loop()

    result, loop = run(main())
    assert result == "result"
    assert is_impl_loop(impl, loop)
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert loop.is_closed()


@pytest.mark.parametrize("debug", [True, False])
def test_run_debug(run, debug):
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert run(main(), debug=debug) is debug


def test_run_propagates_exception(run):
    async def main():
        await asyncio.sleep(0)
        raise LookupError("from main")

    with pytest.raises(LookupError, match="from main"):
        run(main())


def test_run_cancels_leftover_tasks(run):
    events = []

    async def background():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main():
        asyncio.get_running_loop().create_task(background())
        await asyncio.sleep(0.01)
        return "main done"

    t0 = time.monotonic()
    assert run(main()) == "main done"
    assert time.monotonic() - t0 < 2
    assert events == ["cancelled"]


def test_run_finalizes_asyncgens(run):
    events = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("closed")

    gens = []

    async def main():
        gen = agen()
        gens.append(gen)  # keep it alive: only shutdown_asyncgens can close it
        return await gen.__anext__()

    assert run(main()) == 1
    assert events == ["closed"]


def test_run_shuts_down_default_executor(run):
    async def main():
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, time.sleep, 0)
        return loop._default_executor

    executor = run(main())
    assert isinstance(executor, concurrent.futures.ThreadPoolExecutor)
    with pytest.raises(RuntimeError):
        executor.submit(print)


def outcome(call):
    try:
        return "returned", call()
    except Exception as exc:  # noqa: BLE001 -- compared with stdlib's
        return type(exc), str(exc)


class Awaitable:
    def __await__(self):
        yield from asyncio.sleep(0).__await__()
        return "awaited"


def test_run_rejects_non_coroutine(run):
    # 3.11-3.13: ValueError "a coroutine was expected, got ..."; 3.14 also takes awaitables
    # and raises TypeError for anything else. rose.run answers as this Python's asyncio.run.
    got = outcome(lambda: run(asyncio.sleep))
    assert got == outcome(lambda: asyncio.run(asyncio.sleep))
    assert got[0] in (ValueError, TypeError)
    awaitable = Awaitable()
    assert outcome(lambda: run(awaitable)) == outcome(lambda: asyncio.run(awaitable))


def test_run_inside_running_loop(loop, run):
    async def inner():
        pass

    async def main():
        coro = inner()
        try:
            run(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
        loop.run_until_complete(main())


# -- asyncio.Runner(loop_factory=...) --------------------------------------------------


def test_runner_with_loop_factory(impl, loop_factory):
    async def main(x):
        await asyncio.sleep(0)
        return x, asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        first, loop1 = runner.run(main(1))
        second, loop2 = runner.run(main(2))
        assert runner.get_loop() is loop1
    assert (first, second) == (1, 2)
    assert loop1 is loop2
    assert is_impl_loop(impl, loop1)
    assert loop1.is_closed()


def test_runner_debug_and_context(loop_factory):
    import contextvars

    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "runner-ctx")

    async def main():
        return asyncio.get_running_loop().get_debug(), var.get()

    with asyncio.Runner(debug=True, loop_factory=loop_factory) as runner:
        assert runner.run(main(), context=ctx) == (True, "runner-ctx")


# -- policy -----------------------------------------------------------------------------


def test_install_policy(impl):
    install(impl)
    with policy_api():
        policy = asyncio.get_event_loop_policy()
    assert isinstance(policy, policy_class(impl))
    with policy_api():
        assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    loop = asyncio.new_event_loop()
    try:
        assert is_impl_loop(impl, loop)
        assert loop.run_until_complete(asyncio.sleep(0, result=3)) == 3
    finally:
        loop.close()

    async def main():
        return asyncio.get_running_loop()

    assert is_impl_loop(impl, asyncio.run(main()))


def test_policy_object(impl):
    policy = policy_class(impl)()
    loop = policy.new_event_loop()
    try:
        assert is_impl_loop(impl, loop)
        policy.set_event_loop(loop)
        assert policy.get_event_loop() is loop
        policy.set_event_loop(None)
    finally:
        loop.close()


def test_install_deprecation_is_attributed_to_the_caller(impl):
    # Where asyncio deprecates its policy API (3.14+), rose.install() warns as
    # asyncio.set_event_loop_policy() does: one DeprecationWarning, in asyncio's words, at the
    # line that called it (so the default filters show it in __main__).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if impl == "rose":
            name = "rose.install"
            import_rose().install()
        else:
            name = "asyncio.set_event_loop_policy"
            asyncio.set_event_loop_policy(None)
    if not STDLIB.POLICY_DEPRECATED:
        assert caught == []
        return
    assert [w.category for w in caught] == [DeprecationWarning]
    assert str(caught[0].message).startswith(f"{name!r} is deprecated")
    assert str(caught[0].message) == STDLIB.policy_deprecation_message(name)
    assert caught[0].filename == __file__


def recorded(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [(w.category, str(w.message)) for w in caught]


def test_child_watcher_after_install(impl):
    # The installed policy is asyncio's Unix default policy but for the loop: where asyncio
    # still has child watchers (before 3.14) they work as on stdlib, deprecation included.
    install(impl)
    if not hasattr(asyncio, "get_child_watcher"):
        with policy_api():
            assert not hasattr(asyncio.get_event_loop_policy(), "get_child_watcher")
        return
    _, stdlib_warnings = recorded(asyncio.unix_events._UnixDefaultEventLoopPolicy().get_child_watcher)
    watcher, seen = recorded(asyncio.get_child_watcher)
    assert isinstance(watcher, asyncio.AbstractChildWatcher)
    assert seen == stdlib_warnings


def test_loop_class(impl, loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert is_impl_loop(impl, loop)
    if impl == "rose":
        rose = import_rose()
        assert issubclass(rose.Loop, asyncio.AbstractEventLoop)


# -- Ctrl-C under a runner (child process) ----------------------------------------------

RUNNER_CTRL_C = """
async def main():
    try:
        print("ready", flush=True)
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        print("main cancelled", flush=True)
        raise

if {use_runner}:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
else:
    run(main())
print("not reached", flush=True)
"""


@pytest.mark.parametrize("use_runner", [True, False], ids=["Runner", "run"])
def test_ctrl_c_under_runner(impl, spawn, use_runner):
    child = spawn(impl, RUNNER_CTRL_C.format(use_runner=use_runner))
    assert child.readline(timeout=15) == "ready"
    time.sleep(0.05)
    child.proc.send_signal(signal.SIGINT)
    assert child.readline(timeout=2) == "main cancelled"
    returncode, out, err = child.wait(timeout=2)
    assert returncode == -signal.SIGINT, err
    assert "KeyboardInterrupt" in err
    assert "not reached" not in out


# -- python -m rose ---------------------------------------------------------------------

PROGRAM = """\
import asyncio, json, os, sys
import helper_for_cli_test

async def main():
    await asyncio.sleep(0.01)
    return asyncio.get_running_loop()

loop = asyncio.run(main())
new = asyncio.new_event_loop()
new.close()
print(json.dumps({
    "argv": sys.argv,
    "name": __name__,
    "file": os.path.basename(__file__),
    "helper": helper_for_cli_test.VALUE,
}))
print("run-loop", type(loop).__module__.split(".")[0])
print("new-loop", type(new).__module__.split(".")[0])
sys.exit(int(os.environ.get("CLI_TEST_EXIT", "0")))
"""

SCRIPT_ARGS = ["a", "-m", "--help", "b c"]


@pytest.fixture
def program(tmp_path):
    prog = tmp_path / "prog"
    prog.mkdir()
    (prog / "app.py").write_text(PROGRAM)
    (prog / "helper_for_cli_test.py").write_text("VALUE = 42\n")
    return prog


def cli_prefix(impl):
    """How to start a program: ``python X`` or ``python -m rose X``."""
    return ["-m", "rose"] if impl == "rose" else []


def loop_lines(impl):
    top = "rose" if impl == "rose" else "asyncio"
    return [f"run-loop {top}", f"new-loop {top}"]


@pytest.mark.parametrize("exit_code", [0, 3])
def test_cli_script(impl, program, tmp_path, exit_code):
    script = str(program / "app.py")
    env = child_env({"CLI_TEST_EXIT": str(exit_code)})
    proc = run_python([*cli_prefix(impl), script, *SCRIPT_ARGS], env=env, cwd=tmp_path)
    assert proc.returncode == exit_code, proc.stderr
    lines = proc.stdout.splitlines()
    # Exactly what `python app.py a -m --help "b c"` prints, bar the loop type.
    assert json.loads(lines[0]) == {
        "argv": [script, *SCRIPT_ARGS],
        "name": "__main__",
        "file": "app.py",
        "helper": 42,
    }
    assert lines[1:] == loop_lines(impl)


def test_cli_issues_no_warning(impl, program, tmp_path):
    # `python -m rose` is rose's own plumbing: no deprecation warning of the policy API (3.14+)
    # comes from it, even with every warning made an error.
    script = str(program / "app.py")
    proc = run_python(["-W", "error", *cli_prefix(impl), script], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines()[1:] == loop_lines(impl)


def test_cli_script_uncaught_exception(impl, tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio

            async def main():
                raise ValueError("bad thing")

            asyncio.run(main())
            """
        )
    )
    proc = run_python([*cli_prefix(impl), str(script)], cwd=tmp_path)
    assert proc.returncode == 1
    assert "ValueError: bad thing" in proc.stderr
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize("kind", ["module", "package"])
def test_cli_module(impl, program, tmp_path, kind):
    if kind == "module":
        target, expected_file = "app", "app.py"
    else:
        pkg = program / "cli_test_pkg"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "__main__.py").write_text(PROGRAM)
        target, expected_file = "cli_test_pkg", "__main__.py"
    env = child_env(paths=[program])
    args = ["-m", target] if impl == "asyncio" else ["-m", "rose", "-m", target]
    proc = run_python([*args, *SCRIPT_ARGS], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    data = json.loads(lines[0])
    assert data["argv"][1:] == SCRIPT_ARGS
    assert data["argv"][0].endswith(expected_file)
    assert data["name"] == "__main__"
    assert data["file"] == expected_file
    assert lines[1:] == loop_lines(impl)


SCRIPT_FAILS = """\
import sys
print(__file__, sys.argv, sys.path[0], sorted(globals()))
def inner():
    raise ValueError("boom")
inner()
"""

SCRIPT_INTERRUPTED = """\
print("before")
raise KeyboardInterrupt
"""

CODE = "import sys; print(sys.argv, repr(sys.path[0]), __name__, sorted(globals()))"

CLI_CASES = {
    # name: (arguments after `python` / `python -m rose`, files to write in the folder)
    "script": (["fails.py", "a", "-m"], {"fails.py": SCRIPT_FAILS}),
    "script-keyboard-interrupt": (["interrupted.py"], {"interrupted.py": SCRIPT_INTERRUPTED}),
    "missing-script": (["no_such_script.py"], {}),
    "missing-module": (["-m", "no_such_module_for_rose"], {}),
    "missing-submodule": (["-m", "json.no_such_part"], {}),
    "module-raising-importerror": (["-m", "importer"], {"importer.py": "import no_such_thing\n"}),
    "code": (["-c", CODE, "x", "y"], {}),
    "dash-m-alone": (["-m"], {}),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_runs_programs_as_python_does(case, tmp_path):
    # `python -m rose ARGS` against `python ARGS`: the same output, messages, tracebacks (no
    # frames of rose's own) and exit status.
    import_rose()
    args, files = CLI_CASES[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = child_env(paths=[tmp_path])
    expected = run_python(args, cwd=tmp_path, env=env)
    got = run_python(["-m", "rose", *args], cwd=tmp_path, env=env)
    if case == "dash-m-alone":  # (python adds its own usage text)
        assert got.returncode == expected.returncode == 2
        assert got.stderr.splitlines()[0] == expected.stderr.splitlines()[0]
        return
    assert (got.returncode, got.stdout, got.stderr) == (
        expected.returncode,
        expected.stdout,
        expected.stderr,
    )


def test_cli_rose_without_arguments(tmp_path):
    """rose-only: ``python -m rose`` with nothing to run is a usage error."""
    import_rose()
    proc = run_python(["-m", "rose"], cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip()
