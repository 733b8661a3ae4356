"""Faults, measured with a real server: Ceph RGW behind a proxy that breaks requests on purpose
(``tests/faultproxy.py``), behind a lossy link between network namespaces, and local disks that are
full or read-only.

What must hold: a flaky network, a throttling server or a full disk costs time, never data. Every
version commits with the right bytes, downloads are byte-identical, no multipart upload is left open,
everything ends in bounded time, and what cannot be done fails with a clear error and leaves nothing
half-made. Each test prints what it injected and what it verified.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from blake3 import blake3

import lorry
from lorry import _bridge
from lorry.errors import ArtifactFailedError, LocalFileError
from lorry.session import session
from lorry.settings import Settings
from lorry.transfer.retry import RetryStats
from tests.disks import mount_tmpfs, unmount
from tests.faultproxy import FAULT_KINDS, FaultProxy, Faults
from tests.fixtures_s3 import S3Server

MiB = 1 << 20
T = TypeVar("T")

# Rates per request. About one request in six goes wrong; each kind is common enough to occur several
# times in the workload below (one that can only hit some requests has a higher rate).
FLAKY = Faults(
    reset_request=0.06,  # only requests with a body can be cut in their body
    reset_response=0.03,
    error_500=0.03,
    slowdown=0.03,
    stall=0.02,
    truncate=0.04,  # only responses with a body can be truncated
    latency=0.02,
    retry_after=1,
    stall_seconds=60.0,  # far longer than the test waits: only lorry's request timeout ends a stall
)
REQUEST_TIMEOUT = "2"  # seconds without progress before lorry abandons a request (LORRY_REQUEST_TIMEOUT)


@dataclass
class Rig:
    """Ceph RGW, the proxy in front of it, and the bucket the test's store lives in."""

    proxy: FaultProxy
    server: S3Server
    bucket: str
    url: str

    def open_uploads(self) -> list[dict[str, Any]]:
        listing = self.server.admin().list_multipart_uploads(Bucket=self.bucket)
        uploads: list[dict[str, Any]] = listing.get("Uploads", [])
        return uploads

    def check_blobs(self, expected: set[str]) -> int:
        """Read every blob of the store straight from RGW (not through lorry, not through the proxy):
        each holds exactly the bytes its name is the digest of, and they are the ``expected`` ones.
        Returns the bytes read."""
        admin = self.server.admin()
        found: set[str] = set()
        read = 0
        pages = admin.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="faults/blobs/")
        for item in (item for page in pages for item in page.get("Contents", [])):
            data = admin.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            name = item["Key"].rsplit("/", 1)[1]
            assert name == digest_of(data), item["Key"]
            found.add(name)
            read += len(data)
        assert found == expected
        return read


@pytest.fixture
def rig(ceph_rgw: S3Server, s3_bucket: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    url: str = s3_bucket(ceph_rgw)  # a fresh bucket, emptied and deleted afterwards
    url = url.replace("/team-store", "/faults")
    upstream = urlsplit(ceph_rgw.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    seed = int(os.environ.get("LORRY_FAULT_SEED", "7"))  # another seed, another sequence of faults
    proxy = FaultProxy((upstream.hostname, upstream.port), seed=seed).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("LORRY_STORE", url)
    monkeypatch.setenv("LORRY_REQUEST_TIMEOUT", REQUEST_TIMEOUT)
    monkeypatch.setenv("LORRY_RETRY_DEADLINE", "90")
    monkeypatch.setenv("LORRY_PROGRESS", "0")
    try:
        yield Rig(proxy, ceph_rgw, urlsplit(url).netloc, url)
    finally:
        proxy.close()


def retry_stats() -> RetryStats:
    return session(Settings.load()).retries.copy()


def bounded(coro: Coroutine[Any, Any, T], seconds: float, what: str) -> T:
    """Run ``coro`` on lorry's loop; fail the test (and cancel it) if it takes longer than ``seconds``."""
    future = _bridge.bridge().submit(coro)
    try:
        return future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        future.cancel()
        pytest.fail(f"{what} did not end within {seconds} s")


def digest_of(data: bytes) -> str:
    return blake3(data).hexdigest()


def write_random(path: Path, size: int, rng: random.Random) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rng.randbytes(size))
    return path


def check_download(artifact: lorry.Artifact, sources: dict[str, Path], root: Path, seconds: float) -> int:
    """Download ``artifact`` into ``root`` within ``seconds`` and compare it byte for byte with
    ``sources`` (entry → original file); return the bytes compared."""
    folder = Path(bounded(artifact.download_async(root), seconds, f"download of {artifact.name}"))
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert found == sorted(sources), f"{artifact.qualified_name}: {found}"
    compared = 0
    for entry, source in sources.items():
        data = (folder / entry).read_bytes()
        assert data == source.read_bytes(), f"{artifact.qualified_name}: {entry} differs"
        compared += len(data)
    artifact.verify(folder)
    return compared


def fault_line(proxy: FaultProxy) -> str:
    kinds = ", ".join(f"{kind} {proxy.counts[kind]}" for kind in FAULT_KINDS)
    return f"{proxy.faults_injected} faults injected ({kinds})"


# -- many artifacts through a flaky proxy ----------------------------------------------------------------


def workload(root: Path) -> list[tuple[str, dict[str, Path]]]:
    """What the workload logs, in order: (artifact name, entry → file). Four collections of four
    versions each hold small files (one shared by all of them) and a file of 1-3 MiB; a fifth holds
    two versions of a file large enough for a multipart upload (8 MiB parts from 32 MiB)."""
    rng = random.Random(11)
    labels = write_random(root / "labels.csv", 64 << 10, rng)  # the same in every shard: stored once
    plan: list[tuple[str, dict[str, Path]]] = []
    for version in range(4):
        for shard in range(4):
            base = root / f"shard{shard}-v{version}"
            files = {f"part-{i}.bin": base / f"part-{i}.bin" for i in range(5)}
            for path in files.values():
                write_random(path, rng.randrange(0, 256 << 10), rng)
            files["rows.bin"] = write_random(base / "rows.bin", rng.randrange(1 * MiB, 3 * MiB), rng)
            files["labels.csv"] = labels
            plan.append((f"shard-{shard}", files))
    for version, size in enumerate([34 * MiB + 12345, 41 * MiB]):
        plan.append(("model", {"model.bin": write_random(root / f"model-v{version}.bin", size, rng)}))
    return plan


def test_workload_under_faults_loses_nothing(rig: Rig, tmp_path: Path) -> None:
    """Small files and multipart-sized ones, many versions, with resets, 500s, 503 SlowDown, stalls,
    truncated responses and latency on about one request in six, uploads and downloads alike."""
    plan = workload(tmp_path / "src")
    rig.proxy.faults = FLAKY
    before = retry_stats()
    started = time.monotonic()
    with lorry.init(job_type="faults") as run:
        logged = []
        for name, files in plan:
            artifact = lorry.Artifact(name, type="dataset")
            for entry, path in files.items():
                artifact.add_file(path, name=entry, policy="immutable")
            run.log_artifact(artifact)
            logged.append(artifact)
        for artifact in logged:
            artifact.wait(timeout=150 - (time.monotonic() - started))
    uploaded = time.monotonic() - started

    versions = {name: 0 for name, _ in plan}
    for artifact, (name, _) in zip(logged, plan, strict=True):  # call order is version order
        assert artifact.version == f"v{versions[name]}"
        versions[name] += 1

    compared = sum(  # fresh folders, an empty cache: every byte comes through the faults again
        check_download(artifact, files, tmp_path / "down" / str(index), 150 - (time.monotonic() - started))
        for index, (artifact, (_, files)) in enumerate(zip(logged, plan, strict=True))
    )
    elapsed = time.monotonic() - started
    spent = retry_stats().since(before)
    requests = rig.proxy.counts["requests"]

    rig.proxy.quiet()
    assert rig.open_uploads() == []
    expected = {digest_of(path.read_bytes()) for _, files in plan for path in files.values()}
    stored = rig.check_blobs(expected)

    print(
        f"\nworkload under faults: {len(logged)} versions of {len(versions)} artifacts committed, "
        f"{len(expected)} blobs ({stored / MiB:.0f} MiB) checked on the server, "
        f"{compared / MiB:.0f} MiB downloaded and compared byte for byte; {requests} requests, "
        f"{fault_line(rig.proxy)}, {spent.retries} retries ({spent.waited:.1f} s of backoff); "
        f"no multipart upload left; uploads {uploaded:.1f} s, all {elapsed:.1f} s"
    )
    assert rig.proxy.faults_injected >= 40, "too few faults to prove anything"
    assert all(rig.proxy.counts[kind] > 0 for kind in FAULT_KINDS), rig.proxy.counts
    assert spent.retries >= rig.proxy.faults_injected // 2
    assert spent.gave_up == 0
    assert elapsed < 150
    # Every stall was ended by lorry, at its 2 s request timeout (or sooner, when it gave the request
    # up for another reason), never by the proxy's 60 s.
    assert rig.proxy.counts["stalls waited out"] == 0
    assert all(s < 3 for s in rig.proxy.abandoned), rig.proxy.abandoned
    assert sum(s >= 1.8 for s in rig.proxy.abandoned) >= 3, rig.proxy.abandoned
    assert rig.proxy.expect_continue == []


# -- a request that makes no progress --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "request_line"),
    [("answer", "PUT /faults/blobs/"), ("body", "partNumber=2")],
)
def test_a_stalled_request_is_abandoned_at_the_request_timeout(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, request_line: str
) -> None:
    """The proxy holds one request for a minute, far past the test's patience: having taken the whole
    request it never answers, or it stops taking the body of an 8 MiB part halfway. lorry abandons the
    request after ``LORRY_REQUEST_TIMEOUT`` (1 s here), retries it, and the version commits in
    seconds. No request asks for ``Expect: 100-continue``, whose wait has no timeout."""
    monkeypatch.setenv("LORRY_REQUEST_TIMEOUT", "1")
    rng = random.Random(23)
    files = {"notes.bin": write_random(tmp_path / "notes.bin", 100_000, rng),
             "model.bin": write_random(tmp_path / "model.bin", 34 * MiB, rng)}
    # Half of a stall's rate falls before the answer and half during it: 2.0 makes it certain before.
    rig.proxy.faults = Faults(stall=2.0, stall_where=where, stall_seconds=60,
                              only=lambda line: request_line in line.replace(f"/{rig.bucket}/", "/"), limit=1)
    begin = time.monotonic()
    with lorry.init(job_type="stall") as run:
        artifact = lorry.Artifact("model", type="model")
        for entry, path in files.items():
            artifact.add_file(path, name=entry, policy="immutable")
        run.log_artifact(artifact)
        assert artifact.wait(timeout=20).version == "v0"
    took = time.monotonic() - begin
    assert rig.proxy.counts["stall"] == 1, rig.proxy.counts
    if where == "answer":  # the proxy reads on, so it sees when the client gives up
        assert len(rig.proxy.abandoned) == 1 and 0.9 <= rig.proxy.abandoned[0] < 3, rig.proxy.abandoned
        assert rig.proxy.counts["stalls waited out"] == 0
    assert took < 20, took
    assert rig.proxy.expect_continue == []
    assert rig.open_uploads() == []
    print(f"\na request stalled ({where}) for up to 60 s: abandoned after "
          f"{rig.proxy.abandoned or 'the timeout'} s, the version committed {took:.1f} s after the log")


# -- damage on the way, and failures that do not pass -------------------------------------------------------


@pytest.mark.parametrize("request_line", ["PUT /faults/blobs/", "partNumber=3"])
def test_a_body_damaged_on_the_way_is_refused_by_the_server(
    rig: Rig, tmp_path: Path, request_line: str
) -> None:
    """One byte of a blob's body (or of a part's) is changed between lorry and the server: the body's
    SHA-256 in the signature makes the server refuse it (``400 XAmzContentSHA256Mismatch``), the
    request is sent again, and the store holds only the right bytes."""
    rng = random.Random(29)
    files = {"notes.bin": write_random(tmp_path / "notes.bin", 200_000, rng),
             "model.bin": write_random(tmp_path / "model.bin", 34 * MiB, rng)}
    aimed = lambda line: request_line in line.replace(f"/{rig.bucket}/", "/")  # noqa: E731
    rig.proxy.faults = Faults(corrupt=1.0, only=aimed, limit=1)
    with lorry.init(job_type="damaged") as run:
        artifact = lorry.Artifact("model", type="model")
        for entry, path in files.items():
            artifact.add_file(path, name=entry, policy="immutable")
        run.log_artifact(artifact)
        assert artifact.wait(timeout=60).version == "v0"
    assert rig.proxy.counts["corrupt"] == 1, rig.proxy.counts
    # Two refusals: the damage, and the probe that found the server checks a signed SHA-256 (a PUT
    # signed with a wrong one, made once per store).
    assert rig.proxy.counts["status 400"] == 2, rig.proxy.counts
    rig.proxy.quiet()
    assert rig.open_uploads() == []
    rig.check_blobs({digest_of(path.read_bytes()) for path in files.values()})


def test_with_the_body_check_off_a_damaged_body_is_found_when_read(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LORRY_S3_BODY_CHECK=0`` (the README): no probe and no digest of the body is sent, so a body
    damaged on the way is stored as it arrived; reading it back fails its BLAKE3 digest."""
    monkeypatch.setenv("LORRY_S3_BODY_CHECK", "0")
    data = write_random(tmp_path / "notes.bin", 200_000, random.Random(30))
    aimed = lambda line: "PUT /faults/blobs/" in line.replace(f"/{rig.bucket}/", "/")  # noqa: E731
    rig.proxy.faults = Faults(corrupt=1.0, only=aimed, limit=1)
    with lorry.init(job_type="unchecked") as run:
        artifact = lorry.Artifact("notes", type="dataset")
        artifact.add_file(data, policy="immutable")
        run.log_artifact(artifact)
        assert artifact.wait(timeout=60).version == "v0"
    assert rig.proxy.counts["corrupt"] == 1, rig.proxy.counts
    assert rig.proxy.counts["status 400"] == 0, rig.proxy.counts  # neither a probe nor a refusal
    rig.proxy.quiet()
    with pytest.raises(lorry.IntegrityError, match="does not match its digest"):
        lorry.Api().artifact("notes:v0").download(tmp_path / "down")
    monkeypatch.setenv("LORRY_S3_BODY_CHECK", "sometimes")
    with pytest.raises(lorry.ValidationError, match="LORRY_S3_BODY_CHECK must be 1 or 0"):
        lorry.Settings.load()


def test_a_multipart_upload_that_fails_for_good_is_aborted(rig: Rig, tmp_path: Path) -> None:
    """A part is refused with ``403 AccessDenied``, which no retry cures: the version fails at once,
    naming the refusal, and the upload is aborted, so no orphaned multipart upload is left."""
    data = write_random(tmp_path / "model.bin", 34 * MiB, random.Random(31))
    rig.proxy.faults = Faults(denied=1.0, only=lambda line: "partNumber=2" in line, limit=1)
    begin = time.monotonic()
    with lorry.init(job_type="denied") as run:
        artifact = lorry.Artifact("model", type="model")
        artifact.add_file(data, policy="immutable")
        run.log_artifact(artifact)
        with pytest.raises(ArtifactFailedError) as failed:
            artifact.wait(timeout=60)
        with contextlib.suppress(ArtifactFailedError):
            run.finish()
    assert time.monotonic() - begin < 20
    assert "AccessDenied" in str(failed.value.__cause__ or failed.value) or "denied" in str(failed.value)
    assert rig.proxy.counts["denied"] == 1
    rig.proxy.quiet()
    assert rig.open_uploads() == []


# -- one lost answer at the worst moment ---------------------------------------------------------------------

def _put(part: str) -> Callable[[str], bool]:
    return lambda line: line.startswith("PUT ") and part in line


# What the server did, whose answer never reaches lorry: the n-th request whose first line matches.
LOST_ANSWERS: dict[str, tuple[Callable[[str], bool], int]] = {
    "create multipart upload": (lambda line: line.startswith("POST ") and "?uploads " in line, 1),
    "complete multipart upload": (lambda line: line.startswith("POST ") and "?uploadId=" in line, 1),
    "create run record": (_put("/runs/"), 1),
    "create version record": (_put("/versions/0.json"), 1),
    "move head": (_put("/head.json"), 1),
    # the conditional-write probe: its create, and its compare-and-swap (after a create that conflicts)
    "create probe object": (_put("/_lorry/probe/"), 1),
    "swap probe object": (_put("/_lorry/probe/"), 3),
}


def nth(n: int, matches: Callable[[str], bool]) -> Callable[[str], bool]:
    seen = 0

    def check(line: str) -> bool:
        nonlocal seen
        seen += matches(line)
        return matches(line) and seen == n

    return check


@pytest.mark.parametrize("lost", sorted(LOST_ANSWERS))
def test_a_lost_answer_is_retried_without_harm(rig: Rig, tmp_path: Path, lost: str) -> None:
    """The server carries out a request, but the connection is cut before its answer arrives whole.
    The retry meets the state the lost request left: no error, one version, no multipart upload left
    open."""
    rng = random.Random(17)
    files = {"model.bin": write_random(tmp_path / "model.bin", 34 * MiB, rng),
             "notes.txt": write_random(tmp_path / "notes.txt", 100, rng)}
    matches, n = LOST_ANSWERS[lost]
    rig.proxy.faults = Faults(reset_response=1.0, only=nth(n, matches), limit=1)
    with lorry.init(job_type="lost") as run:
        artifact = lorry.Artifact("model", type="model")
        for entry, path in files.items():
            artifact.add_file(path, name=entry, policy="immutable")
        run.log_artifact(artifact)
        assert artifact.wait(timeout=60).version == "v0"
    assert rig.proxy.faults_injected == 1, rig.proxy.counts
    assert [a.version for a in lorry.Api().artifacts("model", "model")] == ["v0"]
    assert rig.open_uploads() == []
    check_download(artifact, files, tmp_path / "down", 60)


def test_an_upload_removed_under_its_writer_starts_again(rig: Rig, tmp_path: Path) -> None:
    """Another writer of the same content (or ``abort-uploads``) aborts an upload while its parts are
    being sent: the writer starts a new upload and the version commits."""
    data = write_random(tmp_path / "model.bin", 40 * MiB, random.Random(19))
    admin = rig.server.admin()
    aborted: list[str] = []

    def abort_at_part_3(line: str) -> None:
        if "partNumber=3" in line and not aborted:
            path, query = line.split()[1].split("?", 1)
            upload_id = dict(p.split("=", 1) for p in query.split("&"))["uploadId"]
            key = path.split("/", 2)[2]
            admin.abort_multipart_upload(Bucket=rig.bucket, Key=key, UploadId=upload_id)
            aborted.append(upload_id)

    rig.proxy.before = abort_at_part_3
    with lorry.init(job_type="two-writers") as run:
        artifact = lorry.Artifact("model", type="model")
        artifact.add_file(data, policy="immutable")
        run.log_artifact(artifact)
        assert artifact.wait(timeout=60).version == "v0"
    assert aborted
    assert rig.open_uploads() == []
    check_download(artifact, {"model.bin": data}, tmp_path / "down", 60)


# -- the server down for a while, then back ----------------------------------------------------------------


@dataclass
class Outage:
    """When the proxy went down and came back, by the monotonic clock."""

    down_at: int  # the step
    seconds: float
    went_down: float = 0.0
    came_back: float = 0.0

    def tick(self, proxy: FaultProxy, step: int) -> None:
        if step == self.down_at:
            proxy.down()
            self.went_down = time.monotonic()
        elif self.went_down and not self.came_back and time.monotonic() - self.went_down >= self.seconds:
            self.end(proxy)

    def end(self, proxy: FaultProxy) -> None:
        if not self.came_back:
            time.sleep(max(0.0, self.seconds - (time.monotonic() - self.went_down)))
            proxy.up()
            self.came_back = time.monotonic()


def test_training_loop_keeps_running_while_the_server_is_down(
    rig: Rig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server goes away for 8 s while a loop logs a checkpoint every step: ``log_artifact`` keeps
    returning at once, everything commits once the server is back, and ``finish`` says what it cost."""
    caplog.set_level(logging.INFO, logger="lorry")
    rng = random.Random(5)
    big = write_random(tmp_path / "big.ckpt", 36 * MiB, rng)  # a multipart upload during the outage
    steps, outage = 16, Outage(down_at=3, seconds=8.0)
    before = retry_stats()
    calls: list[float] = []
    contents: list[bytes] = []
    logged = []
    arrivals: list[float] = []
    rig.proxy.before = lambda line: arrivals.append(time.monotonic())
    loop_started = time.monotonic()
    run = lorry.init(job_type="train")
    for step in range(steps):
        outage.tick(rig.proxy, step)
        time.sleep(0.3)  # a training step
        contents.append(rng.randbytes(rng.randrange(1, 300 << 10)))
        artifact = lorry.Artifact("checkpoints", type="model", metadata={"step": step})
        with artifact.new_file("weights.bin", mode="wb") as handle:
            handle.write(contents[-1])
        if step == outage.down_at + 1:
            artifact.add_file(big, name="full.ckpt", policy="immutable")
        begin = time.monotonic()
        run.log_artifact(artifact)
        calls.append(time.monotonic() - begin)
        logged.append(artifact)
    loop_time = time.monotonic() - loop_started
    outage.end(rig.proxy)
    for artifact in logged:
        artifact.wait(timeout=60)
    committed = time.monotonic() - outage.came_back
    run.finish()
    spent = retry_stats().since(before)

    # The loop never waited for the store: a log is a queued job, not a request.
    assert sorted(calls)[len(calls) // 2] < 0.001, calls
    assert max(calls) < 0.05, calls
    # Every failing request sleeps at most the 10 s backoff cap before it tries again: the first one
    # reaches the server within the cap once it is back, and the rest follow it.
    back = min(t for t in arrivals if t >= outage.came_back) - outage.came_back
    assert back <= 10.5, back
    assert committed < 10 + 8, committed
    assert [a.version for a in logged] == [f"v{i}" for i in range(steps)]
    for step in (0, outage.down_at, outage.down_at + 1, steps - 1):
        version = lorry.Api().artifact(f"checkpoints:v{step}")
        assert version.metadata == {"step": step}
        expected = tmp_path / "expected" / f"weights-{step}.bin"
        expected.parent.mkdir(exist_ok=True)
        expected.write_bytes(contents[step])
        sources = {"weights.bin": expected}
        if step == outage.down_at + 1:
            sources["full.ckpt"] = big
        check_download(version, sources, tmp_path / f"v{step}", 60)
    assert rig.open_uploads() == []
    report = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"run {run.path} finished")]
    assert report and "retried" in report[0] and "longest failure" in report[0], report
    print(
        f"\nserver down {outage.came_back - outage.went_down:.1f} s while {steps} checkpoints were "
        f"logged: loop {loop_time:.1f} s, slowest log_artifact {max(calls) * 1000:.0f} ms; all committed "
        f"{committed:.1f} s after the server came back; {spent.retries} retries; finish() reported: "
        f"{report[0]!r}"
    )


# -- the server never comes back ---------------------------------------------------------------------------


def test_a_server_that_never_returns_fails_at_the_deadline_and_the_upload_resumes_later(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The server goes away in the middle of a multipart upload and stays away past the retry deadline:
    the version fails with an error that names the deadline, ``finish`` ends at once with it, and
    logging the same content again later resumes the upload from the parts already stored."""
    caplog.set_level(logging.INFO, logger="lorry")
    deadline = 4.0
    monkeypatch.setenv("LORRY_RETRY_DEADLINE", str(deadline))
    rng = random.Random(3)
    files = {
        "model.bin": write_random(tmp_path / "src" / "model.bin", 48 * MiB, rng),  # 6 parts
        "config.json": write_random(tmp_path / "src" / "config.json", 900, rng),
    }

    def build() -> lorry.Artifact:
        artifact = lorry.Artifact("model", type="model")
        for entry, path in files.items():
            artifact.add_file(path, name=entry)
        return artifact

    run = lorry.init(job_type="train")
    rig.proxy.down_when(lambda line: "partNumber=6" in line)  # parts 1-5 went first: some are stored
    first = build()
    begin = time.monotonic()
    run.log_artifact(first)
    with pytest.raises(ArtifactFailedError) as failed:
        first.wait(timeout=60)
    took = time.monotonic() - begin
    assert rig.proxy.tripped.is_set()
    message = str(failed.value.__cause__ or failed.value)
    assert "retry deadline" in message and "LORRY_RETRY_DEADLINE" in message, message
    # One request timeout (2 s) may run past the deadline; no backoff sleeps past it.
    assert deadline <= took < deadline + 3, took
    begin = time.monotonic()
    run.finish()  # the failure was raised by wait() already: not a second time
    finishing = time.monotonic() - begin
    assert finishing < 3, finishing  # the store is known to be gone: no second wait
    stored_parts = rig.server.admin().list_parts(
        Bucket=rig.bucket, Key=rig.open_uploads()[0]["Key"], UploadId=rig.open_uploads()[0]["UploadId"]
    ).get("Parts", [])
    assert len(rig.open_uploads()) == 1 and stored_parts  # kept open, for the next attempt

    rig.proxy.up()
    with lorry.init(job_type="train") as again:
        second = build()
        again.log_artifact(second)
        assert second.wait(timeout=60).version == "v0"
    resumed = [r.getMessage() for r in caplog.records if "resuming the upload" in r.getMessage()]
    assert resumed and f"{len(stored_parts)} of 6 parts already stored" in resumed[0], resumed
    assert rig.open_uploads() == []
    compared = check_download(second, files, tmp_path / "down", 60)
    print(
        f"\nserver gone mid-upload: the version failed after {took:.1f} s (deadline {deadline:g} s), "
        f"finish() raised after {finishing:.2f} s; {message!r}; logged again later: "
        f"{resumed[0]!r}; {compared / MiB:.0f} MiB compared"
    )


# -- full and read-only disks -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``small_disk(name, size_mb=4, read_only=False)``: a tmpfs of that size mounted for the test."""
    mounted: list[Path] = []

    def mount(name: str, size_mb: int = 4, read_only: bool = False) -> Path:
        mounted.append(mount_tmpfs(tmp_path / name, size_mb, read_only=read_only))
        return mounted[-1]

    yield mount
    for point in reversed(mounted):
        unmount(point)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and "lorry-tmp" in p.name)


def cache_is_consistent(cache: Path) -> int:
    """Every blob in the cache holds the bytes it is named after, and no temporary file is left."""
    blobs = [p for p in (cache / "blobs").rglob("*") if p.is_file()] if (cache / "blobs").exists() else []
    for blob in blobs:
        assert blob.name == digest_of(blob.read_bytes()), blob
    assert list(cache.glob("staging/*/download-*")) == []  # downloads on their way in, by Cache.temp_path
    return len(blobs)


@pytest.fixture
def logged_data(rig: Rig, tmp_path: Path) -> tuple[lorry.Artifact, dict[str, Path]]:
    """A version with two small files and one of 6 MiB (more than the small disks hold)."""
    rng = random.Random(9)
    files = {
        "a.txt": write_random(tmp_path / "src" / "a.txt", 3000, rng),
        "big.bin": write_random(tmp_path / "src" / "big.bin", 6 * MiB, rng),
        "b.txt": write_random(tmp_path / "src" / "b.txt", 2000, rng),
    }
    with lorry.init() as run:
        artifact = lorry.Artifact("data", type="dataset")
        for entry, path in files.items():
            artifact.add_file(path, name=entry)
        run.log_artifact(artifact)
        artifact.wait(timeout=60)
    return artifact, files


def download_fails(artifact: lorry.Artifact, root: Path, *phrases: str) -> str:
    """Download into ``root``: it must fail with a ``LocalFileError`` holding every phrase given, and
    leave no temporary file and no file that is not whole under its final name."""
    with pytest.raises(LocalFileError) as error:
        bounded(artifact.download_async(root), 60, "a download meant to fail")
    message = str(error.value)
    assert all(phrase in message for phrase in phrases), message
    if root.exists():
        assert leftovers(root) == []
        for path in (p for p in root.rglob("*") if p.is_file()):
            entry = artifact.get_entry(path.relative_to(root).as_posix())
            assert entry.digest == f"blake3:{digest_of(path.read_bytes())}", path
    return message


def test_a_full_or_read_only_download_folder_is_a_clear_error(
    logged_data: tuple[lorry.Artifact, dict[str, Path]], tmp_path: Path, small_disk: Callable[..., Path]
) -> None:
    artifact, files = logged_data
    full = small_disk("full") / "download"
    results = [download_fails(artifact, full, "the disk is full", str(full / "big.bin"))]
    assert not (full / "big.bin").exists()

    if os.geteuid() == 0:  # root writes through permissions: a read-only mount stops it too
        locked = small_disk("read-only", read_only=True)
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
    reason = "the filesystem is read-only" if os.geteuid() == 0 else "permission denied"
    results.append(download_fails(artifact, locked / "download", reason, str(locked / "download")))

    compared = check_download(artifact, files, tmp_path / "good", 60)  # with room: all there
    print("\n" + "\n".join(results) + f"\nthen, into a good folder: {compared} bytes verified")


def test_a_full_or_read_only_cache_stops_no_download_and_stays_consistent(
    logged_data: tuple[lorry.Artifact, dict[str, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    small_disk: Callable[..., Path],
) -> None:
    """A download writes nothing to the cache that it needs: the large file's place is remembered
    (not copied in), a small file's copy is skipped when the cache cannot take it. Logging through a
    full cache (its staging area) is a clear error."""
    _, files = logged_data
    results = []
    for name, read_only in (("full-cache", False), ("ro-cache", True)):
        cache = small_disk(name, read_only=read_only)
        monkeypatch.setenv("LORRY_CACHE_DIR", str(cache))
        compared = check_download(lorry.Api().artifact("data:v0"), files, tmp_path / f"down-{name}", 60)
        assert cache_is_consistent(cache) <= 2  # at most the small blobs, each whole
        results.append(f"{name}: {compared} bytes downloaded and verified")

    # Snapshots of files added with policy="mutable" go to the cache's staging area.
    full = tmp_path / "full-cache"
    monkeypatch.setenv("LORRY_CACHE_DIR", str(full))
    with pytest.raises(LocalFileError) as error:
        lorry.Artifact("staged", type="dataset").add_file(files["big.bin"])
    assert "the disk is full" in str(error.value) and str(files["big.bin"]) in str(error.value)
    assert [p for p in (full / "staging").rglob("*") if p.is_file()] == []  # no partial snapshot
    results.append(str(error.value))
    # A small file's snapshot goes into a pack: with no room for it, no empty pack is left either.
    with open(full / "filler", "wb", buffering=0) as filler:
        while True:
            try:
                filler.write(b"\0" * (64 << 10))
            except OSError:
                break
    with pytest.raises(LocalFileError) as error:
        lorry.Artifact("staged", type="dataset").add_file(files["a.txt"])
    assert "the disk is full" in str(error.value) and str(files["a.txt"]) in str(error.value)
    assert [p for p in (full / "staging").rglob("*") if p.is_file()] == []
    (full / "filler").unlink()

    # With room again: the download works and verifies.
    monkeypatch.setenv("LORRY_CACHE_DIR", str(tmp_path / "cache"))
    compared = check_download(lorry.Api().artifact("data:v0"), files, tmp_path / "good", 60)
    blobs = cache_is_consistent(tmp_path / "cache")
    print("\n" + "\n".join(results) + f"\nthen: {compared} bytes downloaded and verified; the cache "
          f"holds {blobs} blobs, each matching its digest")


# -- packet loss on a real link between network namespaces --------------------------------------------------

LOSS_PER_MILLE = 50  # 5 % of packets dropped, each way


@dataclass
class LossyLink:
    """Two network namespaces made for the test, joined by a veth pair that drops packets at random
    (nftables; the kernel here has no netem): the client runs in one, the proxy listens in the other."""

    client_ns: str
    server_ns: str
    server_ip: str = "10.213.0.2"

    def dropped(self) -> int:
        """Packets dropped so far, both ways."""
        total = 0
        for ns in (self.client_ns, self.server_ns):
            ruleset = json.loads(_run("ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"))
            for item in ruleset["nftables"]:
                for expr in item.get("rule", {}).get("expr", []):
                    if "counter" in expr:
                        total += int(expr["counter"]["packets"])
        return total

    def retransmitted(self) -> int:
        """TCP segments sent again, both ways."""
        total = 0
        for ns in (self.client_ns, self.server_ns):
            snmp = _run("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").splitlines()
            names, values = (line.split() for line in snmp if line.startswith("Tcp:"))
            total += int(dict(zip(names, values, strict=True))["RetransSegs"])
        return total

    def listen(self, port: int = 0) -> socket.socket:
        """A listening socket in the server's namespace (the rest of this process stays where it is)."""
        made: list[socket.socket | BaseException] = []

        def enter_and_listen() -> None:  # setns changes the namespace of this one thread only
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"/run/netns/{self.server_ns}") as handle:
                    if libc.setns(handle.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                        raise OSError(ctypes.get_errno(), "setns failed")
                sock = socket.create_server((self.server_ip, port), backlog=256)
                made.append(sock)
            except BaseException as exc:  # handed to the caller
                made.append(exc)

        thread = threading.Thread(target=enter_and_listen)
        thread.start()
        thread.join()
        if isinstance(made[0], BaseException):
            raise made[0]
        return made[0]


def _run(*command: str, stdin: str | None = None) -> str:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
def lossy_link() -> Iterator[LossyLink]:
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    assert not missing, f"{' and '.join(missing)} missing: scripts/servers/install.sh installs them"
    tag = f"lf{uuid.uuid4().hex[:6]}"  # interface names have at most 15 characters
    link = LossyLink(client_ns=f"{tag}c", server_ns=f"{tag}s")
    made: list[str] = []
    try:
        for ns in (link.client_ns, link.server_ns):
            _run("ip", "netns", "add", ns)  # needs root, as the suite runs in CI
            made.append(ns)
        # The veth ends are created inside the namespaces: nothing is added to the machine's own.
        _run("ip", "link", "add", f"{tag}x", "netns", link.client_ns, "type", "veth",
             "peer", "name", f"{tag}y", "netns", link.server_ns)
        for ns, dev, address in ((link.client_ns, f"{tag}x", "10.213.0.1/30"),
                                 (link.server_ns, f"{tag}y", "10.213.0.2/30")):
            _run("ip", "-n", ns, "addr", "add", address, "dev", dev)
            # Packets of wire size (no 64 KiB segmentation offload): each drop is one MTU's worth.
            _run("ip", "-n", ns, "link", "set", dev, "gso_max_size", "1500", "gro_max_size", "1500")
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            rule = f'iifname "{dev}" numgen random mod 1000 < {LOSS_PER_MILLE} counter drop'
            chain = f"chain input {{\n type filter hook input priority 0;\n {rule}\n }}"
            ruleset = f"table inet lossy {{\n {chain}\n}}\n"
            _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=ruleset)
        yield link
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False)


LOSSY_CLIENT = """
import json, sys, time
from pathlib import Path
import lorry
from lorry.settings import Settings
from lorry.session import session
source, down = Path(sys.argv[1]), Path(sys.argv[2])
started = time.monotonic()
with lorry.init(job_type="lossy") as run:
    logged = []
    for name in sorted(p.name for p in source.iterdir()):
        artifact = lorry.Artifact(name, type="dataset")
        artifact.add_dir(source / name, policy="immutable")
        run.log_artifact(artifact)
        logged.append(artifact)
    versions = [artifact.wait().version for artifact in logged]
uploaded = time.monotonic() - started
for artifact in logged:
    artifact.verify(artifact.download(down / artifact.collection.name))
stats = session(Settings.load()).retries
print(json.dumps({"versions": versions, "uploaded": uploaded, "elapsed": time.monotonic() - started,
                  "retries": stats.retries}))
"""


def test_packet_loss_on_a_veth_link_costs_time_not_data(
    rig: Rig, lossy_link: LossyLink, tmp_path: Path
) -> None:
    """5 % of packets dropped each way (and the proxy's latency) between a client in one network
    namespace and the server's side in another: TCP recovers, lorry's timeouts catch what it cannot."""
    rng = random.Random(13)
    source = tmp_path / "src"
    files = {f"small/f{i}.bin": write_random(source / "small" / f"f{i}.bin", rng.randrange(1, 200 << 10), rng)
             for i in range(40)}
    files["large/weights.bin"] = write_random(source / "large" / "weights.bin", 34 * MiB, rng)
    upstream = urlsplit(rig.server.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    behind_link = FaultProxy((upstream.hostname, upstream.port), seed=1, faults=Faults(latency=0.01))
    behind_link.start(lossy_link.listen())
    env = dict(os.environ, AWS_ENDPOINT_URL=behind_link.endpoint, LORRY_REQUEST_TIMEOUT="5")
    try:
        result = subprocess.run(
            ["ip", "netns", "exec", lossy_link.client_ns, sys.executable, "-c", LOSSY_CLIENT,
             str(source), str(tmp_path / "down")],
            capture_output=True, text=True, timeout=150, env=env,
        )
    finally:
        behind_link.close()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["versions"] == ["v0", "v0"]
    compared = 0
    for entry, path in files.items():
        data = (tmp_path / "down" / entry).read_bytes()
        assert data == path.read_bytes(), entry
        compared += len(data)
    assert rig.open_uploads() == []
    dropped, resent = lossy_link.dropped(), lossy_link.retransmitted()
    print(
        f"\npacket loss {LOSS_PER_MILLE / 10:g} % each way: {dropped} packets dropped, {resent} TCP "
        f"segments sent again, {behind_link.counts['requests']} requests, {report['retries']} retries; "
        f"{len(files)} files ({compared / MiB:.0f} MiB) uploaded in {report['uploaded']:.1f} s and "
        f"downloaded identical; {report['elapsed']:.1f} s in all"
    )
    assert dropped > 0 and resent > 0
    assert report["elapsed"] < 120


def test_the_proxy_passes_a_whole_answer_after_which_the_server_closes(
    moto_server: S3Server, s3_bucket: Callable[[S3Server], str]
) -> None:
    """moto ends each connection after its answer (``Connection: close``); the proxy must end it too
    with the whole answer delivered, even to a client that reads late, so that every fault a test sees
    is one the proxy chose."""
    bucket = urlsplit(s3_bucket(moto_server)).netloc
    body = os.urandom(8 * MiB)
    moto_server.admin().put_object(Bucket=bucket, Key="large", Body=body)
    upstream = urlsplit(moto_server.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    proxy = FaultProxy((upstream.hostname, upstream.port)).start()
    try:
        url = urlsplit(
            replace(moto_server, endpoint=proxy.endpoint)
            .admin()
            .generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "large"})
        )
        with socket.create_connection((url.hostname or "", url.port or 80), timeout=30) as client:
            client.sendall(f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode())
            time.sleep(1)  # the proxy has relayed what the buffers on the way hold, and waits
            received = bytearray()
            while chunk := client.recv(1 << 20):
                received += chunk
        head, _, got = bytes(received).partition(b"\r\n\r\n")
        assert b"connection: close" in head.lower()
        print(f"answer through the proxy: {len(got)} of {len(body)} bytes")
        assert got == body
    finally:
        proxy.close()
