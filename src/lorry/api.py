"""``Api``: look up artifacts and runs outside a run.

>>> api = lorry.Api()                                            # doctest: +SKIP
>>> api.artifact("my-entity/my-project/bike-dataset:latest").download()
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

from lorry import _bridge
from lorry.artifact import AliasTable, Artifact, LoggedRun
from lorry.errors import ArtifactNotFoundError, StoreNotFoundError, ValidationError
from lorry.model.names import parse_artifact_path, validate_artifact_name, validate_segment
from lorry.registry.maintenance import GcReport, StoreReport, collect_garbage, verify_store
from lorry.registry.registry import Collection, Registry
from lorry.runs import resolve_artifact
from lorry.settings import Settings
from lorry.storage.base import Store, Upload
from lorry.storage.local import LocalStore
from lorry.transfer.cleanup import DEFAULT_GRACE, abort_uploads, stale_uploads
from lorry.transfer.engine import engine


class ArtifactCollection:
    """All versions of one artifact name: ``name``, ``type``, ``versions()``."""

    def __init__(self, api: Api, collection: Collection, artifact_type: str) -> None:
        self._api = api
        self._collection = collection
        self.name = collection.name
        self.type = artifact_type
        self.entity = collection.entity
        self.project = collection.project

    def __repr__(self) -> str:
        return f"<ArtifactCollection {self._collection} type={self.type!r}>"

    def versions(self) -> list[Artifact]:
        return self._api.artifacts(self.type, str(self._collection))


class Api:
    """Read access to a store without a run. ``store``, ``entity`` and ``project`` default as for
    ``lorry.init``; they may also come as ``overrides={"entity": ..., "project": ...}``, as in the
    original API."""

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        *,
        store: str | None = None,
        entity: str | None = None,
        project: str | None = None,
    ) -> None:
        given = dict(overrides or {})
        unknown = set(given) - {"store", "entity", "project"}
        if unknown:
            raise ValidationError(f"unknown Api overrides: {', '.join(sorted(unknown))}")
        self.settings = Settings.load(
            store=store or given.get("store"),
            entity=entity or given.get("entity"),
            project=project or given.get("project"),
        )

    @property
    def _registry(self) -> Registry:
        self._store()
        return engine(self.settings).registry(self.settings)

    def _store(self) -> Store:
        """The store, which an Api only reads: one that does not exist is an error, never made."""
        store = engine(self.settings).store(self.settings.store, self.settings.store_options)
        if isinstance(store, LocalStore) and not store.exists():
            raise StoreNotFoundError(f"no store at {store.root} (nothing was ever logged there)")
        return store

    def artifact(self, name: str, type: str | None = None) -> Artifact:
        """``[[entity/]project/]name[:alias]`` (alias defaults to ``latest``) → that version."""
        self._store()
        return _bridge.run_sync(resolve_artifact(self.settings, name, type))

    def artifact_exists(self, name: str, type: str | None = None) -> bool:
        try:
            self.artifact(name, type)
        except (ArtifactNotFoundError, StoreNotFoundError):
            return False
        return True

    def artifacts(self, type_name: str, name: str) -> list[Artifact]:
        """Every version of the collection ``[[entity/]project/]name``, oldest first."""
        collection = self._collection(name)
        registry = self._registry
        actual = _bridge.run_sync(registry.collection_type(collection))
        if actual != type_name:
            raise ValidationError(f"artifact {collection} has type {actual!r}, not {type_name!r}")
        return _bridge.run_sync(self._versions(registry, collection))

    async def _versions(self, registry: Registry, collection: Collection) -> list[Artifact]:
        records, table = await asyncio.gather(
            registry.versions(collection), AliasTable.read(registry, collection)
        )
        return [await Artifact._load(self.settings, collection, record, table) for record in records]

    artifact_versions = artifacts

    def artifact_collections(
        self, project_name: str | None = None, type_name: str | None = None
    ) -> list[ArtifactCollection]:
        """The collections of a project (``project`` or ``entity/project``), optionally of one type."""
        entity, project = self.settings.entity, self.settings.project
        if project_name:
            parts = project_name.split("/")
            if len(parts) > 2:
                raise ValidationError(f"project {project_name!r} is not 'project' or 'entity/project'")
            project = validate_segment(parts[-1], "project")
            entity = validate_segment(parts[0], "entity") if len(parts) == 2 else entity
        found = _bridge.run_sync(self._registry.collections(entity, project))
        return [
            ArtifactCollection(self, Collection(entity, project, name), kind)
            for name, kind in found
            if type_name is None or kind == type_name
        ]

    def run(self, path: str) -> LoggedRun:
        """``[[entity/]project/]run_id`` → the run as recorded."""
        parts = path.split("/")
        if not 1 <= len(parts) <= 3 or not parts[-1]:
            raise ValidationError(f"run path {path!r} is not '[[entity/]project/]run_id'")
        run_id = validate_segment(parts[-1], "run id")
        project = validate_segment(parts[-2], "project") if len(parts) >= 2 else self.settings.project
        entity = validate_segment(parts[-3], "entity") if len(parts) == 3 else self.settings.entity
        return LoggedRun.load(self.settings, entity, project, run_id)

    def stale_uploads(self, older_than: timedelta = DEFAULT_GRACE) -> list[Upload]:
        """Multipart uploads on the store left open for longer than ``older_than`` (by crashed
        processes: lorry aborts those it abandons itself)."""
        store = self._store()
        return _bridge.run_sync(stale_uploads(store, older_than))

    def abort_stale_uploads(self, older_than: timedelta = DEFAULT_GRACE) -> list[Upload]:
        """Abort what ``stale_uploads`` finds, freeing the space their parts hold; return them."""
        store = self._store()
        found = _bridge.run_sync(stale_uploads(store, older_than))
        _bridge.run_sync(abort_uploads(store, found))
        return found

    def collect_garbage(self, older_than: timedelta = DEFAULT_GRACE, *, dry_run: bool = False) -> GcReport:
        """Remove what no committed version needs (blobs and manifests of crashed or failed logs,
        multipart uploads never completed) once it is older than ``older_than``; with ``dry_run``, only
        report it. Safe while other processes log: see ``lorry.registry.maintenance``."""
        store = self._store()
        return _bridge.run_sync(collect_garbage(store, grace=older_than, dry_run=dry_run))

    def verify_store(self, *, quick: bool = False) -> StoreReport:
        """Check every committed version of the store: record, manifest, and each blob's presence, size
        and (unless ``quick``) bytes. The report lists every problem found; nothing is changed."""
        store = self._store()
        return _bridge.run_sync(verify_store(store, quick=quick))

    def _collection(self, name: str) -> Collection:
        path = parse_artifact_path(name)
        if path.alias is not None:
            raise ValidationError(f"{name!r} names a version; give the collection name without ':alias'")
        return Collection(
            path.entity or self.settings.entity,
            path.project or self.settings.project,
            validate_artifact_name(path.name),
        )
