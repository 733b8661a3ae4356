"""The GCS store: the conformance suite on gcp-storage-emulator, and request-level tests.

The emulator as it ships ignores ``ifGenerationMatch``. The conformance suite (and the many-writers
runs) use it with GCS's precondition check added in front of its upload handler by the tests
(``tests/gcs_emulator.py``), so the conditional-write tests pass there against that check, not against
the emulator's own code; the check itself is tested below (it refuses what GCS refuses, and the
emulator without it does not). The emulator as it ships is refused by lorry's probe
(``test_many_writers.py``). What lorry sends is pinned by a small aiohttp server on 127.0.0.1 that
records every request and answers as GCS documents it: the right query parameters go out, and a 412
comes back as ``ConflictError``. That server also pages listings (the emulator never does), answers
416 for a range past the end, and refuses credentials.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web

from lorry.errors import ConflictError, ObjectNotFoundError, StoreError, UsageError, ValidationError
from lorry.storage.base import CREATE, OVERWRITE, ObjectMeta, Update
from lorry.storage.gcs import GCSStore
from tests.conformance import StoreConformance, listing, run
from tests.fixtures_gcs import GCSEmulator, GCSStoreFactory, start_emulator


class TestGCSStore(StoreConformance):
    KNOWN_FAILURES: ClassVar[Mapping[str, str]] = {
        "test_special_keys": (
            "gcp-storage-emulator cuts object paths at ';' (it parses URLs with urllib's urlparse, which "
            "takes ';' as a parameter separator), and aiohttp sends ';' unescaped; the other special "
            "characters are covered by test_special_keys_except_semicolon"
        ),
    }

    @pytest.fixture
    def store(self, gcs_store_factory: GCSStoreFactory) -> GCSStore:
        return gcs_store_factory()


class TestGCSStoreUnderPrefix(TestGCSStore):
    """The same suite with keys under a prefix, next to objects just outside it that must stay unseen."""

    @pytest.fixture
    def store(self, gcs_store_factory: GCSStoreFactory, gcs_emulator: GCSEmulator) -> GCSStore:
        store = gcs_store_factory("team/lorry")
        for decoy in ["team/lorry-other/a/1", "team/lorr", "team/x", "a/1"]:
            status, _ = gcs_emulator.request(
                "POST", f"/upload/storage/v1/b/{store.bucket}/o?uploadType=media&name={decoy}", b"decoy"
            )
            assert status == 200
        return store


# -- the store on the emulator, beyond the conformance suite ----------------------------------------


def test_the_precondition_check_added_to_the_emulator_refuses_what_gcs_refuses(
    gcs_emulator: GCSEmulator, tmp_path: Path
) -> None:
    """``ifGenerationMatch=0`` creates only a missing object, ``ifGenerationMatch=G`` replaces only
    generation G, and a refusal is GCS's ``412 conditionNotMet``; the emulator as it ships takes both."""

    def upload(emulator: GCSEmulator, bucket: str, generation: str, body: bytes) -> tuple[int, bytes]:
        query = f"uploadType=media&name=obj&ifGenerationMatch={generation}"
        return emulator.request("POST", f"/upload/storage/v1/b/{bucket}/o?{query}", body)

    gcs_emulator.create_bucket("lorry-shim")
    status, first = upload(gcs_emulator, "lorry-shim", "0", b"one")
    assert status == 200
    live = json.loads(first)["generation"]
    status, refused = upload(gcs_emulator, "lorry-shim", "0", b"two")  # exists: no second create
    assert status == 412 and b"conditionNotMet" in refused
    assert upload(gcs_emulator, "lorry-shim", str(int(live) + 1), b"two")[0] == 412  # a stale swap
    status, swapped = upload(gcs_emulator, "lorry-shim", live, b"two")
    assert status == 200 and json.loads(swapped)["generation"] != live
    assert gcs_emulator.request("GET", "/storage/v1/b/lorry-shim/o/obj?alt=media") == (200, b"two")
    gcs_emulator.wipe()

    with start_emulator(tmp_path, preconditions=False) as plain:  # why the check is added
        plain.create_bucket("lorry-plain")
        assert upload(plain, "lorry-plain", "0", b"one")[0] == 200
        assert upload(plain, "lorry-plain", "0", b"two")[0] == 200


def test_special_keys_except_semicolon(gcs_store_factory: GCSStoreFactory) -> None:
    store = gcs_store_factory("pre fix/ü")
    keys = [
        "with space/file name.txt",
        "unicode/ünïcødé-日本語-🚀.bin",
        "eq/a=b+c&d.txt",
        "pct/100%25 sure?.txt",
        "pct/%2F not a slash",
        "misc/~tilde,comma:colon@at!bang'quote(paren)*[bracket]#hash",
    ]

    async def body() -> None:
        for i, key in enumerate(keys):
            assert (await store.put(key, key.encode() * (i + 1))).key == key
        for i, key in enumerate(keys):
            assert await store.get(key) == key.encode() * (i + 1)
            assert await store.get(key, 1, 4) == (key.encode() * (i + 1))[1:4]
            assert (await store.head(key)).size == len(key.encode()) * (i + 1)
        assert [m.key for m in await listing(store, "")] == sorted(keys)
        assert [m.key for m in await listing(store, "eq/a=b+")] == ["eq/a=b+c&d.txt"]
        assert [m.key for m in await listing(store, "pct/%2")] == ["pct/%2F not a slash"]
        for key in keys:
            await store.delete(key)
        assert await listing(store, "") == []

    run(store, body())


def test_url_and_from_url() -> None:
    store = GCSStore.from_url("gs://bucket/some/prefix/", endpoint="http://127.0.0.1:1")
    assert (store.bucket, store.prefix, store.url) == ("bucket", "some/prefix", "gs://bucket/some/prefix")
    assert GCSStore.from_url("gs://bucket").url == "gs://bucket"
    for bad in ["s3://bucket/x", "gs:///x", "gs://bucket/../x", "gs://bucket/a//b"]:
        with pytest.raises(ValidationError):
            GCSStore.from_url(bad)


def test_etag_is_the_generation(gcs_store_factory: GCSStoreFactory, gcs_emulator: GCSEmulator) -> None:
    store = gcs_store_factory("p")

    async def body() -> ObjectMeta:
        return await store.put("k", b"abc")

    meta = run(store, body())
    status, raw = gcs_emulator.request("GET", f"/storage/v1/b/{store.bucket}/o/p%2Fk")
    assert status == 200
    assert meta.etag == json.loads(raw)["generation"]


def test_session_is_per_store_and_loop(gcs_store_factory: GCSStoreFactory) -> None:
    store = gcs_store_factory()

    async def first() -> aiohttp.ClientSession:
        await store.put("a", b"1")
        session = store._session
        assert session is not None
        await store.head("a")
        assert store._session is session  # one session for every call on this loop

        def from_another_loop() -> None:
            asyncio.run(store.head("a"))

        with pytest.raises(UsageError, match="another event loop"):
            await asyncio.to_thread(from_another_loop)
        await store.close()
        assert session.closed
        return session

    async def second() -> aiohttp.ClientSession | None:
        assert (await store.head("a")).size == 1  # closed, then used again on a new loop
        session = store._session
        await store.close()
        return session

    old = asyncio.run(first())
    new = asyncio.run(second())
    assert new is not None
    assert new is not old
    assert new.closed


# -- request level: a recording server on 127.0.0.1 --------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recorder:
    """A real HTTP server that records each request and answers with ``respond``."""

    respond: Handler
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.raw_path.partition("?")[0],
                dict(request.query),
                dict(request.headers),
                body,
            )
        )
        return await self.respond(request)


@asynccontextmanager
async def recording_server(respond: Handler, prefix: str = "pre") -> AsyncIterator[tuple[GCSStore, Recorder]]:
    recorder = Recorder(respond)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    store = GCSStore("bkt", prefix, endpoint=f"http://127.0.0.1:{port}", list_page_size=2)
    try:
        yield store, recorder
    finally:
        await store.close()
        await runner.cleanup()


def gcs_error(status: int, message: str) -> web.Response:
    payload = {"error": {"code": status, "message": message, "errors": [{"message": message}]}}
    return web.json_response(payload, status=status)


def resource(name: str, size: int, generation: int) -> dict[str, Any]:
    return {
        "kind": "storage#object",
        "name": name,
        "bucket": "bkt",
        "size": str(size),
        "generation": str(generation),
        "metageneration": "1",
    }


async def precondition_failed(request: web.Request) -> web.Response:
    return gcs_error(412, "At least one of the pre-conditions you specified did not hold.")


def test_create_sends_if_generation_match_zero_and_412_is_a_conflict() -> None:
    async def body() -> None:
        async with recording_server(precondition_failed) as (store, recorder):
            with pytest.raises(ConflictError, match="already exists") as caught:
                await store.put("versions/1", b"record", CREATE)
            assert isinstance(caught.value.__cause__, aiohttp.ClientResponseError)
            assert caught.value.__cause__.status == 412
            [seen] = recorder.seen
            assert (seen.method, seen.path) == ("POST", "/upload/storage/v1/b/bkt/o")
            assert seen.query == {"name": "pre/versions/1", "uploadType": "media", "ifGenerationMatch": "0"}
            assert seen.body == b"record"

    asyncio.run(body())


def test_update_sends_the_generation_and_412_is_a_conflict() -> None:
    async def body() -> None:
        async with recording_server(precondition_failed) as (store, recorder):
            with pytest.raises(ConflictError, match="changed since it was read"):
                await store.put("aliases/latest", b"v7", Update("1718000000123456"))
            [seen] = recorder.seen
            assert seen.query["ifGenerationMatch"] == "1718000000123456"
            assert seen.query["name"] == "pre/aliases/latest"

    asyncio.run(body())


def test_update_with_an_etag_that_is_no_generation_conflicts_without_a_request() -> None:
    async def body() -> None:
        async with recording_server(precondition_failed) as (store, recorder):
            with pytest.raises(ConflictError):
                await store.put("aliases/latest", b"v7", Update('"d41d8cd98f00b204"'))
            assert recorder.seen == []

    asyncio.run(body())


def test_overwrite_sends_no_precondition_and_reads_the_generation() -> None:
    async def ok(request: web.Request) -> web.Response:
        # (a multipart upload names the object in its body, not in the query)
        return web.json_response(resource(request.query.get("name", ""), len(await request.read()), 42))

    async def body() -> None:
        async with recording_server(ok) as (store, recorder):
            meta = await store.put("blobs/x", b"12345", OVERWRITE)
            assert meta == ObjectMeta(key="blobs/x", size=5, etag="42")
            created = await store.put("blobs/y", b"1", CREATE)
            assert created.etag == "42"
            assert "ifGenerationMatch" not in recorder.seen[0].query
            assert recorder.seen[0].headers["Content-Type"] == "application/octet-stream"
            assert recorder.seen[1].query["ifGenerationMatch"] == "0"
            # An empty object goes up as uploadType=multipart, with the same precondition.
            await store.put("blobs/empty", b"", Update("7"))
            assert recorder.seen[2].query["uploadType"] == "multipart"
            assert recorder.seen[2].query["ifGenerationMatch"] == "7"

    asyncio.run(body())


def test_a_large_stream_goes_up_as_a_resumable_upload_in_chunks() -> None:
    """Each chunk is one request with its Content-Range; a chunk the server kept only part of (its
    308 says how much) is sent again from there; the preconditions go with the session's start."""
    chunk = 256 << 10
    data = bytes(range(256)) * (3 * chunk // 256) + b"tail"
    received = bytearray()
    ranges: list[str] = []

    async def resumable(request: web.Request) -> web.Response:
        if request.method == "POST":
            return web.Response(headers={"Location": str(request.url.with_path("/session/7"))})
        content_range = request.headers["Content-Range"]
        ranges.append(content_range)
        first = int(content_range.split()[1].split("-")[0])
        body = await request.read()
        assert first == len(received)  # bytes strictly in order, none skipped or repeated
        kept = body if len(ranges) != 1 else body[: chunk // 2]  # the first chunk only half persisted
        received.extend(kept)
        if len(received) < len(data):
            return web.Response(status=308, headers={"Range": f"bytes=0-{len(received) - 1}"})
        return web.json_response(resource("pre/big", len(received), 9))

    async def body() -> None:
        async with recording_server(resumable) as (server, recorder):
            store = GCSStore("bkt", "pre", endpoint=server.endpoint, upload_chunk_size=chunk)
            try:
                meta = await store.put("big", io.BytesIO(data), CREATE)
            finally:
                await store.close()
            assert meta == ObjectMeta(key="big", size=len(data), etag="9")
            assert bytes(received) == data
            start = recorder.seen[0]
            assert (start.method, start.path) == ("POST", "/upload/storage/v1/b/bkt/o")
            assert start.query == {"name": "pre/big", "uploadType": "resumable", "ifGenerationMatch": "0"}
            assert start.headers["X-Upload-Content-Length"] == str(len(data))
            size = len(data)
            half = chunk // 2
            assert ranges == [
                f"bytes 0-{chunk - 1}/{size}",
                f"bytes {half}-{half + chunk - 1}/{size}",
                f"bytes {half + chunk}-{half + 2 * chunk - 1}/{size}",
                f"bytes {half + 2 * chunk}-{size - 1}/{size}",
            ]

    asyncio.run(body())


def test_a_resumable_upload_refused_by_its_precondition_is_a_conflict() -> None:
    async def body() -> None:
        async with recording_server(precondition_failed) as (server, recorder):
            store = GCSStore("bkt", "pre", endpoint=server.endpoint, upload_chunk_size=256 << 10)
            try:
                with pytest.raises(ConflictError, match="already exists"):
                    await store.put("big", io.BytesIO(bytes(300 << 10)), CREATE)
            finally:
                await store.close()
            [seen] = recorder.seen  # no bytes sent after the refusal
            assert seen.query["uploadType"] == "resumable"

    asyncio.run(body())


def test_list_follows_next_page_token() -> None:
    names = ["pre/a/1", "pre/a/2", "pre/a/3", "pre/a/4", "pre/a/5"]

    async def pages(request: web.Request) -> web.Response:
        assert request.path == "/storage/v1/b/bkt/o"
        size = int(request.query["maxResults"])
        start = int(request.query.get("pageToken", "0"))
        chunk = names[start : start + size]
        page: dict[str, Any] = {
            "kind": "storage#objects",
            "items": [resource(n, i, 100 + i) for i, n in enumerate(chunk, start)],
        }
        if start + size < len(names):
            page["nextPageToken"] = str(start + size)
        return web.json_response(page)

    async def body() -> None:
        async with recording_server(pages) as (store, recorder):
            listed = await listing(store, "a/")
            assert listed == [ObjectMeta(f"a/{i + 1}", i, str(100 + i)) for i in range(5)]
            assert [s.query.get("pageToken") for s in recorder.seen] == [None, "2", "4"]
            assert {s.query["prefix"] for s in recorder.seen} == {"pre/a/"}

    asyncio.run(body())


def test_ranges_go_out_as_inclusive_range_headers_and_416_is_empty() -> None:
    data = bytes(range(100))

    async def ranged(request: web.Request) -> web.Response:
        assert request.query["alt"] == "media"
        header = request.headers.get("Range")
        if header is None:
            return web.Response(body=data)
        first, _, last = header.removeprefix("bytes=").partition("-")
        if int(first) >= len(data):
            return gcs_error(416, "The requested range cannot be satisfied.")
        stop = len(data) if not last else min(int(last) + 1, len(data))
        return web.Response(status=206, body=data[int(first) : stop])

    async def body() -> None:
        async with recording_server(ranged) as (store, recorder):
            assert await store.get("obj", 10, 20) == data[10:20]
            assert await store.get("obj", 90) == data[90:]
            assert await store.get("obj", 100) == b""
            assert await store.get("obj") == data
            ranges = [s.headers.get("Range") for s in recorder.seen]
            assert ranges == ["bytes=10-19", "bytes=90-", "bytes=100-", None]
            assert recorder.seen[0].path == "/storage/v1/b/bkt/o/pre%2Fobj"

    asyncio.run(body())


def test_a_server_that_ignores_range_is_cut_locally() -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: more than one chunk

    async def whole(request: web.Request) -> web.Response:
        return web.Response(body=data)

    async def body() -> None:
        async with recording_server(whole) as (store, _):
            assert await store.get("obj", 1_000_000, 1_500_000) == data[1_000_000:1_500_000]
            assert await store.get("obj", 2_000_000) == data[2_000_000:]

    asyncio.run(body())


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_a_store_error_that_says_so(status: int) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return gcs_error(status, "Anonymous caller does not have storage.objects.get access.")

    async def body() -> None:
        async with recording_server(refuse) as (store, _):
            for call in (store.head("k"), store.put("k", b"x", CREATE), listing(store, "")):
                with pytest.raises(StoreError, match="refused the credentials") as caught:
                    await call
                assert f"HTTP {status}" in str(caught.value)
                assert "storage.objects.get access" in str(caught.value)

    asyncio.run(body())


def test_other_failures_map_onto_the_error_tree() -> None:
    async def answer(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            return gcs_error(404, "No such object.")
        if request.path == "/storage/v1/b/bkt/o":
            return gcs_error(404, "The specified bucket does not exist.")
        if request.query.get("alt") == "json":
            return gcs_error(404, "No such object.")
        return gcs_error(503, "Backend Error")

    async def body() -> None:
        async with recording_server(answer) as (store, _):
            with pytest.raises(ObjectNotFoundError):
                await store.head("missing")
            await store.delete("missing")  # 404 on delete: nothing to do
            with pytest.raises(StoreError, match="bucket bkt not found"):
                await listing(store, "")
            with pytest.raises(StoreError, match="HTTP 503") as caught:
                await store.get("k")
            assert not isinstance(caught.value, ObjectNotFoundError | ConflictError)

    asyncio.run(body())


def test_unreachable_server_is_a_store_error() -> None:
    async def body() -> None:
        async with recording_server(precondition_failed) as (store, _):
            pass
        # The server is gone: its port refuses connections.
        with pytest.raises(StoreError, match="failed") as caught:
            await store.head("k")
        assert isinstance(caught.value.__cause__, aiohttp.ClientError | OSError)
        await store.close()

    asyncio.run(body())


# -- generations, for references ------------------------------------------------------------------------


def test_versions_on_the_emulator(gcs_store_factory: GCSStoreFactory) -> None:
    store = gcs_store_factory("p")

    async def body() -> None:
        meta = await store.put("v/a", b"abc")
        await store.put("v/b", b"b")
        head = await store.head_version("v/a")
        assert (head.key, head.size, head.etag, head.version_id) == ("v/a", 3, meta.etag, meta.etag)
        assert head.md5 == "kAFQmDzST7DWlj99KOF/cg=="  # base64 of md5(b"abc")
        assert head.crc32c
        latest = [m async for m in store.list_latest("v/")]
        assert latest[0] == head
        assert [(m.key, m.size) for m in latest] == [("v/a", 3), ("v/b", 1)]
        async with store.open_version("v/a", head.version_id) as opened:
            assert (opened.md5, opened.crc32c) == (head.md5, head.crc32c)  # from x-goog-hash
            assert b"".join([chunk async for chunk in opened.chunks]) == b"abc"
        with pytest.raises(ObjectNotFoundError):
            await store.head_version("missing")
        with pytest.raises(ObjectNotFoundError):
            async with store.open_version("missing"):
                pass
        with pytest.raises(ValidationError):
            await store.head_version("odd//key")

    run(store, body())


def test_open_version_asks_for_the_generation_and_the_stored_bytes() -> None:
    async def media(request: web.Request) -> web.Response:
        if request.query.get("generation") == "404":
            return gcs_error(404, "No such object.")
        headers = {
            "x-goog-generation": request.query.get("generation", "9"),
            "x-goog-hash": "crc32c=n03x6A==,md5=XrY7u+Ae7tCTyyK7j1rNww==",
            "x-goog-stored-content-length": "5",
        }
        return web.Response(body=b"hello", headers=headers)

    async def body() -> None:
        async with recording_server(media) as (store, recorder):
            async with store.open_version("odd//./key", "1234", raw=True) as opened:
                assert (opened.version_id, opened.etag, opened.size) == ("1234", "1234", 5)
                assert (opened.md5, opened.crc32c) == ("XrY7u+Ae7tCTyyK7j1rNww==", "n03x6A==")
                assert b"".join([chunk async for chunk in opened.chunks]) == b"hello"
            [seen] = recorder.seen
            assert seen.path == "/storage/v1/b/bkt/o/pre%2Fodd%2F%2F.%2Fkey"
            assert seen.query == {"alt": "media", "generation": "1234"}
            assert seen.headers["Accept-Encoding"] == "gzip"
            with pytest.raises(ObjectNotFoundError):
                async with store.open_version("k", "404"):
                    pass
            with pytest.raises(ValidationError):
                async with store.open_version("odd//./key", "1234"):
                    pass

    asyncio.run(body())


def test_head_version_and_list_latest_read_generations_and_checksums() -> None:
    async def answer(request: web.Request) -> web.Response:
        if request.path == "/storage/v1/b/bkt/o":
            item = {**resource("pre/a", 3, 7), "md5Hash": "m==", "crc32c": "c=="}
            return web.json_response({"items": [item, resource("pre/b", 1, 8)]})
        if request.query.get("generation") == "6":
            return web.json_response({**resource("pre/a", 2, 6), "crc32c": "old=="})
        return gcs_error(503, "Backend Error")

    async def body() -> None:
        async with recording_server(answer) as (store, recorder):
            old = await store.head_version("a", "6")
            assert (old.size, old.version_id, old.md5, old.crc32c) == (2, "6", None, "old==")
            assert recorder.seen[0].query == {"alt": "json", "generation": "6"}
            latest = [m async for m in store.list_latest("")]
            assert [(m.key, m.version_id, m.md5, m.crc32c) for m in latest] == [
                ("a", "7", "m==", "c=="),
                ("b", "8", None, None),
            ]
            assert "md5Hash" in recorder.seen[1].query["fields"]
            with pytest.raises(StoreError, match="HTTP 503"):
                await store.head_version("a")

    asyncio.run(body())
