"""``Run``: one job's session with a store; it logs artifacts as outputs and uses them as inputs.

Lineage is recorded on the store as it happens: the run record lists inputs and outputs, and each used
version keeps a marker naming its consumer, so ``logged_by()`` and ``used_by()`` work from anywhere.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import secrets
import string
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from lorry import _bridge
from lorry import artifact as artifacts
from lorry._compat import accept_unused, note_once
from lorry.artifact import Artifact
from lorry.errors import (
    ArtifactFailedError,
    ConflictError,
    RunNotFoundError,
    StoreError,
    UsageError,
    ValidationError,
)
from lorry.lineage import LoggedRun
from lorry.model.layout import Collection
from lorry.model.metadata import validate_metadata
from lorry.model.names import (
    LATEST,
    parse_artifact_path,
    validate_artifact_name,
    validate_segment,
    validate_tags,
)
from lorry.publish import now_iso
from lorry.registry.records import ArtifactRef, RunRecord
from lorry.session import close_session, session
from lorry.settings import Settings
from lorry.transfer.offload import caller_waits, close_helper

logger = logging.getLogger("lorry")

_ID_ALPHABET = string.ascii_lowercase + string.digits


def _new_run_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


class Run:
    """A running job. Use it as a context manager, or call ``finish()`` at the end."""

    def __init__(
        self,
        settings: Settings,
        *,
        job_type: str | None,
        name: str | None,
        config: dict[str, Any] | None,
        group: str | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
        run_id: str | None = None,
        resume: bool | str | None = None,
    ) -> None:
        for what, value in (("job_type", job_type), ("group", group), ("notes", notes)):
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"{what} must be a string, not {type(value).__name__}")
        self.settings = settings
        self.id = validate_segment(run_id, "run id") if run_id is not None else _new_run_id()
        self.name = name if name is not None else f"run-{self.id}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError("run name must be a non-empty string")
        self.job_type = job_type
        self.group = group
        self.tags: tuple[str, ...] = validate_tags(tags or ())
        self.notes = notes
        self.config: dict[str, Any] = validate_metadata(config)
        self._record = RunRecord(
            id=self.id,
            entity=settings.entity,
            project=settings.project,
            name=self.name,
            job_type=job_type,
            config=self.config,
            created_at=now_iso(),
            group=group,
            tags=self.tags,
            notes=notes,
        )
        self._shards: dict[str, int] = {}  # distributed id -> shards this run started
        self._upserted: list[tuple[str, Artifact]] = []  # (distributed id, artifact)
        self._tracked: list[Artifact] = []
        self._tracked_lock = threading.Lock()
        self._record_lock: asyncio.Lock | None = None
        self._finished = False
        self._summary: dict[str, Any] = {}
        self._session = session(settings)
        self._retries_at_start = self._session.retries.copy()  # for the report at the end
        self._registry = self._session.registry(settings)
        if run_id is not None and self._resume(resume):
            return
        try:
            _bridge.run_sync(self._registry.put_run(self._record, create=True))
        except ConflictError:
            # A try whose response was lost may have created it: then the record there is this one.
            there = _bridge.run_sync(self._registry.get_run(self.entity, self.project, self.id))
            if (there.created_at, there.name) != (self._record.created_at, self.name):
                if run_id is not None:
                    raise UsageError(
                        f"run {self.path} already exists; pass resume='allow' to continue it"
                    ) from None
                raise
        logger.info("run %s started (job_type=%s, store=%s)", self.path, job_type, settings.store)

    def _resume(self, resume: bool | str | None) -> bool:
        """Continue the run recorded under this id, as ``resume`` asks; True if it was resumed."""
        if resume not in (None, False, True, "allow", "never", "must", "auto"):
            raise ValidationError(f"resume must be 'allow', 'never', 'must' or 'auto', not {resume!r}")
        try:
            there = _bridge.run_sync(self._registry.get_run(self.entity, self.project, self.id))
        except RunNotFoundError:
            if resume == "must":
                raise
            return False
        if resume in (None, False, "never"):
            raise UsageError(f"run {self.path} already exists; pass resume='allow' to continue it")
        # Its inputs and outputs stay; what this call says about it now replaces the rest.
        self._record = replace(
            self._record, inputs=there.inputs, outputs=there.outputs, created_at=there.created_at
        )
        _bridge.run_sync(self._registry.put_run(self._record))
        logger.info("run %s resumed", self.path)
        return True

    def __repr__(self) -> str:
        return f"<Run {self.path} job_type={self.job_type!r}>"

    @property
    def entity(self) -> str:
        return self.settings.entity

    @property
    def project(self) -> str:
        return self.settings.project

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    # -- outputs ----------------------------------------------------------------------------------------

    def log_artifact(
        self,
        artifact_or_path: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> Artifact:
        """Log a new version and return at once; the files are hashed and stored in the background.

        Versions of one collection are committed in call order: in a loop, ``v0`` is the first call.
        ``artifact.wait()`` blocks until the commit and raises if it failed. A path may be given
        instead of an artifact (with ``name`` and ``type``). ``tags`` are added to the artifact's own.
        """
        self._check_open()
        artifact = self._as_artifact(artifact_or_path, name, type)
        artifacts.start_log(artifact, self, aliases or (), [] if tags is None else tags)
        return artifact

    def link_artifact(
        self, artifact: Artifact, target_path: str, aliases: Sequence[str] | None = None
    ) -> Artifact:
        """``artifact.link(target_path, aliases)`` (logging the artifact first, if it is a draft)."""
        self._check_open()
        if artifact.is_draft():
            self.log_artifact(artifact)
        return artifact.link(target_path, aliases)

    # -- models: the original's shorthands for artifacts of type "model" ---------------------------------

    def log_model(
        self, path: str | os.PathLike[str], name: str | None = None, aliases: Sequence[str] | None = None
    ) -> None:
        """Log the file or folder ``path`` as a ``model`` artifact (default name
        ``run-<run id>-<file name>``), as ``log_artifact`` does: in the background."""
        self.log_artifact(path, name=name or self._model_name(path), type="model", aliases=aliases)

    def use_model(self, name: str) -> str:
        """Use the model artifact ``name`` (``name[:alias]``) and download it; return the folder."""
        artifact = self.use_artifact(name)
        if "model" not in artifact.type:
            raise ValidationError(f"{artifact.qualified_name} has type {artifact.type!r}, not a model")
        return artifact.download()

    def link_model(
        self,
        path: str | os.PathLike[str],
        registered_model_name: str,
        name: str | None = None,
        aliases: Sequence[str] | None = None,
    ) -> Artifact:
        """Log ``path`` as a model (as ``log_model``) and link it to the collection
        ``registered_model_name`` of the project ``model-registry`` (see ``Artifact.link``)."""
        artifact = self.log_artifact(path, name=name or self._model_name(path), type="model")
        return self.link_artifact(artifact, f"model-registry/{registered_model_name}", aliases)

    def _model_name(self, path: str | os.PathLike[str]) -> str:
        return f"run-{self.id}-{Path(path).name}"

    # -- distributed artifacts: many processes, one version ----------------------------------------------

    def upsert_artifact(
        self,
        artifact_or_path: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        distributed_id: str | None = None,
    ) -> Artifact:
        """Add this process's shard to the distributed artifact ``distributed_id`` (default: the run's
        group); returns at once, storing in the background. ``finish_artifact`` (in any one process,
        once every shard is in) commits one version holding every shard's entries."""
        self._check_open()
        artifact = self._as_artifact(artifact_or_path, name, type)
        did = self._distributed_id(distributed_id)
        number = self._shards.get(did, 0)
        self._shards[did] = number + 1
        artifacts.start_shard(artifact, self, did, f"{self.id}-{number}", aliases or ())
        self._upserted.append((did, artifact))
        return artifact

    def finish_artifact(
        self,
        artifact_or_path: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        distributed_id: str | None = None,
        *,
        skip_missing: bool = False,
    ) -> Artifact:
        """Commit the distributed artifact ``distributed_id``: one version with the entries of every
        shard upserted to it (and of ``artifact``, if it holds any not upserted yet), and wait for it.

        A shard whose process started it and died before storing it is missing: that is an error
        naming it (nothing is committed), unless ``skip_missing``, which commits without it. Two shards
        holding the same entry name is an error naming both."""
        self._check_open()
        artifact = self._as_artifact(artifact_or_path, name, type)
        did = self._distributed_id(distributed_id)
        if artifact.is_draft() and artifacts.has_entries(artifact):
            self.upsert_artifact(artifact, distributed_id=did)
        for upserted_did, shard in list(self._upserted):
            if upserted_did == did and artifacts.name_of(shard) == artifacts.name_of(artifact):
                artifacts.wait_shard(shard)
        return artifacts.finish_distributed(artifact, self, did, aliases or (), skip_missing)

    def _distributed_id(self, distributed_id: str | None) -> str:
        did = distributed_id if distributed_id is not None else self.group
        if did is None:
            raise UsageError("a distributed artifact needs distributed_id= (or a run group from init)")
        return validate_segment(did, "distributed_id")

    def _as_artifact(
        self, item: Artifact | str | os.PathLike[str], name: str | None, type_: str | None
    ) -> Artifact:
        if isinstance(item, Artifact):
            return item
        path = Path(item)
        artifact = Artifact(validate_artifact_name(name or path.name), type_ or "unspecified")
        if path.is_dir():
            artifact.add_dir(path)
        else:
            artifact.add_file(path)
        return artifact

    def _track(self, artifact: Artifact) -> None:
        with self._tracked_lock:
            self._tracked.append(artifact)

    async def _record_output(self, ref: ArtifactRef) -> None:
        async with self._lock():
            if ref not in self._record.outputs:
                self._record = replace(self._record, outputs=(*self._record.outputs, ref))
                await self._registry.put_run(self._record)

    # -- inputs -----------------------------------------------------------------------------------------

    def use_artifact(
        self,
        artifact_or_name: Artifact | str,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        use_as: str | None = None,
    ) -> Artifact:
        """Record a version as this run's input and return it.

        ``'name'`` (meaning ``latest``), ``'name:alias'``, ``'name:vN'``, ``'project/name:alias'`` or
        ``'entity/project/name:alias'``. An Artifact not yet logged is logged first; logging the same
        content again gives the same version, so this is idempotent. ``use_as`` is kept on the
        returned artifact (``artifact.use_as``).
        """
        return _bridge.run_sync(self.use_artifact_async(artifact_or_name, type, aliases, use_as))

    async def use_artifact_async(
        self,
        artifact_or_name: Artifact | str,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        use_as: str | None = None,
    ) -> Artifact:
        self._check_open()
        accept_unused("use_artifact", "use_as", use_as, None, "it is kept on the artifact only")
        if isinstance(artifact_or_name, Artifact):
            artifact = artifact_or_name
            if artifact.is_draft():
                self.log_artifact(artifact, aliases=aliases)
            await artifact.wait_async()
        else:
            await self._settle(artifact_or_name)
            artifact = await resolve_artifact(self.settings, artifact_or_name)
        if type is not None and artifact.type != type:
            raise ValidationError(
                f"artifact {artifact.qualified_name} has type {artifact.type!r}, not {type!r}"
            )
        ref = artifacts.ref_of(artifact)
        async with self._lock():
            if ref not in self._record.inputs:
                self._record = replace(self._record, inputs=(*self._record.inputs, ref))
                await self._registry.put_run(self._record)
        await self._registry.add_consumer(
            Collection(ref.entity, ref.project, ref.name), ref.version, self._record
        )
        if use_as is not None:
            artifact.use_as = use_as
        return artifact

    # -- metrics ----------------------------------------------------------------------------------------

    url = ""  # as the original's without a web app to address

    @property
    def summary(self) -> dict[str, Any]:
        """A dict a training script may write to; kept in memory only (lorry records no metrics)."""
        accept_unused("Run", "summary", True, False, "it is kept in memory only: no metrics are recorded")
        return self._summary

    @property
    def dir(self) -> str:
        """A folder of this run's own, for files a script writes beside it (made when first asked)."""
        folder = self.settings.cache_dir / "runs" / self.id
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    def save(
        self,
        glob_str: str | os.PathLike[str] | None = None,
        base_path: str | None = None,
        policy: str = "live",
    ) -> bool:
        """Accepted: the original uploads files to the run; here, log them in an artifact instead."""
        accept_unused("Run", "save", True, False, "runs hold no files: log them in an artifact")
        return True

    def log(self, data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """Accepted so that training scripts run unchanged; lorry records artifacts, not metrics."""
        if not isinstance(data, dict):
            raise ValidationError(f"run.log takes a dict, not {type(data).__name__}")
        note_once("run.log", "run.log() records nothing: lorry versions artifacts, not metrics")

    async def _settle(self, path: str) -> None:
        """Wait for this run's own pending logs of the collection ``path`` names, so that using a
        version right after logging it finds it."""
        name = parse_artifact_path(path).name
        with self._tracked_lock:
            pending = [a for a in self._tracked if a.name == name and a.is_pending()]
        for artifact in pending:
            with contextlib.suppress(ArtifactFailedError):
                await artifacts.outcome(artifact)

    # -- lineage ----------------------------------------------------------------------------------------

    def used_artifacts(self) -> list[Artifact]:
        return LoggedRun(self.settings, self._record).used_artifacts()

    def logged_artifacts(self) -> list[Artifact]:
        return LoggedRun(self.settings, self._record).logged_artifacts()

    # -- finishing --------------------------------------------------------------------------------------

    def finish(self, exit_code: int | None = None) -> None:
        """Wait for every artifact this run logged; raise ``ArtifactFailedError`` naming those that failed."""
        with caller_waits():
            _bridge.run_sync(self.finish_async(exit_code))

    async def finish_async(self, exit_code: int | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        _forget(self)
        with self._tracked_lock:
            tracked = list(self._tracked)
        failures: list[tuple[Artifact, ArtifactFailedError]] = []
        for artifact in tracked:
            try:
                await artifacts.outcome(artifact)
            except ArtifactFailedError as exc:
                failures.append((artifact, exc))
        for _, shard in self._upserted:
            try:
                await artifacts.wait_shard_async(shard)
            except ArtifactFailedError as exc:
                failures.append((shard, exc))
        state = "failed" if failures or exit_code not in (None, 0) else "finished"
        try:
            async with self._lock():
                self._record = replace(self._record, state=state, finished_at=now_iso())
                await self._registry.put_run(self._record)
        except StoreError as exc:
            if not failures:
                raise
            # The store is gone (that is likely why artifacts failed): their error says more.
            logger.warning("run %s: its end could not be recorded: %s", self.path, exc)
        self._report(state, len(tracked) - len(failures), len(failures))
        # Failures the user already had from wait() (or an attribute that waits) are not raised again.
        unseen = [(artifact, exc) for artifact, exc in failures if artifacts.failure_unseen(artifact)]
        if unseen:
            names = ", ".join(artifact.name for artifact, _ in unseen)
            first = unseen[0][1]
            raise ArtifactFailedError(
                f"run {self.path}: {len(unseen)} artifact(s) failed: {names} (first: {first})"
            ) from (first.__cause__ or first)  # the reason itself, not the same error twice

    def _report(self, state: str, logged: int, failed: int) -> None:
        """One line on how the run ended, with what failures of the store cost on the way."""
        spent = self._session.retries.since(self._retries_at_start)
        line = f"run {self.path} {state}: {logged} artifact(s) logged"
        if failed:
            line += f", {failed} failed"
        if not spent.retries and not spent.gave_up:
            logger.info("%s", line)
            return
        line += f"; {spent.retries} request(s) retried after transient failures"
        if spent.longest:
            line += f", the longest failure lasted {spent.longest:.1f} s"
        if spent.gave_up:
            line += f"; {spent.gave_up} request(s) gave up"
        logger.warning("%s", line)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is None:
            self.finish()
            return
        try:
            self.finish(exit_code=1)
        except ArtifactFailedError as failed:  # the error that ended the block goes on; this is one line
            logger.error("%s", one_line(failed))

    def _check_open(self) -> None:
        if self._finished:
            raise UsageError(f"run {self.path} is finished; start a new one with lorry.init()")

    def _lock(self) -> asyncio.Lock:
        if self._record_lock is None:
            self._record_lock = asyncio.Lock()
        return self._record_lock


async def resolve_artifact(settings: Settings, text: str, type_: str | None = None) -> Artifact:
    """``[[entity/]project/]name[:alias]`` → the logged version it names."""
    path = parse_artifact_path(text)
    collection = Collection(path.entity or settings.entity, path.project or settings.project, path.name)
    registry = session(settings).registry(settings)
    record = await registry.resolve(collection, path.alias or LATEST)
    artifact = await artifacts.load_logged(settings, collection, record)
    if type_ is not None and artifact.type != type_:
        raise ValidationError(f"artifact {artifact.qualified_name} has type {artifact.type!r}, not {type_!r}")
    return artifact


# -- the current run ---------------------------------------------------------------------------------

_current: Run | None = None
_current_lock = threading.Lock()


_UNUSED_INIT = {
    "dir": "lorry writes no run files",
    "allow_val_change": "the config is recorded as given",
    "mode": "there is no server: every run is recorded on the store",
    "force": "there is nothing to log in to",
    "anonymous": "there is nothing to log in to",
    "resume_from": "lorry records no metric history",
    "fork_from": "lorry records no metric history",
    "save_code": "lorry does not save code",
    "tensorboard": "lorry does not sync TensorBoard",
    "sync_tensorboard": "lorry does not sync TensorBoard",
    "monitor_gym": "lorry records no videos",
    "settings": "lorry reads its own settings (arguments and LORRY_* variables)",
    "magic": "lorry hooks into nothing",
}


def init(
    project: str | None = None,
    entity: str | None = None,
    job_type: str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    store: str | None = None,
    *,
    dir: str | os.PathLike[str] | None = None,
    id: str | None = None,
    notes: str | None = None,
    tags: Sequence[str] | None = None,
    config_exclude_keys: Sequence[str] | None = None,
    config_include_keys: Sequence[str] | None = None,
    allow_val_change: bool | None = None,
    group: str | None = None,
    mode: str | None = None,
    force: bool | None = None,
    anonymous: str | None = None,
    reinit: bool | str | None = None,
    resume: bool | str | None = None,
    resume_from: str | None = None,
    fork_from: str | None = None,
    save_code: bool | None = None,
    tensorboard: bool | None = None,
    sync_tensorboard: bool | None = None,
    monitor_gym: bool | None = None,
    settings: object | None = None,
    magic: object | None = None,
) -> Run:
    """Start a run (finishing the current one, if any) and make it current.

    ``store`` is a path, ``file://``, ``s3://bucket/prefix`` or ``gs://bucket/prefix`` URL; it
    defaults to ``$LORRY_STORE``, then to ``~/.local/share/lorry/store``. ``group``, ``tags`` and
    ``notes`` are kept in the run's record; ``id`` with ``resume`` continues a recorded run;
    ``reinit="return_previous"`` returns the current run, ``"create_new"`` leaves it running. The
    original's other arguments are accepted and have no effect (each is said once in the log).
    """
    global _current  # noqa: PLW0603 - the module-level API acts on one current run
    given = locals()
    for argument, why in _UNUSED_INIT.items():
        accept_unused("init", argument, given[argument], None, why)
    loaded = Settings.load(project=project, entity=entity, store=store)
    previous = current_run()
    if previous is not None and reinit == "return_previous":
        return previous
    if previous is not None and reinit != "create_new":
        previous.finish()
    config = dict(config or {})
    if config_include_keys is not None:
        included = set(config_include_keys)
        config = {k: v for k, v in config.items() if k in included}
    if config_exclude_keys is not None:
        excluded = set(config_exclude_keys)
        config = {k: v for k, v in config.items() if k not in excluded}
    run = Run(
        loaded,
        job_type=job_type,
        name=name,
        config=config,
        group=group,
        tags=tags,
        notes=notes,
        run_id=id,
        resume=resume,
    )
    with _current_lock:
        _current = run
    return run


def current_run() -> Run | None:
    with _current_lock:
        return _current


def require_run() -> Run:
    run = current_run()
    if run is None:
        raise UsageError("there is no current run: call lorry.init() first")
    return run


def current_or_new_run(project: str | None = None, home: Settings | None = None) -> Run:
    """The current run, or a new one of job type ``auto`` in ``project`` (default: ``home``'s, whose
    store and entity it also takes)."""
    run = current_run()
    if run is not None:
        return run
    if home is None:
        return init(project=project, job_type="auto")
    return init(project=project or home.project, entity=home.entity, store=home.store, job_type="auto")


def _forget(run: Run) -> None:
    global _current  # noqa: PLW0603
    with _current_lock:
        if _current is run:
            _current = None


def finish(exit_code: int | None = None) -> None:
    """Finish the current run (if there is one)."""
    run = current_run()
    if run is not None:
        run.finish(exit_code)


def log_artifact(
    artifact_or_path: Artifact | str | os.PathLike[str],
    name: str | None = None,
    type: str | None = None,
    aliases: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
) -> Artifact:
    """``log_artifact`` on the current run."""
    return require_run().log_artifact(artifact_or_path, name=name, type=type, aliases=aliases, tags=tags)


def use_artifact(
    artifact_or_name: Artifact | str,
    type: str | None = None,
    aliases: Sequence[str] | None = None,
    use_as: str | None = None,
) -> Artifact:
    """``use_artifact`` on the current run."""
    return require_run().use_artifact(artifact_or_name, type=type, aliases=aliases, use_as=use_as)


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """``log`` on the current run: accepted, and not recorded (lorry versions artifacts)."""
    require_run().log(data, step=step, commit=commit)


def one_line(error: BaseException) -> str:
    """An error as the one line a process that failed prints last."""
    return " ".join((str(error) or type(error).__name__).split())


_failed_at_exit = False


def _finish_at_exit() -> None:
    # Interpreter exit waits for pending uploads, so a script that forgot finish() loses nothing.
    global _failed_at_exit  # noqa: PLW0603
    run = current_run()
    if not _bridge.started() or _bridge.bridge().in_loop_thread():
        return
    if run is not None:
        try:
            run.finish()
        except Exception as exc:
            # The script's own code is over: no caller is left to raise to. One line, and the process
            # fails (``_exit_status``), as it would have had the script called finish() itself.
            print(f"lorry: error: {one_line(exc)}", file=sys.stderr, flush=True)
            _failed_at_exit = True
    with contextlib.suppress(Exception):
        close_session()
    with contextlib.suppress(Exception):
        close_helper()


def _exit_status() -> None:
    """The last exit hook (registered when lorry is imported, so it runs after those registered
    later): a run that failed at exit makes the process exit 1, which no exit hook can otherwise do."""
    if _failed_at_exit:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(1)


# Registered with threading's exit hooks, not atexit: those run before the thread pools refuse new
# work, and in reverse order of registration, so this one runs before concurrent.futures' own.
threading._register_atexit(_finish_at_exit)  # type: ignore[attr-defined]
atexit.register(_exit_status)


# -- what an artifact asks of its run: artifact.py calls these, never a Run's private methods ----------


def track(run: Run, artifact: Artifact) -> None:
    """Have ``run`` wait for ``artifact``'s log when it finishes."""
    run._track(artifact)


async def record_output(run: Run, ref: ArtifactRef) -> None:
    """Add a version ``run`` logged to its record on the store."""
    await run._record_output(ref)
