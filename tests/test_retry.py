"""Retries: which failures are retried, how long between tries, and resuming a dropped download."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lorry.errors import AccessDeniedError, ObjectNotFoundError, TransientError, ValidationError
from lorry.settings import Settings
from lorry.storage.base import OVERWRITE, Body, ObjectMeta, PutMode, is_stream
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


async def read_stream(store: RetryingStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.stream(key, start, end)])


def test_a_dropped_download_resumes_from_its_byte_offset(tmp_path: Path) -> None:
    inner = DroppingStore(tmp_path / "store")
    data = bytes(range(256)) * 40_000
    inner.put_sync("blob", data)
    store = RetryingStore(inner, policy([]))
    assert asyncio.run(read_stream(store, "blob")) == data
    assert inner.starts == [0, 1000]
    inner.starts.clear()
    assert asyncio.run(read_stream(store, "blob", 10, 5000)) == data[10:5000]
    assert inner.starts == [10, 1010]


class DroppingGets(LocalStore):
    """A local store whose first whole read fails, as a reset connection does."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets = 0

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        self.gets += 1
        if self.gets == 1:
            raise TransientError("connection reset by peer")
        return await super().get(key, start, end)


def test_a_dropped_whole_read_is_read_again_whole(tmp_path: Path) -> None:
    inner = DroppingGets(tmp_path / "store")
    inner.put_sync("record", b"a small record")
    store = RetryingStore(inner, policy([]))
    assert asyncio.run(store.get("record", 2)) == b"small record"
    assert inner.gets == 2


class ResetMidPut(LocalStore):
    """A local store whose first put reads part of its stream, then loses the connection."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.tries = 0

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        self.tries += 1
        if self.tries == 1:
            assert is_stream(data)
            data.read(1000)
            raise TransientError("connection reset by peer")
        return await super().put(key, data, mode)


def test_a_retried_put_of_a_stream_sends_it_again_from_where_it_started(tmp_path: Path) -> None:
    inner = ResetMidPut(tmp_path / "store")
    data = bytes(range(256)) * 40
    stream = io.BytesIO(b"header" + data)
    stream.seek(6)
    meta = asyncio.run(RetryingStore(inner, policy([])).put("blob", stream))
    assert inner.tries == 2
    assert meta.size == len(data)
    assert inner.path_of("blob").read_bytes() == data


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def timed_policy(clock: FakeClock, deadline: float = 30.0) -> RetryPolicy:
    return RetryPolicy(deadline=deadline, base=0.5, cap=4.0, rand=lambda: 1.0, sleep=clock.sleep, clock=clock)


def test_a_call_is_retried_until_the_deadline_then_fails_naming_it() -> None:
    clock = FakeClock()
    retry = timed_policy(clock)
    tries = 0

    async def down() -> None:
        nonlocal tries
        tries += 1
        raise TransientError("connection refused")

    with pytest.raises(TransientError, match=r"retry deadline \(LORRY_RETRY_DEADLINE\)") as failed:
        asyncio.run(retry.run("PUT x", down))
    assert clock.now == 30.0  # the last wait is cut short to end exactly at the deadline
    assert tries == 11  # waits of 0.5, 1, 2, then 4 s each: 0.5 + 1 + 2 + 4 * 6 = 27.5, then 2.5
    assert "connection refused" in str(failed.value)
    assert (retry.stats.retries, retry.stats.gave_up, retry.stats.longest) == (10, 1, 30.0)


def test_a_server_back_before_the_deadline_costs_only_time() -> None:
    clock = FakeClock()
    retry = timed_policy(clock)

    async def back_at_20_s() -> str:
        if clock.now < 20:
            raise TransientError("503 SlowDown")
        return "stored"

    assert asyncio.run(retry.run("PUT x", back_at_20_s)) == "stored"
    assert retry.stats.gave_up == 0
    assert retry.stats.longest == clock.now >= 20


def test_once_the_store_is_gone_past_the_deadline_later_calls_fail_at_their_first_try() -> None:
    clock = FakeClock()
    retry = timed_policy(clock)

    async def down() -> None:
        raise TransientError("connection refused")

    async def scenario() -> list[float]:
        with pytest.raises(TransientError):
            await retry.run("PUT blob", down)
        ends = [clock.now]
        with pytest.raises(TransientError, match="retry deadline"):
            await retry.run("PUT run record", down)  # no second wait of 30 s
        ends.append(clock.now)
        return ends

    assert asyncio.run(scenario()) == [30.0, 30.0]


def test_any_answer_ends_an_outage() -> None:
    clock = FakeClock()
    retry = timed_policy(clock)

    async def call() -> None:
        if 10 <= clock.now < 100:  # the server is there between 10 s and 100 s
            raise ObjectNotFoundError("no such key")  # an answer, if not a happy one
        raise TransientError("connection refused")

    async def scenario() -> None:
        with pytest.raises(ObjectNotFoundError):
            await retry.run("HEAD x", call)
        assert clock.now == 11.5  # 0.5 + 1 + 2 + 4 + 4
        clock.now = 200.0  # gone again: a new outage, counted from its own start
        with pytest.raises(TransientError, match="retry deadline"):
            await retry.run("HEAD y", call)

    asyncio.run(scenario())
    assert clock.now == 230.0


def test_a_download_that_stops_bringing_bytes_fails_at_the_deadline(tmp_path: Path) -> None:
    clock = FakeClock()

    class Stuck(LocalStore):  # a first byte, then only resets
        async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
            if start == 0:
                yield b"x"
            raise TransientError("connection reset by peer")

    inner = Stuck(tmp_path / "store")
    inner.put_sync("blob", b"xyz")
    store = RetryingStore(inner, timed_policy(clock, deadline=5))
    with pytest.raises(TransientError, match="retry deadline"):
        asyncio.run(read_stream(store, "blob"))
    assert clock.now == 5.0 and store.policy.stats.gave_up == 1


def test_the_deadline_and_the_request_timeout_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORRY_RETRY_DEADLINE", "90")
    monkeypatch.setenv("LORRY_REQUEST_TIMEOUT", "2.5")
    options = Settings.load().store_options
    assert (options.retry_deadline, options.request_timeout) == (90.0, 2.5)
    assert options.for_references().retry_deadline == 90.0
    monkeypatch.setenv("LORRY_RETRY_DEADLINE", "0")
    with pytest.raises(ValidationError, match="retry_deadline must be a positive number of seconds"):
        Settings.load()
    monkeypatch.setenv("LORRY_RETRY_DEADLINE", "ten minutes")
    with pytest.raises(ValidationError, match=r"\$LORRY_RETRY_DEADLINE must be a number of seconds"):
        Settings.load()
