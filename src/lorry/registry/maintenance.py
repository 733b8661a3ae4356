"""Keeping a shared store tidy and sound: garbage collection, and checking every version.

Garbage is what no committed version reaches: blobs and manifests of logs that crashed or failed
before their commit, and multipart uploads that nobody completed. ``collect_garbage`` removes it once
it is older than a grace period, which spares the work of logs still in progress elsewhere.

Age alone cannot make that safe: a log that finds a blob already stored (say, left by a crashed log
of the same file) reuses it without writing it again, so an old, unreferenced blob can be about to
be referenced. The **gc fence** closes that gap without locks:

1. gc writes ``_lorry/gc/state.json`` saying it runs (refreshed while it does, so a crashed gc
   stops counting after ``LEASE``), waits ``SETTLE`` seconds, and only then reads which versions
   exist and removes what none of them reaches; at the end it writes that it stopped.
2. A log reads that record (its etag) before it looks at anything in the store, and again just before
   it creates its version record. If the two differ, or a gc is running, a gc may have removed what
   the log relied on: the log waits for that gc to stop, stores its files and manifest again (which
   writes only what is now missing) and checks once more.
3. A log whose second read came before gc's record has had ``SETTLE`` seconds to create its version,
   which gc reads after that wait. A log slower than ``SETTLE / 2`` between the read and the create
   checks the record a third time and repairs after the fact.

So whatever a committed version needs is either reached by gc's reading or stored again by its log.

Deleted and expired versions keep their records, but what only they reach is garbage once the grace
period has passed *since they were deleted or expired* (not since their blobs were written): a
download of a version deleted a moment ago still finds its blobs, and so does a log that found them
already stored. gc also marks expired versions deleted and removes alias pointers left naming a
deleted version (an alias moved onto it while it was being deleted).

``verify_store`` reads every live version and checks that its manifest and blobs are present and intact,
and that every alias names a version that exists.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from lorry.errors import ConflictError, CorruptRecordError, LorryError, ObjectNotFoundError
from lorry.model.digest import digest_bytes, hex_part, is_content_digest, new_hasher
from lorry.model.layout import (
    GC_STATE_KEY,
    AliasKey,
    BlobKey,
    ManifestKey,
    ProbeKey,
    ShardKey,
    VersionKey,
    blob_key,
    manifest_key,
    parse_key,
    version_key,
)
from lorry.registry.records import VersionRecord, dump_json, load_json
from lorry.registry.registry import Registry, ShardRecord, pointer_version
from lorry.storage.base import CREATE, LOCAL_FILES, ObjectMeta, Store, Update, Upload
from lorry.transfer.cleanup import DEFAULT_GRACE, abort_uploads, stale_uploads

SETTLE = 5.0
"""Seconds gc waits between announcing itself and reading the versions (see the module notes)."""
LEASE = 600.0
"""Seconds after which a gc that stopped refreshing its record is taken for dead."""
POLL = 1.0

_CONCURRENCY = 32

T = TypeVar("T")


# -- the fence, as a log sees it -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GcFence:
    """What a log saw of the gc record: a digest of its bytes (None: no gc ever ran; every write of the
    record changes it) and whether a gc was running."""

    token: str | None
    running: bool


async def read_fence(store: Store) -> GcFence:
    """The gc record as it is now: one GET."""
    try:
        payload = await store.get(GC_STATE_KEY)
    except ObjectNotFoundError:
        return GcFence(None, False)
    state = load_json(payload, GC_STATE_KEY)
    return GcFence(digest_bytes(payload), state.get("state") == "running")


async def wait_for_gc(store: Store, *, lease: float = LEASE, poll: float = POLL) -> GcFence:
    """Wait until no gc runs (a record unchanged for ``lease`` seconds is a dead gc's) and return the
    fence to rely on from then on."""
    seen: GcFence | None = None
    since = time.monotonic()
    while True:
        fence = await read_fence(store)
        if not fence.running:
            return fence
        if fence != seen:
            seen, since = fence, time.monotonic()
        elif time.monotonic() - since > lease:
            return GcFence(fence.token, False)
        await asyncio.sleep(poll)


async def guard_commit(
    store: Store, fence: GcFence, restore: Callable[[], Awaitable[None]], *, poll: float = POLL
) -> GcFence:
    """Return once no gc ran since ``fence``, calling ``restore`` after each gc that did (it must store
    the log's files and manifest again). The caller creates its version record right after."""
    while True:
        current = await read_fence(store)
        if current == fence and not current.running:
            return current
        fence = await wait_for_gc(store, poll=poll)
        await restore()


async def repair_if_gc_ran(
    store: Store, fence: GcFence, restore: Callable[[], Awaitable[None]], *, poll: float = POLL
) -> None:
    """After a commit slower than ``SETTLE / 2``: if a gc started meanwhile, store again what it took."""
    if await read_fence(store) != fence:
        await wait_for_gc(store, poll=poll)
        await restore()


# -- what the store holds -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a store: the object, and what is wrong with it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass
class _Scan:
    """One listing of the whole store, sorted into what gc and verify need."""

    blobs: dict[str, ObjectMeta] = field(default_factory=dict)  # digest -> meta
    manifests: dict[str, ObjectMeta] = field(default_factory=dict)  # digest -> meta
    versions: dict[str, VersionKey] = field(default_factory=dict)  # version record keys
    aliases: dict[str, AliasKey] = field(default_factory=dict)  # alias pointer keys
    shards: list[str] = field(default_factory=list)  # distributed artifacts' shard record keys
    probes: list[ObjectMeta] = field(default_factory=list)

    @classmethod
    async def of(cls, store: Store) -> _Scan:
        scan = cls()
        async for meta in store.list(""):
            match parse_key(meta.key):
                case BlobKey(digest):
                    scan.blobs[digest] = meta
                case ManifestKey(digest):
                    scan.manifests[digest] = meta
                case VersionKey() as version:
                    scan.versions[meta.key] = version
                case AliasKey() as alias:
                    scan.aliases[meta.key] = alias
                case ShardKey():
                    scan.shards.append(meta.key)
                case ProbeKey():
                    scan.probes.append(meta)
        return scan


async def _bounded(
    items: Iterable[T], work: Callable[[T], Awaitable[Any]], limit: int = _CONCURRENCY
) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


@dataclass
class _Reach:
    """The manifests and blobs that committed versions need, and what could not be read."""

    versions: int = 0
    manifests: dict[str, list[str]] = field(default_factory=dict)  # digest -> version keys needing it
    blobs: dict[str, int | None] = field(default_factory=dict)  # digest -> size the manifest says
    problems: list[Problem] = field(default_factory=list)
    gone: dict[str, VersionRecord] = field(default_factory=dict)  # key -> deleted or expired record


async def _reach(
    store: Store,
    version_keys: list[str],
    *,
    now: datetime,
    kept_since: datetime | None = None,
    shard_keys: Iterable[str] = (),
) -> _Reach:
    """What live versions need; a version deleted or expired after ``kept_since`` counts as live
    (None: no gone version does)."""
    reach = _Reach(versions=len(version_keys))

    async def read_version(key: str) -> None:
        try:
            record = VersionRecord.from_bytes(await store.get(key), key)
        except ObjectNotFoundError:
            reach.versions -= 1  # removed since the listing (records are never removed)
            return
        except CorruptRecordError as exc:
            reach.problems.append(Problem(key, str(exc)))
            return
        gone = record.gone_since(now)
        if gone is not None:
            reach.versions -= 1
            reach.gone[key] = record
            if kept_since is None or gone <= kept_since:
                return
        reach.manifests.setdefault(record.manifest, []).append(key)

    async def read_shard(key: str) -> None:  # a stored shard waits for its finish: keep what it needs
        try:
            shard = ShardRecord.from_json(load_json(await store.get(key), key), key)
        except ObjectNotFoundError:
            return
        except CorruptRecordError as exc:
            reach.problems.append(Problem(key, str(exc)))
            return
        if shard.manifest is not None:
            reach.manifests.setdefault(shard.manifest, []).append(key)

    await _bounded(version_keys, read_version)
    await _bounded(shard_keys, read_shard)
    registry = Registry(store)

    async def read_manifest(digest: str) -> None:
        try:
            manifest = await registry.get_manifest(digest)
        except LorryError as exc:
            needed_by = ", ".join(sorted(reach.manifests[digest])[:3])
            reach.problems.append(Problem(manifest_key(digest), f"{exc} (needed by {needed_by})"))
            return
        for entry in manifest.values():
            if entry.ref is None and entry.digest is not None and is_content_digest(entry.digest):
                reach.blobs[entry.digest] = entry.size

    await _bounded(list(reach.manifests), read_manifest)
    return reach


# -- garbage collection ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GcReport:
    """What a gc removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    versions: int
    """Live versions found; everything they need was kept."""
    expired: int
    """Versions whose time to live ran out, marked deleted by this gc."""
    blobs: int
    blob_bytes: int
    manifests: int
    uploads: int
    """Multipart uploads aborted (on a local store: unfinished temporary files removed)."""
    spared: int
    """Unreferenced objects younger than the grace period: maybe a log still in progress."""
    keys: tuple[str, ...]
    """Every key removed (or to remove), and ``upload:<key>`` for each upload aborted."""


async def collect_garbage(
    store: Store,
    *,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    settle: float = SETTLE,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> GcReport:
    """Remove blobs, manifests and multipart uploads that no committed version needs and that are older
    than ``grace``. Refuses (``CorruptRecordError``) if a version's manifest cannot be read, since what
    it needs is then unknown; ``ConflictError`` if another gc is running."""
    if dry_run:
        return await _collect(store, grace, dry_run=True, now=now)
    async with _announced(store, now):
        await asyncio.sleep(settle)
        return await _collect(store, grace, dry_run=False, now=now)


async def _collect(store: Store, grace: timedelta, *, dry_run: bool, now: Callable[[], datetime]) -> GcReport:
    scan = await _Scan.of(store)  # listed before the versions are read: a later commit is in `reach`
    at = now()
    cutoff = at - grace
    reach = await _reach(store, list(scan.versions), now=at, kept_since=cutoff, shard_keys=scan.shards)
    if reach.problems:  # what an unreadable version or manifest needs is unknown: remove nothing
        raise CorruptRecordError(
            f"gc stopped before removing anything: {reach.problems[0]} "
            f"({len(reach.problems)} unreadable records in all; `lorry verify` lists them)"
        )
    expired = [key for key, record in reach.gone.items() if record.deleted_at is None]

    def old(meta: ObjectMeta) -> bool:
        return meta.modified is not None and meta.modified < cutoff

    unreferenced = [meta for digest, meta in scan.blobs.items() if digest not in reach.blobs]
    unreferenced += [meta for digest, meta in scan.manifests.items() if digest not in reach.manifests]
    unreferenced += scan.probes
    doomed = [meta for meta in unreferenced if old(meta)]
    uploads: list[Upload] = await stale_uploads(store, grace, now())
    # A local store's unfinished temporary files are its uploads in progress.
    local = LOCAL_FILES.of(store)
    temps = await asyncio.to_thread(local.stale_temp_files, cutoff) if local is not None else []
    if not dry_run:
        await _bounded(expired, lambda key: _mark_expired(store, scan.versions[key]))
        # Only a collection with a gone version can hold an alias naming one: read no other alias.
        with_gone = {scan.versions[key].collection for key in reach.gone}
        suspects = [key for key, alias in scan.aliases.items() if alias.collection in with_gone]
        await _bounded(suspects, lambda key: _drop_alias_of_gone(store, key, scan.aliases[key], reach.gone))
        await _bounded(doomed, lambda meta: store.delete(meta.key))
        await abort_uploads(store, uploads)
        for temp in temps:
            temp.unlink(missing_ok=True)
    blobs = [meta for meta in doomed if isinstance(parse_key(meta.key), BlobKey)]
    return GcReport(
        dry_run=dry_run,
        versions=reach.versions,
        expired=len(expired),
        blobs=len(blobs),
        blob_bytes=sum(meta.size for meta in blobs),
        manifests=sum(1 for meta in doomed if isinstance(parse_key(meta.key), ManifestKey)),
        uploads=len(uploads) + len(temps),
        spared=len(unreferenced) - len(doomed),
        keys=(
            *sorted(meta.key for meta in doomed),
            *(f"upload:{u.key}" for u in uploads),
            *(f"upload:{temp.name}" for temp in temps),
        ),
    )


async def _mark_expired(store: Store, version: VersionKey) -> None:
    """Turn an expired version into a deleted one, stamped with the moment it expired."""

    def stamp(current: VersionRecord) -> VersionRecord:
        expires = current.expires_at()
        if current.deleted_at is not None or expires is None:
            return current
        return replace(current, deleted_at=expires.isoformat(timespec="microseconds"))

    await Registry(store).update_version(version.collection, version.number, stamp, include_gone=True)


async def _drop_alias_of_gone(
    store: Store, key: str, alias: AliasKey, gone: dict[str, VersionRecord]
) -> None:
    try:
        number = pointer_version(await store.get(key), key)
    except (ObjectNotFoundError, CorruptRecordError):
        return
    if version_key(alias.collection, number) in gone:
        await Registry(store).remove_alias(alias.collection, number, alias.alias)


@asynccontextmanager
async def _announced(store: Store, now: Callable[[], datetime]) -> AsyncIterator[None]:
    """Hold the gc record as "running" (refreshed every ``LEASE / 4``) for the duration of the block."""
    state: dict[str, Any] = {
        "state": "running",
        "id": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": now().isoformat(),
    }
    etag = await _swap_state(store, state, now, starting=True)

    async def refresh() -> None:
        nonlocal etag
        while True:
            await asyncio.sleep(LEASE / 4)
            etag = await _swap_state(store, state, now, expected=etag)

    refresher = asyncio.ensure_future(refresh())
    try:
        yield
    finally:
        refresher.cancel()
        await asyncio.gather(refresher, return_exceptions=True)
        state.update(state="stopped", stopped=now().isoformat())
        await _swap_state(store, state, now, expected=etag)


async def _swap_state(
    store: Store,
    state: dict[str, Any],
    now: Callable[[], datetime],
    *,
    starting: bool = False,
    expected: str | None = None,
) -> str:
    """Write the gc record by compare-and-swap; when ``starting``, refuse if another gc holds it."""
    state["refreshed"] = now().isoformat()
    if starting:
        try:
            meta = await store.head(GC_STATE_KEY)
            current = load_json(await store.get(GC_STATE_KEY), GC_STATE_KEY)
        except ObjectNotFoundError:
            return (await store.put(GC_STATE_KEY, dump_json(state), CREATE)).etag
        if current.get("state") == "running" and not _expired(current, now()):
            raise ConflictError(
                f"another gc is running on {store.url} (host {current.get('host')}, pid "
                f"{current.get('pid')}, since {current.get('started')}); a gc that died is taken for "
                f"dead {LEASE / 60:.0f} minutes after its last sign of life"
            )
        expected = meta.etag
    if expected is None:
        return (await store.put(GC_STATE_KEY, dump_json(state), CREATE)).etag
    return (await store.put(GC_STATE_KEY, dump_json(state), Update(expected))).etag


def _expired(state: dict[str, Any], at: datetime) -> bool:
    try:
        refreshed = datetime.fromisoformat(str(state.get("refreshed")))
    except ValueError:
        return True
    return (at - refreshed).total_seconds() > LEASE


# -- verifying the whole store ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreReport:
    """What ``verify_store`` checked and what it found wrong (nothing, if ``problems`` is empty)."""

    versions: int
    manifests: int
    blobs: int
    blob_bytes: int
    """Bytes read and hashed (0 with ``quick``)."""
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_store(store: Store, *, quick: bool = False) -> StoreReport:
    """Check every committed version: its record parses, its manifest is there and matches its digest,
    and each blob it needs is there with the right size and (unless ``quick``) the right bytes."""
    scan = await _Scan.of(store)
    reach = await _reach(store, list(scan.versions), now=datetime.now(UTC))
    problems = list(reach.problems)
    hashed = 0

    async def check_blob(digest: str) -> None:
        nonlocal hashed
        key = blob_key(digest)
        meta = scan.blobs.get(digest)
        if meta is None:
            try:  # stored after the listing?
                meta = await store.head(key)
            except ObjectNotFoundError:
                problems.append(Problem(key, "missing: a committed version needs it"))
                return
        expected = reach.blobs[digest]
        if expected is not None and meta.size != expected:
            problems.append(Problem(key, f"is {meta.size} bytes; its manifest says {expected}"))
            return
        if quick:
            return
        hasher = new_hasher()
        try:
            async for chunk in store.stream(key):
                hasher.update(chunk)
                hashed += len(chunk)
        except ObjectNotFoundError:
            problems.append(Problem(key, "missing: a committed version needs it"))
            return
        if hasher.hexdigest() != hex_part(digest):
            problems.append(Problem(key, "corrupt: its bytes do not match its digest"))

    versions = set(scan.versions)

    async def check_alias(key: str) -> None:
        try:
            number = pointer_version(await store.get(key), key)
        except ObjectNotFoundError:
            return  # removed since the listing
        except CorruptRecordError as exc:
            problems.append(Problem(key, str(exc)))
            return
        if version_key(scan.aliases[key].collection, number) not in versions:
            problems.append(Problem(key, f"names v{number}, which does not exist"))

    await _bounded(sorted(reach.blobs), check_blob, limit=8)
    await _bounded(scan.aliases, check_alias)
    return StoreReport(
        versions=reach.versions,
        manifests=len(reach.manifests),
        blobs=len(reach.blobs),
        blob_bytes=hashed,
        problems=tuple(sorted(problems, key=lambda p: p.key)),
    )


__all__ = [
    "GC_STATE_KEY",
    "GcFence",
    "GcReport",
    "Problem",
    "StoreReport",
    "collect_garbage",
    "guard_commit",
    "read_fence",
    "repair_if_gc_ran",
    "verify_store",
    "wait_for_gc",
]
