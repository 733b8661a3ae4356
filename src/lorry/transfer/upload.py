"""Storing an artifact's files as content-addressed blobs.

Each file is hashed once; a blob the store already holds is not sent again. What is stored is
checked against the digest as it is written, so the store never holds bytes that do not match their
name, and a source that changes on the way fails its version loudly (``SourceChangedError``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lorry.errors import ConflictError, ObjectNotFoundError, SourceChangedError
from lorry.model.digest import digest_bytes
from lorry.model.manifest import Entry
from lorry.registry.registry import blob_key
from lorry.storage.base import CREATE, Store
from lorry.storage.local import LocalStore
from lorry.transfer.engine import Counters, Engine, gather_all
from lorry.transfer.files import FileStamp, check_unchanged, copy_hashing, hash_file, local_error


@dataclass(frozen=True, slots=True)
class FileSource:
    """A local file waiting to be stored as the entry ``path``.

    ``owned`` marks a file lorry made itself (a ``policy="mutable"`` snapshot or a ``new_file``): no
    one else writes to it, so it can be linked into a local store instead of copied.
    """

    path: str
    source: Path
    stamp: FileStamp
    owned: bool


async def store_files(
    engine: Engine, store: Store, files: Sequence[FileSource], counters: Counters
) -> list[Entry]:
    """Store every file's content; return their entries, in the order given."""
    counters.files_total += len(files)
    counters.bytes_total += sum(f.stamp.size for f in files)
    results: list[Entry | None] = [None] * len(files)
    todo = iter(enumerate(files))

    async def worker() -> None:
        for index, item in todo:
            results[index] = await _store_one(engine, store, item)
            counters.files_done += 1
            counters.bytes_done += item.stamp.size

    workers = min(len(files), engine.settings.max_open_files)
    await gather_all(worker() for _ in range(workers))
    return [r for r in results if r is not None]


async def _store_one(engine: Engine, store: Store, item: FileSource) -> Entry:
    if isinstance(store, LocalStore):
        digest = await engine.in_thread(_store_local, store, item)
    else:
        digest = await _store_remote(engine, store, item)
    return Entry(path=item.path, digest=digest, size=item.stamp.size)


def _store_local(store: LocalStore, item: FileSource) -> str:
    check_unchanged(item.source, item.stamp, item.path)
    digest = hash_file(item.source)
    key = blob_key(digest)
    if store.path_of(key).is_file():
        check_unchanged(item.source, item.stamp, item.path)
        return digest
    temp = store.temp_path()
    try:
        if item.owned:
            try:
                os.link(item.source, temp)
            except OSError:  # another filesystem, or links not allowed: copy instead
                if copy_hashing(item.source, temp) != digest:
                    raise SourceChangedError(f"staged copy of {item.path!r} changed") from None
        elif copy_hashing(item.source, temp) != digest:
            raise SourceChangedError(
                f"{item.source} (entry {item.path!r}) changed while it was being logged; "
                "the version that holds it was not committed"
            )
        check_unchanged(item.source, item.stamp, item.path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise local_error(exc, f"cannot store {item.source} in {store.root}") from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    with contextlib.suppress(ConflictError):  # stored meanwhile by another writer: same bytes
        store.commit_file(temp, key, CREATE)
    return digest


async def _store_remote(engine: Engine, store: Store, item: FileSource) -> str:
    digest = await engine.in_thread(_hash_checked, item)
    key = blob_key(digest)
    try:
        async with engine.limits.requests:
            await store.head(key)
        return digest
    except ObjectNotFoundError:
        pass
    async with engine.limits.memory.hold(item.stamp.size):
        data = await engine.in_thread(_read_checked, item, digest)
        async with engine.limits.requests:
            with contextlib.suppress(ConflictError):
                await store.put(key, data, CREATE)
    return digest


def _hash_checked(item: FileSource) -> str:
    check_unchanged(item.source, item.stamp, item.path)
    digest = hash_file(item.source)
    check_unchanged(item.source, item.stamp, item.path)
    return digest


def _read_checked(item: FileSource, digest: str) -> bytes:
    try:
        data = item.source.read_bytes()
    except OSError as exc:
        raise local_error(exc, f"cannot read {item.source}") from exc
    if digest_bytes(data) != digest:
        raise SourceChangedError(f"{item.source} (entry {item.path!r}) changed while it was being logged")
    return data
