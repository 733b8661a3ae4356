"""One conformance suite for every Store backend.

A backend's test module subclasses ``StoreConformance`` and supplies a function-scoped ``store``
fixture: a store whose key space is empty when the test starts, cleaned up by the fixture afterwards.
There is no async pytest plugin: each test is an ``async def`` wrapped by ``store_test``, which runs
it with ``asyncio.run`` and closes the store on the same loop (so a store must accept being used again
on a new loop after ``close()``; the fixture's cleanup relies on that too).

A test that a given server cannot pass is named, with the reason, in the subclass's
``KNOWN_FAILURES``; it then runs as a strict xfail, so a server that starts passing it is noticed::

    class TestCephStore(StoreConformance):
        KNOWN_FAILURES: ClassVar[Mapping[str, str]] = {
            "test_complete_create_on_existing_key": "RGW ignores preconditions on CompleteMultipartUpload",
        }

A backend with S3-style multipart uploads subclasses ``MultipartConformance`` instead, which adds
the multipart tests (its store must be a ``MultipartStore``). Parts other than the last are
``PART_SIZE`` bytes (S3's minimum is 5 MiB); a subclass may lower it if its server allows.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import tempfile
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from lorry.errors import ConflictError, ObjectNotFoundError, SourceChangedError, ValidationError
from lorry.storage.base import CREATE, OVERWRITE, FileSpan, MultipartStore, ObjectMeta, Store, Update

T = TypeVar("T")
MiB = 1 << 20
STREAM_SIZE = 9 * MiB + 17

Body = Callable[..., Coroutine[Any, Any, None]]


def run(store: Store, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop, then close ``store`` on that same loop."""

    async def main() -> T:
        try:
            return await coro
        finally:
            await store.close()

    return asyncio.run(main())


def store_test(fn: Body) -> Callable[..., None]:
    """Turn ``async def test_x(self, store, ...)`` into a plain test that pytest can call."""

    @functools.wraps(fn)
    def wrapper(self: StoreConformance, store: Store, *args: Any, **kwargs: Any) -> None:
        run(store, fn(self, store, *args, **kwargs))

    return wrapper


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ at every offset and between seeds (no two parts alike)."""
    block = bytes((i * 7 + seed * 13) % 251 for i in range(251 * 4))
    return (block * (size // len(block) + 1))[:size]


async def collect(store: Store, key: str, start: int = 0, end: int | None = None) -> list[bytes]:
    return [chunk async for chunk in store.stream(key, start, end)]


async def listing(store: Store, prefix: str) -> list[ObjectMeta]:
    return [meta async for meta in store.list(prefix)]


class StoreConformance:
    """The behaviour every ``Store`` promises. Subclasses provide the ``store`` fixture."""

    KNOWN_FAILURES: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _known_failures(self, request: pytest.FixtureRequest) -> None:
        reason = self.KNOWN_FAILURES.get(request.node.originalname)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))

    # -- put / head / get ---------------------------------------------------------------------------

    @store_test
    async def test_put_head_get_round_trip(self, store: Store) -> None:
        data = payload(1000)
        put = await store.put("a/b/c.bin", data)
        assert put == ObjectMeta(key="a/b/c.bin", size=1000, etag=put.etag)
        assert put.etag
        assert await store.head("a/b/c.bin") == put
        assert await store.get("a/b/c.bin") == data

    @store_test
    async def test_overwrite_replaces_and_changes_etag(self, store: Store) -> None:
        first = await store.put("k", b"one")
        second = await store.put("k", b"two, longer", OVERWRITE)
        assert second.etag != first.etag
        assert second.size == len(b"two, longer")
        assert await store.get("k") == b"two, longer"
        assert await store.head("k") == second

    @store_test
    async def test_ranged_get(self, store: Store) -> None:
        data = payload(10_000)
        await store.put("r", data)
        assert await store.get("r", 0, 10) == data[:10]
        assert await store.get("r", 1234) == data[1234:]
        assert await store.get("r", 100, 5000) == data[100:5000]
        assert await store.get("r", 9_999, 10_000) == data[9_999:]
        assert await store.get("r", 9_000, 20_000) == data[9_000:]  # end past the size: truncated
        assert await store.get("r", 10_000) == b""  # start at the size
        assert await store.get("r", 50_000) == b""  # start past the size
        assert await store.get("r", 500, 500) == b""  # empty range

    @store_test
    async def test_stream_multi_chunk(self, store: Store) -> None:
        data = payload(9 * MiB + 123)
        await store.put("big/stream", data)
        chunks = await collect(store, "big/stream")
        assert len(chunks) > 1, "a 9 MiB object should arrive in more than one chunk"
        assert all(chunks)
        assert b"".join(chunks) == data
        assert (
            b"".join(await collect(store, "big/stream", 3 * MiB + 7, 8 * MiB + 11))
            == (data[3 * MiB + 7 : 8 * MiB + 11])
        )
        assert b"".join(await collect(store, "big/stream", 9 * MiB)) == data[9 * MiB :]
        assert b"".join(await collect(store, "big/stream", 10 * MiB)) == b""

    @store_test
    async def test_missing_key(self, store: Store) -> None:
        with pytest.raises(ObjectNotFoundError):
            await store.head("no/such/key")
        with pytest.raises(ObjectNotFoundError):
            await store.get("no/such/key")
        with pytest.raises(ObjectNotFoundError):
            await store.get("no/such/key", 10, 20)
        with pytest.raises(ObjectNotFoundError):
            await collect(store, "no/such/key")
        # A key whose "directory" exists is still missing.
        await store.put("no/such/other", b"x")
        with pytest.raises(ObjectNotFoundError):
            await store.head("no/such")
        with pytest.raises(LookupError):  # ObjectNotFoundError is a LookupError
            await store.get("no/such")

    @store_test
    async def test_empty_object(self, store: Store) -> None:
        meta = await store.put("empty", b"")
        assert meta.size == 0
        assert await store.head("empty") == meta
        assert await store.get("empty") == b""
        assert await store.get("empty", 0, 10) == b""
        assert b"".join(await collect(store, "empty")) == b""
        assert [m.size for m in await listing(store, "empty")] == [0]

    @store_test
    async def test_large_object(self, store: Store) -> None:
        data = payload(20 * MiB + 1, seed=3)
        meta = await store.put("large/20mib", data)
        assert meta.size == len(data)
        assert (await store.head("large/20mib")).size == len(data)
        got = await store.get("large/20mib")
        assert len(got) == len(data)
        assert got == data

    # -- put of a file or a stream: read a chunk at a time ---------------------------------------------

    @store_test
    async def test_put_stream_from_its_position(self, store: Store) -> None:
        data = payload(STREAM_SIZE, seed=5)  # more than one chunk of every backend's reads
        stream = io.BytesIO(b"not this" + data)
        stream.seek(len(b"not this"))
        meta = await store.put("streamed/a", stream)
        assert meta == ObjectMeta(key="streamed/a", size=len(data), etag=meta.etag)
        assert await store.head("streamed/a") == meta
        got = await store.get("streamed/a")
        assert len(got) == len(data)
        assert got == data

    @store_test
    async def test_put_file(self, store: Store, tmp_path: Path) -> None:
        for name, data in [("small", payload(1000, seed=6)), ("empty", b"")]:
            (tmp_path / name).write_bytes(data)
            with io.FileIO(tmp_path / name) as handle:
                meta = await store.put(f"files/{name}", handle)
            assert meta.size == len(data)
            assert await store.get(f"files/{name}") == data
            assert await store.head(f"files/{name}") == meta

    @store_test
    async def test_put_stream_create(self, store: Store) -> None:
        first, second = payload(STREAM_SIZE, seed=7), payload(STREAM_SIZE, seed=8)
        meta = await store.put("streamed/once", io.BytesIO(first), CREATE)
        with pytest.raises(ConflictError):
            await store.put("streamed/once", io.BytesIO(second), CREATE)
        assert await store.head("streamed/once") == meta
        assert await store.get("streamed/once", 0, 100) == first[:100]

    @store_test
    async def test_put_stream_that_cannot_seek_is_refused(self, store: Store) -> None:
        read, write = os.pipe()
        os.write(write, b"piped")
        os.close(write)
        with io.FileIO(read) as pipe, pytest.raises(ValidationError):
            await store.put("streamed/pipe", pipe)
        with pytest.raises(ObjectNotFoundError):
            await store.head("streamed/pipe")

    @store_test
    async def test_special_keys(self, store: Store) -> None:
        keys = [
            "with space/file name.txt",
            "unicode/ünïcødé-日本語-🚀.bin",
            "eq/a=b+c&d.txt",
            "pct/100%25 sure?.txt",
            "misc/~tilde,comma;semi:colon@at!bang'quote(paren)*",
        ]
        for i, key in enumerate(keys):
            meta = await store.put(key, key.encode() * (i + 1))
            assert meta.key == key
        for i, key in enumerate(keys):
            assert await store.get(key) == key.encode() * (i + 1)
            assert (await store.head(key)).size == len(key.encode()) * (i + 1)
        listed = await listing(store, "")
        assert [m.key for m in listed] == sorted(keys)
        assert [m.key for m in await listing(store, "eq/a=b+")] == ["eq/a=b+c&d.txt"]

    @store_test
    async def test_invalid_keys_are_refused(self, store: Store) -> None:
        for key in ["", "/abs", "a//b", "../up", "a/../b", "a/./b", "trailing/"]:
            with pytest.raises(ValidationError):
                await store.put(key, b"x")
            with pytest.raises(ValidationError):
                await store.head(key)

    # -- conditional writes -------------------------------------------------------------------------

    @store_test
    async def test_create(self, store: Store) -> None:
        meta = await store.put("c/once", b"first", CREATE)
        assert meta.size == 5
        with pytest.raises(ConflictError):
            await store.put("c/once", b"second", CREATE)
        assert await store.get("c/once") == b"first"
        assert await store.head("c/once") == meta

    @store_test
    async def test_update_with_current_etag(self, store: Store) -> None:
        first = await store.put("u/alias", b"v1")
        second = await store.put("u/alias", b"v2", Update(first.etag))
        assert second.etag != first.etag
        assert await store.get("u/alias") == b"v2"
        assert await store.head("u/alias") == second
        third = await store.put("u/alias", b"v3", Update(second.etag))
        assert third.etag not in (first.etag, second.etag)
        assert await store.get("u/alias") == b"v3"

    @store_test
    async def test_update_with_stale_etag(self, store: Store) -> None:
        first = await store.put("u/alias", b"v1")
        second = await store.put("u/alias", b"v2", Update(first.etag))
        with pytest.raises(ConflictError):
            await store.put("u/alias", b"v3", Update(first.etag))
        assert await store.get("u/alias") == b"v2"
        assert await store.head("u/alias") == second

    @store_test
    async def test_update_of_deleted_key(self, store: Store) -> None:
        first = await store.put("u/alias", b"v1")
        await store.delete("u/alias")
        with pytest.raises(ConflictError):
            await store.put("u/alias", b"v2", Update(first.etag))
        with pytest.raises(ObjectNotFoundError):
            await store.head("u/alias")

    @store_test
    async def test_concurrent_create_has_one_winner(self, store: Store) -> None:
        bodies = [f"writer {i}".encode() * 100 for i in range(8)]
        results = await asyncio.gather(
            *(store.put("race/version/1", body, CREATE) for body in bodies), return_exceptions=True
        )
        winners = [i for i, r in enumerate(results) if isinstance(r, ObjectMeta)]
        losers = [r for r in results if isinstance(r, ConflictError)]
        assert len(winners) == 1, results
        assert len(losers) == 7, results
        assert await store.get("race/version/1") == bodies[winners[0]]

    # -- delete / list ------------------------------------------------------------------------------

    @store_test
    async def test_delete(self, store: Store) -> None:
        await store.put("d/gone", b"x")
        await store.put("d/kept", b"y")
        await store.delete("d/gone")
        with pytest.raises(ObjectNotFoundError):
            await store.head("d/gone")
        assert await store.get("d/kept") == b"y"
        await store.delete("d/gone")  # already gone: fine
        await store.delete("never/existed")
        assert [m.key for m in await listing(store, "d/")] == ["d/kept"]

    @store_test
    async def test_list_prefix_in_key_order(self, store: Store) -> None:
        sizes = {"a/1": 1, "a/10": 10, "a/2": 2, "a/sub/x": 3, "ab": 4, "b/1": 5}
        for key in ["b/1", "a/2", "ab", "a/sub/x", "a/1", "a/10"]:
            await store.put(key, b"z" * sizes[key])
        under_a = await listing(store, "a/")
        assert [(m.key, m.size) for m in under_a] == [
            ("a/1", 1),
            ("a/10", 10),
            ("a/2", 2),
            ("a/sub/x", 3),
        ]
        for meta in under_a:
            assert meta == await store.head(meta.key)
        assert [m.key for m in await listing(store, "a")] == ["a/1", "a/10", "a/2", "a/sub/x", "ab"]
        assert [m.key for m in await listing(store, "")] == sorted(sizes)
        assert [m.key for m in await listing(store, "a/1")] == ["a/1", "a/10"]

    @store_test
    async def test_list_empty_prefix(self, store: Store) -> None:
        assert await listing(store, "") == []
        assert await listing(store, "nothing/here/") == []
        await store.put("something/else", b"x")
        assert await listing(store, "nothing/here/") == []
        assert await listing(store, "somethinx") == []

    @store_test
    async def test_list_many_pages(self, store: Store) -> None:
        keys = [f"many/{i:05d}" for i in range(1100)]  # more than one 1000-key page on S3
        sem = asyncio.Semaphore(32)

        async def put(key: str) -> None:
            async with sem:
                await store.put(key, b"")

        await asyncio.gather(*(put(k) for k in keys))
        assert [m.key for m in await listing(store, "many/")] == keys



class MultipartConformance(StoreConformance):
    """The suite, and S3-style multipart uploads."""

    PART_SIZE: ClassVar[int] = 5 * MiB

    @pytest.fixture
    def mstore(self, store: Store) -> MultipartStore:
        multipart = {name for name in dir(MultipartStore) if not name.startswith("_")} - set(dir(Store))
        missing = sorted(name for name in multipart if not callable(getattr(store, name, None)))
        assert not missing, f"{type(store).__name__} lacks {missing}"
        assert isinstance(store, MultipartStore)
        return store

    # -- multipart ----------------------------------------------------------------------------------

    @store_test
    async def test_multipart_out_of_order(self, store: Store, mstore: MultipartStore) -> None:
        chunks = [payload(self.PART_SIZE, seed=1), payload(self.PART_SIZE, seed=2), b"tail" * 1000]
        upload_id = await mstore.create_multipart("mp/object")
        assert upload_id
        parts = await asyncio.gather(
            mstore.put_part("mp/object", upload_id, 3, chunks[2]),
            mstore.put_part("mp/object", upload_id, 1, chunks[0]),
            mstore.put_part("mp/object", upload_id, 2, chunks[1]),
        )
        assert [p.number for p in parts] == [3, 1, 2]
        assert [p.size for p in parts] == [len(chunks[2]), len(chunks[0]), len(chunks[1])]
        listed = await mstore.list_parts("mp/object", upload_id)
        assert [(p.number, p.size, p.etag) for p in listed] == [
            (p.number, p.size, p.etag) for p in sorted(parts, key=lambda p: p.number)
        ]
        with pytest.raises(ObjectNotFoundError):
            await mstore.head("mp/object")  # not visible before completion
        meta = await mstore.complete_multipart("mp/object", upload_id, listed)
        whole = b"".join(chunks)
        assert meta.key == "mp/object"
        assert meta.size == len(whole)
        assert meta.etag
        assert await mstore.head("mp/object") == meta
        assert await mstore.get("mp/object") == whole
        assert [u.upload_id async for u in mstore.list_multipart("mp/")] == []

    @store_test
    async def test_parts_from_spans_of_a_file(self, store: Store, mstore: MultipartStore) -> None:
        """A part may be a span of an open file, read by the backend where it lies: the object holds
        exactly the spans' bytes; a span past the file's end (a file that shrank) fails as a changed
        source, at once and without a retry, and leaves the other parts as they were."""
        whole = payload(self.PART_SIZE, seed=7) + b"the last part"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "source.bin")
            await asyncio.to_thread(path.write_bytes, whole)
            fd = os.open(path, os.O_RDONLY)
            try:
                upload_id = await mstore.create_multipart("mps/object")
                spans = [
                    FileSpan(fd, 0, self.PART_SIZE, str(path)),
                    FileSpan(fd, self.PART_SIZE, len(whole) - self.PART_SIZE, str(path)),
                ]
                parts = [await mstore.put_part("mps/object", upload_id, n, s) for n, s in enumerate(spans, 1)]
                assert [p.size for p in parts] == [self.PART_SIZE, len(whole) - self.PART_SIZE]
                past_the_end = FileSpan(fd, self.PART_SIZE, self.PART_SIZE, str(path))
                with pytest.raises(SourceChangedError, match=r"source\.bin shrank"):
                    await asyncio.wait_for(mstore.put_part("mps/object", upload_id, 3, past_the_end), 30)
                listed = await mstore.list_parts("mps/object", upload_id)
                assert [(p.number, p.etag) for p in listed] == [(p.number, p.etag) for p in parts]
                await mstore.complete_multipart("mps/object", upload_id, parts)
            finally:
                os.close(fd)
        assert await mstore.get("mps/object") == whole

    @store_test
    async def test_multipart_replace_part(self, store: Store, mstore: MultipartStore) -> None:
        upload_id = await mstore.create_multipart("mp/replaced")
        await mstore.put_part("mp/replaced", upload_id, 1, payload(self.PART_SIZE, seed=5))
        first = await mstore.put_part("mp/replaced", upload_id, 1, payload(self.PART_SIZE, seed=6))
        last = await mstore.put_part("mp/replaced", upload_id, 2, b"end")
        listed = await mstore.list_parts("mp/replaced", upload_id)
        assert [p.number for p in listed] == [1, 2]
        assert listed[0].etag == first.etag
        await mstore.complete_multipart("mp/replaced", upload_id, [first, last])
        assert await mstore.get("mp/replaced") == payload(self.PART_SIZE, seed=6) + b"end"

    @store_test
    async def test_multipart_abort(self, store: Store, mstore: MultipartStore) -> None:
        upload_id = await mstore.create_multipart("mpa/aborted")
        other = await mstore.create_multipart("elsewhere/open")
        await mstore.put_part("mpa/aborted", upload_id, 1, b"some bytes")
        open_uploads = [u async for u in mstore.list_multipart("mpa/")]
        assert [(u.key, u.upload_id) for u in open_uploads] == [("mpa/aborted", upload_id)]
        await mstore.abort_multipart("mpa/aborted", upload_id)
        assert [u async for u in mstore.list_multipart("mpa/")] == []
        with pytest.raises(ObjectNotFoundError):
            await mstore.head("mpa/aborted")
        await mstore.abort_multipart("mpa/aborted", upload_id)  # again: not an error
        assert [u.upload_id async for u in mstore.list_multipart("elsewhere/")] == [other]
        await mstore.abort_multipart("elsewhere/open", other)

    @store_test
    async def test_complete_create_on_new_key(self, store: Store, mstore: MultipartStore) -> None:
        upload_id = await mstore.create_multipart("mpc/new")
        part = await mstore.put_part("mpc/new", upload_id, 1, b"only part")
        meta = await mstore.complete_multipart("mpc/new", upload_id, [part], CREATE)
        assert meta.size == len(b"only part")
        assert await mstore.head("mpc/new") == meta
        assert await mstore.get("mpc/new") == b"only part"

    @store_test
    async def test_complete_create_on_existing_key(self, store: Store, mstore: MultipartStore) -> None:
        existing = await mstore.put("mpc/taken", b"already here")
        upload_id = await mstore.create_multipart("mpc/taken")
        part = await mstore.put_part("mpc/taken", upload_id, 1, b"latecomer")
        try:
            with pytest.raises(ConflictError):
                await mstore.complete_multipart("mpc/taken", upload_id, [part], CREATE)
            assert await mstore.get("mpc/taken") == b"already here"
            assert await mstore.head("mpc/taken") == existing
        finally:
            await mstore.abort_multipart("mpc/taken", upload_id)

    @store_test
    async def test_complete_update(self, store: Store, mstore: MultipartStore) -> None:
        first = await mstore.put("mpu/obj", b"v1")
        upload_id = await mstore.create_multipart("mpu/obj")
        part = await mstore.put_part("mpu/obj", upload_id, 1, b"v2 via multipart")
        meta = await mstore.complete_multipart("mpu/obj", upload_id, [part], Update(first.etag))
        assert meta.etag != first.etag
        assert await mstore.get("mpu/obj") == b"v2 via multipart"
        assert await mstore.head("mpu/obj") == meta
