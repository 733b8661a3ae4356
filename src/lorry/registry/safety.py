"""Can this store carry many writers? The conditional-write probe, and the single-writer mode.

Versions are safe with many writers only because the server refuses a create-only write to a key that
exists (``If-None-Match: *``, ``ifGenerationMatch=0``, ``link(2)``) and a compare-and-swap against a
stale etag (``If-Match``). Some S3-compatible servers accept those headers and ignore them (rclone's
``serve s3`` does): every write then wins, and two writers can both "create" ``v7``. Nothing in a
single response shows it, so before its first version write a process asks the store once, on a
throwaway key, whether it honours both; a store that does not is refused with ``UnsafeStoreError``.

A user who knows that only one process at a time writes may opt in to ``single_writer``: the
registry then checks each precondition itself (a HEAD before the write), which is exact for one
writer and racy for two, the documented price of that mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref

from lorry.errors import ConflictError, ObjectNotFoundError, UnsafeStoreError
from lorry.model.layout import probe_key
from lorry.storage.base import (
    CREATE,
    OVERWRITE,
    Body,
    Create,
    ObjectMeta,
    PutMode,
    Store,
    Update,
)
from lorry.storage.wrapped import WrappedStore

# One probe per store object (so per process and store URL); concurrent callers share it.
_probes: weakref.WeakKeyDictionary[Store, asyncio.Future[str | None]] = weakref.WeakKeyDictionary()


async def probe_conditional_writes(store: Store) -> str | None:
    """None if ``store`` honours create-only writes and compare-and-swap, else what it got wrong.

    Four small writes and a delete on a key of its own: create, create again (must conflict),
    swap against the current etag (must succeed), swap against the first, now stale, etag (must
    conflict).
    """
    probe_id = uuid.uuid4().hex
    key = probe_key(probe_id)

    def payload(step: int) -> bytes:
        return f"probe {probe_id} {step}".encode()

    try:
        first = await _put_own(store, key, payload(1), CREATE)
        try:
            await store.put(key, payload(2), CREATE)
        except ConflictError:
            pass
        else:
            return "a create-only write (If-None-Match: *) replaced an object that already existed"
        second = await _put_own(store, key, payload(3), Update(first.etag))
        if second.etag == first.etag:
            return "an object's etag did not change when its bytes did"
        try:
            await store.put(key, payload(4), Update(first.etag))
        except ConflictError:
            return None
        return "a compare-and-swap write (If-Match) succeeded against an etag that was out of date"
    finally:
        with contextlib.suppress(Exception):
            await store.delete(key)


async def _put_own(store: Store, key: str, data: bytes, mode: PutMode) -> ObjectMeta:
    """A conditional write that must succeed: if it reports a conflict, the object may hold exactly
    ``data`` because a retry after a lost answer met the write it was retrying. Then it did succeed."""
    try:
        return await store.put(key, data, mode)
    except ConflictError:
        with contextlib.suppress(ObjectNotFoundError):
            if await store.get(key) == data:
                return await store.head(key)
        raise


async def require_conditional_writes(store: Store) -> None:
    """Raise ``UnsafeStoreError`` unless ``store`` honours conditional writes (asked once per store)."""
    probe = _probes.get(store)
    if probe is None or (probe.done() and (probe.cancelled() or probe.exception() is not None)):
        probe = asyncio.ensure_future(probe_conditional_writes(store))
        _probes[store] = probe
    problem = await asyncio.shield(probe)
    if problem is not None:
        raise UnsafeStoreError(
            f"the server behind {store.url} ignores conditional writes ({problem}); "
            "concurrent writers could overwrite each other's versions there, so lorry assigns none. "
            "If only one process at a time ever writes to this store, set LORRY_SINGLE_WRITER=1 "
            "(or Settings single_writer=True)."
        )


class SingleWriterStore(WrappedStore):
    """``store`` with every precondition checked by the client instead of the server.

    Exact while one writer uses the store; two writers can interleave between the check and the write.
    Only the registry's small record writes go through it: content-addressed blobs are the same bytes
    whoever writes them.
    """

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        if isinstance(mode, Create | Update):
            try:
                current: str | None = (await self.inner.head(key)).etag
            except ObjectNotFoundError:
                current = None
            if isinstance(mode, Create) and current is not None:
                raise ConflictError(f"{key} already exists in {self.url}")
            if isinstance(mode, Update) and current != mode.etag:
                raise ConflictError(f"{key} changed in {self.url}")
        return await self.inner.put(key, data, OVERWRITE)
