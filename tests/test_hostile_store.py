"""A damaged or hostile store.

A real artifact is logged, then its objects are damaged around lorry: on disk for the local store, and
through a plain S3 client on a moto server. Whatever the damage, the user-facing calls
(``Api().artifact``, ``download``, ``verify``, ``get_path``, ``lorry get`` and ``lorry verify``) raise a
lorry error whose message names the damaged object, never a bare parser exception; nothing is written
outside the download root; no partial or unverified file stands under a final name; and a damaged
blob in the download cache is caught and fetched again, not served.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import lorry
from lorry.model.digest import digest_bytes
from lorry.model.layout import blob_key, manifest_key
from lorry.model.manifest import Manifest
from lorry.transfer.plan import SMALL_OBJECT
from tests.fixtures_s3 import S3Server

PREFIX = "tester/uncategorized/artifacts/victim/"
RECORD = PREFIX + "versions/0.json"
FILES = {
    "a.txt": b"alpha " * 10,
    "sub/b.bin": bytes(range(256)) * 4,
    "large.bin": os.urandom(SMALL_OBJECT + 4096),  # above the single-GET size: fetched in ranges
}


# -- the store, reached around lorry -------------------------------------------------------------------


class Raw:
    """A store's objects as a damaged disk or a hostile administrator would change them."""

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError


@dataclass
class LocalRaw(Raw):
    root: Path

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # store files are read-only to others: replace, do not write into
        path.write_bytes(data)

    def delete(self, key: str) -> None:
        (self.root / key).unlink()


@dataclass
class S3Raw(Raw):
    client: Any
    bucket: str
    prefix: str

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        return body

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)


@pytest.fixture
def raw(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Raw:
    """The store under test, as ``$LORRY_STORE``: the local one, unless a test asks for ``"s3"``
    (a bucket on a moto server) with ``ON_BOTH``."""
    if getattr(request, "param", "local") == "local":
        return LocalRaw(tmp_path / "store")
    server: S3Server = request.getfixturevalue("moto_server")
    url = request.getfixturevalue("s3_bucket")(server)
    monkeypatch.setenv("LORRY_STORE", url)
    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    return S3Raw(server.admin(), bucket, prefix + "/")


ON_BOTH = pytest.mark.parametrize("raw", ["local", "s3"], indirect=True)
ON_S3 = pytest.mark.parametrize("raw", ["s3"], indirect=True)


@dataclass
class Victim:
    """The logged artifact and where its objects are."""

    raw: Raw
    record: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.record["manifest"])

    def blob(self, name: str) -> str:
        return blob_key(digest_bytes(FILES[name]))

    def entry(self, name: str) -> dict[str, Any]:
        return dict(next(e for e in self.manifest["entries"] if e["path"] == name))

    def hostile_manifest(self, payload: bytes) -> str:
        """Store ``payload`` as a manifest and point the version record at it, as a hostile store
        can: the digest then matches, so only the parser stands between it and the disk."""
        key = manifest_key(digest_bytes(payload))
        self.raw.put(key, payload)
        self.raw.put(RECORD, orjson.dumps({**self.record, "manifest": digest_bytes(payload)}))
        return key

    def hostile_entries(self, entries: list[Any]) -> str:
        return self.hostile_manifest(orjson.dumps({"format": 1, "entries": entries}))


def log_victim(raw: Raw) -> Victim:
    """Log the artifact ``victim`` (v0, alias ``good``) and read back its record and manifest."""
    with lorry.init() as run:
        artifact = lorry.Artifact("victim", type="dataset")
        for name, data in FILES.items():
            with artifact.new_file(name, mode="wb") as handle:
                handle.write(data)
        run.log_artifact(artifact, aliases=["good"])
        artifact.wait()
    record = orjson.loads(raw.get(RECORD))
    return Victim(raw, record, orjson.loads(raw.get(manifest_key(record["manifest"]))))


@pytest.fixture
def victim(raw: Raw) -> Victim:
    return log_victim(raw)


# -- what every failure must (not) leave behind ---------------------------------------------------------


@dataclass
class Scene:
    """Download roots, each alone in a folder of its own, and the places something must never appear."""

    tmp_path: Path
    before: set[str]
    root: Path = Path()

    def __post_init__(self) -> None:
        self.next()

    @property
    def downloads(self) -> Path:
        return self.tmp_path / "downloads"

    @property
    def cache(self) -> Path:
        return self.tmp_path / "cache"

    def next(self) -> Path:
        """A new, empty place for a download root (for the next case of a test that tries several)."""
        outer = self.downloads / str(len(list(self.downloads.glob("*"))) if self.downloads.exists() else 0)
        outer.mkdir(parents=True)
        self.root = outer / "root"
        for remembered in ("blobs", "placed"):  # each case fetches from the store
            shutil.rmtree(self.cache / remembered, ignore_errors=True)
        return self.root

    def check_clean(self) -> None:
        """Each root alone in its folder; below it, only complete and correct files; no temporary
        file left in the cache; nothing new beside the test's own folders."""
        for outer in self.downloads.iterdir():
            assert {p.name for p in outer.iterdir()} <= {"root"}, outer
        for path in self.downloads.rglob("*"):
            assert not path.name.endswith(".lorry-tmp"), path
            if path.is_file():  # downloads/<n>/root/<entry>
                entry = "/".join(path.relative_to(self.downloads).parts[2:])
                assert FILES.get(entry) == path.read_bytes(), f"{path} is not a complete, verified file"
        assert list(self.cache.glob("staging/*/download-*")) == []  # no download left half-way
        assert {p.name for p in self.tmp_path.iterdir()} <= self.before | {"downloads"}
        assert not (self.tmp_path.parent / ESCAPE).exists()
        assert not Path("/tmp", ESCAPE).exists()


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    """What is in ``tmp_path`` now, and the store and cache that may come: nothing else may appear."""
    return Scene(tmp_path, {p.name for p in tmp_path.iterdir()} | {"cache", "store"})


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorry.cli", *args], capture_output=True, text=True, timeout=120
    )


def cli_fails(*args: str) -> str:
    """Run ``lorry ARGS``, expected to fail with exit 1 and one line of error; return that line."""
    result = cli(*args)
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lorry: error: "), result.stderr
    return lines[0]


def refuse_everywhere(scene: Scene, error: type[lorry.LorryError], *named: str) -> None:
    """Every call that reads the manifest fails with ``error`` naming ``named``; nothing is left."""
    artifact = lorry.Api().artifact("victim:v0")
    calls: list[Callable[[], object]] = [
        lambda: artifact.download(scene.root),
        lambda: artifact.verify(scene.root),
        lambda: artifact.get_path("a.txt"),
        lambda: lorry.Api().artifact("victim:good").files(),
    ]
    for call in calls:
        with pytest.raises(error) as caught:
            call()
        for text in named:
            assert text in str(caught.value)
    scene.check_clean()


# -- manifests ------------------------------------------------------------------------------------------

MALFORMED = {
    "empty": (b"", "not valid JSON"),
    "cut-json": (b'{"format": 1, "entries": [{"path": "a.txt", "dig', "not valid JSON"),
    "not-utf8": (b"\xff\xfe{}", "not valid JSON"),
    "deep": (b"[" * 5000 + b"]" * 5000, "not valid JSON"),  # nested past the parser's limit
    "list": (b"[]", "not a lorry manifest"),
    "format-2": (b'{"format": 2, "entries": []}', "not a lorry manifest"),
    "entries-object": (b'{"format": 1, "entries": {"a.txt": {}}}', "not a lorry manifest"),
    "no-entries": (b'{"format": 1}', "not a lorry manifest"),
}

ESCAPE = f"lorry-escape-{uuid.uuid4().hex[:8]}"  # a name that must never appear outside a root


def hostile_entries(good: dict[str, Any]) -> dict[str, tuple[list[Any], str]]:
    """Manifest entries with one hostile change each (``good``: the real entry of a.txt), and the
    problem the error names."""

    def without(name: str) -> dict[str, Any]:
        return {k: v for k, v in good.items() if k != name}

    return {
        "dotdot": ([{**good, "path": f"../../{ESCAPE}"}], "escapes"),
        "dotdot-inside": ([{**good, "path": f"sub/../../../{ESCAPE}"}], "escapes"),
        "absolute": ([{**good, "path": f"/tmp/{ESCAPE}"}], "absolute"),
        "drive": ([{**good, "path": f"C:/{ESCAPE}"}], "absolute"),
        "nul": ([{**good, "path": "a\x00.txt"}], "control character"),
        "newline": ([{**good, "path": "a\n.txt"}], "control character"),
        "backslash": ([{**good, "path": "sub\\a.txt"}], "normal form"),
        "backslash-dotdot": ([{**good, "path": f"..\\..\\{ESCAPE}"}], "escapes"),
        "not-normal": ([{**good, "path": "sub//./a.txt"}], "normal form"),
        "empty-path": ([{**good, "path": ""}], "empty"),
        "long-part": ([{**good, "path": "x" * 300}], "longer than 255 bytes"),
        "duplicate": ([good, good], "more than once"),
        "duplicate-different": ([good, {**good, "size": 1}], "more than once"),
        "file-and-folder": ([good, {**good, "path": "a.txt/inner"}], "both a file and a folder"),
        "negative-size": ([{**good, "size": -1}], "invalid size"),
        "float-size": ([{**good, "size": 1.5}], "invalid size"),
        "string-size": ([{**good, "size": "60"}], "invalid size"),
        "bool-size": ([{**good, "size": True}], "invalid size"),
        "int-path": ([{**good, "path": 7}], "must be a string"),
        "list-digest": ([{**good, "digest": [good["digest"]]}], "invalid digest"),
        "bad-digest": ([{**good, "digest": "md5:abc"}], "without a valid digest"),
        "no-size": ([without("size")], "has no 'size'"),
        "no-path": ([without("path")], "has no 'path'"),
        "entry-list": ([["a.txt", good["digest"], 60]], "not an object"),
        "entry-null": ([None], "not an object"),
        "int-ref": ([{**good, "ref": 5}], "invalid reference"),
    }


HOSTILE = sorted(hostile_entries({"path": "a.txt", "digest": "x", "size": 1}))
S3_SAMPLE = {"dotdot", "absolute", "nul", "backslash", "duplicate", "file-and-folder", "negative-size"}


@ON_BOTH
def test_a_truncated_manifest_is_refused(victim: Victim, scene: Scene) -> None:
    payload = victim.raw.get(victim.manifest_key)
    victim.raw.put(victim.manifest_key, payload[: len(payload) // 2])
    refuse_everywhere(scene, lorry.CorruptRecordError, victim.manifest_key, "does not match its digest")
    for command in ("get", "verify"):
        line = cli_fails(command, "victim:v0", "--root", str(scene.root))
        assert victim.manifest_key in line
    scene.check_clean()


@ON_BOTH
def test_a_manifest_replaced_by_another_is_refused(victim: Victim, scene: Scene) -> None:
    other = orjson.dumps({"format": 1, "entries": [victim.entry("a.txt")]})
    victim.raw.put(victim.manifest_key, other)  # well-formed, but not the content the record names
    refuse_everywhere(scene, lorry.CorruptRecordError, victim.manifest_key, "does not match its digest")


def test_a_missing_manifest_is_refused(victim: Victim, scene: Scene) -> None:
    victim.raw.delete(victim.manifest_key)
    refuse_everywhere(scene, lorry.CorruptRecordError, victim.manifest_key, "missing")


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_manifest_is_refused(victim: Victim, scene: Scene, case: str) -> None:
    payload, problem = MALFORMED[case]
    key = victim.hostile_manifest(payload)
    refuse_everywhere(scene, lorry.CorruptRecordError, key, problem)


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_manifest_entries_are_refused(victim: Victim, scene: Scene, case: str) -> None:
    entries, problem = hostile_entries(victim.entry("a.txt"))[case]
    key = victim.hostile_entries(entries)
    refuse_everywhere(scene, lorry.CorruptRecordError, key, problem)


@ON_S3
def test_malformed_and_hostile_manifests_on_s3(victim: Victim, scene: Scene) -> None:
    """A sample of the cases above (the parser does not depend on the store), one after the other on
    one bucket: a bucket and an upload per case would cost seconds each."""
    cases = {name: MALFORMED[name] for name in ("empty", "cut-json", "not-utf8", "list")}
    for name, (entries, problem) in hostile_entries(victim.entry("a.txt")).items():
        if name in S3_SAMPLE:
            cases[name] = (orjson.dumps({"format": 1, "entries": entries}), problem)
    for payload, problem in cases.values():
        key = victim.hostile_manifest(payload)
        refuse_everywhere(scene, lorry.CorruptRecordError, key, problem)
        scene.next()


def test_hostile_manifest_through_the_cli(victim: Victim, scene: Scene) -> None:
    entries, _ = hostile_entries(victim.entry("a.txt"))["dotdot"]
    key = victim.hostile_entries(entries)
    for command in ("get", "verify"):
        line = cli_fails(command, "victim:v0", "--root", str(scene.root))
        assert key in line and "escapes" in line
    scene.check_clean()


SIZE_LIES = {"huge": 1 << 62, "one": 1, "zero": 0, "beyond-64-bits": 10**30}


@ON_BOTH
def test_a_size_that_lies_is_caught_before_or_while_reading(victim: Victim, scene: Scene) -> None:
    """The digest is the real one; only the recorded size lies, too large or too small. No huge
    file is created, and no blob is read past the size recorded for it."""
    good, other = victim.entry("a.txt"), victim.entry("sub/b.bin")
    for size in SIZE_LIES.values():
        manifest = orjson.dumps({"format": 1, "entries": [{**good, "size": 12345}, other]})
        key = victim.hostile_manifest(manifest.replace(b"12345", str(size).encode()))  # past orjson
        with pytest.raises((lorry.IntegrityError, lorry.CorruptRecordError)) as caught:
            lorry.Api().artifact("victim:v0").download(scene.root)
        if size >= 1 << 64:  # not an integer JSON tools read: the manifest is refused
            assert isinstance(caught.value, lorry.CorruptRecordError)
            assert key in str(caught.value) and "invalid size" in str(caught.value)
        else:
            assert isinstance(caught.value, lorry.IntegrityError)
            assert victim.blob("a.txt") in str(caught.value) and "recorded" in str(caught.value)
        assert not (scene.root / "a.txt").exists()
        scene.check_clean()
        scene.next()


# -- version records, aliases, heads and runs -----------------------------------------------------------

DAMAGED_RECORDS = [
    (b"", "not valid JSON"),
    (b'{"version": 0, "manif', "not valid JSON"),
    (b"[0]", "not a JSON object"),
    ({"version": "0"}, "'version'"),
    ({"version": 3}, "says it is version 3"),
    ({"version": -1}, "negative 'version'"),
    ({"manifest": "md5:0123"}, "manifest digest"),
    ({"manifest": None}, "'manifest'"),
    ({"type": "a/b"}, "'type'"),
    ({"type": 5}, "'type'"),
    ({"size": -5}, "negative 'size'"),
    ({"size": 1.5}, "'size'"),
    ({"file_count": None}, "'file_count'"),
    ({"logged_by": "../../../../etc"}, "'logged_by'"),
    ({"logged_by": 12}, "'logged_by'"),
    ({"description": ["x"]}, "'description'"),
    ({"metadata": [1, 2]}, "'metadata'"),
    ({"created_at": None}, "'created_at'"),
]


def check_damaged_record(victim: Victim, change: bytes | dict[str, Any], problem: str) -> None:
    payload = change if isinstance(change, bytes) else orjson.dumps({**victim.record, **change})
    victim.raw.put(RECORD, payload)
    for path in ("victim:v0", "victim:good", "victim:latest", "victim"):
        with pytest.raises(lorry.CorruptRecordError) as caught:
            lorry.Api().artifact(path)
        assert RECORD in str(caught.value) and problem in str(caught.value)
    with pytest.raises(lorry.CorruptRecordError, match=r"versions/0\.json"):
        lorry.Api().artifacts("dataset", "victim")


@pytest.mark.parametrize(("change", "problem"), DAMAGED_RECORDS)
def test_a_damaged_version_record_is_refused(
    victim: Victim, scene: Scene, change: bytes | dict[str, Any], problem: str
) -> None:
    check_damaged_record(victim, change, problem)
    scene.check_clean()


@ON_S3
def test_damaged_version_records_on_s3(victim: Victim, scene: Scene) -> None:
    for change, problem in DAMAGED_RECORDS[::3]:  # a sample: the parser does not depend on the store
        check_damaged_record(victim, change, problem)
    scene.check_clean()


@ON_BOTH
def test_an_alias_naming_a_missing_version(victim: Victim, scene: Scene) -> None:
    victim.raw.put(PREFIX + "aliases/good.json", b'{"version": 7}')
    with pytest.raises(lorry.ArtifactNotFoundError) as caught:
        lorry.Api().artifact("victim:good")
    assert "aliases/good.json" in str(caught.value) and "v7" in str(caught.value)
    assert not lorry.Api().artifact_exists("victim:good")
    assert lorry.Api().artifact("victim:v0").aliases == ["latest"]  # a dangling alias names nothing
    scene.check_clean()


@pytest.mark.parametrize(
    "payload", [b"", b"{", b'{"version": -1}', b'{"version": "0"}', b'{"version": true}', b"[]"]
)
def test_a_damaged_alias_record_is_refused(
    victim: Victim, scene: Scene, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    victim.raw.put(PREFIX + "aliases/good.json", payload)
    with pytest.raises(lorry.CorruptRecordError, match=r"aliases/good\.json"):
        lorry.Api().artifact("victim:good")
    # One damaged alias does not hide the collection's versions: it is skipped, with a warning.
    assert lorry.Api().artifact("victim:v0").aliases == ["latest"]
    assert any("aliases/good.json" in record.getMessage() for record in caplog.records)
    scene.check_clean()


@pytest.mark.parametrize(
    ("key", "payload"),
    [
        ("head.json", b'{"count": "1"}'),
        ("head.json", b"{"),
        ("collection.json", b'{"type": 5}'),
        ("collection.json", b"not json"),
    ],
)
def test_a_damaged_head_or_collection_record_is_refused(
    victim: Victim, scene: Scene, key: str, payload: bytes
) -> None:
    victim.raw.put(PREFIX + key, payload)
    with pytest.raises(lorry.CorruptRecordError, match=re.escape(PREFIX + key)):
        if key == "head.json":
            lorry.Api().artifact("victim:latest")
        else:
            lorry.Api().artifacts("dataset", "victim")
    scene.check_clean()


def test_a_run_record_that_names_other_places_is_refused(victim: Victim) -> None:
    run_key = f"tester/uncategorized/runs/{victim.record['logged_by']}.json"
    run = orjson.loads(victim.raw.get(run_key))
    bad_ref = {"entity": "..", "project": "p", "name": "x", "version": 0}  # would climb out of a key
    victim.raw.put(run_key, orjson.dumps({**run, "outputs": [bad_ref]}))
    with pytest.raises(lorry.CorruptRecordError, match=f"{re.escape(run_key)}.*'entity'"):
        lorry.Api().artifact("victim:v0").logged_by()
    with pytest.raises(lorry.CorruptRecordError, match=f"{re.escape(run_key)}.*'entity'"):
        lorry.Api().run(victim.record["logged_by"])


# -- blobs ------------------------------------------------------------------------------------------------


def _damage(data: bytes, how: str) -> bytes:
    if how == "same-length":
        return bytes([data[0] ^ 1]) + data[1:]
    if how == "truncated":
        return data[: len(data) // 2]
    return data + b"appended"  # "longer"


BLOB_DAMAGE = [
    (name, how) for name in ("a.txt", "large.bin") for how in ("same-length", "truncated", "longer")
]


def check_damaged_blob(victim: Victim, scene: Scene, name: str, how: str) -> None:
    key = victim.blob(name)
    victim.raw.put(key, _damage(FILES[name], how))
    artifact = lorry.Api().artifact("victim:v0")
    with pytest.raises(lorry.IntegrityError) as caught:
        artifact.download(scene.root)
    assert key in str(caught.value) and repr(name) in str(caught.value)
    assert not (scene.root / name).exists()
    with pytest.raises(lorry.IntegrityError, match=key):
        artifact.get_path(name).download(scene.root)
    assert not (scene.root / name).exists()
    scene.check_clean()
    victim.raw.put(key, FILES[name])


@pytest.mark.parametrize(("name", "how"), BLOB_DAMAGE)
def test_a_damaged_blob_is_caught_and_never_installed(
    victim: Victim, scene: Scene, name: str, how: str
) -> None:
    check_damaged_blob(victim, scene, name, how)


@ON_S3
def test_damaged_blobs_on_s3(victim: Victim, scene: Scene) -> None:
    for name, how in BLOB_DAMAGE:
        check_damaged_blob(victim, scene, name, how)
        scene.next()


@ON_BOTH
def test_a_missing_blob_is_named(victim: Victim, scene: Scene) -> None:
    key = victim.blob("sub/b.bin")
    victim.raw.delete(key)
    with pytest.raises(lorry.StoreError) as caught:
        lorry.Api().artifact("victim:v0").download(scene.root)
    assert key in str(caught.value) and "missing" in str(caught.value)
    scene.check_clean()


@pytest.mark.parametrize("damage", ["record", "blob"])
def test_the_cli_names_the_damaged_object(victim: Victim, scene: Scene, damage: str) -> None:
    key = RECORD if damage == "record" else victim.blob("large.bin")
    victim.raw.put(key, victim.raw.get(key)[:-1])
    for command in ("get", "verify") if damage == "record" else ("get",):
        line = cli_fails(command, "victim:v0", "--root", str(scene.root))
        assert key in line
    scene.check_clean()


# -- the download cache (remote stores only: a local store's blobs are read in place) -------------------


def cached_blobs(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "blobs").rglob("*") if p.is_file())


@ON_S3
def test_a_damaged_cached_blob_is_fetched_again_not_served(victim: Victim, tmp_path: Path) -> None:
    artifact = lorry.Api().artifact("victim:v0")
    by_digest = {digest_bytes(data).partition(":")[2]: data for data in FILES.values()}
    cache = tmp_path / "cache"
    for number, how in enumerate(["same-length", "truncated"]):
        first = Path(artifact.download(tmp_path / f"first-{number}"))
        blobs = cached_blobs(cache)
        # Small blobs are copied into the cache; the large one's place is remembered (see cache.py).
        assert len(blobs) == sum(len(data) <= SMALL_OBJECT for data in FILES.values())
        for copy in [*blobs, first / "large.bin"]:
            data = copy.read_bytes()
            copy.chmod(0o600)
            copy.write_bytes(_damage(data, how))
        folder = Path(artifact.download(tmp_path / f"second-{number}"))
        for name, data in FILES.items():
            assert (folder / name).read_bytes() == data
        for blob in cached_blobs(cache):  # the damaged copies were replaced by good ones
            assert blob.read_bytes() == by_digest[blob.name]
        shutil.rmtree(cache / "blobs")


# -- size limits ------------------------------------------------------------------------------------------


def test_a_huge_manifest_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    """A record names a manifest of 10 GB (a sparse file: it takes no space). ``lorry get`` reads at
    most the limit of it and stops with an error naming it."""
    with lorry.init() as run:
        artifact = lorry.Artifact("victim", type="dataset")
        with artifact.new_file("a.txt") as handle:
            handle.write("a")
        run.log_artifact(artifact)
        artifact.wait()
    store = LocalRaw(tmp_path / "store")
    key = manifest_key(orjson.loads(store.get(RECORD))["manifest"])
    path = store.root / key
    path.unlink()
    with open(path, "wb") as handle:
        handle.truncate(10 << 30)
    # Spawned by a small launcher, whose wait4 sees the command's own peak: Linux carries the
    # high-water mark across fork and exec, so from here it would include this test process's size.
    report = tmp_path / "usage.json"
    process = subprocess.run(
        [sys.executable, "-S", "-I", "-c", _LAUNCH, str(report), sys.executable, "-m", "lorry.cli", "get",
         "victim:v0", "--root", str(tmp_path / "root")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
        check=False,
    )
    stderr = process.stderr
    returncode, peak = json.loads(report.read_text())
    assert returncode == 1, stderr
    assert key in stderr and "larger than" in stderr and "Traceback" not in stderr
    assert peak < Manifest.MAX_BYTES + (256 << 20)  # the limit's worth, not 10 GB
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").iterdir())


_LAUNCH = """
import json, os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], dict(os.environ))
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024], report)
"""


def test_an_artifact_whose_manifest_would_pass_the_limit_is_refused_before_storing(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Manifest, "MAX_BYTES", 4096)  # about 40 entries instead of a million
    with lorry.init() as run:
        before = sorted(p for p in store_dir.rglob("*") if p.is_file() and ".lorry" not in p.parts)
        artifact = lorry.Artifact("many", type="dataset")
        for number in range(60):
            with artifact.new_file(f"file-{number:03d}.txt") as handle:
                handle.write(str(number))
        with pytest.raises(lorry.ValidationError, match="more than the 4096 bytes"):
            run.log_artifact(artifact)
        assert artifact.is_draft()
        after = sorted(p for p in store_dir.rglob("*") if p.is_file() and ".lorry" not in p.parts)
        assert after == before
