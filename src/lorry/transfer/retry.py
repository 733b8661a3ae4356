"""Retries: exponential backoff with full jitter and a cap, for failures that may pass.

Only ``TransientError`` is retried (connection resets, timeouts, 5xx, 429, ``SlowDown``); the delay is
at least what the server asked for in ``Retry-After``. Authentication, permission and not-found errors
fail at once.

A call is retried until the retry deadline (``LORRY_RETRY_DEADLINE``, 10 minutes by default) has passed
since its first failure, so a server that is down for a while costs time, not the work. The deadline
also counts from the start of an outage of the whole store: once no call has succeeded for that long,
calls fail after their first try, so that everything waiting on a server that is gone ends within the
deadline instead of each call waiting it out in turn.

Every call lorry makes is idempotent or conditional, so retrying one blindly is safe: a conditional
write whose first response was lost comes back as a conflict, which the registry's commit and
compare-and-swap loops already resolve by reading what is there. (Creating a multipart upload is the
exception; see ``RetryingMultipartStore``.)

A retry happens inside the task that made the call, so retried work keeps its place in the order:
one flaky file never sends its artifact to the back of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar, cast

from lorry.errors import ObjectNotFoundError, TransientError
from lorry.storage.base import (
    FILE_GETS,
    OVERWRITE,
    Body,
    C,
    Capability,
    FileGets,
    MultipartStore,
    ObjectMeta,
    Part,
    PartBody,
    PutMode,
    Store,
    Upload,
    is_stream,
)
from lorry.storage.wrapped import WrappedStore

T = TypeVar("T")
log = logging.getLogger("lorry")


@dataclass
class RetryStats:
    """What retrying has cost so far; shared by the stores of one engine and read by reports."""

    retries: int = 0
    """Tries that failed with a transient error and were made again."""
    waited: float = 0.0
    """Seconds spent waiting between tries."""
    gave_up: int = 0
    """Calls that still failed at the retry deadline."""
    longest: float = 0.0
    """The longest that one call kept failing before it succeeded or gave up, in seconds."""

    def copy(self) -> RetryStats:
        return RetryStats(self.retries, self.waited, self.gave_up, self.longest)

    def merge(self, other: RetryStats) -> None:
        """Add what ``other`` (another process's engine) spent."""
        self.retries += other.retries
        self.waited += other.waited
        self.gave_up += other.gave_up
        self.longest = max(self.longest, other.longest)

    def since(self, earlier: RetryStats) -> RetryStats:
        """What was spent after ``earlier`` (a copy); ``longest`` only if a longer failure came since."""
        return RetryStats(
            self.retries - earlier.retries,
            self.waited - earlier.waited,
            self.gave_up - earlier.gave_up,
            self.longest if self.longest > earlier.longest else 0.0,
        )


@dataclass
class _Outage:
    """When the calls of one store started failing with no success since (None: it answers)."""

    since: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying, and how long to wait between tries. ``rand``, ``sleep`` and ``clock``
    are injectable so tests are deterministic. ``attempts`` (default: no limit) caps the tries too."""

    deadline: float = 600.0
    attempts: int | None = None
    base: float = 0.05
    cap: float = 10.0
    rand: Callable[[], float] = field(default=random.random, compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    stats: RetryStats = field(default_factory=RetryStats, compare=False)
    _outage: _Outage = field(default_factory=_Outage, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)], but never less than Retry-After."""
        backoff: float = self.rand() * min(self.cap, self.base * 2.0**attempt)
        return max(backoff, min(retry_after, self.cap * 6)) if retry_after is not None else backoff

    async def run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        first_failure: float | None = None
        attempt = 0
        while True:
            try:
                result = await call()
            except TransientError as exc:
                first_failure = await self.failed(what, exc, attempt, first_failure)
                attempt += 1
            except Exception:  # an answer, if not the one hoped for (not found, conflict, ...)
                self.succeeded(first_failure)
                raise
            else:
                self.succeeded(first_failure)
                return result

    def succeeded(self, first_failure: float | None) -> None:
        """Record a call that got an answer (after failing since ``first_failure``, if not None)."""
        self._outage.since = None
        if first_failure is not None:
            self.stats.longest = max(self.stats.longest, self.clock() - first_failure)

    async def failed(
        self, what: str, exc: TransientError, attempt: int, first_failure: float | None
    ) -> float:
        """Wait before the next try of a call that failed ``attempt + 1`` times, the first of them at
        ``first_failure`` (None: this one); or, past the deadline or the attempts, raise. Returns when
        the call first failed."""
        now = self.clock()
        if first_failure is None:
            first_failure = now
        if self._outage.since is None:
            self._outage.since = now
        failing = now - min(first_failure, self._outage.since)
        if failing >= self.deadline or (self.attempts is not None and attempt + 1 >= self.attempts):
            self.stats.gave_up += 1
            self.stats.longest = max(self.stats.longest, now - first_failure)
            if failing < self.deadline:
                raise exc
            raise TransientError(
                f"{exc}; gave up after {attempt + 1} tries over {_seconds(failing)}: the retry deadline "
                "(LORRY_RETRY_DEADLINE) passed",
                retry_after=exc.retry_after,
            ) from exc
        pause = min(self.delay(attempt, exc.retry_after), self.deadline - failing)
        if _stalled(exc):  # a server that stopped answering or reading: worth saying, not only retrying
            log.warning("%s made no progress and was abandoned; trying again in %.1f s: %s", what, pause, exc)
        else:
            log.debug("retrying %s in %.2fs after: %s", what, pause, exc)
        self.stats.retries += 1
        self.stats.waited += pause
        await self.sleep(pause)
        return first_failure


def _stalled(exc: BaseException) -> bool:
    """Whether a failure was a request that timed out (no connection, no byte received, or sent bytes
    the server did not take), rather than an answer such as a 503."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError) or (isinstance(seen, OSError) and seen.errno == errno.ETIMEDOUT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else str(timedelta(seconds=round(value)))


class RetryingStore(WrappedStore):
    """A ``Store`` (and ``MultipartStore``) whose calls are retried by ``policy``.

    ``stream`` resumes from the last byte it yielded, so a dropped download continues where it broke.
    """

    def __init__(self, inner: Store, policy: RetryPolicy | None = None) -> None:
        super().__init__(inner)
        self.policy = policy or RetryPolicy()

    def capability(self, kind: Capability[C]) -> C | None:
        found = kind.of(self.inner)
        if kind is FILE_GETS and found is not None:
            return cast(C, _RetryingFileGets(cast(FileGets, found), self.policy))
        return found

    async def head(self, key: str) -> ObjectMeta:
        return await self.policy.run(f"HEAD {key}", lambda: self.inner.head(key))

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        # Whole, and tried again whole: what is read into memory is small (records, small blobs), and
        # a store answers it in one request (S3: through the C client) where a stream takes several.
        return await self.policy.run(f"GET {key}", lambda: self.inner.get(key, start, end))

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        offset = start
        first_failure: float | None = None
        attempt = 0
        while True:
            answered = False
            try:
                async for chunk in self.inner.stream(key, offset, end):
                    if not answered:  # bytes again: any failure before is over
                        self.policy.succeeded(first_failure)
                        first_failure, attempt, answered = None, 0, True
                    offset += len(chunk)
                    yield chunk
                if not answered:
                    self.policy.succeeded(first_failure)
                return
            except TransientError as exc:
                what = f"GET {key} (resuming at byte {offset})"
                first_failure = await self.policy.failed(what, exc, attempt, first_failure)
                attempt += 1
            except Exception:
                if not answered:
                    self.policy.succeeded(first_failure)
                raise

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        if not is_stream(data):
            return await self.policy.run(f"PUT {key}", lambda: self.inner.put(key, data, mode))
        start = data.tell()

        async def again() -> ObjectMeta:  # a stream is sent again from where it started
            data.seek(start)
            return await self.inner.put(key, data, mode)

        return await self.policy.run(f"PUT {key}", again)

    async def delete(self, key: str) -> None:
        await self.policy.run(f"DELETE {key}", lambda: self.inner.delete(key))

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        # A listing is read whole before it is yielded, so a retry never repeats or skips a key.
        found = await self.policy.run(f"LIST {prefix}", lambda: _collect(self.inner.list(prefix)))
        for meta in found:
            yield meta


@dataclass(frozen=True, slots=True)
class _RetryingFileGets:
    """``FileGets`` whose whole-object downloads are retried by ``policy`` (each try rewrites the file)."""

    inner: FileGets
    policy: RetryPolicy

    async def get_file(self, key: str, path: Path) -> int:
        return await self.policy.run(f"GET {key}", lambda: self.inner.get_file(key, path))


class RetryingMultipartStore(RetryingStore):
    """``RetryingStore`` over a ``MultipartStore``.

    Creating an upload is the one call that is not idempotent: a try whose response was lost may have
    created an upload that nobody knows of. So when a create had to be retried, the uploads of the same
    key that the server started while it was being tried are aborted once it succeeds. (Another writer
    of the same content, whose upload could be among them, starts its own again: see ``upload.py``.)
    """

    def __init__(self, inner: MultipartStore, policy: RetryPolicy | None = None) -> None:
        super().__init__(inner, policy)
        self.mp = inner

    async def create_multipart(self, key: str) -> str:
        started = self.policy.clock()
        tries = 0

        async def create() -> str:
            nonlocal tries
            tries += 1
            return await self.mp.create_multipart(key)

        upload_id = await self.policy.run(f"create upload {key}", create)
        if tries > 1:
            await self._abort_lost(key, upload_id, self.policy.clock() - started)
        return upload_id

    async def _abort_lost(self, key: str, upload_id: str, took: float) -> None:
        """Abort the uploads of ``key`` started (by the server's clock) in the ``took`` seconds before
        ``upload_id``: those that tries whose responses were lost created."""
        with contextlib.suppress(TransientError, ObjectNotFoundError):
            uploads = [u for u in await _collect(self.mp.list_multipart(key)) if u.key == key]
            ours = next((u for u in uploads if u.upload_id == upload_id), None)
            if ours is None:
                return
            window = timedelta(seconds=took + 1)  # listings give the time to the second
            for upload in uploads:
                if upload is not ours and ours.initiated - window <= upload.initiated <= ours.initiated:
                    log.debug("aborting upload %s of %s: a lost response's", upload.upload_id, key)
                    await self.mp.abort_multipart(key, upload.upload_id)

    async def put_part(self, key: str, upload_id: str, number: int, data: PartBody) -> Part:
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
