"""The records kept on a store, as frozen values with their JSON form.

Every parser checks what it reads: a truncated or hostile record raises ``CorruptRecordError`` naming
the key, never a ``KeyError`` from deep inside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from lorry.errors import CorruptRecordError, ValidationError
from lorry.model.digest import is_content_digest
from lorry.model.names import LATEST, validate_artifact_name, validate_segment, validate_tags, validate_type


def load_json(payload: bytes, key: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(f"record {key} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CorruptRecordError(f"record {key} is not a JSON object")
    return doc


def dump_json(doc: Mapping[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _field(doc: Mapping[str, Any], name: str, kind: type | tuple[type, ...], key: str) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorruptRecordError(f"record {key} has no valid {name!r}")
    return value


def _count(doc: Mapping[str, Any], name: str, key: str) -> int:
    """A field holding a number that cannot be negative (a version, a size, a count)."""
    value: int = _field(doc, name, int, key)
    if value < 0:
        raise CorruptRecordError(f"record {key} has a negative {name!r}")
    return value


def _checked(doc: Mapping[str, Any], name: str, check: Callable[[object], str], key: str) -> str:
    """A string field that must pass a name rule: it becomes part of store keys and folder names."""
    try:
        return check(doc.get(name))
    except ValidationError as exc:
        raise CorruptRecordError(f"record {key} has an invalid {name!r}: {exc}") from exc


def _segment(what: str) -> Callable[[object], str]:
    return lambda value: validate_segment(value, what)


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """One version of one collection: what runs record as their inputs and outputs."""

    entity: str
    project: str
    name: str
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"entity": self.entity, "project": self.project, "name": self.name, "version": self.version}

    @classmethod
    def from_json(cls, doc: Any, key: str) -> ArtifactRef:
        if not isinstance(doc, dict):
            raise CorruptRecordError(f"record {key} holds an invalid artifact reference")
        return cls(
            entity=_checked(doc, "entity", _segment("entity"), key),
            project=_checked(doc, "project", _segment("project"), key),
            name=_checked(doc, "name", validate_artifact_name, key),
            version=_count(doc, "version", key),
        )

    def __str__(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}:v{self.version}"


def tags_of(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A record's ``tags``, checked: damaged ones are a ``CorruptRecordError``."""
    try:
        return validate_tags(doc.get("tags", []))
    except ValidationError as exc:
        raise CorruptRecordError(f"record {key} has invalid 'tags': {exc}") from exc


def _optional(doc: Mapping[str, Any], name: str, kind: type | tuple[type, ...], key: str) -> Any:
    return None if doc.get(name) is None else _field(doc, name, kind, key)


def _timestamp(doc: Mapping[str, Any], name: str, key: str) -> str | None:
    value: str | None = _optional(doc, name, str, key)
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError as exc:
            raise CorruptRecordError(f"record {key} has an invalid {name!r}") from exc
    return value


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One committed version. Created once (its creation is the commit); later ``save()`` calls
    change ``description``, ``metadata``, ``tags`` and ``ttl`` by compare-and-swap, and a delete
    sets ``deleted_at`` the same way (the record stays, so its number is never given again)."""

    version: int
    manifest: str
    type: str
    size: int
    file_count: int
    created_at: str
    logged_by: str | None
    description: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    ttl: float | None = None
    """Seconds from ``created_at`` after which the version expires (is deleted); None: never."""
    deleted_at: str | None = None

    def expires_at(self) -> datetime | None:
        if self.ttl is None:
            return None
        return datetime.fromisoformat(self.created_at) + timedelta(seconds=self.ttl)

    def gone_since(self, now: datetime) -> datetime | None:
        """When this version stopped being served (deleted, or expired by ``now``), else None."""
        times = [datetime.fromisoformat(self.deleted_at)] if self.deleted_at is not None else []
        expires = self.expires_at()
        if expires is not None and expires <= now:
            times.append(expires)
        return min(times) if times else None

    def to_json(self) -> dict[str, Any]:
        return {
            "tags": list(self.tags),
            "ttl": self.ttl,
            "deleted_at": self.deleted_at,
            "version": self.version,
            "manifest": self.manifest,
            "type": self.type,
            "size": self.size,
            "file_count": self.file_count,
            "created_at": self.created_at,
            "logged_by": self.logged_by,
            "description": self.description,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_bytes(cls, payload: bytes, key: str) -> VersionRecord:
        doc = load_json(payload, key)
        manifest = _field(doc, "manifest", str, key)
        if not is_content_digest(manifest):
            raise CorruptRecordError(f"record {key} names an invalid manifest digest")
        logged_by = doc.get("logged_by")
        description = doc.get("description")
        if logged_by is not None:  # a run id: part of the key of the run's record
            logged_by = _checked(doc, "logged_by", _segment("run id"), key)
        if description is not None and not isinstance(description, str):
            raise CorruptRecordError(f"record {key} has an invalid 'description'")
        return cls(
            version=_count(doc, "version", key),
            manifest=manifest,
            type=_checked(doc, "type", validate_type, key),
            size=_count(doc, "size", key),
            file_count=_count(doc, "file_count", key),
            created_at=_field(doc, "created_at", str, key),
            logged_by=logged_by,
            description=description,
            metadata=_field(doc, "metadata", dict, key),
            tags=tags_of(doc, key),
            ttl=_ttl(doc, key),
            deleted_at=_timestamp(doc, "deleted_at", key),
        )


def _ttl(doc: Mapping[str, Any], key: str) -> float | None:
    ttl = _optional(doc, "ttl", (int, float), key)
    if ttl is not None and (isinstance(ttl, bool) or not ttl >= 0):
        raise CorruptRecordError(f"record {key} has an invalid 'ttl'")
    return None if ttl is None else float(ttl)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run: who it was, and which artifact versions it used and logged."""

    id: str
    entity: str
    project: str
    name: str
    job_type: str | None
    config: Mapping[str, Any]
    created_at: str
    finished_at: str | None = None
    state: str = "running"
    inputs: tuple[ArtifactRef, ...] = ()
    outputs: tuple[ArtifactRef, ...] = ()
    group: str | None = None
    tags: tuple[str, ...] = ()
    notes: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "tags": list(self.tags),
            "notes": self.notes,
            "id": self.id,
            "entity": self.entity,
            "project": self.project,
            "name": self.name,
            "job_type": self.job_type,
            "config": dict(self.config),
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "state": self.state,
            "inputs": [r.to_json() for r in self.inputs],
            "outputs": [r.to_json() for r in self.outputs],
        }

    @classmethod
    def from_bytes(cls, payload: bytes, key: str) -> RunRecord:
        doc = load_json(payload, key)
        job_type, finished = doc.get("job_type"), doc.get("finished_at")
        if job_type is not None and not isinstance(job_type, str):
            raise CorruptRecordError(f"record {key} has an invalid 'job_type'")
        if finished is not None and not isinstance(finished, str):
            raise CorruptRecordError(f"record {key} has an invalid 'finished_at'")
        return cls(
            id=_checked(doc, "id", _segment("run id"), key),
            entity=_checked(doc, "entity", _segment("entity"), key),
            project=_checked(doc, "project", _segment("project"), key),
            name=_field(doc, "name", str, key),
            job_type=job_type,
            config=_field(doc, "config", dict, key),
            created_at=_field(doc, "created_at", str, key),
            finished_at=finished,
            state=_field(doc, "state", str, key),
            inputs=tuple(ArtifactRef.from_json(r, key) for r in _field(doc, "inputs", list, key)),
            outputs=tuple(ArtifactRef.from_json(r, key) for r in _field(doc, "outputs", list, key)),
            group=_optional(doc, "group", str, key),
            tags=tags_of(doc, key),
            notes=_optional(doc, "notes", str, key),
        )


@dataclass(frozen=True, slots=True)
class AliasTable:
    """A collection's user aliases and its newest live version (``Registry.alias_table``): read once
    for any number of its versions."""

    aliases: Mapping[str, int]
    latest: int | None

    def of(self, version: int) -> list[str]:
        """The aliases naming ``version``, with ``latest`` first while it is the newest."""
        names = [alias for alias, number in sorted(self.aliases.items()) if number == version]
        return [LATEST, *names] if self.latest == version else names
