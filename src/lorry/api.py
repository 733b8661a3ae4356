"""``Api``: look up artifacts and runs outside a run.

>>> api = lorry.Api()                                            # doctest: +SKIP
>>> api.artifact("my-entity/my-project/bike-dataset:latest").download()
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from lorry import _bridge
from lorry._compat import accept_unused
from lorry.artifact import Artifact, load_logged
from lorry.errors import ArtifactNotFoundError, StoreNotFoundError, UsageError, ValidationError
from lorry.lineage import LoggedRun
from lorry.model.layout import Collection
from lorry.model.names import (
    LATEST,
    parse_artifact_path,
    validate_artifact_name,
    validate_segment,
    validate_tags,
)
from lorry.model.retention import Candidate, Decision, RetentionPolicy
from lorry.registry.maintenance import GcReport, StoreReport, collect_garbage, verify_store
from lorry.registry.registry import CollectionInfo, Registry
from lorry.runs import resolve_artifact
from lorry.session import session
from lorry.settings import Settings
from lorry.storage.base import LOCAL_FILES, Store, Upload
from lorry.transfer.cleanup import DEFAULT_GRACE, abort_uploads, stale_uploads

_PER_PAGE = "lorry lists from the store in one pass"


class ArtifactCollection:
    """All versions of one artifact name: ``name``, ``type``, ``description``, ``tags``, ``aliases``,
    ``artifacts()``; change ``description`` or ``tags`` and ``save()``; ``delete()`` every version."""

    def __init__(self, api: Api, collection: Collection, info: CollectionInfo) -> None:
        self._api = api
        self._collection = collection
        self._info = info
        self.name = collection.name
        self.entity = collection.entity
        self.project = collection.project
        self._type = info.type
        self.description = info.description
        self._tags = list(info.tags)
        self.retention: RetentionPolicy | None = info.retention
        """The collection's retention policy (``save()`` stores it; ``apply_retention`` applies it)."""

    @classmethod
    def load(cls, settings: Any, collection: Collection) -> ArtifactCollection:
        api = Api(store=settings.store, entity=collection.entity, project=collection.project)
        info = _bridge.run_sync(api._registry.collection_info(collection))
        return cls(api, collection, info)

    def __repr__(self) -> str:
        return f"<ArtifactCollection {self._collection} type={self.type!r}>"

    @property
    def id(self) -> str:
        return str(self._collection)

    @property
    def type(self) -> str:
        return self._type

    @type.setter
    def type(self, value: str) -> None:
        if value != self._type:
            raise UsageError(
                f"artifact {self._collection} has type {self._type!r}; lorry does not change the type "
                "of a collection (log its versions to a new name instead)"
            )

    @property
    def created_at(self) -> str:
        """When its first version was created (deleted ones included)."""
        return min(self._created())

    @property
    def updated_at(self) -> str:
        """When its newest version was created (lorry keeps no time of the last ``save()``)."""
        return max(self._created())

    def _created(self) -> list[str]:
        records = _bridge.run_sync(self._api._registry.versions(self._collection, include_gone=True))
        return [record.created_at for record in records]

    def change_type(self, new_type: str) -> None:
        self.type = new_type

    @property
    def tags(self) -> list[str]:
        return self._tags

    @tags.setter
    def tags(self, value: Sequence[str]) -> None:
        self._tags = list(validate_tags(value))

    @property
    def aliases(self) -> list[str]:
        """Every user alias of the collection's versions (``latest`` is not stored, so not listed)."""
        return sorted(_bridge.run_sync(self._api._registry.aliases(self._collection)))

    def is_sequence(self) -> bool:
        return True

    def artifacts(self, per_page: int = 50, tags: str | Sequence[str] | None = None) -> list[Artifact]:
        """Every live version, oldest first (only those with all of ``tags``, if given)."""
        accept_unused("Api.artifacts", "per_page", per_page, 50, _PER_PAGE)
        return self._api._versions_of(self._collection, tags=tags)  # its type is known: no read again

    versions = artifacts

    def save(self) -> None:
        """Persist ``description`` and ``tags`` (by compare-and-swap: other fields changed meanwhile
        survive). A changed ``name`` is refused: a collection's records live under its name."""
        if self.name != self._collection.name:
            raise UsageError(
                f"collection {self._collection} cannot be renamed to {self.name!r}: lorry keeps a "
                "collection's versions under its name; log them to a new collection instead"
            )
        if self.description is not None and not isinstance(self.description, str):
            raise ValidationError("description must be a string or None")
        old, tags, description = self._info, validate_tags(self._tags), self.description
        retention = self.retention

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if description != old.description:
                doc["description"] = description
            if tags != old.tags:
                doc["tags"] = list(tags)
            if retention != old.retention:
                doc["retention"] = None if retention is None else retention.to_json()
            return doc

        self._info = _bridge.run_sync(self._api._registry.update_collection(self._collection, change))
        self.description, self._tags = self._info.description, list(self._info.tags)
        self.retention = self._info.retention

    def apply_retention(
        self, policy: RetentionPolicy | None = None, *, dry_run: bool = False
    ) -> list[Decision]:
        """Delete the versions ``policy`` (default: the collection's own) does not keep, with their
        aliases; return the decision for every live version, and why. ``dry_run``: delete nothing."""
        chosen = policy or self.retention
        if chosen is None:
            raise UsageError(f"artifact {self._collection} has no retention policy; give one")
        registry = self._api._registry

        async def apply() -> list[Decision]:
            records, aliases = await asyncio.gather(
                registry.versions(self._collection), registry.aliases(self._collection)
            )
            named: dict[int, list[str]] = {}
            for alias, number in sorted(aliases.items()):
                named.setdefault(number, []).append(alias)
            decisions = chosen.plan(
                [Candidate(r.version, named.get(r.version, []), r.metadata) for r in records]
            )
            if dry_run:
                return decisions
            applied = []
            for decision in decisions:
                outcome = decision
                if not decision.keep:
                    try:  # aliases go with a version only if the policy does not protect them
                        await registry.delete_version(
                            self._collection, decision.version, delete_aliases=not chosen.keep_aliased
                        )
                    except UsageError:  # an alias was set on it meanwhile: it is kept after all
                        outcome = Decision(decision.version, True, "alias set while the policy ran")
                applied.append(outcome)
            return applied

        return _bridge.run_sync(apply())

    def delete(self) -> None:
        """Delete every version (aliases too). Numbers stay taken: a later log of this name starts
        after the highest number ever given."""
        registry = self._api._registry

        async def delete_all() -> None:
            for record in await registry.versions(self._collection):
                await registry.delete_version(self._collection, record.version, delete_aliases=True)

        _bridge.run_sync(delete_all())


class ArtifactType:
    """The collections of one type in a project."""

    def __init__(self, api: Api, entity: str, project: str, type_name: str) -> None:
        self._api = api
        self.entity, self.project, self.name = entity, project, type_name
        self.id = f"{entity}/{project}/{type_name}"  # the original's is a server id

    def __repr__(self) -> str:
        return f"<ArtifactType {self.entity}/{self.project} {self.name!r}>"

    def collections(self, per_page: int = 50) -> list[ArtifactCollection]:
        return self._api.artifact_collections(f"{self.entity}/{self.project}", self.name, per_page=per_page)

    def collection(self, name: str) -> ArtifactCollection:
        return self._api.artifact_collection(self.name, f"{self.entity}/{self.project}/{name}")


class Api:
    """Read access to a store without a run. ``store``, ``entity`` and ``project`` default as for
    ``lorry.init``; they may also come as ``overrides={"entity": ..., "project": ...}``, as in the
    original API."""

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        timeout: int | None = None,
        api_key: str | None = None,
        *,
        store: str | None = None,
        entity: str | None = None,
        project: str | None = None,
    ) -> None:
        accept_unused("Api", "timeout", timeout, None, "see LORRY_REQUEST_TIMEOUT")
        accept_unused("Api", "api_key", api_key, None, "the store's own credentials are used")
        given = dict(overrides or {})
        given.pop("base_url", None)  # the original's server address: there is no server here
        unknown = set(given) - {"store", "entity", "project"}
        if unknown:
            raise ValidationError(f"unknown Api overrides: {', '.join(sorted(unknown))}")
        self.settings = Settings.load(
            store=store or given.get("store"),
            entity=entity or given.get("entity"),
            project=project or given.get("project"),
        )

    @property
    def default_entity(self) -> str:
        return self.settings.entity

    @property
    def _registry(self) -> Registry:
        self._store()
        return session(self.settings).registry(self.settings)

    def _store(self) -> Store:
        """The store, which an Api only reads: one that does not exist is an error, never made."""
        store = session(self.settings).store(self.settings.store, self.settings.store_options)
        local = LOCAL_FILES.of(store)
        if local is not None and not local.exists():
            raise StoreNotFoundError(f"no store at {local.root} (nothing was ever logged there)")
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

    def artifacts(
        self,
        type_name: str,
        name: str,
        order: str | None = None,
        per_page: int = 50,
        tags: str | Sequence[str] | None = None,
        start: str | None = None,
        *,
        include_deleted: bool = False,
    ) -> list[Artifact]:
        """Every live version of the collection ``[[entity/]project/]name``, oldest first (newest
        first with an ``order`` starting with ``-``, such as ``-created_at``); with ``tags``, only the
        versions that have all of them; with ``include_deleted``, deleted and expired versions too
        (their ``state`` is ``"DELETED"``)."""
        accept_unused("Api.artifacts", "per_page", per_page, 50, _PER_PAGE)
        accept_unused("Api.artifacts", "start", start, None, _PER_PAGE)
        collection = self._collection(name)
        actual = _bridge.run_sync(self._registry.collection_type(collection))
        if actual != type_name:
            raise ValidationError(f"artifact {collection} has type {actual!r}, not {type_name!r}")
        return self._versions_of(collection, order, tags, include_deleted)

    def _versions_of(
        self,
        collection: Collection,
        order: str | None = None,
        tags: str | Sequence[str] | None = None,
        include_deleted: bool = False,
    ) -> list[Artifact]:
        """``artifacts`` of a collection whose type is known already."""
        wanted = _wanted_tags(tags)
        found = _bridge.run_sync(self._versions(self._registry, collection, include_deleted))
        if order is not None and order.startswith("-"):
            found.reverse()
        return [a for a in found if wanted <= set(a.tags)]

    async def _versions(
        self, registry: Registry, collection: Collection, include_deleted: bool = False
    ) -> list[Artifact]:
        records, table = await asyncio.gather(
            registry.versions(collection, include_gone=include_deleted), registry.alias_table(collection)
        )
        return [await load_logged(self.settings, collection, record, table) for record in records]

    def artifact_versions(self, type_name: str, name: str, per_page: int = 50) -> list[Artifact]:
        return self.artifacts(type_name, name, per_page=per_page)

    def artifact_collections(
        self,
        project_name: str | None = None,
        type_name: str | None = None,
        order: str | None = None,
        per_page: int = 50,
        start: str | None = None,
        tags: str | Sequence[str] | None = None,
    ) -> list[ArtifactCollection]:
        """The collections of a project (``project`` or ``entity/project``) that have a live version,
        optionally of one type, and with all of ``tags`` (collection tags), by name."""
        accept_unused("Api.artifact_collections", "order", order, None, "collections are listed by name")
        accept_unused("Api.artifact_collections", "per_page", per_page, 50, _PER_PAGE)
        accept_unused("Api.artifact_collections", "start", start, None, _PER_PAGE)
        wanted = _wanted_tags(tags)
        entity, project = self._project(project_name)
        found = _bridge.run_sync(self._registry.collection_infos(entity, project))
        return [
            ArtifactCollection(self, Collection(entity, project, name), info)
            for name, info in found
            if (type_name is None or info.type == type_name) and wanted <= set(info.tags)
        ]

    def artifact_collection(self, type_name: str, name: str) -> ArtifactCollection:
        """The collection ``[[entity/]project/]name`` of type ``type_name``."""
        collection = self._collection(name)
        info = _bridge.run_sync(self._registry.collection_info(collection))
        _bridge.run_sync(self._registry.resolve(collection, LATEST))  # says so if every version is deleted
        if info.type != type_name:
            raise ValidationError(f"artifact {collection} has type {info.type!r}, not {type_name!r}")
        return ArtifactCollection(self, collection, info)

    def artifact_collection_type(self, name: str) -> str:
        """The type of the collection ``[[entity/]project/]name``."""
        return _bridge.run_sync(self._registry.collection_type(self._collection(name)))

    def artifact_collection_exists(self, name: str, type: str) -> bool:
        try:
            self.artifact_collection(type, name)
        except (ArtifactNotFoundError, ValidationError):
            return False
        return True

    def artifact_types(self, project: str | None = None, start: str | None = None) -> list[ArtifactType]:
        """The types of the collections in a project."""
        accept_unused("Api.artifact_types", "start", start, None, _PER_PAGE)
        entity, project_name = self._project(project)
        found = _bridge.run_sync(self._registry.collections(entity, project_name))
        kinds = sorted({kind for _, kind in found})
        return [ArtifactType(self, entity, project_name, kind) for kind in kinds]

    def artifact_type(self, type_name: str, project: str | None = None) -> ArtifactType:
        entity, project_name = self._project(project)
        return ArtifactType(self, entity, project_name, type_name)

    def _project(self, project_name: str | None) -> tuple[str, str]:
        entity, project = self.settings.entity, self.settings.project
        if project_name:
            parts = project_name.split("/")
            if len(parts) > 2:
                raise ValidationError(f"project {project_name!r} is not 'project' or 'entity/project'")
            project = validate_segment(parts[-1], "project")
            entity = validate_segment(parts[0], "entity") if len(parts) == 2 else entity
        return entity, project

    def runs(
        self,
        path: str | None = None,
        filters: Mapping[str, Any] | None = None,
        order: str = "+created_at",
        per_page: int = 50,
        include_sweeps: bool = True,
        lazy: bool = True,
    ) -> list[LoggedRun]:
        """The runs of a project (``project`` or ``entity/project``), oldest first (``order`` of
        ``-created_at``: newest first). ``filters`` (a server query in the original) is not applied."""
        accept_unused("Api.runs", "filters", filters, None, "there is no server to query: filter the list")
        accept_unused("Api.runs", "per_page", per_page, 50, _PER_PAGE)
        if order not in ("+created_at", "-created_at", "created_at"):
            raise ValidationError(f"runs can be ordered by '+created_at' or '-created_at', not {order!r}")
        entity, project = self._project(path)
        records = _bridge.run_sync(self._registry.runs(entity, project))
        found = [LoggedRun(self.settings, record) for record in records]
        return sorted(found, key=lambda r: str(r.created_at), reverse=order == "-created_at")

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


def _wanted_tags(tags: str | Sequence[str] | None) -> set[str]:
    """The tags a listing filters by: one tag or several, checked."""
    return set(validate_tags([tags] if isinstance(tags, str) else list(tags or ())))
