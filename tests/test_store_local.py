"""The conformance suite on a LocalStore in a temporary directory, and its fast path for blobs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lorry
from lorry.model.layout import blob_key
from lorry.storage.local import LocalStore
from tests.conformance import StoreConformance
from tests.conftest import logged


class TestLocalStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "store")


# -- blobs: one exclusive create and one write -------------------------------------------------------------


def test_put_blob_creates_once_and_leaves_a_complete_blob_alone(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_blobs([("blobs/x/1", b"content")])
    first = store.path_of("blobs/x/1").stat()
    store.put_blobs([("blobs/x/1", b"content")])  # already there, whole: not written again
    assert store.path_of("blobs/x/1").read_bytes() == b"content"
    assert store.path_of("blobs/x/1").stat().st_ino == first.st_ino
    assert first.st_mode & 0o777 == 0o600


def test_a_blob_is_its_owners_to_read_and_write_whatever_the_umask(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_blobs([("blobs/x/0", b"made first")])  # the folders, made under the usual umask
    before = os.umask(0o277)  # takes the owner's write bit away from every file created
    try:
        store.put_blobs([("blobs/x/1", b"content"), ("blobs/x/2", b"other")])
    finally:
        os.umask(before)
    for name in ("1", "2"):
        assert store.path_of(f"blobs/x/{name}").stat().st_mode & 0o777 == 0o600


def test_put_blob_replaces_what_a_killed_writer_left_short(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    path = store.path_of("blobs/x/1")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"cont")  # a write cut short by a kill, under the final name
    store.put_blobs([("blobs/x/1", b"content")])
    assert path.read_bytes() == b"content"


def test_a_torn_blob_is_repaired_by_the_next_log_of_its_content(tmp_path: Path) -> None:
    with lorry.init() as run:
        first = logged(run, "data", {"a.bin": b"a" * 5000})
        digest = first.manifest["a.bin"].digest
        assert digest is not None
        blob = Path(str(tmp_path / "store"), blob_key(digest))
        with open(blob, "r+b") as handle:
            handle.truncate(100)
        logged(run, "data", {"a.bin": b"a" * 5000, "b.bin": b"b"})
    assert blob.read_bytes() == b"a" * 5000
    lorry.Api().artifact("data:v0").download(tmp_path / "down")
    assert (tmp_path / "down" / "a.bin").read_bytes() == b"a" * 5000
