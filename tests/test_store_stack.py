"""The store stack: the request limit is a store wrapper taking a permit per call, the engine builds
backend -> limit -> retries once, and a store's capabilities (local files, versioned reads) pass
through every wrapper."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lorry.errors import TransientError
from lorry.registry.safety import SingleWriterStore
from lorry.settings import Settings
from lorry.storage.base import (
    LOCAL_FILES,
    OVERWRITE,
    VERSIONED_READS,
    Body,
    MultipartStore,
    ObjectMeta,
    PutMode,
)
from lorry.storage.gcs import GCSStore
from lorry.storage.limit import limited
from lorry.storage.local import LocalStore
from lorry.storage.s3 import S3Store
from lorry.transfer.engine import Engine
from lorry.transfer.retry import RetryingStore, RetryPolicy, with_retries
from tests.fixtures_gcs import GCSStoreFactory


class Crowded(LocalStore):
    """A local store that records how many of its calls run at once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.running = 0
        self.most = 0

    async def _busy(self) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1

    async def head(self, key: str) -> ObjectMeta:
        await self._busy()
        return await super().head(key)

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        await self._busy()
        return await super().put(key, data, mode)


def test_each_call_holds_a_permit(tmp_path: Path) -> None:
    inner = Crowded(tmp_path / "store")
    store = limited(inner, asyncio.Semaphore(3))

    async def body() -> None:
        await asyncio.gather(*(store.put(f"k/{i}", b"x") for i in range(12)))
        await asyncio.gather(*(store.head(f"k/{i}") for i in range(12)))

    asyncio.run(body())
    assert inner.most == 3


def test_a_stream_holds_its_permit_until_it_is_read(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "store")
    inner.put_sync("big", bytes(9 << 20))  # more than one chunk
    permits = asyncio.Semaphore(1)
    store = limited(inner, permits)

    async def body() -> None:
        chunks = store.stream("big")
        await anext(chunks)
        assert permits.locked()  # the stream is open: a head waits
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.head("big"), 0.2)
        async for _ in chunks:
            pass
        assert not permits.locked()
        assert (await store.head("big")).size == 9 << 20

    asyncio.run(body())


def test_the_engine_builds_the_stack_once_and_limits_every_store(tmp_path: Path) -> None:
    engine = Engine(Settings.load(max_requests=2))
    url = str(tmp_path / "store")

    async def body() -> None:
        store = engine.store(url)
        assert engine.store(url) is store
        await store.put("k", b"v")
        requests = engine.limits.requests
        await requests.acquire()
        await requests.acquire()  # every permit taken: the store's calls wait
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.head("k"), 0.2)
        requests.release()
        assert (await store.head("k")).size == 1
        requests.release()
        await engine.close()

    asyncio.run(body())


class Flaky(LocalStore):
    """A local store whose first head fails as a reset connection does."""

    failed = False

    async def head(self, key: str) -> ObjectMeta:
        if not self.failed:
            self.failed = True
            raise TransientError("connection reset")
        return await super().head(key)


def test_a_retry_waits_holding_no_permit(tmp_path: Path) -> None:
    """Retries wrap the limit: a try that failed gives its permit back while it waits."""
    permits = asyncio.Semaphore(1)
    inner = Flaky(tmp_path / "store")
    inner.put_sync("k", b"v")
    held: list[bool] = []

    async def sleep(seconds: float) -> None:
        held.append(permits.locked())

    store = with_retries(limited(inner, permits), RetryPolicy(sleep=sleep))
    assert asyncio.run(store.head("k")).size == 1
    assert held == [False]


def test_local_files_pass_through_every_wrapper(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "store")
    wrapped = SingleWriterStore(RetryingStore(limited(local, asyncio.Semaphore(1))))
    assert LOCAL_FILES.of(wrapped) is local
    assert VERSIONED_READS.of(wrapped) is None
    engine = Engine(Settings.load())
    found = LOCAL_FILES.of(engine.store(str(tmp_path / "other")))
    assert found is not None
    assert found.path_of("a/b") == tmp_path / "other" / "a" / "b"


def test_remote_stores_offer_versioned_reads_and_no_local_files() -> None:
    s3 = S3Store("s3://bucket/prefix", endpoint_url="http://127.0.0.1:9")
    gcs = GCSStore("bucket", endpoint="http://127.0.0.1:9")
    for backend in (s3, gcs):
        wrapped = with_retries(limited(backend, asyncio.Semaphore(1)))
        assert VERSIONED_READS.of(wrapped) is not None
        assert VERSIONED_READS.of(backend) is backend
        assert LOCAL_FILES.of(wrapped) is None
    # A wrapper is a MultipartStore exactly when what it wraps is one.
    assert isinstance(with_retries(limited(s3, asyncio.Semaphore(1))), MultipartStore)
    assert not isinstance(with_retries(limited(gcs, asyncio.Semaphore(1))), MultipartStore)



def test_versioned_reads_through_the_limit_hold_a_permit(gcs_store_factory: GCSStoreFactory) -> None:
    """A bucket's versioned reads (references) are requests too: through the stack each holds a permit,
    a body until its block ends."""
    backend = gcs_store_factory()
    permits = asyncio.Semaphore(1)
    reads = VERSIONED_READS.of(with_retries(limited(backend, permits)))
    assert reads is not None

    async def body() -> None:
        try:
            meta = await backend.put("k", b"bytes")
            async with reads.open_version("k", meta.etag) as opened:
                assert permits.locked()
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(reads.head_version("k"), 0.2)
                assert b"".join([chunk async for chunk in opened.chunks]) == b"bytes"
            assert not permits.locked()
            assert (await reads.head_version("k")).version_id == meta.etag
            assert [m.key async for m in reads.list_latest("")] == ["k"]
            assert not permits.locked()
        finally:
            await backend.close()

    asyncio.run(body())
