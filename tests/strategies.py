"""Hypothesis strategies shared by the property tests: well-formed values, and text and metadata of
every shape a caller could pass."""

from __future__ import annotations

from hypothesis import strategies as st

NAME_CHARS = st.sampled_from("abcXYZ019_-.")
names = st.text(NAME_CHARS, min_size=1, max_size=40)
"""Letters, digits, '_', '-' and '.': mostly valid names (but '.' and '..' among them)."""

SPECIAL = st.sampled_from(["/", "\\", ".", " ", ":", "\x00", "\t", "\n", "\x7f", "\x85", "\ud800", "é", "名"])
any_char = st.characters(exclude_categories=())
"""Any code point, lone surrogates included (UTF-8 cannot encode them, so JSON cannot hold them)."""

wild_text = st.one_of(
    st.text(max_size=40),
    st.text(st.one_of(any_char, SPECIAL), max_size=40),
    st.lists(st.one_of(names, SPECIAL, st.just("..")), max_size=8).map("".join),
    st.text(st.sampled_from("ab/."), min_size=200, max_size=400),
)
"""Text of every kind: unicode, control characters, '/', '..', spaces, surrogates, very long."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
"""JSON-shaped values, with NaN, infinities and integers of any size among them."""

hostile_values = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(),
    st.binary(max_size=4),
    st.text(st.one_of(any_char, SPECIAL), max_size=6),
    st.sets(st.integers(), max_size=2),
    st.tuples(st.integers(), st.text(max_size=3)),
)
hostile_keys = st.one_of(
    st.text(st.one_of(any_char, SPECIAL), max_size=6), st.integers(), st.none(), st.binary()
)
hostile_metadata = st.recursive(
    hostile_values | json_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_keys, inner, max_size=3),
    max_leaves=12,
)
"""Anything a caller might put in metadata: bytes, sets, tuples, non-string keys, huge integers."""

storable_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
"""JSON values that lorry stores: finite floats, 64-bit integers, text that is valid UTF-8."""
