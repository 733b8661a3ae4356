"""Publishing a version: what happens to a logged artifact after ``log_artifact`` returns.

Its files are stored (here or by the helper process) and its manifest written, in parallel with other
logs; then, in the collection's order (the ``Assigner``), the version is committed, guarded against a
concurrent gc (the fence in ``registry.maintenance``), its aliases are set and the run's record gains
it. A distributed artifact's shard is stored the same way and recorded as a shard, not committed.
``artifact.py`` builds what is published (a ``LogPlan``) and shows what was.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lorry.errors import ArtifactFailedError, IntegrityError, ObjectNotFoundError
from lorry.model.layout import Collection, blob_key
from lorry.model.manifest import Entry, Manifest, Rows
from lorry.model.names import validate_tags, version_alias
from lorry.registry.assigner import Ticket
from lorry.registry.maintenance import SETTLE, guard_commit, read_fence, repair_if_gc_ran
from lorry.registry.records import ArtifactRef, VersionRecord
from lorry.registry.registry import Registry
from lorry.session import Session
from lorry.settings import MIN_MEMORY, Settings
from lorry.storage.base import Store
from lorry.transfer.engine import Counters, gather_all
from lorry.transfer.journal import Journal
from lorry.transfer.offload import helper, helpers_for, offload_now, wants_helper
from lorry.transfer.upload import PART_FILES, PARTS_IN_FLIGHT, FileSource, store_files

log = logging.getLogger("lorry")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class LogPlan:
    """Everything one ``log_artifact`` call needs, frozen at the moment of the call."""

    run_id: str
    record_output: Callable[[ArtifactRef], Awaitable[None]]
    """Adds the version to the logging run's outputs (its record on the store)."""
    settings: Settings
    collection: Collection
    artifact_type: str
    files: tuple[FileSource, ...]
    refs: tuple[Entry, ...]
    description: str | None
    metadata: dict[str, Any]
    aliases: tuple[str, ...]
    counters: Counters
    staging: Path | None
    tags: tuple[str, ...] = ()
    ttl: float | None = None
    incremental: bool = False


async def publish(sess: Session, plan: LogPlan, ticket: Ticket) -> VersionRecord:
    """Store the files and the manifest (in parallel with other artifacts), then commit in turn:
    ``ticket`` is this log's place in its collection's order (``Assigner.draw``), released here."""
    try:
        store = sess.store(plan.settings.store, plan.settings.store_options)
        registry = sess.registry(plan.settings)
        fence = await read_fence(store)  # before anything stored is looked at: see maintenance.py
        await registry.refuse_other_type(plan.collection, plan.artifact_type)  # before any upload
        rows = await _store_files(sess, store, plan, plan.counters)
        for ref in plan.refs:
            rows.add(ref)
        manifest = Manifest.of_rows(rows)
        del rows
        if not plan.incremental:
            await registry.put_manifest(manifest)

        async def restore() -> None:  # a gc ran meanwhile: store again whatever it removed
            await _store_files(sess, store, plan, Counters())
            await _check_carried(store, manifest, plan.files)
            await registry.put_manifest(manifest)

        async with sess.assigner.turn(ticket):
            if plan.incremental:  # on top of the newest version, read in turn: after earlier logs
                manifest = await _on_latest(registry, plan.collection, manifest)
                await registry.put_manifest(manifest)
            fence = await guard_commit(store, fence, restore)
            started = time.monotonic()
            record, created = await registry.commit(
                plan.collection,
                plan.artifact_type,
                manifest,
                created_at=now_iso(),
                logged_by=plan.run_id,
                description=plan.description,
                metadata=plan.metadata,
                tags=plan.tags,
                ttl=plan.ttl,
            )
            if time.monotonic() - started > SETTLE / 2:
                await repair_if_gc_ran(store, fence, restore)
            if not created and not set(plan.tags) <= set(record.tags):  # the same content, logged with tags
                record = await registry.update_version(
                    plan.collection,
                    record.version,
                    lambda r: replace(r, tags=validate_tags([*r.tags, *plan.tags])),
                )
            await registry.set_aliases(plan.collection, record.version, plan.aliases)
        if not created:
            _warn_not_applied(plan, record)
        await plan.record_output(
            ArtifactRef(plan.collection.entity, plan.collection.project, plan.collection.name, record.version)
        )
    except Exception as exc:
        raise ArtifactFailedError(f"logging artifact {plan.collection} failed: {exc}") from exc
    finally:
        await sess.assigner.release(ticket)
        if plan.staging is not None:  # logged or failed, an artifact is never logged again
            await sess.engine.in_thread(shutil.rmtree, plan.staging, True)
    return record


async def store_shard(sess: Session, plan: LogPlan, distributed_id: str, shard: str) -> None:
    """Store one shard's files and manifest, then record the shard as stored (guarded against gc as a
    commit is: see ``publish``)."""
    try:
        store = sess.store(plan.settings.store, plan.settings.store_options)
        registry = sess.registry(plan.settings)
        fence = await read_fence(store)
        rows = await _store_files(sess, store, plan, plan.counters)
        for ref in plan.refs:
            rows.add(ref)
        manifest = Manifest.of_rows(rows)
        del rows
        await registry.put_manifest(manifest)

        async def restore() -> None:
            await _store_files(sess, store, plan, Counters())
            await registry.put_manifest(manifest)

        fence = await guard_commit(store, fence, restore)
        started = time.monotonic()
        await registry.store_shard(plan.collection, distributed_id, shard, plan.run_id, manifest.digest)
        if time.monotonic() - started > SETTLE / 2:
            await repair_if_gc_ran(store, fence, restore)
    except Exception as exc:
        raise ArtifactFailedError(f"storing shard {shard} of {plan.collection} failed: {exc}") from exc
    finally:
        if plan.staging is not None:
            await sess.engine.in_thread(shutil.rmtree, plan.staging, True)


async def _on_latest(registry: Registry, collection: Collection, changes: Manifest) -> Manifest:
    """An incremental log: the newest live version's entries, with ``changes`` on top."""
    number = await registry.latest(collection)
    if number is None:
        return changes
    base = await registry.get_manifest((await registry.read_version(collection, number)).manifest)
    return Manifest([*(e for path, e in base.items() if path not in changes), *changes.values()])


async def _check_carried(store: Store, manifest: Manifest, files: Sequence[FileSource]) -> None:
    """After a gc ran during a log: the blobs of entries carried from an earlier version (which this
    log did not store) must still be there; a gc removes them only once that version is deleted."""
    mine = {f.path for f in files}
    for entry in manifest.values():
        if entry.ref is None and entry.digest is not None and entry.path not in mine:
            try:
                await store.head(blob_key(entry.digest))
            except ObjectNotFoundError:
                raise IntegrityError(
                    f"entry {entry.path!r} came from a version that was deleted, and gc removed its "
                    "content; add the file again"
                ) from None


async def _store_files(sess: Session, store: Store, plan: LogPlan, counters: Counters) -> Rows:
    """The files' rows of the manifest, stored here or by the helper process (see
    ``transfer/offload.py``; chosen again for each part, as the caller may have come to wait for it),
    a part of ``PART_FILES`` files at a time: what is held for the files on the way, here and in the
    helper, stays the same whatever their number."""
    files = plan.files
    counters.files_total += len(files)
    counters.bytes_total += sum(f.stamp.size for f in files)
    offloaded = wants_helper(plan.settings, files, store)
    journal = Journal(plan.settings.cache_dir)
    rows = Rows()
    # Helpers take parts in turn, each with PARTS_IN_FLIGHT of its own; files are spread evenly over
    # them (fewer than HELPERS * PART_FILES files make smaller parts, not one full part and a rest).
    helpers = helpers_for(files) if offloaded else 1
    window = asyncio.Semaphore(PARTS_IN_FLIGHT * helpers)
    size = max(1, min(PART_FILES, -(-len(files) // helpers)))
    # The memory budget is the caller's, shared by its helpers: each would otherwise hold a whole one.
    shared = replace(plan.settings, max_memory=max(MIN_MEMORY, plan.settings.max_memory // helpers))

    async def store_part(start: int) -> None:
        async with window:
            part = files[start : start + size]
            if offloaded and await offload_now(plan.settings, helpers, start // size):
                digests = await helper(start // size).store_files(shared, part, counters, sess.retries)
            else:
                digests = await store_files(sess.engine, store, part, counters, journal)
        for source, digest in zip(part, digests, strict=True):
            rows.add_file(source.path, digest, source.stamp.size)

    await gather_all(store_part(start) for start in range(0, len(files), size))
    return rows


def _warn_not_applied(plan: LogPlan, record: VersionRecord) -> None:
    """Content equal to an existing version makes no new version, and that version keeps its own
    description and metadata (a version is not changed by another log): say so if others were given."""
    given = (
        ("description", plan.description, record.description),
        ("metadata", plan.metadata, record.metadata),
    )
    dropped = [what for what, asked, kept in given if asked not in (None, {}) and asked != kept]
    if dropped:
        log.warning(
            "artifact %s:%s already holds this content: no new version was made, and the %s given "
            "were not applied (the version keeps its own; change them with save())",
            plan.collection,
            version_alias(record.version),
            " and ".join(dropped),
        )
