"""What the pages show, read from the store through the registry's read calls.

The registry's coroutines belong to the engine's loop (the bridge); the web server runs on a loop of its
own, so every read is handed to the engine and awaited from here without blocking the server. Nothing
is cached but manifests, which are immutable (named by their digest): a version logged while the
server runs shows on the next page load.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from lorry import _bridge
from lorry.errors import ArtifactDeletedError, ArtifactNotFoundError, CorruptRecordError, ObjectNotFoundError
from lorry.model.layout import Collection, CollectionKey, VersionKey, blob_key, manifest_key, parse_key
from lorry.model.names import version_alias, version_number
from lorry.registry.records import AliasTable, ArtifactRef, RunRecord, VersionRecord
from lorry.registry.registry import CollectionInfo, Registry
from lorry.session import session
from lorry.settings import Settings
from lorry.ui.entries import EntryTable

T = TypeVar("T")
# Parsed entries cost ~500 bytes each: keep the manifests being browsed, up to about 500 MB of them.
_ENTRIES_KEPT = 1_000_000


@dataclass(frozen=True, slots=True)
class Gone:
    """Why and since when a version is no longer served."""

    how: str  # "deleted" or "expired"
    at: datetime


def gone(record: VersionRecord, now: datetime | None = None) -> Gone | None:
    """``Gone`` for a deleted version, or one whose time to live has run out (even before ``lorry gc``
    has marked it deleted); None for a live one."""
    since = record.gone_since(now or datetime.now(UTC))
    if since is None:
        return None
    deleted = record.deleted_at is not None and datetime.fromisoformat(record.deleted_at) == since
    return Gone("deleted" if deleted else "expired", since)


@dataclass(frozen=True, slots=True)
class CollectionSummary:
    """One row of the collections page: ``info`` None when its ``collection.json`` is damaged
    (``damage`` says how), ``latest`` None when no version is live."""

    collection: Collection
    info: CollectionInfo | None
    versions: int
    latest: VersionRecord | None
    damage: str = ""

    @property
    def type(self) -> str:
        return self.info.type if self.info is not None else ""

    @property
    def tags(self) -> tuple[str, ...]:
        return self.info.tags if self.info is not None else ()


@dataclass(frozen=True, slots=True)
class CollectionView:
    collection: Collection
    info: CollectionInfo
    records: tuple[VersionRecord, ...]
    """Every version, oldest first, deleted and expired ones included (``gone`` tells them apart)."""
    aliases: AliasTable

    @property
    def type(self) -> str:
        return self.info.type

    @property
    def live(self) -> tuple[VersionRecord, ...]:
        now = datetime.now(UTC)
        return tuple(r for r in self.records if gone(r, now) is None)


@dataclass(frozen=True, slots=True)
class VersionView:
    """One version; ``gone`` set when it was deleted or has expired (its page then says so)."""

    collection: Collection
    record: VersionRecord
    aliases: tuple[str, ...]
    gone: Gone | None = None

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
        return session(self.settings).registry(self.settings)

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
        found: set[Collection] = set()
        async for meta in registry.store.list(""):
            match parse_key(meta.key):
                case CollectionKey(collection):
                    found.add(collection)
                case VersionKey(collection):
                    counts[collection] = counts.get(collection, 0) + 1

        async def summary(collection: Collection) -> CollectionSummary:
            try:
                info = await registry.collection_info(collection)
            except CorruptRecordError as exc:  # one damaged record must not hide the others
                return CollectionSummary(collection, None, counts.get(collection, 0), None, str(exc))
            latest = None
            number = await registry.latest(collection)  # the highest live version: gone ones skipped
            if number is not None:
                try:
                    latest = await registry.read_version(collection, number)
                except ArtifactNotFoundError:  # deleted or removed since
                    latest = None
            return CollectionSummary(collection, info, counts.get(collection, 0), latest)

        return list(await asyncio.gather(*(summary(c) for c in sorted(found, key=str))))

    async def collection(self, collection: Collection) -> CollectionView:
        return await self.on_engine(self._collection(collection))

    async def _collection(self, collection: Collection) -> CollectionView:
        registry = self.registry
        info = await registry.collection_info(collection)  # ArtifactNotFoundError if there is none
        records, table = await asyncio.gather(
            registry.versions(collection, include_gone=True), registry.alias_table(collection)
        )
        return CollectionView(collection, info, tuple(records), table)

    async def version(self, collection: Collection, alias: str, *, include_gone: bool = False) -> VersionView:
        """The version ``alias`` names; a deleted or expired one raises ``ArtifactDeletedError``, or
        with ``include_gone`` (and named by its number) comes back with ``gone`` set."""
        return await self.on_engine(self._version(collection, alias, include_gone))

    async def _version(self, collection: Collection, alias: str, include_gone: bool) -> VersionView:
        registry = self.registry
        try:
            record = await registry.resolve(collection, alias)
        except ArtifactDeletedError:
            number = version_number(alias)
            if not include_gone or number is None:
                raise
            record = await registry.read_version(collection, number, include_gone=True)
            return VersionView(collection, record, (), gone(record))
        table = await registry.alias_table(collection)
        return VersionView(collection, record, tuple(table.of(record.version)))

    async def previous_live(self, collection: Collection, number: int, looked_at: int = 100) -> int | None:
        """The nearest live version below ``number``, among the ``looked_at`` numbers below it."""
        return await self.on_engine(self._previous_live(collection, number, looked_at))

    async def _previous_live(self, collection: Collection, number: int, looked_at: int) -> int | None:
        for candidate in range(number - 1, max(number - 1 - looked_at, -1), -1):
            try:
                await self.registry.read_version(collection, candidate)
            except ArtifactNotFoundError:  # deleted, expired, or never committed
                continue
            return candidate
        return None

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

    async def states(self, refs: Sequence[ArtifactRef]) -> dict[ArtifactRef, Gone | str | None]:
        """For each version named: None if live, ``Gone`` if deleted or expired, "missing" if absent."""
        return await self.on_engine(self._states(refs))

    async def _states(self, refs: Sequence[ArtifactRef]) -> dict[ArtifactRef, Gone | str | None]:
        async def one(ref: ArtifactRef) -> Gone | str | None:
            where = Collection(ref.entity, ref.project, ref.name)
            try:
                return gone(await self.registry.read_version(where, ref.version, include_gone=True))
            except ArtifactNotFoundError:
                return "missing"

        found = await asyncio.gather(*(one(ref) for ref in refs))
        return dict(zip(refs, found, strict=True))

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
