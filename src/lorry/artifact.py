"""``Artifact``: the builder (``add_file``, ``add_dir``, ``new_file``, ``add_reference``) and, once
logged, the view of one committed version (``download``, ``get_path``, ``verify``, ``save``, lineage).

>>> import lorry
>>> with lorry.init(job_type="train") as run:           # doctest: +SKIP
...     artifact = lorry.Artifact("bike-dataset", type="dataset")
...     artifact.add_file("bicycle-data.h5")
...     run.log_artifact(artifact, aliases=["best"])
...     artifact.wait().version
'v0'
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import errno
import functools
import gc
import itertools
import logging
import os
import posixpath
import shutil
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lorry import _bridge
from lorry._compat import accept_unused, note_once
from lorry.cache import Cache
from lorry.errors import (
    ArtifactFailedError,
    EntryNotFoundError,
    FolderMismatchError,
    IntegrityError,
    LocalFileError,
    NotFoundError,
    StoreError,
    UsageError,
    ValidationError,
)
from lorry.model.layout import Collection
from lorry.model.manifest import Entry, EntryLayout, Manifest, normalize_entry_path
from lorry.model.metadata import validate_metadata
from lorry.model.names import (
    LATEST,
    check_latest,
    parse_artifact_path,
    validate_alias,
    validate_artifact_name,
    validate_tags,
    validate_type,
    version_alias,
)
from lorry.publish import LogPlan, publish, store_shard
from lorry.registry.assigner import Ticket
from lorry.registry.records import AliasTable, ArtifactRef, VersionRecord
from lorry.registry.registry import Registry, ShardRecord, check_live
from lorry.session import Session, session
from lorry.settings import Settings
from lorry.transfer import refs
from lorry.transfer.download import fetch_entries, fetch_entry
from lorry.transfer.engine import Counters, Engine, gather_all
from lorry.transfer.files import FileStamp, Packs, Targets, clone_or_copy, local_error, matches, owner_only
from lorry.transfer.offload import caller_waits
from lorry.transfer.plan import SMALL_OBJECT
from lorry.transfer.progress import progress
from lorry.transfer.upload import FileSource

if TYPE_CHECKING:
    from lorry.lineage import LoggedRun
    from lorry.runs import Run

log = logging.getLogger("lorry")

POLICIES = ("mutable", "immutable")
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # only writing the snapshot can fail so


class ArtifactTTL(enum.Enum):
    """``artifact.ttl = ArtifactTTL.INHERIT``: the original's team default. There are no teams here,
    so it means what ``None`` means: no time to live."""

    INHERIT = 0


@dataclass(frozen=True, slots=True)
class _Logged:
    """What a committed version is: where it lives and its record."""

    settings: Settings
    collection: Collection
    record: VersionRecord


class Artifact:
    """A versioned folder of files and references.

    Build one, log it with ``run.log_artifact``; or get a logged one from ``run.use_artifact`` or
    ``Api().artifact``. Names may use letters, digits, ``_``, ``-`` and ``.``.
    """

    def __init__(
        self,
        name: str,
        type: str = "unspecified",
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        incremental: bool = False,
        use_as: str | None = None,
        storage_region: str | None = None,
    ) -> None:
        """``incremental=True``: the version logged holds the collection's latest version's entries
        plus what this artifact adds (same names replaced); ``use_as`` is kept and otherwise unused."""
        self._name = validate_artifact_name(name)
        self._type = validate_type(type)
        self.description = description
        self._metadata = validate_metadata(metadata)
        self._aliases: list[str] = []
        self._files: dict[str, FileSource] = {}
        self._refs: dict[str, Entry] = {}
        self._origins: dict[str, int] = {}  # entry → identity of the file added (see _identity)
        self._layout = EntryLayout()  # no name both a file and a folder
        self._staging: Path | None = None
        self._staged_names = itertools.count()  # the staging folder is this artifact's own
        self._snapshot_packs: Packs | None = None  # small files' snapshots, made on first use
        self._drop_staging: weakref.finalize[Any, Any] | None = None
        self._pending: concurrent.futures.Future[_Logged] | None = None
        self._failure_seen = False  # a failed log was raised to the user (by wait() or an attribute)
        self._logged: _Logged | None = None
        self._manifest: Manifest | None = None
        self._saved_aliases: list[str] = []
        self._counters = Counters()  # progress of logging, read by progress bars
        self._progress: bool | None = None
        self._tags: list[str] = []
        self._ttl: timedelta | None = None
        self._incremental = bool(incremental)
        self.use_as = use_as
        accept_unused("Artifact", "use_as", use_as, None, "it is deprecated in the original API too")
        accept_unused("Artifact", "storage_region", storage_region, None, "the store is where it is")
        # Entries of an earlier version carried into this draft (new_draft): already stored, so they
        # are neither read nor hashed nor sent again.
        self._carried: dict[str, Entry] = {}
        self._shard: concurrent.futures.Future[None] | None = None  # upsert_artifact's storing
        self._distributed_id: str | None = None
        self._home: Settings | None = None  # a draft of a logged version is logged where that one is

    def __repr__(self) -> str:
        if self._logged is not None:
            return f"<Artifact {self._logged.collection}:{self.version} type={self._type!r}>"
        state = "logging" if self._pending is not None else "draft"
        return f"<Artifact {self._name} type={self._type!r} ({state})>"

    # -- identity and editable fields -----------------------------------------------------------------

    @property
    def name(self) -> str:
        """``name:vN`` once logged (as in the original); the collection name alone before."""
        if self._logged is None:
            return self._name
        return f"{self._name}:{version_alias(self._logged.record.version)}"

    @property
    def type(self) -> str:
        return self._type

    @type.setter
    def type(self, value: str) -> None:
        self._check_draft("change the type of")
        self._type = validate_type(value)

    @property
    def description(self) -> str | None:
        return self._description

    @description.setter
    def description(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise ValidationError(f"description must be a string, not {type(value).__name__}")
        if value is not None and not _utf8(value):
            raise ValidationError("description holds a lone surrogate, which UTF-8 cannot encode")
        self._description = value

    @property
    def metadata(self) -> dict[str, Any]:
        """A dict: change keys in place, or assign a new dict; ``save()`` persists a logged one."""
        return self._metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._metadata = validate_metadata(value)

    @property
    def aliases(self) -> list[str]:
        """The version's aliases, ``latest`` included while it is the newest. Edit, then ``save()``."""
        self._sync()
        return self._aliases

    @aliases.setter
    def aliases(self, value: Sequence[str]) -> None:
        self._sync()
        if isinstance(value, str):
            raise ValidationError("aliases must be a list of strings, not one string")
        self._aliases = list(value)

    @property
    def tags(self) -> list[str]:
        """The version's tags. Edit (or assign), then ``save()``; a draft takes them when logged."""
        self._sync()
        return self._tags

    @tags.setter
    def tags(self, value: Sequence[str]) -> None:
        self._sync()
        self._tags = list(validate_tags(value))

    @property
    def ttl(self) -> timedelta | None:
        """Time to live, from the version's creation: once it has passed the version is no longer
        served and ``lorry gc`` deletes it. ``None`` (the default): kept until deleted."""
        self._sync()
        return self._ttl

    @ttl.setter
    def ttl(self, value: timedelta | ArtifactTTL | None) -> None:
        self._sync()
        if value is ArtifactTTL.INHERIT:
            note_once("ttl:inherit", "ArtifactTTL.INHERIT means no ttl in lorry: there is no team default")
            value = None
        if value is not None and not isinstance(value, timedelta):
            raise ValidationError(f"ttl must be a datetime.timedelta or None, not {type(value).__name__}")
        if value is not None and value.total_seconds() <= 0:
            raise ValidationError(f"ttl must be positive, not {value}")
        self._ttl = value

    @property
    def incremental(self) -> bool:
        return self._incremental

    # -- building ---------------------------------------------------------------------------------------

    def add_file(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        is_tmp: bool | None = False,
        skip_cache: bool | None = False,
        policy: str | None = "mutable",
        overwrite: bool = False,
    ) -> ArtifactEntry:
        """Add one file, stored as ``name`` (default: the file's own name).

        ``policy="mutable"`` snapshots the file now, so later writes to it do not change what is
        logged; ``"immutable"`` promises the file will not change (no copy is made) and fails the
        version if it does. ``overwrite=True`` replaces an entry of the same name. (Uploaded files
        never go into the download cache, so ``skip_cache`` holds already.)
        """
        self._check_draft("add files to")
        policy = _check_policy(policy)
        accept_unused("add_file", "is_tmp", is_tmp, False, "entries keep the name they are given")
        path = Path(local_path)
        if path.is_dir():
            raise LocalFileError(f"{path} is a directory; use add_dir to add a directory")
        if not path.exists():
            raise LocalFileError(f"cannot add {path}: no such file")
        if not path.is_file():
            raise LocalFileError(f"cannot add {path}: not a regular file")
        if not os.access(path, os.R_OK):
            raise LocalFileError(f"cannot add {path}: permission denied")
        entry_name = normalize_entry_path(name if name is not None else path.name)
        if overwrite:
            self._forget(entry_name)
        self._add_source(entry_name, path, policy)
        return ArtifactEntry(self, Entry(entry_name, None, path.stat().st_size))

    def add_dir(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        skip_cache: bool | None = False,
        policy: str | None = "mutable",
        merge: bool = False,
    ) -> None:
        """Add every file below a directory, as ``name/<relative path>`` (or ``<relative path>``).

        Symbolic links are followed: a link to a file adds that file's content, a link to a directory
        adds that directory's files. A dangling link or a link cycle is an error naming it. A name
        already in the artifact is an error, unless ``merge=True``: then the new file replaces it
        (nothing is removed).
        """
        self._check_draft("add files to")
        policy = _check_policy(policy)
        root = Path(local_path)
        if not root.exists():
            raise LocalFileError(f"cannot add {root}: no such directory")
        if not root.is_dir():
            raise LocalFileError(f"{root} is not a directory; use add_file to add a file")
        prefix = normalize_entry_path(name) if name else ""
        added: list[str] = []
        try:  # file by file as the walk finds them: a million files are never all held at once
            with _collection_paused():
                for relative, path in _walk_files(root):
                    joined = posixpath.join(prefix, relative) if prefix else relative
                    entry_name = normalize_entry_path(joined)
                    if merge and self._origins.get(entry_name) != _identity(path):
                        self._forget(entry_name)
                    if self._add_source(entry_name, path, policy):
                        added.append(entry_name)
        except BaseException:  # what this call added goes again (an entry merge replaced stays replaced)
            for entry_name in added:
                self._drop(entry_name)
            raise

    @contextlib.contextmanager
    def new_file(
        self, name: str, mode: str = "w", encoding: str | None = None, policy: str = "mutable"
    ) -> Iterator[IO[Any]]:
        """A new file to write; when the ``with`` block ends it is added as ``name``. (``policy`` is
        checked and holds either way: the file is the artifact's own, so nothing else changes it.)"""
        self._check_draft("add files to")
        _check_policy(policy)
        entry_name = normalize_entry_path(name)
        if self._has(entry_name):
            raise ValidationError(f"entry {entry_name!r} is already in this artifact")
        self._layout.check(entry_name)
        if not set(mode) <= set("wxab+t") or not set(mode) & set("wxa"):
            raise ValidationError(f"new_file mode must be a write mode such as 'w' or 'wb', not {mode!r}")
        staged = self._staged_path()
        with open(staged, mode, encoding=encoding, opener=owner_only) as handle:
            yield handle
        if self._has(entry_name):  # taken while the block ran
            raise ValidationError(f"entry {entry_name!r} is already in this artifact")
        self._layout.add(entry_name)
        self._files[entry_name] = FileSource(entry_name, staged, FileStamp.of(Path(staged)), owned=True)

    def add_reference(
        self,
        uri: str | ArtifactEntry,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
    ) -> list[ArtifactEntry]:
        """Track a URI instead of storing its content; a prefix or folder adds each object below it.
        An entry of a logged version (``other.get_entry(path)``) adds that entry as it is, under
        ``name``: its content is on the store already, so nothing is read or sent again."""
        self._check_draft("add references to")
        if isinstance(uri, ArtifactEntry):
            return [self._add_entry_of(uri, name)]
        if not isinstance(uri, str):
            raise ValidationError(f"reference URI must be a string, not {type(uri).__name__}")
        if max_objects is not None and (not isinstance(max_objects, int) or max_objects < 1):
            raise ValidationError(f"max_objects must be a positive integer, not {max_objects!r}")
        settings = Settings.load()
        entries = _bridge.run_sync(
            refs.resolve(session(settings).engine.with_settings(settings), uri, name, checksum, max_objects)
        )
        trial = self._layout.copy()
        for entry in entries:
            if (
                entry.path in self._files
                or entry.path in self._carried
                or (entry.path in self._refs and self._refs[entry.path] != entry)
            ):
                raise ValidationError(f"entry {entry.path!r} is already in this artifact with other content")
            trial.add(entry.path)
        for entry in entries:
            self._refs[entry.path] = entry
        self._layout = trial
        return [ArtifactEntry(self, entry) for entry in entries]

    def _add_entry_of(self, source: ArtifactEntry, name: str | None) -> ArtifactEntry:
        entry = replace(source._entry, path=normalize_entry_path(name or source.path))
        if entry.ref is None and entry.digest is None:
            raise ValidationError(f"entry {source.path!r} is not logged yet: add entries of a logged version")
        if self._carried.get(entry.path) == entry:
            return ArtifactEntry(self, entry)  # the same entry added again
        if self._has(entry.path):
            raise ValidationError(f"entry {entry.path!r} is already in this artifact with other content")
        self._layout.check(entry.path)
        self._layout.add(entry.path)
        self._carried[entry.path] = entry  # like a draft's entries: stored already (or a reference)
        return ArtifactEntry(self, entry)

    def remove(self, name: str | ArtifactEntry) -> None:
        """Remove an entry (by name, or the ``ArtifactEntry`` an ``add_*`` returned), or every entry
        below a folder name."""
        self._check_draft("remove files from")
        target = normalize_entry_path(name.path if isinstance(name, ArtifactEntry) else name)
        removed = False
        tables: tuple[dict[str, Any], ...] = (self._files, self._refs, self._carried)
        for table in tables:
            for key in [k for k in table if k == target or k.startswith(target + "/")]:
                del table[key]
                self._origins.pop(key, None)
                self._layout.discard(key)
                removed = True
        if not removed:
            raise EntryNotFoundError(f"artifact {self._name} has no entry {target!r}")

    def _has(self, entry_name: str) -> bool:
        return entry_name in self._files or entry_name in self._refs or entry_name in self._carried

    def _check_free(self, entry_name: str, path: str | Path) -> None:
        """Refuse to put ``path`` under a name that holds something else (the same file is fine)."""
        if entry_name in self._refs:
            raise ValidationError(f"entry {entry_name!r} is already a reference in this artifact")
        if entry_name in self._carried:
            raise ValidationError(
                f"entry {entry_name!r} is already in this artifact (from the version it was drafted "
                "from); pass overwrite=True (add_dir: merge=True) to replace it"
            )
        if entry_name in self._files and self._origins.get(entry_name) != _identity(path):
            raise ValidationError(
                f"two different files under one entry name {entry_name!r}; pass overwrite=True "
                "(add_dir: merge=True) to replace it"
            )

    def _forget(self, entry_name: str) -> None:
        """Drop whatever entry ``entry_name`` holds (for overwrite and merge)."""
        if entry_name in self._files:
            self._drop(entry_name)
        elif self._has(entry_name):
            self._refs.pop(entry_name, None)
            self._carried.pop(entry_name, None)
            self._origins.pop(entry_name, None)
            self._layout.discard(entry_name)

    def _add_source(self, entry_name: str, path: str | Path, policy: str) -> bool:
        """Add a file as ``entry_name``; False if this very file is already there under that name."""
        self._check_free(entry_name, path)
        if entry_name in self._files:
            return False  # the same file added twice
        self._layout.check(entry_name)
        if policy == "mutable":
            origin, source = self._snapshot(entry_name, path)
        else:
            try:
                st = os.stat(path)
            except OSError as exc:
                raise local_error(exc, f"cannot add {path}") from exc
            origin = _identity_of(st)
            source = FileSource(entry_name, str(path), FileStamp.of_stat(st), owned=False)
        self._files[entry_name] = source
        self._origins[entry_name] = origin
        self._layout.add(entry_name)
        return True

    def _snapshot(self, entry_name: str, path: str | Path) -> tuple[int, FileSource]:
        """The identity of the file at ``path`` and a copy of it that later writes to it do not reach:
        a small file's is appended to a pack, a large one's is a file of its own (a reflink where the
        filesystem shares extents, else a full copy done by the kernel)."""
        staged: str | None = None
        try:
            src = os.open(path, os.O_RDONLY)  # not open(): that looks at the file once more
            try:
                st = os.fstat(src)
                if st.st_size <= SMALL_OBJECT:
                    pack, offset, length = self._packs().append(src, st.st_size)
                    stamp = FileStamp(length, 0, 0)  # the bytes are lorry's own: only their length counts
                    return _identity_of(st), FileSource(entry_name, pack, stamp, owned=True, offset=offset)
                staged = self._staged_path()
                with open(staged, "xb", buffering=0, opener=owner_only) as dst:
                    clone_or_copy(src, dst.fileno(), st.st_size)
                    stamp = FileStamp.of_fd(dst.fileno())
                return _identity_of(st), FileSource(entry_name, staged, stamp, owned=True)
            finally:
                os.close(src)
        except LocalFileError:
            raise  # already says what could not be done, and where
        except OSError as exc:
            if staged is not None:  # a partial snapshot is no use to anyone
                with contextlib.suppress(OSError):
                    os.unlink(staged)
            in_staging = self._staging is not None and str(exc.filename or "").startswith(str(self._staging))
            if in_staging or exc.errno in _NO_ROOM:
                raise local_error(exc, f"cannot add {path}: its snapshot in {self._staging}") from exc
            raise local_error(exc, f"cannot add {path}") from exc

    def _packs(self) -> Packs:
        if self._snapshot_packs is None:
            first, names = self._staged_path(), self._staged_names
            # Names made without a reference to the artifact, which must stay free to be collected.
            fresh = itertools.chain([first], (f"{posixpath.dirname(first)}/{n:x}" for n in names))
            self._snapshot_packs = Packs(lambda: next(fresh))
        return self._snapshot_packs

    def _drop(self, entry_name: str) -> None:
        """Take a file out again (and its snapshot, if it has a file of its own: bytes in a pack stay
        until the staging folder goes)."""
        source = self._files.pop(entry_name)
        self._origins.pop(entry_name, None)
        self._layout.discard(entry_name)
        if source.owned and source.offset is None:
            with contextlib.suppress(OSError):
                os.unlink(source.source)

    def _staged_path(self) -> str:
        """A fresh name in this artifact's staging folder (made on first use; removed once logged, or
        when a draft that was never logged is dropped)."""
        if self._staging is None:
            cache = Cache(Settings.load().cache_dir)
            try:
                self._staging = cache.staging_folder()
            except OSError as exc:
                raise local_error(exc, f"cannot write to the staging area in {cache.root}") from exc
            self._drop_staging = weakref.finalize(self, _drop_staging, self._staging, os.getpid())
        return f"{self._staging}/{next(self._staged_names):x}"

    def _check_draft(self, action: str) -> None:
        if not self.is_draft():
            raise UsageError(
                f"cannot {action} artifact {self._name}: it is already logged; create a new Artifact"
            )

    # -- logging (called by Run) ------------------------------------------------------------------------

    def _start_log(self, run: Run, aliases: Sequence[str], tags: Sequence[str] = ()) -> None:
        """Draw this artifact's place in its collection's order, then hand the work to the engine."""
        from lorry import runs

        plan = self._plan(run, aliases, tags)
        sess = session(run.settings)
        ticket = sess.assigner.draw(str(plan.collection))
        self._progress = run.settings.progress
        try:
            self._pending = _bridge.bridge().submit(_logged(sess, plan, ticket))
        except BaseException:
            _bridge.bridge().submit(sess.assigner.release(ticket))
            raise
        if self._drop_staging is not None:
            self._drop_staging.detach()  # the log removes the staging folder when it ends
        self._forget_draft()  # the plan holds what is logged; the tables for building it can go
        runs.track(run, self)

    def _plan(self, run: Run, aliases: Sequence[str], tags: Sequence[str]) -> LogPlan:
        """Everything a log needs, checked and frozen now."""
        from lorry import runs

        if not self.is_draft():
            raise UsageError(
                f"artifact {self._name} is already logged; create a new Artifact for a new version"
            )
        if isinstance(aliases, str):  # every way to log comes here: one check for all of them
            raise ValidationError("aliases must be a list of strings, not one string")
        checked = _dedupe([LATEST, *(validate_alias(a) for a in aliases if a != LATEST)])
        if isinstance(tags, str):
            raise ValidationError("tags must be a list of strings, not one string")
        all_tags = validate_tags([*self._tags, *tags])
        # The dict may have been changed in place since it was set: check it again, and freeze a deep
        # copy, so that later changes to it do not reach this version.
        metadata = validate_metadata(self._metadata)
        refs = (*self._refs.values(), *self._carried.values())
        Manifest.check_size(((f.path, f.stamp.size) for f in self._files.values()), refs)
        return LogPlan(
            run_id=run.id,
            record_output=functools.partial(runs.record_output, run),
            settings=run.settings,
            collection=Collection(run.entity, run.project, self._name),
            artifact_type=self._type,
            files=tuple(self._files.values()),
            refs=refs,
            description=self.description,
            metadata=metadata,
            aliases=tuple(checked),
            tags=all_tags,
            ttl=None if self._ttl is None else self._ttl.total_seconds(),
            incremental=self._incremental,
            counters=self._counters,
            staging=self._staging,
        )

    # -- distributed artifacts (called by Run) ----------------------------------------------------------

    def _has_entries(self) -> bool:
        return bool(self._files or self._refs or self._carried)

    def _start_shard(self, run: Run, distributed_id: str, shard: str, aliases: Sequence[str]) -> None:
        """Record the shard as started (before returning, so a process that dies from here on leaves
        it visibly missing), then store its files in the background."""
        plan = self._plan(run, aliases, ())
        sess = session(run.settings)
        registry = sess.registry(run.settings)
        _bridge.run_sync(registry.start_shard(plan.collection, distributed_id, shard, run.id))
        self._progress = run.settings.progress
        self._distributed_id = distributed_id
        self._shard = _bridge.bridge().submit(store_shard(sess, plan, distributed_id, shard))
        self._close_packs()

    def _wait_shard(self) -> None:
        if self._shard is not None:
            with progress(f"storing {self._name}", lambda: [self._counters], self._progress):
                self._shard.result()

    async def _wait_shard_async(self) -> None:
        if self._shard is not None:
            await asyncio.wrap_future(self._shard)

    def _finish_distributed(
        self, run: Run, distributed_id: str, aliases: Sequence[str], skip_missing: bool
    ) -> Artifact:
        """Commit one version holding every stored shard's entries, then drop the shard records."""
        collection = Collection(run.entity, run.project, self._name)
        registry = session(run.settings).registry(run.settings)
        records = _bridge.run_sync(registry.shards(collection, distributed_id))
        missing = [r for r in records if r.manifest is None]
        where = f"distributed artifact {collection} (distributed_id {distributed_id!r})"
        if missing and not skip_missing:
            listed = "; ".join(f"shard {r.shard} of run {r.run}, started {r.started_at}" for r in missing)
            raise ArtifactFailedError(
                f"{where} is missing {len(missing)} shard(s) that were started and never stored (a "
                f"process still at work, or one that died): {listed}; nothing was committed"
            )
        stored = [r for r in records if r.manifest is not None]
        if not stored:
            raise UsageError(f"{where} has no shards: upsert_artifact adds them")
        entries: dict[str, Entry] = {}
        owners: dict[str, ShardRecord] = {}
        for record in stored:
            assert record.manifest is not None
            for entry in _bridge.run_sync(registry.get_manifest(record.manifest)).values():
                other = owners.get(entry.path)
                if other is not None and other.run != record.run:
                    raise ValidationError(
                        f"{where}: shards {other.shard} (run {other.run}) and {record.shard} "
                        f"(run {record.run}) both add the entry {entry.path!r}; nothing was committed"
                    )
                entries[entry.path], owners[entry.path] = entry, record
        final = Artifact(self._name, self._type, self._description, dict(self._metadata))
        final._carried = entries
        final._tags, final._ttl = list(self._tags), self._ttl
        run.log_artifact(final, aliases=aliases)
        final.wait()
        _bridge.run_sync(registry.drop_shards(records))
        assert final._logged is not None
        self._shard = None
        self._become(final._logged, final._aliases)
        return self

    def wait(self, timeout: float | None = None) -> Artifact:
        """Block until the version is committed; raise ``ArtifactFailedError`` if it could not be."""
        if self._logged is None:
            if self._pending is None:
                raise UsageError(f"artifact {self._name} is not logged; log it with run.log_artifact first")
            if _bridge.bridge().in_loop_thread():
                raise UsageError("wait() was called from inside the engine; use wait_async()")
            try:
                with (
                    caller_waits(),
                    progress(f"logging {self._name}", lambda: [self._counters], self._progress),
                ):
                    logged = self._pending.result(timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"artifact {self._name} was not committed within {timeout} s") from None
            except ArtifactFailedError:
                self._failure_seen = True  # the user has it: finish() does not raise it again
                raise
            self._become(logged, _bridge.run_sync(_aliases_of(logged)))
        return self

    async def wait_async(self) -> Artifact:
        try:
            return await self._outcome()
        except ArtifactFailedError:
            self._failure_seen = True
            raise

    async def _outcome(self) -> Artifact:
        """``wait_async`` for lorry's own callers (``finish``): a failure met here is not yet the user's."""
        if self._logged is None:
            if self._pending is None:
                raise UsageError(f"artifact {self._name} is not logged; log it with run.log_artifact first")
            logged = await asyncio.wrap_future(self._pending)
            self._become(logged, await _aliases_of(logged))
        return self

    def _failure_unseen(self) -> bool:
        """Whether this artifact failed and no call of the user's has raised it yet."""
        return not self._failure_seen

    def is_draft(self) -> bool:
        """Not logged yet: still being built."""
        return self._pending is None and self._logged is None and self._shard is None

    def is_pending(self) -> bool:
        """Logged, and not committed (or failed) yet."""
        return self._logged is None and self._pending is not None and not self._pending.done()

    def _become(self, logged: _Logged, aliases: list[str]) -> None:
        self._manifest = None
        self._type = logged.record.type
        self._forget_draft()
        self._take(logged, aliases)

    def _take(self, logged: _Logged, aliases: list[str]) -> None:
        """What a version record says of this version, as this object's editable state."""
        record = logged.record
        self._logged = logged
        self._description = record.description
        self._metadata = dict(record.metadata)
        self._tags = list(record.tags)
        self._ttl = None if record.ttl is None else timedelta(seconds=record.ttl)
        self._aliases = aliases
        self._saved_aliases = list(aliases)

    def _forget_draft(self) -> None:
        self._files, self._refs, self._origins, self._carried = {}, {}, {}, {}
        self._layout = EntryLayout()
        self._close_packs()

    def _close_packs(self) -> None:
        """No more snapshots: the packs are only read from now on (by the log, which removes them)."""
        if self._snapshot_packs is not None:
            self._snapshot_packs.close()
            self._snapshot_packs = None

    def _sync(self) -> None:
        if self._logged is None and self._pending is not None:
            self.wait()

    def _state(self) -> _Logged:
        self._sync()
        if self._logged is None:
            raise UsageError(f"artifact {self._name} is not logged yet; log it with run.log_artifact first")
        return self._logged

    @classmethod
    async def _load(
        cls,
        settings: Settings,
        collection: Collection,
        record: VersionRecord,
        table: AliasTable | None = None,
    ) -> Artifact:
        """The view of a committed version (``table``: the collection's aliases, if already read)."""
        artifact = cls(collection.name, record.type)
        logged = _Logged(settings, collection, record)
        aliases = table.of(record.version) if table is not None else await _aliases_of(logged)
        artifact._become(logged, aliases)
        return artifact

    # -- the logged view --------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"PENDING"`` while it is being built or logged, ``"COMMITTED"`` once it is a version,
        ``"DELETED"`` once that version is deleted or has expired."""
        if self._logged is None:
            return "PENDING"
        return "COMMITTED" if self._logged.record.gone_since(datetime.now(UTC)) is None else "DELETED"

    @property
    def id(self) -> str | None:
        """A stable identity of the version: ``entity/project/name:vN``; None for a draft, as in the
        original."""
        return None if self.is_draft() else self.qualified_name

    @property
    def version(self) -> str:
        """``'vN'``; waits for the commit if the artifact is still being logged."""
        return version_alias(self._state().record.version)

    @property
    def entity(self) -> str:
        return self._state().collection.entity

    @property
    def project(self) -> str:
        return self._state().collection.project

    @property
    def qualified_name(self) -> str:
        return f"{self._state().collection}:{self.version}"

    @property
    def digest(self) -> str:
        """The digest of the manifest: equal contents, equal digest."""
        return self._state().record.manifest.partition(":")[2]

    @property
    def size(self) -> int:
        return self._state().record.size

    @property
    def file_count(self) -> int:
        return self._state().record.file_count

    @property
    def created_at(self) -> str:
        return self._state().record.created_at

    @property
    def manifest(self) -> Manifest:
        state = self._state()
        if self._manifest is None:
            self._manifest = _bridge.run_sync(_registry(state).get_manifest(state.record.manifest))
        return self._manifest

    def files(
        self, names: Sequence[str] | None = None, per_page: int = 50, start: str | None = None
    ) -> list[ArtifactEntry]:
        """Its entries (only those named in ``names``, if given)."""
        accept_unused("Artifact.files", "per_page", per_page, 50, "the manifest is read whole")
        accept_unused("Artifact.files", "start", start, None, "the manifest is read whole: no pages")
        wanted = None if names is None else {normalize_entry_path(n) for n in names}
        return [ArtifactEntry(self, e) for e in self.manifest.values() if wanted is None or e.path in wanted]

    def file(self, root: str | os.PathLike[str] | None = None) -> str:
        """Download the one file of a single-file artifact and return its path."""
        entries = list(self.manifest.values())
        if len(entries) != 1:
            raise ValidationError(f"artifact {self.qualified_name} holds {len(entries)} files, not one")
        return ArtifactEntry(self, entries[0]).download(root)

    def finalize(self) -> None:
        """Accepted for the original's sake: lorry freezes an artifact when it is logged."""

    @property
    def updated_at(self) -> str:
        """When the version was created (lorry keeps no separate time of the last ``save()``)."""
        return self.created_at

    def get_entry(self, name: str) -> ArtifactEntry:
        entry_name = normalize_entry_path(name)
        try:
            return ArtifactEntry(self, self.manifest[entry_name])
        except KeyError:
            raise EntryNotFoundError(f"artifact {self.qualified_name} has no entry {entry_name!r}") from None

    get_path = get_entry

    def default_root(self) -> Path:
        return Path("artifacts") / f"{self._name}:{self.version}"

    def download(
        self,
        root: str | os.PathLike[str] | None = None,
        allow_missing_references: bool = False,
        skip_cache: bool | None = None,
        path_prefix: str | None = None,
        multipart: bool | None = None,
    ) -> str:
        """Fetch what is missing or different under ``root`` (default ``./artifacts/<name>:<version>``),
        verify every file against its digest, and return the folder.

        ``allow_missing_references``: a reference whose source is gone or changed is skipped with a
        warning instead of failing the download. ``skip_cache``: blobs of a remote store are not kept
        in the download cache. ``multipart`` is accepted; lorry splits large files into ranges itself.
        """
        self.wait()
        counters = Counters()
        with progress(f"downloading {self._name}", lambda: [counters], self._state().settings.progress):
            return _bridge.run_sync(
                self._download(
                    root, path_prefix, counters, allow_missing_references, bool(skip_cache), multipart
                )
            )

    async def download_async(
        self,
        root: str | os.PathLike[str] | None = None,
        allow_missing_references: bool = False,
        skip_cache: bool | None = None,
        path_prefix: str | None = None,
        multipart: bool | None = None,
    ) -> str:
        return await self._download(
            root, path_prefix, Counters(), allow_missing_references, bool(skip_cache), multipart
        )

    def checkout(self, root: str | os.PathLike[str] | None = None) -> str:
        """Make ``root`` hold exactly this version: download it, then remove every file in ``root``
        that is not one of its entries (and the folders left empty). Returns the folder."""
        folder = Path(self.download(root))
        keep = set(self.manifest)
        for path in sorted(folder.rglob("*"), reverse=True):  # children before their folders
            relative = path.relative_to(folder).as_posix()
            if (path.is_file() or path.is_symlink()) and relative not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        return str(folder)

    async def _download(
        self,
        root: str | os.PathLike[str] | None,
        path_prefix: str | None,
        counters: Counters,
        allow_missing_references: bool = False,
        skip_cache: bool = False,
        multipart: bool | None = None,
    ) -> str:
        accept_unused("download", "multipart", multipart, None, "large files are fetched in ranges always")
        await self.wait_async()
        state = self._state()
        check_live(state.collection, state.record)
        manifest = self._manifest or await _registry(state).get_manifest(state.record.manifest)
        self._manifest = manifest
        target = Path(root) if root is not None else self.default_root()
        entries = manifest.below(normalize_entry_path(path_prefix)) if path_prefix else manifest
        eng = _transfers(state)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise LocalFileError(f"download root {target} exists and is not a folder") from None
        except OSError as exc:
            raise local_error(exc, f"cannot make the download folder {target}") from exc
        store = session(state.settings).store(state.settings.store, state.settings.store_options)
        with _download_cache(state.settings, skip_cache) as cache:
            if not allow_missing_references:
                await fetch_entries(eng, store, cache, entries.values(), target, counters)
                return str(target)
            stored = [e for e in entries.values() if e.ref is None]
            await fetch_entries(eng, store, cache, stored, target, counters)

            async def reference(entry: Entry) -> None:
                try:
                    await fetch_entry(eng, store, cache, entry, target)
                except (NotFoundError, IntegrityError, StoreError, LocalFileError) as exc:
                    log.warning("skipped reference %s of %s: %s", entry.path, self.qualified_name, exc)

            await gather_all([reference(e) for e in entries.values() if e.ref is not None])
        return str(target)

    def verify(self, root: str | os.PathLike[str] | None = None) -> None:
        """Check that ``root`` holds exactly this version's files; ``IntegrityError`` lists what differs."""
        folder = Path(root) if root is not None else self.default_root()
        manifest = self.manifest  # read first: a damaged version is the error to report, whatever the folder
        if not folder.is_dir():
            raise LocalFileError(f"{folder} {'is not a folder' if folder.exists() else 'does not exist'}")
        missing, differ, extra = [], [], []
        targets = Targets(folder)  # each folder's real path looked up once, not once per entry
        for entry in manifest.values():
            path = targets.target(entry.path)
            if not path.is_file():
                missing.append(entry.path)
            elif entry.digest is not None and not matches(path, entry.size, entry.digest):
                differ.append(entry.path)
        # os.walk, not rglob: rglob keeps every path it yields in a set, a million of them here.
        for parent, _, names in os.walk(folder):
            below = Path(parent).relative_to(folder).as_posix()
            for name in names:
                relative = name if below == "." else f"{below}/{name}"
                if relative not in manifest and os.path.isfile(os.path.join(parent, name)):
                    extra.append(relative)
        problems = [
            _few(names, what)
            for names, what in ((missing, "missing"), (differ, "differ"), (extra, "not in the artifact"))
            if names
        ]
        if problems:
            shown = "; ".join(problems)
            raise FolderMismatchError(f"{folder} does not match {self.qualified_name}: {shown}")

    # -- updating ---------------------------------------------------------------------------------------

    def save(self, project: str | None = None, settings: object | None = None) -> Artifact:
        """Persist changes to ``description``, ``metadata``, ``aliases``, ``tags`` and ``ttl`` (no new
        version). A draft is logged first, by the current run or a run made for it (in ``project``)."""
        accept_unused("Artifact.save", "settings", settings, None, "lorry reads its own settings")
        self._log_if_draft(project)
        return _bridge.run_sync(self.save_async())

    def _log_if_draft(self, project: str | None = None) -> None:
        if self.is_draft():
            from lorry.runs import current_or_new_run

            # Aliases set on the draft go with it; log_artifact checks them, and the metadata, before
            # anything is written.
            current_or_new_run(project, self._home).log_artifact(self, aliases=list(self._aliases))

    async def save_async(self) -> Artifact:
        self._log_if_draft()
        await self.wait_async()
        state = self._state()
        metadata = validate_metadata(self._metadata)
        old = state.record
        wanted = _dedupe(validate_alias(a) for a in self._aliases if a != LATEST)
        tags = validate_tags(self._tags)
        ttl = None if self._ttl is None else self._ttl.total_seconds()
        registry = _registry(state)
        if self._aliases.count(LATEST) > self._saved_aliases.count(LATEST):  # added by hand
            check_latest(old.version, await registry.latest(state.collection))

        def change(current: VersionRecord) -> VersionRecord:
            # Apply only what this object changed, onto the newest state: concurrent edits of other
            # fields or keys survive.
            updated = current
            if self._description != old.description:
                updated = replace(updated, description=self._description)
            if metadata != old.metadata:
                merged = {k: v for k, v in current.metadata.items() if k not in old.metadata or k in metadata}
                merged.update({k: v for k, v in metadata.items() if old.metadata.get(k, _MISSING) != v})
                updated = replace(updated, metadata=merged)
            if tags != old.tags:
                updated = replace(updated, tags=tags)
            if ttl != old.ttl:
                updated = replace(updated, ttl=ttl)
            return updated

        record = await registry.update_version(state.collection, old.version, change)
        saved = [a for a in self._saved_aliases if a != LATEST]
        for alias in saved:
            if alias not in wanted:
                await registry.remove_alias(state.collection, old.version, alias)
        await registry.set_aliases(state.collection, old.version, [a for a in wanted if a not in saved])
        logged = replace(state, record=record)
        self._take(logged, await _aliases_of(logged))
        return self

    # -- deleting and drafting --------------------------------------------------------------------------

    def delete(self, delete_aliases: bool = False) -> None:
        """Delete this version. Refused while it has user aliases, unless ``delete_aliases=True``.

        Readers are told it was deleted at once; its number is never given again; ``latest`` moves to
        the highest version left. Its files stay on the store until ``lorry gc`` removes what no live
        version needs, after the grace period."""
        _bridge.run_sync(self.delete_async(delete_aliases))

    async def delete_async(self, delete_aliases: bool = False) -> None:
        await self.wait_async()
        state = self._state()
        record = await _registry(state).delete_version(
            state.collection, state.record.version, delete_aliases=delete_aliases
        )
        self._logged = replace(state, record=record)
        self._aliases, self._saved_aliases = [], []

    def new_draft(self) -> Artifact:
        """A draft of a new version holding this version's entries, to change and log. The entries
        carried over are already stored: logging the draft neither reads, hashes nor sends them."""
        state = self._state()
        check_live(state.collection, state.record)
        draft = Artifact(self._name, self._type, self._description, dict(self._metadata))
        draft._carried = dict(self.manifest.items())
        draft._layout = EntryLayout.of(draft._carried)
        draft._tags = list(self._tags)
        draft._home = replace(
            state.settings, entity=state.collection.entity, project=state.collection.project
        )
        return draft

    # -- lineage ----------------------------------------------------------------------------------------

    def logged_by(self) -> LoggedRun | None:
        """The run that logged this version."""
        from lorry.lineage import LoggedRun  # here, not at the top: lineage.py imports this module

        state = self._state()
        if state.record.logged_by is None:
            return None
        return LoggedRun.load(
            state.settings, state.collection.entity, state.collection.project, state.record.logged_by
        )

    def used_by(self) -> list[LoggedRun]:
        """The runs that used this version as an input."""
        from lorry.lineage import LoggedRun

        state = self._state()
        found = _bridge.run_sync(_registry(state).consumers(state.collection, state.record.version))
        return [LoggedRun.load(state.settings, e, p, run_id) for e, p, run_id in found]

    @property
    def collection(self) -> Any:
        """The ``ArtifactCollection`` this version belongs to."""
        from lorry.api import ArtifactCollection

        state = self._state()
        return ArtifactCollection.load(state.settings, state.collection)

    source_collection = collection

    # -- the original's remaining surface ---------------------------------------------------------------
    # One store and no server: a version is its own source (no portfolio collections), and there is no
    # web page and no metrics history to point at.

    source_name = name
    source_version = version
    source_entity = entity
    source_project = project
    source_qualified_name = qualified_name

    @property
    def distributed_id(self) -> str | None:
        """The distributed artifact this one was upserted to (``run.upsert_artifact``), if any."""
        return self._distributed_id

    @property
    def source_artifact(self) -> Artifact:
        return self

    @property
    def is_link(self) -> bool:
        """Always False: ``link`` makes a version of the target collection, not a link (see there)."""
        return False

    @property
    def linked_artifacts(self) -> list[Artifact]:
        return []

    @property
    def commit_hash(self) -> str:
        """The digest of the version's manifest (what its commit recorded)."""
        return self.digest

    @property
    def history_step(self) -> int | None:
        """None: lorry records artifacts, not a run's metrics history."""
        return None

    @property
    def url(self) -> str:
        """``""``, as the original returns without a web app to address (see ``lorry ui``)."""
        return ""

    def json_encode(self) -> dict[str, Any]:
        """The reference the original writes into a run's summary for this version."""
        return {
            "_type": "artifactVersion",
            "_version": "v0",
            "id": self.id,
            "version": self.version,
            "sequenceName": self._name,
            "usedAs": self.use_as,
        }

    def get(self, name: str) -> None:
        """None: the original returns a rich media object stored at ``name``; lorry has none (read the
        file with ``get_entry(name).download()``)."""
        accept_unused("Artifact", "get", True, False, "there are no rich media objects; use get_entry")

    def add(self, obj: object, name: str, overwrite: bool = False) -> ArtifactEntry:
        """Refused with a clear error: the original adds its rich media objects (tables, images, ...),
        which lorry does not have. Write the object to a file with ``new_file`` instead."""
        raise UsageError(
            f"Artifact.add takes the original's media objects, which lorry has none of; write "
            f"{type(obj).__name__} with artifact.new_file({name!r}) instead"
        )

    def get_added_local_path_name(self, local_path: str | os.PathLike[str]) -> str | None:
        """The entry name that ``local_path``, added with ``add_file`` or ``add_dir``, is stored as."""
        try:
            identity = _identity(os.fspath(local_path))
        except OSError:
            return None
        return next((name for name, origin in self._origins.items() if origin == identity), None)

    def link(self, target_path: str, aliases: Sequence[str] | None = None) -> Artifact:
        """Make this version's content a version of the collection ``[[entity/]project/]name`` too,
        with ``aliases`` (and ``latest``); return that version. The original links without copying;
        lorry has no links between collections, so the target gets a version of its own holding the
        same entries (nothing is read or stored again), logged by a run of job type ``link``."""
        from lorry.runs import Run

        self._log_if_draft()
        state = self._state()
        path = parse_artifact_path(target_path)
        if path.alias is not None:
            raise ValidationError(f"link target {target_path!r} names a version; give a collection")
        settings = replace(
            state.settings,
            entity=path.entity or state.collection.entity,
            project=path.project or state.collection.project,
        )
        target = self.new_draft()
        target._name = path.name
        with Run(settings, job_type="link", name=None, config=None) as run:
            run.use_artifact(self)
            run.log_artifact(target, aliases=aliases)
            return target.wait()

    def unlink(self) -> None:
        """Refused as the original refuses it for a version that is not a link: every version here is
        its own (``delete()`` removes one made by ``link``)."""
        raise ValidationError(
            f"artifact {self.qualified_name} is not a linked artifact and cannot be unlinked; "
            "use delete() to delete it"
        )

    def _ref(self) -> ArtifactRef:
        state = self._state()
        return ArtifactRef(
            state.collection.entity, state.collection.project, self._name, state.record.version
        )


_MISSING = object()


class ArtifactEntry:
    """One file of an artifact: ``path``, ``size``, ``digest``, ``ref``, ``download()``."""

    def __init__(self, artifact: Artifact, entry: Entry) -> None:
        self._artifact = artifact
        self._entry = entry

    def __repr__(self) -> str:
        return f"<ArtifactEntry {self._entry.path} size={self._entry.size}>"

    @property
    def path(self) -> str:
        return self._entry.path

    name = path

    @property
    def size(self) -> int | None:
        return self._entry.size

    @property
    def digest(self) -> str | None:
        return self._entry.digest

    @property
    def ref(self) -> str | None:
        """The URI this entry references, or None for a stored file (an attribute, as in the
        original: ``if entry.ref is None``)."""
        return self._entry.ref

    def ref_target(self) -> str:
        """The URI this entry references; a ``ValidationError`` (a ``ValueError``) for a stored file."""
        if self._entry.ref is None:
            raise ValidationError(f"entry {self._entry.path!r} is stored, not a reference")
        return self._entry.ref

    def parent_artifact(self) -> Artifact:
        return self._artifact

    def download(
        self,
        root: str | os.PathLike[str] | None = None,
        skip_cache: bool | None = None,
        executor: object | None = None,
    ) -> str:
        """Fetch this one file (verified) under ``root`` and return its path. (``skip_cache`` and
        ``executor`` are accepted: one file is fetched into place, through lorry's own engine.)"""
        accept_unused("ArtifactEntry.download", "skip_cache", skip_cache, None, "it is fetched into place")
        accept_unused("ArtifactEntry.download", "executor", executor, None, "lorry schedules transfers")
        return _bridge.run_sync(self.download_async(root))

    async def download_async(self, root: str | os.PathLike[str] | None = None) -> str:
        artifact = await self._artifact.wait_async()
        state = artifact._state()
        folder = Path(root) if root is not None else artifact.default_root()
        eng = _transfers(state)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise local_error(exc, f"cannot make the download folder {folder}") from exc
        path = await fetch_entry(
            eng,
            session(state.settings).store(state.settings.store, state.settings.store_options),
            Cache(state.settings.cache_dir),
            self._entry,
            folder,
        )
        return str(path)


async def _aliases_of(state: _Logged) -> list[str]:
    table = await _registry(state).alias_table(state.collection)
    return table.of(state.record.version)


def _registry(state: _Logged) -> Registry:
    return session(state.settings).registry(state.settings)


async def _logged(sess: Session, plan: LogPlan, ticket: Ticket) -> _Logged:
    return _Logged(plan.settings, plan.collection, await publish(sess, plan, ticket))


def _transfers(state: _Logged) -> Engine:
    """The session's engine for one download, with the settings in force as the call starts: a reference
    is fetched with the TLS options of the caller's environment now, as it was resolved with them."""
    return session(state.settings).engine.with_settings(Settings.load())


@contextlib.contextmanager
def _download_cache(settings: Settings, skip: bool) -> Iterator[Cache]:
    """The download cache, or with ``skip`` a private one removed afterwards (nothing is kept)."""
    cache = Cache(settings.cache_dir)
    if not skip:
        yield cache
        return
    folder = cache.staging_folder()
    try:
        yield Cache(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _few(names: Sequence[str], what: str, shown: int = 3) -> str:
    """``'170 files missing (a, b, c, ... and 167 more)'``: a count and the first few, one line."""
    count = len(names)
    verb = what if count != 1 or what != "differ" else "differs"
    listed = ", ".join(sorted(names)[:shown]) + (f", ... and {count - shown} more" if count > shown else "")
    return f"{count} file{'' if count == 1 else 's'} {verb} ({listed})"


def _drop_staging(folder: Path, owner: int) -> None:
    """Remove the staging folder of a draft that was dropped (never by a forked child: it is the
    parent's)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def _identity(path: str | Path) -> int:
    return _identity_of(os.stat(path))


def _identity_of(st: os.stat_result) -> int:
    """Device and inode in one number: one object per file added, not a tuple of two."""
    return st.st_dev << 64 | st.st_ino


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_policy(policy: str | None) -> str:
    if policy is None:
        return "mutable"
    if policy not in POLICIES:
        raise ValidationError(f"policy must be 'mutable' or 'immutable', not {policy!r}")
    return policy


def _dedupe(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while a folder walk adds its files. Each file adds objects that
    live as long as the artifact and make no cycle, yet every full collection on the way traverses
    all of them again: for a million files, a sixth of ``add_dir``'s CPU. (Collection is the whole
    process's: it is on again as soon as the walk ends, or fails.)"""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _walk_files(root: Path) -> Iterator[tuple[str, str]]:
    """(relative posix path, file) for every file below ``root``, following links, in sorted order."""
    seen: set[str] = set()

    def walk(folder: str, relative: str) -> Iterator[tuple[str, str]]:
        real = os.path.realpath(folder)
        if real in seen:
            raise LocalFileError(f"symbolic link cycle at {folder}")
        seen.add(real)
        try:
            children = sorted(os.scandir(folder), key=lambda d: d.name)
        except OSError as exc:
            raise LocalFileError(f"cannot list {folder}: {exc.strerror}") from exc
        for child in children:
            rel = f"{relative}{child.name}"
            if child.is_dir(follow_symlinks=True):
                yield from walk(child.path, rel + "/")
            elif child.is_file(follow_symlinks=True):
                yield rel, child.path
            elif child.is_symlink():
                raise LocalFileError(f"cannot add {child.path}: it is a dangling symbolic link")
            # sockets, fifos and devices are not files to version: skipped
        seen.discard(real)

    yield from walk(str(root), "")


# -- what runs, lineage and the Api ask of an artifact: they call these, never its private methods -----


def start_log(artifact: Artifact, run: Run, aliases: Sequence[str], tags: Sequence[str]) -> None:
    """Log ``artifact`` in ``run``: its place in the collection's order is drawn now, the rest runs on."""
    artifact._start_log(run, aliases, tags)


def start_shard(
    artifact: Artifact, run: Run, distributed_id: str, shard: str, aliases: Sequence[str]
) -> None:
    artifact._start_shard(run, distributed_id, shard, aliases)


def has_entries(artifact: Artifact) -> bool:
    return artifact._has_entries()


def name_of(artifact: Artifact) -> str:
    """The collection name, draft or logged (``Artifact.name`` carries the version once logged)."""
    return artifact._name


def wait_shard(artifact: Artifact) -> None:
    artifact._wait_shard()


async def wait_shard_async(artifact: Artifact) -> None:
    await artifact._wait_shard_async()


def finish_distributed(
    artifact: Artifact, run: Run, distributed_id: str, aliases: Sequence[str], skip_missing: bool
) -> Artifact:
    return artifact._finish_distributed(run, distributed_id, aliases, skip_missing)


def ref_of(artifact: Artifact) -> ArtifactRef:
    return artifact._ref()


async def outcome(artifact: Artifact) -> Artifact:
    """``wait_async`` for lorry's own callers (``finish``): a failure met here is not yet the user's."""
    return await artifact._outcome()


def failure_unseen(artifact: Artifact) -> bool:
    return artifact._failure_unseen()


async def load_logged(
    settings: Settings, collection: Collection, record: VersionRecord, table: AliasTable | None = None
) -> Artifact:
    """The view of a committed version (``table``: the collection's aliases, if already read)."""
    return await Artifact._load(settings, collection, record, table)
