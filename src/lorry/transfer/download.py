"""Fetching an artifact's entries into a folder.

Only what is missing or different is fetched. Every file is written to a temporary name beside its
target, checked against its digest, and only then renamed: no partial or unverified file ever stands
under a final name. Remote blobs pass through the content-addressed cache; a local store's blobs are
copied straight from the store.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from lorry.cache import Cache
from lorry.errors import IntegrityError, LocalFileError, ObjectNotFoundError, StoreError
from lorry.model.digest import format_digest, new_hasher
from lorry.model.manifest import Entry
from lorry.registry.registry import blob_key
from lorry.storage.base import Store
from lorry.storage.local import LocalStore
from lorry.transfer import refs
from lorry.transfer.engine import Counters, Engine, gather_all
from lorry.transfer.files import install_verified, local_error, make_parents, matches, safe_target


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
        cached = cache.lookup(_digest(entry), entry.size) or await _fill_cache(engine, store, cache, entry)
        await engine.in_thread(
            install_verified, cached, target, _digest(entry), f"cached blob of {entry.path!r}"
        )
    return target


def _install_from_store(source: Path, target: Path, entry: Entry) -> None:
    if not source.is_file():
        raise StoreError(f"blob {source} of entry {entry.path!r} is missing from the store")
    install_verified(source, target, _digest(entry), f"stored blob of entry {entry.path!r}")


async def _fill_cache(engine: Engine, store: Store, cache: Cache, entry: Entry) -> Path:
    digest = _digest(entry)
    key = blob_key(digest)
    temp = await engine.in_thread(cache.temp_path)
    hasher = new_hasher()
    try:
        handle = await engine.in_thread(open, temp, "wb")
        try:
            async with engine.limits.requests:
                async for chunk in store.stream(key):
                    hasher.update(chunk)
                    await engine.in_thread(handle.write, chunk)
        finally:
            await engine.in_thread(handle.close)
    except ObjectNotFoundError as exc:
        _discard(temp)
        raise StoreError(f"blob {key} of entry {entry.path!r} is missing from the store") from exc
    except OSError as exc:
        _discard(temp)
        raise local_error(exc, f"cannot write to the cache {cache.root}") from exc
    except BaseException:
        _discard(temp)
        raise
    if format_digest(hasher.hexdigest()) != digest:
        _discard(temp)
        raise IntegrityError(f"blob {key} of entry {entry.path!r} does not match its digest")
    return await engine.in_thread(cache.admit, temp, digest)


def _digest(entry: Entry) -> str:
    assert entry.digest is not None  # a stored (non-reference) entry always has one
    return entry.digest


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
