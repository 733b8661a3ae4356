"""Storing an artifact's files as content-addressed blobs.

Each file is hashed once; a blob the store already holds is not sent again. What is stored is
checked against the digest as it is written, so the store never holds bytes that do not match their
name, and a source that changes on the way fails its version loudly (``SourceChangedError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lorry.cache import Stamp
from lorry.errors import ConflictError, ObjectNotFoundError, SourceChangedError
from lorry.model.digest import digest_bytes
from lorry.model.layout import blob_key
from lorry.storage.base import (
    CREATE,
    LOCAL_FILES,
    STREAM_READ,
    FileSpan,
    LocalFiles,
    MultipartStore,
    Part,
    Store,
)
from lorry.transfer.engine import Counters, Engine, gather_all
from lorry.transfer.files import (
    FileStamp,
    check_stamp,
    check_unchanged,
    clone_or_copy,
    copy_fd_hashing,
    copy_hashing,
    discard,
    hash_file,
    local_error,
    owner_only,
    read_checked,
)
from lorry.transfer.journal import Journal, JournalEntry
from lorry.transfer.known import KnownDigests
from lorry.transfer.plan import (
    BATCH_FILES,
    MAX_PARTS_IN_FLIGHT,
    MULTIPART_THRESHOLD,
    SMALL_OBJECT,
    batched,
    plan_parts,
)

log = logging.getLogger("lorry")

PART_FILES = 4096
PARTS_IN_FLIGHT = 2
"""An artifact's files are stored a part of at most ``PART_FILES`` at a time, with at most
``PARTS_IN_FLIGHT`` parts under way (per helper process, when they go there): enough to keep every
worker busy across a part's end, and a bound on what the files on the way hold in memory, whatever
their number."""


@dataclass(frozen=True, slots=True)
class FileSource:
    """A local file waiting to be stored as the entry ``path``.

    ``owned`` marks a file lorry made itself (a ``policy="mutable"`` snapshot or a ``new_file``): no
    one else writes to it, so it can be linked into a local store instead of copied. ``offset`` is
    set for the snapshot of a small file: its ``stamp.size`` bytes start there in ``source``, a pack
    of such snapshots (see ``files.Packs``); the pack's own stamp changes with every snapshot added,
    so only the length is kept.
    """

    path: str
    source: str
    stamp: FileStamp
    owned: bool
    offset: int | None = None

    def __reduce__(self) -> tuple[type[FileSource], tuple[str, str, FileStamp, bool, int | None]]:
        # Sent to the helper process by the thousand: a tuple pickles several times faster than a
        # frozen dataclass's default state.
        return FileSource, (self.path, self.source, self.stamp, self.owned, self.offset)


async def store_files(
    engine: Engine, store: Store, files: Sequence[FileSource], counters: Counters, journal: Journal
) -> list[str]:
    """Store every file's content; return their digests, in the order given. (``counters`` count the
    files done; their totals are the caller's to set.)

    Small files go in batches: one trip to a thread reads (and, on a local store, writes) a whole
    batch, then its PUTs go out together. A trip per 4 KiB file cost more than the file's own I/O,
    and a crowd of threads each waking for one file spent the rest fighting over the GIL."""
    results: list[str] = [""] * len(files)
    indexed = list(enumerate(files))
    small = iter(
        batched([(i, f) for i, f in indexed if f.stamp.size <= SMALL_OBJECT], lambda p: p[1].stamp.size)
    )
    large = iter([(i, f) for i, f in indexed if f.stamp.size > SMALL_OBJECT])

    def done(index: int, digest: str) -> None:
        results[index] = digest
        counters.files_done += 1
        counters.bytes_done += files[index].stamp.size

    async def small_worker() -> None:
        for batch in small:
            async with engine.limits.files:  # a batch's files are read one after the other
                digests = await _store_batch(engine, store, batch)
            for (index, _), digest in zip(batch, digests, strict=True):
                done(index, digest)

    async def large_worker() -> None:
        for index, item in large:
            async with engine.limits.files:
                entry = await _store_one(engine, store, item, journal)
            done(index, entry)

    small_workers = 2 if LOCAL_FILES.of(store) else 1 + engine.settings.max_requests // BATCH_FILES
    await gather_all(
        [
            *(small_worker() for _ in range(small_workers)),
            *(large_worker() for _ in range(min(len(files), engine.settings.max_open_files))),
        ]
    )
    return results


async def _store_batch(engine: Engine, store: Store, batch: list[tuple[int, FileSource]]) -> list[str]:
    items = [item for _, item in batch]
    if (local := LOCAL_FILES.of(store)) is not None:

        def store_all() -> list[str]:
            with _SmallReader() as reader:
                read = reader.read_all(items)
            local.put_blobs([(blob_key(digest), data) for data, digest in read])
            return [digest for _, digest in read]

        async with engine.limits.memory.hold(sum(item.stamp.size for item in items)):  # read whole first
            digests = await engine.in_thread(store_all)
    else:
        async with engine.limits.memory.hold(sum(item.stamp.size for item in items)):

            def read_all() -> list[tuple[bytes | memoryview, str]]:
                with _SmallReader() as reader:
                    return reader.read_all(items)

            read = await engine.in_thread(read_all)

            async def put(data: bytes | memoryview, digest: str) -> None:
                # A conditional create at once (one request): a conflict means it is already stored.
                with contextlib.suppress(ConflictError):
                    await store.put(blob_key(digest), data, CREATE)

            await gather_all(put(data, digest) for data, digest in read)
        digests = [digest for _, digest in read]
    return digests


async def _store_one(engine: Engine, store: Store, item: FileSource, journal: Journal) -> str:
    if (local := LOCAL_FILES.of(store)) is not None:
        return await engine.in_thread(_store_local, local, item, KnownDigests(journal.cache_dir))
    return await _store_remote(engine, store, item, journal)


def _store_local(store: LocalFiles, item: FileSource, known: KnownDigests) -> str:
    """A large file (small ones go in batches, read once and written from memory), copied into the
    store by the kernel (a reflink where the filesystem shares extents) and hashed beside the copy
    (see ``copy_fd_hashing``); not read at all if its digest is remembered for its unchanged stamp
    (see ``known.py``). The source's stamp, change time included, must be the same after the copy as
    before it."""
    if item.owned:
        return _store_owned(store, item)
    temp: Path | None = None
    try:
        with open(item.source, "rb", buffering=0) as src:
            hashed_at = time.time_ns()
            st = os.fstat(src.fileno())
            check_stamp(FileStamp.of_stat(st), item.stamp, item.source, item.path)
            before = Stamp.of_stat(st)
            digest = known.lookup(before)
            if digest is not None and store.path_of(blob_key(digest)).is_file():
                _check_still(item, before)
                return digest
            temp = store.temp_path()
            with open(temp, "x+b", buffering=0, opener=owner_only) as dst:  # read too, to be hashed
                if digest is None:
                    digest = copy_fd_hashing(src.fileno(), dst.fileno())
                else:
                    clone_or_copy(src.fileno(), dst.fileno(), before.size)
        _check_still(item, before)
    except BaseException as exc:
        if temp is not None:
            discard(temp)
        if isinstance(exc, FileNotFoundError) and exc.filename == item.source:
            raise _removed(item) from None
        if isinstance(exc, OSError):
            raise local_error(exc, f"cannot store {item.source} in {store.root}") from exc
        raise
    known.remember(before, digest, hashed_at, item.source)
    with contextlib.suppress(ConflictError):  # stored meanwhile by another writer: same bytes
        store.commit_file(temp, blob_key(digest), CREATE)
    return digest


def _check_still(item: FileSource, before: Stamp) -> None:
    try:
        now = Stamp.of_stat(os.stat(item.source))
    except FileNotFoundError:
        raise _removed(item) from None
    if now != before:
        raise SourceChangedError(
            f"{item.source} (entry {item.path!r}) changed while it was being logged; "
            "the version that holds it was not committed"
        )


def _removed(item: FileSource) -> SourceChangedError:
    return SourceChangedError(f"{item.source} (entry {item.path!r}) was removed after it was added")


def _store_owned(store: LocalFiles, item: FileSource) -> str:
    """lorry's own snapshot: no one else writes to it, so it is hashed, then linked into the store."""
    check_unchanged(item.source, item.stamp, item.path)
    digest = hash_file(item.source)
    key = blob_key(digest)
    if store.path_of(key).is_file():
        return digest
    temp = store.temp_path()
    try:
        try:
            os.link(item.source, temp)
        except OSError:  # another filesystem, or links not allowed: copy instead
            if copy_hashing(item.source, temp) != digest:
                raise SourceChangedError(f"staged copy of {item.path!r} changed") from None
    except OSError as exc:
        discard(temp)
        raise local_error(exc, f"cannot store {item.source} in {store.root}") from exc
    except BaseException:
        discard(temp)
        raise
    with contextlib.suppress(ConflictError):  # stored meanwhile by another writer: same bytes
        store.commit_file(temp, key, CREATE)
    return digest


async def _store_remote(engine: Engine, store: Store, item: FileSource, journal: Journal) -> str:
    size = item.stamp.size
    if size >= MULTIPART_THRESHOLD:
        digest = await engine.in_thread(_hash_checked, item)
        if not await _stored(engine, store, blob_key(digest)):
            if isinstance(store, MultipartStore):
                await _store_multipart(engine, store, item, blob_key(digest), journal)
            else:
                await _store_streamed(engine, store, item, blob_key(digest))
        return digest
    # Read and hash in one trip to a thread: what is sent is exactly what was hashed. A HEAD first
    # saves sending bytes the store already has.
    # One byte more: a file that grew is seen. ``also``: the C client's copy of the body as it sends it.
    async with engine.limits.memory.lend(size + 1, also=size) as buffer:
        data, digest = await engine.in_thread(_read_hashed, item, buffer)
        if await _stored(engine, store, blob_key(digest)):
            return digest
        with contextlib.suppress(ConflictError):
            await store.put(blob_key(digest), data, CREATE)
    return digest


async def _store_streamed(engine: Engine, store: Store, item: FileSource, key: str) -> None:
    """The file as one ``put`` of a stream (GCS: a resumable upload), read a chunk at a time: memory
    holds a chunk, not the file."""
    async with engine.limits.memory.hold(STREAM_READ):
        try:
            handle = await engine.in_thread(_StampedFile, item)
        except OSError as exc:
            raise local_error(exc, f"cannot read {item.source}") from exc
        try:
            with contextlib.suppress(ConflictError):  # stored meanwhile: the same bytes
                await store.put(key, handle, CREATE)
        finally:
            await engine.in_thread(handle.close)


class _StampedFile(io.FileIO):
    """A source file that checks its stamp when its last bytes are read, before they are sent: a
    source changed on the way fails its version before the object is complete, as with parts."""

    def __init__(self, item: FileSource) -> None:
        super().__init__(item.source, "rb")
        self.item = item

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        now = FileStamp.of_fd(self.fileno())
        if self.tell() >= min(now.size, self.item.stamp.size):  # the end, of the file as it was or is
            check_stamp(now, self.item.stamp, self.item.source, self.item.path)
        return data or b""


async def _stored(engine: Engine, store: Store, key: str) -> bool:
    try:
        await store.head(key)
    except ObjectNotFoundError:
        return False
    return True


async def _store_multipart(
    engine: Engine, store: MultipartStore, item: FileSource, key: str, journal: Journal
) -> None:
    """Parts in parallel, bounded by the memory budget; resumed from the journal when a killed
    process left one; aborted on failure, so no orphaned upload stays behind.

    An upload can vanish under its writer: completed by a try whose response was lost, or aborted by
    another writer of the same content (see ``retry.py``) or by ``abort-uploads``. If the blob is then
    stored, the work is done; if not, the upload starts again, once."""
    for again in (False, True):
        try:
            await _upload_parts(engine, store, item, key, journal)
            return
        except ObjectNotFoundError:  # no such upload
            if await _stored(engine, store, key):
                return
            if again:
                raise
            log.info("the upload of %s was removed while in progress; starting it again", item.source)


async def _upload_parts(
    engine: Engine, store: MultipartStore, item: FileSource, key: str, journal: Journal
) -> None:
    plan = plan_parts(item.stamp.size)
    upload_id, done = await _resume(engine, store, item, key, plan.part_size, journal)
    if upload_id is None:
        upload_id = await store.create_multipart(key)
        entry = JournalEntry(store.url, key, upload_id, plan.part_size, item.stamp, item.owned, time.time())
        await engine.in_thread(journal.save, entry)
    parts: dict[int, Part] = dict(done)
    todo = iter([r for r in plan.ranges() if r.number not in done])
    named = f"{item.source} (entry {item.path!r})"
    try:
        fd = await engine.in_thread(os.open, item.source, os.O_RDONLY)
        try:

            async def worker() -> None:
                # A part is read by the C client's thread straight into its own buffer (a span of
                # the file, not bytes read here first): the budget counts that buffer.
                async with engine.limits.memory.hold(plan.part_size):
                    for part in todo:
                        body = FileSpan(fd, part.start, part.size, named)
                        parts[part.number] = await store.put_part(key, upload_id, part.number, body)

            in_flight = max(
                1, min(plan.count, MAX_PARTS_IN_FLIGHT, engine.settings.max_memory // plan.part_size)
            )
            await gather_all(worker() for _ in range(in_flight))
        finally:
            os.close(fd)
        await engine.in_thread(check_unchanged, item.source, item.stamp, item.path)
        ordered = [parts[n] for n in sorted(parts)]
        with contextlib.suppress(ConflictError):  # completed meanwhile by a writer of the same bytes
            await store.complete_multipart(key, upload_id, ordered, CREATE)
    except asyncio.CancelledError:
        raise  # interrupted, not failed: the journal lets the next attempt resume
    except BaseException:
        try:
            await store.abort_multipart(key, upload_id)
        except Exception:
            # The server cannot be reached (that may be why the upload failed): the journal keeps
            # the upload, for the next attempt to resume, or abort-uploads to remove.
            log.info("the upload of %s stays open, for the next attempt to resume", item.source)
        else:
            await engine.in_thread(journal.remove, store.url, key)
        raise
    await engine.in_thread(journal.remove, store.url, key)


async def _resume(
    engine: Engine, store: MultipartStore, item: FileSource, key: str, part_size: int, journal: Journal
) -> tuple[str | None, dict[int, Part]]:
    """The upload a killed process left, and the parts of it that can be kept."""
    entry = await engine.in_thread(journal.load, store.url, key)
    if entry is None:
        return None, {}
    if entry.part_size != part_size or not (entry.owned or entry.stamp == item.stamp):
        with contextlib.suppress(Exception):
            await store.abort_multipart(key, entry.upload_id)
        return None, {}
    try:
        stored = await store.list_parts(key, entry.upload_id)
    except ObjectNotFoundError:
        return None, {}
    sizes = {r.number: r.size for r in plan_parts(item.stamp.size, part_size).ranges()}
    kept = {p.number: p for p in stored if sizes.get(p.number) == p.size}
    log.info("resuming the upload of %s: %d of %d parts already stored", item.source, len(kept), len(sizes))
    return entry.upload_id, kept


def _read_hashed(item: FileSource, into: memoryview) -> tuple[bytes | memoryview, str]:
    with _SmallReader() as reader:
        return reader.read_hashed(item, into)


class _SmallReader:
    """Reads whole files, each checked against its stamp, or snapshots out of packs: a pack is opened
    once for all the snapshots read from it, not once per snapshot."""

    def __init__(self) -> None:
        self._packs: dict[str, int] = {}

    def __enter__(self) -> _SmallReader:
        return self

    def __exit__(self, *_: object) -> None:
        for fd in self._packs.values():
            os.close(fd)

    def read_all(self, items: Sequence[FileSource]) -> list[tuple[bytes | memoryview, str]]:
        """Every item's bytes and digest, in order. Snapshots that lie one after the other in a pack
        (those added one after the other) are read with one ``pread`` for the whole run."""
        read: list[tuple[bytes | memoryview, str]] = []
        start = 0
        while start < len(items):
            first = items[start]
            if first.offset is None:
                read.append(self.read_hashed(first))
                start += 1
                continue
            end, length = start + 1, first.stamp.size
            while end < len(items) and _follows(items[end], items[end - 1]):
                length += items[end].stamp.size
                end += 1
            run = memoryview(self._pread(first, length))
            at = 0
            for item in items[start:end]:
                data = bytes(run[at : at + item.stamp.size])
                at += item.stamp.size
                read.append((data, digest_bytes(data)))
            start = end
        return read

    def read_hashed(self, item: FileSource, into: memoryview | None = None) -> tuple[bytes | memoryview, str]:
        """The item's bytes (read into ``into`` if given: at least one byte longer than the file) and
        their digest."""
        data: bytes | memoryview
        if item.offset is None:
            data = read_checked(item.source, item.stamp, item.path, into)
        else:
            data = self._pread(item, item.stamp.size, into)
        return data, digest_bytes(data)

    def _pread(self, first: FileSource, length: int, into: memoryview | None = None) -> bytes | memoryview:
        """``length`` bytes of ``first``'s pack from where its snapshot starts (into ``into``, if given)."""
        assert first.offset is not None
        try:
            fd = self._packs.get(first.source)
            if fd is None:
                fd = self._packs[first.source] = os.open(first.source, os.O_RDONLY)
            data: bytes | memoryview
            if into is None:
                data = os.pread(fd, length, first.offset)
            else:
                data = into[: os.preadv(fd, [into[:length]], first.offset)]
        except OSError as exc:
            raise local_error(exc, f"cannot read the snapshot of {first.path!r} in {first.source}") from exc
        if len(data) != length:
            raise SourceChangedError(f"the snapshot of {first.path!r} in {first.source} was cut short")
        return data


def _follows(item: FileSource, before: FileSource) -> bool:
    """Whether ``item``'s snapshot starts where ``before``'s ends, in the same pack."""
    return (
        item.offset is not None
        and before.offset is not None
        and item.source == before.source
        and item.offset == before.offset + before.stamp.size
    )


def _hash_checked(item: FileSource) -> str:
    check_unchanged(item.source, item.stamp, item.path)
    digest = hash_file(item.source)
    check_unchanged(item.source, item.stamp, item.path)
    return digest
