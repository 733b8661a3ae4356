"""Retries: which failures are retried, how long between tries, and resuming a dropped download."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lorry.errors import AccessDeniedError, ObjectNotFoundError, TransientError
from lorry.storage.local import LocalStore
from lorry.transfer.retry import RetryingStore, RetryPolicy


def policy(slept: list[float], rand: float = 1.0, attempts: int = 5) -> RetryPolicy:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return RetryPolicy(attempts=attempts, base=0.1, cap=1.0, rand=lambda: rand, sleep=sleep)


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    top = policy([], rand=1.0)
    assert [top.delay(n, None) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy([], rand=0.0).delay(3, None) == 0.0
    assert top.delay(0, retry_after=3.0) == 3.0  # never sooner than the server asked
    assert top.delay(0, retry_after=3600.0) == 6.0  # but a hostile Retry-After cannot stall for an hour


def test_transient_failures_are_retried_then_succeed() -> None:
    slept: list[float] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientError("503 SlowDown", retry_after=0.5 if calls == 2 else None)
        return "ok"

    assert asyncio.run(policy(slept).run("PUT x", flaky)) == "ok"
    assert calls == 3
    assert slept == [0.1, 0.5]


@pytest.mark.parametrize("error", [AccessDeniedError("bad key"), ObjectNotFoundError("gone")])
def test_permanent_failures_fail_at_once(error: Exception) -> None:
    slept: list[float] = []
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        asyncio.run(policy(slept).run("GET x", refused))
    assert (calls, slept) == (1, [])


def test_attempts_run_out() -> None:
    slept: list[float] = []

    async def down() -> None:
        raise TransientError("connection reset")

    with pytest.raises(TransientError):
        asyncio.run(policy(slept, attempts=4).run("GET x", down))
    assert len(slept) == 3


class DroppingStore(LocalStore):
    """A local store whose streams break once, after their first chunk, as a reset connection does."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.starts: list[int] = []

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        self.starts.append(start)
        first = True
        async for chunk in super().stream(key, start, end):
            yield chunk[:1000] if first and len(self.starts) == 1 else chunk
            if first and len(self.starts) == 1:
                raise TransientError("connection reset by peer")
            first = False


def test_a_dropped_download_resumes_from_its_byte_offset(tmp_path: Path) -> None:
    inner = DroppingStore(tmp_path / "store")
    data = bytes(range(256)) * 40_000
    inner.put_sync("blob", data)
    store = RetryingStore(inner, policy([]))
    assert asyncio.run(store.get("blob")) == data
    assert inner.starts == [0, 1000]
    inner.starts.clear()
    assert asyncio.run(store.get("blob", 10, 5000)) == data[10:5000]
    assert inner.starts == [10, 1010]
