"""Bad input gets a clear error naming the problem, and nothing is half-written."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import lorry
from lorry.model.digest import digest_bytes
from lorry.model.layout import manifest_key
from tests.conftest import logged, write
from tests.disks import mount_tmpfs, python_without_override, unmount


def store_files(store: Path) -> set[str]:
    return {
        p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file() and ".lorry" not in p.parts
    }


@pytest.mark.parametrize(
    "name", ["", "a/b", "a:b", "x" * 129, "bad!name", " lead", "trail ", "two  spaces", "tab\tname", None, 7]
)
def test_invalid_artifact_names(name: object) -> None:
    with pytest.raises(lorry.InvalidNameError):
        lorry.Artifact(name, type="dataset")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["bike-dataset", "a.b_c-1", "reference model", "x" * 128, "UPPER.v2"])
def test_valid_artifact_names(name: str) -> None:
    assert lorry.Artifact(name, type="dataset").name == name


@pytest.mark.parametrize("kind", ["", "   ", "a/b", "a:b", "x" * 129])
def test_invalid_types(kind: str) -> None:
    with pytest.raises(lorry.InvalidNameError, match="type"):
        lorry.Artifact("a", type=kind)


@pytest.mark.parametrize(
    "metadata",
    [
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": [1, float("-inf")]},
        {1: "non-string key"},
        {"x": object()},
        {"x": b"bytes"},
        ["not", "a", "dict"],
    ],
)
def test_invalid_metadata(metadata: object) -> None:
    with pytest.raises(lorry.InvalidMetadataError):
        lorry.Artifact("a", type="t", metadata=metadata)  # type: ignore[arg-type]
    artifact = lorry.Artifact("a", type="t")
    with pytest.raises(lorry.InvalidMetadataError):
        artifact.metadata = metadata  # type: ignore[assignment]


def test_errors_are_value_errors_where_the_input_is_bad() -> None:
    with pytest.raises(ValueError, match="may only contain"):
        lorry.Artifact("no/slash", type="t")


def test_missing_file_directory_and_wrong_kinds(tmp_path: Path) -> None:
    artifact = lorry.Artifact("a", type="t")
    with pytest.raises(lorry.LocalFileError, match="no such file"):
        artifact.add_file(tmp_path / "missing.bin")
    with pytest.raises(FileNotFoundError.__mro__[1]):  # an OSError, as callers expect
        artifact.add_file(tmp_path / "missing.bin")
    with pytest.raises(lorry.LocalFileError, match="add_dir"):
        artifact.add_file(tmp_path)
    with pytest.raises(lorry.LocalFileError, match="no such directory"):
        artifact.add_dir(tmp_path / "nope")
    with pytest.raises(lorry.LocalFileError, match="add_file"):
        artifact.add_dir(write(tmp_path / "f", b"x"))
    with pytest.raises(lorry.ValidationError, match="policy"):
        artifact.add_file(tmp_path / "f", policy="sometimes")


UNREADABLE = """
import sys
import lorry
try:
    lorry.Artifact("a", type="t").add_file(sys.argv[1])
except lorry.LocalFileError as error:
    print(error)
"""


def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "secret", b"x")
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(lorry.LocalFileError, match="permission denied"):
            lorry.Artifact("a", type="t").add_file(path)
    else:  # root reads every file: the check runs in a child to which permissions apply
        result = python_without_override(UNREADABLE, str(path))
        assert result.returncode == 0, result.stderr
        assert "permission denied" in result.stdout and str(path) in result.stdout, result.stdout


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc/passwd", "", "a/\x00b", "..", "C:/x"])
def test_entry_names_that_escape_are_refused_when_added(tmp_path: Path, name: str) -> None:
    source = write(tmp_path / "f", b"x")
    artifact = lorry.Artifact("a", type="t")
    with pytest.raises(lorry.InvalidPathError):
        artifact.add_file(source, name=name)
    with pytest.raises(lorry.InvalidPathError), artifact.new_file(name):
        pass


def test_two_contents_under_one_name(tmp_path: Path) -> None:
    artifact = lorry.Artifact("a", type="t")
    artifact.add_file(write(tmp_path / "one/model.h5", b"1"))
    artifact.add_file(tmp_path / "one/model.h5")  # the same file again is fine
    with pytest.raises(lorry.ValidationError, match=r"model\.h5"):
        artifact.add_file(write(tmp_path / "two/model.h5", b"2"))


def test_symlinks_in_add_dir_are_followed_and_cycles_refused(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside/data.bin", b"linked content")
    folder = tmp_path / "folder"
    write(folder / "plain.txt", b"plain")
    (folder / "link.bin").symlink_to(outside)
    (folder / "linked-dir").symlink_to(outside.parent, target_is_directory=True)
    artifact = lorry.Artifact("links", type="t")
    artifact.add_dir(folder)
    with lorry.init() as run:
        run.log_artifact(artifact)
        got = Path(artifact.wait().download(tmp_path / "down"))
    assert (got / "link.bin").read_bytes() == b"linked content"
    assert not (got / "link.bin").is_symlink()
    assert (got / "linked-dir/data.bin").read_bytes() == b"linked content"
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    with pytest.raises(lorry.LocalFileError, match="cycle"):
        lorry.Artifact("links", type="t").add_dir(folder)
    (folder / "loop").unlink()
    (folder / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(lorry.LocalFileError, match="dangling"):
        lorry.Artifact("links", type="t").add_dir(folder)


def test_download_root_that_is_a_file(tmp_path: Path) -> None:
    with lorry.init() as run:
        artifact = lorry.Artifact("a", type="t")
        with artifact.new_file("f.txt") as handle:
            handle.write("x")
        run.log_artifact(artifact)
        with pytest.raises(lorry.LocalFileError, match="not a folder"):
            artifact.download(write(tmp_path / "a-file", b""))


def test_download_fetches_only_what_differs_and_keeps_user_files_apart(
    tmp_path: Path, store_dir: Path
) -> None:
    with lorry.init() as run:
        artifact = lorry.Artifact("a", type="t")
        for name in ("one.txt", "two.txt"):
            with artifact.new_file(name) as handle:
                handle.write(name * 100)
        run.log_artifact(artifact)
        folder = Path(artifact.wait().download(tmp_path / "d"))
    (folder / "one.txt").write_text("edited by the user")
    untouched = (folder / "two.txt").stat().st_ino
    artifact.download(folder)
    assert (folder / "one.txt").read_text() == "one.txt" * 100
    assert (folder / "two.txt").stat().st_ino == untouched  # not fetched again
    # The user's write to a downloaded file did not reach the store.
    again = lorry.Api().artifact("a:v0").download(tmp_path / "e")
    assert (Path(again) / "one.txt").read_text() == "one.txt" * 100
    with pytest.raises(lorry.IntegrityError, match=r"one\.txt"):
        (folder / "one.txt").write_text("edited")
        artifact.verify(folder)


def hostile_version(store_dir: Path, entries: list[dict[str, object]]) -> None:
    """Write a manifest and version record by hand, as a damaged or malicious store would hold."""
    payload = orjson.dumps({"format": 1, "entries": entries})
    digest = digest_bytes(payload)
    write(store_dir / manifest_key(digest), payload)
    base = store_dir / "tester/uncategorized/artifacts/evil"
    write(base / "collection.json", orjson.dumps({"type": "t"}))
    record = {
        "version": 0,
        "manifest": digest,
        "type": "t",
        "size": 1,
        "file_count": len(entries),
        "created_at": "2026-01-01T00:00:00+00:00",
        "logged_by": None,
        "description": None,
        "metadata": {},
    }
    write(base / "versions/0.json", orjson.dumps(record))


@pytest.mark.parametrize("path", ["../../outside.txt", "/tmp/absolute.txt", "a/../../x"])
def test_hostile_manifest_cannot_write_outside_the_root(tmp_path: Path, store_dir: Path, path: str) -> None:
    lorry.init().finish()  # creates the store
    blob = b"x"
    hostile_version(store_dir, [{"path": path, "digest": digest_bytes(blob), "size": 1}])
    with pytest.raises(lorry.CorruptRecordError, match=r"escapes|absolute"):
        lorry.Api().artifact("evil:v0").download(tmp_path / "root")
    assert not (tmp_path / "outside.txt").exists()
    assert not Path("/tmp/absolute.txt").exists()


@pytest.mark.parametrize(
    "payload", [b"", b"{", b"[]", b'{"format": 1}', b'{"format": 1, "entries": [{"path": 3}]}']
)
def test_damaged_manifest_is_a_clear_error(store_dir: Path, payload: bytes) -> None:
    lorry.init().finish()
    digest = digest_bytes(payload)
    write(store_dir / manifest_key(digest), payload)
    base = store_dir / "tester/uncategorized/artifacts/broken"
    write(base / "collection.json", b'{"type": "t"}')
    record = orjson.dumps(
        {
            "version": 0,
            "manifest": digest,
            "type": "t",
            "size": 0,
            "file_count": 0,
            "created_at": "x",
            "logged_by": None,
            "description": None,
            "metadata": {},
        }
    )
    write(base / "versions/0.json", record)
    with pytest.raises(lorry.StoreError, match="manifest"):
        lorry.Api().artifact("broken:v0").download()


@pytest.mark.parametrize(
    "record", [b"", b"not json", b"[1]", b'{"version": 0}', b'{"version": "0", "manifest": 1}']
)
def test_damaged_version_record_is_a_clear_error(store_dir: Path, record: bytes) -> None:
    lorry.init().finish()
    base = store_dir / "tester/uncategorized/artifacts/broken"
    write(base / "collection.json", b'{"type": "t"}')
    write(base / "versions/0.json", record)
    with pytest.raises(lorry.StoreError, match=r"versions/0\.json"):
        lorry.Api().artifact("broken:v0")


def test_a_tampered_blob_is_caught_and_not_installed(tmp_path: Path, store_dir: Path) -> None:
    with lorry.init() as run:
        artifact = logged(run, "a", {"f.bin": b"original"})
    blob = next(p for p in (store_dir / "blobs").rglob("*") if p.is_file())
    blob.chmod(0o600)
    blob.write_bytes(b"tampered")
    with pytest.raises(lorry.IntegrityError, match=r"f\.bin"):
        artifact.download(tmp_path / "d")
    assert not (tmp_path / "d/f.bin").exists()
    assert [p.name for p in (tmp_path / "d").iterdir()] == []


@contextlib.contextmanager
def tiny_filesystem(size_mb: int) -> Iterator[Path]:
    mount = mount_tmpfs(Path(f"/tmp/lorry-full-{uuid.uuid4().hex[:8]}"), size_mb)
    try:
        yield mount
    finally:
        unmount(mount)
        mount.rmdir()


def test_disk_full_while_downloading(tmp_path: Path) -> None:
    with lorry.init() as run:
        artifact = lorry.Artifact("big", type="t")
        with artifact.new_file("small.bin", mode="wb") as handle:
            handle.write(b"s" * 1000)
        with artifact.new_file("large.bin", mode="wb") as handle:
            handle.write(os.urandom(3 << 20))
        run.log_artifact(artifact)
        artifact.wait()
    with tiny_filesystem(1) as mount:
        with pytest.raises(lorry.LocalFileError, match="disk is full"):
            artifact.download(mount / "root")
        leftovers = [p.name for p in (mount / "root").rglob("*")]
        assert "large.bin" not in leftovers
        assert not any(name.endswith(".lorry-tmp") for name in leftovers)


def test_nothing_is_written_for_rejected_input(store_dir: Path) -> None:
    run = lorry.init()
    before = store_files(store_dir)
    artifact = lorry.Artifact("ok", type="t")
    with pytest.raises(lorry.ValidationError):
        run.log_artifact(artifact, aliases=["v1"])
    with pytest.raises(lorry.ValidationError):
        run.log_artifact(artifact, aliases="latest")  # type: ignore[arg-type]
    with pytest.raises(lorry.InvalidNameError):
        run.use_artifact("bad name!:v0")
    run.finish()
    after = store_files(store_dir)
    assert {p for p in after - before if "/runs/" not in p} == set()


def test_downloads_never_write_through_a_symlink_planted_in_the_root(tmp_path: Path) -> None:
    """Links planted where an entry or its folder will go: the download refuses them, and nothing
    outside the root is written or created."""
    with lorry.init() as run:
        artifact = logged(run, "planted", {"a.txt": b"new a", "sub/b.txt": b"new b"})
    outside = tmp_path / "outside"
    victim = write(outside / "victim.txt", b"victim")
    for planted in ("a.txt", "sub"):
        root = tmp_path / f"down-{planted.replace('/', '-')}"
        root.mkdir()
        if planted == "sub":
            (root / "sub").symlink_to(outside, target_is_directory=True)
        else:
            (root / "a.txt").symlink_to(victim)
        with pytest.raises(lorry.InvalidPathError, match=r"symlink|outside"):
            artifact.download(root)
        assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
        assert victim.read_bytes() == b"victim"
