"""Subprocesses: asyncio.create_subprocess_exec/_shell and loop.subprocess_exec/_shell."""

import asyncio
import errno
import os
import signal
import subprocess
import sys
import threading

import pytest
from conftest import closing_transport

TIMEOUT = 1.8
PIPE = asyncio.subprocess.PIPE
DEVNULL = asyncio.subprocess.DEVNULL
STDOUT = asyncio.subprocess.STDOUT


def run(loop, coro, timeout=TIMEOUT):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def py(code):
    """argv running ``code`` in a fast-starting child python (-S: no site import)."""
    return [sys.executable, "-S", "-c", code]


async def exec_py(code, **kwargs):
    return await asyncio.create_subprocess_exec(*py(code), **kwargs)


def open_fds():
    return sorted(os.listdir("/proc/self/fd"))


def pattern(blocks):
    """Deterministic payload of 4 KiB blocks that are all different: any lost,
    duplicated or reordered chunk shows."""
    return b"".join(b"%08d" % i * 512 for i in range(blocks))


PATTERN_CODE = (
    "import sys; sys.stdout.buffer.write(b''.join(b'%08d' % i * 512 for i in range({n})))"
)


# --------------------------------------------------------------------------------------
# create_subprocess_exec / create_subprocess_shell with the stream API
# --------------------------------------------------------------------------------------


def test_exec_stdout_pipe(loop):
    async def main():
        proc = await exec_py("print('hello from child')", stdout=PIPE)
        assert proc.stdin is None and proc.stderr is None
        assert proc.pid > 0
        out, err = await proc.communicate()
        return proc, out, err

    proc, out, err = run(loop, main())
    assert out == b"hello from child\n"
    assert err is None
    assert proc.returncode == 0


def test_exec_all_three_pipes_and_exit_code(loop):
    code = (
        "import sys; data = sys.stdin.buffer.read(); "
        "sys.stdout.buffer.write(data.upper()); sys.stderr.write('on stderr'); sys.exit(3)"
    )

    async def main():
        proc = await exec_py(code, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        assert proc.returncode is None
        out, err = await proc.communicate(b"shout this")
        return proc, out, err

    proc, out, err = run(loop, main())
    assert (out, err) == (b"SHOUT THIS", b"on stderr")
    assert proc.returncode == 3


def test_exec_streams_line_by_line(loop):
    code = "import sys\nfor line in sys.stdin:\n    print('echo:' + line.strip(), flush=True)\n"

    async def main():
        proc = await exec_py(code, stdin=PIPE, stdout=PIPE)
        replies = []
        for word in ("alpha", "beta", "gamma"):
            proc.stdin.write(word.encode() + b"\n")
            await proc.stdin.drain()
            replies.append(await proc.stdout.readline())
        proc.stdin.close()
        await proc.stdin.wait_closed()
        assert await proc.stdout.read() == b""  # EOF once the child exits
        assert await proc.wait() == 0
        return replies

    assert run(loop, main()) == [b"echo:alpha\n", b"echo:beta\n", b"echo:gamma\n"]


def test_shell(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            'printf "%s|%s" "$ROSE_SHELL_VAR" "$0"; exit 7',
            stdout=PIPE,
            env={"ROSE_SHELL_VAR": "shell value", "PATH": os.defpath},
        )
        out, _ = await proc.communicate()
        return proc.returncode, out

    assert run(loop, main()) == (7, b"shell value|/bin/sh")


def test_shell_unknown_command_is_127(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "rose-no-such-command-xyz", stdout=PIPE, stderr=PIPE
        )
        out, err = await proc.communicate()
        return proc.returncode, out, err

    rc, out, err = run(loop, main())
    assert rc == 127
    assert out == b""
    assert b"rose-no-such-command-xyz" in err


def test_stderr_to_stdout(loop):
    code = (
        "import sys; sys.stdout.write('out1 '); sys.stdout.flush(); "
        "sys.stderr.write('err '); sys.stderr.flush(); sys.stdout.write('out2')"
    )

    async def main():
        proc = await exec_py(code, stdout=PIPE, stderr=STDOUT)
        assert proc.stderr is None
        return await proc.communicate()

    assert run(loop, main()) == (b"out1 err out2", None)


def test_devnull(loop):
    code = (
        "import sys; sys.stderr.write(repr(sys.stdin.read())); sys.stdout.write('discarded' * 1000)"
    )

    async def main():
        proc = await exec_py(code, stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE)
        assert proc.stdin is None and proc.stdout is None
        out, err = await proc.communicate()
        return proc.returncode, out, err

    # stdin=DEVNULL reads as an immediate EOF.
    assert run(loop, main()) == (0, None, b"''")


def test_stdout_to_fd(loop):
    r, w = os.pipe()

    async def main():
        proc = await exec_py("print('to an fd')", stdout=w)
        assert proc.stdout is None
        os.close(w)  # the child has its own copy
        return await proc.wait()

    try:
        assert run(loop, main()) == 0
        with os.fdopen(r, "rb") as f:
            r = None
            assert f.read() == b"to an fd\n"  # EOF: the child's copy is closed too
    finally:
        if r is not None:
            os.close(r)


def test_stdout_and_stderr_to_file(loop, tmp_path):
    path = tmp_path / "out.txt"
    code = "import sys; print('line on stdout', flush=True); sys.stderr.write('line on stderr\\n')"

    async def main():
        with open(path, "wb") as f:
            proc = await exec_py(code, stdout=f, stderr=f)
        return await proc.wait()

    assert run(loop, main()) == 0
    assert path.read_bytes().splitlines() == [b"line on stdout", b"line on stderr"]


def test_stdin_from_file(loop, tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"file contents\n")

    async def main():
        with open(path, "rb") as f:
            proc = await exec_py(
                "import sys; sys.stdout.write(sys.stdin.read()[::-1])", stdin=f, stdout=PIPE
            )
        return await proc.communicate()

    assert run(loop, main()) == (b"\nstnetnoc elif", None)


def test_communicate_input_ignored_by_child(loop):
    """The child exits without reading stdin: communicate() swallows the broken pipe."""

    async def main():
        proc = await exec_py("print('not reading')", stdin=PIPE, stdout=PIPE)
        out, err = await proc.communicate(b"x" * (4 * 1024 * 1024))
        return proc.returncode, out

    assert run(loop, main()) == (0, b"not reading\n")


def test_returncode_and_wait(loop):
    async def main():
        proc = await exec_py("import sys; sys.stdin.read(); sys.exit(42)", stdin=PIPE)
        await asyncio.sleep(0.05)
        assert proc.returncode is None  # still running: it waits for stdin EOF
        proc.stdin.close()
        rc = await proc.wait()
        assert await proc.wait() == rc  # wait() again returns at once
        return rc, proc.returncode

    assert run(loop, main()) == (42, 42)


def test_many_concurrent_processes(loop):
    async def one(i):
        proc = await exec_py(f"print({i} * {i})", stdout=PIPE)
        out, _ = await proc.communicate()
        return int(out), proc.returncode

    async def main():
        return await asyncio.gather(*(one(i) for i in range(8)))

    assert run(loop, main()) == [(i * i, 0) for i in range(8)]


def test_stderr_stdout_has_no_stderr_pipe_transport(loop):
    async def main():
        code = "import sys; print('o'); sys.stderr.write('e')"
        connect = sub_exec(code, stdin=DEVNULL, stdout=PIPE, stderr=STDOUT)
        async with closing_transport(connect, wait_lost=False) as (tr, proto):
            assert tr.get_pipe_transport(1) is not None
            assert tr.get_pipe_transport(2) is None
            await proto.lost
        return proto

    proto = run(loop, main())
    assert bytes(proto.data[1]) == b"o\ne"
    assert proto.data[2] == b""
    assert proto.pipe_lost == {1: None}


def test_cancelled_wait_leaves_process_running(loop):
    async def main():
        proc = await start_sleeper()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.05)
        assert proc.returncode is None
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(proc.communicate(), 0.05)
        assert proc.returncode is None
        proc.kill()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL


def test_subprocess_from_loop_in_other_thread(loop):
    """A loop running outside the main thread can run and reap children too."""
    result = {}

    async def main():
        proc = await exec_py("import sys; print(sys.stdin.read() * 2)", stdin=PIPE, stdout=PIPE)
        out, _ = await proc.communicate(b"thread")
        return out, proc.returncode

    def target():
        try:
            result["value"] = run(loop, main())
        except BaseException as exc:  # reported below, in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(TIMEOUT + 0.1)
    assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    assert result["value"] == (b"threadthread\n", 0)


# --------------------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------------------

SLEEPER = "import time; print('ready', flush=True); time.sleep(30)"


async def start_sleeper():
    proc = await exec_py(SLEEPER, stdout=PIPE)
    assert await proc.stdout.readline() == b"ready\n"
    return proc


def test_terminate(loop):
    async def main():
        proc = await start_sleeper()
        proc.terminate()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGTERM


def test_kill(loop):
    async def main():
        proc = await start_sleeper()
        proc.kill()
        rc = await proc.wait()
        assert await proc.stdout.read() == b""
        return rc

    assert run(loop, main()) == -signal.SIGKILL


def test_send_signal_default_action(loop):
    async def main():
        proc = await start_sleeper()
        proc.send_signal(signal.SIGUSR1)
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGUSR1


def test_send_signal_caught_by_child(loop):
    # os.write, not print: the signal may come while "ready" is still being flushed, and a
    # print from the handler would then be a reentrant call on sys.stdout's buffer.
    code = (
        "import os, signal, sys\n"
        "def handler(signum, frame):\n"
        "    os.write(1, b'caught %d\\n' % signum)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGUSR2, handler)\n"
        "os.write(1, b'ready\\n')\n"
        "while True:\n"
        "    signal.pause()\n"
    )

    async def main():
        proc = await exec_py(code, stdout=PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGUSR2)
        out = await proc.stdout.read()
        return out, await proc.wait()

    assert run(loop, main()) == (f"caught {int(signal.SIGUSR2)}\n".encode(), 0)


def test_signal_after_exit_raises_process_lookup_error(loop):
    async def main():
        proc = await exec_py("pass")
        assert await proc.wait() == 0
        await asyncio.sleep(0.01)
        for method in (proc.terminate, proc.kill, lambda: proc.send_signal(signal.SIGTERM)):
            with pytest.raises(ProcessLookupError):
                method()

    run(loop, main())


# --------------------------------------------------------------------------------------
# Popen options: cwd, env, start_new_session, pass_fds, close_fds
# --------------------------------------------------------------------------------------


def test_cwd(loop, tmp_path):
    async def main():
        proc = await exec_py("import os; print(os.getcwd())", stdout=PIPE, cwd=tmp_path)
        out, _ = await proc.communicate()
        return out.decode().strip()

    assert os.path.realpath(run(loop, main())) == os.path.realpath(tmp_path)


def test_env(loop):
    code = "import os; print(os.environ.get('ROSE_ENV_TEST'), 'HOME' in os.environ)"

    async def main():
        proc = await exec_py(code, stdout=PIPE, env={"ROSE_ENV_TEST": "from-parent"})
        out, _ = await proc.communicate()
        return out

    assert run(loop, main()) == b"from-parent False\n"


def test_env_inherited_by_default(loop, monkeypatch):
    monkeypatch.setenv("ROSE_INHERITED", "yes")

    async def main():
        proc = await exec_py("import os; print(os.environ['ROSE_INHERITED'])", stdout=PIPE)
        out, _ = await proc.communicate()
        return out

    assert run(loop, main()) == b"yes\n"


def test_start_new_session(loop):
    code = "import os; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())"

    async def main():
        new = await exec_py(code, stdout=PIPE, start_new_session=True)
        same = await exec_py(code, stdout=PIPE)
        return (await new.communicate())[0], (await same.communicate())[0]

    new, same = run(loop, main())
    assert new == b"True True\n"
    assert same == b"False False\n"


def test_pass_fds(loop):
    r, w = os.pipe()

    async def main():
        proc = await exec_py(f"import os; os.write({w}, b'through a passed fd')", pass_fds=(w,))
        os.close(w)
        rc = await proc.wait()
        return rc

    try:
        assert run(loop, main()) == 0
        with os.fdopen(r, "rb") as f:
            r = None
            assert f.read() == b"through a passed fd"
    finally:
        if r is not None:
            os.close(r)


@pytest.mark.parametrize("close_fds, expected", [(True, b"closed\n"), (False, b"open\n")])
def test_close_fds(loop, close_fds, expected):
    r, w = os.pipe()
    os.set_inheritable(w, True)
    code = (
        "import os\n"
        "try:\n"
        f"    os.fstat({w})\n"
        "    print('open')\n"
        "except OSError:\n"
        "    print('closed')\n"
    )

    async def main():
        proc = await exec_py(code, stdout=PIPE, close_fds=close_fds)
        out, _ = await proc.communicate()
        return out

    try:
        assert run(loop, main()) == expected
    finally:
        os.close(r)
        os.close(w)


# --------------------------------------------------------------------------------------
# Failing spawns
# --------------------------------------------------------------------------------------


def popen_error(*args, **kwargs):
    with pytest.raises(OSError) as info:
        subprocess.Popen(*args, **kwargs)
    return info.value


def check_same_error(err, expected):
    assert type(err) is type(expected)
    assert err.errno == expected.errno
    assert err.strerror == expected.strerror
    assert err.filename == expected.filename
    assert str(err) == str(expected)


def test_nonexistent_program_raises_and_leaks_no_fds(loop):
    program = "/nonexistent/rose-no-such-program"
    expected = popen_error([program])
    run(loop, asyncio.sleep(0))  # let the loop set up anything it does lazily
    before = open_fds()

    async def main():
        with pytest.raises(FileNotFoundError) as info:
            await asyncio.create_subprocess_exec(
                program, "arg", stdin=PIPE, stdout=PIPE, stderr=PIPE
            )
        return info.value

    err = run(loop, main())
    check_same_error(err, expected)
    assert err.errno == errno.ENOENT
    assert open_fds() == before


def test_nonexistent_program_repeatedly_leaks_no_fds(loop):
    run(loop, asyncio.sleep(0))
    before = open_fds()

    async def main():
        for _ in range(20):
            with pytest.raises(FileNotFoundError):
                await asyncio.create_subprocess_exec(
                    "rose-no-such-program-on-path", stdin=PIPE, stdout=PIPE, stderr=STDOUT
                )

    run(loop, main())
    assert open_fds() == before


def test_nonexistent_cwd_raises(loop, tmp_path):
    cwd = tmp_path / "missing"
    expected = popen_error([sys.executable, "-c", "pass"], cwd=cwd)
    run(loop, asyncio.sleep(0))
    before = open_fds()

    async def main():
        with pytest.raises(FileNotFoundError) as info:
            await exec_py("pass", stdout=PIPE, cwd=cwd)
        return info.value

    err = run(loop, main())
    check_same_error(err, expected)
    assert open_fds() == before


def test_non_executable_raises_permission_error(loop, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    expected = popen_error([str(script)])
    run(loop, asyncio.sleep(0))
    before = open_fds()

    async def main():
        with pytest.raises(PermissionError) as info:
            await asyncio.create_subprocess_exec(str(script), stdout=PIPE)
        return info.value

    err = run(loop, main())
    check_same_error(err, expected)
    assert open_fds() == before


def test_successful_spawn_leaks_no_fds(loop):
    run(loop, asyncio.sleep(0))
    before = open_fds()

    async def main():
        proc = await exec_py("print('x')", stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await proc.communicate(b"ignored")
        assert out == b"x\n"
        # Let the transport finish closing its pipes.
        await asyncio.sleep(0.01)

    run(loop, main())
    assert open_fds() == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"universal_newlines": True}, "universal_newlines must be False"),
        ({"text": True}, "text must be False"),
        ({"encoding": "utf-8"}, "encoding must be None"),
        ({"errors": "strict"}, "errors must be None"),
        ({"bufsize": 1}, "bufsize must be 0"),
        ({"shell": True}, "shell must be False"),
    ],
)
def test_exec_bad_arguments(loop, kwargs, message):
    async def main():
        await asyncio.get_running_loop().subprocess_exec(
            asyncio.SubprocessProtocol, *py("pass"), **kwargs
        )

    with pytest.raises(ValueError, match=f"^{message}$"):
        run(loop, main())


@pytest.mark.parametrize(
    "cmd, kwargs, message",
    [
        (["echo", "hi"], {}, "cmd must be a string"),
        ("echo hi", {"shell": False}, "shell must be True"),
        ("echo hi", {"universal_newlines": True}, "universal_newlines must be False"),
        ("echo hi", {"bufsize": 1}, "bufsize must be 0"),
        ("echo hi", {"text": True}, "text must be False"),
    ],
)
def test_shell_bad_arguments(loop, cmd, kwargs, message):
    async def main():
        await asyncio.get_running_loop().subprocess_shell(asyncio.SubprocessProtocol, cmd, **kwargs)

    with pytest.raises(ValueError, match=f"^{message}$"):
        run(loop, main())


# --------------------------------------------------------------------------------------
# Large transfers
# --------------------------------------------------------------------------------------


def test_large_stdout(loop):
    blocks = 2048  # 8 MiB

    async def main():
        proc = await exec_py(PATTERN_CODE.format(n=blocks), stdout=PIPE)
        out, _ = await proc.communicate()
        return proc.returncode, out

    rc, out = run(loop, main())
    assert rc == 0
    assert len(out) == 8 * 1024 * 1024
    assert out == pattern(blocks)


def test_large_stdout_read_in_chunks(loop):
    blocks = 1024  # 4 MiB

    async def main():
        proc = await exec_py(PATTERN_CODE.format(n=blocks), stdout=PIPE)
        chunks = []
        while chunk := await proc.stdout.read(65536):
            chunks.append(chunk)
        assert await proc.wait() == 0
        return b"".join(chunks)

    assert run(loop, main()) == pattern(blocks)


def test_large_stdin_stdout_stderr_together(loop):
    """4 MiB in, 4 MiB echoed out and 2 MiB on stderr at the same time."""
    data = pattern(1024)
    code = (
        "import sys\n"
        "while True:\n"
        "    chunk = sys.stdin.buffer.read1(65536)\n"
        "    if not chunk:\n"
        "        break\n"
        "    sys.stdout.buffer.write(chunk)\n"
        "    sys.stderr.buffer.write(chunk[: len(chunk) // 2])\n"
    )

    async def main():
        proc = await exec_py(code, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await proc.communicate(data)
        return proc.returncode, out, err

    rc, out, err = run(loop, main())
    assert rc == 0
    assert out == data
    assert len(err) == len(data) // 2


# --------------------------------------------------------------------------------------
# loop.subprocess_exec / subprocess_shell with a protocol: the transport API
# --------------------------------------------------------------------------------------


class SubRecorder(asyncio.SubprocessProtocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.events = []
        self.transport = None
        self.data = {1: bytearray(), 2: bytearray()}
        self.pipe_lost = {}
        self.exited = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def pipe_data_received(self, fd, data):
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(f"pipe_lost{fd}")
        self.pipe_lost[fd] = exc

    def process_exited(self):
        self.events.append("exited")
        self.exited.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


def sub_exec(code, factory=SubRecorder, **kwargs):
    """loop.subprocess_exec(factory, python -c code, **kwargs), as a coroutine."""
    return asyncio.get_running_loop().subprocess_exec(factory, *py(code), **kwargs)


def test_subprocess_exec_transport(loop):
    code = (
        "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1]); "
        "sys.stderr.buffer.write(b'err:' + data); sys.exit(5)"
    )

    async def main():
        connect = sub_exec(code, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        async with closing_transport(connect, wait_lost=False) as (tr, proto):
            assert proto.transport is tr
            assert tr.get_protocol() is proto
            pid = tr.get_pid()
            assert isinstance(pid, int) and pid > 0
            popen = tr.get_extra_info("subprocess")
            assert isinstance(popen, subprocess.Popen) and popen.pid == pid
            assert tr.get_returncode() is None
            stdin = tr.get_pipe_transport(0)
            assert isinstance(stdin, asyncio.WriteTransport)
            assert isinstance(tr.get_pipe_transport(1), asyncio.ReadTransport)
            assert isinstance(tr.get_pipe_transport(2), asyncio.ReadTransport)
            assert tr.get_pipe_transport(3) is None
            stdin.write(b"abc")
            stdin.write(b"def")
            stdin.close()
            assert await proto.lost is None
            assert tr.get_returncode() == 5
            assert tr.get_pid() == pid
        return proto

    proto = run(loop, main())
    assert bytes(proto.data[1]) == b"fedcba"
    assert bytes(proto.data[2]) == b"err:abcdef"
    assert proto.pipe_lost == {0: None, 1: None, 2: None}
    assert proto.events[0] == "made"
    assert proto.events[-1] == "lost"
    assert sorted(proto.events[1:-1]) == ["exited", "pipe_lost0", "pipe_lost1", "pipe_lost2"]
    assert proto.events.index("pipe_lost0") < proto.events.index("exited")


def test_subprocess_exec_without_pipes(loop):
    async def main():
        connect = sub_exec("import sys; sys.exit(9)", stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        async with closing_transport(connect, wait_lost=False) as (tr, proto):
            for fd in (0, 1, 2):
                assert tr.get_pipe_transport(fd) is None
            await proto.exited
            assert tr.get_returncode() == 9
            assert await proto.lost is None
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "exited", "lost"]


def test_subprocess_shell_transport(loop):
    async def main():
        lp = asyncio.get_running_loop()
        shell = lp.subprocess_shell(
            SubRecorder,
            "echo shell-$ROSE_T; echo oops >&2; exit 4",
            stdin=DEVNULL,
            stdout=PIPE,
            stderr=PIPE,
            env={"ROSE_T": "ok", "PATH": os.defpath},
        )
        async with closing_transport(shell, wait_lost=False) as (tr, proto):
            assert tr.get_pipe_transport(0) is None
            assert await proto.lost is None
            assert tr.get_returncode() == 4
        return proto

    proto = run(loop, main())
    assert bytes(proto.data[1]) == b"shell-ok\n"
    assert bytes(proto.data[2]) == b"oops\n"
    assert proto.pipe_lost == {1: None, 2: None}


def test_subprocess_transport_repr(loop):
    async def main():
        code = "import sys; sys.stdin.read()"
        connect = sub_exec(code, stdin=PIPE, stdout=PIPE, stderr=DEVNULL)
        async with closing_transport(connect, wait_lost=False) as (tr, proto):
            pid = tr.get_pid()
            stdin_fd = tr.get_pipe_transport(0).get_extra_info("pipe").fileno()
            stdout_fd = tr.get_pipe_transport(1).get_extra_info("pipe").fileno()
            assert repr(tr) == (
                f"<_UnixSubprocessTransport pid={pid} running "
                f"stdin=<_UnixWritePipeTransport fd={stdin_fd} idle bufsize=0> "
                f"stdout=<_UnixReadPipeTransport fd={stdout_fd} polling>>"
            )
            tr.get_pipe_transport(0).close()
            await proto.lost
            assert repr(tr).startswith(f"<_UnixSubprocessTransport pid={pid} returncode=0 ")
        assert repr(tr).startswith(f"<_UnixSubprocessTransport closed pid={pid} returncode=0")

    run(loop, main())


def test_transport_send_signal_and_terminate(loop):
    async def main():
        results = []
        for action in ("send_signal", "terminate", "kill"):
            sleeper = sub_exec(SLEEPER, stdin=DEVNULL, stdout=PIPE, stderr=DEVNULL)
            async with closing_transport(sleeper, wait_lost=False) as (tr, proto):
                while b"\n" not in proto.data[1]:
                    await asyncio.sleep(0.005)
                if action == "send_signal":
                    tr.send_signal(signal.SIGINT)
                else:
                    getattr(tr, action)()
                await proto.lost
                results.append(tr.get_returncode())
                # The process is gone and reaped: no more signals.
                with pytest.raises(ProcessLookupError):
                    tr.kill()
        return results

    # An unhandled KeyboardInterrupt makes python die of SIGINT itself.
    sigint_rc, term_rc, kill_rc = run(loop, main())
    assert sigint_rc == -signal.SIGINT
    assert term_rc == -signal.SIGTERM
    assert kill_rc == -signal.SIGKILL


def test_transport_close_kills_running_process(loop):
    async def main():
        tr, proto = await sub_exec(SLEEPER, stdin=PIPE, stdout=PIPE, stderr=DEVNULL)
        while b"\n" not in proto.data[1]:
            await asyncio.sleep(0.005)
        pid = tr.get_pid()
        tr.close()
        assert tr.is_closing()
        await proto.exited
        assert await proto.lost is None
        return pid, tr.get_returncode()

    pid, rc = run(loop, main())
    assert rc == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie


def test_subprocess_protocol_stdin_flow_control(loop):
    """Writing far more than the pipe holds to a child that reads slowly."""
    data = b"s" * (2 * 1024 * 1024)
    code = "import sys, time; time.sleep(0.1); n = len(sys.stdin.buffer.read()); print(n)"

    class Proto(SubRecorder):
        def __init__(self):
            super().__init__()
            self.pauses = 0
            self.resumes = 0

        def pause_writing(self):
            self.pauses += 1

        def resume_writing(self):
            self.resumes += 1

    async def main():
        connect = sub_exec(code, Proto, stdin=PIPE, stdout=PIPE, stderr=DEVNULL)
        async with closing_transport(connect, wait_lost=False) as (tr, proto):
            stdin = tr.get_pipe_transport(0)
            stdin.write(data)
            assert stdin.get_write_buffer_size() > 0
            assert proto.pauses == 1
            stdin.close()
            assert await proto.lost is None
        return proto

    proto = run(loop, main())
    assert bytes(proto.data[1]) == b"%d\n" % len(data)
    assert proto.resumes == 1
    assert proto.pipe_lost[0] is None
