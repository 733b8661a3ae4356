"""Property tests for the pure values: names, entry paths, metadata and manifests."""

from __future__ import annotations

import posixpath
from datetime import timedelta
from unittest.mock import patch

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lorry
from lorry.model import manifest as manifest_module
from lorry.model.manifest import _PLAIN_PATH, Entry, EntryLayout, Manifest, _normal_form, normalize_entry_path
from lorry.model.metadata import validate_metadata
from lorry.model.names import (
    parse_artifact_path,
    validate_alias,
    validate_artifact_name,
    validate_segment,
    validate_type,
)
from lorry.registry.records import VersionRecord
from tests import oracles
from tests.strategies import hostile_keys, hostile_metadata, json_values, names, wild_text


@given(st.one_of(st.text(max_size=140), wild_text, st.lists(names, min_size=1, max_size=4).map(" ".join)))
def test_artifact_names_are_accepted_exactly_when_valid(text: str) -> None:
    if oracles.valid_artifact_name(text):
        assert validate_artifact_name(text) == text
    else:
        with pytest.raises(lorry.InvalidNameError, match="artifact name"):
            validate_artifact_name(text)


@given(names, st.one_of(st.none(), names), st.one_of(st.none(), names), st.one_of(st.none(), names))
def test_artifact_paths_round_trip(
    name: str, project: str | None, entity: str | None, alias: str | None
) -> None:
    if entity is not None and project is None:
        project = "p"
    text = "/".join(p for p in (entity, project, name) if p is not None) + (f":{alias}" if alias else "")
    if any(p in (".", "..") for p in (entity, project, name)) or alias in (".", ".."):
        with pytest.raises(lorry.InvalidNameError):
            parse_artifact_path(text)
        return
    path = parse_artifact_path(text)
    assert (path.entity, path.project, path.name, path.alias) == (entity, project, name, alias or None)
    assert str(path) == text


@given(st.from_regex(r"v[0-9]{1,6}", fullmatch=True))
def test_version_aliases_are_reserved(alias: str) -> None:
    if alias.startswith("v0") and len(alias) > 2:  # 'v01' is not a version name: an ordinary alias
        assert validate_alias(alias) == alias
    else:
        with pytest.raises(lorry.InvalidNameError, match="reserved"):
            validate_alias(alias)
    assert validate_alias(alias, allow_version=True) == alias  # a lookup may name a version


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "c.txt", "\x00", "/"]), min_size=1, max_size=6))
def test_entry_paths_never_escape(parts: list[str]) -> None:
    text = "/".join(parts)
    expected = oracles.normal_entry_name(text)
    if expected is None:
        with pytest.raises(lorry.InvalidPathError):
            normalize_entry_path(text)
        return
    normal = normalize_entry_path(text)
    assert normal == expected
    assert not normal.startswith("/")
    assert ".." not in normal.split("/")
    assert posixpath.normpath(normal) == normal


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_metadata_is_accepted_exactly_when_finite_json(metadata: dict[str, object]) -> None:
    if oracles.storable_metadata(metadata):
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


def _no_file_is_a_folder(items: list[Entry]) -> bool:
    paths = {e.path for e in items}
    return not any(p.rsplit("/", n)[0] in paths for p in paths for n in range(1, p.count("/") + 1))


@given(st.lists(entries, max_size=20, unique_by=lambda e: e.path).filter(_no_file_is_a_folder))
def test_manifests_round_trip_and_ignore_order(items: list[Entry]) -> None:
    manifest = Manifest(items)
    again = Manifest.from_bytes(manifest.to_bytes())
    assert dict(again) == dict(manifest)
    assert Manifest(reversed(items)).digest == manifest.digest
    assert again.digest == manifest.digest


# -- arbitrary text: every input is accepted in a form that round-trips, or refused naming the problem --

PURE = settings(deadline=timedelta(seconds=2))  # pure functions, but the machine may be busy


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@PURE
@given(st.one_of(wild_text, names, st.sampled_from(["latest", "v0", "v12", "v01", "a" * 128, "a" * 129])))
def test_aliases_are_accepted_exactly_when_valid(text: str) -> None:
    if oracles.valid_alias(text):
        assert validate_alias(text) == text
    else:
        with pytest.raises(lorry.InvalidNameError, match="alias"):
            validate_alias(text)


valid_type_text = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/:"), max_size=40
)


@PURE
@given(st.one_of(wild_text, valid_type_text, st.sampled_from(["dataset", "  spaced type ", "Ünïcode ✓"])))
def test_types_are_accepted_exactly_when_storable(text: str) -> None:
    """Types are free text without '/', ':' or control characters: all such text is accepted as it
    is, and nothing else."""
    if oracles.valid_type(text):
        assert validate_type(text) == text
        assert orjson.loads(orjson.dumps(text)) == text
    else:
        with pytest.raises(lorry.InvalidNameError, match="type"):
            validate_type(text)


@PURE
@given(st.one_of(wild_text, st.sampled_from([".", "..", "a.b", ". .", "a b", "a  b"])))
def test_artifact_names_refuse_dot_segments(text: str) -> None:
    if text in (".", ".."):  # a name is one segment of a store key
        with pytest.raises(lorry.InvalidNameError, match="artifact name"):
            validate_artifact_name(text)
    elif oracles.valid_artifact_name(text):
        assert validate_artifact_name(text) == text


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("a//b/./c", "a/b/c"),
        ("a\\b", "a/b"),
        ("./a/", "a"),
        ("a/./b//", "a/b"),
        ("...", "..."),
        ("é/名", "é/名"),
        ("a b", "a b"),
    ],
)
def test_entry_names_are_stored_in_normal_form(given: str, stored: str) -> None:
    assert normalize_entry_path(given) == stored


@pytest.mark.parametrize(
    "given",
    ["", "/abs", "C:/x", "a/../b", "..", "./.", "a\x00b", "a\nb", "\ud800", "x" * 256, "a/" + "é" * 128],
)
def test_entry_names_that_are_refused(given: str) -> None:
    with pytest.raises(lorry.InvalidPathError, match="entry name"):
        normalize_entry_path(given)


@PURE
@given(wild_text)
def test_entry_names_are_normalised_or_refused(text: str) -> None:
    expected = oracles.normal_entry_name(text)
    if expected is None:
        with pytest.raises(lorry.InvalidPathError, match="entry name"):
            normalize_entry_path(text)
        return
    normal = normalize_entry_path(text)
    assert normal == expected
    assert posixpath.normpath(normal) == normal
    assert normalize_entry_path(normal) == normal


@PURE
@given(st.dictionaries(hostile_keys, hostile_metadata, max_size=4))
def test_any_metadata_is_stored_as_json_or_refused(metadata: dict[object, object]) -> None:
    if not oracles.storable_metadata(metadata):
        with pytest.raises(lorry.InvalidMetadataError, match=r"^metadata"):  # names where the problem is
            validate_metadata(metadata)
        return
    plain = validate_metadata(metadata)
    assert plain == oracles.plain(metadata)
    assert orjson.loads(orjson.dumps(plain)) == plain  # what is accepted is exactly what is read back
    assert validate_metadata(plain) == plain


class _Text(str):
    pass


class _Real(float):
    pass


class _Count(int):
    pass


def test_metadata_subclasses_become_plain_json_values() -> None:
    plain = validate_metadata({_Text("k"): [_Real(1.5), _Count(3), (1, 2)]})
    assert plain == {"k": [1.5, 3, [1, 2]]}
    assert orjson.loads(orjson.dumps(plain)) == plain
    assert type(next(iter(plain))) is str


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"n": 1 << 64}, r"metadata\['n'\] .*64"),
        ({"n": [-(1 << 63) - 1]}, r"metadata\['n'\]\[0\] .*64"),
        ({"s": "\ud800"}, r"metadata\['s'\] .*UTF-8"),
        ({"\udcff": 1}, "UTF-8"),
        ({"b": b"x"}, r"metadata\['b'\] holds a bytes"),
    ],
)
def test_metadata_json_cannot_hold_is_refused(metadata: dict[str, object], problem: str) -> None:
    with pytest.raises(lorry.InvalidMetadataError, match=problem):
        validate_metadata(metadata)


def test_metadata_limits_are_inclusive() -> None:
    plain = {"max": (1 << 64) - 1, "min": -(1 << 63)}
    assert validate_metadata(plain) == plain
    assert orjson.loads(orjson.dumps(plain)) == plain


@PURE
@given(st.lists(st.sampled_from(["a", "a/b", "a/b/c", "b", "a.txt", "a b", "ab"]), min_size=1, unique=True))
def test_a_manifest_never_holds_a_file_where_a_folder_is(paths: list[str]) -> None:
    items = [Entry(p, "blake3:" + "0" * 64, 1) for p in paths]
    clash = any(q.startswith(p + "/") for p in paths for q in paths)
    if clash:
        with pytest.raises(lorry.InvalidPathError, match="folder"):
            Manifest(items)
    else:
        assert sorted(Manifest(items)) == sorted(paths)


@PURE
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from(["a", "a/b", "a/b/c", "a/c", "a/b/d", "b/c", "b", "c"])),
        max_size=12,
    )
)
def test_a_draft_refuses_exactly_the_names_that_put_a_file_where_a_folder_is(
    steps: list[tuple[bool, str]],
) -> None:
    # Names added (True) and taken out (False) in any order; the layout refuses a name exactly when
    # one already there lies inside it or it lies inside one already there.
    layout, held = EntryLayout(), set[str]()
    for adding, name in steps:
        if not adding:
            layout.discard(name)
            held.discard(name)
            continue
        clash = name not in held and any(
            other.startswith(name + "/") or name.startswith(other + "/") for other in held
        )
        if clash:
            with pytest.raises(lorry.InvalidPathError, match="both a file and a folder"):
                layout.add(name)
        else:
            layout.add(name)
            held.add(name)


# -- hostile bytes: parsers answer CorruptRecordError naming the object, never a bare exception -------

raw_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
GOOD_ENTRY = {"path": "a/b.txt", "digest": "blake3:" + "1" * 64, "size": 3}
entry_fields = st.sampled_from(["path", "digest", "size", "ref", "version_id"])


@st.composite
def damaged_entries(draw: st.DrawFn) -> object:
    entry: dict[str, object] = dict(GOOD_ENTRY)
    for _ in range(draw(st.integers(0, 3))):
        field = draw(entry_fields)
        if draw(st.booleans()):
            entry.pop(field, None)
        else:
            entry[field] = draw(
                raw_json
                | st.sampled_from(["../x", "/abs", "a\\b", "a\x00b", "a//b", "", ".", "C:/x", -1, 1 << 63])
            )
    return draw(st.one_of(st.just(entry), raw_json))


GOOD_MANIFEST = orjson.dumps({"format": 1, "entries": [GOOD_ENTRY]})


@PURE
@given(
    st.one_of(
        st.just(GOOD_MANIFEST),
        st.binary(max_size=64),
        st.lists(damaged_entries(), max_size=4).map(lambda es: orjson.dumps({"format": 1, "entries": es})),
        raw_json.map(orjson.dumps),
    )
)
def test_manifest_parser_refuses_damage_by_name(payload: bytes) -> None:
    try:
        manifest = Manifest.from_bytes(payload, name="manifest manifests/blake3/ab/abc.json")
    except lorry.CorruptRecordError as error:
        assert "manifests/blake3/ab/abc.json" in str(error)
        assert payload != GOOD_MANIFEST, error  # an undamaged manifest is read
        return
    for path, entry in manifest.items():
        assert normalize_entry_path(path) == path and entry.path == path
        assert entry.size is None or entry.size >= 0


GOOD_RECORD = {
    "version": 0,
    "manifest": "blake3:" + "2" * 64,
    "type": "dataset",
    "size": 3,
    "file_count": 1,
    "created_at": "2026-01-01T00:00:00+00:00",
    "logged_by": "abc123",
    "description": None,
    "metadata": {},
}


@PURE
@given(
    st.dictionaries(
        st.sampled_from(sorted(GOOD_RECORD)),
        st.one_of(st.none(), raw_json, st.sampled_from(["../../x", "a/b", "", "v1", -5])),
        max_size=3,
    ),
    st.lists(st.sampled_from(sorted(GOOD_RECORD)), max_size=2),
)
def test_version_record_parser_refuses_damage_by_name(changes: dict[str, object], drop: list[str]) -> None:
    doc = {**GOOD_RECORD, **changes}
    for name in drop:
        doc.pop(name, None)
    key = "e/p/artifacts/n/versions/0.json"
    try:
        record = VersionRecord.from_bytes(orjson.dumps(doc), key)
    except lorry.CorruptRecordError as error:
        assert key in str(error)
        assert orjson.dumps(doc) != orjson.dumps(GOOD_RECORD), error  # an undamaged record is read
        # (compared as JSON: False == 0 in Python, but a record whose version is false is damaged)
        return
    if doc == GOOD_RECORD:
        assert (record.version, record.type, record.size) == (0, "dataset", 3)
        assert record.manifest == GOOD_RECORD["manifest"]
    assert record.size >= 0 and record.file_count >= 0 and record.version >= 0
    assert validate_type(record.type) == record.type
    assert record.logged_by is None or validate_segment(record.logged_by, "run id") == record.logged_by


# -- the manifest's columns and its reading a piece at a time -----------------------------------------


@PURE
@given(wild_text)
def test_names_taken_as_plain_at_once_are_in_normal_form(text: str) -> None:
    """The quick check of a stored name never lets through one that the full check would change."""
    if _PLAIN_PATH.fullmatch(text):
        assert _normal_form(text) == text


TRICKY = st.sampled_from(['a},{"path":"b', 'q"},{"path":', "x\\", "]}", '{"format":1,"entries":[', "é名"])
tricky_entries = st.builds(
    Entry,
    path=st.lists(st.one_of(names, TRICKY).filter(lambda n: n not in (".", "..")), min_size=1, max_size=3)
    .map("/".join)
    .map(normalize_entry_path),
    digest=st.binary(min_size=32, max_size=32).map(lambda b: "blake3:" + b.hex()),
    size=st.integers(min_value=0, max_value=(1 << 64) - 1),
)
references = st.builds(
    Entry,
    path=names.filter(lambda n: n not in (".", "..")).map(lambda n: f"refs/{n}"),
    digest=st.one_of(st.none(), st.just("etag:abc")),
    size=st.one_of(st.none(), st.integers(0, 1 << 40)),
    ref=st.just('s3://bucket/key},{"path":"x"'),
    version_id=st.one_of(st.none(), st.just("v1")),
)


@PURE
@given(
    st.lists(st.one_of(tricky_entries, references), max_size=30, unique_by=lambda e: e.path).filter(
        _no_file_is_a_folder
    ),
    st.integers(min_value=1, max_value=300),
)
def test_a_manifest_read_in_pieces_is_the_manifest_read_whole(items: list[Entry], piece: int) -> None:
    """Cut into pieces as small as one entry, names and references that hold the text between two
    entries (``},{"path":``) included, a manifest reads back exactly; and the same document laid out
    otherwise (read whole) gives the same entries."""
    manifest = Manifest(items)
    assert sorted(manifest.values(), key=lambda e: e.path) == sorted(items, key=lambda e: e.path)
    with patch.object(manifest_module, "_PIECE_BYTES", piece):
        again = Manifest.from_bytes(manifest.to_bytes())
    assert list(again.items()) == list(manifest.items()) and again.digest == manifest.digest
    pretty = orjson.dumps(orjson.loads(manifest.to_bytes()), option=orjson.OPT_INDENT_2)
    assert list(Manifest.from_bytes(pretty).items()) == list(manifest.items())
    assert manifest.size == sum(e.size or 0 for e in items)


def test_a_cut_between_nested_objects_is_not_taken_for_one_between_entries() -> None:
    """Objects nested in an entry may also meet at ``},{"path":``: such a document is read whole, and
    gives what any JSON reader gives, not entries made from the pieces."""
    digest = "blake3:" + "1" * 64
    inner = [{"q": 1}, {"path": "b", "digest": digest, "size": 2}]
    doc = {"format": 1, "entries": [{"path": "a", "digest": digest, "size": 1, "x": inner}]}
    with patch.object(manifest_module, "_PIECE_BYTES", 1):
        manifest = Manifest.from_bytes(orjson.dumps(doc))
    assert list(manifest) == ["a"] and manifest["a"].size == 1


def test_a_folder_of_a_manifest_is_cut_out_of_its_rows() -> None:
    digest = "blake3:" + "2" * 64
    paths = ["a", "b", "b-c", "b.txt", "b/x", "b/y/z", "ba", "c"]
    manifest = Manifest(Entry(p, digest, 1) for p in paths if p != "b")
    assert list(manifest.below("b")) == ["b/x", "b/y/z"]
    assert list(manifest.below("b/y/z")) == ["b/y/z"]
    assert list(manifest.below("a")) == ["a"] and list(manifest.below("nothing")) == []
    assert "b/x" in manifest and "b" not in manifest and manifest.get("b") is None
