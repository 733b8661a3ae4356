"""The request limit as a store: every call holds a permit while it runs.

``limited(store, permits)`` wraps a store once, where the store stack is built, so no call site places
the limit by hand and every request, from any layer, counts against the same bound. A stream holds its
permit until it is read to its end or closed; a listing until it is read whole. Capabilities pass
through (``capability``): a fast path below the contract makes no request to count, except a
bucket's versioned reads (references), which are requests and hold a permit each as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import cast

from lorry.storage.base import (
    OVERWRITE,
    VERSIONED_READS,
    Body,
    C,
    Capability,
    MultipartStore,
    ObjectMeta,
    Part,
    PartBody,
    PutMode,
    Store,
    Upload,
    VersionedBody,
    VersionedMeta,
    VersionedReads,
)
from lorry.storage.wrapped import WrappedStore


class LimitedStore(WrappedStore):
    """``inner`` with each call holding one of ``permits`` while it runs."""

    def __init__(self, inner: Store, permits: asyncio.Semaphore) -> None:
        super().__init__(inner)
        self._permits = permits

    def capability(self, kind: Capability[C]) -> C | None:
        found = kind.of(self.inner)
        if kind is VERSIONED_READS and found is not None:  # requests too: each holds a permit
            return cast(C, LimitedReads(cast(VersionedReads, found), self._permits))
        return found

    async def head(self, key: str) -> ObjectMeta:
        async with self._permits:
            return await self.inner.head(key)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        async with self._permits:
            return await self.inner.get(key, start, end)

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        async with self._permits:
            async for chunk in self.inner.stream(key, start, end):
                yield chunk

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        async with self._permits:
            return await self.inner.put(key, data, mode)

    async def delete(self, key: str) -> None:
        async with self._permits:
            await self.inner.delete(key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        async with self._permits:
            async for meta in self.inner.list(prefix):
                yield meta


class LimitedMultipartStore(LimitedStore):
    """``LimitedStore`` over a ``MultipartStore``: each multipart call holds a permit too."""

    def __init__(self, inner: MultipartStore, permits: asyncio.Semaphore) -> None:
        super().__init__(inner, permits)
        self._mp = inner

    async def create_multipart(self, key: str) -> str:
        async with self._permits:
            return await self._mp.create_multipart(key)

    async def put_part(self, key: str, upload_id: str, number: int, data: PartBody) -> Part:
        async with self._permits:
            return await self._mp.put_part(key, upload_id, number, data)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[Part], mode: PutMode = OVERWRITE
    ) -> ObjectMeta:
        async with self._permits:
            return await self._mp.complete_multipart(key, upload_id, parts, mode)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        async with self._permits:
            await self._mp.abort_multipart(key, upload_id)

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        async with self._permits:
            return await self._mp.list_parts(key, upload_id)

    async def list_multipart(self, prefix: str) -> AsyncIterator[Upload]:
        async with self._permits:
            async for upload in self._mp.list_multipart(prefix):
                yield upload


class LimitedReads:
    """A bucket's versioned reads, each holding a permit: a body until its block ends, a listing until
    it is read whole."""

    def __init__(self, inner: VersionedReads, permits: asyncio.Semaphore) -> None:
        self.inner = inner
        self._permits = permits

    async def head_version(
        self, key: str, version: str | None = None, /, *, raw: bool = False
    ) -> VersionedMeta:
        async with self._permits:
            return await self.inner.head_version(key, version, raw=raw)

    @asynccontextmanager
    async def open_version(
        self, key: str, version: str | None = None, /, *, raw: bool = False
    ) -> AsyncIterator[VersionedBody]:
        async with self._permits, self.inner.open_version(key, version, raw=raw) as body:
            yield body

    async def list_latest(self, prefix: str) -> AsyncIterator[VersionedMeta]:
        async with self._permits:
            async for meta in self.inner.list_latest(prefix):
                yield meta


def limited(store: Store, permits: asyncio.Semaphore) -> Store:
    """``store`` with each call holding a permit; multipart stays available when ``store`` has it."""
    if isinstance(store, MultipartStore):
        return LimitedMultipartStore(store, permits)
    return LimitedStore(store, permits)
