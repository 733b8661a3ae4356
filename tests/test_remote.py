"""The Artifacts API end to end on remote stores: S3 on Ceph RGW and on moto, GCS on its emulator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lorry

MiB = 1 << 20


def make_files(root: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    contents = {}
    for name, size in sizes.items():
        data = os.urandom(size)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents[name] = data
    return contents


def test_round_trip_small_and_multipart_files(remote_store: str, tmp_path: Path) -> None:
    sizes = {"a.txt": 10, "nested/b.bin": 300 << 10, "nested/deeper/c.bin": 3 * MiB, "big.bin": 40 * MiB}
    contents = make_files(tmp_path / "data", sizes)
    with lorry.init(job_type="upload") as run:
        artifact = lorry.Artifact("dataset", type="dataset", metadata={"n": 4})
        artifact.add_dir(tmp_path / "data", name="data")
        run.log_artifact(artifact, aliases=["first"])
        assert artifact.wait().version == "v0"
    with lorry.init(job_type="download") as run:
        used = run.use_artifact("dataset:first")
        folder = Path(used.download(tmp_path / "down"))
        for name, data in contents.items():
            assert (folder / "data" / name).read_bytes() == data
        assert used.metadata == {"n": 4}
        assert used.logged_by().job_type == "upload"  # type: ignore[union-attr]
    # A second download comes from the cache, still verified.
    again = Path(lorry.Api().artifact("dataset:v0").download(tmp_path / "again"))
    assert (again / "data/big.bin").read_bytes() == contents["big.bin"]


def test_versions_dedupe_and_call_order(remote_store: str) -> None:
    with lorry.init() as run:
        artifacts = []
        for i, size in enumerate([3 * MiB, 1, 2 * MiB, 10, 1 * MiB]):
            artifact = lorry.Artifact("race", type="dataset", metadata={"index": i})
            with artifact.new_file("x.bin", mode="wb") as handle:
                handle.write(bytes([i]) * size)
            run.log_artifact(artifact)
            artifacts.append(artifact)
        same = lorry.Artifact("race", type="dataset")
        with same.new_file("x.bin", mode="wb") as handle:
            handle.write(bytes([1]))
        run.log_artifact(same, aliases=["again"])
        assert [a.wait().version for a in artifacts] == [f"v{i}" for i in range(5)]
        assert same.wait().version == "v1"
    api = lorry.Api()
    assert [a.metadata["index"] for a in api.artifacts("dataset", "race")] == list(range(5))
    assert api.artifact("race:again").version == "v1"
    assert api.artifact("race:latest").version == "v4"


def test_missing_blob_on_the_store_is_a_clear_error(remote_store: str, tmp_path: Path) -> None:
    with lorry.init() as run:
        artifact = lorry.Artifact("fragile", type="dataset")
        with artifact.new_file("f.bin", mode="wb") as handle:
            handle.write(b"payload")
        run.log_artifact(artifact)
        artifact.wait()
    from lorry import _bridge
    from lorry.registry.registry import blob_key
    from lorry.settings import Settings
    from lorry.transfer.engine import engine

    settings = Settings.load()
    store = engine(settings).store(settings.store)
    entry = artifact.get_entry("f.bin")
    _bridge.run_sync(store.delete(blob_key(entry.digest or "")))
    with pytest.raises(lorry.StoreError, match=r"f\.bin"):
        artifact.download(tmp_path / "d")
    assert not (tmp_path / "d/f.bin").exists()
