"""`python -m rose SCRIPT [ARGS]`, `python -m rose -m MODULE [ARGS]` and
`python -m rose -c CODE [ARGS]`: run an unchanged asyncio program with rose as its event loop,
the way `python SCRIPT`, `python -m MODULE` and `python -c CODE` run it: the same `sys.argv`,
`sys.path[0]`, `__file__` and `__name__`, the same messages and exit status when the script
or module is missing, and tracebacks without this wrapper's frames."""

from __future__ import annotations

import builtins
import importlib.machinery
import os
import runpy
import signal
import sys
import types

import rose

# Whether modules get a `__cached__` attribute (3.15 stopped setting it, scripts included).
_CACHED = hasattr(rose, "__cached__")
# Whether the interpreter gives a fresh `__main__` an empty `__annotations__` (up to 3.13; 3.14's
# lazy annotations do not): this module is run in the `__main__` the interpreter made.
_MAIN_ANNOTATIONS = "__annotations__" in globals()

USAGE = (
    "usage: python -m rose [--stats] SCRIPT [ARGS...] | python -m rose [--stats] -m MODULE [ARGS...]"
    " | python -m rose [--stats] -c CODE [ARGS...]\n"
    "  --stats  print a summary of each rose loop's metrics to stderr when it closes"
)


def _program_name():
    # What `python` calls itself in its messages: its argv[0] as it was started.
    orig = getattr(sys, "orig_argv", None)
    return orig[0] if orig else os.path.basename(sys.executable)


def _fresh_main(**attrs):
    """A new `__main__` module, as the interpreter makes one for a script or `-c`."""
    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, **attrs)
    if _MAIN_ANNOTATIONS:
        main.__annotations__ = {}
    sys.modules["__main__"] = main
    return main


def _run_script(path, args):
    full = os.path.abspath(path)  # a script's __file__ is absolute, as `python SCRIPT` makes it
    if not os.path.exists(full):
        print(f"{_program_name()}: can't open file {full!r}: [Errno 2] No such file or directory",
              file=sys.stderr)  # fmt: skip
        return 2
    sys.argv = args  # sys.argv[0] as it was typed
    sys.path[0] = os.path.dirname(full)  # the script's folder comes first on sys.path
    if not os.path.isfile(full):  # a folder or a zip file with a __main__.py
        runpy.run_path(full, run_name="__main__")
        return 0
    loader = importlib.machinery.SourceFileLoader("__main__", full)
    main = _fresh_main(__file__=full, __loader__=loader, __package__=None, __spec__=None)
    if _CACHED:
        main.__cached__ = None
    exec(loader.get_code("__main__"), main.__dict__)
    return 0


def _run_module(name, args):
    # What `python -m` itself runs (runpy's private entry point, on every supported Python):
    # the same sys.argv[0] (the module's file), messages ("No module named ...", exit 1) and
    # traceback frames.
    sys.argv = ["-m", *args]
    _fresh_main()  # runpy runs the module in sys.modules["__main__"]: not in this one
    runpy._run_module_as_main(name)
    return 0


def _run_code(code, args):
    sys.argv = ["-c", *args]
    sys.path[0] = ""  # `python -c` puts the current directory first
    main = _fresh_main(__loader__=importlib.machinery.BuiltinImporter, __package__=None, __spec__=None)
    exec(compile(code, "<string>", "exec"), main.__dict__)
    return 0


_THIS_FILE = __file__


def _trim(tb):
    """The traceback without this module's frames (runpy's, for `-m`, are python's too)."""
    while tb is not None and tb.tb_frame.f_code.co_filename == _THIS_FILE:
        tb = tb.tb_next
    return tb


def main(argv):
    if argv and argv[0] == "--stats":
        argv = argv[1:]
        os.environ[rose.metrics.STATS_ENV] = "1"
        rose.metrics.set_callback_timing(True)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    if argv[0] in ("-m", "-c") and len(argv) < 2:
        print(f"Argument expected for the {argv[0]} option", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    # rose's own plumbing: no deprecation warning where asyncio deprecates policies (3.14+)
    rose._compat.set_policy(rose._EventLoopPolicy())
    try:
        if argv[0] == "-m":
            return _run_module(argv[1], argv[2:])
        if argv[0] == "-c":
            return _run_code(argv[1], argv[2:])
        return _run_script(argv[0], argv)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 -- reported as the interpreter reports it
        trimmed = _trim(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(trimmed), trimmed)
        if isinstance(exc, KeyboardInterrupt):
            # As Python does for an uncaught KeyboardInterrupt: die of SIGINT.
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
