"""Real S3 servers for the tests, started once per session on 127.0.0.1.

- ``ceph_rgw``: a one-node Ceph cluster with the RADOS Gateway, by ``scripts/servers/ceph-rgw.sh``
  (which installs the Debian packages if they are missing). If it cannot start, the tests that use
  it fail: it is never skipped.
- ``moto_server``: moto's S3 in a subprocess.
- ``s3_store``: a factory, per test, of an ``S3Store`` on a fresh bucket of a given server; it empties
  and deletes the bucket afterwards (RGW keeps its data in RAM).

The machine's AWS configuration never reaches a test: ``aws_isolated`` removes every ``AWS_*``
variable and points the config and credentials files at paths that do not exist.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]

from lorry.storage.s3 import S3Store

CEPH_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "servers" / "ceph-rgw.sh"


@dataclass(frozen=True)
class S3Server:
    """Where a test server listens and the keys it accepts."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str

    def admin(self) -> Any:
        """A plain boto3 client for setting up and cleaning up buckets (outside the code under test)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )


@contextlib.contextmanager
def running_ceph(what: str, env: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Start a one-node Ceph with RGW by ``ceph-rgw.sh`` (``env`` adds its settings), yield the
    ``LORRY_RGW_*`` values it prints, and stop it afterwards. A start that fails fails the test."""
    # A short directory: Ceph's admin sockets live under it and socket paths are limited to 107 bytes.
    directory = tempfile.mkdtemp(prefix="lorry-rgw-")
    try:
        result = subprocess.run(
            [str(CEPH_SCRIPT), "start", directory],
            capture_output=True,
            text=True,
            timeout=900,  # includes apt-get on a fresh machine
            check=False,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as exc:
        subprocess.run([str(CEPH_SCRIPT), "stop", directory], check=False)
        pytest.fail(f"ceph-rgw.sh start ({what}) timed out: {exc.stderr!r}")
    if result.returncode != 0:
        pytest.fail(
            f"{what} did not start (exit {result.returncode}); logs in {directory}/log\n{result.stderr}"
        )
    try:
        yield dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    finally:
        subprocess.run([str(CEPH_SCRIPT), "stop", directory], check=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def ceph_rgw() -> Iterator[S3Server]:
    with running_ceph("Ceph RGW") as env:
        yield S3Server(
            name="ceph-rgw",
            endpoint=env["LORRY_RGW_ENDPOINT"],
            access_key=env["LORRY_RGW_ACCESS_KEY"],
            secret_key=env["LORRY_RGW_SECRET_KEY"],
        )


# moto with its conditional writes made atomic (it checks, then writes, on many threads at once).
MOTO_LAUNCHER = Path(__file__).with_name("moto_server.py")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[S3Server]:
    port = _free_port()
    # moto logs every request: into a file, as a pipe nobody reads would fill up and block it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, str(MOTO_LAUNCHER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            endpoint = f"http://127.0.0.1:{port}"
            _wait_until_serving(endpoint, process, log)
            yield S3Server(name="moto", endpoint=endpoint, access_key="moto-key", secret_key="moto-secret")
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def aws_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``AWS_*`` variable and no AWS config file of the machine is visible; returns a scratch dir."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    scratch = tmp_path / "aws"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(scratch / "no-such-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(scratch / "no-such-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return scratch


_bucket_numbers = itertools.count()

MakeStore = Callable[..., S3Store]


@pytest.fixture
def s3_store(aws_isolated: Path) -> Iterator[MakeStore]:
    """``s3_store(server, prefix="p/q")``: an ``S3Store`` on a new, empty bucket of ``server``.

    A decoy object is put next to the prefix (``<prefix>-decoy``) so that a store which leaks keys
    from outside its prefix fails the listing tests. Buckets are emptied and deleted afterwards.
    """
    made: list[tuple[S3Server, str]] = []

    def make(server: S3Server, prefix: str = "p/q", **options: Any) -> S3Store:
        bucket = f"lorry-{next(_bucket_numbers)}-{uuid.uuid4().hex[:8]}"
        admin = server.admin()
        admin.create_bucket(Bucket=bucket)
        made.append((server, bucket))
        if prefix:
            admin.put_object(Bucket=bucket, Key=f"{prefix}-decoy", Body=b"outside the store")
        options.setdefault("endpoint_url", server.endpoint)
        options.setdefault("access_key_id", server.access_key)
        options.setdefault("secret_access_key", server.secret_key)
        return S3Store(f"s3://{bucket}/{prefix}", **options)

    yield make
    for server, bucket in made:
        _delete_bucket(server.admin(), bucket)


def _delete_bucket(admin: Any, bucket: str) -> None:
    for page in admin.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            admin.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            admin.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    admin.delete_bucket(Bucket=bucket)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_serving(
    endpoint: str, process: subprocess.Popen[bytes], log: IO[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"moto_server exited with {process.returncode}: {log.read().decode()[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(endpoint, timeout=1):
            return
        time.sleep(0.05)
    pytest.fail(f"moto_server did not answer on {endpoint} within {timeout} s")


def s3_env(monkeypatch: pytest.MonkeyPatch, server: S3Server) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def s3_bucket(aws_isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Server, str]]:
    """Set by ``use_s3``: a fresh bucket on a server, with the AWS variables pointing at it."""
    made: list[tuple[S3Server, str]] = []

    def use(server: S3Server) -> str:
        bucket = f"lorry-api-{uuid.uuid4().hex[:10]}"
        server.admin().create_bucket(Bucket=bucket)
        made.append((server, bucket))
        s3_env(monkeypatch, server)
        return f"s3://{bucket}/team-store"

    yield use  # type: ignore[misc]
    for server, bucket in made:
        _delete_bucket(server.admin(), bucket)
