"""Shared fixtures. Servers are started once per test session, on 127.0.0.1, by the fixtures themselves."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import lorry
from lorry import runs

if TYPE_CHECKING:
    from tests.fixtures_gcs import GCSEmulator

pytest_plugins = ["tests.fixtures_s3", "tests.fixtures_gcs", "tests.fixtures_tls"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own store, cache and working directory, and no run left over."""
    monkeypatch.setenv("LORRY_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("LORRY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LORRY_ENTITY", "tester")
    monkeypatch.delenv("LORRY_PROJECT", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # The command line, run in this process by some tests, sets up the "lorry" logger for a terminal
    # (a handler on the stderr of that moment, no propagation): each test starts from the logger as it was.
    logger = logging.getLogger("lorry")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate = propagate
    logger.setLevel(level)  # setLevel, not the attribute: it also clears the loggers' cached levels
    run = runs.current_run()
    if run is not None:
        with contextlib.suppress(lorry.LorryError):
            run.finish()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


def write(path: Path | str, data: bytes | str) -> Path:
    """Create ``path`` (and its folders) holding ``data``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def logged(run: lorry.Run, name: str, files: dict[str, bytes], **kwargs: object) -> lorry.Artifact:
    """Log an artifact of type "dataset" holding ``files`` (name → bytes) and wait for its commit."""
    artifact = lorry.Artifact(name, type="dataset", **kwargs)  # type: ignore[arg-type]
    for entry, data in files.items():
        with artifact.new_file(entry, mode="wb") as handle:
            handle.write(data)
    run.log_artifact(artifact)
    return artifact.wait()


@pytest.fixture
def project_dir() -> Path:
    """The original documentation's example folder, in the working directory."""
    write("images/cat.png", b"\x89PNG cat")
    write("images/dog.png", b"\x89PNG dog")
    write("checkpoints/model.h5", b"checkpoint weights")
    write("model.h5", b"model weights")
    write("bicycle-data.h5", b"bicycle rows")
    return Path(os.getcwd())


@pytest.fixture(params=["ceph", "moto", "gcs"])
def remote_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A URL of a fresh remote store, set as ``$LORRY_STORE``."""
    return use_remote_store(request.param, request, monkeypatch)


def use_remote_store(kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make a fresh bucket on the server ``kind`` (ceph, moto or gcs), point ``$LORRY_STORE`` (and the
    server's own variables) at it, and return its URL."""
    if kind == "gcs":
        emulator: GCSEmulator = request.getfixturevalue("gcs_emulator")
        bucket = f"lorry-api-{uuid.uuid4().hex[:10]}"
        emulator.create_bucket(bucket)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
        url = f"gs://{bucket}/team-store"
    else:
        server = request.getfixturevalue("ceph_rgw" if kind == "ceph" else "moto_server")
        url = request.getfixturevalue("s3_bucket")(server)
    monkeypatch.setenv("LORRY_STORE", url)
    return url
