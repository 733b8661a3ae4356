"""Versions, aliases, lineage and runs as records on a ``Store``.

Layout (the README draws it too)::

    blobs/blake3/<2 hex>/<hex>                        file contents, content-addressed, immutable
    manifests/blake3/<2 hex>/<hex>.json               one version's entries, immutable
    <entity>/<project>/artifacts/<name>/collection.json   the collection's type
    <entity>/<project>/artifacts/<name>/head.json         {"count": N}: versions 0..N-1 are indexed
    <entity>/<project>/artifacts/<name>/versions/<N>.json the version record; creating it IS the commit
    <entity>/<project>/artifacts/<name>/digests/<hex>.json {"version": N}: which version holds a manifest
    <entity>/<project>/artifacts/<name>/aliases/<alias>.json {"version": N}
    <entity>/<project>/artifacts/<name>/consumers/<N>/<entity>/<project>/<run id>   lineage, reverse
    <entity>/<project>/runs/<run id>.json             the run record

``lorry.model.layout`` builds and reads these keys; nothing else spells them.

The commit protocol, and why it is safe with many writers, is in ``commit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from lorry.errors import (
    ArtifactDeletedError,
    ArtifactNotFoundError,
    ConflictError,
    CorruptRecordError,
    ObjectNotFoundError,
    RunNotFoundError,
    UsageError,
    ValidationError,
)
from lorry.model.digest import digest_bytes, is_content_digest
from lorry.model.layout import (
    AliasKey,
    Collection,
    CollectionKey,
    VersionKey,
    alias_key,
    aliases_prefix,
    collection_key,
    collections_prefix,
    consumer_key,
    consumer_of,
    consumers_prefix,
    digest_key,
    head_key,
    manifest_key,
    parse_key,
    run_key,
    runs_prefix,
    shard_key,
    shards_prefix,
    version_key,
    versions_prefix,
)
from lorry.model.manifest import Manifest
from lorry.model.names import LATEST, version_number
from lorry.model.retention import RetentionPolicy
from lorry.registry.records import AliasTable, RunRecord, VersionRecord, dump_json, load_json, tags_of
from lorry.registry.safety import SingleWriterStore, require_conditional_writes
from lorry.storage.base import CREATE, OVERWRITE, Create, PutMode, Store, Update

_CAS_ATTEMPTS = 64
_LATEST_BATCH = 16  # version records read at once when looking for the newest live one below deleted

log = logging.getLogger("lorry")


class Registry:
    """The records of one store. Stateless apart from the store: safe to share between tasks."""

    def __init__(self, store: Store, *, single_writer: bool = False) -> None:
        """``single_writer``: the user promises one writer at a time (see ``safety``); preconditions
        are then checked here, not trusted to the server."""
        self.store: Store = SingleWriterStore(store) if single_writer else store

    # -- manifests ----------------------------------------------------------------------------------

    async def put_manifest(self, manifest: Manifest) -> None:
        with contextlib.suppress(ConflictError):  # content-addressed: the same bytes are already there
            payload = manifest.to_bytes()  # first: it takes the digest on the way
            await self.store.put(manifest_key(manifest.digest), payload, CREATE)

    async def get_manifest(self, digest: str) -> Manifest:
        payload = await self.get_manifest_bytes(digest)
        return Manifest.from_bytes(payload, name=f"manifest {manifest_key(digest)}")

    async def get_manifest_bytes(self, digest: str) -> bytes:
        """The stored form of a manifest, checked against its digest and size limit but not parsed
        (a reader that needs a few of a million entries parses only those)."""
        key = manifest_key(digest)
        try:  # read at most one byte past the limit: a huge manifest is refused, not read whole
            payload = await self.store.get(key, 0, Manifest.MAX_BYTES + 1)
        except ObjectNotFoundError as exc:
            raise CorruptRecordError(f"manifest {key} is missing from the store") from exc
        if len(payload) > Manifest.MAX_BYTES:
            raise CorruptRecordError(
                f"manifest {key} is larger than {Manifest.MAX_BYTES} bytes, the most lorry reads"
            )
        if digest_bytes(payload) != digest:
            raise CorruptRecordError(f"manifest {key} does not match its digest")
        return payload

    # -- committing versions ------------------------------------------------------------------------

    async def commit(
        self,
        collection: Collection,
        artifact_type: str,
        manifest: Manifest,
        *,
        created_at: str,
        logged_by: str | None,
        description: str | None,
        metadata: dict[str, Any],
        tags: tuple[str, ...] = (),
        ttl: float | None = None,
    ) -> tuple[VersionRecord, bool]:
        """Make ``manifest`` a version of ``collection``; return it and whether it is new.

        Invariant: for every N below ``head.count``, ``digests/<manifest of N>`` exists. So:

        1. a digest index hit means the content already is a version: return that one;
        2. otherwise try to create ``versions/N`` for N = head.count, head.count + 1, ... The create is
           exclusive (If-None-Match / link(2)), so no two writers get one number and numbers have no
           gaps. Each version found on the way is read: if it holds the same manifest it is ours
           (a concurrent writer of identical content won), and its index entry is (re)written, which
           also repairs what a writer that crashed after its create left undone;
        3. after the create, write the index entry, then move head forward by compare-and-swap.

        A reader sees a version once its record exists, and that record is created only after its
        manifest and every blob are stored, so it never sees half a version.

        Deleted (or expired) versions keep their records, so their numbers are never given again, but
        they hold nothing: content equal to a deleted version makes a new version. The index may name a
        deleted version while a later live one holds the same content (a walker that read the record
        before the delete rewrote the entry after the later commit): then the versions between the
        deleted one and the head are searched, which only happens for content that was deleted.
        """
        await require_conditional_writes(self.store)
        await self._check_type(collection, artifact_type)
        # Head before index: head passes N only after N's index entry is written, so an index entry
        # missing now belongs to a version at or above the head read here, which the walk will meet.
        # (Read the other way round, a writer of the same content could commit in between and be missed.)
        head = await self._head_count(collection)
        index = digest_key(collection, manifest.digest)
        existing = await self._read_index(collection, manifest.digest)
        if existing is not None and not _gone(existing):
            return existing, False
        if existing is not None:
            live = await self._live_holder(collection, manifest.digest, range(existing.version + 1, head))
            if live is not None:
                await self.store.put(index, _pointer(live.version))
                return live, False

        def record_for(number: int) -> VersionRecord:
            return VersionRecord(
                version=number,
                manifest=manifest.digest,
                type=artifact_type,
                size=manifest.size,
                file_count=len(manifest),
                created_at=created_at,
                logged_by=logged_by,
                description=description,
                metadata=metadata,
                tags=tags,
                ttl=ttl,
            )

        number = head
        while True:
            record = record_for(number)
            try:
                await self.store.put(version_key(collection, number), dump_json(record.to_json()), CREATE)
                break
            except ConflictError:
                other = await self.read_version(collection, number, include_gone=True)
                if not _gone(other):  # a deleted version's content must not be found through the index
                    await self.store.put(digest_key(collection, other.manifest), _pointer(number))
                    if other.manifest == manifest.digest:
                        await self._advance_head(collection, number + 1)
                        return other, False
                number += 1
        await self.store.put(index, _pointer(number))
        await self._advance_head(collection, number + 1)
        return record, True

    async def _live_holder(self, collection: Collection, digest: str, numbers: range) -> VersionRecord | None:
        """The live version among ``numbers`` that holds ``digest``, read ``_LATEST_BATCH`` at a time."""

        async def holder(number: int) -> VersionRecord | None:
            try:
                record = await self.read_version(collection, number)
            except ArtifactNotFoundError:  # deleted or expired
                return None
            return record if record.manifest == digest else None

        for start in range(0, len(numbers), _LATEST_BATCH):
            batch = numbers[start : start + _LATEST_BATCH]
            found = [r for r in await asyncio.gather(*map(holder, batch)) if r is not None]
            if found:
                return found[0]
        return None

    async def _check_type(self, collection: Collection, artifact_type: str) -> None:
        """A collection keeps the type of its first version. Read first: after the first commit that
        is the one request a commit spends here."""
        key = collection_key(collection)
        try:
            existing = _field_str(load_json(await self.store.get(key), key), "type", key)
        except ObjectNotFoundError:
            try:
                await self.store.put(key, dump_json({"type": artifact_type}), CREATE)
                return
            except ConflictError:  # created meanwhile by another writer: check against theirs
                existing = _field_str(load_json(await self.store.get(key), key), "type", key)
        if existing != artifact_type and await self.latest(collection) is None:
            # every version was deleted: the name is free again, for a version of any type
            await self.update_collection(collection, lambda doc: {**doc, "type": artifact_type})
        else:
            _same_type(collection, existing, artifact_type)

    async def refuse_other_type(self, collection: Collection, artifact_type: str) -> None:
        """Refuse a version of another type than its collection's before anything is stored for it
        (the commit checks again: the collection may be created meanwhile)."""
        key = collection_key(collection)
        try:
            existing = _field_str(load_json(await self.store.get(key), key), "type", key)
        except ObjectNotFoundError:
            return
        if existing != artifact_type and await self.latest(collection) is None:
            return  # every version was deleted: the name is free for any type
        _same_type(collection, existing, artifact_type)

    async def _read_index(self, collection: Collection, digest: str) -> VersionRecord | None:
        key = digest_key(collection, digest)
        try:
            number = pointer_version(await self.store.get(key), key)
        except ObjectNotFoundError:
            return None
        record = await self.read_version(collection, number, include_gone=True)
        if record.manifest != digest:
            raise CorruptRecordError(f"digest index {key} points to v{number}, which holds other content")
        return record

    async def _head_count(self, collection: Collection) -> int:
        key = head_key(collection)
        try:
            doc = load_json(await self.store.get(key), key)
        except ObjectNotFoundError:
            return 0
        count = doc.get("count")
        if not isinstance(count, int) or count < 0:
            raise CorruptRecordError(f"record {key} has no valid 'count'")
        return count

    async def _advance_head(self, collection: Collection, count: int) -> None:
        key = head_key(collection)
        for _ in range(_CAS_ATTEMPTS):
            mode: PutMode
            try:
                meta = await self.store.head(key)
                current = await self._head_count(collection)
                if current >= count:
                    return
                mode = Update(meta.etag)
            except ObjectNotFoundError:
                mode = CREATE
            try:
                await self.store.put(key, dump_json({"count": count}), mode)
                return
            except ConflictError:
                continue
        # Losing this race many times only means head lags; readers probe past it.

    # -- reading versions -----------------------------------------------------------------------------

    async def read_version(
        self, collection: Collection, number: int, *, include_gone: bool = False
    ) -> VersionRecord:
        """The record of ``v<number>``; ``ArtifactNotFoundError`` if there is none,
        ``ArtifactDeletedError`` if it was deleted or expired (unless ``include_gone``)."""
        key = version_key(collection, number)
        try:
            payload = await self.store.get(key)
        except ObjectNotFoundError as exc:
            raise ArtifactNotFoundError(f"artifact {collection}:v{number} does not exist") from exc
        record = VersionRecord.from_bytes(payload, key)
        if record.version != number:
            raise CorruptRecordError(f"record {key} says it is version {record.version}")
        if not include_gone:
            check_live(collection, record)
        return record

    async def _read_version_for_update(
        self, collection: Collection, number: int
    ) -> tuple[VersionRecord, str]:
        """The record and the etag to compare-and-swap it against. The HEAD comes first: if the
        record changes between the two calls, the stale etag makes the swap fail, never succeed."""
        try:
            etag = (await self.store.head(version_key(collection, number))).etag
        except ObjectNotFoundError as exc:
            raise ArtifactNotFoundError(f"artifact {collection}:v{number} does not exist") from exc
        return await self.read_version(collection, number, include_gone=True), etag

    async def latest(self, collection: Collection) -> int | None:
        """The highest live version number (deleted and expired versions skipped), or None."""
        top = await self._highest(collection)

        async def live(number: int) -> bool:
            try:
                await self.read_version(collection, number)
            except ArtifactNotFoundError:  # deleted, expired, or never created
                return False
            return True

        # The newest version is nearly always live: one read. Below deleted ones, read in batches.
        batch = 1
        while top >= 0:
            numbers = range(top, max(top - batch, -1), -1)
            for number, is_live in zip(numbers, await asyncio.gather(*map(live, numbers)), strict=True):
                if is_live:
                    return number
            top -= batch
            batch = _LATEST_BATCH
        return None

    async def _highest(self, collection: Collection) -> int:
        """The highest version number ever given (live or not), or -1."""
        number = await self._head_count(collection)
        if number > 0 and not await self._exists(version_key(collection, number - 1)):
            number = max(await self._version_numbers(collection), default=-1) + 1
        while await self._exists(version_key(collection, number)):
            number += 1
        return number - 1

    async def resolve(self, collection: Collection, alias: str) -> VersionRecord:
        """``latest``, ``vN`` or a user alias → its version record."""
        number = version_number(alias)
        if alias == LATEST:
            number = await self.latest(collection)
            if number is None:
                if not await self.exists(collection):
                    raise ArtifactNotFoundError(f"artifact {collection} does not exist")
                if await self._highest(collection) >= 0:
                    raise ArtifactDeletedError(f"every version of artifact {collection} was deleted")
                raise ArtifactNotFoundError(f"artifact {collection} has no versions")
        elif number is None:
            key = alias_key(collection, alias)
            try:
                number = pointer_version(await self.store.get(key), key)
            except ObjectNotFoundError as exc:
                if not await self.exists(collection):
                    raise ArtifactNotFoundError(f"artifact {collection} does not exist") from exc
                raise ArtifactNotFoundError(f"artifact {collection} has no alias {alias!r}") from exc
        try:
            record = await self.read_version(collection, number)
        except ArtifactDeletedError as exc:
            if alias != LATEST and version_number(alias) is None:
                raise ArtifactDeletedError(
                    f"alias {alias!r} of {collection} names v{number}, which is gone: {exc}"
                ) from None
            raise
        except ArtifactNotFoundError:
            if not await self.exists(collection):
                raise ArtifactNotFoundError(f"artifact {collection} does not exist") from None
            if alias != LATEST and version_number(alias) is None:  # the alias record names no version
                raise ArtifactNotFoundError(
                    f"alias {alias!r} of {collection} ({alias_key(collection, alias)}) names "
                    f"v{number}, which does not exist"
                ) from None
            raise
        return record

    async def exists(self, collection: Collection) -> bool:
        return await self._exists(collection_key(collection))

    async def collection_type(self, collection: Collection) -> str:
        return (await self.collection_info(collection)).type

    async def collection_info(self, collection: Collection) -> CollectionInfo:
        """The collection's type, description and tags (``collection.json``)."""
        key = collection_key(collection)
        try:
            return CollectionInfo.from_json(load_json(await self.store.get(key), key), key)
        except ObjectNotFoundError as exc:
            raise ArtifactNotFoundError(f"artifact {collection} does not exist") from exc

    async def update_collection(
        self, collection: Collection, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> CollectionInfo:
        """Apply ``change`` to the newest ``collection.json`` by compare-and-swap."""
        key = collection_key(collection)
        await require_conditional_writes(self.store)
        for _ in range(_CAS_ATTEMPTS):
            try:
                etag = (await self.store.head(key)).etag
                doc = load_json(await self.store.get(key), key)
            except ObjectNotFoundError as exc:
                raise ArtifactNotFoundError(f"artifact {collection} does not exist") from exc
            updated = change(dict(doc))
            info = CollectionInfo.from_json(updated, key)
            if updated == doc:
                return info
            try:
                await self.store.put(key, dump_json(updated), Update(etag))
                return info
            except ConflictError:
                continue
        raise ConflictError(f"artifact {collection} kept changing; its update was not saved")

    async def versions(self, collection: Collection, *, include_gone: bool = False) -> list[VersionRecord]:
        """Every version, oldest first; deleted and expired ones only with ``include_gone``."""
        numbers = await self._version_numbers(collection)
        records = await asyncio.gather(
            *(self.read_version(collection, n, include_gone=True) for n in numbers)
        )
        return [r for r in records if include_gone or not _gone(r)]

    # -- deleting -------------------------------------------------------------------------------------

    async def delete_version(
        self, collection: Collection, number: int, *, delete_aliases: bool = False
    ) -> VersionRecord:
        """Delete ``v<number>``: set ``deleted_at`` on its record by compare-and-swap (that write IS
        the delete), then remove the alias pointers that name it. Refused while user aliases name it,
        unless ``delete_aliases``. Idempotent: deleting a deleted version changes nothing."""
        named = sorted(a for a, n in (await self.aliases(collection)).items() if n == number)
        if named and not delete_aliases:
            raise UsageError(
                f"artifact {collection}:v{number} has the alias(es) {', '.join(named)}; remove them "
                "first, or pass delete_aliases=True"
            )
        stamp = _now_iso()

        def tombstone(current: VersionRecord) -> VersionRecord:
            return current if current.deleted_at is not None else replace(current, deleted_at=stamp)

        record = await self.update_version(collection, number, tombstone, include_gone=True)
        # Read again: an alias moved onto the version while it was being deleted goes with it.
        for alias, target in (await self.aliases(collection)).items():
            if target == number:
                await self.remove_alias(collection, number, alias)
        return record

    async def _version_numbers(self, collection: Collection) -> list[int]:
        numbers = []
        async for meta in self.store.list(versions_prefix(collection)):
            if isinstance(key := parse_key(meta.key), VersionKey) and key.collection == collection:
                numbers.append(key.number)
        return sorted(numbers)

    async def collections(self, entity: str, project: str) -> list[tuple[str, str]]:
        """(name, type) of every collection in a project that has a live version, by name."""
        return [(name, info.type) for name, info in await self.collection_infos(entity, project)]

    async def collection_infos(self, entity: str, project: str) -> list[tuple[str, CollectionInfo]]:
        """(name, info) of every collection in a project that has a live version (a collection whose
        versions were all deleted is gone from listings), by name."""
        names = []
        async for meta in self.store.list(collections_prefix(entity, project)):
            if isinstance(key := parse_key(meta.key), CollectionKey):
                names.append(key.collection.name)

        async def one(name: str) -> tuple[str, CollectionInfo] | None:
            collection = Collection(entity, project, name)
            info, latest = await asyncio.gather(self.collection_info(collection), self.latest(collection))
            return None if latest is None else (name, info)

        found = await asyncio.gather(*(one(name) for name in sorted(names)))
        return [item for item in found if item is not None]

    # -- mutable parts: description, metadata, aliases ------------------------------------------------

    async def update_version(
        self,
        collection: Collection,
        number: int,
        change: Callable[[VersionRecord], VersionRecord],
        *,
        include_gone: bool = False,
    ) -> VersionRecord:
        """Apply ``change`` to the latest state of the record, by compare-and-swap, retrying on races
        so that two concurrent updates of different fields both survive. A deleted or expired version
        is refused (``ArtifactDeletedError``) unless ``include_gone``."""
        await require_conditional_writes(self.store)
        for _ in range(_CAS_ATTEMPTS):
            record, etag = await self._read_version_for_update(collection, number)
            if not include_gone:
                check_live(collection, record)
            updated = change(record)
            if updated == record:
                return record
            try:
                await self.store.put(
                    version_key(collection, number), dump_json(updated.to_json()), Update(etag)
                )
                return updated
            except ConflictError:
                continue
        raise ConflictError(f"artifact {collection}:v{number} kept changing; its update was not saved")

    async def set_aliases(self, collection: Collection, number: int, aliases: Iterable[str]) -> None:
        for alias in aliases:
            if alias != LATEST:  # latest is derived: always the highest version
                await self.store.put(alias_key(collection, alias), _pointer(number), OVERWRITE)

    async def remove_alias(self, collection: Collection, number: int, alias: str) -> None:
        """Remove ``alias`` if it still names ``number`` (if it moved meanwhile, it is not ours)."""
        key = alias_key(collection, alias)
        try:
            if pointer_version(await self.store.get(key), key) == number:
                await self.store.delete(key)
        except ObjectNotFoundError:
            pass

    async def alias_table(self, collection: Collection) -> AliasTable:
        """The collection's aliases and its newest live version, for the aliases of many versions."""
        aliases, latest = await asyncio.gather(self.aliases(collection), self.latest(collection))
        return AliasTable(aliases, latest)

    async def aliases(self, collection: Collection) -> dict[str, int]:
        """Every user alias of the collection and the version it names."""
        found: dict[str, int] = {}
        async for meta in self.store.list(aliases_prefix(collection)):
            if not isinstance(key := parse_key(meta.key), AliasKey):
                continue
            try:
                found[key.alias] = pointer_version(await self.store.get(meta.key), meta.key)
            except ObjectNotFoundError:
                continue  # removed while listing
            except CorruptRecordError as exc:
                # One damaged pointer must not hide every version of the collection; `lorry verify`
                # and resolving that alias by name still report it.
                log.warning("skipping alias record: %s", exc)
        return found

    # -- distributed artifacts: shards waiting to become one version -----------------------------------

    async def start_shard(self, collection: Collection, distributed_id: str, shard: str, run_id: str) -> None:
        """Record that ``shard`` was started, before any of its files is stored: if its process dies,
        the shard is seen as missing, never taken as complete."""
        doc = {"shard": shard, "run": run_id, "state": "started", "started_at": _now_iso()}
        await self.store.put(shard_key(collection, distributed_id, shard), dump_json(doc), CREATE)

    async def store_shard(
        self, collection: Collection, distributed_id: str, shard: str, run_id: str, manifest: str
    ) -> None:
        """The shard's files and manifest are stored: record it (after them, as a commit is)."""
        key = shard_key(collection, distributed_id, shard)
        doc = {
            "shard": shard,
            "run": run_id,
            "state": "stored",
            "manifest": manifest,
            "stored_at": _now_iso(),
        }
        await self.store.put(key, dump_json(doc), OVERWRITE)

    async def shards(self, collection: Collection, distributed_id: str) -> list[ShardRecord]:
        keys = [meta.key async for meta in self.store.list(shards_prefix(collection, distributed_id))]
        found = []
        for key in sorted(keys):
            with contextlib.suppress(ObjectNotFoundError):  # dropped since the listing
                found.append(ShardRecord.from_json(load_json(await self.store.get(key), key), key))
        return found

    async def drop_shards(self, records: Iterable[ShardRecord]) -> None:
        for record in records:
            await self.store.delete(record.key)

    # -- runs and lineage -----------------------------------------------------------------------------

    async def put_run(self, record: RunRecord, *, create: bool = False) -> None:
        mode: PutMode = Create() if create else OVERWRITE
        await self.store.put(
            run_key(record.entity, record.project, record.id), dump_json(record.to_json()), mode
        )

    async def get_run(self, entity: str, project: str, run_id: str) -> RunRecord:
        key = run_key(entity, project, run_id)
        try:
            return RunRecord.from_bytes(await self.store.get(key), key)
        except ObjectNotFoundError as exc:
            raise RunNotFoundError(f"run {entity}/{project}/{run_id} does not exist") from exc

    async def runs(self, entity: str, project: str) -> list[RunRecord]:
        """Every run recorded in a project."""
        listed = self.store.list(runs_prefix(entity, project))
        keys = [meta.key async for meta in listed if meta.key.endswith(".json")]

        async def one(key: str) -> RunRecord | None:
            try:
                return RunRecord.from_bytes(await self.store.get(key), key)
            except ObjectNotFoundError:
                return None

        return [r for r in await asyncio.gather(*map(one, keys)) if r is not None]

    async def add_consumer(self, collection: Collection, number: int, run: RunRecord) -> None:
        key = consumer_key(collection, number, run.entity, run.project, run.id)
        await self.store.put(key, b"", OVERWRITE)

    async def consumers(self, collection: Collection, number: int) -> list[tuple[str, str, str]]:
        prefix = consumers_prefix(collection, number)
        return [run async for meta in self.store.list(prefix) if (run := consumer_of(prefix, meta.key))]

    # -- keys and helpers -----------------------------------------------------------------------------

    _digest_key = staticmethod(digest_key)

    async def _exists(self, key: str) -> bool:
        try:
            await self.store.head(key)
        except ObjectNotFoundError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """What ``collection.json`` holds: the type, and the description and tags users give it."""

    type: str
    description: str | None = None
    tags: tuple[str, ...] = ()
    retention: RetentionPolicy | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any], key: str) -> CollectionInfo:
        description = doc.get("description")
        if description is not None and not isinstance(description, str):
            raise CorruptRecordError(f"record {key} has an invalid 'description'")
        tags = tags_of(doc, key)
        retention = doc.get("retention")
        try:
            policy = RetentionPolicy.from_json(retention) if isinstance(retention, dict) else None
        except ValidationError as exc:
            raise CorruptRecordError(f"record {key} has an invalid 'retention': {exc}") from exc
        return cls(type=_field_str(doc, "type", key), description=description, tags=tags, retention=policy)


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """One process's part of a distributed artifact: started, then stored with its manifest."""

    key: str
    shard: str
    run: str
    started_at: str | None
    manifest: str | None
    """None while the shard is not stored (its process is still at work, or died)."""

    @classmethod
    def from_json(cls, doc: dict[str, Any], key: str) -> ShardRecord:
        manifest = doc.get("manifest")
        if manifest is not None and not is_content_digest(manifest):
            raise CorruptRecordError(f"record {key} names an invalid manifest digest")
        started = doc.get("started_at")
        return cls(
            key=key,
            shard=_field_str(doc, "shard", key),
            run=_field_str(doc, "run", key),
            started_at=started if isinstance(started, str) else None,
            manifest=manifest if doc.get("state") == "stored" else None,
        )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _gone(record: VersionRecord) -> bool:
    return record.gone_since(datetime.now(UTC)) is not None


def check_live(collection: Collection, record: VersionRecord) -> None:
    """Raise ``ArtifactDeletedError`` if the version was deleted or has expired."""
    now = datetime.now(UTC)
    if record.gone_since(now) is None:
        return
    name = f"artifact {collection}:v{record.version}"
    if record.deleted_at is not None:
        raise ArtifactDeletedError(f"{name} was deleted at {record.deleted_at}")
    raise ArtifactDeletedError(f"{name} expired at {record.expires_at()} (its ttl ran out)")


def _same_type(collection: Collection, existing: str, artifact_type: str) -> None:
    if existing != artifact_type:
        raise ValidationError(
            f"artifact {collection} has type {existing!r}; it cannot take a version of type {artifact_type!r}"
        )


def _pointer(number: int) -> bytes:
    return dump_json({"version": number})


def pointer_version(payload: bytes, key: str) -> int:
    version = load_json(payload, key).get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise CorruptRecordError(f"record {key} has no valid 'version'")
    return version


def _field_str(doc: dict[str, Any], name: str, key: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise CorruptRecordError(f"record {key} has no valid {name!r}")
    return value
