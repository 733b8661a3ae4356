"""What transfers share while they run: the stores they open, the limits, the thread pool.

An ``Engine`` belongs to one session (``lorry.session``), which makes it, closes it, and hands it to
every transfer function with the store to work on. Its limits are bound to the loop they are first used
on: the session's loop, the bridge's (``lorry._bridge``).
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lorry.settings import Settings
from lorry.storage import open_store
from lorry.storage.base import Store
from lorry.storage.limit import limited
from lorry.storage.options import StoreOptions
from lorry.transfer.retry import RetryPolicy, RetryStats, with_retries

T = TypeVar("T")


KEPT_BUFFERS = 64 << 20
"""The bytes of buffers a ``ByteBudget`` keeps between two ``lend`` calls."""
BUFFER_STEP = 1 << 20
"""Buffers are made in whole MiB, so that one serves files of nearby sizes."""


class ByteBudget:
    """A semaphore counted in bytes: bounds the file content held in memory by all transfers.

    It also lends buffers, and keeps those given back (up to ``KEPT_BUFFERS`` bytes) for the next
    loan: a fresh buffer of a few MiB has each of its pages zeroed by the kernel when first written
    (reading 1 GiB of 4 MiB files into kept buffers took a third of an upload's page faults away)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._available = capacity
        self._changed = asyncio.Condition()
        self._kept: list[bytearray] = []

    @asynccontextmanager
    async def lend(self, size: int, also: int = 0) -> AsyncIterator[memoryview]:
        """``hold(size + also)``, with a buffer of ``size`` bytes to use meanwhile (it is reused
        after). ``also`` counts memory held elsewhere for the same work, taken in the same wait: a
        second wait while holding the first could wait forever."""
        async with self.hold(size + also):
            fitting = [b for b in self._kept if len(b) >= size]
            if fitting:
                buffer = min(fitting, key=len)
                self._kept.remove(buffer)
            else:
                buffer = bytearray(-(-size // BUFFER_STEP) * BUFFER_STEP)
            try:
                yield memoryview(buffer)[:size]
            finally:
                self._kept.append(buffer)
                while sum(len(b) for b in self._kept) > KEPT_BUFFERS:
                    self._kept.remove(min(self._kept, key=len))

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.capacity)  # one request larger than the budget still runs, alone
        async with self._changed:
            await self._changed.wait_for(lambda: self._available >= size)
            self._available -= size
        try:
            yield
        finally:
            async with self._changed:
                self._available += size
                self._changed.notify_all()


@dataclass
class Counters:
    """Progress of one transfer, read by progress bars a few times a second; never a callback."""

    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0


@dataclass
class Limits:
    """The shared bounds on requests in flight, bytes in memory and open files."""

    requests: asyncio.Semaphore
    memory: ByteBudget
    files: asyncio.Semaphore

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            requests=asyncio.Semaphore(settings.max_requests),
            memory=ByteBudget(settings.max_memory),
            files=asyncio.Semaphore(settings.max_open_files),
        )


@dataclass
class Engine:
    """The transfer side of a session: stores by URL, the shared limits, the pool for file work."""

    settings: Settings
    _stores: dict[tuple[str, StoreOptions], Store] = field(default_factory=dict)
    _policies: dict[tuple[str, StoreOptions], RetryPolicy] = field(default_factory=dict)
    limits: Limits = field(init=False)
    _pool: ThreadPoolExecutor = field(init=False)
    retries: RetryStats = field(default_factory=RetryStats)
    """What retrying has cost the stores of this engine so far (read by ``Run.finish``)."""

    def __post_init__(self) -> None:
        self.limits = Limits.from_settings(self.settings)
        self._pool = _new_pool()

    def with_settings(self, settings: Settings) -> Engine:
        """This engine (its stores, limits, pool and account of retries) with ``settings`` read at the
        start of one call: the options references are fetched with follow the environment of that call."""
        view = copy.copy(self)
        view.settings = settings
        return view

    def store(self, url: str, options: StoreOptions | None = None) -> Store:
        """The store at ``url``, opened with ``options`` (default: those of the engine's settings), built
        once: the backend, then the request limit (a permit per call, shared by every store of the
        engine), then retries (so a try waiting to be retried holds no permit)."""
        key = (url, self.settings.store_options if options is None else options)
        if key not in self._stores:
            backend = limited(open_store(url, key[1]), self.limits.requests)
            self._stores[key] = with_retries(backend, self.retry_policy(url, key[1]))
        return self._stores[key]

    def retry_policy(self, url: str, options: StoreOptions | None = None) -> RetryPolicy:
        """The retry policy of the store ``store(url, options)``, for calls outside the Store contract
        (references) to share: one deadline, one outage, one account of the cost."""
        key = (url, self.settings.store_options if options is None else options)
        if key not in self._policies:
            self._policies[key] = RetryPolicy(deadline=key[1].retry_deadline, stats=self.retries)
        return self._policies[key]

    async def in_thread(self, func: Callable[..., T], *args: object) -> T:
        """Run blocking file work (reads, copies, hashing: all release the GIL) on the engine's pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    async def close(self) -> None:
        for store in self._stores.values():
            await store.close()
        self._stores.clear()
        self._policies.clear()
        self._pool.shutdown(wait=False)
        self._pool = _new_pool()  # its threads start only when used


def _new_pool() -> ThreadPoolExecutor:
    # Enough threads to keep the disk and the hash busy on both cores while others wait on I/O.
    return ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 2) * 4), thread_name_prefix="lorry-io")


async def gather_all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run coroutines together; the first failure cancels the others and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(coro)
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        first.__suppress_context__ = True
        raise first from first.__cause__
