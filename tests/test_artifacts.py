"""The Artifacts API end to end on the embedded local store."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from pathlib import Path

import pytest

import lorry
from lorry import _bridge
from lorry.transfer.plan import SMALL_OBJECT
from tests.conftest import logged, use_remote_store, write

# -- building: the original's naming table -------------------------------------------------------------


@pytest.mark.usefixtures("project_dir")
@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda a: a.add_file("model.h5"), ["model.h5"]),
        (lambda a: a.add_file("checkpoints/model.h5"), ["model.h5"]),
        (lambda a: a.add_file("model.h5", name="models/mymodel.h5"), ["models/mymodel.h5"]),
        (lambda a: a.add_dir("images"), ["cat.png", "dog.png"]),
        (lambda a: a.add_dir("images", name="images"), ["images/cat.png", "images/dog.png"]),
        (lambda a: a.new_file("hello.txt").__enter__().close(), None),
    ],
)
def test_entry_names_follow_the_original_table(call: object, expected: list[str] | None) -> None:
    with lorry.init(job_type="build") as run:
        artifact = lorry.Artifact("table", type="dataset")
        if expected is None:
            with artifact.new_file("hello.txt") as handle:
                handle.write("hello")
            expected = ["hello.txt"]
        else:
            call(artifact)  # type: ignore[operator]
        run.log_artifact(artifact)
        assert sorted(e.path for e in artifact.wait().files()) == expected


def test_log_use_download_round_trip(project_dir: Path) -> None:
    with lorry.init(job_type="train") as run:
        artifact = lorry.Artifact("bike-dataset", type="dataset", description="bikes", metadata={"rows": 2})
        artifact.add_file("bicycle-data.h5")
        artifact.add_dir("images", name="images")
        run.log_artifact(artifact, aliases=["best"])
        assert artifact.wait().version == "v0"
        assert artifact.aliases == ["latest", "best"]
    with lorry.init(job_type="eval") as run:
        used = run.use_artifact("bike-dataset:best")
        folder = Path(used.download())
        assert folder == Path("artifacts/bike-dataset:v0")
        assert (folder / "bicycle-data.h5").read_bytes() == b"bicycle rows"
        assert (folder / "images/cat.png").read_bytes() == b"\x89PNG cat"
        assert used.description == "bikes" and used.metadata == {"rows": 2}
        assert used.size == len(b"bicycle rows") + 2 * len(b"\x89PNG cat")
        assert used.type == "dataset" and used.file_count == 3
        used.verify()


def test_loop_versions_follow_call_order_whatever_the_sizes() -> None:
    # Large contents early and small ones late: their uploads finish in the other order.
    sizes = [8 << 20, 1, 4 << 20, 10, 2 << 20, 100, 1 << 20, 1000, 512 << 10, 5]
    with lorry.init(job_type="loop") as run:
        artifacts = []
        for i, size in enumerate(sizes):
            artifact = lorry.Artifact("race", type="dataset", metadata={"index": i})
            with artifact.new_file("data.bin", mode="wb") as handle:
                handle.write(os.urandom(size))
            run.log_artifact(artifact)
            artifacts.append(artifact)
        assert [a.wait().version for a in artifacts] == [f"v{i}" for i in range(10)]
    api = lorry.Api()
    for i in range(10):
        assert api.artifact(f"race:v{i}").metadata["index"] == i
    assert api.artifact("race:latest").version == "v9"


def test_unchanged_content_makes_no_new_version_and_moves_aliases() -> None:
    with lorry.init() as run:
        first = logged(run, "same", {"a.txt": b"A"})
        second = logged(run, "other-content", {"a.txt": b"B"})
        assert (first.version, second.version) == ("v0", "v0")
        changed = logged(run, "same", {"a.txt": b"A2"})
        assert changed.version == "v1"
        again = lorry.Artifact("same", type="dataset")
        with again.new_file("a.txt", mode="wb") as handle:
            handle.write(b"A")
        run.log_artifact(again, aliases=["prod"])
        assert again.wait().version == "v0"
    api = lorry.Api()
    assert api.artifact("same:prod").version == "v0"
    assert api.artifact("same:latest").version == "v1"
    assert [a.version for a in api.artifacts("dataset", "same")] == ["v0", "v1"]


def test_log_artifact_does_not_wait_for_the_engine(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:  # sparse: a 1 GiB file at no disk cost
        handle.truncate(1 << 30)
    with lorry.init() as run:
        artifact = lorry.Artifact("big", type="model")
        artifact.add_file(big, policy="immutable")
        # Hold the engine's loop: if log_artifact hashed, stored or waited for anything, it would hang.
        hold = threading.Event()
        _bridge.bridge().loop.call_soon_threadsafe(hold.wait, 30)
        try:
            returned = run.log_artifact(artifact)
            assert returned is artifact
            assert not artifact._pending.done()  # type: ignore[union-attr]
        finally:
            hold.set()
        assert artifact.wait().version == "v0"
        assert artifact.size == 1 << 30


def test_mutable_policy_snapshots_the_file(tmp_path: Path) -> None:
    source = write(tmp_path / "weights.bin", b"before")
    artifact = lorry.Artifact("snap", type="model")
    artifact.add_file(source)
    source.write_bytes(b"after!")
    with lorry.init() as run:
        run.log_artifact(artifact)
        folder = Path(artifact.wait().download())
    assert (folder / "weights.bin").read_bytes() == b"before"
    # The snapshot is gone from the staging area once the version is committed.
    assert [p for p in (tmp_path / "cache" / "staging").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("store", "transfer_process"), [("local", "never"), ("local", "always"), ("moto", "never")]
)
def test_small_snapshots_share_a_pack_and_log_the_bytes_added(
    store: str,
    transfer_process: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small files' snapshots are appended to one owner-only pack, not a file each; a large file keeps
    a snapshot of its own. What is logged is what each file held when added, in process, in the
    helper process and on a remote store; a removed entry's bytes just stay in the pack."""
    if store != "local":
        use_remote_store(store, request, monkeypatch)
    monkeypatch.setenv("LORRY_TRANSFER_PROCESS", transfer_process)
    small = {f"d/f{i}.txt": f"small {i}".encode() * (i + 1) for i in range(5)}
    large = os.urandom(SMALL_OBJECT + 1)
    for name, data in {**small, "big.bin": large}.items():
        write(tmp_path / "src" / name, data)
    artifact = lorry.Artifact("packed", type="dataset")
    artifact.add_dir(tmp_path / "src")
    artifact.remove("d/f1.txt")
    write(tmp_path / "f2-again.txt", b"replaced")
    artifact.add_file(tmp_path / "f2-again.txt", name="d/f2.txt", overwrite=True)
    staged = [p for p in (tmp_path / "cache" / "staging").rglob("*") if p.is_file()]
    assert sorted(p.stat().st_size for p in staged) == [
        sum(map(len, small.values())) + len(b"replaced"),  # one pack: every small snapshot, in order
        len(large),  # the large file's own snapshot
    ]
    assert {p.stat().st_mode & 0o777 for p in staged} == {0o600}
    for name in [*small, "big.bin"]:  # later writes to the sources do not reach what is logged
        write(tmp_path / "src" / name, b"changed after it was added")
    with lorry.init() as run:
        run.log_artifact(artifact)
        folder = Path(artifact.wait().download(tmp_path / "down"))
    expected = {**small, "d/f2.txt": b"replaced", "big.bin": large}
    del expected["d/f1.txt"]
    got = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == expected
    assert [p for p in (tmp_path / "cache" / "staging").rglob("*") if p.is_file()] == []


def test_immutable_file_changed_after_log_fails_that_version_only(tmp_path: Path) -> None:
    source = write(tmp_path / "weights.bin", b"x" * 1000)
    artifact = lorry.Artifact("frozen", type="model")
    artifact.add_file(source, policy="immutable")
    os.utime(source, ns=(1, 1))  # as if rewritten in place
    run = lorry.init()
    run.log_artifact(artifact)
    with pytest.raises(lorry.ArtifactFailedError) as failure:
        artifact.wait()
    assert isinstance(failure.value.__cause__, lorry.SourceChangedError)
    assert "weights.bin" in str(failure.value.__cause__)
    run.finish()  # the failure was raised by wait() already: not a second time
    assert lorry.Api().run(run.path).state == "failed"
    with pytest.raises(lorry.ArtifactNotFoundError):
        lorry.Api().artifact("frozen:latest")


def test_use_artifact_of_a_draft_is_idempotent(project_dir: Path) -> None:
    with lorry.init() as run:
        for _ in range(3):
            artifact = lorry.Artifact("reference model")
            artifact.add_file("model.h5")
            used = run.use_artifact(artifact)
            assert used.version == "v0"
        assert [a.version for a in run.used_artifacts()] == ["v0"]


@pytest.mark.parametrize(
    "path",
    ["paths:v0", "paths", "paths:latest", "paths:stable", "proj/paths:v0", "tester/proj/paths:stable"],
)
def test_use_artifact_paths(path: str) -> None:
    with lorry.init(project="proj") as run:
        logged(run, "paths", {"f": b"1"})
        run.log_artifact(lorry.Artifact("x", type="t"))
    with lorry.init(project="proj") as run:
        artifact = lorry.Api(project="proj").artifact("paths:v0")
        artifact.aliases.append("stable")
        artifact.save()
        assert run.use_artifact(path).version == "v0"


@pytest.mark.parametrize("path", ["nothing", "exists:v7", "exists:nope", "other/exists:v0"])
def test_use_artifact_of_something_missing_is_a_clear_error(path: str) -> None:
    with lorry.init() as run:
        logged(run, "exists", {"f": b"1"})
        with pytest.raises(lorry.ArtifactNotFoundError) as error:
            run.use_artifact(path)
        assert path.split(":", maxsplit=1)[0].rsplit("/", maxsplit=1)[-1] in str(error.value)


def test_save_updates_description_metadata_and_aliases_without_new_version() -> None:
    with lorry.init() as run:
        logged(run, "bike-dataset", {"f": b"1"}, metadata={"oldKey": 1, "keep": True})
    api = lorry.Api()
    artifact = api.artifact("bike-dataset:latest")
    artifact.description = "My new description"
    artifact.metadata["oldKey"] = "new value"
    artifact.aliases.append("best")
    artifact.save()
    again = api.artifact("bike-dataset:best")
    assert again.version == "v0"
    assert again.description == "My new description"
    assert again.metadata == {"oldKey": "new value", "keep": True}
    again.metadata = {"newKey": "new value"}
    again.aliases.remove("latest")  # latest always names the newest version: removing it is a no-op
    again.aliases = ["replaced"]
    again.save()
    final = api.artifact("bike-dataset:replaced")
    assert final.metadata == {"newKey": "new value"}
    assert final.aliases == ["latest", "replaced"]
    with pytest.raises(lorry.ArtifactNotFoundError):
        api.artifact("bike-dataset:best")
    assert len(api.artifacts("dataset", "bike-dataset")) == 1


def test_alias_names_one_version_and_moves() -> None:
    with lorry.init() as run:
        assert logged(run, "m", {"w": b"0"}).version == "v0"
        first = lorry.Artifact("m", type="dataset")
        with first.new_file("w", mode="wb") as handle:
            handle.write(b"1")
        run.log_artifact(first, aliases=["best"])
        second = lorry.Artifact("m", type="dataset")
        with second.new_file("w", mode="wb") as handle:
            handle.write(b"2")
        run.log_artifact(second, aliases=["best"])
        assert (first.wait().version, second.wait().version) == ("v1", "v2")
    api = lorry.Api()
    assert api.artifact("m:best").version == "v2"
    assert api.artifact("m:v1").aliases == []
    assert api.artifact("m:v2").aliases == ["latest", "best"]


@pytest.mark.parametrize("alias", ["v0", "v12", "bad alias", "a/b", "", "x:y"])
def test_invalid_aliases_are_refused_before_anything_is_written(alias: str) -> None:
    with lorry.init() as run:
        artifact = lorry.Artifact("a", type="t")
        with pytest.raises(lorry.ValidationError):
            run.log_artifact(artifact, aliases=[alias])
        assert artifact.is_draft()
    assert not lorry.Api().artifact_exists("a")


def test_vn_alias_refused_on_save() -> None:
    with lorry.init() as run:
        artifact = logged(run, "a", {"f": b"1"})
    artifact.aliases.append("v3")
    with pytest.raises(lorry.InvalidNameError, match="reserved"):
        artifact.save()


def test_lineage_logged_by_used_by() -> None:
    with lorry.init(job_type="prep", config={"lr": 0.1}) as prep:
        logged(prep, "raw", {"r": b"raw"})
    with lorry.init(job_type="train") as train:
        train.use_artifact("raw:latest")
        model = logged(train, "model", {"m": b"weights"})
    producer = lorry.Api().artifact("model:v0").logged_by()
    assert producer is not None
    assert producer.id == train.id and producer.job_type == "train" and producer.state == "finished"
    assert [a.name for a in producer.used_artifacts()] == ["raw:v0"]
    assert [a.name for a in producer.logged_artifacts()] == ["model:v0"]
    raw = lorry.Api().artifact("raw:v0")
    assert raw.logged_by().config == {"lr": 0.1}  # type: ignore[union-attr]
    assert [r.id for r in raw.used_by()] == [train.id]
    assert lorry.Api().run(train.path).id == train.id
    assert model.version == "v0"


def test_api_collections_and_versions() -> None:
    with lorry.init(project="p") as run:
        logged(run, "a", {"f": b"1"})
        logged(run, "a", {"f": b"2"})
        run.log_artifact(lorry.Artifact("b", type="model"))
    api = lorry.Api()
    collections = api.artifact_collections("p")
    assert [(c.name, c.type) for c in collections] == [("a", "dataset"), ("b", "model")]
    assert [c.name for c in api.artifact_collections("tester/p", "model")] == ["b"]
    assert [v.version for v in collections[0].versions()] == ["v0", "v1"]
    with pytest.raises(lorry.ValidationError):
        api.artifacts("model", "p/a")


def test_a_collection_keeps_its_type() -> None:
    with lorry.init() as run:
        logged(run, "typed", {"f": b"1"})
        other = lorry.Artifact("typed", type="model")
        run.log_artifact(other)
        with pytest.raises(lorry.ArtifactFailedError) as failure:
            other.wait()
        assert "type 'dataset'" in str(failure.value)
    other = lorry.Artifact("typed", type="model")  # not waited for: finish() raises it
    with lorry.init() as run, pytest.raises(lorry.ArtifactFailedError, match="typed"):
        run.log_artifact(other)
        run.finish()


def test_module_level_calls_need_a_run() -> None:
    with pytest.raises(lorry.UsageError, match=r"lorry\.init"):
        lorry.log_artifact(lorry.Artifact("a", type="t"))
    with pytest.raises(lorry.UsageError):
        lorry.use_artifact("a:v0")
    run = lorry.init()
    assert lorry.run is run
    artifact = lorry.Artifact("data", type="t")
    lorry.log_artifact(artifact)
    assert lorry.use_artifact("data:v0").version == "v0"
    lorry.finish()
    assert lorry.run is None


def test_a_logged_artifact_cannot_be_changed() -> None:
    with lorry.init() as run:
        artifact = logged(run, "fixed", {"f": b"1"})
        with pytest.raises(lorry.UsageError):
            artifact.add_file(__file__)
        with pytest.raises(lorry.UsageError):
            run.log_artifact(artifact)


def test_entries_download_alone_and_references_give_their_uri(tmp_path: Path, project_dir: Path) -> None:
    with lorry.init() as run:
        artifact = lorry.Artifact("mixed", type="dataset")
        artifact.add_file("model.h5")
        artifact.add_reference((project_dir / "images").as_uri(), name="refs")
        run.log_artifact(artifact)
        artifact.wait()
    used = lorry.Api().artifact("mixed:latest")
    entry = used.get_path("model.h5")
    assert entry.ref is None
    assert Path(entry.download(tmp_path / "one")).read_bytes() == b"model weights"
    reference = used.get_entry("refs/cat.png")
    assert reference.ref == (project_dir / "images/cat.png").as_uri()
    assert Path(reference.download()).read_bytes() == b"\x89PNG cat"
    with pytest.raises(lorry.LocalFileError):
        used.get_path("nope.txt")
    # A referenced file that changed is an error naming the entry; nothing lands under its name.
    write(project_dir / "images/dog.png", b"changed")
    with pytest.raises(lorry.IntegrityError, match=r"refs/dog\.png"):
        used.download(tmp_path / "all")
    assert not (tmp_path / "all/refs/dog.png").exists()


def test_references_are_not_copied_into_the_store(project_dir: Path, store_dir: Path) -> None:
    secret = b"referenced bytes that must never enter the store"
    write("private/secret.bin", secret)
    with lorry.init() as run:
        artifact = lorry.Artifact("refs", type="dataset")
        artifact.add_reference((project_dir / "private").as_uri())
        run.log_artifact(artifact)
        artifact.wait()
    for path in store_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes()


def test_sync_api_from_threads_and_from_a_running_loop() -> None:
    run = lorry.init()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            logged(run, f"thread-{i}", {"f": str(i).encode()})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    async def notebook_cell() -> str:
        # A blocking call inside a running loop (a notebook) works: the engine runs elsewhere.
        return lorry.Api().artifact("thread-3:v0").download()

    folder = asyncio.run(notebook_cell())
    assert (Path(folder) / "f").read_bytes() == b"3"
    run.finish()


def test_async_twins() -> None:
    async def main() -> None:
        run = lorry.init()
        artifact = lorry.Artifact("twins", type="t")
        with artifact.new_file("f.txt") as handle:
            handle.write("async")
        run.log_artifact(artifact)
        await artifact.wait_async()
        folder = await artifact.download_async()
        assert (Path(folder) / "f.txt").read_text() == "async"
        used = await run.use_artifact_async("twins:v0")
        assert used.version == "v0"
        await run.finish_async()

    asyncio.run(main())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_works_in_a_child_after_fork() -> None:
    with lorry.init() as run:
        logged(run, "before-fork", {"f": b"1"})
    pid = os.fork()
    if pid == 0:  # the child: everything must work on a fresh engine
        try:
            with lorry.init() as child:
                logged(child, "from-child", {"f": b"2"})
                ok = child.use_artifact("before-fork:v0").version == "v0"
            os._exit(0 if ok else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert lorry.Api().artifact("from-child:v0").version == "v0"


def test_public_names_are_sorted() -> None:
    assert lorry.__all__ == sorted(lorry.__all__)
    for name in lorry.__all__:
        assert hasattr(lorry, name)


PROGRESS_SCRIPT = """
import lorry
with lorry.init() as run:
    artifact = lorry.Artifact("bar", type="t")
    with artifact.new_file("f.bin", mode="wb") as handle:
        handle.write(b"x" * 300_000)
    run.log_artifact(artifact)
    artifact.wait()
    artifact.download()
"""


@pytest.mark.parametrize(("setting", "shown"), [("1", True), (None, False), ("0", False)])
def test_progress_bars_follow_the_setting(setting: str | None, shown: bool) -> None:
    import subprocess
    import sys

    env = dict(os.environ)
    env.pop("LORRY_PROGRESS", None)
    if setting is not None:
        env["LORRY_PROGRESS"] = setting
    result = subprocess.run([sys.executable, "-c", PROGRESS_SCRIPT], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if shown:
        assert "logging bar [########################] 1/1 files, 293.0 KiB/293.0 KiB" in result.stderr
        assert "downloading bar [" in result.stderr
    else:
        assert result.stderr == ""


def test_api_overrides_and_state() -> None:
    with lorry.init(project="elsewhere") as run:
        artifact = lorry.Artifact("o", type="t")
        assert artifact.state == "PENDING"
        run.log_artifact(artifact)
        assert artifact.wait().state == "COMMITTED"
        assert artifact.id == "tester/elsewhere/o:v0"
    api = lorry.Api(overrides={"project": "elsewhere"})
    assert api.artifact("o:v0").qualified_name == "tester/elsewhere/o:v0"
    with pytest.raises(lorry.ValidationError, match="overrides"):
        lorry.Api(overrides={"colour": "blue"})


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_store_files_are_private_and_downloads_follow_the_umask(
    umask: int, store_dir: Path, tmp_path: Path
) -> None:
    previous = os.umask(umask)
    try:
        with lorry.init() as run:
            artifact = logged(run, "modes", {"a.bin": b"a" * 100, "big.bin": os.urandom(2 << 20)})
            folder = Path(artifact.download(tmp_path / "down"))
    finally:
        os.umask(previous)
    stored = [p for p in store_dir.rglob("*") if p.is_file()]  # lorry's own lock files too
    folders = [store_dir, *(p for p in store_dir.rglob("*") if p.is_dir())]
    assert stored and {p.stat().st_mode & 0o777 for p in stored} == {0o600}
    assert {p.stat().st_mode & 0o777 for p in folders} == {0o700}
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o666 & ~umask}


def test_progress_bars_are_on_when_stderr_is_a_terminal() -> None:
    """No setting, stderr a (pseudo-)terminal: the bars are drawn; a dumb terminal gets none."""
    import pty
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LORRY_PROGRESS"}
    for term, shown in (("xterm", True), ("dumb", False)):
        leader, follower = pty.openpty()
        child = subprocess.Popen(
            [sys.executable, "-c", PROGRESS_SCRIPT],
            env={**env, "TERM": term},
            stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        os.close(leader)
        assert child.wait(timeout=60) == 0, seen
        text = seen.decode(errors="replace")
        assert ("logging bar [########################] 1/1 files" in text) == shown, text
        assert ("downloading bar [" in text) == shown, text


def test_a_progress_bar_is_redrawn_four_times_a_second() -> None:
    import io
    import time

    from lorry.transfer.engine import Counters
    from lorry.transfer.progress import progress

    out = io.StringIO()
    counters = Counters()
    counters.files_total, counters.bytes_total = 2, 2048
    with progress("logging x", lambda: [counters], True, out):
        time.sleep(1.1)
        counters.files_done, counters.bytes_done = 2, 2048
    draws = out.getvalue().split("\r")[1:]
    assert 4 <= len(draws) <= 6, draws  # four in the second, and the last one when it ends
    assert draws[-1].startswith("logging x [########################] 2/2 files, 2.0 KiB/2.0 KiB")
    assert draws[-1].endswith("\n") and draws[0].startswith("logging x [------------------------] 0/2 files")


@pytest.mark.parametrize("enabled_before", [True, False])
def test_add_dir_pauses_garbage_collection_and_gives_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enabled_before: bool
) -> None:
    # Collection is off while the walk adds files, and as it was before once add_dir returns or
    # fails (here on a dangling link, found after a file was added).
    folder = tmp_path / "tree"
    write(folder / "a.txt", "a")
    (folder / "z.txt").symlink_to(tmp_path / "nowhere")
    seen: list[bool] = []
    add_source = lorry.Artifact._add_source

    def spying(self: lorry.Artifact, *args: object) -> bool:
        seen.append(gc.isenabled())
        return add_source(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(lorry.Artifact, "_add_source", spying)
    (gc.enable if enabled_before else gc.disable)()
    try:
        with pytest.raises(lorry.LocalFileError, match="dangling"):
            lorry.Artifact("tree", type="dataset").add_dir(folder)
        assert gc.isenabled() is enabled_before
        (folder / "z.txt").unlink()
        lorry.Artifact("tree", type="dataset").add_dir(folder)
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()
    assert seen == [False, False]
