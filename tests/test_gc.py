"""``lorry gc`` and ``lorry verify`` of a whole store, on a local store (the protocol is the same on
every store; test_many_writers runs them on the remote ones)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import lorry
from lorry.errors import ConflictError, CorruptRecordError
from lorry.model.layout import blob_key, manifest_key
from lorry.registry.maintenance import GC_STATE_KEY, SETTLE, collect_garbage, read_fence, verify_store
from lorry.storage.base import OVERWRITE
from lorry.storage.local import LocalStore
from tests.conftest import logged

ORPHAN = "blake3:" + "ab" * 32


def lorry_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorry.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def store_path() -> Path:
    return Path(os.environ["LORRY_STORE"])


def make_old(path: Path, hours: float = 48) -> None:
    then = (datetime.now(UTC) - timedelta(hours=hours)).timestamp()
    os.utime(path, (then, then))


@pytest.fixture
def history() -> lorry.Artifact:
    """A store with one version (two blobs), an old orphan blob, and a fresh orphan blob."""
    with lorry.init(job_type="setup") as run:
        artifact = logged(run, "kept", {"a.bin": b"a" * 5000, "b.txt": b"bee"})
    orphan = store_path() / blob_key(ORPHAN)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a crashed log")
    make_old(orphan)
    fresh = store_path() / blob_key("blake3:" + "cd" * 32)
    fresh.parent.mkdir(parents=True, exist_ok=True)
    fresh.write_bytes(b"a log still running elsewhere")
    return artifact


def test_gc_dry_run_lists_then_gc_removes_only_old_garbage(history: lorry.Artifact) -> None:
    orphan = store_path() / blob_key(ORPHAN)
    dry = lorry_cli("gc", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["keys"] == [blob_key(ORPHAN)] and report["blobs"] == 1 and report["spared"] == 1
    assert orphan.exists()

    done = lorry_cli("gc")
    assert done.returncode == 0, done.stderr
    assert "removed 1 blobs" in done.stdout and "1 unreferenced objects younger than 1 day" in done.stdout
    assert not orphan.exists()
    assert (store_path() / blob_key("blake3:" + "cd" * 32)).exists()  # young: spared
    # what the version needs is untouched
    check = lorry_cli("verify")
    assert check.returncode == 0 and "ok: 1 versions, 2 blobs" in check.stdout, check.stdout
    history.download("out")
    history.verify("out")


def test_verify_reports_missing_and_corrupt_blobs(history: lorry.Artifact) -> None:
    entries = {entry.path: entry for entry in history.files()}
    missing = store_path() / blob_key(f"blake3:{entries['b.txt'].digest.partition(':')[2]}")
    corrupt = store_path() / blob_key(f"blake3:{entries['a.bin'].digest.partition(':')[2]}")
    missing.unlink()
    corrupt.write_bytes(b"b" * 5000)  # same size, other bytes

    quick = lorry_cli("verify", "--quick", "--json")
    assert quick.returncode == 1
    problems = {p["key"]: p["problem"] for p in json.loads(quick.stdout)["problems"]}
    assert list(problems) == [str(missing.relative_to(store_path()))]  # sizes cannot see the corruption

    full = lorry_cli("verify")
    assert full.returncode == 1
    assert f"{missing.relative_to(store_path())}: missing" in full.stdout
    assert f"{corrupt.relative_to(store_path())}: corrupt" in full.stdout
    assert "2 problem(s)" in full.stdout


def test_gc_removes_nothing_when_a_manifest_is_unreadable(history: lorry.Artifact) -> None:
    (store_path() / manifest_key(f"blake3:{history.digest}")).unlink()
    result = lorry_cli("gc", "--older-than", "0s")
    assert result.returncode == 1
    assert "gc stopped before removing anything" in result.stderr
    assert (store_path() / blob_key(ORPHAN)).exists()


def test_gc_cleans_up_a_killed_writers_temporary_files() -> None:
    store = LocalStore(store_path())
    temp = store.temp_path()
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"half a blob")
    make_old(temp)
    report = asyncio.run(collect_garbage(store, settle=0))
    assert report.uploads == 1 and not temp.exists()


def test_one_gc_at_a_time_and_a_dead_one_expires() -> None:
    store = LocalStore(store_path())

    async def scenario() -> None:
        running = {
            "state": "running",
            "host": "other",
            "pid": 1,
            "started": datetime.now(UTC).isoformat(),
            "refreshed": datetime.now(UTC).isoformat(),
        }
        await store.put(GC_STATE_KEY, json.dumps(running).encode(), OVERWRITE)
        assert (await read_fence(store)).running
        with pytest.raises(ConflictError, match="another gc is running"):
            await collect_garbage(store, settle=0)
        running["refreshed"] = (datetime.now(UTC) - timedelta(minutes=9)).isoformat()  # quiet, alive
        await store.put(GC_STATE_KEY, json.dumps(running).encode(), OVERWRITE)
        with pytest.raises(ConflictError, match="another gc is running"):
            await collect_garbage(store, settle=0)
        running["refreshed"] = (datetime.now(UTC) - timedelta(minutes=11)).isoformat()  # it died
        await store.put(GC_STATE_KEY, json.dumps(running).encode(), OVERWRITE)
        await collect_garbage(store, settle=0)
        assert not (await read_fence(store)).running

    asyncio.run(scenario())


def test_gc_refuses_a_corrupt_version_record(history: lorry.Artifact) -> None:
    record = next(store_path().glob("*/*/artifacts/kept/versions/0.json"))
    record.write_text("{not json")
    with pytest.raises(CorruptRecordError, match=r"versions/0\.json"):
        asyncio.run(collect_garbage(LocalStore(store_path()), grace=timedelta(0), settle=0))
    report = lorry.Api().verify_store(quick=True)
    assert not report.ok and report.problems[0].key.endswith("versions/0.json")


def test_verify_reports_damaged_and_dangling_aliases(history: lorry.Artifact) -> None:
    aliases = next(store_path().glob("*/*/artifacts/kept")) / "aliases"
    aliases.mkdir(exist_ok=True)
    (aliases / "broken.json").write_text("{")
    (aliases / "dangling.json").write_text('{"version": 7}')
    report = lorry.Api().verify_store(quick=True)
    problems = {problem.key.rpartition("/")[2]: problem.message for problem in report.problems}
    assert set(problems) == {"broken.json", "dangling.json"}
    assert problems["dangling.json"] == "names v7, which does not exist"


def test_gc_waits_five_seconds_between_announcing_itself_and_reading_the_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default wait, as it is: a log that read the fence before gc's record appeared has that
    long to create its version, which gc then sees."""
    store = LocalStore(store_path())
    announced: list[float] = []
    read: list[float] = []
    real_put, real_list = store.put, store.list

    async def put(key: str, data: bytes, mode: object = OVERWRITE) -> object:
        result = await real_put(key, data, mode)  # type: ignore[arg-type]
        if key == GC_STATE_KEY and json.loads(data)["state"] == "running" and not announced:
            announced.append(time.monotonic())
        return result

    def listing(prefix: str) -> object:
        if not read and announced:
            read.append(time.monotonic())
        return real_list(prefix)

    monkeypatch.setattr(store, "put", put)
    monkeypatch.setattr(store, "list", listing)
    asyncio.run(collect_garbage(store))
    assert announced and read
    assert 5.0 <= read[0] - announced[0] < 6.0, read[0] - announced[0]


def test_a_log_slow_to_commit_checks_a_third_time_and_repairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A log takes longer than half the gc wait between its second check and its create, and a gc
    (with a short wait here) runs in that time and removes the log's blobs, which no version names
    yet: the log checks the fence a third time after its create and stores them again."""
    from lorry.registry.registry import Registry

    real_commit = Registry.commit
    gc_done = threading.Event()
    removed: list[int] = []

    def gc_now() -> None:
        report = asyncio.run(collect_garbage(LocalStore(store_path()), grace=timedelta(0), settle=0.5))
        removed.append(report.blobs)
        gc_done.set()

    async def slow_commit(self: Registry, *args: object, **kwargs: object) -> object:
        if not gc_done.is_set():
            threading.Thread(target=gc_now).start()
            await asyncio.to_thread(gc_done.wait, 30)
            await asyncio.sleep(max(0.0, SETTLE / 2 + 0.2 - 0.5))  # past half the gc wait in all
        return await real_commit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Registry, "commit", slow_commit)
    with lorry.init() as run:
        artifact = logged(run, "slow", {"a.bin": os.urandom(5000), "b.txt": b"bee"})
    assert removed and removed[0] == 2  # the gc did take the log's two blobs
    report = asyncio.run(verify_store(LocalStore(store_path())))
    assert report.ok, report.problems
    artifact.verify(artifact.download())
