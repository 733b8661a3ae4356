"""Runs as recorded on the store (``LoggedRun``): who ran, what each used and what it logged; the
lineage that ``Artifact.logged_by``, ``Artifact.used_by`` and ``Api.runs`` lead to.

A recorded run can still declare, after the fact, that it used or logged a version; a version it
names that was deleted since comes back with state ``"DELETED"``, so lineage never breaks on one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from lorry import _bridge
from lorry._compat import accept_unused
from lorry.artifact import Artifact, load_logged, ref_of
from lorry.errors import UsageError
from lorry.model.layout import Collection
from lorry.registry.records import ArtifactRef, RunRecord
from lorry.session import session
from lorry.settings import Settings


class LoggedRun:
    """A run as recorded on the store: who it was, what it used and what it logged."""

    def __init__(self, settings: Settings, record: RunRecord) -> None:
        self._settings = settings
        self._record = record

    @classmethod
    def load(cls, settings: Settings, entity: str, project: str, run_id: str) -> LoggedRun:
        registry = session(settings).registry(settings)
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

    group = property(lambda self: self._record.group)
    notes = property(lambda self: self._record.notes)
    url = ""  # as the original's without a web app to address

    @property
    def summary(self) -> dict[str, Any]:
        """Empty: lorry records artifacts, not a run's metrics."""
        return {}

    @property
    def tags(self) -> list[str]:
        return list(self._record.tags)

    def used_artifacts(self, per_page: int = 100) -> list[Artifact]:
        return [load_version(self._settings, ref) for ref in self._record.inputs]

    def use_artifact(self, artifact: Artifact, use_as: str | None = None) -> Artifact:
        """Record a logged version as an input of this run, after the fact (as the original's
        public ``Run.use_artifact`` does)."""
        accept_unused("Run.use_artifact", "use_as", use_as, None, "it is kept on the artifact only")
        return self._declare(artifact, "inputs")

    def log_artifact(
        self, artifact: Artifact, aliases: Sequence[str] | None = None, tags: Sequence[str] | None = None
    ) -> Artifact:
        """Record a logged version as an output of this run, after the fact, adding ``aliases`` and
        ``tags`` to it. (The run that logged it stays its ``logged_by()``.)"""
        self._declare(artifact, "outputs")
        if aliases or tags:
            artifact.aliases.extend(a for a in aliases or () if a not in artifact.aliases)
            artifact.tags.extend(t for t in tags or () if t not in artifact.tags)
            artifact.save()
        return artifact

    def _declare(self, artifact: Artifact, field: str) -> Artifact:
        if artifact.is_draft():
            raise UsageError(f"artifact {artifact.name} is not logged; log it with a run first")
        ref = ref_of(artifact.wait())
        registry = session(self._settings).registry(self._settings)

        async def declare() -> RunRecord:
            record = await registry.get_run(self.entity, self.project, self.id)
            if field == "inputs" and ref not in record.inputs:
                record = replace(record, inputs=(*record.inputs, ref))
                await registry.put_run(record)
            elif field == "outputs" and ref not in record.outputs:
                record = replace(record, outputs=(*record.outputs, ref))
                await registry.put_run(record)
            if field == "inputs":
                collection = Collection(ref.entity, ref.project, ref.name)
                await registry.add_consumer(collection, ref.version, record)
            return record

        self._record = _bridge.run_sync(declare())
        return artifact

    def logged_artifacts(self, per_page: int = 100) -> list[Artifact]:
        return [load_version(self._settings, ref) for ref in self._record.outputs]


def load_version(settings: Settings, ref: ArtifactRef) -> Artifact:
    return _bridge.run_sync(load_version_async(settings, ref))


async def load_version_async(settings: Settings, ref: ArtifactRef) -> Artifact:
    collection = Collection(ref.entity, ref.project, ref.name)
    # Lineage outlives deletes: a deleted version comes back with state "DELETED" (its download says
    # it was deleted), so walking a run's inputs and outputs never fails on it.
    registry = session(settings).registry(settings)
    record = await registry.read_version(collection, ref.version, include_gone=True)
    return await load_logged(settings, collection, record)
