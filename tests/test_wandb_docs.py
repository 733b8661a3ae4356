"""The original API's documented examples, ported with one changed line (``import lorry as wandb``).

Each test is one example of the original's guides ("Create an artifact", "Download and use
artifacts", "Update an artifact", "Create an artifact alias", "Create an artifact version", "Track
external files", "Manage artifact data retention", "Delete artifacts", "Artifact tags", "Explore
artifact graphs") or of its reference (``Api``, ``Artifact``), on the local store. Where the original
does something that has no meaning here (a server, a web page, a model registry), the call is
accepted and its effect, if any, is asserted.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import lorry as wandb
from tests.conftest import write
from tests.fixtures_s3 import S3Server

# -- Create an artifact ------------------------------------------------------------------------------


def test_create_an_artifact(project_dir: Path) -> None:
    run = wandb.init(project="artifacts-example", job_type="add-dataset")
    artifact = wandb.Artifact(name="example_artifact", type="dataset")
    artifact.add_file(local_path="./bicycle-data.h5", name="training_dataset")
    artifact.add_dir(local_path="./images", name="images")
    artifact.add_reference(uri=f"file://{project_dir / 'model.h5'}")
    run.log_artifact(artifact)
    run.finish()

    logged = wandb.Api(project="artifacts-example").artifact("example_artifact:latest")
    assert sorted(e.path for e in logged.files()) == [
        "images/cat.png",
        "images/dog.png",
        "model.h5",
        "training_dataset",
    ]


def test_log_a_path_with_name_and_type(project_dir: Path) -> None:
    with wandb.init(project="paths") as run:
        artifact = run.log_artifact(artifact_or_path="./images", name="pictures", type="dataset")
        artifact.wait()
    assert artifact.type == "dataset"
    assert sorted(artifact.manifest) == ["cat.png", "dog.png"]


def test_module_level_log_artifact(project_dir: Path) -> None:
    wandb.init(project="module")
    artifact = wandb.Artifact("bike", type="dataset")
    artifact.add_file("bicycle-data.h5")
    wandb.log_artifact(artifact, aliases=["first"])
    wandb.finish()
    assert wandb.Api(project="module").artifact("bike:first").version == "v0"


def test_new_file_default_mode_writes_text() -> None:
    with wandb.init(project="new-file") as run:
        artifact = wandb.Artifact("notes", type="dataset")
        with artifact.new_file("hello.txt") as f:
            f.write("hello!")
        run.log_artifact(artifact)
    folder = wandb.Api(project="new-file").artifact("notes:latest").download()
    assert Path(folder, "hello.txt").read_text() == "hello!"


# -- Download and use artifacts ----------------------------------------------------------------------


def logged_dataset(project: str = "use") -> wandb.Artifact:
    write("data/a.csv", "a,b\n1,2\n")
    write("data/sub/b.csv", "c\n3\n")
    with wandb.init(project=project, job_type="upload") as run:
        artifact = wandb.Artifact("bike-dataset", type="dataset", metadata={"rows": 2})
        artifact.add_dir("data")
        run.log_artifact(artifact, aliases=["raw"])
        return artifact.wait()


def test_download_and_use_in_a_run(tmp_path: Path) -> None:
    logged_dataset()
    with wandb.init(project="use", job_type="train") as run:
        artifact = run.use_artifact("bike-dataset:latest")
        datadir = artifact.download()
        assert Path(datadir, "sub/b.csv").read_text() == "c\n3\n"
        root = artifact.download(root=str(tmp_path / "elsewhere"))
        assert Path(root) == tmp_path / "elsewhere"
        entry = artifact.get_entry("a.csv")
        assert Path(entry.download()).read_text() == "a,b\n1,2\n"
        part = artifact.download(root=str(tmp_path / "part"), path_prefix="sub")
        assert [p.name for p in Path(part).rglob("*.csv")] == ["b.csv"]


def test_download_with_the_public_api() -> None:
    logged_dataset()
    api = wandb.Api()
    artifact = api.artifact("tester/use/bike-dataset:raw")
    assert Path(artifact.download(), "a.csv").exists()
    assert api.artifact("use/bike-dataset:v0", type="dataset").digest == artifact.digest


def test_use_an_artifact_not_yet_logged(project_dir: Path) -> None:
    with wandb.init(project="draft-use") as run:
        artifact = wandb.Artifact("model", type="model")
        artifact.add_file("model.h5")
        used = run.use_artifact(artifact)
        assert used.version == "v0"
        assert [a.qualified_name for a in run.used_artifacts()] == [used.qualified_name]


# -- Update an artifact ------------------------------------------------------------------------------


def test_update_during_a_run() -> None:
    logged_dataset()
    with wandb.init(project="use") as run:
        artifact = run.use_artifact("bike-dataset:raw")
        artifact.description = "new description"
        artifact.save()
    assert wandb.Api(project="use").artifact("bike-dataset:raw").description == "new description"


def test_update_with_the_public_api() -> None:
    logged_dataset()
    api = wandb.Api()
    artifact = api.artifact("tester/use/bike-dataset:raw")
    artifact.description = "My new description"
    artifact.metadata["oldKey"] = "new value"
    artifact.metadata = {"newKey": "new value"}
    artifact.aliases.append("best")
    artifact.aliases.remove("raw")
    artifact.save()
    again = api.artifact("use/bike-dataset:best")
    assert again.description == "My new description"
    assert again.metadata == {"newKey": "new value"}
    assert sorted(again.aliases) == ["best", "latest"]
    artifact.aliases = ["replaced"]
    artifact.save()
    assert api.artifact("use/bike-dataset:v0").aliases == ["latest", "replaced"]


def test_update_a_collection() -> None:
    logged_dataset()
    api = wandb.Api()
    collection = api.artifact_collection(type_name="dataset", name="use/bike-dataset")
    collection.description = "bikes of May"
    collection.tags = ["public"]
    collection.save()
    again = api.artifact_collection("dataset", "use/bike-dataset")
    assert (again.description, again.tags) == ("bikes of May", ["public"])


# -- Create an artifact alias / version ----------------------------------------------------------------


def test_aliases_when_logging_and_using(project_dir: Path) -> None:
    with wandb.init(project="alias") as run:
        artifact = wandb.Artifact("model", type="model")
        artifact.add_file("model.h5")
        run.log_artifact(artifact, aliases=["best", "production"])
    with wandb.init(project="alias") as run:
        used = run.use_artifact("model:production")
        assert sorted(used.aliases) == ["best", "latest", "production"]


def test_new_version_from_an_existing_one(project_dir: Path) -> None:
    with wandb.init(project="versions") as run:
        first = wandb.Artifact("images", type="dataset")
        first.add_dir("images")
        run.log_artifact(first)
    with wandb.init(project="versions", job_type="modify") as run:
        saved = run.use_artifact("images:latest")
        draft = saved.new_draft()
        assert draft.is_draft()
        draft.remove("cat.png")
        draft.add_file("model.h5")
        run.log_artifact(draft)
        assert draft.wait().version == "v1"
    assert sorted(draft.manifest) == ["dog.png", "model.h5"]


def test_incremental_version(project_dir: Path) -> None:
    with wandb.init(project="incremental") as run:
        base = wandb.Artifact("images", type="dataset")
        base.add_dir("images")
        run.log_artifact(base)
        more = wandb.Artifact("images", type="dataset", incremental=True)
        more.add_file("model.h5")
        run.log_artifact(more)
        assert sorted(more.wait().manifest) == ["cat.png", "dog.png", "model.h5"]


def test_distributed_version(project_dir: Path) -> None:
    for i, name in enumerate(["images/cat.png", "images/dog.png"]):
        with wandb.init(project="distributed", group="g1") as run:
            shard = wandb.Artifact("shards", type="dataset")
            shard.add_file(name, name=f"part{i}.png")
            run.upsert_artifact(shard, distributed_id="g1")
            assert shard.distributed_id == "g1"
    with wandb.init(project="distributed", group="g1") as run:
        final = run.finish_artifact(wandb.Artifact("shards", type="dataset"), distributed_id="g1")
    assert sorted(final.manifest) == ["part0.png", "part1.png"]


# -- Track external files ----------------------------------------------------------------------------


def test_reference_to_a_local_folder_and_file(project_dir: Path, tmp_path: Path) -> None:
    mount = project_dir / "mount"
    write(mount / "datasets/mnist/0.png", "zero")
    write(mount / "datasets/mnist/1.png", "one")
    with wandb.init(project="refs") as run:
        artifact = wandb.Artifact("mnist", type="dataset")
        artifact.add_reference(f"file://{mount}/datasets/mnist/")
        artifact.add_reference(f"file://{mount}/datasets/mnist/0.png", name="first.png")
        artifact.add_reference(f"file://{project_dir / 'model.h5'}", checksum=False)
        run.log_artifact(artifact)
    with wandb.init(project="refs") as run:
        used = run.use_artifact("mnist:latest")
        assert used.get_entry("first.png").ref == f"file://{mount}/datasets/mnist/0.png"
        folder = used.download(root=str(tmp_path / "down"), allow_missing_references=True)
    assert Path(folder, "1.png").read_text() == "one"
    assert Path(folder, "first.png").read_text() == "zero"


# -- Data retention (TTL) ------------------------------------------------------------------------------


def test_ttl_when_logging_and_after() -> None:
    with wandb.init(project="ttl") as run:
        artifact = wandb.Artifact("temp", type="dataset")
        with artifact.new_file("a.txt") as f:
            f.write("a")
        artifact.ttl = timedelta(days=30)
        run.log_artifact(artifact)
    api = wandb.Api(project="ttl")
    found = api.artifact("temp:latest")
    assert found.ttl == timedelta(days=30)
    found.ttl = wandb.ArtifactTTL.INHERIT
    found.save()
    assert api.artifact("temp:latest").ttl is None
    found.ttl = timedelta(days=365)
    found.save()
    assert api.artifact("temp:latest").ttl == timedelta(days=365)
    found.ttl = None
    found.save()
    assert api.artifact("temp:latest").ttl is None


# -- Delete artifacts ----------------------------------------------------------------------------------


def test_delete_versions_without_aliases() -> None:
    with wandb.init(project="delete") as run:
        for i in range(3):
            artifact = wandb.Artifact("checkpoints", type="model")
            with artifact.new_file("w.bin") as f:
                f.write(str(i))
            run.log_artifact(artifact, aliases=["best"] if i == 0 else [])
            artifact.wait()
    api = wandb.Api(overrides={"project": "delete"})
    for version in api.artifact_versions("model", "checkpoints"):
        if len(version.aliases) == 0:
            version.delete()
    assert [v.version for v in api.artifacts("model", "checkpoints")] == ["v0", "v2"]
    api.artifact("checkpoints:v0").delete(delete_aliases=True)
    assert not api.artifact_exists("delete/checkpoints:v0")
    api.artifact_collection("model", "checkpoints").delete()
    assert not api.artifact_collection_exists("checkpoints", "model")


# -- Artifact tags -------------------------------------------------------------------------------------


def test_tags() -> None:
    with wandb.init(project="tags") as run:
        artifact = wandb.Artifact("data", type="dataset")
        with artifact.new_file("a.txt") as f:
            f.write("a")
        run.log_artifact(artifact, tags=["tag1", "tag2"])
    api = wandb.Api(project="tags")
    found = api.artifact("data:latest")
    assert sorted(found.tags) == ["tag1", "tag2"]
    found.tags.append("tag3")
    found.tags.remove("tag1")
    found.save()
    assert sorted(api.artifact("data:latest").tags) == ["tag2", "tag3"]
    assert [a.version for a in api.artifacts(type_name="dataset", name="data", tags=["tag3"])] == ["v0"]
    assert api.artifacts(type_name="dataset", name="data", tags=["tag1"]) == []


# -- Explore artifact graphs ---------------------------------------------------------------------------


def test_explore_the_graph() -> None:
    logged_dataset("graph")
    with wandb.init(project="graph", job_type="train") as run:
        run.use_artifact("bike-dataset:latest")
        model = wandb.Artifact("model", type="model")
        with model.new_file("w.bin") as f:
            f.write("w")
        run.log_artifact(model)
        train_id = run.id
    api = wandb.Api()
    artifact = api.artifact("tester/graph/bike-dataset:latest")
    producer = artifact.logged_by()
    assert producer is not None and producer.job_type == "upload"
    consumers = artifact.used_by()
    assert [r.id for r in consumers] == [train_id]
    trainer = api.run(f"tester/graph/{train_id}")
    assert [a.qualified_name for a in trainer.used_artifacts()] == [artifact.qualified_name]
    assert [a.source_name.split(":")[0] for a in trainer.logged_artifacts()] == ["model"]
    assert [a.type for a in producer.logged_artifacts()] == ["dataset"]


# -- Api reference -------------------------------------------------------------------------------------


def test_api_lookups() -> None:
    logged_dataset("lookups")
    api = wandb.Api(overrides={"entity": "tester", "project": "lookups"})
    assert api.artifact_exists("bike-dataset:v0")
    assert not api.artifact_exists("bike-dataset:v9")
    assert api.artifact_collection_exists("bike-dataset", "dataset")
    assert not api.artifact_collection_exists("bike-dataset", "model")
    assert [t.name for t in api.artifact_types("lookups")] == ["dataset"]
    kind = api.artifact_type("dataset", "lookups")
    assert [c.name for c in kind.collections()] == ["bike-dataset"]
    assert kind.collection("bike-dataset").name == "bike-dataset"
    assert [c.name for c in api.artifact_collections("lookups", "dataset")] == ["bike-dataset"]
    assert [a.version for a in api.artifacts("dataset", "lookups/bike-dataset")] == ["v0"]


# -- Artifact reference: attributes and methods --------------------------------------------------------


def test_artifact_attributes() -> None:
    artifact = logged_dataset("attrs")
    assert artifact.name == "bike-dataset:v0"
    assert artifact.qualified_name == "tester/attrs/bike-dataset:v0"
    assert (artifact.version, artifact.source_version) == ("v0", "v0")
    assert artifact.source_name == "bike-dataset:v0"
    assert artifact.source_qualified_name == artifact.qualified_name
    assert (artifact.source_entity, artifact.source_project) == ("tester", "attrs")
    assert artifact.source_artifact is artifact
    assert artifact.is_link is False and artifact.linked_artifacts == []
    assert artifact.type == "dataset" and artifact.metadata == {"rows": 2}
    assert artifact.state == "COMMITTED" and not artifact.is_draft()
    assert artifact.id and artifact.digest and artifact.commit_hash
    assert (artifact.file_count, artifact.size) == (2, 12)
    assert artifact.created_at and artifact.updated_at
    assert artifact.history_step is None
    assert artifact.use_as is None and artifact.distributed_id is None
    assert artifact.incremental is False
    assert artifact.collection.name == "bike-dataset"
    assert artifact.source_collection.name == "bike-dataset"
    assert isinstance(artifact.url, str)


def test_draft_attributes() -> None:
    draft = wandb.Artifact("draft", type="dataset")
    assert draft.name == "draft" and draft.source_name == "draft"
    assert draft.is_draft() and draft.state == "PENDING"
    assert draft.id is None


def test_manifest_and_entries() -> None:
    artifact = logged_dataset("manifest")
    entries = artifact.manifest.entries
    assert sorted(entries) == ["a.csv", "sub/b.csv"]
    assert entries["a.csv"].size == 8
    assert artifact.get_path("a.csv").path == "a.csv"
    with pytest.raises(KeyError):
        artifact.get_entry("missing.csv")
    assert [f.name for f in artifact.files()] == ["a.csv", "sub/b.csv"]
    assert [f.name for f in artifact.files(names=["a.csv"])] == ["a.csv"]
    assert artifact.get("a.csv") is None  # not a rich media object


def test_checkout_and_verify(tmp_path: Path) -> None:
    artifact = logged_dataset("checkout")
    root = tmp_path / "work"
    write(root / "stray.txt", "left over")
    folder = artifact.checkout(str(root))
    assert not Path(folder, "stray.txt").exists()
    artifact.verify(root=folder)
    Path(folder, "a.csv").write_text("changed")
    with pytest.raises(ValueError):
        artifact.verify(root=folder)


def test_wait_and_save_of_a_draft(project_dir: Path) -> None:
    artifact = wandb.Artifact("saved-without-run", type="dataset")
    artifact.add_file("model.h5")
    artifact.save()
    assert artifact.wait(timeout=60).version == "v0"


def test_remove_an_entry_object(project_dir: Path) -> None:
    artifact = wandb.Artifact("remove", type="dataset")
    entry = artifact.add_file("model.h5")
    artifact.add_file("bicycle-data.h5")
    artifact.remove(entry)
    with pytest.raises(FileNotFoundError):
        artifact.remove("missing.h5")
    assert artifact.get_added_local_path_name("bicycle-data.h5") == "bicycle-data.h5"
    with wandb.init(project="remove") as run:
        run.log_artifact(artifact)
    assert sorted(artifact.wait().manifest) == ["bicycle-data.h5"]


def test_json_encode() -> None:
    artifact = logged_dataset("json")
    encoded = artifact.json_encode()
    assert json.loads(json.dumps(encoded))["id"] == artifact.id


def test_link_and_unlink() -> None:
    artifact = logged_dataset("link")
    with wandb.init(project="link") as run:
        linked = run.link_artifact(artifact, "registry/bike-models", aliases=["production"])
    # lorry's link is a version of the target collection holding the same entries, nothing stored again
    assert linked.qualified_name == "tester/registry/bike-models:v0"
    assert sorted(linked.aliases) == ["latest", "production"]
    assert linked.digest == artifact.digest and linked.is_link is False
    found = wandb.Api().artifact("tester/registry/bike-models:production")
    assert found.logged_by() is not None and found.logged_by().job_type == "link"  # type: ignore[union-attr]
    assert [a.qualified_name for a in found.logged_by().used_artifacts()] == [artifact.qualified_name]  # type: ignore[union-attr]
    again = artifact.link("registry/bike-models")  # the same content: no new version
    assert again.version == "v0"
    with pytest.raises(ValueError, match="not a linked artifact"):
        linked.unlink()
    with pytest.raises(wandb.UsageError, match="new_file"):
        artifact.new_draft().add({"rows": 1}, "table")


def test_documented_paging_and_order_arguments_are_accepted(caplog: pytest.LogCaptureFixture) -> None:
    logged_dataset("paging")
    with wandb.init(project="paging") as run:
        again = wandb.Artifact("bike-dataset", type="dataset")
        with again.new_file("c.csv") as f:
            f.write("c")
        run.log_artifact(again)
    api = wandb.Api(project="paging")
    with caplog.at_level(logging.INFO, logger="lorry"):
        newest_first = api.artifacts("dataset", "bike-dataset", order="-created_at", per_page=10, start=None)
        assert [a.version for a in newest_first] == ["v1", "v0"]
        oldest_first = api.artifacts("dataset", "bike-dataset", order="+created_at", start="cursor")
        assert [a.version for a in oldest_first] == ["v0", "v1"]
        kinds = api.artifact_collections("paging", "dataset", order="name", per_page=5, start="cursor")
        assert [c.name for c in kinds] == ["bike-dataset"]
        assert [t.name for t in api.artifact_types("paging", start="cursor")] == ["dataset"]
        artifact = api.artifact("bike-dataset:v0")
        assert [f.path for f in artifact.files(per_page=1, start="cursor")] == ["a.csv", "sub/b.csv"]
    said = [r.getMessage() for r in caplog.records if "has no effect" in r.getMessage()]
    assert any("start=" in m for m in said), said


def test_entry_methods(tmp_path: Path, project_dir: Path) -> None:
    with wandb.init(project="entries") as run:
        artifact = wandb.Artifact("mixed", type="dataset")
        artifact.add_file("model.h5")
        artifact.add_reference(f"file://{project_dir / 'bicycle-data.h5'}")
        run.log_artifact(artifact)
    used = wandb.Api(project="entries").artifact("mixed:latest")
    stored, reference = used.get_entry("model.h5"), used.get_entry("bicycle-data.h5")
    assert stored.ref is None and reference.ref == f"file://{project_dir / 'bicycle-data.h5'}"
    assert reference.ref_target() == f"file://{project_dir / 'bicycle-data.h5'}"
    with pytest.raises(ValueError):
        stored.ref_target()
    assert stored.parent_artifact() is used
    path = stored.download(root=str(tmp_path / "one"), skip_cache=True)
    assert Path(path).read_bytes() == b"model weights"


# -- Models (the original's shorthands) ------------------------------------------------------------


def test_log_use_and_link_a_model(project_dir: Path) -> None:
    with wandb.init(project="models") as run:
        run.log_model(path="./model.h5", name="classifier", aliases=["candidate"])
        linked = run.link_model(path="./checkpoints", registered_model_name="bikes", aliases=["staging"])
        run_id = run.id
    assert linked.qualified_name == "tester/model-registry/bikes:v0"
    assert "staging" in linked.aliases
    assert wandb.Api(project="models").artifact(f"run-{run_id}-checkpoints:latest").type == "model"
    with wandb.init(project="models") as run:
        folder = run.use_model("classifier:candidate")
        assert Path(folder, "model.h5").read_bytes() == b"model weights"
        write("data.csv", "x")
        run.log_artifact("data.csv", name="not-a-model", type="dataset")
        with pytest.raises(ValueError, match="not a model"):
            run.use_model("not-a-model:latest")


def test_arguments_and_attributes_of_newer_releases(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lorry"):
        artifact = wandb.Artifact("regional", type="dataset", storage_region="coreweave-us")
    assert any("storage_region" in r.getMessage() for r in caplog.records)
    with artifact.new_file("a.txt", mode="x", encoding="utf-8", policy="immutable") as f:
        f.write("a")
    with pytest.raises(ValueError, match="policy"), artifact.new_file("b.txt", policy="sometimes"):
        pass
    with wandb.init(project="newer") as run:
        run.log_artifact(artifact)
        run_id = run.id
    assert sorted(artifact.wait().manifest) == ["a.txt"]
    api = wandb.Api(project="newer")
    assert api.default_entity == "tester"
    assert api.artifact_type("dataset").id == "tester/newer/dataset"
    logged_run = api.run(run_id)
    assert (logged_run.url, logged_run.summary) == ("", {})


def test_collection_times_and_rename() -> None:
    first = logged_dataset("times")
    with wandb.init(project="times") as run:
        second = wandb.Artifact("bike-dataset", type="dataset")
        with second.new_file("c.csv") as f:
            f.write("c")
        run.log_artifact(second)
    collection = wandb.Api(project="times").artifact_collection("dataset", "bike-dataset")
    assert first.created_at < second.wait().created_at
    assert (collection.created_at, collection.updated_at) == (first.created_at, second.created_at)
    collection.name = "renamed"
    with pytest.raises(wandb.UsageError, match="cannot be renamed"):
        collection.save()
    assert wandb.Api(project="times").artifact_collection_exists("bike-dataset", "dataset")


def test_declare_inputs_and_outputs_of_a_finished_run() -> None:
    dataset = logged_dataset("declare")
    with wandb.init(project="declare", job_type="eval") as run:
        run_id = run.id
    api = wandb.Api(project="declare")
    finished = api.run(run_id)
    finished.use_artifact(api.artifact("bike-dataset:latest"))
    finished.log_artifact(api.artifact("bike-dataset:latest"), aliases=["evaluated"], tags=["checked"])
    again = api.run(run_id)
    assert [a.qualified_name for a in again.used_artifacts()] == [dataset.qualified_name]
    assert [a.qualified_name for a in again.logged_artifacts()] == [dataset.qualified_name]
    assert run_id in [r.id for r in dataset.used_by()]
    found = api.artifact("bike-dataset:evaluated")
    assert (found.version, found.tags) == ("v0", ["checked"])
    with pytest.raises(wandb.UsageError, match="not logged"):
        finished.use_artifact(wandb.Artifact("draft", type="dataset"))


def test_reference_to_an_entry_of_another_artifact(project_dir: Path, tmp_path: Path) -> None:
    source = logged_dataset("entry-ref")
    with wandb.init(project="entry-ref") as run:
        derived = wandb.Artifact("derived", type="dataset")
        derived.add_reference(source.get_entry("a.csv"), name="copied/a.csv")
        derived.add_file("model.h5")
        run.log_artifact(derived)
    derived.wait()
    assert derived.get_entry("copied/a.csv").digest == source.get_entry("a.csv").digest
    folder = derived.download(root=str(tmp_path / "derived"))
    assert Path(folder, "copied/a.csv").read_text() == "a,b\n1,2\n"
    draft = wandb.Artifact("draft", type="dataset")
    with pytest.raises(ValueError, match="not logged yet"):
        draft.add_reference(draft.add_file("model.h5"), name="again.h5")
    with pytest.raises(ValueError, match="already in this artifact"):
        draft.add_reference(source.get_entry("a.csv"), name="model.h5")


def test_delete_versions_with_an_alias_run_by_run() -> None:
    with wandb.init(project="sweep") as run:
        for i, alias in enumerate(["keep", "drop"]):
            artifact = wandb.Artifact(f"ckpt-{i}", type="model")
            with artifact.new_file("w.bin") as f:
                f.write(str(i))
            run.log_artifact(artifact, aliases=[alias])
    api = wandb.Api()
    for logged_run in api.runs("tester/sweep"):
        for artifact in logged_run.logged_artifacts():
            if "drop" in artifact.aliases:
                artifact.delete(delete_aliases=True)
    assert api.artifact_exists("sweep/ckpt-0:keep")
    assert not api.artifact_exists("sweep/ckpt-1:v0")
    api.artifact_collection("model", "tester/sweep/ckpt-0").delete()
    assert not api.artifact_collection_exists("tester/sweep/ckpt-0", "model")


def test_new_version_outside_a_run(project_dir: Path, tmp_path: Path) -> None:
    elsewhere = str(tmp_path / "other-store")
    with wandb.init(project="outside", store=elsewhere) as run:
        run.log_artifact("images", name="bike-dataset", type="dataset")
    api = wandb.Api(project="outside", store=elsewhere)
    draft = api.artifact("bike-dataset:latest").new_draft()
    draft.add_file("model.h5")
    draft.save()  # no run: one is made where the version it came from is, not in the default place
    assert draft.wait().qualified_name == "tester/outside/bike-dataset:v1"
    assert sorted(api.artifact("bike-dataset:latest").manifest) == ["cat.png", "dog.png", "model.h5"]
    logged_dataset("outside")
    with wandb.init(project="outside") as run, pytest.raises(ValueError, match="type"):
        run.use_artifact("bike-dataset:latest", type="model")


def test_a_training_scripts_run_attributes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lorry"), wandb.init(project="train") as run:
        run.summary["accuracy"] = 0.9
        assert run.summary == {"accuracy": 0.9}
        model = Path(run.dir, "model.h5")
        model.write_bytes(b"weights")
        assert run.save(str(model)) is True
        assert run.url == ""
        run.log_artifact(str(model), name="from-run-dir", type="model")
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "Run(summary=...) has no effect" in said and "Run(save=...) has no effect" in said
    assert Path(run.dir).is_dir() and Path(run.dir).parent.name == "runs"
    assert sorted(wandb.Api(project="train").artifact("from-run-dir:latest").manifest) == ["model.h5"]


# -- Artifact data privacy -----------------------------------------------------------------------------


def test_reference_to_a_private_bucket(moto_server: S3Server, s3_bucket: Any, store_dir: Path) -> None:
    bucket = s3_bucket(moto_server).split("/")[2]
    moto_server.admin().put_object(Bucket=bucket, Key="animals/cat.png", Body=b"private cat")
    run = wandb.init(project="privacy")
    artifact = wandb.Artifact("animals", type="dataset")
    artifact.add_reference(f"s3://{bucket}/animals")
    run.log_artifact(artifact)
    run.finish()
    assert artifact.get_entry("cat.png").ref == f"s3://{bucket}/animals/cat.png"
    # only the metadata was recorded: no byte of the file is on lorry's store
    assert not [p for p in store_dir.rglob("*") if p.is_file() and b"private cat" in p.read_bytes()]
