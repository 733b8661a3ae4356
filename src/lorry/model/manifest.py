"""A manifest: the entries of one artifact version, and the digest that names the whole.

Entries are stored as JSON, sorted by path, so the same contents always serialise to the same bytes
and so hash to the same manifest digest, whatever order the files were added in.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from lorry.errors import CorruptRecordError, InvalidPathError
from lorry.model.digest import digest_bytes, is_content_digest

FORMAT = 1


def normalize_entry_path(path: object) -> str:
    """``'a//b/./c'`` → ``'a/b/c'``; absolute paths, ``..`` and control characters are refused."""
    if not isinstance(path, str):
        raise InvalidPathError(f"entry name must be a string, not {type(path).__name__}")
    if not path:
        raise InvalidPathError("entry name must not be empty")
    if "\x00" in path or any(ord(c) < 32 for c in path):
        raise InvalidPathError(f"entry name {path!r} contains a control character")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":" and path[0].isalpha()):
        raise InvalidPathError(f"entry name {path!r} is absolute; entry names are relative to the artifact")
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPathError(f"entry name {path!r} escapes the artifact root with '..'")
    if not parts:
        raise InvalidPathError(f"entry name {path!r} names no file")
    return posixpath.join(*parts)


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of an artifact: its content digest and size, or a reference to a URI.

    ``digest`` is ``blake3:<hex>`` for stored content; for a reference it is whatever checksum the
    source offers (``etag:...``, ``md5:...``), or None when the reference was added without one.
    """

    path: str
    digest: str | None
    size: int | None
    ref: str | None = None
    version_id: str | None = None

    @property
    def is_reference(self) -> bool:
        return self.ref is not None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "digest": self.digest, "size": self.size}
        if self.ref is not None:
            out["ref"] = self.ref
        if self.version_id is not None:
            out["version_id"] = self.version_id
        return out

    @classmethod
    def from_json(cls, raw: object) -> Entry:
        if not isinstance(raw, dict):
            raise CorruptRecordError(f"manifest entry is not an object: {str(raw)[:80]}")
        try:
            path = normalize_entry_path(raw["path"])
            digest, size = raw["digest"], raw["size"]
            ref, version_id = raw.get("ref"), raw.get("version_id")
        except (KeyError, InvalidPathError) as exc:
            raise CorruptRecordError(f"manifest entry {str(raw)[:120]} is invalid: {exc}") from exc
        if path != raw["path"]:
            raise CorruptRecordError(f"manifest entry path {raw['path']!r} is not in normal form")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise CorruptRecordError(f"manifest entry {path!r} has an invalid size {size!r}")
        if digest is not None and not isinstance(digest, str):
            raise CorruptRecordError(f"manifest entry {path!r} has an invalid digest")
        if ref is None and (digest is None or not is_content_digest(digest) or size is None):
            raise CorruptRecordError(f"manifest entry {path!r} stores content without a valid digest")
        if ref is not None and not isinstance(ref, str):
            raise CorruptRecordError(f"manifest entry {path!r} has an invalid reference")
        if version_id is not None and not isinstance(version_id, str):
            raise CorruptRecordError(f"manifest entry {path!r} has an invalid version id")
        return cls(path=path, digest=digest, size=size, ref=ref, version_id=version_id)


class Manifest(Mapping[str, Entry]):
    """An immutable mapping from entry path to ``Entry``, with its canonical bytes and digest."""

    __slots__ = ("_digest", "_entries", "_payload")

    def __init__(self, entries: Iterable[Entry]) -> None:
        by_path: dict[str, Entry] = {}
        for entry in entries:
            if entry.path in by_path and by_path[entry.path] != entry:
                raise InvalidPathError(f"two different contents under one entry name {entry.path!r}")
            by_path[entry.path] = entry
        self._entries = dict(sorted(by_path.items()))
        self._payload: bytes | None = None
        self._digest: str | None = None

    def __getitem__(self, path: str) -> Entry:
        return self._entries[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return sum(e.size or 0 for e in self._entries.values())

    def to_bytes(self) -> bytes:
        if self._payload is None:
            doc = {"format": FORMAT, "entries": [e.to_json() for e in self._entries.values()]}
            self._payload = orjson.dumps(doc)
        return self._payload

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = digest_bytes(self.to_bytes())
        return self._digest

    @classmethod
    def from_bytes(cls, payload: bytes, *, name: str = "manifest") -> Manifest:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise CorruptRecordError(f"{name} is not valid JSON: {exc}") from exc
        if (
            not isinstance(doc, dict)
            or doc.get("format") != FORMAT
            or not isinstance(doc.get("entries"), list)
        ):
            raise CorruptRecordError(f"{name} is not a lorry manifest of format {FORMAT}")
        try:
            return cls(Entry.from_json(raw) for raw in doc["entries"])
        except InvalidPathError as exc:
            raise CorruptRecordError(f"{name}: {exc}") from exc
