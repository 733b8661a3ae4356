"""Metadata filters and sorting for the collection page: ``loss < 0.3 and split = "train"``.

A filter is clauses joined by ``and``; each clause is ``key OP value``. ``key`` is a metadata key, with
``.`` reaching into nested objects (``eval.acc``) or a quoted string for keys holding spaces or dots;
``OP`` is one of ``= != < <= > >=`` (``==`` is ``=``); ``value`` is a JSON literal (``0.3``, ``"train"``,
``true``, ``null``) or a bare word, taken as a string. Order comparisons hold only between two numbers
or two strings: a version whose value has another type, or no value, does not match.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from lorry.errors import ValidationError

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>==|!=|<=|>=|=|<|>)|(?P<word>[^\s"=!<>]+))""",
)
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Clause:
    path: tuple[str, ...]
    op: str
    value: Any

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        found = lookup(metadata, self.path)
        if found is _MISSING:
            return self.op == "!="
        if self.op in ("=", "==", "!="):
            return _OPS[self.op](_comparable(found), _comparable(self.value))
        if _is_number(found) and _is_number(self.value):
            return _OPS[self.op](found, self.value)
        if isinstance(found, str) and isinstance(self.value, str):
            return _OPS[self.op](found, self.value)
        return False


@dataclass(frozen=True, slots=True)
class Filter:
    """What a person typed, parsed; an empty filter matches everything."""

    text: str
    clauses: tuple[Clause, ...]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return all(clause.matches(metadata) for clause in self.clauses)


def parse_filter(text: str) -> Filter:
    """``'loss < 0.3 and split = "train"'`` → a ``Filter``; ``ValidationError`` says what is wrong."""
    tokens = _tokens(text)
    clauses: list[Clause] = []
    while tokens:
        if clauses:
            joiner = tokens.pop(0)
            if joiner[0] != "word" or joiner[1].lower() != "and":
                raise ValidationError(f"expected 'and' between conditions, found {joiner[1]!r}")
        if len(tokens) < 3:
            shown = " ".join(t[1] for t in tokens) or "nothing"
            raise ValidationError(f"incomplete condition {shown!r}: write it as key < value")
        (key_kind, key), (op_kind, op), (value_kind, value) = tokens[:3]
        del tokens[:3]
        if key_kind == "op" or op_kind != "op" or value_kind == "op":
            raise ValidationError(f"condition {key} {op} {value} is not key OP value (OP: = != < <= > >=)")
        path = (_string(key),) if key_kind == "string" else tuple(key.split("."))
        clauses.append(Clause(path, op, _literal(value, value_kind)))
    return Filter(text.strip(), tuple(clauses))


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ValidationError(f"cannot read the filter at {text[position : position + 20]!r}")
        kind = match.lastgroup or "word"
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


def _string(token: str) -> str:
    value = orjson.loads(token)
    assert isinstance(value, str)
    return value


def _literal(token: str, kind: str) -> Any:
    if kind == "string":
        return _string(token)
    try:
        return orjson.loads(token)
    except orjson.JSONDecodeError:
        return token  # a bare word: a string


def lookup(metadata: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at ``path`` inside nested metadata, or ``_MISSING``; a whole key that holds dots wins
    over reaching into objects."""
    joined = ".".join(path)
    if joined in metadata:
        return metadata[joined]
    value: Any = metadata
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def missing(value: Any) -> bool:
    return value is _MISSING


def number_at(metadata: Mapping[str, Any], key: str) -> float | None:
    """The number under ``key`` (dots reach into objects), or None where it holds none."""
    value = lookup(metadata, key.split("."))
    return float(value) if _is_number(value) else None


def sort_key(metadata: Mapping[str, Any], path: Sequence[str]) -> tuple[int, Any]:
    """Numbers first (by value), then strings, then anything else (by its JSON), then missing values."""
    value = lookup(metadata, path)
    if _is_number(value):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    if value is _MISSING:
        return (3, "")
    return (2, orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparable(value: Any) -> Any:
    # 1 = 1.0 as numbers, but true is not 1
    return ("bool", value) if isinstance(value, bool) else value
