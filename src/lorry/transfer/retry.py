"""Retries: exponential backoff with full jitter and a cap, for failures that may pass.

Only ``TransientError`` is retried (connection resets, timeouts, 5xx, 429, ``SlowDown``); the delay is
at least what the server asked for in ``Retry-After``. Authentication, permission and not-found errors
fail at once. Every call lorry makes is idempotent or conditional, so retrying one blindly is safe: a
conditional write whose first response was lost comes back as a conflict, which the registry's commit
and compare-and-swap loops already resolve by reading what is there.

A retry happens inside the task that made the call, so retried work keeps its place in the order:
one flaky file never sends its artifact to the back of the queue.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from lorry.errors import TransientError
from lorry.storage.base import OVERWRITE, MultipartStore, ObjectMeta, Part, PutMode, Store, Upload

T = TypeVar("T")
log = logging.getLogger("lorry")


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries, and how long to wait between them. ``rand`` and ``sleep`` are injectable so
    tests are deterministic."""

    attempts: int = 10
    base: float = 0.05
    cap: float = 10.0
    rand: Callable[[], float] = field(default=random.random, compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)], but never less than Retry-After."""
        backoff: float = self.rand() * min(self.cap, self.base * 2.0**attempt)
        return max(backoff, min(retry_after, self.cap * 6)) if retry_after is not None else backoff

    async def run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self.attempts):
            try:
                return await call()
            except TransientError as exc:
                if attempt + 1 == self.attempts:
                    raise
                pause = self.delay(attempt, exc.retry_after)
                log.debug("retrying %s in %.2fs after: %s", what, pause, exc)
                await self.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover


class RetryingStore:
    """A ``Store`` (and ``MultipartStore``) whose calls are retried by ``policy``.

    ``stream`` resumes from the last byte it yielded, so a dropped download continues where it broke.
    """

    def __init__(self, inner: Store, policy: RetryPolicy | None = None) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()

    def __repr__(self) -> str:
        return f"RetryingStore({self.inner!r})"

    @property
    def url(self) -> str:
        return self.inner.url

    async def head(self, key: str) -> ObjectMeta:
        return await self.policy.run(f"HEAD {key}", lambda: self.inner.head(key))

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return b"".join([chunk async for chunk in self.stream(key, start, end)])

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        offset = start
        for attempt in range(self.policy.attempts):
            try:
                async for chunk in self.inner.stream(key, offset, end):
                    offset += len(chunk)
                    yield chunk
                return
            except TransientError as exc:
                if attempt + 1 == self.policy.attempts:
                    raise
                pause = self.policy.delay(attempt, exc.retry_after)
                log.debug("resuming GET %s at byte %d in %.2fs after: %s", key, offset, pause, exc)
                await self.policy.sleep(pause)

    async def put(self, key: str, data: bytes, mode: PutMode = OVERWRITE) -> ObjectMeta:
        return await self.policy.run(f"PUT {key}", lambda: self.inner.put(key, data, mode))

    async def delete(self, key: str) -> None:
        await self.policy.run(f"DELETE {key}", lambda: self.inner.delete(key))

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        # A listing is read whole before it is yielded, so a retry never repeats or skips a key.
        found = await self.policy.run(f"LIST {prefix}", lambda: _collect(self.inner.list(prefix)))
        for meta in found:
            yield meta

    async def close(self) -> None:
        await self.inner.close()


class RetryingMultipartStore(RetryingStore):
    """``RetryingStore`` over a ``MultipartStore``.

    Creating an upload is the one call that is not idempotent: a retry after a lost response leaves
    an unused upload behind, which ``abort`` of stale uploads (``lorry gc``) removes.
    """

    def __init__(self, inner: MultipartStore, policy: RetryPolicy | None = None) -> None:
        super().__init__(inner, policy)
        self.mp = inner

    async def create_multipart(self, key: str) -> str:
        return await self.policy.run(f"create upload {key}", lambda: self.mp.create_multipart(key))

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray) -> Part:
        return await self.policy.run(
            f"PUT part {number} of {key}", lambda: self.mp.put_part(key, upload_id, number, data)
        )

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[Part], mode: PutMode = OVERWRITE
    ) -> ObjectMeta:
        return await self.policy.run(
            f"complete {key}", lambda: self.mp.complete_multipart(key, upload_id, parts, mode)
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self.policy.run(f"abort {key}", lambda: self.mp.abort_multipart(key, upload_id))

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        return await self.policy.run(f"list parts {key}", lambda: self.mp.list_parts(key, upload_id))

    async def list_multipart(self, prefix: str) -> AsyncIterator[Upload]:
        found = await self.policy.run(
            f"list uploads {prefix}", lambda: _collect(self.mp.list_multipart(prefix))
        )
        for upload in found:
            yield upload


def with_retries(store: Store, policy: RetryPolicy | None = None) -> Store:
    """``store`` with its calls retried; multipart stays available when ``store`` has it."""
    if isinstance(store, MultipartStore):
        return RetryingMultipartStore(store, policy)
    return RetryingStore(store, policy)


async def _collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]
