"""The Artifacts API end to end on remote stores: S3 on Ceph RGW and on moto, GCS on its emulator."""

from __future__ import annotations

import asyncio
import filecmp
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import lorry
from lorry import _bridge
from lorry.cache import Cache
from lorry.errors import ObjectNotFoundError, SourceChangedError
from lorry.model.digest import digest_bytes
from lorry.model.layout import blob_key
from lorry.session import session
from lorry.settings import Settings
from lorry.storage.base import CREATE, Store
from lorry.storage.s3 import S3Store
from lorry.transfer.cleanup import stale_uploads
from lorry.transfer.engine import KEPT_BUFFERS, ByteBudget
from lorry.transfer.files import FileStamp
from lorry.transfer.upload import FileSource, _read_hashed, _StampedFile
from tests.conftest import use_remote_store
from tests.fixtures_gcs import GCSStoreFactory
from tests.fixtures_s3 import S3Server

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
    # From here on the store has none of the blobs: what still works comes from the folder or the cache.
    stamps = {name: _stamp(folder / "data" / name) for name in contents}
    for entry in used.files():
        _bridge.run_sync(_store().delete(blob_key(entry.digest or "")))
    # A second download into the same folder fetches nothing: every file is kept as it is.
    assert Path(lorry.Api().artifact("dataset:v0").download(tmp_path / "down")) == folder
    assert {name: _stamp(folder / "data" / name) for name in contents} == stamps
    # A download into a new folder comes from the cache, verified.
    again = Path(lorry.Api().artifact("dataset:v0").download(tmp_path / "again"))
    assert {name: (again / "data" / name).read_bytes() for name in contents} == contents
    # Files leave the cache by copy: writing to one cannot reach the cache (or the store).
    cached = {p.stat().st_ino for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    big = again / "data/big.bin"
    assert big.stat().st_nlink == 1 and big.stat().st_ino not in cached
    with open(big, "r+b") as handle:
        handle.write(b"overwritten")
    third = Path(lorry.Api().artifact("dataset:v0").download(tmp_path / "third"))
    assert (third / "data/big.bin").read_bytes() == contents["big.bin"]


def _stamp(path: Path) -> tuple[int, int]:
    """What changes when a file is written or replaced: its inode and its modification time."""
    return path.stat().st_ino, path.stat().st_mtime_ns


def _store() -> Store:
    settings = Settings.load()
    return session(settings).store(settings.store)


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
    entry = artifact.get_entry("f.bin")
    _bridge.run_sync(_store().delete(blob_key(entry.digest or "")))
    with pytest.raises(lorry.StoreError, match=r"f\.bin"):
        artifact.download(tmp_path / "d")
    assert not (tmp_path / "d/f.bin").exists()


def test_stale_uploads_are_listed_then_aborted(moto_server: S3Server, s3_bucket: object) -> None:
    url: str = s3_bucket(moto_server)  # type: ignore[operator]
    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    admin = moto_server.admin()
    admin.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/blobs/blake3/ab/left-behind")
    cli = [sys.executable, "-m", "lorry.cli", "abort-uploads", "--store", url, "--older-than", "0s"]
    listed = subprocess.run([*cli, "--dry-run"], capture_output=True, text=True, env=dict(os.environ))
    assert listed.returncode == 0, listed.stderr
    assert "would abort blobs/blake3/ab/left-behind" in listed.stdout
    assert len(admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    # The grace period protects young uploads (moto dates every upload 2010-11-10, so "now" is set).
    young, old = asyncio.run(stale_counts(S3Store(url)))
    assert (young, old) == (0, 1)
    aborted = subprocess.run(cli, capture_output=True, text=True, env=dict(os.environ))
    assert aborted.returncode == 0, aborted.stderr
    assert "aborted 1 stale upload(s)" in aborted.stdout
    assert admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def stale_counts(store: S3Store) -> tuple[int, int]:
    """How many uploads are stale five minutes and two hours after the first one started."""
    try:
        uploads = [u async for u in store.list_multipart("")]
        started = uploads[0].initiated
        young = await stale_uploads(store, timedelta(hours=1), now=started + timedelta(minutes=5))
        old = await stale_uploads(store, timedelta(hours=1), now=started + timedelta(hours=2))
        return len(young), len(old)
    finally:
        await store.close()


LOG_ONE_FILE = """
import json, sys, lorry
def peak():
    # This process's own high-water mark (VmHWM): ru_maxrss would count the parent it was forked from.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
run = lorry.init(job_type="checkpoint")
lorry.Api().artifact_collections(run.project, "model")  # the store and its client, opened
before = peak()
artifact = lorry.Artifact("checkpoint", type="model")
artifact.add_file(sys.argv[1], policy="immutable")
run.log_artifact(artifact)
artifact.wait()
run.finish()
print(json.dumps({"before": before, "peak": peak()}))
"""


def test_a_large_file_goes_to_gcs_a_chunk_at_a_time(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """GCS has no multipart upload: a large file goes up as one resumable upload, read a chunk at a
    time, so the memory it costs does not grow with the file (a 2 GiB file stays under 300 MiB)."""
    use_remote_store("gcs", request, monkeypatch)
    monkeypatch.setenv("LORRY_TRANSFER_PROCESS", "never")  # measured in the process that logs it
    size = 160 * MiB
    source = tmp_path / "model.bin"
    with open(source, "wb") as handle:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            handle.write(i.to_bytes(8, "little") + block[8:])
    result = subprocess.run(
        [sys.executable, "-c", LOG_ONE_FILE, str(source)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(report)
    assert report["peak"] - report["before"] < size // 4, report
    folder = Path(lorry.Api().artifact("checkpoint:latest").download(tmp_path / "down"))
    assert filecmp.cmp(folder / "model.bin", source, shallow=False)


@pytest.mark.parametrize("change", ["grown", "shrunk", "rewritten"])
def test_a_source_changed_while_streamed_stores_nothing(
    gcs_store_factory: GCSStoreFactory, tmp_path: Path, change: str
) -> None:
    """The stream checks its source's stamp when its last bytes are read, before the last chunk of
    the resumable upload goes out, so a changed source leaves no object with a wrong name."""
    store = gcs_store_factory()
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(9 * MiB))
    item = FileSource("source.bin", source, FileStamp.of(source), owned=False)
    if change == "grown":
        with open(source, "ab") as handle:
            handle.write(b"more")
    elif change == "shrunk":
        os.truncate(source, 8 * MiB + 5)
    else:
        with open(source, "r+b") as handle:
            handle.write(b"new")
        os.utime(source, ns=(0, item.stamp.mtime_ns + 1))

    async def body() -> None:
        try:
            with _StampedFile(item) as stream, pytest.raises(SourceChangedError):
                await store.put("blob", stream, CREATE)
            with pytest.raises(ObjectNotFoundError):
                await store.head("blob")
        finally:
            await store.close()

    asyncio.run(body())


@pytest.mark.parametrize("change", ["grown", "shrunk", "rewritten"])
def test_a_source_changed_before_it_is_read_into_a_kept_buffer_fails(tmp_path: Path, change: str) -> None:
    """A file below the multipart size is read into a buffer kept from an earlier file: a changed
    source fails, and the earlier file's bytes left in the buffer are never taken for its own."""
    source = tmp_path / "source.bin"
    source.write_bytes(b"a" * (2 * MiB))
    item = FileSource("source.bin", str(source), FileStamp.of(source), owned=False)
    if change == "grown":
        with open(source, "ab") as handle:
            handle.write(b"more")
    elif change == "shrunk":
        os.truncate(source, MiB)
    else:
        with open(source, "r+b") as handle:
            handle.write(b"new")
        os.utime(source, ns=(0, item.stamp.mtime_ns + 1))
    buffer = memoryview(bytearray(b"X" * (3 * MiB)))[: 2 * MiB + 1]
    with pytest.raises(SourceChangedError, match=r"source\.bin"):
        _read_hashed(item, buffer)


def test_an_unchanged_source_read_into_a_kept_buffer_is_its_own_bytes(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    content = os.urandom(2 * MiB)
    source.write_bytes(content)
    item = FileSource("source.bin", str(source), FileStamp.of(source), owned=False)
    data, digest = _read_hashed(item, memoryview(bytearray(b"X" * (3 * MiB)))[: 2 * MiB + 1])
    assert bytes(data) == content
    assert digest == digest_bytes(content)


def test_the_memory_budget_lends_buffers_again_and_keeps_a_bounded_few() -> None:
    async def body() -> None:
        budget = ByteBudget(256 * MiB)
        async with budget.lend(3 * MiB) as first:
            assert len(first) == 3 * MiB
            first_buffer = first.obj
        async with budget.lend(2 * MiB + 5) as again:  # a kept buffer large enough is lent again
            assert again.obj is first_buffer and len(again) == 2 * MiB + 5
        async with budget.lend(5 * MiB) as larger:  # none large enough: a new one
            assert larger.obj is not first_buffer
        many = [budget.lend(16 * MiB) for _ in range(8)]
        for loan in many:
            await loan.__aenter__()
        assert budget._available == 256 * MiB - 8 * 16 * MiB  # each loan holds its size of the budget
        for loan in many:
            await loan.__aexit__(None, None, None)
        assert sum(len(b) for b in budget._kept) <= KEPT_BUFFERS
        assert budget._available == 256 * MiB

    asyncio.run(body())


def test_a_loan_also_counts_the_memory_held_elsewhere_for_it_in_one_wait() -> None:
    """A body below the multipart size is lent a buffer, and the C client copies it as it sends it:
    both count against the budget, taken together, so that workers waiting for the second part never
    hold the first (two waits in turn could wait forever)."""

    async def body() -> None:
        budget = ByteBudget(10 * MiB)
        entered = asyncio.Event()

        async def second() -> None:
            async with budget.lend(3 * MiB):
                entered.set()

        async with budget.lend(4 * MiB, also=4 * MiB) as buffer:
            assert len(buffer) == 4 * MiB and budget._available == 2 * MiB
            waiting = asyncio.ensure_future(second())
            await asyncio.sleep(0.05)
            assert not entered.is_set()  # 3 MiB more does not fit beside 8 MiB of 10
        await asyncio.wait_for(waiting, 5)
        assert entered.is_set() and budget._available == 10 * MiB
        # Many loans of each 5 MiB plus 5 MiB in a 10 MiB budget: one at a time, none stuck.
        done: list[int] = []

        async def loan(n: int) -> None:
            async with budget.lend(5 * MiB, also=5 * MiB - 1):
                await asyncio.sleep(0)
                done.append(n)

        budget = ByteBudget(10 * MiB)
        await asyncio.wait_for(asyncio.gather(*(loan(n) for n in range(20))), 10)
        assert sorted(done) == list(range(20)) and budget._available == 10 * MiB

    asyncio.run(body())


def test_a_large_download_is_placed_once_and_remembered_not_copied_into_the_cache(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """S3 (Ceph RGW): a large blob is written once, into its target; the cache holds no copy of it
    but remembers the place, and serves a later download from there (checked again) while the file
    is as it was left. A place whose file changed is not used, and ``lorry cache cleanup`` forgets it."""
    use_remote_store("ceph", request, monkeypatch)
    content = os.urandom(5 * MiB)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(content)
    with lorry.init() as run:
        artifact = lorry.Artifact("placed", type="dataset")
        artifact.add_dir(tmp_path / "data")
        run.log_artifact(artifact)
    first = Path(lorry.Api().artifact("placed:v0").download(tmp_path / "first")) / "big.bin"
    cache = Path(Settings.load().cache_dir)
    assert not (cache / "blobs").exists() or not any(p.is_file() for p in (cache / "blobs").rglob("*"))
    digest = digest_bytes(content)
    assert Cache(cache).lookup(digest, len(content)) == first.resolve()
    _bridge.run_sync(_store().delete(blob_key(digest)))  # from here on only the place has the bytes
    second = Path(lorry.Api().artifact("placed:v0").download(tmp_path / "second")) / "big.bin"
    assert second.read_bytes() == content and second.stat().st_ino != first.stat().st_ino
    with open(first, "r+b") as handle:  # the first copy changed in place: the second one serves
        handle.write(b"changed")
    assert Cache(cache).lookup(digest, len(content)) == second.resolve()
    third = Path(lorry.Api().artifact("placed:v0").download(tmp_path / "third")) / "big.bin"
    assert third.read_bytes() == content
    for copy in (second, third):
        copy.unlink()
    assert Cache(cache).lookup(digest, len(content)) is None
    left_by_a_dead_writer = cache / "placed" / "blake3" / "00" / ".00ff.0123456789ab.tmp"
    left_by_a_dead_writer.parent.mkdir(parents=True, exist_ok=True)
    left_by_a_dead_writer.write_text('["/somewhere", 1, 2, 3, 4, 5]\n')
    command = [sys.executable, "-m", "lorry.cli", "cache", "cleanup", "--json"]
    cleaned = subprocess.run(command, capture_output=True, text=True, check=True)
    # The changed first copy was forgotten when the third place was remembered; the other two now.
    assert json.loads(cleaned.stdout)["places_forgotten"] == 2
    assert not any(p.is_file() for p in (cache / "placed").rglob("*"))


def test_the_cache_remembers_four_places_per_blob_the_latest_first(tmp_path: Path) -> None:
    """``remember_place`` keeps the four latest places of a blob; a lookup gives the latest that is
    still as it was left, and ``forget`` drops one place without touching its file."""
    cache = Cache(tmp_path / "cache")
    content = b"placed bytes"
    digest = digest_bytes(content)
    copies = []
    for number in range(6):
        copy = tmp_path / f"copy-{number}.bin"
        copy.write_bytes(content)
        cache.remember_place(digest, copy)
        copies.append(copy)
    assert cache.lookup(digest, len(content)) == copies[5]
    cache.forget(digest, copies[5])
    assert copies[5].read_bytes() == content  # forgotten, not removed
    assert cache.lookup(digest, len(content)) == copies[4]
    for copy in copies[2:5]:
        copy.unlink()
    assert cache.lookup(digest, len(content)) is None  # the first two were never kept: four at most
