"""Property tests for the pure values: names, entry paths, metadata and manifests."""

from __future__ import annotations

import math
import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lorry
from lorry.model.manifest import Entry, Manifest, normalize_entry_path
from lorry.model.metadata import validate_metadata
from lorry.model.names import parse_artifact_path, validate_alias, validate_artifact_name

NAME_CHARS = st.sampled_from("abcXYZ019_-.")
names = st.text(NAME_CHARS, min_size=1, max_size=40)


@given(st.text(max_size=140))
def test_artifact_names_are_accepted_exactly_when_valid(text: str) -> None:
    try:
        assert validate_artifact_name(text) == text
    except lorry.InvalidNameError as error:
        assert str(error)  # rejected with a message
        return
    assert 1 <= len(text) <= 128
    assert all(c.isascii() and (c.isalnum() or c in "_-. ") for c in text)


@given(names, st.one_of(st.none(), names), st.one_of(st.none(), names), st.one_of(st.none(), names))
def test_artifact_paths_round_trip(
    name: str, project: str | None, entity: str | None, alias: str | None
) -> None:
    if entity is not None and project is None:
        project = "p"
    text = "/".join(p for p in (entity, project, name) if p is not None) + (f":{alias}" if alias else "")
    if any(p in (".", "..") for p in (entity, project)) or alias in (".", ".."):
        with pytest.raises(lorry.InvalidNameError):
            parse_artifact_path(text)
        return
    path = parse_artifact_path(text)
    assert (path.entity, path.project, path.name, path.alias) == (entity, project, name, alias or None)
    assert str(path) == text


@given(st.from_regex(r"v[0-9]{1,6}", fullmatch=True))
def test_version_aliases_are_reserved(alias: str) -> None:
    if alias.startswith("v0") and len(alias) > 2:
        return  # 'v01' is not a version name, so it is an ordinary alias
    with pytest.raises(lorry.InvalidNameError, match="reserved"):
        validate_alias(alias)


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "c.txt", "\x00", "/"]), min_size=1, max_size=6))
def test_entry_paths_never_escape(parts: list[str]) -> None:
    text = "/".join(parts)
    try:
        normal = normalize_entry_path(text)
    except lorry.InvalidPathError:
        return
    assert not normal.startswith("/")
    assert ".." not in normal.split("/")
    assert posixpath.normpath(normal) == normal
    assert normalize_entry_path(normal) == normal


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_metadata_is_accepted_exactly_when_finite_json(metadata: dict[str, object]) -> None:
    if _finite(metadata):
        assert validate_metadata(metadata) == metadata
    else:
        with pytest.raises(lorry.InvalidMetadataError):
            validate_metadata(metadata)


entries = st.builds(
    Entry,
    path=st.lists(names.filter(lambda n: n not in (".", "..")), min_size=1, max_size=3).map("/".join),
    digest=st.binary(min_size=32, max_size=32).map(lambda b: "blake3:" + b.hex()),
    size=st.integers(min_value=0, max_value=1 << 40),
)


@given(st.lists(entries, max_size=20, unique_by=lambda e: e.path))
def test_manifests_round_trip_and_ignore_order(items: list[Entry]) -> None:
    manifest = Manifest(items)
    again = Manifest.from_bytes(manifest.to_bytes())
    assert dict(again) == dict(manifest)
    assert Manifest(reversed(items)).digest == manifest.digest
    assert again.digest == manifest.digest
