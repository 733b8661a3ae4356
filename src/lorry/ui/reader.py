"""What the pages show, read from the store through the registry's read calls.

The registry's coroutines belong to the engine's loop (the bridge); the web server runs on a loop of its
own, so every read is handed to the engine and awaited from here without blocking the server. Nothing
is cached but manifests, which are immutable (named by their digest): a version logged while the
server runs shows on the next page load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from lorry import _bridge
from lorry.artifact import AliasTable
from lorry.errors import ArtifactDeletedError, ArtifactNotFoundError, ObjectNotFoundError
from lorry.model.names import version_alias
from lorry.registry.records import RunRecord, VersionRecord
from lorry.registry.registry import Collection, Registry, blob_key, manifest_key
from lorry.settings import Settings
from lorry.transfer.engine import engine
from lorry.ui.entries import EntryTable

T = TypeVar("T")
# Parsed entries cost ~500 bytes each: keep the manifests being browsed, up to about 500 MB of them.
_ENTRIES_KEPT = 1_000_000


@dataclass(frozen=True, slots=True)
class CollectionSummary:
    """One row of the collections page."""

    collection: Collection
    type: str
    versions: int
    latest: VersionRecord | None


@dataclass(frozen=True, slots=True)
class CollectionView:
    collection: Collection
    type: str
    records: tuple[VersionRecord, ...]
    aliases: AliasTable


@dataclass(frozen=True, slots=True)
class VersionView:
    collection: Collection
    record: VersionRecord
    aliases: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.collection}:{version_alias(self.record.version)}"


class Reader:
    """Read-only access to one store, for the web server's loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._manifests: OrderedDict[str, EntryTable] = OrderedDict()

    @property
    def registry(self) -> Registry:
        return engine(self.settings).registry(self.settings)

    @property
    def store_url(self) -> str:
        return self.settings.store

    async def on_engine(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the engine's loop and wait for it here."""
        return await asyncio.wrap_future(_bridge.bridge().submit(coro))

    async def collections(self) -> list[CollectionSummary]:
        """Every collection of every project, found by one listing of the store."""
        return await self.on_engine(self._collections())

    async def _collections(self) -> list[CollectionSummary]:
        registry = self.registry
        counts: dict[Collection, int] = {}
        highest: dict[Collection, int] = {}
        kinds: dict[Collection, str] = {}
        async for meta in registry.store.list(""):
            parts = meta.key.split("/")
            if len(parts) < 5 or parts[2] != "artifacts":
                continue
            collection = Collection(parts[0], parts[1], parts[3])
            if parts[4:] == ["collection.json"]:
                kinds[collection] = ""
            elif len(parts) == 6 and parts[4] == "versions" and parts[5].removesuffix(".json").isdigit():
                number = int(parts[5].removesuffix(".json"))
                counts[collection] = counts.get(collection, 0) + 1
                highest[collection] = max(highest.get(collection, -1), number)

        async def summary(collection: Collection) -> CollectionSummary:
            kind = await registry.collection_type(collection)
            latest = None
            if collection in highest:
                try:
                    latest = await registry.read_version(collection, highest[collection])
                except ArtifactDeletedError:  # the newest was deleted: the highest one left, if any
                    number = await registry.latest(collection)
                    with contextlib.suppress(ArtifactNotFoundError):  # deleted meanwhile too
                        latest = None if number is None else await registry.read_version(collection, number)
                except ArtifactNotFoundError:  # removed since the listing
                    latest = None
            return CollectionSummary(collection, kind, counts.get(collection, 0), latest)

        found = await asyncio.gather(*(summary(c) for c in sorted(kinds, key=str)))
        return list(found)

    async def collection(self, collection: Collection) -> CollectionView:
        return await self.on_engine(self._collection(collection))

    async def _collection(self, collection: Collection) -> CollectionView:
        registry = self.registry
        kind = await registry.collection_type(collection)  # ArtifactNotFoundError if there is none
        records, table = await asyncio.gather(
            registry.versions(collection), AliasTable.read(registry, collection)
        )
        return CollectionView(collection, kind, tuple(records), table)

    async def version(self, collection: Collection, alias: str) -> VersionView:
        return await self.on_engine(self._version(collection, alias))

    async def _version(self, collection: Collection, alias: str) -> VersionView:
        registry = self.registry
        record = await registry.resolve(collection, alias)
        table = await AliasTable.read(registry, collection)
        return VersionView(collection, record, tuple(table.of(record.version)))

    async def entries(self, digest: str) -> EntryTable:
        """A version's entries by its manifest digest (immutable, so kept for the next page)."""
        if digest in self._manifests:
            self._manifests.move_to_end(digest)
            return self._manifests[digest]
        payload = await self.on_engine(self.registry.get_manifest_bytes(digest))
        manifest = EntryTable(payload, f"manifest {manifest_key(digest)}")
        self._manifests[digest] = manifest
        while len(self._manifests) > 1 and sum(map(len, self._manifests.values())) > _ENTRIES_KEPT:
            self._manifests.popitem(last=False)
        return manifest

    async def run(self, entity: str, project: str, run_id: str) -> RunRecord:
        return await self.on_engine(self.registry.get_run(entity, project, run_id))

    async def consumers(self, collection: Collection, number: int) -> list[tuple[str, str, str]]:
        return await self.on_engine(self.registry.consumers(collection, number))

    async def blob(self, digest: str) -> AsyncIterator[bytes]:
        """The stored bytes of one entry, chunk by chunk (each chunk read on the engine's loop)."""
        chunks = self.registry.store.stream(blob_key(digest))

        async def next_chunk() -> bytes | None:
            return await anext(chunks, None)

        try:
            while (chunk := await self.on_engine(next_chunk())) is not None:
                yield chunk
        finally:
            await self.on_engine(_close(chunks))

    async def blob_exists(self, digest: str) -> bool:
        try:
            await self.on_engine(self.registry.store.head(blob_key(digest)))
        except ObjectNotFoundError:
            return False
        return True


async def _close(chunks: AsyncIterator[bytes]) -> None:
    if isinstance(chunks, AsyncGenerator):
        await chunks.aclose()
