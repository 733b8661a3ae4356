"""The management half of the API: delete, ttl, tags, collections, drafts, distributed artifacts,
retention, and the original's remaining arguments. Local store here; the same scenario runs on S3
(Ceph RGW) and GCS (emulator) at the end."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import lorry
import lorry as wandb
from lorry._bridge import run_sync
from lorry.errors import ArtifactDeletedError, ArtifactFailedError, UsageError, ValidationError
from lorry.model.layout import blob_key
from lorry.model.retention import BestRule, RetentionPolicy
from lorry.registry.maintenance import GcReport, StoreReport, collect_garbage, verify_store
from lorry.registry.registry import Collection
from lorry.session import session
from lorry.storage.base import OVERWRITE, Store
from tests.conftest import logged, use_remote_store, write


def current_store() -> Store:
    settings = lorry.Settings.load()
    return session(settings).store(settings.store, settings.store_options)


def store_has_blob(digest: str) -> bool:
    try:
        run_sync(current_store().head(blob_key(digest)))
    except lorry.ObjectNotFoundError:
        return False
    return True


def gc(grace: timedelta = timedelta(0)) -> GcReport:
    """gc of the current store without the 5 s settle (no log runs concurrently in these tests)."""
    return run_sync(collect_garbage(current_store(), grace=grace, settle=0))


def verify() -> StoreReport:
    return run_sync(verify_store(current_store()))


def digest_of(artifact: lorry.Artifact, entry: str) -> str:
    digest = artifact.get_entry(entry).digest
    assert digest is not None
    return digest


# -- delete ----------------------------------------------------------------------------------------------


def test_delete_a_version_says_deleted_keeps_its_number_and_moves_latest() -> None:
    with lorry.init(job_type="make") as run:
        v0 = logged(run, "ds", {"a.txt": b"zero"})
        v1 = logged(run, "ds", {"a.txt": b"one"})
        v1.aliases.append("best")
        v1.save()
        with pytest.raises(UsageError, match="best"):
            v1.delete()
        assert lorry.Api().artifact("ds:v1").state == "COMMITTED"  # the refusal changed nothing
        v1.delete(delete_aliases=True)
        assert v1.state == "DELETED"
    api = lorry.Api()
    with pytest.raises(ArtifactDeletedError, match=r"ds:v1 was deleted"):
        api.artifact("ds:v1")
    with pytest.raises(lorry.ArtifactNotFoundError, match="no alias 'best'"):
        api.artifact("ds:best")  # the alias went with it
    assert api.artifact("ds:latest").version == "v0"
    assert [a.version for a in api.artifacts("dataset", "ds")] == ["v0"]
    with lorry.init(job_type="use") as run, pytest.raises(ArtifactDeletedError):
        run.use_artifact("ds:v1")
    with lorry.init() as run:
        again = logged(run, "ds", {"a.txt": b"one"})  # the deleted content, logged again
    assert again.version == "v2"  # a new version: v1's number is never given again
    # Lineage that points at the deleted version says so instead of failing.
    maker = v0.logged_by()
    assert maker is not None
    states = {a.version: a.state for a in maker.logged_artifacts()}
    assert states == {"v0": "COMMITTED", "v1": "DELETED"}
    with pytest.raises(ArtifactDeletedError):
        maker.logged_artifacts()[1].download()


def test_deleting_every_version_and_a_collection() -> None:
    with lorry.init() as run:
        logged(run, "gone", {"x": b"1"})
        logged(run, "gone", {"x": b"2"})
        logged(run, "stays", {"x": b"3"})
    api = lorry.Api()
    collection = api.artifact_collection("dataset", "gone")
    collection.delete()
    with pytest.raises(ArtifactDeletedError, match="every version"):
        api.artifact("gone")
    assert [c.name for c in api.artifact_collections()] == ["stays"]
    assert not api.artifact_collection_exists("gone", "dataset")
    with pytest.raises(ArtifactDeletedError, match="every version"):
        api.artifact_collection("dataset", "gone")
    with lorry.init() as run:
        fresh = lorry.Artifact("gone", type="model")  # the name is free again, for any type
        with fresh.new_file("x", mode="wb") as handle:
            handle.write(b"1")
        run.log_artifact(fresh).wait()
    assert (fresh.version, fresh.type) == ("v2", "model")
    assert api.artifact_collection("model", "gone").type == "model"


def test_gc_frees_what_only_deleted_versions_reached_after_the_grace_period() -> None:
    with lorry.init() as run:
        old = logged(run, "ds", {"shared.txt": b"in both", "own.txt": b"only in v0"})
        new = logged(run, "ds", {"shared.txt": b"in both", "new.txt": b"only in v1"})
    reader = lorry.Api().artifact("ds:v0")  # a reader that found v0 before the delete
    old.delete()
    own, shared = digest_of(old, "own.txt"), digest_of(new, "shared.txt")
    store = Path(os.environ["LORRY_STORE"])
    then = time.time() - 48 * 3600  # written long ago: only the recent delete protects it now
    os.utime(store / blob_key(own), (then, then))
    gc(timedelta(hours=1))  # deleted a moment ago: within the grace period, nothing goes
    assert store_has_blob(own)
    assert (Path(reader.download("late")) / "own.txt").read_bytes() == b"only in v0"  # it finishes
    gc(timedelta(0))
    assert not store_has_blob(own)
    assert store_has_blob(shared)  # a live version needs it
    report = verify()
    assert report.ok, report.problems
    assert Path(lorry.Api().artifact("ds:latest").download("out")).joinpath("shared.txt").read_bytes() == (
        b"in both"
    )


# -- ttl -------------------------------------------------------------------------------------------------


def test_ttl_expires_a_version_and_gc_marks_it_deleted() -> None:
    with lorry.init() as run:
        keep = logged(run, "ck", {"w": b"keep"})
        brief = lorry.Artifact("ck", type="dataset")
        brief.ttl = timedelta(seconds=1)
        with brief.new_file("w") as handle:
            handle.write("brief")
        run.log_artifact(brief)
        brief.wait()
    assert brief.ttl == timedelta(seconds=1)
    assert lorry.Api().artifact("ck:v1").ttl == timedelta(seconds=1)
    assert keep.ttl is None
    with pytest.raises(ValidationError):
        keep.ttl = 30  # type: ignore[assignment]
    keep.ttl = timedelta(days=30)
    keep.save()
    assert lorry.Api().artifact("ck:v0").ttl == timedelta(days=30)
    keep.ttl = None
    keep.save()
    assert lorry.Api().artifact("ck:v0").ttl is None
    brief_blob = digest_of(brief, "w")
    time.sleep(1.2)
    with pytest.raises(ArtifactDeletedError, match="expired"):
        lorry.Api().artifact("ck:v1")
    assert lorry.Api().artifact("ck:latest").version == "v0"
    report = gc()
    assert report.expired == 1
    assert not store_has_blob(brief_blob)
    with pytest.raises(ArtifactDeletedError, match="was deleted"):
        lorry.Api().artifact("ck:v1")


# -- tags and collections --------------------------------------------------------------------------------


def test_version_tags_collection_description_and_filters() -> None:
    with lorry.init() as run:
        a = lorry.Artifact("model", type="model")
        with a.new_file("w") as handle:
            handle.write("1")
        a.tags = ["baseline"]
        run.log_artifact(a, tags=["resnet", "baseline"])
        assert a.wait().tags == ["baseline", "resnet"]
        b = lorry.Artifact("model", type="model")
        with b.new_file("w") as handle:
            handle.write("2")
        run.log_artifact(b).wait()
        b.tags.append("candidate")
        b.save()
        logged(run, "other", {"w": b"3"})
    api = lorry.Api()
    assert [v.version for v in api.artifacts("model", "model", tags=["baseline"])] == ["v0"]
    assert [v.version for v in api.artifacts("model", "model", tags="candidate")] == ["v1"]
    with pytest.raises(ValidationError):
        b.tags = ["no/slash"]
    collection = api.artifact_collection("model", "model")
    assert (collection.name, collection.type, collection.description, collection.tags) == (
        "model",
        "model",
        None,
        [],
    )
    collection.description = "ResNet checkpoints"
    collection.tags = ["vision"]
    collection.save()
    again = lorry.Api().artifact_collection("model", "model")
    assert (again.description, again.tags) == ("ResNet checkpoints", ["vision"])
    assert [c.name for c in api.artifact_collections(tags=["vision"])] == ["model"]
    assert [c.name for c in api.artifact_collections(type_name="dataset")] == ["other"]
    assert [t.name for t in api.artifact_types()] == ["dataset", "model"]
    assert [c.name for c in api.artifact_type("model").collections()] == ["model"]
    assert b.collection.description == "ResNet checkpoints"
    with pytest.raises(ValidationError, match="type"):
        api.artifact_collection("dataset", "model")


# -- drafts and incremental artifacts ---------------------------------------------------------------------


def test_new_draft_carries_entries_without_reading_them(tmp_path: Path) -> None:
    files = {f"part-{i}.bin": os.urandom(1000 + i) for i in range(20)}
    with lorry.init() as run:
        base = logged(run, "big", files)
        draft = base.new_draft()
        assert draft.is_draft()
        write(tmp_path / "changed.bin", b"new content")
        draft.add_file(tmp_path / "changed.bin", name="part-3.bin", overwrite=True)
        draft.remove("part-4.bin")
        with pytest.raises(ValidationError, match="overwrite=True"):
            draft.add_file(tmp_path / "changed.bin", name="part-5.bin")
        run.log_artifact(draft)
        draft.wait()
    assert draft.version == "v1"
    assert draft._counters.files_total == 1  # only the changed file was read, hashed and stored
    folder = Path(draft.download(tmp_path / "down"))
    assert (folder / "part-3.bin").read_bytes() == b"new content"
    assert not (folder / "part-4.bin").exists()
    assert (folder / "part-7.bin").read_bytes() == files["part-7.bin"]
    assert len(draft.manifest) == 19


def test_incremental_artifacts_add_to_the_latest_version() -> None:
    with lorry.init() as run:
        logged(run, "inc", {"a": b"a", "b": b"b"})
        for name, data in (("c", b"c"), ("a", b"A")):
            step = lorry.Artifact("inc", type="dataset", incremental=True)
            with step.new_file(name, mode="wb") as handle:
                handle.write(data)
            run.log_artifact(step)  # two in a row: the second builds on the first
        step.wait()
    assert step.version == "v2"
    assert step.incremental
    folder = Path(step.download("inc"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {"a": b"A", "b": b"b", "c": b"c"}


# -- distributed artifacts --------------------------------------------------------------------------------

SHARD = """
import sys, lorry
run = lorry.init(job_type="rank", group="job-7")
shard = lorry.Artifact("sharded", type="dataset")
with shard.new_file(f"rank-{sys.argv[1]}.txt") as f:
    f.write(sys.argv[1])
run.upsert_artifact(shard)
run.finish()
"""


def test_distributed_shards_from_processes_become_one_version() -> None:
    for rank in range(3):
        subprocess.run([sys.executable, "-c", SHARD, str(rank)], check=True, timeout=60)
    gc()  # stored shards wait for their finish: gc keeps what they hold
    with lorry.init(job_type="rank", group="job-7") as run:
        mine = lorry.Artifact("sharded", type="dataset", metadata={"ranks": 4})
        with mine.new_file("rank-3.txt") as handle:
            handle.write("3")
        run.finish_artifact(mine)
    assert mine.version == "v0"
    assert sorted(mine.manifest) == [f"rank-{i}.txt" for i in range(4)]
    assert mine.metadata == {"ranks": 4}
    assert lorry.Api().artifact("sharded:latest").file_count == 4
    report = verify()
    assert report.ok, report.problems


def test_a_dead_shard_is_missing_and_a_name_twice_is_an_error() -> None:
    with lorry.init(group="g") as run:
        shard = lorry.Artifact("d", type="dataset")
        with shard.new_file("one.txt") as handle:
            handle.write("1")
        run.upsert_artifact(shard, distributed_id="job")
        # A process that started its shard and died before storing it:
        collection = Collection(run.entity, run.project, "d")
        registry = session(run.settings).registry(run.settings)
        run_sync(registry.start_shard(collection, "job", "dead-0", "dead"))
        with pytest.raises(ArtifactFailedError, match=r"missing 1 shard.*dead-0"):
            run.finish_artifact(lorry.Artifact("d", type="dataset"), distributed_id="job")
        with pytest.raises(lorry.ArtifactNotFoundError):
            lorry.Api().artifact("d")  # nothing was committed
        done = run.finish_artifact(
            lorry.Artifact("d", type="dataset"), distributed_id="job", skip_missing=True
        )
        assert sorted(done.manifest) == ["one.txt"]
    with lorry.init() as first, lorry.init(reinit="create_new") as second:
        for run in (first, second):
            clash = lorry.Artifact("e", type="dataset")
            with clash.new_file("same.txt") as handle:
                handle.write(run.id)
            run.upsert_artifact(clash, distributed_id="job")
        with pytest.raises(ValidationError, match=r"both add the entry 'same\.txt'"):
            second.finish_artifact(lorry.Artifact("e", type="dataset"), distributed_id="job")


# -- retention --------------------------------------------------------------------------------------------


def test_retention_keeps_newest_aliased_and_best() -> None:
    with lorry.init() as run:
        for loss in (0.5, 0.1, 0.9, 0.3, 0.8):
            ckpt = lorry.Artifact("ckpt", type="model", metadata={"loss": loss})
            with ckpt.new_file("w") as handle:
                handle.write(str(loss))
            run.log_artifact(ckpt, aliases=["pinned"] if loss == 0.9 else [])
        ckpt.wait()
    collection = lorry.Api().artifact_collection("model", "ckpt")
    policy = RetentionPolicy(keep_last=1, keep_best=BestRule("loss", "min", 2))
    dry = collection.apply_retention(policy, dry_run=True)
    assert [(d.version, d.keep) for d in dry] == [(0, False), (1, True), (2, True), (3, True), (4, True)]
    assert "alias pinned" in dry[2].reason and "not among the best 2" in dry[0].reason
    assert len(lorry.Api().artifacts("model", "ckpt")) == 5  # a dry run deletes nothing
    collection.retention = policy
    collection.save()
    assert lorry.Api().artifact_collection("model", "ckpt").retention == policy
    collection.apply_retention()
    assert [a.version for a in lorry.Api().artifacts("model", "ckpt")] == ["v1", "v2", "v3", "v4"]


# -- the original's arguments -----------------------------------------------------------------------------


def test_every_documented_argument_is_accepted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write("data/a.txt", "a")
    write("data/b.txt", "b")
    write("other/a.txt", "A")
    caplog.set_level(logging.INFO, logger="lorry")
    run = wandb.init(
        project="docs",
        entity="team",
        job_type="train",
        dir=str(tmp_path),
        id="run-1",
        name="first",
        notes="a note",
        tags=["baseline"],
        config={"lr": 0.1, "secret": 1},
        config_exclude_keys=["secret"],
        group="exp-1",
        mode="offline",
        reinit=True,
        resume="allow",
        save_code=False,
        settings={},
    )
    artifact = wandb.Artifact("docs-data", type="dataset", incremental=False, use_as="training")
    artifact.add_file(
        "data/a.txt", name="a.txt", is_tmp=False, skip_cache=True, policy="mutable", overwrite=False
    )
    artifact.add_file("other/a.txt", name="a.txt", overwrite=True)
    artifact.add_dir("data", name="d", skip_cache=True, policy="immutable", merge=False)
    artifact.add_dir("other", name="d", merge=True)
    artifact.add_reference(
        f"file://{tmp_path}/work/data/b.txt", name="ref.txt", checksum=True, max_objects=10
    )
    run.log_artifact(artifact, name=None, type=None, aliases=["x"], tags=["t1"])
    used = run.use_artifact("docs-data:x", type="dataset", aliases=None, use_as="input")
    assert used.use_as == "input"
    run.log({"loss": 1.0}, step=1)
    run.finish()
    record = wandb.Api(overrides={"project": "docs", "entity": "team"}, timeout=10).run("run-1")
    assert (record._record.group, record._record.tags, record._record.notes) == (
        "exp-1",
        ("baseline",),
        "a note",
    )
    assert record.config == {"lr": 0.1}
    api = wandb.Api(overrides={"entity": "team", "project": "docs"}, timeout=5, api_key="unused")
    got = api.artifact("docs-data:latest", type="dataset")
    assert got.tags == ["t1"]
    assert sorted(got.manifest) == ["a.txt", "d/a.txt", "d/b.txt", "ref.txt"]
    root = Path(
        got.download(
            root="dl", allow_missing_references=True, skip_cache=True, path_prefix=None, multipart=None
        )
    )
    assert (root / "a.txt").read_text() == "A" and (root / "d/a.txt").read_text() == "A"
    write(root / "stray.txt", "not in the artifact")
    assert got.checkout("dl") == str(root)
    assert not (root / "stray.txt").exists() and (root / "ref.txt").read_text() == "b"
    assert len(api.artifacts("dataset", "docs-data", per_page=10)) == 1
    assert len(api.artifact_versions("dataset", "docs-data", per_page=10)) == 1
    assert len(api.artifact_collections("team/docs", "dataset", per_page=10)) == 1
    got.save(project="docs", settings=None)
    # Each argument without effect is said once, however often it is passed.
    wandb.init(project="docs", entity="team", dir=str(tmp_path)).finish()
    assert sum("init(dir=...)" in r.getMessage() for r in caplog.records) == 1


def test_missing_references_can_be_skipped(tmp_path: Path) -> None:
    source = write(tmp_path / "ref.txt", "referenced")
    write("kept.txt", "kept")
    with lorry.init() as run:
        artifact = lorry.Artifact("refs", type="dataset")
        artifact.add_file("kept.txt")
        artifact.add_reference(source.as_uri())
        run.log_artifact(artifact)
        artifact.wait()
    source.unlink()
    with pytest.raises(lorry.LorryError):
        artifact.download("strict")
    folder = Path(artifact.download("lenient", allow_missing_references=True))
    assert (folder / "kept.txt").read_text() == "kept"
    assert not (folder / "ref.txt").exists()


def test_resume_continues_a_recorded_run_and_refuses_a_silent_clash() -> None:
    with lorry.init(id="fixed") as run:
        logged(run, "r", {"x": b"1"})
    with pytest.raises(UsageError, match="resume"):
        lorry.init(id="fixed")
    with pytest.raises(lorry.RunNotFoundError):
        lorry.init(id="never-was", resume="must")
    with lorry.init(id="fixed", resume="allow") as run:
        logged(run, "r", {"x": b"2"})
    assert [a.version for a in lorry.Api().run("fixed").logged_artifacts()] == ["v0", "v1"]


def test_wandb_project_and_entity_are_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORRY_ENTITY")
    monkeypatch.setenv("WANDB_PROJECT", "from-wandb")
    monkeypatch.setenv("WANDB_ENTITY", "wandb-team")
    settings = lorry.Settings.load()
    assert (settings.project, settings.entity) == ("from-wandb", "wandb-team")
    monkeypatch.setenv("LORRY_PROJECT", "own")
    assert lorry.Settings.load().project == "own"  # lorry's own setting comes first
    assert lorry.Settings.load(project="arg").project == "arg"


# -- the CLI ----------------------------------------------------------------------------------------------


def lorry_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorry.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        input=stdin,
    )


def test_cli_rm_and_retain() -> None:
    with lorry.init() as run:
        for i in range(3):
            ckpt = logged(run, "ck", {"w": str(i).encode()}, metadata={"loss": 3 - i})
        ckpt.tags = ["good"]
        ckpt.save()
    refused = lorry_cli("rm", "ck")
    assert refused.returncode == 1 and "--all" in refused.stderr
    dry = lorry_cli("rm", "ck:v0", "--dry-run")
    assert dry.returncode == 0 and "would delete" in dry.stdout
    assert lorry.Api().artifact("ck:v0").state == "COMMITTED"
    gone = lorry_cli("rm", "ck:v0")
    assert gone.returncode == 0, gone.stderr
    with pytest.raises(ArtifactDeletedError):
        lorry.Api().artifact("ck:v0")
    again = lorry_cli("rm", "ck:v0")  # run again, as after a crash: nothing to do, and no failure
    assert again.returncode == 0 and "nothing to delete" in again.stdout and "was deleted" in again.stdout
    assert "ck" in lorry_cli("ls", "--tag", "good").stdout
    assert "no artifacts" in lorry_cli("ls", "--tag", "bad").stdout
    retain = lorry_cli("retain", "ck", "--keep-last", "1", "--dry-run")
    assert retain.returncode == 0, retain.stderr
    assert "would delete ck:v1: not among the newest 1" in retain.stdout
    assert lorry_cli("retain", "ck", "--keep-last", "1").returncode == 0
    assert [a.version for a in lorry.Api().artifacts("dataset", "ck")] == ["v2"]
    everything = lorry_cli("rm", "ck", "--all", "--yes")
    assert everything.returncode == 0, everything.stderr
    assert "every version" in lorry_cli("get", "ck").stderr


def test_cli_rm_of_a_version_with_aliases_needs_delete_aliases() -> None:
    with lorry.init() as run:
        best = logged(run, "al", {"w": b"0"})
        best.aliases.append("best")
        best.save()
    refused = lorry_cli("rm", "al:v0")
    assert refused.returncode == 1 and "--delete-aliases" in refused.stderr
    assert lorry.Api().artifact("al:best").version == "v0"
    assert lorry_cli("rm", "al:v0", "--delete-aliases", "--yes").returncode == 0
    with pytest.raises(ArtifactDeletedError):
        lorry.Api().artifact("al:v0")


# -- the same on remote stores ----------------------------------------------------------------------------


def test_management_on_remote_stores(remote_store: str, tmp_path: Path) -> None:
    with lorry.init(job_type="make") as run:
        v0 = logged(run, "remote", {"keep.txt": b"kept", "old.txt": b"only v0"})
        v1 = lorry.Artifact("remote", type="dataset")
        v1.ttl = timedelta(days=1)
        with v1.new_file("keep.txt") as handle:
            handle.write("kept")
        run.log_artifact(v1, tags=["fresh"], aliases=["best"])
        v1.wait()
        draft = v1.new_draft()
        with draft.new_file("added.txt") as handle:
            handle.write("added")
        run.log_artifact(draft).wait()
        for rank in range(2):
            shard = lorry.Artifact("spread", type="dataset")
            with shard.new_file(f"rank-{rank}.txt") as handle:
                handle.write(str(rank))
            run.upsert_artifact(shard, distributed_id="job")
        whole = run.finish_artifact(lorry.Artifact("spread", type="dataset"), distributed_id="job")
    old_blob = digest_of(v0, "old.txt")
    v0.delete()
    api = lorry.Api()
    with pytest.raises(ArtifactDeletedError):
        api.artifact("remote:v0")
    assert api.artifact("remote:best").tags == ["fresh"]
    assert api.artifact("remote:v1").ttl == timedelta(days=1)
    assert draft.version == "v2" and draft._counters.files_total == 1
    assert sorted(whole.manifest) == ["rank-0.txt", "rank-1.txt"]
    collection = api.artifact_collection("dataset", "remote")
    collection.description = "on a bucket"
    collection.save()
    assert lorry.Api().artifact_collection("dataset", "remote").description == "on a bucket"
    gc()
    assert not store_has_blob(old_blob)
    report = verify()
    assert report.ok, report.problems
    folder = Path(api.artifact("remote:latest").download(tmp_path / "down"))
    assert sorted(p.name for p in folder.iterdir()) == ["added.txt", "keep.txt"]


def test_the_same_content_logged_with_tags_tags_the_existing_version() -> None:
    with lorry.init() as run:
        first = logged(run, "same", {"a": b"a"})
        again = lorry.Artifact("same", type="dataset")
        with again.new_file("a", mode="wb") as handle:
            handle.write(b"a")
        run.log_artifact(again, tags=["checked"])
        again.wait()
    assert (first.version, again.version) == ("v0", "v0")
    assert again.tags == ["checked"]
    assert lorry.Api().artifact("same:v0").tags == ["checked"]
    assert [e.path for e in again.files(names=["a"], per_page=10)] == ["a"]
    assert Path(again.file("one")).read_bytes() == b"a"


def test_cli_rm_asks_on_a_terminal() -> None:
    import pty

    with lorry.init() as run:
        logged(run, "asked", {"a": b"a"})
    parent, child = pty.openpty()
    try:
        os.write(parent, b"n\n")
        answered_no = subprocess.run(
            [sys.executable, "-m", "lorry.cli", "rm", "asked:v0"],
            stdin=child,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(parent)
        os.close(child)
    assert answered_no.returncode == 1 and "nothing deleted" in answered_no.stdout
    assert lorry.Api().artifact("asked:v0").state == "COMMITTED"


def test_cli_lineage_marks_a_deleted_input() -> None:
    with lorry.init(job_type="ingest") as run:
        raw = logged(run, "raw", {"x": b"x"})
    with lorry.init(job_type="train") as run:
        run.use_artifact("raw:v0")
        logged(run, "made", {"m": b"m"})
    raw.delete()
    tree = lorry_cli("lineage", "made")
    assert tree.returncode == 0, tree.stderr
    assert "raw:v0 (dataset, deleted)" in tree.stdout


def test_cli_versions_says_which_were_deleted() -> None:
    with lorry.init() as run:
        first = logged(run, "listed", {"a": b"1"})
        logged(run, "listed", {"a": b"2"})
    first.delete()
    table = lorry_cli("versions", "listed")
    assert table.returncode == 0, table.stderr
    assert "deleted: v0" in table.stdout and "\nv0 " not in table.stdout
    everything = lorry_cli("versions", "listed", "--deleted", "--json")
    assert [(v["version"], v["state"]) for v in json.loads(everything.stdout)] == [
        ("v0", "DELETED"),
        ("v1", "COMMITTED"),
    ]


@pytest.fixture(params=["local", "ceph", "gcs"])
def each_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "local":
        return os.environ["LORRY_STORE"]
    return use_remote_store(request.param, request, monkeypatch)


def test_the_original_documentation_examples(each_store: str, project_dir: Path) -> None:
    """The original's documentation examples for these features, with ``import lorry as wandb``, on
    the local store, Ceph RGW and the GCS emulator."""
    write("my_file.txt", "data")
    write("file_to_add.txt", "added")
    write("dir_to_remove/x.txt", "x")
    # Set a TTL policy when logging, then change it on a logged version.
    run = wandb.init(project="docs", entity="me")
    artifact = wandb.Artifact(name="my-artifact", type="dataset")
    artifact.add_file("my_file.txt")
    artifact.add_dir("dir_to_remove", name="dir_to_remove")
    artifact.ttl = timedelta(days=30)
    run.log_artifact(artifact, tags=["tag1", "tag2"])
    artifact = run.use_artifact("me/docs/my-artifact:latest")
    artifact.ttl = timedelta(days=365 * 2)
    artifact.save()
    artifact.ttl = wandb.ArtifactTTL.INHERIT
    artifact.save()
    # A new version from the latest, changed in place.
    saved_artifact = run.use_artifact("my-artifact:latest")
    draft_artifact = saved_artifact.new_draft()
    draft_artifact.add_file("file_to_add.txt")
    draft_artifact.remove("dir_to_remove/")
    run.log_artifact(draft_artifact)
    run.finish()
    api = wandb.Api()
    artifact = api.artifact("me/docs/my-artifact:v0")
    assert (artifact.ttl, artifact.tags) == (None, ["tag1", "tag2"])
    assert sorted(api.artifact("me/docs/my-artifact:v1").manifest) == ["file_to_add.txt", "my_file.txt"]
    # Tags on a collection, and deleting every version without an alias but the latest.
    collection = api.artifact_collection(type_name="dataset", name="me/docs/my-artifact")
    collection.tags = ["tag-a"]
    collection.save()
    for v in api.artifact_versions("dataset", "me/docs/my-artifact"):
        if len(v.aliases) == 0:
            v.delete()
    assert [a.version for a in api.artifacts(type_name="dataset", name="me/docs/my-artifact")] == ["v1"]
    runs = api.runs("me/docs")
    assert len(runs) == 1
    for logged_run in runs:
        for version in logged_run.logged_artifacts():
            if version.state != "DELETED":
                version.delete(delete_aliases=True)
    with pytest.raises(ArtifactDeletedError):
        api.artifact("me/docs/my-artifact:latest")
    assert not api.artifact_collection_exists("me/docs/my-artifact", "dataset")


def test_cli_retain_applies_every_saved_policy() -> None:
    with lorry.init() as run:
        for i in range(3):
            logged(run, "pruned", {"w": str(i).encode()})
            logged(run, "untouched", {"w": str(i).encode()})
    saved = lorry_cli("retain", "pruned", "--keep-last", "2", "--save", "--dry-run")
    assert saved.returncode == 0, saved.stderr
    assert lorry.Api().artifact_collection("dataset", "pruned").retention == RetentionPolicy(keep_last=2)
    dry = lorry_cli("retain", "--dry-run")
    assert "would delete pruned:v0" in dry.stdout and "untouched" not in dry.stdout
    assert lorry_cli("retain").returncode == 0
    assert [a.version for a in lorry.Api().artifacts("dataset", "pruned")] == ["v1", "v2"]
    assert len(lorry.Api().artifacts("dataset", "untouched")) == 3


def test_an_entry_of_another_artifact_is_added_without_reading_it() -> None:
    with lorry.init() as run:
        source = logged(run, "source", {"weights.bin": b"w" * 5000})
        combined = lorry.Artifact("combined", type="dataset")
        combined.add_reference(source.get_entry("weights.bin"), name="from-source/weights.bin")
        run.log_artifact(combined).wait()
    assert combined._counters.files_total == 0
    assert combined.get_entry("from-source/weights.bin").digest == digest_of(source, "weights.bin")
    source.delete()
    gc()  # the blob is combined's too now
    folder = Path(combined.download("combined"))
    assert (folder / "from-source/weights.bin").read_bytes() == b"w" * 5000


def test_an_index_entry_left_naming_a_deleted_version_finds_the_live_copy() -> None:
    """A walker that read a record before its delete may rewrite the digest index to name it after a
    later version took the same content: the next log of that content must find the later version."""
    with lorry.init() as run:
        first = logged(run, "idx", {"a": b"same"})
        first.delete()
        second = logged(run, "idx", {"a": b"same"})
        assert second.version == "v1"
        settings = run.settings
        registry = session(settings).registry(settings)
        collection = Collection(run.entity, run.project, "idx")
        manifest = f"blake3:{second.digest}"
        run_sync(registry.store.put(registry._digest_key(collection, manifest), b'{"version": 0}'))
        third = logged(run, "idx", {"a": b"same"})
    assert third.version == "v1"
    assert [a.version for a in lorry.Api().artifacts("dataset", "idx", include_deleted=True)] == ["v0", "v1"]


def test_the_web_ui_shows_the_newest_version_left() -> None:
    from tests.ui_support import ui_server

    with lorry.init(project="web") as run:
        logged(run, "trimmed", {"a.txt": b"1"})
        newest = logged(run, "trimmed", {"a.txt": b"2"})
    newest.delete()
    with ui_server() as server:
        index = server.get("/").text
        assert '<a href="/a/tester/web/trimmed/v/v0">v0</a>' in index  # latest: v0, not none
        assert "deleted" in server.get("/a/tester/web/trimmed/v/v1").text  # its page says so


def test_one_string_as_aliases_or_tags_is_refused_on_every_way_to_log(tmp_path: Path) -> None:
    """``aliases="best"`` is a mistake for ``["best"]``: refused, never split into b, e, s, t."""
    with pytest.raises(ValidationError, match="tags must be a list"), lorry.init(tags="nightly"):
        pass
    with lorry.init(project="strings") as run:
        for log in (run.log_artifact, run.upsert_artifact, run.finish_artifact):
            artifact = lorry.Artifact("shard", type="dataset")
            with artifact.new_file("a.txt") as handle:
                handle.write("a")
            with pytest.raises(ValidationError, match="aliases must be a list"):
                if log == run.log_artifact:
                    log(artifact, aliases="best")
                else:
                    log(artifact, aliases="best", distributed_id="job")
    assert not lorry.Api().artifact_exists("strings/shard")  # nothing was logged


def test_an_alias_moved_onto_a_deleted_version_says_so_and_gc_removes_it() -> None:
    """An alias moved after a delete read the version (the race the delete protocol allows): resolving
    it names the version and says it is gone; the next gc removes the pointer, and only that one."""
    with lorry.init() as run:
        logged(run, "moved", {"a.txt": b"a"})
        kept = logged(run, "moved", {"a.txt": b"b"})
    kept.aliases.append("keep")
    kept.save()
    lorry.Api().artifact("moved:v0").delete()
    settings = lorry.Settings.load()
    collection = Collection(settings.entity, settings.project, "moved")
    pointer = f"{collection.prefix}aliases/late.json"
    run_sync(current_store().put(pointer, json.dumps({"version": 0}).encode(), OVERWRITE))
    gone = r"alias 'late' .* names v0, which is gone: .* was deleted"
    with pytest.raises(ArtifactDeletedError, match=gone):
        lorry.Api().artifact("moved:late")
    gc()
    with pytest.raises(lorry.ArtifactNotFoundError, match="no alias 'late'"):
        lorry.Api().artifact("moved:late")
    assert lorry.Api().artifact("moved:keep").version == "v1"  # an alias of a live version stays


def test_save_of_a_version_deleted_meanwhile_is_refused_and_changes_nothing() -> None:
    with lorry.init() as run:
        logged(run, "edited", {"a.txt": b"a"}, metadata={"loss": 1})
    mine, theirs = lorry.Api().artifact("edited:v0"), lorry.Api().artifact("edited:v0")
    theirs.delete()
    mine.metadata["loss"] = 0
    with pytest.raises(ArtifactDeletedError):
        mine.save()
    (record,) = run_sync(
        session(lorry.Settings.load())
        .registry(lorry.Settings.load())
        .versions(Collection(mine.entity, mine.project, "edited"), include_gone=True)
    )
    assert record.metadata == {"loss": 1} and record.deleted_at is not None


def test_add_dir_that_clashes_part_way_adds_nothing(tmp_path: Path) -> None:
    """All or nothing: the walk meets ``a`` (a file here, a folder in the artifact) after ``0.txt``."""
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "0.txt").write_text("first in the walk")
    (tmp_path / "more" / "a").write_text("a file where the artifact has a folder")
    artifact = lorry.Artifact("clash", type="dataset")
    with artifact.new_file("a/b.txt") as handle:
        handle.write("b")
    with pytest.raises(lorry.ValidationError):
        artifact.add_dir(tmp_path / "more")
    with lorry.init() as run:
        run.log_artifact(artifact).wait()
    assert sorted(artifact.manifest) == ["a/b.txt"]


def test_cli_versions_by_tag_and_retain_without_keeping_aliased() -> None:
    with lorry.init() as run:
        for i in range(3):
            ckpt = logged(run, "rk", {"w": str(i).encode()})
        ckpt.tags = ["final"]
        ckpt.save()
    first = lorry.Api().artifact("rk:v0")
    first.aliases.append("first")
    first.save()
    tagged = lorry_cli("versions", "rk", "--tag", "final")
    assert tagged.returncode == 0 and "v2" in tagged.stdout and "v0" not in tagged.stdout, tagged.stdout
    assert lorry_cli("retain", "rk", "--keep-last", "1").returncode == 0  # the aliased v0 stays
    assert [a.version for a in lorry.Api().artifacts("dataset", "rk")] == ["v0", "v2"]
    assert lorry_cli("retain", "rk", "--keep-last", "1", "--no-keep-aliased").returncode == 0
    assert [a.version for a in lorry.Api().artifacts("dataset", "rk")] == ["v2"]
