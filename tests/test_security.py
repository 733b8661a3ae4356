"""Privacy and security, against real servers on 127.0.0.1.

- Encryption at rest. SSE-C and SSE-KMS (rgw's ``testing`` key backend) round trips on a Ceph RGW over
  TLS (``ceph_rgw_tls``), every object lorry wrote checked with a HEAD, and the bytes shown to be out of
  reach without the key. SSE-S3 on moto: Ceph 16 accepts ``x-amz-server-side-encryption: AES256`` and
  stores the object unencrypted (SSE-S3 came with Ceph 17), while moto keeps the header it received and
  returns it, so it shows that lorry asked on every write. The GCS emulator ignores ``kmsKeyName``: a
  request-level test shows that every upload names the key.
- Encryption in transit. The Ceph over TLS with a certificate made for the test, trusted through
  ``LORRY_CA_BUNDLE`` or botocore's ``AWS_CA_BUNDLE``; without either it is refused at once with a
  clear error; ``LORRY_VERIFY_TLS=0`` connects and warns. The same for a GCS endpoint and an https
  reference.
- Secrets. A whole run with an SSE-C key, an AWS secret key and a signed URL as a reference: every log
  record of every logger at DEBUG (botocore's included), the CLI's output, reprs and error messages
  are searched for them.
- Files of the store and the cache are created owner-only under umask 0 (the local store under other
  umasks: ``test_artifacts.py``).
- A reference to a private bucket: no byte of the referenced objects reaches the store or the cache.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import ssl
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

import lorry
from lorry.model.digest import digest_bytes
from lorry.model.layout import blob_key
from lorry.model.secret import Secret, redact_text, redact_uri
from lorry.session import session
from lorry.storage import open_store, tls
from lorry.storage.base import CREATE, Update
from lorry.storage.gcs import GCSStore
from lorry.storage.options import StoreOptions
from lorry.transfer.plan import MULTIPART_THRESHOLD
from tests.conftest import logged
from tests.faultproxy import FaultProxy
from tests.fixtures_s3 import S3Server, _delete_bucket
from tests.fixtures_tls import KMS_KEY_ID, Certificates, TLSCeph
from tests.test_references import HttpSource, serve

PREFIX = "store"
MULTIPART = 33 << 20  # at least the multipart threshold (32 MiB): five 8 MiB parts and a small one


def new_sse_c_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def server_context(certificates: Certificates) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.certificate, certificates.private_key)
    return context


def tls_admin(ceph: TLSCeph) -> Any:
    """A plain boto3 client on the TLS endpoint, trusting the test CA (outside the code under test)."""
    return boto3.client(
        "s3",
        endpoint_url=ceph.https_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ceph.plain.access_key,
        aws_secret_access_key=ceph.plain.secret_key,
        verify=str(ceph.certificates.ca),
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def stored_keys(admin: Any, bucket: str) -> list[str]:
    pages = admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{PREFIX}/")
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def lorry_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorry.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tls_bucket(
    ceph_rgw_tls: TLSCeph, aws_isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], str]]:
    """``make()``: a new bucket on the TLS Ceph. The AWS variables point at its TLS endpoint and
    ``LORRY_CA_BUNDLE`` at the test CA. Buckets are emptied and deleted afterwards (over plain HTTP)."""
    server = ceph_rgw_tls.plain
    made: list[str] = []

    def make() -> str:
        bucket = f"lorry-sec-{uuid.uuid4().hex[:10]}"
        server.admin().create_bucket(Bucket=bucket)
        made.append(bucket)
        return bucket

    monkeypatch.setenv("AWS_ENDPOINT_URL", ceph_rgw_tls.https_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("LORRY_CA_BUNDLE", str(ceph_rgw_tls.certificates.ca))
    yield make
    for bucket in made:
        _delete_bucket(server.admin(), bucket)


@pytest.fixture(scope="module")
def https_source(tls_certificates: Certificates) -> Iterator[HttpSource]:
    """Files served over TLS on 127.0.0.1 with the test CA's certificate."""
    yield from serve(HttpSource(), server_context(tls_certificates))


# -- settings -------------------------------------------------------------------------------------------


def test_settings_refuse_what_cannot_work_without_showing_the_key(tmp_path: Path) -> None:
    short = base64.b64encode(b"sixteen byte key").decode()
    refused = [
        ({"s3_sse": "DES"}, "s3_sse must be one of AES256, aws:kms"),
        ({"s3_sse_kms_key_id": "k"}, "needs s3_sse='aws:kms'"),
        ({"s3_sse": "AES256", "s3_sse_c_key": new_sse_c_key()}, "exclude each other"),
        ({"s3_sse_c_key": short}, "must be 32 bytes"),
        ({"s3_sse_c_key": "not base64!"}, "not valid base64"),
        ({"ca_bundle": str(tmp_path / "missing.pem")}, "ca_bundle names no file"),
    ]
    for overrides, message in refused:
        with pytest.raises(lorry.ValidationError, match=re.escape(message)) as caught:
            lorry.Settings.load(**overrides)
        assert short not in str(caught.value)
    settings = lorry.Settings.load(s3_sse="aws:kms", s3_sse_kms_key_id=KMS_KEY_ID, verify_tls=False)
    assert settings.store_options.for_references() == StoreOptions(verify_tls=False)
    assert dict((n, src) for n, _, src in settings.describe())["verify_tls"] == "argument"


def test_uris_are_shown_without_their_secrets() -> None:
    assert (
        redact_uri("https://u:pw@h/p?X-Goog-Signature=s&a=1#frag")
        == "https://***@h/p?X-Goog-Signature=***&a=***#***"
    )
    assert redact_uri("s3://bucket/key?odd") == "s3://bucket/key?odd"  # a key, not a query
    assert redact_text("GET https://h/p?sig=abc failed") == "GET https://h/p?sig=*** failed"
    assert (repr(Secret("k")), str(Secret("k")), f"{Secret('k')}") == ("Secret('***')", "***", "***")


# -- encryption at rest -------------------------------------------------------------------------------


def test_sse_c_round_trip_over_tls(
    ceph_rgw_tls: TLSCeph, tls_bucket: Callable[[], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = tls_bucket()
    key = new_sse_c_key()
    monkeypatch.setenv("LORRY_STORE", f"s3://{bucket}/{PREFIX}")
    monkeypatch.setenv("LORRY_S3_SSE_C_KEY", key)
    files = {
        "small.txt": b"a sealed note",
        "medium.bin": os.urandom(3 << 20),
        "large.bin": os.urandom(MULTIPART),
    }
    with lorry.init() as run:
        logged(run, "sealed", files)
    monkeypatch.setenv("LORRY_CACHE_DIR", str(tmp_path / "fresh-cache"))  # every byte from the store
    root = Path(lorry.Api().artifact("sealed:latest").download(tmp_path / "down"))
    assert {name: (root / name).read_bytes() for name in files} == files

    admin, raw = tls_admin(ceph_rgw_tls), base64.b64decode(key)
    keys = stored_keys(admin, bucket)
    blobs = {f"{PREFIX}/{blob_key(digest_bytes(data))}": name for name, data in files.items()}
    assert set(blobs) < set(keys)  # blobs, and the manifest and records beside them
    key_md5 = base64.b64encode(hashlib.md5(raw).digest()).decode()
    for stored in keys:  # every object lorry wrote was written with the key
        head = admin.head_object(Bucket=bucket, Key=stored, SSECustomerAlgorithm="AES256", SSECustomerKey=raw)
        assert (head["SSECustomerAlgorithm"], head["SSECustomerKeyMD5"]) == ("AES256", key_md5), stored
    large = next(k for k, name in blobs.items() if name == "large.bin")
    head = admin.head_object(Bucket=bucket, Key=large, SSECustomerAlgorithm="AES256", SSECustomerKey=raw)
    assert head["ETag"].strip('"').endswith("-5"), head["ETag"]  # it went up as a multipart upload

    # The server cannot give the bytes back without the key, or with another: they are encrypted.
    for extra in ({}, {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}):
        with pytest.raises(ClientError) as refused:
            admin.get_object(Bucket=bucket, Key=large, **extra)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)


def test_sse_kms_with_the_servers_test_key(
    ceph_rgw_tls: TLSCeph, tls_bucket: Callable[[], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = tls_bucket()
    monkeypatch.setenv("LORRY_STORE", f"s3://{bucket}/{PREFIX}")
    monkeypatch.setenv("LORRY_S3_SSE", "aws:kms")
    monkeypatch.setenv("LORRY_S3_SSE_KMS_KEY_ID", KMS_KEY_ID)
    files = {"small.txt": b"kept under a managed key", "large.bin": os.urandom(MULTIPART)}
    with lorry.init() as run:
        logged(run, "managed", files)
    monkeypatch.setenv("LORRY_CACHE_DIR", str(tmp_path / "fresh-cache"))
    root = Path(lorry.Api().artifact("managed:latest").download(tmp_path / "down"))
    assert {name: (root / name).read_bytes() for name in files} == files

    admin = tls_admin(ceph_rgw_tls)
    keys = stored_keys(admin, bucket)
    assert len(keys) > len(files)
    for stored in keys:
        head = admin.head_object(Bucket=bucket, Key=stored)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY_ID), stored
    # rgw serves encrypted objects only over TLS: the plain endpoint refuses them.
    with pytest.raises(ClientError, match="InvalidRequest"):
        ceph_rgw_tls.plain.admin().get_object(Bucket=bucket, Key=keys[0])


def test_sse_s3_is_asked_for_on_every_write(
    moto_server: S3Server, s3_bucket: Callable[[S3Server], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_bucket(moto_server)
    monkeypatch.setenv("LORRY_STORE", url)
    monkeypatch.setenv("LORRY_S3_SSE", "AES256")
    with lorry.init() as run:
        artifact = logged(
            run, "sse-s3", {"small.txt": b"server-managed keys", "large.bin": os.urandom(MULTIPART)}
        )
    assert lorry.Api().artifact(f"{artifact.collection.name}:latest").digest == artifact.digest
    admin, bucket = moto_server.admin(), url.split("/")[2]
    pages = admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="team-store/")
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    assert len(keys) > 2
    for stored in keys:  # moto returns the encryption each object was written with
        assert admin.head_object(Bucket=bucket, Key=stored).get("ServerSideEncryption") == "AES256", stored


@contextlib.asynccontextmanager
async def fake_gcs(context: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A GCS JSON-API stand-in on 127.0.0.1 that takes uploads and records their query parameters."""
    seen: list[dict[str, str]] = []

    async def upload(request: web.Request) -> web.Response:
        await request.read()
        seen.append(dict(request.query))
        name = request.query.get("name", "multipart")
        return web.json_response({"name": name, "bucket": "bkt", "size": "4", "generation": "7"})

    app = web.Application()
    app.router.add_post("/upload/storage/v1/b/{bucket}/o", upload)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def test_gcs_uploads_name_the_kms_key(monkeypatch: pytest.MonkeyPatch) -> None:
    kms = "projects/p/locations/global/keyRings/ring/cryptoKeys/lorry"
    monkeypatch.setenv("LORRY_GCS_KMS_KEY", kms)

    async def body() -> list[dict[str, str]]:
        async with fake_gcs() as (endpoint, seen):
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
            store = open_store("gs://bkt/pre", lorry.Settings.load().store_options)
            try:
                await store.put("blobs/a", b"data")
                await store.put("versions/1", b"", CREATE)
                await store.put("aliases/latest", b"v1", Update("7"))
            finally:
                await store.close()
            return seen

    seen = asyncio.run(body())
    assert [query.get("kmsKeyName") for query in seen] == [kms, kms, kms]


# -- encryption in transit ----------------------------------------------------------------------------


def test_untrusted_certificate_is_refused_with_a_clear_error(
    ceph_rgw_tls: TLSCeph, tls_bucket: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORRY_STORE", f"s3://{tls_bucket()}/{PREFIX}")
    monkeypatch.delenv("LORRY_CA_BUNDLE")
    monkeypatch.setenv("LORRY_RETRY_DEADLINE", "600")  # a retried refusal would take ten minutes
    before = session(lorry.Settings.load()).retries.copy()
    started = time.monotonic()
    with pytest.raises(lorry.UntrustedCertificateError) as refused:
        lorry.init()
    assert time.monotonic() - started < 5
    assert session(lorry.Settings.load()).retries.since(before).retries == 0  # final at once: never retried
    message = str(refused.value)
    assert f"TLS certificate of {ceph_rgw_tls.https_endpoint} is not trusted" in message
    assert "LORRY_CA_BUNDLE" in message
    result = lorry_cli("ls")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "is not trusted" in result.stderr
    # botocore's own AWS_CA_BUNDLE is honoured too (a new store: a client resolves it when made).
    monkeypatch.setenv("LORRY_STORE", f"s3://{tls_bucket()}/{PREFIX}")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ceph_rgw_tls.certificates.ca))
    with lorry.init() as run:
        logged(run, "trusted", {"a.txt": b"over TLS"})


def test_turning_verification_off_connects_and_warns(
    ceph_rgw_tls: TLSCeph,
    tls_bucket: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LORRY_STORE", f"s3://{tls_bucket()}/{PREFIX}")
    monkeypatch.delenv("LORRY_CA_BUNDLE")
    monkeypatch.setenv("LORRY_VERIFY_TLS", "0")
    monkeypatch.setattr(tls, "_warned", set())
    monkeypatch.setattr(logging.getLogger("lorry"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="lorry")
    with lorry.init() as run:
        logged(run, "unverified", {"a.txt": b"over TLS, unverified"})
    assert lorry.Api().artifact("unverified:latest").version == "v0"
    warnings = [r.getMessage() for r in caplog.records if "NOT verified" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per endpoint and process
    assert ceph_rgw_tls.https_endpoint in warnings[0]
    monkeypatch.setenv("LORRY_VERIFY_TLS", "maybe")
    with pytest.raises(lorry.ValidationError, match="LORRY_VERIFY_TLS"):
        lorry.Settings.load()


def test_turning_verification_off_reads_no_trust_store(
    ceph_rgw_tls: TLSCeph, tls_bucket: Callable[[], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Verification off means no certificate is checked, so a CA bundle that cannot be read is no
    # reason to fail: neither client reads one.
    unreadable = tmp_path / "not-a-bundle.pem"
    unreadable.write_text("not a certificate\n")
    monkeypatch.setenv("LORRY_STORE", f"s3://{tls_bucket()}/{PREFIX}")
    monkeypatch.delenv("LORRY_CA_BUNDLE")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(unreadable))
    monkeypatch.setenv("LORRY_VERIFY_TLS", "0")
    with lorry.init() as run:
        logged(run, "unverified-no-bundle", {"a.txt": b"over TLS, unverified"})
    assert lorry.Api().artifact("unverified-no-bundle:latest").version == "v0"


def test_gcs_over_tls_trusts_the_ca_bundle_only(tls_certificates: Certificates) -> None:
    async def body() -> None:
        async with fake_gcs(server_context(tls_certificates)) as (endpoint, seen):
            trusted = GCSStore(
                "bkt", endpoint=endpoint, options=StoreOptions(ca_bundle=str(tls_certificates.ca))
            )
            untrusted = GCSStore("bkt", endpoint=endpoint, options=StoreOptions())
            try:
                await trusted.put("a", b"data")
                with pytest.raises(lorry.UntrustedCertificateError, match=f"{endpoint} is not trusted"):
                    await untrusted.put("b", b"data")
            finally:
                await trusted.close()
                await untrusted.close()
            assert [query["name"] for query in seen] == ["a"]  # the refused one never reached the server

    asyncio.run(body())


def test_https_reference_trusts_the_ca_bundle(
    https_source: HttpSource, tls_certificates: Certificates, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uri = https_source.put("tls/data.bin", b"behind a private CA")
    monkeypatch.setenv("LORRY_CA_BUNDLE", str(tls_certificates.ca))
    with lorry.init() as run:
        artifact = lorry.Artifact("tls-ref", type="dataset")
        artifact.add_reference(uri)
        run.log_artifact(artifact)
        artifact.wait()
    assert (Path(artifact.download(tmp_path / "down")) / "data.bin").read_bytes() == b"behind a private CA"
    monkeypatch.delenv("LORRY_CA_BUNDLE")
    with pytest.raises(lorry.UntrustedCertificateError, match=f"{https_source.base} is not trusted"):
        artifact.download(tmp_path / "again")
    with pytest.raises(lorry.UntrustedCertificateError):
        lorry.Artifact("tls-ref-2", type="dataset").add_reference(uri)


# -- secrets ------------------------------------------------------------------------------------------


def capture_every_logger(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything every logger says, at its most verbose: lorry's, botocore's, aiobotocore's DEBUG."""
    monkeypatch.setattr(logging.getLogger("lorry"), "propagate", True)  # the CLI tests may turn it off
    caplog.set_level(logging.DEBUG)
    for name in ("lorry", "botocore", "aiobotocore", "aiohttp", "gcloud", "urllib3", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)


def cli_output(*commands: str) -> dict[str, str]:
    """stdout and stderr of each ``lorry`` command (split on spaces), which must succeed."""
    found = {}
    for command in commands:
        result = lorry_cli(*command.split())
        assert result.returncode == 0, result.stderr
        found[command] = result.stdout + result.stderr
    return found


def error_texts(errors: list[BaseException]) -> list[str]:
    """Each error as a traceback prints it: its message and those of its causes."""
    return ["".join(traceback.format_exception(error)) for error in errors]


def test_secrets_never_appear_in_logs_errors_reprs_or_the_cli(
    ceph_rgw_tls: TLSCeph,
    tls_bucket: Callable[[], str],
    https_source: HttpSource,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    sse_c_key, signature, credential, token = (
        new_sse_c_key(),
        os.urandom(32).hex(),
        f"AKIA{uuid.uuid4().hex[:16].upper()}",
        base64.urlsafe_b64encode(os.urandom(24)).decode(),
    )
    query = (
        f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}%2F20250101%2Fus-east-1"
        f"&X-Amz-Signature={signature}&X-Amz-Security-Token={token}"
    )
    secrets = {
        "SSE-C key": sse_c_key,
        "SSE-C key bytes": repr(base64.b64decode(sse_c_key))[2:-1],
        "AWS secret key": ceph_rgw_tls.plain.secret_key,
        "signature": signature,
        "credential": credential,
        "session token": token,
    }
    monkeypatch.setenv("LORRY_STORE", f"s3://{tls_bucket()}/{PREFIX}")
    monkeypatch.setenv("LORRY_S3_SSE_C_KEY", sse_c_key)
    capture_every_logger(caplog, monkeypatch)

    signed = https_source.put("signed/data.bin", b"signed content") + "?" + query
    with lorry.init() as run:
        artifact = lorry.Artifact("secretive", type="dataset")
        with artifact.new_file("a.txt") as handle:
            handle.write("stored under a customer key")
        # Large enough for a multipart upload: its lifecycle calls carry the key through botocore.
        with artifact.new_file("big.bin", mode="wb") as big:
            big.write(os.urandom(MULTIPART_THRESHOLD + 1))
        artifact.add_reference(signed)
        run.log_artifact(artifact)
        artifact.wait()
        shown = [repr(run), repr(artifact), repr(artifact.files()), repr(list(artifact.manifest.values()))]
    root = Path(lorry.Api().artifact("secretive:latest").download(tmp_path / "down"))
    assert (root / "data.bin").read_bytes() == b"signed content"
    cli = cli_output("config", "ls", "show secretive:latest", "--debug get secretive:latest")
    assert "s3_sse_c_key" in cli["config"]
    assert "X-Amz-Signature=***" in cli["show secretive:latest"]  # named, without its secrets

    settings = lorry.Settings.load()
    store = session(settings).store(settings.store, settings.store_options)
    shown += [repr(settings), str(settings.describe()), repr(settings.store_options), str(vars(settings))]
    shown += [repr(store), repr(getattr(store, "inner", store))]

    with pytest.raises(lorry.NotFoundError) as gone:
        lorry.Artifact("missing", type="dataset").add_reference(https_source.url("nothing.bin") + "?" + query)
    https_source.put("signed/data.bin", b"changed content")  # the source changes: its ETag too
    with pytest.raises(lorry.IntegrityError) as changed:
        artifact.download(tmp_path / "changed")
    assert "X-Amz-Signature=***" in str(changed.value)  # the URI is still named, without its secrets
    monkeypatch.delenv("LORRY_CA_BUNDLE")
    with pytest.raises(lorry.UntrustedCertificateError) as untrusted:
        lorry.Artifact("untrusted", type="dataset").add_reference(signed)
    shown += error_texts([gone.value, changed.value, untrusted.value])

    assert any(record.name.startswith("botocore") for record in caplog.records)  # its DEBUG was seen
    # The https source runs in this process: its own access log (the server's side) is not lorry's.
    records = [r for r in caplog.records if r.name not in ("aiohttp.access", "aiohttp.server")]
    logs = [logging.Formatter().format(record) for record in records]
    everything = "\n".join(shown + logs + list(cli.values()))
    assert [what for what, secret in secrets.items() if secret in everything] == []


# -- files on disk ------------------------------------------------------------------------------------


def test_store_and_cache_files_are_owner_only_under_umask_0(
    moto_server: S3Server,
    s3_bucket: Callable[[S3Server], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Each kind of file the cache holds is seen while it exists: a staging snapshot, an upload
    journal (kept by an upload cut off by a server that went away), downloaded blobs."""
    monkeypatch.setenv("LORRY_STORE", s3_bucket(moto_server))
    upstream = urlsplit(moto_server.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    proxy = FaultProxy((upstream.hostname, upstream.port)).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("LORRY_RETRY_DEADLINE", "1")
    cache = tmp_path / "cache"
    seen: dict[str, list[Path]] = {}

    def modes() -> tuple[dict[Path, int], dict[Path, int]]:
        files = [p for p in cache.rglob("*") if p.is_file()]
        folders = [cache, *(p for p in cache.rglob("*") if p.is_dir())]
        return {p: p.stat().st_mode & 0o777 for p in files}, {p: p.stat().st_mode & 0o777 for p in folders}

    def owner_only(kind: str, under: str) -> None:
        files, folders = modes()
        seen[kind] = [p for p in files if under in p.relative_to(cache).parts]
        assert seen[kind], f"no {kind} in {sorted(files)}"
        assert files == dict.fromkeys(files, 0o600)
        assert folders == dict.fromkeys(folders, 0o700)

    previous = os.umask(0)
    try:
        with lorry.init() as run:
            artifact = logged(run, "private", {"a.bin": b"a" * 100, "b.bin": os.urandom(3 << 20)})
            (tmp_path / "mutable.bin").write_bytes(b"snapshotted into the staging area")
            more = lorry.Artifact("private-2", type="dataset")
            more.add_file(str(tmp_path / "mutable.bin"))
            owner_only("staging snapshot", "staging")  # taken at add_file, removed once stored
            run.log_artifact(more)
            more.wait()

            (tmp_path / "large.bin").write_bytes(os.urandom(MULTIPART))
            proxy.down_when(lambda line: "partNumber=2" in line)
            cut_off = lorry.Artifact("private-3", type="dataset")
            cut_off.add_file(str(tmp_path / "large.bin"), policy="immutable")
            run.log_artifact(cut_off)
            with pytest.raises(lorry.ArtifactFailedError):
                cut_off.wait(timeout=60)
            owner_only("upload journal", "uploads")  # kept for the next attempt to resume
            with contextlib.suppress(lorry.ArtifactFailedError):
                run.finish()
        proxy.up()
        artifact.download(tmp_path / "down")
        owner_only("downloaded blob", "blobs")
    finally:
        os.umask(previous)
        proxy.close()


# -- references ---------------------------------------------------------------------------------------


def test_references_to_a_private_bucket_never_reach_the_store(
    ceph_rgw_tls: TLSCeph, tls_bucket: Callable[[], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source, target = tls_bucket(), tls_bucket()
    objects = {"data/a.bin": os.urandom(64 << 10), "data/b.bin": os.urandom(3 << 20)}
    admin = tls_admin(ceph_rgw_tls)
    for key, data in objects.items():
        admin.put_object(Bucket=source, Key=key, Body=data)
    with pytest.raises(urllib.error.HTTPError) as anonymous:  # private: an unsigned read is refused
        urllib.request.urlopen(f"{ceph_rgw_tls.plain.endpoint}/{source}/data/a.bin", timeout=10)
    assert anonymous.value.code == 403
    monkeypatch.setenv("LORRY_STORE", f"s3://{target}/{PREFIX}")
    with lorry.init() as run:
        artifact = lorry.Artifact("referenced", type="dataset")
        artifact.add_reference(f"s3://{source}/data", name="data")
        run.log_artifact(artifact)
        artifact.wait()
    entries = sorted(artifact.files(), key=lambda e: e.path)
    assert [(e.path, e.ref, e.size) for e in entries] == [
        (f"{k}", f"s3://{source}/{k}", len(v)) for k, v in sorted(objects.items())
    ]
    assert all((e.digest or "").startswith("etag:") for e in entries)
    root = Path(artifact.download(tmp_path / "down"))
    assert {k: (root / k).read_bytes() for k in objects} == objects

    stored = [admin.get_object(Bucket=target, Key=k)["Body"].read() for k in stored_keys(admin, target)]
    cached = [p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert stored  # the manifest and the records
    for data in objects.values():
        for sample in (data[:64], data[len(data) // 2 : len(data) // 2 + 64], data[-64:]):
            assert not any(sample in held for held in stored + cached)
