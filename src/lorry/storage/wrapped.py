"""A store that passes every call to the store it wraps.

The wrappers of the store stack (the request limit, retries, the single writer's checks) derive from
``WrappedStore`` and override only the calls they add something to; what a wrapper is, its URL and
the capabilities found through it are the same for all of them and written here once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from lorry.storage.base import OVERWRITE, Body, C, Capability, ObjectMeta, PutMode, Store


class WrappedStore:
    """``inner``, call for call; a ``Wrapper``, so capabilities are found through it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    @property
    def url(self) -> str:
        return self.inner.url

    def capability(self, kind: Capability[C]) -> C | None:
        return kind.of(self.inner)

    async def head(self, key: str) -> ObjectMeta:
        return await self.inner.head(key)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return await self.inner.get(key, start, end)

    def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self.inner.stream(key, start, end)

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        return await self.inner.put(key, data, mode)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        return self.inner.list(prefix)

    async def close(self) -> None:
        await self.inner.close()
