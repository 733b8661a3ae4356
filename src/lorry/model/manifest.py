"""A manifest: the entries of one artifact version, and the digest that names the whole.

Entries are stored as JSON, sorted by path, so the same contents always serialise to the same bytes
and so hash to the same manifest digest, whatever order the files were added in.
"""

from __future__ import annotations

import bisect
import io
import posixpath
import re
from array import array
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from lorry.errors import CorruptRecordError, InvalidPathError, ValidationError
from lorry.model.digest import format_digest, hex_part, is_content_digest, new_hasher
from lorry.model.secret import redact_uri

FORMAT = 1


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # the Unicode category Cc
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_PART_BYTES = 255
"""The longest file name most filesystems take: a longer part of an entry name could not be downloaded."""
_PLAIN_PART = r"(?!\.\.?(?:/|\Z))[^\x00-\x1f\x7f-\x9f\ud800-\udfff/\\]{1,63}"  # 63 characters: <= 252 bytes
_PLAIN_PATH = re.compile(rf"(?!.:){_PLAIN_PART}(?:/{_PLAIN_PART})*")
"""Names that ``normalize_entry_path`` leaves as they are, recognised in one step (others take the
long way, which decides)."""


def normalize_entry_path(path: object) -> str:
    """``'a//b/./c'`` → ``'a/b/c'``; absolute paths, ``..``, control characters, text that is not UTF-8
    and parts too long for a file name are refused."""
    if not isinstance(path, str):
        raise InvalidPathError(f"entry name must be a string, not {type(path).__name__}")
    if _PLAIN_PATH.fullmatch(path):  # most names, seen in one step (a folder walk adds a million)
        return path
    return _normal_form(path)


def _normal_form(path: str) -> str:
    """``normalize_entry_path`` the long way, which decides every name."""
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
        if path[: max(0, path.rfind("/"))] in self._folders:
            return  # its folder is one already: no folder above it is a file (a walk's usual case)
        for folder in folders_of(path):
            if folder in self._names:
                raise _file_or_folder(path, folder)

    def add(self, path: str) -> None:
        self.check(path)
        if path not in self._names:
            self._names.add(path)
            folders = self._folders
            for folder in folders_of(path):
                folders[folder] = folders.get(folder, 0) + 1

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
    """An immutable mapping from entry path to ``Entry``, with its canonical bytes and digest.

    A manifest may hold a million entries, so it is kept in columns, not as an object per entry: the
    sorted paths, the stored files' digests as 32 raw bytes each and their sizes in an array, and only
    the entries that are not plain stored files (references) as ``Entry`` objects. An ``Entry`` is made
    when one is asked for. About 150 bytes per entry instead of a kilobyte.
    """

    __slots__ = ("_digest", "_digests", "_others", "_paths", "_sizes")

    MAX_BYTES: ClassVar[int] = 128 << 20
    """The largest manifest lorry writes or reads: about a million entries. A larger one on a store is
    refused after reading at most this much of it."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        rows = Rows()
        for entry in entries:
            rows.add(entry)
        self._take(rows.sorted(duplicates_allowed=True))

    @classmethod
    def of_rows(cls, rows: Rows) -> Manifest:
        """The manifest of ``rows`` (in any order; the same entry twice is one entry)."""
        manifest = cls.__new__(cls)
        manifest._take(rows.sorted(duplicates_allowed=True))
        return manifest

    def _take(self, rows: Rows) -> None:
        self._paths, self._digests, self._sizes, self._others = rows.columns()
        self._digest: str | None = None

    def _row(self, path: str) -> int:
        """The row of ``path``, or -1."""
        row = bisect.bisect_left(self._paths, path)
        return row if row < len(self._paths) and self._paths[row] == path else -1

    def _entry(self, row: int) -> Entry:
        return _entry_at(self._paths, self._digests, self._sizes, self._others, row)

    def __getitem__(self, path: str) -> Entry:
        row = self._row(path) if isinstance(path, str) else -1
        if row < 0:
            raise KeyError(path)
        return self._entry(row)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._row(path) >= 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def values(self) -> ValuesView[Entry]:
        return _Values(self)

    def items(self) -> ItemsView[str, Entry]:
        return _Items(self)

    @property
    def entries(self) -> Manifest:
        """The manifest itself: the original's ``manifest.entries`` is a dict of path to entry, and a
        manifest is that mapping already."""
        return self

    def _entries(self) -> Iterator[Entry]:
        """Every entry, in path order, each made as it is reached."""
        return map(self._entry, range(len(self._paths)))

    def below(self, folder: str) -> Manifest:
        """The entry ``folder`` and the entries inside it (``folder/...``): the paths are sorted, so
        they are one or two runs of rows, cut out without looking at the others."""
        paths = self._paths
        inside = (bisect.bisect_left(paths, folder + "/"), bisect.bisect_left(paths, folder + "0"))
        at = self._row(folder)
        spans = [(at, at + 1)] if at >= 0 else []
        spans.append(inside)  # '0' follows '/': everything between starts with folder + "/"
        rows = Rows()
        for start, stop in spans:
            for row in range(start, stop):
                if row in self._others:
                    rows.add(self._others[row])
                else:
                    rows.add_raw(
                        paths[row], self._digests[row * RAW_DIGEST : (row + 1) * RAW_DIGEST], self._sizes[row]
                    )
        return Manifest.of_rows(rows)

    @property
    def size(self) -> int:
        return sum(self._sizes) + sum(e.size or 0 for e in self._others.values())

    def chunks(self) -> Iterator[bytes]:
        """The canonical bytes in pieces of a few thousand entries: joined, they are ``to_bytes()``
        (what ``orjson`` makes of the whole document), without all of it in memory at once."""
        yield _HEAD
        for start in range(0, len(self._paths), _ROWS_PER_CHUNK):
            rows = range(start, min(start + _ROWS_PER_CHUNK, len(self._paths)))
            piece = orjson.dumps([self._entry(row).to_json() for row in rows])[1:-1]
            yield piece if start == 0 else b"," + piece
        yield _TAIL

    def to_bytes(self) -> bytes:
        # Not b"".join(...): it would hold every piece and the whole at once, twice the bytes. The
        # digest is taken on the way, so storing a manifest (its digest, then its bytes) makes them once.
        buffer = io.BytesIO()
        hasher = new_hasher() if self._digest is None else None
        for chunk in self.chunks():
            buffer.write(chunk)
            if hasher is not None:
                hasher.update(chunk)
        if hasher is not None:
            self._digest = format_digest(hasher.hexdigest())
        payload = buffer.getvalue()  # the buffer's own bytes, not a copy
        if len(payload) > self.MAX_BYTES:
            raise ValidationError(_too_large(len(self), f"{len(payload)} bytes", self.MAX_BYTES))
        return payload

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
            hasher = new_hasher()
            for chunk in self.chunks():
                hasher.update(chunk)
            self._digest = format_digest(hasher.hexdigest())
        return self._digest

    @classmethod
    def from_bytes(cls, payload: bytes, *, name: str = "manifest") -> Manifest:
        try:
            try:
                rows = _rows_of(_compact_entries(payload))
            except _NotCompact:  # some other layout of the JSON: parsed whole, as any JSON reader would
                rows = _rows_of(_entries_of_document(payload, name))
            manifest = cls.__new__(cls)
            manifest._take(rows.sorted(duplicates_allowed=False))
            return manifest
        except (CorruptRecordError, InvalidPathError) as exc:
            if str(exc).startswith(name):
                raise
            raise CorruptRecordError(f"{name}: {exc}") from exc


class _Values(ValuesView[Entry]):
    _mapping: Manifest

    def __iter__(self) -> Iterator[Entry]:
        return self._mapping._entries()


class _Items(ItemsView[str, Entry]):
    _mapping: Manifest

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        return ((entry.path, entry) for entry in self._mapping._entries())


RAW_DIGEST = 32
"""Bytes of a blake3 digest: a stored file's digest is kept as these, not as 71 characters of text."""


class Rows:
    """Entries gathered column by column, for a ``Manifest``: a stored file costs a path, 32 bytes of
    digest and 8 of size, not an object."""

    __slots__ = ("_digests", "_others", "_paths", "_sizes")

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._digests = bytearray()
        self._sizes = array("Q")
        self._others: dict[int, Entry] = {}

    def __len__(self) -> int:
        return len(self._paths)

    def add_file(self, path: str, digest: str, size: int) -> None:
        """A stored file: ``digest`` is ``blake3:<hex>``."""
        self.add_raw(path, bytes.fromhex(hex_part(digest)), size)

    def add_raw(self, path: str, digest: bytes, size: int) -> None:
        """A stored file whose digest is given as its raw bytes."""
        self._digests += digest
        self._sizes.append(size)
        self._paths.append(path)

    def add(self, entry: Entry) -> None:
        if (
            entry.ref is None
            and entry.version_id is None
            and entry.size is not None
            and entry.digest is not None
            and is_content_digest(entry.digest)
        ):
            self.add_file(entry.path, entry.digest, entry.size)
            return
        self._others[len(self._paths)] = entry
        self._digests += bytes(RAW_DIGEST)
        self._sizes.append(0)
        self._paths.append(entry.path)

    def columns(self) -> tuple[list[str], bytes, array[int], dict[int, Entry]]:
        return self._paths, bytes(self._digests), self._sizes, self._others

    def sorted(self, *, duplicates_allowed: bool) -> Rows:
        """These rows in path order, each path once; refused if a path holds two contents (or, unless
        ``duplicates_allowed``, appears twice), or if a name is both a file and a folder."""
        paths = self._paths
        order = sorted(range(len(paths)), key=paths.__getitem__)
        out = Rows()
        previous = -1
        for row in order:
            if previous >= 0 and paths[row] == paths[previous]:
                if not duplicates_allowed:
                    raise CorruptRecordError(f"entry {_shown(paths[row])} appears more than once")
                if self._entry(row) != self._entry(previous):
                    raise InvalidPathError(f"two different contents under one entry name {paths[row]!r}")
                continue
            previous = row
            if row in self._others:
                out._others[len(out._paths)] = self._others[row]
            start = row * RAW_DIGEST
            out._digests += self._digests[start : start + RAW_DIGEST]
            out._sizes.append(self._sizes[row])
            out._paths.append(paths[row])
        out._check_folders()
        return out

    def _entry(self, row: int) -> Entry:
        return _entry_at(self._paths, self._digests, self._sizes, self._others, row)

    def _check_folders(self) -> None:
        """On disk a name is a file or a folder, not both (the paths are sorted)."""
        paths = self._paths
        folders: set[str] = set()
        parent = None
        for path in paths:
            cut = path.rfind("/")
            if cut > 0 and path[:cut] != parent:
                parent = path[:cut]
                folders.add(parent)
                folders.update(folders_of(parent))
        for folder in sorted(folders):
            row = bisect.bisect_left(paths, folder)
            if row < len(paths) and paths[row] == folder:
                inside = paths[bisect.bisect_left(paths, folder + "/")]
                raise _file_or_folder(inside, folder)


# The document as orjson writes it: no spaces, the keys in this order. ``{"`` never occurs inside a
# JSON string (a quote there is escaped), so ``},{"path":`` occurs only between two entries, or between
# two objects nested deeper; a piece cut at a nested one leaves a bracket open and does not parse.
_HEAD = b'{"format":%d,"entries":[' % FORMAT
_TAIL = b"]}"
_BETWEEN = b'},{"path":'
_PIECE_BYTES = 1 << 20
_ROWS_PER_CHUNK = 4096


def _entry_at(
    paths: list[str], digests: bytes | bytearray, sizes: array[int], others: dict[int, Entry], row: int
) -> Entry:
    """Row ``row`` of the columns as an ``Entry`` (references are kept as their own objects)."""
    other = others.get(row)
    if other is not None:
        return other
    start = row * RAW_DIGEST
    digest = format_digest(digests[start : start + RAW_DIGEST].hex())
    return Entry(paths[row], digest, sizes[row])


class _NotCompact(Exception):
    """The document is not in the compact layout lorry writes."""


def _compact_entries(payload: bytes) -> Iterator[object]:
    """The entries of a compact document, parsed a megabyte at a time: never the whole document as
    Python objects at once."""
    if not (payload.startswith(_HEAD) and payload.endswith(_TAIL)):
        raise _NotCompact
    start, end = len(_HEAD), len(payload) - len(_TAIL)
    while start < end:
        cut = payload.find(_BETWEEN, start + _PIECE_BYTES, end)
        stop = end if cut < 0 else cut + 1
        try:
            piece = orjson.loads(b"[" + payload[start:stop] + b"]")
        except orjson.JSONDecodeError:
            raise _NotCompact from None
        yield from piece
        start = stop + 1


def _entries_of_document(payload: bytes, name: str) -> list[object]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("entries"), list):
        raise CorruptRecordError(f"{name} is not a lorry manifest of format {FORMAT}")
    entries: list[object] = doc["entries"]
    return entries


def _rows_of(raws: Iterable[object]) -> Rows:
    rows = Rows()
    for raw in raws:
        if (
            type(raw) is dict
            and len(raw) == 3
            and type(raw.get("path")) is str
            and type(raw.get("size")) is int
            and type(raw.get("digest")) is str
            and _PLAIN_PATH.fullmatch(raw["path"])
            and is_content_digest(raw["digest"])
            and raw["size"] >= 0
        ):  # a stored file whose name is plainly in normal form: the common case, checked quickly
            rows.add_file(raw["path"], raw["digest"], raw["size"])
        else:
            rows.add(Entry.from_json(raw))
    return rows


# What one stored file's entry costs besides its name and the digits of its size, a comma included.
_FILE_ENTRY = len(orjson.dumps(Entry("", "blake3:" + "0" * 64, 0).to_json())) - len("0") + len(",")
_EMPTY_MANIFEST = len(orjson.dumps({"format": FORMAT, "entries": []}))


def _too_large(count: int, size: str, limit: int) -> str:
    return (
        f"{count} entries make a manifest of {size}, more than the {limit} bytes "
        "lorry stores in one version; split the files into several artifacts"
    )
