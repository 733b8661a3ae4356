"""References: entries that point at a URI instead of holding content.

A reference records what identifies the source's content (a digest, an ETag, a version id), never the
content itself. Downloading fetches from the source and checks that identity again, so a source that
changed is an error naming the entry.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lorry.errors import IntegrityError, LocalFileError, ValidationError
from lorry.model.manifest import Entry, normalize_entry_path
from lorry.transfer.engine import Engine
from lorry.transfer.files import copy_hashing, hash_file, local_error, temp_beside

DEFAULT_MAX_OBJECTS = 10_000


def resolve(uri: str, name: str | None, checksum: bool, max_objects: int | None) -> list[Entry]:
    """The entries a reference to ``uri`` stands for (one, or one per object under a prefix)."""
    scheme = urlsplit(uri).scheme
    if scheme == "file":
        return _resolve_file(uri, name, checksum, max_objects or DEFAULT_MAX_OBJECTS)
    raise ValidationError(f"cannot add a reference to {uri!r}: unsupported scheme {scheme or '(none)'!r}")


async def fetch(engine: Engine, entry: Entry, target: Path) -> None:
    assert entry.ref is not None
    scheme = urlsplit(entry.ref).scheme
    if scheme == "file":
        await engine.in_thread(_fetch_file, entry, target)
        return
    raise ValidationError(f"cannot download reference {entry.ref!r}: unsupported scheme {scheme!r}")


def _file_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ValidationError(f"file reference {uri!r} names a remote host")
    return Path(unquote(parts.path))


def _resolve_file(uri: str, name: str | None, checksum: bool, max_objects: int) -> list[Entry]:
    path = _file_path(uri)
    if path.is_file():
        entry_name = normalize_entry_path(name or path.name)
        return [_file_entry(path, entry_name, uri, checksum)]
    if not path.is_dir():
        raise LocalFileError(f"reference {uri!r} names nothing: {path} does not exist")
    found: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for filename in sorted(filenames):
            full = Path(dirpath, filename)
            relative = full.relative_to(path).as_posix()
            if len(found) >= max_objects:
                raise ValidationError(
                    f"reference {uri!r} holds more than max_objects={max_objects} files; "
                    "raise max_objects to add them all"
                )
            entry_name = normalize_entry_path(posixpath.join(name, relative) if name else relative)
            found.append(_file_entry(full, entry_name, full.as_uri(), checksum))
    return found


def _file_entry(path: Path, entry_name: str, uri: str, checksum: bool) -> Entry:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise local_error(exc, f"cannot read the reference {uri}") from exc
    digest = hash_file(path) if checksum else None
    return Entry(path=entry_name, digest=digest, size=size, ref=uri)


def _fetch_file(entry: Entry, target: Path) -> None:
    assert entry.ref is not None
    source = _file_path(entry.ref)
    temp = temp_beside(target)
    try:
        actual = copy_hashing(source, temp)
    except FileNotFoundError as exc:
        raise IntegrityError(f"reference {entry.ref} of entry {entry.path!r} no longer exists") from exc
    except OSError as exc:
        raise local_error(exc, f"cannot fetch the reference {entry.ref}") from exc
    if entry.digest is not None and actual != entry.digest:
        temp.unlink()
        raise IntegrityError(f"reference {entry.ref} of entry {entry.path!r} changed since it was logged")
    os.replace(temp, target)
