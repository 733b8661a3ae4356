"""Fetching an artifact's entries into a folder.

Only what is missing or different is fetched. Every file is written to a temporary name beside its
target, checked against its digest, and only then renamed: no partial or unverified file ever stands
under a final name. Remote blobs pass through the content-addressed cache; a local store's blobs are
copied straight from the store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from lorry.cache import Cache
from lorry.errors import IntegrityError, LocalFileError, ObjectNotFoundError, StoreError
from lorry.model.digest import digest_bytes
from lorry.model.manifest import Entry
from lorry.registry.registry import blob_key
from lorry.storage.base import Store
from lorry.storage.local import LocalStore
from lorry.transfer import refs
from lorry.transfer.engine import Counters, Engine, gather_all
from lorry.transfer.files import (
    DOWNLOAD_MODE,
    FILE_MODE,
    discard,
    hash_file,
    install_verified,
    local_error,
    make_parents,
    matches,
    safe_target,
    temp_beside,
    write_new,
)
from lorry.transfer.plan import RANGE_SIZE, RANGES_IN_FLIGHT, SMALL_OBJECT, plan_parts


async def fetch_entries(
    engine: Engine, store: Store, cache: Cache, entries: Sequence[Entry], root: Path, counters: Counters
) -> None:
    """Make ``root`` hold every entry, byte for byte."""
    if await engine.in_thread(lambda: root.exists() and not root.is_dir()):
        raise LocalFileError(f"download root {root} exists and is not a folder")
    counters.files_total += len(entries)
    counters.bytes_total += sum(e.size or 0 for e in entries)
    todo = iter(entries)

    async def worker() -> None:
        for entry in todo:
            await fetch_entry(engine, store, cache, entry, root)
            counters.files_done += 1
            counters.bytes_done += entry.size or 0

    await gather_all(worker() for _ in range(min(len(entries), engine.settings.max_open_files)))


async def fetch_entry(engine: Engine, store: Store, cache: Cache, entry: Entry, root: Path) -> Path:
    target = safe_target(root, entry.path)
    if await engine.in_thread(matches, target, entry.size, entry.digest):
        return target
    await engine.in_thread(make_parents, target, root)
    if entry.ref is not None:
        await refs.fetch(engine, entry, target)
    elif isinstance(store, LocalStore):
        source = store.path_of(blob_key(_digest(entry)))
        await engine.in_thread(_install_from_store, source, target, entry)
    else:
        cached = cache.lookup(_digest(entry), entry.size)
        if cached is not None:
            what = f"cached blob of {entry.path!r}"
            await engine.in_thread(install_verified, cached, target, _digest(entry), what)
        elif (entry.size or 0) <= SMALL_OBJECT:
            await _fetch_small(engine, store, cache, entry, target)
        else:
            cached = await _fill_cache(engine, store, cache, entry)
            await engine.in_thread(_copy_fresh, cached, target)
    return target


async def _fetch_small(engine: Engine, store: Store, cache: Cache, entry: Entry, target: Path) -> None:
    """One GET, checked in memory; the target and the cache written in one trip to a thread."""
    key = blob_key(_digest(entry))
    try:
        async with engine.limits.requests:
            data = await store.get(key)
    except ObjectNotFoundError as exc:
        raise StoreError(f"blob {key} of entry {entry.path!r} is missing from the store") from exc
    if digest_bytes(data) != entry.digest:
        raise IntegrityError(f"blob {key} of entry {entry.path!r} does not match its digest")
    await engine.in_thread(_write_twice, data, target, cache, _digest(entry))


def _write_twice(data: bytes, target: Path, cache: Cache, digest: str) -> None:
    write_new(target, data, mode=DOWNLOAD_MODE)
    with contextlib.suppress(OSError):  # a cache that cannot take it costs a later download, nothing else
        temp = cache.temp_path()
        write_new(temp, data, atomic=False)
        cache.admit(temp, digest)


def _copy_fresh(cached: Path, target: Path) -> None:
    """Copy a blob verified a moment ago (in the kernel: no second hash)."""
    temp = temp_beside(target)
    try:
        shutil.copyfile(cached, temp)  # created as any new file of the user's: the umask decides
    except OSError as exc:
        discard(temp)
        raise local_error(exc, f"cannot write {target}") from exc
    os.replace(temp, target)


def _install_from_store(source: Path, target: Path, entry: Entry) -> None:
    if not source.is_file():
        raise StoreError(f"blob {source} of entry {entry.path!r} is missing from the store")
    install_verified(source, target, _digest(entry), f"stored blob of entry {entry.path!r}")


async def _fill_cache(engine: Engine, store: Store, cache: Cache, entry: Entry) -> Path:
    """Fetch a large blob by parallel ranged GETs into a temporary file of the cache, check it, admit it."""
    digest = _digest(entry)
    key = blob_key(digest)
    size = entry.size or 0
    temp = await engine.in_thread(cache.temp_path)
    try:
        fd = await engine.in_thread(os.open, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            await engine.in_thread(os.ftruncate, fd, size)
            todo = iter(plan_parts(size, RANGE_SIZE).ranges())

            async def worker() -> None:
                for part in todo:
                    offset = part.start
                    async with engine.limits.requests:
                        async for chunk in store.stream(key, part.start, part.end):
                            await engine.in_thread(_pwrite_all, fd, chunk, offset)
                            offset += len(chunk)
                    if offset != part.end:
                        raise IntegrityError(f"blob {key} of entry {entry.path!r} is shorter than recorded")

            in_flight = max(
                1, min(-(-size // RANGE_SIZE), engine.settings.max_memory // RANGE_SIZE, RANGES_IN_FLIGHT)
            )
            await gather_all(worker() for _ in range(in_flight))
        finally:
            await engine.in_thread(os.close, fd)
        actual = await engine.in_thread(hash_file, temp)
        if actual != digest:
            raise IntegrityError(f"blob {key} of entry {entry.path!r} does not match its digest")
        return await engine.in_thread(cache.admit, temp, digest)
    except ObjectNotFoundError as exc:
        discard(temp)
        raise StoreError(f"blob {key} of entry {entry.path!r} is missing from the store") from exc
    except OSError as exc:
        discard(temp)
        raise local_error(exc, f"cannot write to the cache {cache.root}") from exc
    except BaseException:
        discard(temp)
        raise


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _digest(entry: Entry) -> str:
    assert entry.digest is not None  # a stored (non-reference) entry always has one
    return entry.digest
