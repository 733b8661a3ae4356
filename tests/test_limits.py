"""The limits the README names bound what they name: requests in flight (``LORRY_MAX_REQUESTS``),
bytes of file content held in memory (``LORRY_MAX_MEMORY``) and files open at once
(``LORRY_MAX_OPEN_FILES``). Requests and request bodies are counted by a proxy in front of Ceph RGW;
open files by the process's own descriptor table, sampled while it works."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import lorry
from lorry import session as session_module
from tests.faultproxy import FaultProxy
from tests.fixtures_s3 import S3Server

KiB = 1 << 10
MiB = 1 << 20


@pytest.fixture
def proxy(ceph_rgw: S3Server, s3_bucket: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fresh store on Ceph RGW, reached through a proxy that counts what is in flight."""
    monkeypatch.setenv("LORRY_STORE", s3_bucket(ceph_rgw))
    upstream = urlsplit(ceph_rgw.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    counting = FaultProxy((upstream.hostname, upstream.port)).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", counting.endpoint)
    monkeypatch.setenv("LORRY_TRANSFER_PROCESS", "never")  # counted here, in this process
    monkeypatch.setenv("LORRY_PROGRESS", "0")
    session_module.close_session()  # limits come from the settings the process's engine starts with
    try:
        yield counting
    finally:
        session_module.close_session()  # the next test starts an engine with the default limits again
        counting.close()


def _log_and_download(folder: Path, down: Path) -> lorry.Artifact:
    with lorry.init() as run:
        artifact = lorry.Artifact("bounded", type="dataset")
        artifact.add_dir(folder, policy="immutable")
        run.log_artifact(artifact)
        artifact.wait()
    lorry.Api().artifact("bounded:v0").download(down)
    return artifact


def _small_files(root: Path, count: int) -> Path:
    rng = random.Random(3)
    for i in range(count):
        path = root / f"d{i % 4}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(1, 40_000)))
    return root


def test_max_requests_bounds_the_requests_in_flight(
    proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORRY_MAX_REQUESTS", "3")
    _log_and_download(_small_files(tmp_path / "src", 120), tmp_path / "down")
    assert proxy.counts["requests"] >= 240  # every file went up and came down
    assert 1 < proxy.peak_in_flight <= 3, proxy.peak_in_flight


def test_a_large_file_goes_up_in_8_mib_parts_four_at_a_time(proxy: FaultProxy, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(random.Random(9).randbytes(40 * MiB))
    lines: list[str] = []
    proxy.before = lines.append
    _log_and_download(tmp_path / "src", tmp_path / "down")
    assert sum("partNumber=" in line for line in lines) == 5  # 40 MiB in 8 MiB parts
    assert 2 * 8 * MiB < proxy.peak_body_bytes <= 4 * 8 * MiB, proxy.peak_body_bytes / MiB


def test_max_memory_bounds_the_bytes_in_flight(
    proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two multipart files (8 MiB parts, four in flight per file) under a 16 MiB budget: at most two
    parts' bodies are on their way at once, not eight."""
    monkeypatch.setenv("LORRY_MAX_MEMORY", str(16 * MiB))
    rng = random.Random(5)
    for name in ("a.bin", "b.bin"):
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / name).write_bytes(rng.randbytes(34 * MiB))
    _log_and_download(tmp_path / "src", tmp_path / "down")
    # The budget holds parts' bodies; a completion's small XML may be on its way beside them.
    assert 8 * MiB < proxy.peak_body_bytes <= 16 * MiB + 64 * KiB, proxy.peak_body_bytes / MiB


def test_max_open_files_bounds_the_files_open(
    proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two files at a time with ``LORRY_MAX_OPEN_FILES=2``: uploads hold only their sources open;
    a download holds its target, and the cache's copy it comes from or goes to."""
    monkeypatch.setenv("LORRY_MAX_OPEN_FILES", "2")
    source = _small_files(tmp_path / "src", 20)
    rng = random.Random(7)
    for i in range(12):  # files above the small-file size go one by one, each open while it moves
        (source / f"large-{i}.bin").write_bytes(rng.randbytes(MiB + 300_000))
    watched = (str(source), str(tmp_path / "down"), str(tmp_path / "cache"))
    peak = {"up": 0, "down": 0}
    phase = "up"
    done = threading.Event()

    def sample() -> None:  # the files of the test's folders this process holds open, as often as it can
        while not done.is_set():
            held = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    held += os.readlink(f"/proc/self/fd/{fd}").startswith(watched)
                except OSError:
                    continue
            peak[phase] = max(peak[phase], held)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with lorry.init() as run:
            artifact = lorry.Artifact("bounded", type="dataset")
            artifact.add_dir(source, policy="immutable")
            run.log_artifact(artifact)
            artifact.wait()
        phase = "down"
        lorry.Api().artifact("bounded:v0").download(tmp_path / "down")
    finally:
        done.set()
        sampler.join(timeout=10)
    assert peak["up"] <= 2, peak
    assert 1 <= peak["down"] <= 4, peak  # 1: the sampler does see the files open
