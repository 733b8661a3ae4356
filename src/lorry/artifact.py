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
import errno
import fcntl
import itertools
import os
import posixpath
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lorry import _bridge
from lorry.cache import Cache
from lorry.errors import (
    ArtifactFailedError,
    IntegrityError,
    LocalFileError,
    UsageError,
    ValidationError,
)
from lorry.model.manifest import Entry, EntryLayout, Manifest, Rows, normalize_entry_path
from lorry.model.metadata import validate_metadata
from lorry.model.names import LATEST, validate_alias, validate_artifact_name, validate_type, version_alias
from lorry.registry.maintenance import SETTLE, guard_commit, read_fence, repair_if_gc_ran
from lorry.registry.records import ArtifactRef, RunRecord, VersionRecord
from lorry.registry.registry import Collection, Registry
from lorry.settings import Settings
from lorry.transfer import refs
from lorry.transfer.download import fetch_entries, fetch_entry
from lorry.transfer.engine import Counters, Engine, engine, gather_all
from lorry.transfer.files import FileStamp, local_error, matches, safe_target
from lorry.transfer.journal import Journal
from lorry.transfer.offload import helper, wants_helper
from lorry.transfer.progress import progress
from lorry.transfer.upload import PART_FILES, PARTS_IN_FLIGHT, FileSource, store_files

if TYPE_CHECKING:
    from lorry.runs import Run
    from lorry.storage.base import Store

POLICIES = ("mutable", "immutable")
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # a snapshot that failed for want of room
_FICLONE = 0x40049409  # Linux ioctl: share the source's extents (btrfs, XFS) instead of copying


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


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
    ) -> None:
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
        self._pending: concurrent.futures.Future[_Logged] | None = None
        self._logged: _Logged | None = None
        self._manifest: Manifest | None = None
        self._saved_aliases: list[str] = []
        self._counters = Counters()  # progress of logging, read by progress bars
        self._progress: bool | None = None

    def __repr__(self) -> str:
        if self._logged is not None:
            return f"<Artifact {self._logged.collection}:{self.version} type={self._type!r}>"
        state = "logging" if self._pending is not None else "draft"
        return f"<Artifact {self._name} type={self._type!r} ({state})>"

    # -- identity and editable fields -----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

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

    # -- building ---------------------------------------------------------------------------------------

    def add_file(
        self, local_path: str | os.PathLike[str], name: str | None = None, policy: str = "mutable"
    ) -> ArtifactEntry:
        """Add one file, stored as ``name`` (default: the file's own name).

        ``policy="mutable"`` snapshots the file now, so later writes to it do not change what is
        logged; ``"immutable"`` promises the file will not change (no copy is made) and fails the
        version if it does.
        """
        self._check_draft("add files to")
        _check_policy(policy)
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
        self._add_source(entry_name, path, policy)
        return ArtifactEntry(self, Entry(entry_name, None, path.stat().st_size))

    def add_dir(
        self, local_path: str | os.PathLike[str], name: str | None = None, policy: str = "mutable"
    ) -> None:
        """Add every file below a directory, as ``name/<relative path>`` (or ``<relative path>``).

        Symbolic links are followed: a link to a file adds that file's content, a link to a directory
        adds that directory's files. A dangling link or a link cycle is an error naming it.
        """
        self._check_draft("add files to")
        _check_policy(policy)
        root = Path(local_path)
        if not root.exists():
            raise LocalFileError(f"cannot add {root}: no such directory")
        if not root.is_dir():
            raise LocalFileError(f"{root} is not a directory; use add_file to add a file")
        prefix = normalize_entry_path(name) if name else ""
        added: list[str] = []
        try:  # file by file as the walk finds them: a million files are never all held at once
            for relative, path in _walk_files(root):
                entry_name = normalize_entry_path(posixpath.join(prefix, relative) if prefix else relative)
                if self._add_source(entry_name, path, policy):
                    added.append(entry_name)
        except BaseException:  # all or nothing: what this call added goes again
            for entry_name in added:
                self._drop(entry_name)
            raise

    @contextlib.contextmanager
    def new_file(self, name: str, mode: str = "w", encoding: str | None = None) -> Iterator[IO[Any]]:
        """A new file to write; when the ``with`` block ends it is added as ``name``."""
        self._check_draft("add files to")
        entry_name = normalize_entry_path(name)
        if entry_name in self._files or entry_name in self._refs:
            raise ValidationError(f"entry {entry_name!r} is already in this artifact")
        self._layout.check(entry_name)
        if not set(mode) <= set("wxab+t") or not set(mode) & set("wxa"):
            raise ValidationError(f"new_file mode must be a write mode such as 'w' or 'wb', not {mode!r}")
        staged = self._staged_path()
        with open(staged, mode, encoding=encoding) as handle:
            yield handle
        os.chmod(staged, 0o600)
        if entry_name in self._files or entry_name in self._refs:  # taken while the block ran
            raise ValidationError(f"entry {entry_name!r} is already in this artifact")
        self._layout.add(entry_name)
        self._files[entry_name] = FileSource(entry_name, staged, FileStamp.of(Path(staged)), owned=True)

    def add_reference(
        self, uri: str, name: str | None = None, checksum: bool = True, max_objects: int | None = None
    ) -> list[ArtifactEntry]:
        """Track a URI instead of storing its content; a prefix or folder adds each object below it."""
        self._check_draft("add references to")
        if not isinstance(uri, str):
            raise ValidationError(f"reference URI must be a string, not {type(uri).__name__}")
        if max_objects is not None and (not isinstance(max_objects, int) or max_objects < 1):
            raise ValidationError(f"max_objects must be a positive integer, not {max_objects!r}")
        entries = refs.resolve(uri, name, checksum, max_objects)
        trial = self._layout.copy()
        for entry in entries:
            if entry.path in self._files or (entry.path in self._refs and self._refs[entry.path] != entry):
                raise ValidationError(f"entry {entry.path!r} is already in this artifact with other content")
            trial.add(entry.path)
        for entry in entries:
            self._refs[entry.path] = entry
        self._layout = trial
        return [ArtifactEntry(self, entry) for entry in entries]

    def remove(self, name: str) -> None:
        """Remove an entry, or every entry below a folder name."""
        self._check_draft("remove files from")
        target = normalize_entry_path(name)
        removed = False
        for table in (self._files, self._refs):
            for key in [k for k in table if k == target or k.startswith(target + "/")]:
                del table[key]
                self._origins.pop(key, None)
                self._layout.discard(key)
                removed = True
        if not removed:
            raise LocalFileError(f"artifact {self._name} has no entry {target!r}")

    def _add_source(self, entry_name: str, path: str | Path, policy: str) -> bool:
        """Add a file as ``entry_name``; False if this very file is already there under that name."""
        if entry_name in self._refs:
            raise ValidationError(f"entry {entry_name!r} is already a reference in this artifact")
        if entry_name in self._files:
            if self._origins.get(entry_name) == _identity(path):
                return False  # the same file added twice
            raise ValidationError(f"two different files under one entry name {entry_name!r}")
        self._layout.check(entry_name)
        staged: str | None = None
        try:
            if policy == "mutable":
                staged = self._staged_path()
                origin, stamp = _snapshot(path, staged)
                source = FileSource(entry_name, staged, stamp, owned=True)
            else:
                st = os.stat(path)
                origin, stamp = _identity_of(st), FileStamp.of_stat(st)
                source = FileSource(entry_name, str(path), stamp, owned=False)
        except OSError as exc:
            if staged is not None:  # a partial snapshot is no use to anyone
                with contextlib.suppress(OSError):
                    os.unlink(staged)
            where = f" (its snapshot in {self._staging})" if exc.errno in _NO_ROOM else ""
            raise local_error(exc, f"cannot add {path}{where}") from exc
        self._files[entry_name] = source
        self._origins[entry_name] = origin
        self._layout.add(entry_name)
        return True

    def _drop(self, entry_name: str) -> None:
        """Take a file out again (and its snapshot, if lorry made one)."""
        source = self._files.pop(entry_name)
        self._origins.pop(entry_name, None)
        self._layout.discard(entry_name)
        if source.owned:
            with contextlib.suppress(OSError):
                os.unlink(source.source)

    def _staged_path(self) -> str:
        """A fresh name in this artifact's staging folder (made on first use, removed once logged)."""
        if self._staging is None:
            self._staging = Cache(Settings.load().cache_dir).staging_folder()
        return f"{self._staging}/{next(self._staged_names):x}"

    def _check_draft(self, action: str) -> None:
        if self._pending is not None or self._logged is not None:
            raise UsageError(
                f"cannot {action} artifact {self._name}: it is already logged; create a new Artifact"
            )

    # -- logging (called by Run) ------------------------------------------------------------------------

    def _start_log(self, run: Run, aliases: Sequence[str]) -> None:
        """Draw this artifact's place in its collection's order, then hand the work to the engine."""
        if self._pending is not None or self._logged is not None:
            raise UsageError(
                f"artifact {self._name} is already logged; create a new Artifact for a new version"
            )
        checked = _dedupe([LATEST, *(validate_alias(a) for a in aliases if a != LATEST)])
        # The dict may have been changed in place since it was set: check it again, and freeze a deep
        # copy, so that later changes to it do not reach this version.
        metadata = validate_metadata(self._metadata)
        Manifest.check_size(((f.path, f.stamp.size) for f in self._files.values()), self._refs.values())
        collection = Collection(run.entity, run.project, self._name)
        eng = engine(run.settings)
        ticket = eng.assigner.draw(str(collection))
        plan = _LogPlan(
            run=run,
            settings=run.settings,
            collection=collection,
            artifact_type=self._type,
            files=tuple(self._files.values()),
            refs=tuple(self._refs.values()),
            description=self.description,
            metadata=metadata,
            aliases=tuple(checked),
            counters=self._counters,
            staging=self._staging,
        )
        self._progress = run.settings.progress
        try:
            self._pending = _bridge.bridge().submit(_log(eng, plan, ticket))
        except BaseException:
            _bridge.bridge().submit(eng.assigner.release(ticket))
            raise
        self._forget_draft()  # the plan holds what is logged; the tables for building it can go
        run._track(self)

    def wait(self, timeout: float | None = None) -> Artifact:
        """Block until the version is committed; raise ``ArtifactFailedError`` if it could not be."""
        if self._logged is None:
            if self._pending is None:
                raise UsageError(f"artifact {self._name} is not logged; log it with run.log_artifact first")
            if _bridge.bridge().in_loop_thread():
                raise UsageError("wait() was called from inside the engine; use wait_async()")
            try:
                with progress(f"logging {self._name}", lambda: [self._counters], self._progress):
                    logged = self._pending.result(timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"artifact {self._name} was not committed within {timeout} s") from None
            self._become(logged, _bridge.run_sync(_aliases_of(logged)))
        return self

    async def wait_async(self) -> Artifact:
        if self._logged is None:
            if self._pending is None:
                raise UsageError(f"artifact {self._name} is not logged; log it with run.log_artifact first")
            logged = await asyncio.wrap_future(self._pending)
            self._become(logged, await _aliases_of(logged))
        return self

    def is_draft(self) -> bool:
        """Not logged yet: still being built."""
        return self._pending is None and self._logged is None

    def is_pending(self) -> bool:
        """Logged, and not committed (or failed) yet."""
        return self._logged is None and self._pending is not None and not self._pending.done()

    def _become(self, logged: _Logged, aliases: list[str]) -> None:
        self._logged = logged
        self._manifest = None
        self._type = logged.record.type
        self._description = logged.record.description
        self._metadata = dict(logged.record.metadata)
        self._forget_draft()
        self._aliases = aliases
        self._saved_aliases = list(aliases)

    def _forget_draft(self) -> None:
        self._files, self._refs, self._origins = {}, {}, {}
        self._layout = EntryLayout()

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
        """``"PENDING"`` while it is being built or logged, ``"COMMITTED"`` once it is a version."""
        return "COMMITTED" if self._logged is not None else "PENDING"

    @property
    def id(self) -> str:
        """A stable identity of the version: ``entity/project/name:vN``."""
        return self.qualified_name

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

    def files(self) -> list[ArtifactEntry]:
        return [ArtifactEntry(self, entry) for entry in self.manifest.values()]

    def get_entry(self, name: str) -> ArtifactEntry:
        entry_name = normalize_entry_path(name)
        try:
            return ArtifactEntry(self, self.manifest[entry_name])
        except KeyError:
            raise LocalFileError(f"artifact {self.qualified_name} has no entry {entry_name!r}") from None

    get_path = get_entry

    def default_root(self) -> Path:
        return Path("artifacts") / f"{self._name}:{self.version}"

    def download(self, root: str | os.PathLike[str] | None = None, path_prefix: str | None = None) -> str:
        """Fetch what is missing or different under ``root`` (default ``./artifacts/<name>:<version>``),
        verify every file against its digest, and return the folder."""
        self.wait()
        counters = Counters()
        with progress(f"downloading {self._name}", lambda: [counters], self._state().settings.progress):
            return _bridge.run_sync(self._download(root, path_prefix, counters))

    async def download_async(
        self, root: str | os.PathLike[str] | None = None, path_prefix: str | None = None
    ) -> str:
        return await self._download(root, path_prefix, Counters())

    async def _download(
        self, root: str | os.PathLike[str] | None, path_prefix: str | None, counters: Counters
    ) -> str:
        await self.wait_async()
        state = self._state()
        manifest = self._manifest or await _registry(state).get_manifest(state.record.manifest)
        self._manifest = manifest
        target = Path(root) if root is not None else self.default_root()
        entries = manifest.below(normalize_entry_path(path_prefix)) if path_prefix else manifest
        eng = engine(state.settings)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise LocalFileError(f"download root {target} exists and is not a folder") from None
        except OSError as exc:
            raise local_error(exc, f"cannot make the download folder {target}") from exc
        await fetch_entries(
            eng,
            eng.store(state.settings.store, state.settings.store_options),
            Cache(state.settings.cache_dir),
            entries.values(),
            target,
            counters,
        )
        return str(target)

    def verify(self, root: str | os.PathLike[str] | None = None) -> None:
        """Check that ``root`` holds exactly this version's files; ``IntegrityError`` lists what differs."""
        folder = Path(root) if root is not None else self.default_root()
        problems = []
        for entry in self.manifest.values():
            path = safe_target(folder, entry.path)
            if not path.is_file():
                problems.append(f"{entry.path}: missing")
            elif entry.digest is not None and not matches(path, entry.size, entry.digest):
                problems.append(f"{entry.path}: content differs")
        for path in (p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder).as_posix()
            if relative not in self.manifest:
                problems.append(f"{relative}: not in the artifact")
        if problems:
            raise IntegrityError(
                f"{folder} does not match {self.qualified_name}: " + "; ".join(problems[:20])
            )

    # -- updating ---------------------------------------------------------------------------------------

    def save(self) -> Artifact:
        """Persist changes to ``description``, ``metadata`` and ``aliases`` (no new version). A draft is
        logged first, by the current run or a run made for it."""
        self._log_if_draft()
        return _bridge.run_sync(self.save_async())

    def _log_if_draft(self) -> None:
        if self.is_draft():
            from lorry.runs import current_or_new_run

            # Aliases set on the draft go with it; log_artifact checks them, and the metadata, before
            # anything is written.
            current_or_new_run().log_artifact(self, aliases=list(self._aliases))

    async def save_async(self) -> Artifact:
        self._log_if_draft()
        await self.wait_async()
        state = self._state()
        metadata = validate_metadata(self._metadata)
        old = state.record
        wanted = _dedupe(validate_alias(a) for a in self._aliases if a != LATEST)
        registry = _registry(state)

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
            return updated

        record = await registry.update_version(state.collection, old.version, change)
        saved = [a for a in self._saved_aliases if a != LATEST]
        for alias in saved:
            if alias not in wanted:
                await registry.remove_alias(state.collection, old.version, alias)
        await registry.set_aliases(state.collection, old.version, [a for a in wanted if a not in saved])
        self._logged = replace(state, record=record)
        self._metadata = dict(record.metadata)
        self._description = record.description
        self._aliases = await _aliases_of(self._logged)
        self._saved_aliases = list(self._aliases)
        return self

    # -- lineage ----------------------------------------------------------------------------------------

    def logged_by(self) -> LoggedRun | None:
        """The run that logged this version."""
        state = self._state()
        if state.record.logged_by is None:
            return None
        return LoggedRun.load(
            state.settings, state.collection.entity, state.collection.project, state.record.logged_by
        )

    def used_by(self) -> list[LoggedRun]:
        """The runs that used this version as an input."""
        state = self._state()
        found = _bridge.run_sync(_registry(state).consumers(state.collection, state.record.version))
        return [LoggedRun.load(state.settings, e, p, run_id) for e, p, run_id in found]

    def _ref(self) -> ArtifactRef:
        state = self._state()
        return ArtifactRef(
            state.collection.entity, state.collection.project, self._name, state.record.version
        )


_MISSING = object()


class ArtifactEntry:
    """One file of an artifact: ``path``, ``size``, ``digest``, ``download()`` and ``ref()``."""

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

    def ref(self) -> str | None:
        """The URI this entry references, or None for a stored file."""
        return self._entry.ref

    def download(self, root: str | os.PathLike[str] | None = None) -> str:
        """Fetch this one file (verified) under ``root`` and return its path."""
        return _bridge.run_sync(self.download_async(root))

    async def download_async(self, root: str | os.PathLike[str] | None = None) -> str:
        artifact = await self._artifact.wait_async()
        state = artifact._state()
        folder = Path(root) if root is not None else artifact.default_root()
        eng = engine(state.settings)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise local_error(exc, f"cannot make the download folder {folder}") from exc
        path = await fetch_entry(
            eng,
            eng.store(state.settings.store, state.settings.store_options),
            Cache(state.settings.cache_dir),
            self._entry,
            folder,
        )
        return str(path)


class LoggedRun:
    """A run as recorded on the store: who it was, what it used and what it logged."""

    def __init__(self, settings: Settings, record: RunRecord) -> None:
        self._settings = settings
        self._record = record

    @classmethod
    def load(cls, settings: Settings, entity: str, project: str, run_id: str) -> LoggedRun:
        registry = engine(settings).registry(settings)
        return cls(settings, _bridge.run_sync(registry.get_run(entity, project, run_id)))

    def __repr__(self) -> str:
        return f"<Run {self.path} job_type={self.job_type!r} state={self.state!r}>"

    id = property(lambda self: self._record.id)
    name = property(lambda self: self._record.name)
    entity = property(lambda self: self._record.entity)
    project = property(lambda self: self._record.project)
    job_type = property(lambda self: self._record.job_type)
    state = property(lambda self: self._record.state)
    created_at = property(lambda self: self._record.created_at)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._record.config)

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    def used_artifacts(self) -> list[Artifact]:
        return [load_version(self._settings, ref) for ref in self._record.inputs]

    def logged_artifacts(self) -> list[Artifact]:
        return [load_version(self._settings, ref) for ref in self._record.outputs]


def load_version(settings: Settings, ref: ArtifactRef) -> Artifact:
    return _bridge.run_sync(load_version_async(settings, ref))


async def load_version_async(settings: Settings, ref: ArtifactRef) -> Artifact:
    collection = Collection(ref.entity, ref.project, ref.name)
    record = await engine(settings).registry(settings).read_version(collection, ref.version)
    return await Artifact._load(settings, collection, record)


@dataclass(frozen=True, slots=True)
class AliasTable:
    """A collection's user aliases and its newest version, read once for any number of versions."""

    aliases: Mapping[str, int]
    latest: int | None

    @classmethod
    async def read(cls, registry: Registry, collection: Collection) -> AliasTable:
        aliases, latest = await asyncio.gather(registry.aliases(collection), registry.latest(collection))
        return cls(aliases, latest)

    def of(self, version: int) -> list[str]:
        """The aliases naming ``version``, with ``latest`` first while it is the newest."""
        names = [alias for alias, number in sorted(self.aliases.items()) if number == version]
        return [LATEST, *names] if self.latest == version else names


async def _aliases_of(state: _Logged) -> list[str]:
    table = await AliasTable.read(_registry(state), state.collection)
    return table.of(state.record.version)


def _registry(state: _Logged) -> Registry:
    return engine(state.settings).registry(state.settings)


@dataclass(frozen=True)
class _LogPlan:
    """Everything one ``log_artifact`` call needs, frozen at the moment of the call."""

    run: Run
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


async def _log(eng: Engine, plan: _LogPlan, ticket: Any) -> _Logged:
    """Store the files and the manifest (in parallel with other artifacts), then commit in turn."""
    try:
        store = eng.store(plan.settings.store, plan.settings.store_options)
        registry = eng.registry(plan.settings)
        fence = await read_fence(store)  # before anything stored is looked at: see maintenance.py
        rows = await _store_files(eng, store, plan, plan.counters)
        for ref in plan.refs:
            rows.add(ref)
        manifest = Manifest.of_rows(rows)
        del rows
        await registry.put_manifest(manifest)

        async def restore() -> None:  # a gc ran meanwhile: store again whatever it removed
            await _store_files(eng, store, plan, Counters())
            await registry.put_manifest(manifest)

        async with eng.assigner.turn(ticket):
            fence = await guard_commit(store, fence, restore)
            started = time.monotonic()
            record, _ = await registry.commit(
                plan.collection,
                plan.artifact_type,
                manifest,
                created_at=now_iso(),
                logged_by=plan.run.id,
                description=plan.description,
                metadata=plan.metadata,
            )
            if time.monotonic() - started > SETTLE / 2:
                await repair_if_gc_ran(store, fence, restore)
            await registry.set_aliases(plan.collection, record.version, plan.aliases)
        await plan.run._record_output(
            ArtifactRef(plan.collection.entity, plan.collection.project, plan.collection.name, record.version)
        )
    except Exception as exc:
        raise ArtifactFailedError(f"logging artifact {plan.collection} failed: {exc}") from exc
    finally:
        await eng.assigner.release(ticket)
        if plan.staging is not None:  # logged or failed, an artifact is never logged again
            await eng.in_thread(shutil.rmtree, plan.staging, True)
    return _Logged(plan.settings, plan.collection, record)


async def _store_files(eng: Engine, store: Store, plan: _LogPlan, counters: Counters) -> Rows:
    """The files' rows of the manifest, stored here or by the helper process (see
    ``transfer/offload.py``), a part of ``PART_FILES`` files at a time: what is held for the files on
    the way, here and in the helper, stays the same whatever their number."""
    files = plan.files
    counters.files_total += len(files)
    counters.bytes_total += sum(f.stamp.size for f in files)
    offloaded = wants_helper(plan.settings, files)
    journal = Journal(plan.settings.cache_dir)
    rows = Rows()
    window = asyncio.Semaphore(PARTS_IN_FLIGHT)

    async def store_part(start: int) -> None:
        async with window:
            part = files[start : start + PART_FILES]
            if offloaded:
                digests = await helper().store_files(plan.settings, part, counters, eng.retries)
            else:
                digests = await store_files(eng, store, part, counters, journal)
        for source, digest in zip(part, digests, strict=True):
            rows.add_file(source.path, digest, source.stamp.size)

    await gather_all(store_part(start) for start in range(0, len(files), PART_FILES))
    return rows


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


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValidationError(f"policy must be 'mutable' or 'immutable', not {policy!r}")


def _dedupe(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


def _snapshot(source: str | Path, target: str) -> tuple[int, FileStamp]:
    """Copy ``source`` so later writes to it do not reach the copy: a reflink where the filesystem
    shares extents, else a full copy done by the kernel. Returns the source's identity and the copy's
    stamp."""
    with open(source, "rb", buffering=0) as src, open(target, "xb", buffering=0) as dst:
        st = os.fstat(src.fileno())
        try:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        except OSError:
            _copy_all(src.fileno(), dst.fileno(), st.st_size)
        return _identity_of(st), FileStamp.of_fd(dst.fileno())


def _copy_all(src: int, dst: int, size: int) -> None:
    """Copy the ``size`` bytes seen in the kernel (the snapshot is the file as it was when looked at)."""
    while size > 0 and (sent := os.sendfile(dst, src, None, size)):
        size -= sent


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
