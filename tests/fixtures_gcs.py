"""Fixtures for the GCS store: a gcp-storage-emulator per test session, a fresh bucket per test.

The emulator runs in memory on 127.0.0.1 on a free port; it is stopped by its PID when the session
ends. ``STORAGE_EMULATOR_HOST`` is set only inside the tests that ask for a GCS store (through
``monkeypatch``), so no other test sees it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lorry.storage.gcs import EMULATOR_ENV, GCSStore

START_TIMEOUT = 30.0
PROJECT = "lorry-test"

# Deleted objects are dropped at once, not kept for a week (real GCS's default).
_NO_SOFT_DELETE = {"softDeletePolicy": {"retentionDurationSeconds": "0"}}

# No proxies, whatever the environment says: the emulator is on loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class GCSEmulator:
    """A running gcp-storage-emulator."""

    endpoint: str  # http://127.0.0.1:PORT
    pid: int

    def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """One JSON-API request; returns the status and the body (errors included, not raised).

        ``body``: bytes are sent as they are (a media upload), anything else as JSON.
        """
        req = urllib.request.Request(self.endpoint + path, method=method)
        if isinstance(body, bytes):
            req.data = body
            req.add_header("Content-Type", "application/octet-stream")
        elif body is not None:
            req.data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        try:
            with _opener.open(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def create_bucket(self, name: str) -> None:
        # gcloud-aio-storage has no create-bucket call: POST the JSON API directly.
        bucket = {"name": name, **_NO_SOFT_DELETE}
        status, body = self.request("POST", f"/storage/v1/b?project={PROJECT}", bucket)
        if status != 200:
            raise RuntimeError(f"cannot create bucket {name}: HTTP {status} {body[:200]!r}")

    def wipe(self) -> None:
        """Drop every bucket and object (the emulator's own ``/wipe``): far faster than deleting objects
        one by one, as the emulator rewrites all of its metadata on every change."""
        status, body = self.request("GET", "/wipe")
        if status != 200:
            raise RuntimeError(f"cannot wipe the emulator: HTTP {status} {body[:200]!r}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The emulator with GCS's write preconditions added (it ignores ifGenerationMatch by itself).
LAUNCHER = Path(__file__).with_name("gcs_emulator.py")


def _emulator_command() -> list[str]:
    if importlib.util.find_spec("gcp_storage_emulator") is None:  # a dev extra: fail, never skip
        pytest.fail("gcp-storage-emulator is not installed: scripts/test installs it (the dev extras)")
    return [sys.executable, str(LAUNCHER)]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # by PID: this process and no other
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def start_emulator(log_dir: Path, *, preconditions: bool = True) -> Iterator[GCSEmulator]:
    """Run gcp-storage-emulator on a free port until the block ends; with ``preconditions`` (the
    default) it enforces ``ifGenerationMatch`` as GCS does, else it runs exactly as it ships."""
    command = _emulator_command() if preconditions else [sys.executable, "-m", "gcp_storage_emulator"]
    log_path = log_dir / "emulator.log"
    for _attempt in range(3):  # the free port may be taken between choosing and binding it
        port = _free_port()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*command, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        emulator = GCSEmulator(endpoint=f"http://127.0.0.1:{port}", pid=proc.pid)
        deadline = time.monotonic() + START_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                status, _ = emulator.request("GET", f"/storage/v1/b?project={PROJECT}")
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200:
                try:
                    yield emulator
                finally:
                    _stop(proc)
                return
            time.sleep(0.1)
        _stop(proc)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"gcp-storage-emulator did not start; its log ({log_path}) ends:\n{tail}")


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSEmulator]:
    """The emulator (with GCS's preconditions) for the whole session, on a free port."""
    with start_emulator(tmp_path_factory.mktemp("gcs-emulator")) as emulator:
        yield emulator


GCSStoreFactory = Callable[..., GCSStore]


@pytest.fixture
def gcs_store_factory(
    gcs_emulator: GCSEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GCSStoreFactory]:
    """``make(prefix="")``: a ``GCSStore`` on a fresh, empty bucket of the emulator.

    The store finds the emulator through ``STORAGE_EMULATOR_HOST``, set for this test only. Every bucket
    made here is dropped afterwards, with everything else in the emulator (tests run one at a time).
    The stores open at most 4 connections: the emulator's listen backlog is 5 (socketserver's
    default) and it answers HTTP/1.0, one connection per request, so more would be reset.
    """
    monkeypatch.setenv(EMULATOR_ENV, gcs_emulator.endpoint)
    buckets: list[str] = []

    def make(prefix: str = "") -> GCSStore:
        bucket = f"lorry-test-{uuid.uuid4().hex[:12]}"
        gcs_emulator.create_bucket(bucket)
        buckets.append(bucket)
        return GCSStore(bucket, prefix, max_connections=4)

    yield make
    if buckets:
        gcs_emulator.wipe()
