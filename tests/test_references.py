"""References to http(s)://, s3:// and gs:// sources, against real servers on 127.0.0.1.

A reference records what identifies its source (ETag, size, version id or generation, checksum) and
never copies the content into the store; a download fetches from the source and checks that identity.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import subprocess
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import lorry
from tests.fixtures_gcs import GCSEmulator, GCSStoreFactory
from tests.fixtures_s3 import S3Server

# The original documentation's example bucket.
TABLE_OBJECTS = {
    "images/cat.png": b"\x89PNG cat",
    "images/dog.png": b"\x89PNG dog",
    "checkpoints/model.h5": b"checkpoint weights",
    "model.h5": b"model weights",
    "images-decoy.png": b"next to the prefix, not under it",
}
# (uri suffix, name) -> entry names, as the original's table says.
TABLE = [
    ("model.h5", None, ["model.h5"]),
    ("checkpoints/model.h5", None, ["model.h5"]),
    ("model.h5", "models/mymodel.h5", ["models/mymodel.h5"]),
    ("images", None, ["cat.png", "dog.png"]),
    ("images", "images", ["images/cat.png", "images/dog.png"]),
]


def log_references(*refs: tuple[str, dict[str, Any]]) -> lorry.Artifact:
    """Log one artifact holding the given references; returns it committed."""
    with lorry.init(project="refs") as run:
        artifact = lorry.Artifact(f"refs-{uuid.uuid4().hex[:8]}", type="dataset")
        for uri, options in refs:
            artifact.add_reference(uri, **options)
        run.log_artifact(artifact)
        artifact.wait()
    return artifact


def assert_not_in_store(store_dir: Path, *contents: bytes) -> None:
    for path in store_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for content in contents:
                assert content not in data, f"{path} holds referenced bytes"


def assert_no_leftovers(root: Path) -> None:
    if root.exists():
        assert not [p for p in root.rglob("*") if p.name.endswith(".lorry-tmp")]


# -- an HTTP server -----------------------------------------------------------------------------------


@dataclass
class HttpSource:
    """Files served on 127.0.0.1: ``mode`` per path says which headers the server sends."""

    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)  # "etag" | "length-only" | "bare" | "no-head"
    requests: list[tuple[str, str]] = field(default_factory=list)
    base: str = ""

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def put(self, path: str, data: bytes, mode: str = "etag") -> str:
        self.files[path], self.modes[path] = data, mode
        return self.url(path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.lstrip("/")
        self.requests.append((request.method, path))
        if path not in self.files:
            return web.Response(status=404)
        data, mode = self.files[path], self.modes[path]
        if request.method == "HEAD" and mode == "no-head":
            return web.Response(status=405)
        if mode == "bare":  # chunked, no ETag, no Content-Length
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            if request.method == "GET":
                await response.write(data)
            await response.write_eof()
            return response
        headers = {"Content-Length": str(len(data))}
        if mode in ("etag", "no-head"):
            headers["ETag"] = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        if request.method == "HEAD":
            return web.Response(headers=headers)
        return web.Response(body=data, headers=headers)


def serve(source: HttpSource, context: ssl.SSLContext | None = None) -> Iterator[HttpSource]:
    """Serve ``source`` on 127.0.0.1 from a thread of its own until the generator is closed."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", source.handle)
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port: int = runner.addresses[0][1]
        return port

    port = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    source.base = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    try:
        yield source
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpSource]:
    yield from serve(HttpSource())


@pytest.fixture(scope="module")
def https_self_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpSource]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run([*command, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    yield from serve(HttpSource(), context)


def test_http_etag_and_size_recorded_and_downloaded(
    http_server: HttpSource, store_dir: Path, tmp_path: Path
) -> None:
    data = b"served over http " * 100
    uri = http_server.put(f"{uuid.uuid4().hex}/data.bin", data)
    artifact = log_references((uri, {}))
    entry = artifact.get_entry("data.bin")
    assert entry.ref == uri
    assert entry.digest.startswith("etag:")  # type: ignore[union-attr]
    assert entry.size == len(data)
    root = Path(lorry.Api(project="refs").artifact(artifact.qualified_name).download(tmp_path / "dl"))
    assert (root / "data.bin").read_bytes() == data
    assert_not_in_store(store_dir, data)


def test_http_head_refused_falls_back_to_get(http_server: HttpSource, tmp_path: Path) -> None:
    data = b"no HEAD here"
    uri = http_server.put(f"{uuid.uuid4().hex}/nohead.bin", data, mode="no-head")
    path = uri.removeprefix(http_server.base + "/")
    artifact = log_references((uri, {"name": "x/nohead.bin"}))
    assert [m for m, p in http_server.requests if p == path] == ["HEAD", "GET"]
    entry = artifact.get_entry("x/nohead.bin")
    assert entry.digest is not None and entry.digest.startswith("etag:")
    assert entry.size == len(data)
    assert Path(artifact.download(tmp_path / "dl"), "x/nohead.bin").read_bytes() == data


def test_http_without_etag_warns_and_records_the_uri_only(
    http_server: HttpSource, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = b"chunked, no validators"
    uri = http_server.put(f"{uuid.uuid4().hex}/bare.bin", data, mode="bare")
    with caplog.at_level(logging.WARNING, logger="lorry"):
        artifact = log_references((uri, {}))
    warnings = [r for r in caplog.records if r.name == "lorry" and uri in r.getMessage()]
    assert warnings and "ETag" in warnings[0].getMessage()
    entry = artifact.get_entry("bare.bin")
    assert (entry.digest, entry.size) == (None, None)
    assert Path(artifact.download(tmp_path / "dl"), "bare.bin").read_bytes() == data


def test_http_changed_source_is_an_integrity_error(http_server: HttpSource, tmp_path: Path) -> None:
    folder = uuid.uuid4().hex
    uri = http_server.put(f"{folder}/moving.bin", b"first content")
    sized = http_server.put(f"{folder}/sized.bin", b"length only", mode="length-only")
    artifact = log_references((uri, {"name": "a/moving.bin"}), (sized, {"name": "a/sized.bin"}))
    assert artifact.get_entry("a/sized.bin").digest is None
    http_server.put(f"{folder}/moving.bin", b"second content")
    with pytest.raises(lorry.IntegrityError, match=r"a/moving\.bin"):
        artifact.get_entry("a/moving.bin").download(tmp_path / "one")
    assert not (tmp_path / "one/a/moving.bin").exists()
    http_server.put(f"{folder}/sized.bin", b"a different length", mode="length-only")
    with pytest.raises(lorry.IntegrityError, match=r"a/sized\.bin"):
        artifact.get_entry("a/sized.bin").download(tmp_path / "two")
    assert not (tmp_path / "two/a/sized.bin").exists()
    assert_no_leftovers(tmp_path / "one")
    assert_no_leftovers(tmp_path / "two")


def test_http_checksum_false_contacts_nothing(http_server: HttpSource, tmp_path: Path) -> None:
    path = f"{uuid.uuid4().hex}/lazy.bin"
    uri = http_server.put(path, b"lazy")
    artifact = log_references((uri, {"checksum": False}))
    assert not [r for r in http_server.requests if r[1] == path]
    entry = artifact.get_entry("lazy.bin")
    assert (entry.ref, entry.digest, entry.size) == (uri, None, None)
    assert Path(artifact.download(tmp_path / "dl"), "lazy.bin").read_bytes() == b"lazy"


def test_https_certificates_are_verified(https_self_signed: HttpSource) -> None:
    uri = https_self_signed.put("secure/data.bin", b"behind a self-signed certificate")
    with pytest.raises(lorry.UntrustedCertificateError, match=r"https://127\.0\.0\.1:\d+ is not trusted"):
        lorry.Artifact("tls", type="dataset").add_reference(uri)
    assert https_self_signed.requests == []  # the handshake failed: no request reached the server


def test_http_missing_source_is_not_found(http_server: HttpSource) -> None:
    artifact = lorry.Artifact("missing", type="dataset")
    with pytest.raises(lorry.NotFoundError):
        artifact.add_reference(http_server.url("no/such/file.bin"))


# -- S3 -------------------------------------------------------------------------------------------------


@pytest.fixture
def s3_env(aws_isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``make(server, versioned=False)``: a new bucket whose references resolve through AWS_* config."""
    made: list[tuple[S3Server, str]] = []

    def make(server: S3Server, *, versioned: bool = False) -> str:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
        bucket = f"lorry-refs-{uuid.uuid4().hex[:10]}"
        admin = server.admin()
        admin.create_bucket(Bucket=bucket)
        if versioned:
            admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        made.append((server, bucket))
        return bucket

    yield make
    for server, bucket in made:
        admin = server.admin()
        for page in admin.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                admin.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
        admin.delete_bucket(Bucket=bucket)


def put_objects(server: S3Server, bucket: str, objects: dict[str, bytes]) -> None:
    admin = server.admin()
    for key, data in objects.items():
        admin.put_object(Bucket=bucket, Key=key, Body=data)


@pytest.mark.parametrize(("suffix", "name", "expected"), TABLE)
def test_s3_names_follow_the_original_table(
    moto_server: S3Server, s3_env: Any, suffix: str, name: str | None, expected: list[str]
) -> None:
    bucket = s3_env(moto_server)
    put_objects(moto_server, bucket, TABLE_OBJECTS)
    entries = lorry.Artifact("t", type="dataset").add_reference(f"s3://{bucket}/{suffix}", name=name)
    assert [e.path for e in entries] == expected
    assert all(e.digest is not None and e.digest.startswith("etag:") for e in entries)
    assert all(e.ref == f"s3://{bucket}/{TABLE_KEYS[suffix, e.path]}" for e in entries)


TABLE_KEYS = {
    ("model.h5", "model.h5"): "model.h5",
    ("checkpoints/model.h5", "model.h5"): "checkpoints/model.h5",
    ("model.h5", "models/mymodel.h5"): "model.h5",
    ("images", "cat.png"): "images/cat.png",
    ("images", "dog.png"): "images/dog.png",
    ("images", "images/cat.png"): "images/cat.png",
    ("images", "images/dog.png"): "images/dog.png",
}


def test_s3_log_and_download_never_store_the_bytes(
    moto_server: S3Server, s3_env: Any, store_dir: Path, tmp_path: Path
) -> None:
    bucket = s3_env(moto_server)
    put_objects(moto_server, bucket, TABLE_OBJECTS)
    artifact = log_references((f"s3://{bucket}/images", {"name": "images"}), (f"s3://{bucket}/model.h5", {}))
    assert sorted(artifact.manifest) == ["images/cat.png", "images/dog.png", "model.h5"]
    used = lorry.Api(project="refs").artifact(f"{artifact.collection.name}:latest")
    root = Path(used.download(tmp_path / "dl"))
    assert (root / "images/cat.png").read_bytes() == TABLE_OBJECTS["images/cat.png"]
    assert (root / "images/dog.png").read_bytes() == TABLE_OBJECTS["images/dog.png"]
    assert (root / "model.h5").read_bytes() == TABLE_OBJECTS["model.h5"]
    assert_not_in_store(store_dir, *TABLE_OBJECTS.values())


def test_s3_more_than_max_objects_is_an_error(moto_server: S3Server, s3_env: Any) -> None:
    bucket = s3_env(moto_server)
    put_objects(moto_server, bucket, {f"many/{i:02d}.txt": b"x" for i in range(5)})
    artifact = lorry.Artifact("many", type="dataset")
    with pytest.raises(lorry.ValidationError, match="max_objects=4"):
        artifact.add_reference(f"s3://{bucket}/many", max_objects=4)
    assert len(artifact.add_reference(f"s3://{bucket}/many", max_objects=5)) == 5


def test_s3_changed_source_is_an_integrity_error(moto_server: S3Server, s3_env: Any, tmp_path: Path) -> None:
    bucket = s3_env(moto_server)
    put_objects(moto_server, bucket, {"data/a.bin": b"original"})
    artifact = log_references((f"s3://{bucket}/data/a.bin", {"name": "in/a.bin"}))
    assert artifact.get_entry("in/a.bin").ref == f"s3://{bucket}/data/a.bin"
    put_objects(moto_server, bucket, {"data/a.bin": b"replaced"})
    with pytest.raises(lorry.IntegrityError, match=r"in/a\.bin"):
        artifact.download(tmp_path / "dl")
    assert not (tmp_path / "dl/in/a.bin").exists()
    assert_no_leftovers(tmp_path / "dl")


def test_s3_versioned_source_still_downloads_the_recorded_version(
    moto_server: S3Server, s3_env: Any, tmp_path: Path
) -> None:
    bucket = s3_env(moto_server, versioned=True)
    put_objects(
        moto_server, bucket, {"model.h5": b"weights v1", "ckpt/a.bin": b"a v1", "ckpt/b.bin": b"b v1"}
    )
    artifact = log_references((f"s3://{bucket}/model.h5", {}), (f"s3://{bucket}/ckpt", {"name": "ckpt"}))
    for path in ("model.h5", "ckpt/a.bin", "ckpt/b.bin"):
        assert artifact.manifest[path].version_id not in (None, "null")
    put_objects(moto_server, bucket, {"model.h5": b"weights v2", "ckpt/a.bin": b"a v2"})
    moto_server.admin().delete_object(Bucket=bucket, Key="ckpt/b.bin")  # a delete marker
    root = Path(artifact.download(tmp_path / "dl"))
    assert (root / "model.h5").read_bytes() == b"weights v1"
    assert (root / "ckpt/a.bin").read_bytes() == b"a v1"
    assert (root / "ckpt/b.bin").read_bytes() == b"b v1"


def test_s3_checksum_false_records_the_uri_only(moto_server: S3Server, s3_env: Any, tmp_path: Path) -> None:
    bucket = s3_env(moto_server)
    put_objects(moto_server, bucket, {"lazy/model.h5": b"lazy weights"})
    artifact = log_references((f"s3://{bucket}/lazy/model.h5", {"checksum": False}))
    entry = artifact.manifest["model.h5"]
    assert (entry.ref, entry.digest, entry.size, entry.version_id) == (
        f"s3://{bucket}/lazy/model.h5",
        None,
        None,
        None,
    )
    assert Path(artifact.download(tmp_path / "dl"), "model.h5").read_bytes() == b"lazy weights"


def test_s3_nothing_under_the_uri_is_not_found(moto_server: S3Server, s3_env: Any) -> None:
    bucket = s3_env(moto_server)
    put_objects(moto_server, bucket, {"images-decoy.png": b"x"})
    with pytest.raises(lorry.NotFoundError):
        lorry.Artifact("none", type="dataset").add_reference(f"s3://{bucket}/images")


def test_s3_on_ceph_rgw(ceph_rgw: S3Server, s3_env: Any, store_dir: Path, tmp_path: Path) -> None:
    bucket = s3_env(ceph_rgw)
    put_objects(ceph_rgw, bucket, TABLE_OBJECTS)
    artifact = log_references((f"s3://{bucket}/images", {}), (f"s3://{bucket}/checkpoints/model.h5", {}))
    assert sorted(artifact.manifest) == ["cat.png", "dog.png", "model.h5"]
    root = Path(artifact.download(tmp_path / "dl"))
    assert (root / "cat.png").read_bytes() == TABLE_OBJECTS["images/cat.png"]
    assert (root / "model.h5").read_bytes() == TABLE_OBJECTS["checkpoints/model.h5"]
    assert_not_in_store(store_dir, *TABLE_OBJECTS.values())
    put_objects(ceph_rgw, bucket, {"images/dog.png": b"another dog"})
    with pytest.raises(lorry.IntegrityError, match=r"dog\.png"):
        artifact.download(tmp_path / "again")
    assert not (tmp_path / "again/dog.png").exists()


# -- GCS --------------------------------------------------------------------------------------------------


def gcs_put(emulator: GCSEmulator, bucket: str, objects: dict[str, bytes]) -> None:
    for name, data in objects.items():
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        status, body = emulator.request("POST", f"/upload/storage/v1/b/{bucket}/o?{query}", data)
        assert status == 200, body


@pytest.mark.parametrize(("suffix", "name", "expected"), TABLE)
def test_gcs_names_follow_the_original_table(
    gcs_store_factory: GCSStoreFactory,
    gcs_emulator: GCSEmulator,
    suffix: str,
    name: str | None,
    expected: list[str],
) -> None:
    bucket = gcs_store_factory().bucket
    gcs_put(gcs_emulator, bucket, TABLE_OBJECTS)
    entries = lorry.Artifact("t", type="dataset").add_reference(f"gs://{bucket}/{suffix}", name=name)
    assert [e.path for e in entries] == expected
    assert all(e.digest is not None and e.digest.startswith("md5:") for e in entries)


def test_gcs_log_download_and_changed_source(
    gcs_store_factory: GCSStoreFactory, gcs_emulator: GCSEmulator, store_dir: Path, tmp_path: Path
) -> None:
    bucket = gcs_store_factory().bucket
    gcs_put(gcs_emulator, bucket, TABLE_OBJECTS)
    artifact = log_references((f"gs://{bucket}/images", {"name": "images"}), (f"gs://{bucket}/model.h5", {}))
    assert artifact.manifest["model.h5"].version_id is not None  # the generation
    root = Path(artifact.download(tmp_path / "dl"))
    assert (root / "images/dog.png").read_bytes() == TABLE_OBJECTS["images/dog.png"]
    assert (root / "model.h5").read_bytes() == TABLE_OBJECTS["model.h5"]
    assert_not_in_store(store_dir, *TABLE_OBJECTS.values())
    gcs_put(gcs_emulator, bucket, {"images/dog.png": b"\x89PNG another dog"})
    with pytest.raises(lorry.IntegrityError, match=r"images/dog\.png"):
        artifact.download(tmp_path / "again")
    assert not (tmp_path / "again/images/dog.png").exists()
    assert_no_leftovers(tmp_path / "again")


def test_gcs_max_objects_and_checksum_false(
    gcs_store_factory: GCSStoreFactory, gcs_emulator: GCSEmulator, tmp_path: Path
) -> None:
    bucket = gcs_store_factory().bucket
    gcs_put(gcs_emulator, bucket, {f"many/{i}.txt": str(i).encode() for i in range(3)})
    with pytest.raises(lorry.ValidationError, match="max_objects=2"):
        lorry.Artifact("m", type="dataset").add_reference(f"gs://{bucket}/many", max_objects=2)
    artifact = log_references((f"gs://{bucket}/many/1.txt", {"checksum": False}))
    entry = artifact.manifest["1.txt"]
    assert (entry.ref, entry.digest, entry.size, entry.version_id) == (
        f"gs://{bucket}/many/1.txt",
        None,
        None,
        None,
    )
    assert Path(artifact.download(tmp_path / "dl"), "1.txt").read_bytes() == b"1"
