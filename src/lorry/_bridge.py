"""The one bridge from synchronous calls to the async engine.

One event loop runs in one daemon thread per process (uvloop when installed). A blocking call submits a
coroutine to it and waits; so the sync API works from plain scripts, from any thread, and from inside
another running event loop (a notebook), since the engine never runs on the caller's loop. After
``fork`` the child has no loop thread: the first call in the child starts a fresh one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from lorry.errors import UsageError

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Bridge:
    """An event loop in a daemon thread, and the calls that hand it work."""

    def __init__(self) -> None:
        self.loop = _new_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="lorry-engine", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the engine's loop; the returned future completes with its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the engine's loop and block until it finishes."""
        if self.in_loop_thread():
            coro.close()
            raise UsageError("a blocking lorry call was made from inside the engine; use the _async twin")
        return self.submit(coro).result()


_lock = threading.Lock()
_bridge: Bridge | None = None


def bridge() -> Bridge:
    """The process's bridge, started on first use (and again in a forked child)."""
    global _bridge  # noqa: PLW0603 - one bridge per process is the point
    with _lock:
        if _bridge is None:
            _bridge = Bridge()
        return _bridge


def started() -> bool:
    """Whether this process has started its engine loop."""
    return _bridge is not None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    return bridge().run(coro)


def _forget_after_fork() -> None:
    # The loop thread did not survive the fork; its loop object may hold locks taken mid-call.
    global _bridge, _lock  # noqa: PLW0603
    _bridge = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
