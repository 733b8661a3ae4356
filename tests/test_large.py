"""Large transfers through Ceph RGW: a 2 GiB file and 10,000 small files round-trip byte for byte with
bounded memory, and a process killed in the middle of a 2 GiB upload is resumed, not restarted.

Each transfer runs in a child process, so its peak resident memory is its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from blake3 import blake3

import lorry
from tests.fixtures_s3 import S3Server, s3_env

GiB = 1 << 30
MiB = 1 << 20
pytestmark = pytest.mark.slow

ROUND_TRIP = """
import json, os, sys, lorry
source, name, root = sys.argv[1], sys.argv[2], sys.argv[3]
with lorry.init(job_type="large") as run:
    artifact = lorry.Artifact(name, type="dataset")
    if os.path.isdir(source):
        artifact.add_dir(source, policy="immutable")
    else:
        artifact.add_file(source, policy="immutable")
    run.log_artifact(artifact)
    artifact.wait()
    folder = lorry.Api().artifact(f"{name}:latest").download(root)
# This process's own peak (VmHWM): ru_maxrss would also count the test process it was forked from,
# since Linux carries the high-water mark across fork and exec.
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss": peak, "folder": folder, "files": artifact.file_count}))
"""


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """2 GiB whose every MiB differs (so no part is like another), written in a few seconds."""
    path = tmp_path_factory.mktemp("big") / "checkpoint.bin"
    block = os.urandom(MiB)
    with open(path, "wb") as handle:
        for i in range(2 * GiB // MiB):
            handle.write(i.to_bytes(8, "little") + block[8:])
    yield path
    path.unlink()


def digest_of(path: Path) -> str:
    hasher = blake3()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * MiB):
            hasher.update(chunk)
    return hasher.hexdigest()


@pytest.fixture
def ceph_store(ceph_rgw: S3Server, s3_bucket: object, monkeypatch: pytest.MonkeyPatch) -> str:
    url: str = s3_bucket(ceph_rgw)  # type: ignore[operator]
    monkeypatch.setenv("LORRY_STORE", url)
    s3_env(monkeypatch, ceph_rgw)
    return url


def run_child(script: str, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    print(result.stdout.strip())
    return report


def test_two_gib_file_round_trips_with_bounded_memory(
    ceph_store: str, big_file: Path, tmp_path: Path
) -> None:
    report = run_child(ROUND_TRIP, str(big_file), "checkpoint", str(tmp_path / "down"))
    downloaded = Path(str(report["folder"])) / big_file.name
    assert downloaded.stat().st_size == big_file.stat().st_size
    assert digest_of(downloaded) == digest_of(big_file)
    assert int(str(report["peak_rss"])) < 300 * MiB, report


def test_ten_thousand_small_files_round_trip(ceph_store: str, tmp_path: Path) -> None:
    source = tmp_path / "small"
    for i in range(10_000):
        folder = source / f"d{i % 10}" / f"e{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.bin").write_bytes(i.to_bytes(4, "little") * 1024)
    report = run_child(ROUND_TRIP, str(source), "many-small", str(tmp_path / "down"))
    assert report["files"] == 10_000
    down = Path(str(report["folder"]))
    wrong = [
        i for i in range(10_000)
        if (down / f"d{i % 10}" / f"e{i % 7}" / f"f{i}.bin").read_bytes() != i.to_bytes(4, "little") * 1024
    ]
    assert wrong == []  # every one of the 10,000 files, byte for byte
    assert sum(1 for p in down.rglob("*") if p.is_file()) == 10_000
    assert int(str(report["peak_rss"])) < 300 * MiB, report


UPLOAD = """
import logging, sys, lorry
logging.basicConfig(level=logging.INFO, format="%(message)s")
with lorry.init(job_type="checkpoint") as run:
    artifact = lorry.Artifact("resumable", type="model")
    artifact.add_file(sys.argv[1], policy="immutable")
    run.log_artifact(artifact)
    print(artifact.wait().version)
"""


def test_killed_upload_resumes_from_the_stored_parts(
    ceph_store: str, ceph_rgw: S3Server, big_file: Path, tmp_path: Path
) -> None:
    bucket = ceph_store.removeprefix("s3://").split("/")[0]
    admin = ceph_rgw.admin()
    child = subprocess.Popen([sys.executable, "-c", UPLOAD, str(big_file)], env=dict(os.environ))
    stored = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            uploads = admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            if uploads:
                parts = admin.list_parts(
                    Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
                )
                stored = len(parts.get("Parts", []))
                if stored >= 20:
                    break
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert stored >= 20, "the upload never got going"
    again = subprocess.run(
        [sys.executable, "-c", UPLOAD, str(big_file)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == "v0"
    resumed = [line for line in again.stderr.splitlines() if "resuming the upload" in line]
    assert resumed, again.stderr
    kept = int(resumed[0].split(":")[-1].split()[0])
    assert kept >= stored - 8, resumed  # parts still in flight at the kill may be missing
    assert admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    folder = tmp_path / "down"
    got = Path(lorry.Api().artifact("resumable:v0").download(folder)) / big_file.name
    assert digest_of(got) == digest_of(big_file)
