"""The runs and versions around one version, walked from it on the registry's records.

The walk goes breadth first (the nearest nodes are found first) and stops at a budget of nodes, taking
at most ``fanout`` new neighbours of any one node: a version used by thousands of runs costs one
listing and ``fanout`` reads, and what was left out is counted (``more``) for the page to say so.
Deleted and expired versions stay in the graph with their records, so the page can mark them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from lorry.errors import ArtifactNotFoundError, RunNotFoundError
from lorry.model.layout import Collection
from lorry.model.names import version_alias
from lorry.registry.records import ArtifactRef, RunRecord, VersionRecord
from lorry.registry.registry import Registry

UP, DOWN = "up", "down"


@dataclass(frozen=True, slots=True)
class Lineage:
    """Nodes are ids: ``entity/project/name:vN`` for versions, ``entity/project/run_id`` for runs. A
    record is None when what a link names is not on the store. Edges run from upstream to downstream:
    ``(version, run, "used")`` and ``(run, version, "logged")``. ``more[(node, UP or DOWN)]`` counts the
    neighbours of ``node`` left out for the budget."""

    root: str
    refs: Mapping[str, ArtifactRef]
    versions: Mapping[str, VersionRecord | None]
    runs: Mapping[str, RunRecord | None]
    edges: frozenset[tuple[str, str, str]]
    more: Mapping[tuple[str, str], int]


def version_id(ref: ArtifactRef) -> str:
    return f"{ref.entity}/{ref.project}/{ref.name}:{version_alias(ref.version)}"


def run_id(entity: str, project: str, run: str) -> str:
    return f"{entity}/{project}/{run}"


async def walk(
    registry: Registry, collection: Collection, root: VersionRecord, depth: int, budget: int, fanout: int
) -> Lineage:
    """Everything within ``depth`` version steps of ``root`` each way, up to ``budget`` nodes."""
    root_ref = ArtifactRef(collection.entity, collection.project, collection.name, root.version)
    refs: dict[str, ArtifactRef] = {version_id(root_ref): root_ref}
    versions: dict[str, VersionRecord | None] = {version_id(root_ref): root}
    runs: dict[str, RunRecord | None] = {}
    edges: set[tuple[str, str, str]] = set()
    more: dict[tuple[str, str], int] = {}
    # (node, direction, version steps from the root); the root goes both ways.
    frontier = [(version_id(root_ref), UP, 0), (version_id(root_ref), DOWN, 0)]

    async def neighbours(node: str, direction: str) -> list[str]:
        """The ids linked to ``node`` in ``direction``; new runs and versions are registered unread."""
        if node in versions:
            record, ref = versions[node], refs[node]
            if record is None:
                return []
            if direction == UP:
                found = [(ref.entity, ref.project, record.logged_by)] if record.logged_by else []
            else:
                found = await registry.consumers(Collection(ref.entity, ref.project, ref.name), ref.version)
            return sorted(run_id(*f) for f in found)
        run = runs[node]
        if run is None:
            return []
        linked = run.inputs if direction == UP else run.outputs
        for ref in linked:
            refs.setdefault(version_id(ref), ref)
        return sorted({version_id(ref) for ref in linked})

    while frontier:
        found = await asyncio.gather(*(neighbours(node, direction) for node, direction, _ in frontier))
        admitted: list[tuple[str, str, int]] = []
        for (node, direction, steps), ids in zip(frontier, found, strict=True):
            taken = 0
            for other in ids:
                known = other in versions or other in runs
                if not known and (taken >= fanout or len(versions) + len(runs) >= budget):
                    more[(node, direction)] = more.get((node, direction), 0) + 1
                    continue
                # Down from a version or up from a run, the link is a use; otherwise a log.
                relation = "used" if (direction == DOWN) == (node in versions) else "logged"
                edges.add((node, other, relation) if direction == DOWN else (other, node, relation))
                if known:
                    continue
                taken += 1
                if node in versions:
                    runs[other] = None
                    admitted.append((other, direction, steps))
                else:
                    versions[other] = None
                    admitted.append((other, direction, steps + 1))
        await asyncio.gather(*(_load(registry, node, refs, versions, runs) for node, _, _ in admitted))
        # A version expands while it is fewer than ``depth`` steps away; a run always (its versions
        # are one step further).
        frontier = [(n, d, s) for n, d, s in admitted if n in runs or s < depth]
    return Lineage(version_id(root_ref), refs, versions, runs, frozenset(edges), more)


async def _load(
    registry: Registry,
    node: str,
    refs: Mapping[str, ArtifactRef],
    versions: dict[str, VersionRecord | None],
    runs: dict[str, RunRecord | None],
) -> None:
    try:
        if node in versions:
            ref = refs[node]
            collection = Collection(ref.entity, ref.project, ref.name)
            versions[node] = await registry.read_version(collection, ref.version, include_gone=True)
        else:
            entity, project, run = node.split("/")
            runs[node] = await registry.get_run(entity, project, run)
    except (ArtifactNotFoundError, RunNotFoundError):
        pass  # linked but not on the store: the page shows the node as missing
