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


def _plain(value: object, where: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise InvalidMetadataError(f"{where} is nested more than {_MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMetadataError(f"{where} is {value!r}: NaN and infinities are not valid JSON")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMetadataError(f"{where} has a key {key!r} that is not a string")
            out[key] = _plain(item, f"{where}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and not isinstance(value, (bytes, bytearray)):
        return _plain(item(), where, depth)
    raise InvalidMetadataError(f"{where} holds a {type(value).__name__}, which is not JSON-serialisable")
