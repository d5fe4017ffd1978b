"""Point CPython's test_asyncio at one event loop implementation.

Two doors lead a test to the loop under test:

1. The event-loop policy.  A subclass of the stock Unix policy whose only
   change is the loop factory is installed as the current policy *and* as
   ``asyncio.DefaultEventLoopPolicy``, because test modules reset the policy
   in ``tearDownModule`` with ``asyncio.set_event_loop_policy(None)`` and
   asyncio then instantiates ``DefaultEventLoopPolicy`` again.  Everything
   that calls ``asyncio.new_event_loop()``, ``asyncio.run()``,
   ``asyncio.Runner()`` or ``IsolatedAsyncioTestCase`` comes through here.
   The child-watcher methods of the stock policy are kept: the suite's
   utilities (``test_utils.TestCase.close_loop``, the subprocess tests) use
   them.

2. The suite's own factory hooks (see ``HOOKS``): the classes that build
   their loop themselves (``asyncio.SelectorEventLoop(EpollSelector())`` and
   friends) get their ``create_event_loop()`` / ``new_loop()`` replaced.
   Classes that only multiply the same mixin by selector or child watcher
   are dropped, so each mixin runs once against the loop under test.

Every loop built through either door goes through ``LoopRecorder.new_loop``,
which counts it; the worker uses the count to classify each test as
*generic* (it ran on the loop under test) or *internal* (it only touched
asyncio's own classes, mocks, or the virtual-time ``TestLoop``).
"""

from __future__ import annotations

import asyncio
import asyncio.unix_events
import glob
import os
import platform
import sys
import warnings
from dataclasses import dataclass, field

LOOPS = ("rose", "asyncio", "uvloop")

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class ModuleHooks:
    """How one test module is rerouted to the loop under test."""

    # (class name, method name): the method is replaced by the loop factory.
    factories: tuple[tuple[str, str], ...] = ()
    # Sibling classes that run the same mixin on another selector / watcher.
    # They may be absent on this platform (kqueue), so missing ones are fine.
    drop: tuple[str, ...] = ()
    # The module's tests name `asyncio.EventLoop` as the loop to test (3.13+).
    default_loop_class: bool = False
    # Why, for the README and the reports.
    note: str = ""


_BY_SELECTOR = ("PollEventLoopTests", "SelectEventLoopTests", "KqueueEventLoopTests")

HOOKS: dict[str, ModuleHooks] = {
    "test_events": ModuleHooks(
        factories=(("EPollEventLoopTests", "create_event_loop"),),
        drop=_BY_SELECTOR,
        note="EventLoopTestsMixin + SubprocessTestsMixin, once (as EPollEventLoopTests)",
    ),
    "test_sendfile": ModuleHooks(
        factories=(("EPollEventLoopTests", "create_event_loop"),),
        drop=_BY_SELECTOR,
        note="SendfileTestsBase, once (as EPollEventLoopTests)",
    ),
    "test_sock_lowlevel": ModuleHooks(
        factories=(("EPollEventLoopTests", "create_event_loop"),),
        drop=_BY_SELECTOR,
        note="BaseSockTestsMixin, once (as EPollEventLoopTests)",
    ),
    "test_server": ModuleHooks(
        factories=(("SelectorStartServerTests", "new_loop"),),
        note="functional start-server tests",
    ),
    "test_sslproto": ModuleHooks(
        factories=(("SelectorStartTLSTests", "new_loop"),),
        note="functional start-TLS tests",
    ),
    "test_buffered_proto": ModuleHooks(
        factories=(("BufferedProtocolSelectorTests", "new_loop"),),
        note="functional buffered-protocol tests",
    ),
    "test_taskgroups": ModuleHooks(
        default_loop_class=True,
        note="IsolatedAsyncioTestCase with loop_factory = asyncio.EventLoop (3.13+)",
    ),
    "test_tasks": ModuleHooks(
        default_loop_class=True,
        note="eager-start tests run on asyncio.run(loop_factory=asyncio.EventLoop) (3.13+)",
    ),
    "test_eager_task_factory": ModuleHooks(
        default_loop_class=True,
        note="eager-start tests run on asyncio.run(loop_factory=asyncio.EventLoop) (3.13+)",
    ),
    # SubprocessWatcherMixin builds its loop with policy.new_event_loop(), so
    # the policy door already reaches it; the per-watcher classes only differ
    # in which stock child watcher they attach.  Keep the 3.11 default one.
    "test_subprocess": ModuleHooks(
        drop=(
            "SubprocessSafeWatcherTests",
            "SubprocessFastWatcherTests",
            "SubprocessPidfdWatcherTests",
            "SubprocessMultiLoopWatcherTests",
        ),
        note="SubprocessMixin, once (as SubprocessThreadedWatcherTests, via the policy)",
    ),
}


class HarnessError(Exception):
    """The harness no longer matches the test suite (or the loop is missing)."""


def _import_rose():
    # Prefer the work tree's in-place build (maturin develop) over whatever
    # may be installed, so the suite always tests the code next to it.
    if glob.glob(os.path.join(PROJECT_ROOT, "rose", "_rose*.so")):
        sys.path.insert(0, PROJECT_ROOT)
    import rose

    return rose.new_event_loop, f"rose {getattr(rose, '__version__', '?')} ({rose.__file__})"


def load_loop(name: str):
    """Return ``(factory, description)`` for the loop called *name*."""
    if name == "rose":
        return _import_rose()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"
    if name == "asyncio":
        return asyncio.SelectorEventLoop, f"asyncio (CPython {platform.python_version()})"
    raise HarnessError(f"unknown loop {name!r}; choose from {', '.join(LOOPS)}")


@dataclass
class LoopRecorder:
    """Wraps the loop factory and counts the loops it has built."""

    factory: object
    created: int = 0
    # Called (with no arguments) each time a loop is requested.
    listener: object = None

    def new_loop(self):
        # Count before building, so a factory that raises still marks the
        # test as one that exercised the loop under test.
        self.created += 1
        if self.listener is not None:
            self.listener()
        return self.factory()


def install_policy(name: str, recorder: LoopRecorder) -> type:
    """Make the loop under test the one every asyncio entry point builds."""
    base = asyncio.unix_events._UnixDefaultEventLoopPolicy
    policy_cls = type(
        f"{name.capitalize()}HarnessPolicy",
        (base,),
        {
            "_loop_factory": staticmethod(recorder.new_loop),
            "__module__": __name__,
            "__doc__": f"The stock Unix policy with {name}'s loop factory.",
        },
    )
    # set_event_loop_policy(None) + get_event_loop_policy() instantiate the default policy
    # again: up to 3.13 ``asyncio.DefaultEventLoopPolicy`` (looked up on the package), since
    # 3.14 ``asyncio.unix_events._DefaultEventLoopPolicy`` (the public name is then served,
    # with a deprecation warning, by the package's __getattr__: left alone).
    if hasattr(asyncio.unix_events, "_DefaultEventLoopPolicy"):
        asyncio.unix_events._DefaultEventLoopPolicy = policy_cls
    else:
        asyncio.DefaultEventLoopPolicy = policy_cls
        asyncio.unix_events.DefaultEventLoopPolicy = policy_cls
    set_policy = getattr(asyncio.events, "_set_event_loop_policy", asyncio.set_event_loop_policy)
    set_policy(policy_cls())  # (3.14+ deprecates the public function)
    return policy_cls


def prepare_module(name: str, recorder: LoopRecorder) -> None:
    """What must change before test module *name* is imported: where its hooks say so, the
    name `asyncio.EventLoop` (3.13+, the platform's default loop class) becomes the recorder's
    factory, because its tests take it as *the* loop (`asyncio.run(...,
    loop_factory=asyncio.EventLoop)`, `IsolatedAsyncioTestCase.loop_factory`), and class
    bodies read it at import. A bound method, so that as a class attribute it is not bound
    again."""
    hooks = HOOKS.get(name, ModuleHooks())
    if hooks.default_loop_class and hasattr(asyncio, "EventLoop"):
        asyncio.EventLoop = recorder.new_loop
        asyncio.unix_events.EventLoop = recorder.new_loop


def patch_suite_utilities():
    """Make the suite's own helpers work on a loop that is no BaseEventLoop.

    ``test_utils.TestCase.close_loop`` -- the cleanup of every test that
    calls ``self.set_event_loop(loop)`` -- reads ``loop._default_executor``,
    a private attribute of ``asyncio.BaseEventLoop``.  On any other loop it
    raises AttributeError after the test body has run, failing the test for
    a reason that has nothing to do with what it tests.  For such loops the
    replacement does the same thing through the public API.
    """
    from test import support
    from test.test_asyncio import utils as test_utils

    stock_close_loop = test_utils.TestCase.close_loop

    def close_loop(loop):
        if hasattr(loop, "_default_executor"):
            return stock_close_loop(loop)
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        # The rest is the stock helper's: do not leave watcher threads behind.
        policy = support.maybe_get_event_loop_policy()
        get_child_watcher = getattr(policy, "get_child_watcher", None)  # gone in 3.14
        if get_child_watcher is None:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                watcher = get_child_watcher()
        except NotImplementedError:
            return
        if isinstance(watcher, asyncio.ThreadedChildWatcher):
            for thread in list(watcher._threads.values()):
                thread.join(timeout=support.SHORT_TIMEOUT)
                if thread.is_alive():
                    raise RuntimeError(f"thread {thread} still alive: subprocess still running")

    test_utils.TestCase.close_loop = staticmethod(close_loop)


@dataclass
class AppliedHooks:
    hooked: set = field(default_factory=set)  # classes whose factory we replaced
    dropped: set = field(default_factory=set)  # classes we do not run


def apply_hooks(module, recorder: LoopRecorder) -> AppliedHooks:
    """Patch the factory hooks of *module* (a test_asyncio module object)."""
    short = module.__name__.rpartition(".")[2]
    hooks = HOOKS.get(short, ModuleHooks())
    applied = AppliedHooks()

    def build_loop(self):
        return recorder.new_loop()

    for cls_name, method in hooks.factories:
        cls = getattr(module, cls_name, None)
        if cls is None or not callable(getattr(cls, method, None)):
            raise HarnessError(
                f"{module.__name__}.{cls_name}.{method} not found: "
                "the harness does not match this version of test_asyncio"
            )
        setattr(cls, method, build_loop)
        applied.hooked.add(cls)
    for cls_name in hooks.drop:
        cls = getattr(module, cls_name, None)
        if cls is not None:
            applied.dropped.add(cls)
    return applied
