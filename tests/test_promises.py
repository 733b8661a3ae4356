"""Promises of the README checked as a user meets them, through the public API only."""

from __future__ import annotations

from pathlib import Path

import pytest

import lorry
from tests.conftest import logged, use_remote_store


def test_finish_artifact_removes_the_shard_records(store_dir: Path) -> None:
    """The README: finish_artifact commits the merged manifest, "then it removes the shard records"."""
    with lorry.init(group="job") as run:
        for rank in range(2):
            shard = lorry.Artifact("parts", type="dataset")
            with shard.new_file(f"rank-{rank}.txt") as handle:
                handle.write(str(rank))
            run.upsert_artifact(shard, distributed_id="job")
        shard_records = [p for p in store_dir.rglob("*.json") if "shards" in p.parts]
        assert len(shard_records) == 2, shard_records  # recorded while the shards wait
        done = run.finish_artifact(lorry.Artifact("parts", type="dataset"), distributed_id="job")
    assert sorted(done.manifest) == ["rank-0.txt", "rank-1.txt"]
    assert [p for p in store_dir.rglob("*") if "shards" in p.parts and p.is_file()] == []


def test_reinit_return_previous_and_create_new() -> None:
    """``reinit="return_previous"`` returns the current run, ``"create_new"`` leaves it running."""
    first = lorry.init(project="p")
    assert lorry.init(project="p", reinit="return_previous") is first
    second = lorry.init(project="p", reinit="create_new")
    assert second is not first
    logged(first, "still-open", {"a.txt": b"a"})  # the first run was left running: it still logs
    second.finish()
    third = lorry.init(project="p")  # the default: the current run is finished first
    assert third is not second
    third.finish()


@pytest.mark.parametrize("kind", ["moto", "gcs"])
def test_download_skip_cache_keeps_nothing_in_the_cache(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`download(skip_cache=True)` (nothing kept in the download cache), from a remote store."""
    use_remote_store(kind, request, monkeypatch)
    payload = {"small.txt": b"s" * 100, "big.bin": bytes(range(256)) * 40_000}
    with lorry.init() as run:
        logged(run, "remote", payload)
    cache = tmp_path / "cache"
    blobs_before = sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []
    got = lorry.Api().artifact("remote:v0")
    root = Path(got.download(root=str(tmp_path / "out"), skip_cache=True))
    assert {p.name: p.read_bytes() for p in root.iterdir()} == payload
    blobs_after = sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []
    assert blobs_after == blobs_before
    # Without skip_cache the same download does keep its blobs: the check above can fail.
    lorry.Api().artifact("remote:v0").download(root=str(tmp_path / "again"))
    assert len([p for p in cache.rglob("*") if p.is_file()]) > len(blobs_before)
