"""The store's key layout: every key lorry reads back is read back as what it was made from."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lorry.model import layout
from lorry.model.layout import (
    AliasKey,
    BlobKey,
    Collection,
    CollectionKey,
    ManifestKey,
    ProbeKey,
    ShardKey,
    VersionKey,
    parse_key,
)

segment = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12).filter(
    lambda s: s not in {".", ".."}
)
collections = st.builds(Collection, segment, segment, segment)
digests = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"blake3:{h}")


@given(collections, st.integers(0, 10**9), segment, segment, segment, digests)
def test_every_key_reads_back(
    collection: Collection, number: int, alias: str, draft: str, shard: str, digest: str
) -> None:
    assert parse_key(layout.blob_key(digest)) == BlobKey(digest)
    assert parse_key(layout.manifest_key(digest)) == ManifestKey(digest)
    assert parse_key(layout.collection_key(collection)) == CollectionKey(collection)
    assert parse_key(layout.version_key(collection, number)) == VersionKey(collection, number)
    assert parse_key(layout.alias_key(collection, alias)) == AliasKey(collection, alias)
    assert parse_key(layout.shard_key(collection, draft, shard)) == ShardKey(collection, draft, shard)
    # Keys gc and verify do not read are of no kind.
    assert parse_key(layout.head_key(collection)) is None
    assert parse_key(layout.digest_key(collection, digest)) is None
    assert parse_key(layout.run_key(collection.entity, collection.project, alias)) is None


def test_probe_and_foreign_keys() -> None:
    assert parse_key(layout.PROBE_PREFIX + "0123") == ProbeKey()
    assert parse_key(layout.GC_STATE_KEY) is None
    assert parse_key("blobs/blake3/ab/not-hex") is None
    assert parse_key("someone/else/artifacts/x/versions/v1.json") is None
    assert parse_key("notes.txt") is None


def test_consumers_read_back() -> None:
    collection = Collection("e", "p", "data")
    prefix = layout.consumers_prefix(collection, 3)
    assert layout.consumer_of(prefix, layout.consumer_key(collection, 3, "e2", "p2", "run1")) == (
        "e2",
        "p2",
        "run1",
    )
    assert layout.consumer_of(prefix, prefix + "too/short") is None
