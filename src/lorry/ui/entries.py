"""A version's entries for browsing: parsed as JSON once, each entry checked only when it is shown.

``Manifest.from_bytes`` checks every entry up front, which for 100,000 files takes about a second;
a page shows a hundred. Here the paths are read in one pass (so a folder can be listed and a file
found by name) and an entry becomes an ``Entry``, with every check ``Manifest`` makes of it, only when
a page shows it or a download asks for it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from typing import Any

import orjson

from lorry.errors import CorruptRecordError
from lorry.model.manifest import FORMAT, Entry


class EntryTable:
    """The entries of one manifest, sorted by path."""

    __slots__ = ("_name", "_paths", "_raw")

    def __init__(self, payload: bytes, name: str) -> None:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise CorruptRecordError(f"{name} is not valid JSON: {exc}") from exc
        raw = doc.get("entries") if isinstance(doc, dict) and doc.get("format") == FORMAT else None
        if not isinstance(raw, list) or not all(_has_path(e) for e in raw):
            raise CorruptRecordError(f"{name} is not a lorry manifest of format {FORMAT}")
        paths = [e["path"] for e in raw]
        if any(a >= b for a, b in itertools.pairwise(paths)):  # lorry writes them sorted
            order = sorted(range(len(raw)), key=paths.__getitem__)
            raw, paths = [raw[i] for i in order], [paths[i] for i in order]
        self._name = name
        self._raw: list[dict[str, Any]] = raw
        self._paths = paths

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def paths(self) -> list[str]:
        return self._paths

    def size_at(self, index: int) -> int:
        size = self._raw[index].get("size")
        return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0

    def content_at(self, index: int) -> tuple[Any, Any, Any]:
        """What makes two entries of one path the same file: digest, size and reference."""
        raw = self._raw[index]
        return (raw.get("digest"), raw.get("size"), raw.get("ref"))

    def entry(self, index: int) -> Entry:
        """Entry ``index``, checked as ``Manifest`` checks it: ``CorruptRecordError`` if it is bad."""
        try:
            return Entry.from_json(self._raw[index])
        except CorruptRecordError as exc:
            raise CorruptRecordError(f"{self._name}: {exc}") from exc

    def find(self, path: str) -> Entry | None:
        index = bisect.bisect_left(self._paths, path)
        if index < len(self._paths) and self._paths[index] == path:
            return self.entry(index)
        return None

    def index(self) -> dict[str, int]:
        return {path: i for i, path in enumerate(self._paths)}

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)


def _has_path(raw: object) -> bool:
    return isinstance(raw, dict) and isinstance(raw.get("path"), str)
