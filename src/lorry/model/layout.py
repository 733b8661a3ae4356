"""Where everything lives in a store: the key of each kind of object, and the reading of a key back.

Every part of lorry that names or recognises a key asks this module, so the layout is written once::

    blobs/blake3/<2 hex>/<64 hex>                                   file contents
    manifests/blake3/<2 hex>/<64 hex>.json                          manifests
    <entity>/<project>/artifacts/<name>/collection.json             the collection's type, description, tags
    <entity>/<project>/artifacts/<name>/head.json                   how many versions were ever logged
    <entity>/<project>/artifacts/<name>/versions/<N>.json           version records
    <entity>/<project>/artifacts/<name>/digests/<hex>.json          manifest digest -> version
    <entity>/<project>/artifacts/<name>/aliases/<alias>.json        alias -> version
    <entity>/<project>/artifacts/<name>/drafts/<id>/shards/<s>.json a distributed artifact's shards
    <entity>/<project>/artifacts/<name>/consumers/<N>/<entity>/<project>/<run id>   lineage, reverse
    <entity>/<project>/runs/<run id>.json                           run records
    _lorry/gc/state.json                                            the gc's record (its fence)
    _lorry/probe/<id>                                               the conditional-write probe's key
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lorry.model.digest import hex_part

GC_STATE_KEY = "_lorry/gc/state.json"
PROBE_PREFIX = "_lorry/probe/"


@dataclass(frozen=True, slots=True)
class Collection:
    """All versions of one artifact name in one project."""

    entity: str
    project: str
    name: str

    @property
    def prefix(self) -> str:
        return f"{self.entity}/{self.project}/artifacts/{self.name}/"

    def __str__(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}"


# -- the keys ----------------------------------------------------------------------------------------


def probe_key(probe_id: str) -> str:
    """A probe's own key (conditional writes, body digests); a gc removes any left behind."""
    return f"{PROBE_PREFIX}{probe_id}"


def blob_key(digest: str) -> str:
    hexd = hex_part(digest)
    return f"blobs/blake3/{hexd[:2]}/{hexd}"


def manifest_key(digest: str) -> str:
    hexd = hex_part(digest)
    return f"manifests/blake3/{hexd[:2]}/{hexd}.json"


def collection_key(collection: Collection) -> str:
    return f"{collection.prefix}collection.json"


def head_key(collection: Collection) -> str:
    return f"{collection.prefix}head.json"


def version_key(collection: Collection, number: int) -> str:
    return f"{collection.prefix}versions/{number}.json"


def versions_prefix(collection: Collection) -> str:
    return f"{collection.prefix}versions/"


def digest_key(collection: Collection, digest: str) -> str:
    return f"{collection.prefix}digests/{hex_part(digest)}.json"


def alias_key(collection: Collection, alias: str) -> str:
    return f"{collection.prefix}aliases/{alias}.json"


def aliases_prefix(collection: Collection) -> str:
    return f"{collection.prefix}aliases/"


def shards_prefix(collection: Collection, distributed_id: str) -> str:
    return f"{collection.prefix}drafts/{distributed_id}/shards/"


def shard_key(collection: Collection, distributed_id: str, shard: str) -> str:
    return f"{shards_prefix(collection, distributed_id)}{shard}.json"


def consumers_prefix(collection: Collection, number: int) -> str:
    return f"{collection.prefix}consumers/{number}/"


def consumer_key(collection: Collection, number: int, entity: str, project: str, run_id: str) -> str:
    return f"{consumers_prefix(collection, number)}{entity}/{project}/{run_id}"


def collections_prefix(entity: str, project: str) -> str:
    return f"{entity}/{project}/artifacts/"


def runs_prefix(entity: str, project: str) -> str:
    return f"{entity}/{project}/runs/"


def run_key(entity: str, project: str, run_id: str) -> str:
    return f"{runs_prefix(entity, project)}{run_id}.json"


# -- reading a key back ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlobKey:
    digest: str


@dataclass(frozen=True, slots=True)
class ManifestKey:
    digest: str


@dataclass(frozen=True, slots=True)
class CollectionKey:
    collection: Collection


@dataclass(frozen=True, slots=True)
class VersionKey:
    collection: Collection
    number: int


@dataclass(frozen=True, slots=True)
class AliasKey:
    collection: Collection
    alias: str


@dataclass(frozen=True, slots=True)
class ShardKey:
    collection: Collection
    distributed_id: str
    shard: str


@dataclass(frozen=True, slots=True)
class ProbeKey:
    pass


Key = BlobKey | ManifestKey | CollectionKey | VersionKey | AliasKey | ShardKey | ProbeKey

_SEGMENT = r"([^/]+)"
_IN_COLLECTION = rf"{_SEGMENT}/{_SEGMENT}/artifacts/{_SEGMENT}/"
_BLOB = re.compile(r"blobs/blake3/[0-9a-f]{2}/([0-9a-f]{64})")
_MANIFEST = re.compile(r"manifests/blake3/[0-9a-f]{2}/([0-9a-f]{64})\.json")
_COLLECTION = re.compile(rf"{_IN_COLLECTION}collection\.json")
_VERSION = re.compile(rf"{_IN_COLLECTION}versions/([0-9]+)\.json")
_ALIAS = re.compile(rf"{_IN_COLLECTION}aliases/{_SEGMENT}\.json")
_SHARD = re.compile(rf"{_IN_COLLECTION}drafts/{_SEGMENT}/shards/{_SEGMENT}\.json")


def parse_key(key: str) -> Key | None:
    """What the object at ``key`` is, by its key alone; None for a key of no kind gc or verify reads
    (heads, digest indexes, consumers, runs) or of no lorry kind at all."""
    if match := _BLOB.fullmatch(key):
        return BlobKey(f"blake3:{match[1]}")
    if match := _MANIFEST.fullmatch(key):
        return ManifestKey(f"blake3:{match[1]}")
    if match := _COLLECTION.fullmatch(key):
        return CollectionKey(Collection(match[1], match[2], match[3]))
    if match := _VERSION.fullmatch(key):
        return VersionKey(Collection(match[1], match[2], match[3]), int(match[4]))
    if match := _ALIAS.fullmatch(key):
        return AliasKey(Collection(match[1], match[2], match[3]), match[4])
    if match := _SHARD.fullmatch(key):
        return ShardKey(Collection(match[1], match[2], match[3]), match[4], match[5])
    if key.startswith(PROBE_PREFIX):
        return ProbeKey()
    return None


def consumer_of(prefix: str, key: str) -> tuple[str, str, str] | None:
    """The run (entity, project, id) a key under ``consumers_prefix(...)`` names, if it names one."""
    parts = key.removeprefix(prefix).split("/")
    return (parts[0], parts[1], parts[2]) if key.startswith(prefix) and len(parts) == 3 else None
