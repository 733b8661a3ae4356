"""Fetching an artifact's entries into a folder.

Only what is missing or different is fetched. Every file is written to a temporary name beside its
target, checked against its digest, and only then renamed: no partial or unverified file ever stands
under a final name. Remote blobs pass through the content-addressed cache, except a large blob of a
store that writes whole objects into files itself (S3): that one lands in its target's temporary file
first and the cache gets a kernel copy; a local store's blobs are copied straight from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import stat
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from lorry.cache import Cache
from lorry.errors import IntegrityError, LocalFileError, ObjectNotFoundError, StoreError
from lorry.model.digest import digest_bytes
from lorry.model.layout import blob_key
from lorry.model.manifest import Entry
from lorry.storage.base import FILE_GETS, LOCAL_FILES, FileGets, LocalFiles, Store
from lorry.storage.local import LocalStore
from lorry.transfer import refs
from lorry.transfer.engine import Counters, Engine, gather_all
from lorry.transfer.files import (
    DOWNLOAD_MODE,
    FILE_MODE,
    Targets,
    discard,
    give_name,
    hash_file,
    install_verified,
    local_error,
    matches,
    refuse_folder,
    temp_beside,
    write_new,
)
from lorry.transfer.offload import HELPERS, Stored, helper, wants_helpers_for
from lorry.transfer.plan import (
    BATCH_FILES,
    RANGE_SIZE,
    RANGES_IN_FLIGHT,
    SMALL_OBJECT,
    batched,
    plan_parts,
)
from lorry.transfer.retry import RetryStats
from lorry.transfer.upload import PART_FILES, PARTS_IN_FLIGHT

log = logging.getLogger("lorry")
T = TypeVar("T")


async def fetch_entries(
    engine: Engine, store: Store, cache: Cache, entries: Collection[Entry], root: Path, counters: Counters
) -> None:
    """Make ``root`` hold every entry, byte for byte.

    Small blobs go in batches, as in ``upload.py``: one trip to a thread settles a whole batch (what is
    already there, what the cache or a local store holds), its GETs go out together, and one more trip
    writes what they brought. The entries are read as the work goes (``entries`` is gone through once
    for the small ones and once for the others), never copied: a manifest of a million entries makes
    its ``Entry`` objects a batch at a time."""
    if await engine.in_thread(lambda: root.exists() and not root.is_dir()):
        raise LocalFileError(f"download root {root} exists and is not a folder")
    counters.files_total += len(entries)
    counters.bytes_total += sum(e.size or 0 for e in entries)

    def is_small(entry: Entry) -> bool:
        return entry.ref is None and (entry.size or 0) <= SMALL_OBJECT

    small_entries = (e for e in entries if is_small(e))
    small = batched(small_entries, lambda e: e.size or 0)
    others = (e for e in entries if not is_small(e))

    targets = Targets(root)  # the real path of each folder looked up once for the whole download

    def done(entry: Entry) -> None:
        counters.files_done += 1
        counters.bytes_done += entry.size or 0

    async def small_worker() -> None:
        for batch in small:
            async with engine.limits.files:  # a batch's files are written one after the other
                await _fetch_batch(engine, store, cache, batch, targets)
            for entry in batch:
                done(entry)

    async def other_worker() -> None:
        for entry in others:
            async with engine.limits.files:  # a copy from the cache holds its source and its target
                await _fetch_entry(engine, store, cache, entry, targets)
            done(entry)

    local = LOCAL_FILES.of(store)
    if local is not None and wants_helpers_for(engine.settings, len(entries)):
        # Many small files from a local store: the helper processes write them, parts in turn, so
        # that both cores create files (in this process the interpreter lock keeps it to one).
        parts = _parts(small_entries, PART_FILES)

        async def helper_worker(turn: int) -> None:
            for part in parts:
                await helper(turn).fetch_small(engine.settings, str(local.root), part, root)
                for entry in part:
                    done(entry)

        small_workers = [helper_worker(turn % HELPERS) for turn in range(HELPERS * PARTS_IN_FLIGHT)]
    else:
        count = 2 if local is not None else 1 + engine.settings.max_requests // BATCH_FILES
        small_workers = [small_worker() for _ in range(count)]
    await gather_all(
        [*small_workers, *(other_worker() for _ in range(min(len(entries), engine.settings.max_open_files)))]
    )


def _parts(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while part := list(itertools.islice(it, size)):
        yield part


async def fetch_small_part(engine: Engine, store_root: str, entries: Sequence[Entry], root: Path) -> Stored:
    """A helper's job: write small ``entries`` of the local store at ``store_root`` below ``root``, a
    batch at a time on two threads (see ``_install_small_from_store``)."""
    local = LocalStore(store_root)
    targets = Targets(root)  # shared by the batches: each folder's real path looked up once
    batches = iter([list(entries[i : i + BATCH_FILES]) for i in range(0, len(entries), BATCH_FILES)])

    async def worker() -> None:
        for batch in batches:
            await _settled(engine, _install_small_from_store, local, batch, targets)

    await gather_all([worker(), worker()])
    return Stored([], RetryStats())


async def fetch_entry(engine: Engine, store: Store, cache: Cache, entry: Entry, root: Path) -> Path:
    """Make ``root`` hold ``entry``, byte for byte; its path there."""
    return await _fetch_entry(engine, store, cache, entry, Targets(root))


async def _fetch_entry(engine: Engine, store: Store, cache: Cache, entry: Entry, targets: Targets) -> Path:
    target = refuse_folder(targets.target(entry.path), entry.path)
    if await _settled(engine, matches, target, entry.size, entry.digest):
        return target
    await _settled(engine, targets.make_parents, target)
    if entry.ref is not None:
        await refs.fetch(engine, entry, target)
    elif (local := LOCAL_FILES.of(store)) is not None:
        source = local.path_of(blob_key(_digest(entry)))
        await _settled(engine, _install_from_store, source, target, entry)
    elif not await _settled(engine, _install_from_cache, cache, entry, target):
        if (entry.size or 0) <= SMALL_OBJECT:
            data = await _get_small(engine, store, entry)
            await _settled(engine, _write_twice, data, target, cache, _digest(entry))
        elif (files := FILE_GETS.of(store)) is not None:
            await _fetch_file(engine, store, files, cache, entry, target)
        else:
            cached = await _fill_cache(engine, store, cache, entry)
            await _settled(engine, _copy_fresh, cached, target)
    return target


async def _fetch_batch(
    engine: Engine, store: Store, cache: Cache, batch: list[Entry], targets: Targets
) -> None:
    """Fetch a batch of small stored (not referenced) entries."""

    local = LOCAL_FILES.of(store)
    if local is not None:
        await _settled(engine, _install_small_from_store, local, batch, targets)
        return

    def settle() -> list[tuple[Entry, Path]]:
        """What is neither in place already nor installed now from a local store or the cache."""
        missing = []
        for entry in batch:
            target = refuse_folder(targets.target(entry.path), entry.path)
            if matches(target, entry.size, entry.digest):
                continue
            targets.make_parents(target)
            if not _install_from_cache(cache, entry, target):
                missing.append((entry, target))
        return missing

    missing = await _settled(engine, settle)
    if not missing:
        return
    fetched: list[bytes] = [b""] * len(missing)

    async def get(index: int, entry: Entry) -> None:
        fetched[index] = await _get_small(engine, store, entry)

    await gather_all(get(i, entry) for i, (entry, _) in enumerate(missing))

    def write() -> None:
        for (entry, target), data in zip(missing, fetched, strict=True):
            _write_twice(data, target, cache, _digest(entry))

    await _settled(engine, write)


def _install_small_from_store(store: LocalFiles, batch: list[Entry], targets: Targets) -> None:
    """Small entries from a local store, with as few system calls per file as safety allows: one
    ``lstat`` of the target; the blob read whole (open, read, close) and checked in memory; the file
    written unnamed and linked in under its name (``write_new``)."""
    blobs = str(store.root)
    for entry in batch:
        target, standing = targets.look(entry.path)
        if standing is not None and stat.S_ISREG(standing.st_mode):
            if standing.st_size == entry.size and hash_file(target) == entry.digest:
                continue  # in place already
        elif standing is not None:
            refuse_folder(Path(target), entry.path)
        targets.make_parents(target)
        write_new(target, _read_blob(blobs, entry), mode=DOWNLOAD_MODE, temp=targets.temps.beside(target))


def _read_blob(root: str, entry: Entry) -> bytes:
    """A small blob of a local store, whole and checked against the entry's size and digest."""
    key = blob_key(_digest(entry))
    size = entry.size or 0
    try:
        fd = os.open(f"{root}/{key}", os.O_RDONLY)
        try:  # one byte more than recorded, to see a longer blob without reading all of it
            data = os.read(fd, size + 1)
        finally:
            os.close(fd)
    except OSError as exc:  # not there, or not a file
        raise StoreError(f"blob {key} of entry {entry.path!r} is missing from the store") from exc
    return _checked(data, key, entry)


def _checked(data: bytes, key: str, entry: Entry) -> bytes:
    """``data`` read as the blob ``key`` (one byte more than the entry's size was asked for), if it is
    exactly the entry's bytes."""
    size = entry.size or 0
    if len(data) != size:
        raise _wrong_size(key, entry, "longer than" if len(data) > size else f"{len(data)} bytes, not")
    if digest_bytes(data) != entry.digest:
        raise IntegrityError(f"blob {key} of entry {entry.path!r} does not match its digest")
    return data


def _install_from_cache(cache: Cache, entry: Entry, target: Path) -> bool:
    """Install the cached copy of the entry's blob, checked on the way; False if there is none. A
    copy that does not match its digest (a damaged disk, a stray write) is removed, so that the blob
    is fetched again and the cache repaired, never served."""
    # A small blob is written to the cache beside its place, never remembered by place.
    cached = cache.lookup(_digest(entry), entry.size, places=(entry.size or 0) > SMALL_OBJECT)
    if cached is None:
        return False
    what = f"cached blob {cached} of entry {entry.path!r}"
    try:
        install_verified(cached, target, _digest(entry), what)
    except IntegrityError as exc:
        log.warning("%s; forgotten by the cache, fetching it again", exc)
        cache.forget(_digest(entry), cached)
        return False
    except LocalFileError:
        if os.access(cached, os.R_OK):
            raise  # the target could not be written
        cache.forget(_digest(entry), cached)  # a remembered place gone meanwhile: fetch it
        return False
    if cached != cache.blob_path(_digest(entry)):
        cache.remember_place(_digest(entry), target)  # another place that holds it, if that one changes
    return True


async def _get_small(engine: Engine, store: Store, entry: Entry) -> bytes:
    """One GET of a small blob, checked in memory."""
    key = blob_key(_digest(entry))
    size = entry.size or 0
    try:  # one byte more than recorded, to see a longer blob without reading all of it
        data = await store.get(key, 0, size + 1)
    except ObjectNotFoundError as exc:
        raise StoreError(f"blob {key} of entry {entry.path!r} is missing from the store") from exc
    return _checked(data, key, entry)


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
    give_name(temp, target)


def _install_from_store(source: Path, target: Path, entry: Entry) -> None:
    key = blob_key(_digest(entry))
    try:
        st = source.stat()
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise StoreError(f"blob {key} of entry {entry.path!r} is missing from the store")
    if entry.size is not None and st.st_size != entry.size:
        raise _wrong_size(key, entry, f"{st.st_size} bytes, not")
    install_verified(source, target, _digest(entry), f"blob {key} of entry {entry.path!r}")


def _wrong_size(key: str, entry: Entry, how: str) -> IntegrityError:
    return IntegrityError(
        f"blob {key} of entry {entry.path!r} is {how} the {entry.size} bytes recorded in the manifest"
    )


async def _stored_size(store: Store, entry: Entry) -> int:
    """The size of the entry's blob, asked of the store and checked against the manifest before any
    byte is fetched: a size that lies would make a huge file, or a request per missing range."""
    key = blob_key(_digest(entry))
    try:
        stored = (await store.head(key)).size
    except ObjectNotFoundError as exc:
        raise StoreError(f"blob {key} of entry {entry.path!r} is missing from the store") from exc
    if stored != (entry.size or 0):
        raise _wrong_size(key, entry, f"{stored} bytes, not")
    return stored


async def _fetch_file(
    engine: Engine, store: Store, files: FileGets, cache: Cache, entry: Entry, target: Path
) -> None:
    """A large blob written by the store's native client straight into a temporary file beside
    ``target`` (each byte written once, by C), hashed in one pass over the page cache, then given its
    name; the cache remembers where it was placed (see ``cache.py``) instead of holding a copy."""
    digest = _digest(entry)
    key = blob_key(digest)
    size = await _stored_size(store, entry)
    temp = temp_beside(target)
    failed = f"cannot write {target}"  # what an OSError stopped, worded for the user
    try:
        # Made (and its room taken) here first: a full disk or a folder that may not be written to is
        # an OSError lorry words clearly, before any byte is fetched.
        await _settled(engine, _reserve, temp, size)
        try:
            got = await files.get_file(key, temp)
        except ObjectNotFoundError as exc:
            raise StoreError(f"blob {key} of entry {entry.path!r} is missing from the store") from exc
        if got != size:
            raise _wrong_size(key, entry, f"{got} bytes, not")
        if await _settled(engine, hash_file, temp) != digest:
            raise IntegrityError(f"blob {key} of entry {entry.path!r} does not match its digest")
    except OSError as exc:
        discard(temp)
        raise local_error(exc, failed) from exc
    except BaseException:
        discard(temp)
        raise
    await _settled(engine, give_name, temp, target)
    await _settled(engine, cache.remember_place, digest, target)


def _reserve(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DOWNLOAD_MODE)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


async def _fill_cache(engine: Engine, store: Store, cache: Cache, entry: Entry) -> Path:
    """Fetch a large blob by parallel ranged GETs into a temporary file of the cache, check it, admit it."""
    digest = _digest(entry)
    key = blob_key(digest)
    size = await _stored_size(store, entry)
    try:
        temp = await _settled(engine, cache.temp_path)
    except OSError as exc:
        raise local_error(exc, f"cannot write to the cache {cache.root}") from exc
    opened: list[int] = []  # the descriptor, kept here so that it is closed even if a cancel hits the open

    def open_sized() -> None:
        opened.append(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        os.ftruncate(opened[0], size)

    try:
        try:
            await _settled(engine, open_sized)
            fd = opened[0]
            todo = iter(plan_parts(size, RANGE_SIZE).ranges())

            async def worker() -> None:
                for part in todo:
                    offset = part.start
                    async for chunk in store.stream(key, part.start, part.end):
                        await _settled(engine, _pwrite_all, fd, chunk, offset)
                        offset += len(chunk)
                    if offset != part.end:
                        raise _wrong_size(key, entry, "shorter than")

            in_flight = max(
                1, min(-(-size // RANGE_SIZE), engine.settings.max_memory // RANGE_SIZE, RANGES_IN_FLIGHT)
            )
            await gather_all(worker() for _ in range(in_flight))
        finally:
            if opened:
                await _settled(engine, os.close, opened[0])
        actual = await _settled(engine, hash_file, temp)
        if actual != digest:
            raise IntegrityError(f"blob {key} of entry {entry.path!r} does not match its digest")
        return await _settled(engine, cache.admit, temp, digest)
    except ObjectNotFoundError as exc:
        discard(temp)
        raise StoreError(f"blob {key} of entry {entry.path!r} is missing from the store") from exc
    except OSError as exc:
        discard(temp)
        raise local_error(exc, f"cannot write to the cache {cache.root}") from exc
    except BaseException:
        discard(temp)
        raise


async def _settled(engine: Engine, func: Callable[..., T], *args: object) -> T:
    """``engine.in_thread(func, *args)``, and if the caller is cancelled meanwhile (a sibling entry
    failed), the thread's work is let finish before the cancel goes on: when a download returns, no
    thread of it is still writing below its root or in the cache."""
    task = asyncio.ensure_future(engine.in_thread(func, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # seen: the cancel is what goes on
        raise


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _digest(entry: Entry) -> str:
    assert entry.digest is not None  # a stored (non-reference) entry always has one
    return entry.digest
