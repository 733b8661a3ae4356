"""Property tests through the public API, on a real local store.

Every name, type, description, metadata value, alias and entry name a caller can pass is either
accepted and read back exactly (``Api().artifact``, ``use_artifact``, ``download``), or refused with a
``ValueError`` (a ``lorry.ValidationError``) whose message names what was wrong, and then the store
holds exactly what it held before.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import lorry
from tests import oracles
from tests.strategies import hostile_metadata, names, storable_values, wild_text

# Each example logs and reads back a real artifact: few examples, each with a generous deadline (the
# first one in a process also starts the engine).
PROPERTY = settings(
    max_examples=100,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def mostly(valid: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values three times in four, so that many examples get as far as the round trip."""
    return st.one_of(valid, valid, valid, wild)


valid_names = st.one_of(
    names.filter(lambda n: n not in (".", "..")),
    st.lists(names, min_size=2, max_size=3).map(" ".join),  # single spaces between words are allowed
)
wild_names = st.one_of(wild_text, st.sampled_from([".", "..", "x" * 129, "a  b", " a", "a "]))
valid_types = st.one_of(
    st.sampled_from(["dataset", "model", "  spaced type ", "Ünïcode ✓", "x" * 128]),
    st.text(st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/:"), min_size=1).filter(
        str.strip
    ),
)
valid_descriptions = st.one_of(st.none(), st.text())
wild_descriptions = st.one_of(wild_text, st.sampled_from([7, b"bytes"]))
descriptions = mostly(valid_descriptions, wild_descriptions)
metadata_values = mostly(storable_values, hostile_metadata)
aliases = mostly(
    st.one_of(names.filter(lambda n: n not in (".", "..")), st.sampled_from(["latest", "v01", "a" * 128])),
    st.one_of(wild_text, st.sampled_from(["v0", "v1", ".", "..", "a" * 129, None, 7])),
)
entry_names = st.one_of(
    st.lists(st.one_of(names, st.sampled_from(["", ".", "..", " ", "é", "\\", "x" * 256])), max_size=4).map(
        "/".join
    ),
    wild_text,
    st.sampled_from(["/abs", "C:/x", "a\\b", "a//b/", "./a", "a/./b", "\x00", "a\nb", "..."]),
)
FIELD_WORDS = ("artifact name", "artifact type", "description", "metadata", "alias", "entry")


def new_store(tmp_path: Path) -> Path:
    """A fresh store for one example (the examples of a test share ``tmp_path``)."""
    return tmp_path / f"store-{uuid.uuid4().hex[:12]}"


def snapshot(store: Path) -> dict[str, bytes]:
    """Every object of a local store and its content (the store's own temporary files aside)."""
    if not store.exists():
        return {}
    return {
        p.relative_to(store).as_posix(): p.read_bytes()
        for p in store.rglob("*")
        if p.is_file() and p.relative_to(store).parts[0] != ".lorry"
    }


def as_json(value: object) -> Any:
    """What a JSON document holds for ``value``, by the standard library (not by lorry's own code)."""
    return json.loads(json.dumps(value))


def refused(error: lorry.ValidationError, *words: str) -> None:
    event("refused")
    assert isinstance(error, ValueError)
    text = str(error)
    assert any(word in text for word in words or FIELD_WORDS), text


@st.composite
def artifact_fields(draw: st.DrawFn) -> tuple[Any, Any, Any, Any, Any]:
    """Name, type, description, metadata and a value put into the metadata later: up to two of them
    drawn from anything at all, the others well-formed."""
    wild = draw(st.sets(st.sampled_from(["name", "type", "description", "metadata", "late"]), max_size=2))

    def pick(field: str, valid: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> Any:
        return draw(anything if field in wild else valid)

    def metadata_of(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(st.none(), st.dictionaries(st.text(max_size=8), values, max_size=3))

    return (
        pick("name", valid_names, wild_names),
        pick("type", valid_types, wild_text),
        pick("description", valid_descriptions, wild_descriptions),
        pick("metadata", metadata_of(storable_values), metadata_of(hostile_metadata)),
        pick("late", st.one_of(st.none(), storable_values), hostile_metadata),
    )


@PROPERTY
@given(artifact_fields())
def test_artifact_fields_round_trip_or_are_refused(tmp_path: Path, fields: tuple[Any, ...]) -> None:
    name, kind, description, metadata, late = fields
    valid = (
        oracles.valid_artifact_name(name)
        and oracles.valid_type(kind)
        and oracles.valid_description(description)
        and oracles.storable_metadata(metadata)
        and (late is None or oracles.storable_metadata({"late": late}))
    )
    store = new_store(tmp_path)
    with lorry.init(store=str(store)) as run:
        before = snapshot(store)
        try:
            artifact = lorry.Artifact(name, type=kind, description=description, metadata=metadata)  # type: ignore[arg-type]
            if late is not None:
                artifact.metadata["late"] = late  # put in place after the dict was checked
            with artifact.new_file("data.txt") as handle:
                handle.write("content")
            run.log_artifact(artifact)
        except lorry.ValidationError as error:
            refused(error)
            assert snapshot(store) == before
            assert not valid, f"valid fields refused: {error}"
            return
        assert valid, "invalid fields accepted"
        artifact.wait()
        event("accepted")
    expected = as_json({**(metadata or {}), **({"late": late} if late is not None else {})})
    for got in (
        lorry.Api(store=str(store)).artifact(f"{name}:v0"),
        lorry.init(store=str(store)).use_artifact(f"{name}:latest"),
    ):
        assert (got.name, got.type, got.description, got.version) == (name, kind, description, "v0")
        assert got.metadata == expected
        assert got.aliases == ["latest"]
        folder = Path(got.download(tmp_path / f"down-{uuid.uuid4().hex[:8]}"))
        assert [p.name for p in folder.iterdir()] == ["data.txt"]
        assert (folder / "data.txt").read_text() == "content"
    lorry.finish()


@PROPERTY
@given(st.lists(st.tuples(entry_names, st.booleans(), st.binary(max_size=16)), min_size=1, max_size=5))
def test_entry_names_round_trip_or_are_refused(tmp_path: Path, adds: list[tuple[str, bool, bytes]]) -> None:
    store = new_store(tmp_path)
    sources = tmp_path / f"src-{uuid.uuid4().hex[:8]}"
    sources.mkdir()
    artifact = lorry.Artifact("entries", type="dataset")
    expected: dict[str, bytes] = {}
    with lorry.init(store=str(store)) as run:
        before = snapshot(store)
        for number, (name, as_new_file, data) in enumerate(adds):
            normal = oracles.normal_entry_name(name)
            clash = normal is not None and (
                normal in expected
                or any(normal.startswith(p + "/") or p.startswith(normal + "/") for p in expected)
            )
            try:
                if as_new_file:
                    with artifact.new_file(name, mode="wb") as handle:
                        handle.write(data)
                else:
                    source = sources / str(number)
                    source.write_bytes(data)
                    artifact.add_file(source, name=name)
            except lorry.ValidationError as error:
                refused(error, "entry")
                assert normal is None or clash, f"{name!r} was refused: {error}"
                continue
            assert normal is not None and not clash, f"{name!r} was accepted as {normal!r}"
            expected[normal] = data
        assert snapshot(store) == before  # adding files writes nothing to the store
        if not expected:
            return
        run.log_artifact(artifact)
        artifact.wait()
        event("accepted")
    got = lorry.Api(store=str(store)).artifact("entries:v0")
    assert sorted(entry.path for entry in got.files()) == sorted(expected)
    assert {path: got.get_entry(path).size for path in expected} == {p: len(d) for p, d in expected.items()}
    root = tmp_path / f"down-{uuid.uuid4().hex[:8]}" / "root"
    folder = Path(got.download(root))
    found = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert found == expected
    assert [p.name for p in root.parent.iterdir()] == ["root"]  # nothing beside the root
    got.verify(folder)


@PROPERTY
@given(name=names.filter(lambda n: n not in (".", "..")), wanted=st.lists(aliases, max_size=3))
def test_aliases_round_trip_or_are_refused(tmp_path: Path, name: str, wanted: list[Any]) -> None:
    store = new_store(tmp_path)
    with lorry.init(store=str(store)) as run:
        artifact = lorry.Artifact(name, type="model")
        with artifact.new_file("weights.bin", mode="wb") as handle:
            handle.write(b"weights")
        before = snapshot(store)
        try:
            run.log_artifact(artifact, aliases=wanted)
        except lorry.ValidationError as error:
            refused(error, "alias")
            assert snapshot(store) == before  # not even the blob was stored
            assert artifact.is_draft()
            assert not all(oracles.valid_alias(a) or a == "latest" for a in wanted), error
            return
        assert all(oracles.valid_alias(a) or a == "latest" for a in wanted), wanted
        artifact.wait()
        event("accepted")
    user = sorted(set(wanted) - {"latest"})
    api = lorry.Api(store=str(store))
    got = api.artifact(f"{name}:v0")
    assert got.aliases == ["latest", *user]
    with lorry.init(store=str(store)) as reader:
        for alias in ["latest", *user]:
            assert api.artifact(f"{name}:{alias}").version == "v0"
            assert reader.use_artifact(f"{name}:{alias}").digest == got.digest


@PROPERTY
@given(
    description=descriptions,
    key=st.text(max_size=6),
    value=metadata_values,
    replace=st.booleans(),
    alias=aliases,
)
def test_saved_changes_round_trip_or_are_refused(
    tmp_path: Path, description: Any, key: str, value: object, replace: bool, alias: Any
) -> None:
    store = new_store(tmp_path)
    with lorry.init(store=str(store)) as run:
        base = lorry.Artifact("base", type="dataset", description="first", metadata={"kept": 1})
        with base.new_file("f.txt") as handle:
            handle.write("f")
        run.log_artifact(base, aliases=["old"])
        base.wait()
    before = snapshot(store)
    artifact = lorry.Api(store=str(store)).artifact("base:v0")
    valid = (
        oracles.valid_description(description)
        and oracles.storable_metadata({key: value})
        and (oracles.valid_alias(alias) or alias == "latest")
    )
    try:
        artifact.description = description
        if replace:
            artifact.metadata = {key: value}
        else:
            artifact.metadata[key] = value  # in place: checked only when saved
        artifact.aliases.append(alias)
        artifact.save()
    except lorry.ValidationError as error:
        refused(error, "description", "metadata", "alias")
        assert snapshot(store) == before
        assert not valid, f"a valid change was refused: {error}"
        return
    assert valid, "an invalid change was accepted"
    metadata = as_json({key: value} if replace else {"kept": 1, key: value})
    event("accepted")
    again = lorry.Api(store=str(store)).artifact("base:v0")
    assert (again.description, again.metadata) == (description, metadata)
    assert again.aliases == ["latest", *sorted({"old", alias} - {"latest"})]
    assert (artifact.description, artifact.metadata, artifact.aliases) == (
        again.description,
        again.metadata,
        again.aliases,
    )


@PROPERTY
@given(text=st.one_of(wild_text, st.builds(lambda a, b: f"{a}:{b}", names, wild_text)))
def test_lookups_of_any_text_are_refused_or_not_found(tmp_path: Path, text: str) -> None:
    store = new_store(tmp_path)
    with lorry.init(store=str(store)) as run:
        before = snapshot(store)
        for lookup in (lorry.Api(store=str(store)).artifact, run.use_artifact):
            with pytest.raises((lorry.InvalidNameError, lorry.ArtifactNotFoundError)) as caught:
                lookup(text)
            if isinstance(caught.value, lorry.InvalidNameError):
                refused(caught.value, "artifact", "alias", "project", "entity")
        assert snapshot(store) == before
