"""A manifest: the entries of one artifact version, and the digest that names the whole.

Entries are stored as JSON, sorted by path, so the same contents always serialise to the same bytes
and so hash to the same manifest digest, whatever order the files were added in.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from lorry.errors import CorruptRecordError, InvalidPathError, ValidationError
from lorry.model.digest import digest_bytes, is_content_digest
from lorry.model.secret import redact_uri

FORMAT = 1


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # the Unicode category Cc
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_PART_BYTES = 255
"""The longest file name most filesystems take: a longer part of an entry name could not be downloaded."""


def normalize_entry_path(path: object) -> str:
    """``'a//b/./c'`` → ``'a/b/c'``; absolute paths, ``..``, control characters, text that is not UTF-8
    and parts too long for a file name are refused."""
    if not isinstance(path, str):
        raise InvalidPathError(f"entry name must be a string, not {type(path).__name__}")
    if not path:
        raise InvalidPathError("entry name must not be empty")
    shown = _shown(path)
    if _CONTROL.search(path):
        raise InvalidPathError(f"entry name {shown} contains a control character")
    if _SURROGATE.search(path):
        raise InvalidPathError(f"entry name {shown} holds a lone surrogate, which UTF-8 cannot encode")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":" and path[0].isalpha()):
        raise InvalidPathError(f"entry name {shown} is absolute; entry names are relative to the artifact")
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPathError(f"entry name {shown} escapes the artifact root with '..'")
    if not parts:
        raise InvalidPathError(f"entry name {shown} names no file")
    if any(len(p.encode()) > MAX_PART_BYTES for p in parts):
        raise InvalidPathError(f"entry name {shown} has a part longer than {MAX_PART_BYTES} bytes")
    return posixpath.join(*parts)


def _shown(path: str) -> str:
    """``path`` for a message: quoted, and cut short if it is long."""
    return repr(path) if len(path) <= 100 else f"{path[:60]!r}...{path[-20:]!r}"


def folders_of(path: str) -> Iterator[str]:
    """The folders an entry name lies in, innermost first: ``'a/b/c'`` → ``'a/b'``, ``'a'``."""
    cut = path.rfind("/")
    while cut > 0:
        path = path[:cut]
        yield path
        cut = path.rfind("/")


def _file_or_folder(path: str, file: str) -> InvalidPathError:
    return InvalidPathError(
        f"entry name {_shown(path)} is inside {_shown(file)}, which is a file: "
        "one name cannot be both a file and a folder"
    )


class EntryLayout:
    """The entry names of an artifact being built and the folders they make: a name that would put a
    file where a folder is, or inside a file, is refused when it is added, as it could not be
    downloaded."""

    __slots__ = ("_folders", "_names")

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._folders: dict[str, int] = {}  # folder → how many names lie below it

    @classmethod
    def of(cls, names: Iterable[str]) -> EntryLayout:
        """The layout of names already known not to clash (a manifest's): built without checks."""
        layout = cls()
        layout._names = set(names)
        folders = layout._folders
        for name in layout._names:
            for folder in folders_of(name):
                folders[folder] = folders.get(folder, 0) + 1
        return layout

    def copy(self) -> EntryLayout:
        other = EntryLayout()
        other._names, other._folders = set(self._names), dict(self._folders)
        return other

    def check(self, path: str) -> None:
        """Refuse ``path`` if it clashes with a name already here (the same name is not a clash)."""
        if path in self._names:
            return
        if path in self._folders:
            inside = next(n for n in self._names if n.startswith(path + "/"))
            raise _file_or_folder(inside, path)
        for folder in folders_of(path):
            if folder in self._names:
                raise _file_or_folder(path, folder)

    def add(self, path: str) -> None:
        self.check(path)
        if path not in self._names:
            self._names.add(path)
            for folder in folders_of(path):
                self._folders[folder] = self._folders.get(folder, 0) + 1

    def discard(self, path: str) -> None:
        if path in self._names:
            self._names.remove(path)
            for folder in folders_of(path):
                self._folders[folder] -= 1
                if not self._folders[folder]:
                    del self._folders[folder]


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

    def __repr__(self) -> str:
        # A reference may be a signed URL: its repr shows the URI without the signature.
        ref = "None" if self.ref is None else repr(redact_uri(self.ref))
        return (
            f"Entry(path={self.path!r}, digest={self.digest!r}, size={self.size!r}, ref={ref}, "
            f"version_id={self.version_id!r})"
        )

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
        for required in ("path", "digest", "size"):
            if required not in raw:
                raise CorruptRecordError(f"manifest entry {str(raw)[:120]} has no {required!r}")
        try:
            path = normalize_entry_path(raw["path"])
        except InvalidPathError as exc:
            raise CorruptRecordError(f"manifest entry {str(raw)[:120]} is invalid: {exc}") from exc
        digest, size = raw["digest"], raw["size"]
        ref, version_id = raw.get("ref"), raw.get("version_id")
        if path != raw["path"]:
            raise CorruptRecordError(f"manifest entry path {_shown(raw['path'])} is not in normal form")
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

    MAX_BYTES: ClassVar[int] = 128 << 20
    """The largest manifest lorry writes or reads: about a million entries, whose parsing takes seconds
    and most of a GiB. A larger one on a store is refused after reading at most this much of it."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        by_path: dict[str, Entry] = {}
        for entry in entries:
            if entry.path in by_path and by_path[entry.path] != entry:
                raise InvalidPathError(f"two different contents under one entry name {entry.path!r}")
            by_path[entry.path] = entry
        for path in by_path:  # on disk a name is a file or a folder, not both
            for folder in folders_of(path):
                if folder in by_path:
                    raise _file_or_folder(path, folder)
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
            payload = orjson.dumps(doc)
            if len(payload) > self.MAX_BYTES:
                raise ValidationError(_too_large(len(self), f"{len(payload)} bytes", self.MAX_BYTES))
            self._payload = payload
        return self._payload

    @classmethod
    def check_size(cls, files: Iterable[tuple[str, int]], refs: Iterable[Entry]) -> None:
        """Refuse, before anything is stored, entries whose manifest would exceed ``MAX_BYTES``:
        ``files`` are (name, size) of files to store, ``refs`` the references. The estimate leaves out
        JSON escapes, so it never exceeds the real size (``to_bytes`` checks that)."""
        count, total = 0, _EMPTY_MANIFEST
        for name, size in files:
            count += 1
            total += _FILE_ENTRY + len(name.encode()) + len(str(size))
        for entry in refs:
            count += 1
            total += len(orjson.dumps(entry.to_json())) + 1
        total -= 1 if count else 0  # no comma after the last entry
        if total > cls.MAX_BYTES:
            raise ValidationError(_too_large(count, f"at least {total} bytes", cls.MAX_BYTES))

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
        entries: dict[str, Entry] = {}
        try:
            for raw in doc["entries"]:
                entry = Entry.from_json(raw)
                if entry.path in entries:
                    raise CorruptRecordError(f"entry {_shown(entry.path)} appears more than once")
                entries[entry.path] = entry
            return cls(entries.values())
        except (CorruptRecordError, InvalidPathError) as exc:
            raise CorruptRecordError(f"{name}: {exc}") from exc


# What one stored file's entry costs besides its name and the digits of its size, a comma included.
_FILE_ENTRY = len(orjson.dumps(Entry("", "blake3:" + "0" * 64, 0).to_json())) - len("0") + len(",")
_EMPTY_MANIFEST = len(orjson.dumps({"format": FORMAT, "entries": []}))


def _too_large(count: int, size: str, limit: int) -> str:
    return (
        f"{count} entries make a manifest of {size}, more than the {limit} bytes "
        "lorry stores in one version; split the files into several artifacts"
    )
