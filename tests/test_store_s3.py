"""The conformance suite on Ceph RGW and moto, and what is particular to S3."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from lorry.errors import ConflictError, ObjectNotFoundError, StoreError, UsageError, ValidationError
from lorry.storage.base import CREATE, Update
from lorry.storage.s3 import BodyCheck, S3Store
from tests.conformance import MultipartConformance, listing, payload, run
from tests.faultproxy import FaultProxy
from tests.fixtures_s3 import MakeStore, S3Server, s3_env


class TestCephStore(MultipartConformance):
    KNOWN_FAILURES: ClassVar[Mapping[str, str]] = {
        "test_complete_create_on_existing_key": (
            "Ceph RGW 16.2 ignores If-None-Match on CompleteMultipartUpload and overwrites the object"
        ),
    }

    @pytest.fixture
    def store(self, ceph_rgw: S3Server, s3_store: MakeStore) -> S3Store:
        return s3_store(ceph_rgw)


class TestMotoStore(MultipartConformance):
    @pytest.fixture
    def store(self, moto_server: S3Server, s3_store: MakeStore) -> S3Store:
        return s3_store(moto_server)


class TestMotoStoreConfiguredByEnvironment(MultipartConformance):
    """The suite with nothing given to the store but its URL, as AWS users configure it: endpoint,
    region and credentials from ``AWS_ENDPOINT_URL`` and the other standard variables, read by
    botocore for the control calls and handed on to the C client that carries the bytes."""

    @pytest.fixture
    def store(self, moto_server: S3Server, s3_store: MakeStore, monkeypatch: pytest.MonkeyPatch) -> S3Store:
        s3_env(monkeypatch, moto_server)
        return s3_store(moto_server, endpoint_url=None, access_key_id=None, secret_access_key=None)


@pytest.mark.parametrize(
    ("url", "expected", "prefix"),
    [
        ("s3://bucket", "s3://bucket", ""),
        ("s3://bucket/", "s3://bucket", ""),
        ("s3://bucket/a/b", "s3://bucket/a/b", "a/b/"),
        ("s3://bucket/a/b/", "s3://bucket/a/b", "a/b/"),
    ],
)
def test_url(url: str, expected: str, prefix: str) -> None:
    store = S3Store(url)
    assert store.url == expected
    assert store.bucket == "bucket"
    assert store.prefix == prefix


@pytest.mark.parametrize("url", ["gs://bucket/x", "s3://", "s3:///x", "s3://b/a/../c", "s3://b/x?y=1", "b/x"])
def test_bad_url(url: str) -> None:
    with pytest.raises(ValidationError):
        S3Store(url)


def test_half_credentials_refused() -> None:
    with pytest.raises(ValidationError):
        S3Store("s3://b", access_key_id="only-the-key")


def test_keys_live_under_the_prefix(ceph_rgw: S3Server, s3_store: MakeStore) -> None:
    store = s3_store(ceph_rgw, prefix="team/project")

    async def body() -> None:
        meta = await store.put("blobs/ab/cdef", b"content")
        assert '"' not in meta.etag
        assert [m.key async for m in store.list("")] == ["blobs/ab/cdef"]

    run(store, body())
    listed = ceph_rgw.admin().list_objects_v2(Bucket=store.bucket)
    assert sorted(item["Key"] for item in listed["Contents"]) == [
        "team/project-decoy",
        "team/project/blobs/ab/cdef",
    ]


def test_store_at_bucket_root(moto_server: S3Server, s3_store: MakeStore) -> None:
    store = s3_store(moto_server, prefix="")

    async def body() -> None:
        await store.put("top", b"1")
        await store.put("dir/inner", b"22")
        assert [(m.key, m.size) for m in await listing(store, "")] == [("dir/inner", 2), ("top", 1)]
        assert await store.get("dir/inner") == b"22"

    run(store, body())


def test_connections_are_bounded_by_the_pool(ceph_rgw: S3Server, s3_store: MakeStore) -> None:
    """40 calls at once through a store of 3 connections: the server sees at most 3 requests at a
    time (counted by a proxy in front of it), on at most 3 connections per client, path-style."""
    upstream = urlsplit(ceph_rgw.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    proxy = FaultProxy((upstream.hostname, upstream.port)).start()
    lines: list[str] = []
    proxy.before = lines.append
    store = s3_store(ceph_rgw, max_pool_connections=3, endpoint_url=proxy.endpoint)

    async def body() -> None:
        await asyncio.gather(*(store.put(f"k{i}", payload(64 << 10, i)) for i in range(20)))
        reads = [store.get(f"k{i}") for i in range(10)]
        await asyncio.gather(*reads, *(listing(store, "") for _ in range(10)))

    try:
        run(store, body())
    finally:
        proxy.close()
    assert len(lines) >= 40
    assert 1 < proxy.peak_in_flight <= 3, proxy.peak_in_flight
    assert proxy.counts["connections"] <= 6, proxy.counts  # one pool for object calls, one for the rest
    bucket = store.bucket
    assert all(line.split()[1].startswith(f"/{bucket}") for line in lines), lines[:3]  # path-style


def test_wrong_credentials_on_ceph(ceph_rgw: S3Server, s3_store: MakeStore) -> None:
    bad_secret = s3_store(ceph_rgw, secret_access_key="not-the-secret")
    unknown_key = s3_store(ceph_rgw, access_key_id="nobody", secret_access_key="nothing")

    async def body(store: S3Store) -> None:
        with pytest.raises(StoreError, match="refused the credentials") as put_error:
            await store.put("k", b"v")
        assert not isinstance(put_error.value, ConflictError | ObjectNotFoundError)
        assert put_error.value.__cause__ is not None
        with pytest.raises(StoreError, match="refused the credentials"):
            await store.head("k")  # a HEAD answer has no body: the 403 alone must say it
        with pytest.raises(StoreError, match="refused the credentials"):
            await listing(store, "")

    run(bad_secret, body(bad_secret))
    run(unknown_key, body(unknown_key))
    with pytest.raises(StoreError, match="SignatureDoesNotMatch"):
        run(bad_secret, bad_secret.get("k"))
    with pytest.raises(StoreError, match="InvalidAccessKeyId"):
        run(unknown_key, unknown_key.get("k"))


def test_missing_bucket(ceph_rgw: S3Server, aws_isolated: Path) -> None:
    store = S3Store(
        "s3://no-such-bucket-here/x",
        endpoint_url=ceph_rgw.endpoint,
        access_key_id=ceph_rgw.access_key,
        secret_access_key=ceph_rgw.secret_key,
    )
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-here' does not exist"):
        run(store, store.put("k", b"v"))


def test_no_server(aws_isolated: Path) -> None:
    store = S3Store(
        "s3://bucket/x", endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b"
    )
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:9") as error:
        run(store, store.head("k"))
    assert not isinstance(error.value, ObjectNotFoundError)


def test_no_credentials(moto_server: S3Server, aws_isolated: Path) -> None:
    store = S3Store("s3://bucket/x", endpoint_url=moto_server.endpoint)
    with pytest.raises(StoreError, match="no AWS credentials"):
        run(store, store.head("k"))


def test_configuration_from_environment(
    ceph_rgw: S3Server, s3_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_store(ceph_rgw).bucket  # only to have a bucket that is cleaned up afterwards
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", ceph_rgw.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the S3-specific variable wins
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ceph_rgw.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ceph_rgw.secret_key)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    store = S3Store(f"s3://{bucket}/env")

    async def body() -> None:
        await store.put("k", b"from the environment", CREATE)
        assert await store.get("k") == b"from the environment"
        client = await store._boto()
        assert client.meta.region_name == "eu-west-3"
        assert client.meta.endpoint_url == ceph_rgw.endpoint

    run(store, body())


def test_configuration_from_profile(
    ceph_rgw: S3Server, s3_store: MakeStore, aws_isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_store(ceph_rgw).bucket
    aws_isolated.mkdir()
    (aws_isolated / "config").write_text(
        f"[profile rgw]\nregion = ap-south-1\nendpoint_url = {ceph_rgw.endpoint}\n"
    )
    (aws_isolated / "credentials").write_text(
        f"[rgw]\naws_access_key_id = {ceph_rgw.access_key}\naws_secret_access_key = {ceph_rgw.secret_key}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_isolated / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_isolated / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "rgw")
    from_env = S3Store(f"s3://{bucket}/profile")  # configuration is read when the client is made
    explicit = S3Store(f"s3://{bucket}/profile", profile="rgw")

    async def body(store: S3Store) -> None:
        await store.put("k", b"from the profile")
        assert await store.get("k") == b"from the profile"
        assert (await store._boto()).meta.region_name == "ap-south-1"

    monkeypatch.setenv("AWS_PROFILE", "rgw")
    run(from_env, body(from_env))
    monkeypatch.delenv("AWS_PROFILE")
    run(explicit, body(explicit))
    default = S3Store(f"s3://{bucket}/profile")
    with pytest.raises(StoreError):  # the default profile has neither endpoint nor credentials
        run(default, default.head("k"))


def test_close_then_reuse_on_a_new_loop(moto_server: S3Server, s3_store: MakeStore) -> None:
    store = s3_store(moto_server)
    run(store, store.put("k", b"v1"))  # run() closes the store at the end
    assert run(store, store.get("k")) == b"v1"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the client left open
def test_one_loop_at_a_time(moto_server: S3Server, s3_store: MakeStore) -> None:
    store = s3_store(moto_server)
    asyncio.run(store.put("k", b"v"))  # left open on a loop that is now gone
    with pytest.raises(UsageError, match="another event loop"):
        asyncio.run(store.head("k"))


def test_etags_are_unquoted_everywhere(ceph_rgw: S3Server, s3_store: MakeStore) -> None:
    store = s3_store(ceph_rgw)

    async def body() -> None:
        put = await store.put("e", b"x" * 10)
        assert put.etag == hashlib.md5(b"x" * 10).hexdigest()  # RGW's etag of a single PUT
        assert [m.etag for m in await listing(store, "e")] == [put.etag]
        upload_id = await store.create_multipart("m")
        part = await store.put_part("m", upload_id, 1, b"abc")
        assert part.etag == hashlib.md5(b"abc").hexdigest()
        assert [p.etag for p in await store.list_parts("m", upload_id)] == [part.etag]
        done = await store.complete_multipart("m", upload_id, [part])
        assert done.etag and '"' not in done.etag  # RGW answers "" here: the store reads it back
        updated = await store.put("m", b"y", Update(done.etag))
        assert updated.etag != done.etag

    run(store, body())


# -- versions, for references ---------------------------------------------------------------------------


def test_versions_of_a_versioned_bucket(moto_server: S3Server, s3_store: MakeStore) -> None:
    store = s3_store(moto_server)
    admin = moto_server.admin()
    admin.put_bucket_versioning(Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"})

    async def body() -> None:
        assert await store.versioning_enabled()
        first = await store.put("v/a", b"first")
        old = await store.head_version("v/a")
        assert (old.key, old.size, old.etag) == ("v/a", 5, first.etag)
        assert old.version_id is not None and (old.md5, old.crc32c) == (None, None)
        await store.put("v/a", b"second!")
        await store.put("v/b", b"b")
        await store.put("v/gone", b"x")
        await store.delete("v/gone")  # a delete marker: not listed
        latest = [meta async for meta in store.list_latest("v/")]
        assert [(m.key, m.size) for m in latest] == [("v/a", 7), ("v/b", 1)]
        assert all(m.version_id is not None for m in latest)
        assert latest[0].version_id != old.version_id
        # The recorded version still reads after the key was overwritten, with its own ETag.
        assert await store.head_version("v/a", old.version_id) == old
        async with store.open_version("v/a", old.version_id) as opened:
            assert (opened.etag, opened.size, opened.version_id) == (old.etag, 5, old.version_id)
            assert b"".join([chunk async for chunk in opened.chunks]) == b"first"
        with pytest.raises(ObjectNotFoundError):
            async with store.open_version("v/gone"):
                pass
        with pytest.raises(ObjectNotFoundError):
            async with store.open_version("v/a", "no-such-version"):
                pass

    try:
        run(store, body())
    finally:  # the fixture deletes current objects only: the old versions and markers go here
        for page in admin.get_paginator("list_object_versions").paginate(Bucket=store.bucket):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                admin.delete_object(Bucket=store.bucket, Key=item["Key"], VersionId=item["VersionId"])


def test_versions_of_an_unversioned_bucket(moto_server: S3Server, s3_store: MakeStore) -> None:
    store = s3_store(moto_server)

    async def body() -> None:
        assert not await store.versioning_enabled()
        meta = await store.put("a", b"abc")
        head = await store.head_version("a")
        assert (head.size, head.etag, head.version_id) == (3, meta.etag, None)  # not "null"
        latest = [m async for m in store.list_latest("")]
        assert [(m.key, m.etag, m.version_id) for m in latest] == [("a", meta.etag, None)]
        with pytest.raises(ObjectNotFoundError):
            await store.head_version("missing")

    run(store, body())


def test_raw_keys_skip_the_key_check_only_where_asked(moto_server: S3Server, s3_store: MakeStore) -> None:
    store = s3_store(moto_server, prefix="")
    moto_server.admin().put_object(Bucket=store.bucket, Key="odd//./key", Body=b"odd")

    async def body() -> None:
        with pytest.raises(ValidationError):
            await store.head("odd//./key")
        with pytest.raises(ValidationError):
            await store.head_version("odd//./key")
        assert (await store.head_version("odd//./key", raw=True)).size == 3
        async with store.open_version("odd//./key", raw=True) as opened:
            assert b"".join([chunk async for chunk in opened.chunks]) == b"odd"
        with pytest.raises(ValidationError):
            await store.head_version("", raw=True)

    run(store, body())


def test_get_file_writes_the_whole_object_into_a_file(
    ceph_rgw: S3Server, s3_store: MakeStore, tmp_path: Path
) -> None:
    """The C client writes an object of several of its 8 MiB ranges into a file (replacing what was
    there) and reports its size; a missing key is ``ObjectNotFoundError``, retried by nobody."""
    store = s3_store(ceph_rgw)
    data = payload((17 << 20) + 5, 7)
    target = tmp_path / "blob"
    target.write_bytes(b"x" * (30 << 20))  # longer than the object: must be replaced, not overwritten

    async def body() -> None:
        await store.put("big", data)
        assert await store.get_file("big", target) == len(data)
        with pytest.raises(ObjectNotFoundError):
            await store.get_file("missing", tmp_path / "missing")

    run(store, body())
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    ("server", "expected"), [("ceph_rgw", "SIGNED_SHA256"), ("moto_server", "CONTENT_MD5")]
)
def test_bodies_carry_the_cheapest_digest_the_server_checks(
    server: str, expected: str, s3_store: MakeStore, request: pytest.FixtureRequest
) -> None:
    # Ceph RGW checks a signed SHA-256 of the body (and refuses a wrong one); moto does not, so there
    # the body carries Content-MD5, which it checks. The probe's object is not left behind.
    store = s3_store(request.getfixturevalue(server))

    async def scenario() -> tuple[BodyCheck, BodyCheck, list[str]]:
        first = await store.body_check()
        again = await store.body_check()
        await store.put("blobs/x", payload(300_000))
        assert await store.get("blobs/x") == payload(300_000)
        return first, again, [meta.key async for meta in store.list("_lorry/")]

    first, again, left = run(store, scenario())
    assert first is again is BodyCheck[expected]
    assert left == []


_WHAT_IS_LOADED = """
import asyncio, os, sys
from lorry.storage.s3 import S3Store

async def main() -> None:
    store = S3Store(sys.argv[1])
    await store.put("k", b"v")
    assert await store.get("k") == b"v"
    assert [m.key async for m in store.list("")] == ["k"]
    await store.delete("k")
    print("botocore" in sys.modules, flush=True)  # after the object calls
    upload = await store.create_multipart("big")  # a call only aiobotocore makes
    await store.abort_multipart("big", upload)
    client = await store._boto()
    print(client.meta.region_name, client.meta.endpoint_url == os.environ["LORRY_TEST_ENDPOINT"])
    await store.close()

asyncio.run(main())
"""


def test_a_store_the_environment_sets_up_loads_botocore_only_for_its_calls(
    ceph_rgw: S3Server, s3_store: MakeStore, aws_isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Endpoint, region and credentials in ``AWS_*`` variables (which botocore reads before any config
    file) and no profile: object calls and listings run without botocore, which is loaded (0.3 s) for
    the first call that needs it, configured the same. A named profile is botocore's to read."""
    bucket = s3_store(ceph_rgw).bucket
    s3_env(monkeypatch, ceph_rgw)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("LORRY_TEST_ENDPOINT", ceph_rgw.endpoint)

    def loaded(*env: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-c", _WHAT_IS_LOADED, f"s3://{bucket}/setup"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, **dict(e.split("=", 1) for e in env)},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert loaded() == ["False", "eu-west-3", "True"]
    aws_isolated.mkdir()
    (aws_isolated / "config").write_text("[profile plain]\nregion = eu-west-3\n")
    assert loaded(f"AWS_CONFIG_FILE={aws_isolated / 'config'}", "AWS_PROFILE=plain") == [
        "True",
        "eu-west-3",
        "True",
    ]
