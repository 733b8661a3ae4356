"""Metadata: a JSON object of finite values, checked before anything is written."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lorry.errors import InvalidMetadataError

_MAX_DEPTH = 64


def validate_metadata(metadata: object) -> dict[str, Any]:
    """A deep, plain copy of ``metadata`` if it is a JSON object of finite values; else an error
    naming the offending key."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadataError(f"metadata must be a dict, not {type(metadata).__name__}")
    return _plain(metadata, "metadata", 0)  # type: ignore[no-any-return]


_MIN_INT = -(1 << 63)  # what JSON tools read exactly: 64-bit integers, signed or not
_MAX_INT = (1 << 64) - 1


def _plain(value: object, where: str, depth: int) -> Any:
    """``value`` as plain JSON values (subclasses of str, int, float become the base type, tuples
    become lists), or an error naming ``where`` in the metadata the problem is."""
    if depth > _MAX_DEPTH:
        raise InvalidMetadataError(f"{where} is nested more than {_MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value, where)
    if isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            raise InvalidMetadataError(f"{where} is an integer that does not fit in 64 bits")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMetadataError(f"{where} is {value!r}: NaN and infinities are not valid JSON")
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMetadataError(f"{where} has a key {key!r} that is not a string")
            text = _text(key, f"{where} key {key!r}")
            out[text] = _plain(item, f"{where}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and not isinstance(value, (bytes, bytearray)):
        return _plain(item(), where, depth + 1)
    raise InvalidMetadataError(f"{where} holds a {type(value).__name__}, which is not JSON-serialisable")


def _text(value: str, where: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidMetadataError(f"{where} holds a lone surrogate, which UTF-8 cannot encode") from None
    return str.__str__(value)
