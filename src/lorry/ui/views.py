"""Pure shaping of what the reader returns into what a page draws: a folder of a file tree, a diff,
the geometry of a chart and of a lineage graph. No I/O here, so each is tested directly."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lorry.ui.entries import EntryTable

# -- the file tree ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Folder:
    path: str
    name: str
    files: int
    size: int


@dataclass(frozen=True, slots=True)
class FolderListing:
    """The folders and files directly inside ``folder`` ('' is the root); files as entry indices."""

    folder: str
    folders: tuple[Folder, ...]
    files: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.folders) + len(self.files)


def list_folder(entries: EntryTable, folder: str) -> FolderListing:
    """One pass over the paths: no entry is parsed."""
    prefix = folder + "/" if folder else ""
    start = bisect.bisect_left(entries.paths, prefix)  # sorted: the folder's entries are one run
    folders: dict[str, list[int]] = {}  # name → [files, size]
    files = []
    for index in range(start, len(entries)):
        path = entries.paths[index]
        if not path.startswith(prefix):
            break
        name, slash, _ = path[len(prefix) :].partition("/")
        if slash:
            counts = folders.setdefault(name, [0, 0])
            counts[0] += 1
            counts[1] += entries.size_at(index)
        else:
            files.append(index)
    return FolderListing(
        folder,
        tuple(Folder(prefix + name, name, n, size) for name, (n, size) in sorted(folders.items())),
        tuple(files),
    )


# -- diff -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """A file or metadata key in one version, the other, or both with different values."""

    name: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Diff:
    """Files as entry indices into the two versions' tables (``changed``: before and after indices);
    metadata changes with values, or ``MISSING``."""

    added: tuple[int, ...]
    removed: tuple[int, ...]
    changed: tuple[Change, ...]
    metadata: tuple[Change, ...]


MISSING = object()


def diff_versions(
    before: EntryTable, after: EntryTable, meta_before: Mapping[str, Any], meta_after: Mapping[str, Any]
) -> Diff:
    old = before.index()
    new = after.index()
    added = tuple(i for path, i in new.items() if path not in old)
    removed = tuple(i for path, i in old.items() if path not in new)
    changed = tuple(
        Change(path, old[path], i)
        for path, i in new.items()
        if path in old and before.content_at(old[path]) != after.content_at(i)
    )
    keys = sorted(set(meta_before) | set(meta_after))
    metadata = tuple(
        Change(k, meta_before.get(k, MISSING), meta_after.get(k, MISSING))
        for k in keys
        if meta_before.get(k, MISSING) != meta_after.get(k, MISSING)
    )
    return Diff(added, removed, changed, metadata)


# -- a chart of one metadata key across versions ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    version: int
    value: float
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Tick:
    label: str
    at: float


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    points: tuple[Point, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    lowest: Point
    highest: Point

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def chart(values: Sequence[tuple[int, float]], width: int = 760, height: int = 240) -> Chart | None:
    """Version numbers and values → where each point goes; None when there is nothing to draw."""
    if not values:
        return None
    left, top, right, bottom = 64, 16, width - 16, height - 32
    versions = [v for v, _ in values]
    low_v, high_v = min(versions), max(versions)
    low, high = min(y for _, y in values), max(y for _, y in values)
    if low == high:
        low, high = low - 1, high + 1
    span_v = max(high_v - low_v, 1)

    def x_of(version: int) -> float:
        return left + (version - low_v) / span_v * (right - left) if high_v != low_v else (left + right) / 2

    def y_of(value: float) -> float:
        return bottom - (value - low) / (high - low) * (bottom - top)

    points = tuple(Point(v, y, x_of(v), y_of(y)) for v, y in values)
    y_ticks = tuple(Tick(_number(t), y_of(t)) for t in _nice_ticks(low, high))
    step = max(1, math.ceil(span_v / 8))
    x_ticks = tuple(Tick(f"v{v}", x_of(v)) for v in range(low_v, high_v + 1, step))
    return Chart(
        width,
        height,
        left,
        top,
        right,
        bottom,
        points,
        y_ticks,
        x_ticks,
        lowest=min(points, key=lambda p: (p.value, p.version)),
        highest=max(points, key=lambda p: (p.value, -p.version)),
    )


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    tick = first
    while tick <= high + step * 1e-9:
        ticks.append(round(tick, 12))
        tick += step
    return ticks


def _number(value: float) -> str:
    return f"{value:.6g}"


# -- a lineage graph ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: str  # "artifact" or "run"
    label: str
    detail: str
    href: str
    x: float
    y: float
    root: bool
    state: str = ""  # "deleted", "expired" or "missing" for a version not served


@dataclass(frozen=True, slots=True)
class Edge:
    path: str  # an SVG path, a curve from one node's right side to the other's left
    relation: str


@dataclass(frozen=True, slots=True)
class GraphLayout:
    width: int
    height: int
    node_width: int
    node_height: int
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A node before layout: what it is and where it links."""

    id: str
    kind: str  # "artifact", "run", or "more" (neighbours left out)
    label: str
    detail: str
    href: str
    state: str = ""


def _natural(text: str) -> tuple[tuple[int, str], ...]:
    """A sort key that puts ``model:v2`` before ``model:v10``."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", text))


NODE_WIDTH, NODE_HEIGHT, COLUMN_GAP, ROW_GAP, MARGIN = 200, 48, 56, 22, 16


def layout_graph(
    root: str, nodes: Mapping[str, GraphNode], edges: Iterable[tuple[str, str, str]]
) -> GraphLayout:
    """Columns by distance from ``root`` (what it came from to the left, what came from it to the
    right), nodes in a column by name; edges drawn left to right."""
    edge_list = sorted(set(edges))
    upstream: dict[str, list[str]] = {}
    downstream: dict[str, list[str]] = {}
    for source, target, _ in edge_list:
        downstream.setdefault(source, []).append(target)
        upstream.setdefault(target, []).append(source)
    column = {root: 0}
    for links, sign in ((upstream, -1), (downstream, 1)):
        frontier = [root]
        while frontier:
            following = []
            for node in frontier:
                for other in links.get(node, []):
                    if other not in column:
                        column[other] = column[node] + sign
                        following.append(other)
            frontier = following
    low = min(column.values())
    columns: dict[int, list[str]] = {}
    for node_id, c in column.items():
        columns.setdefault(c - low, []).append(node_id)
    rows = max(len(ids) for ids in columns.values())
    height = MARGIN * 2 + rows * NODE_HEIGHT + (rows - 1) * ROW_GAP
    placed: dict[str, Node] = {}
    for c, ids in sorted(columns.items()):
        ids.sort(key=lambda i: (nodes[i].kind == "more", nodes[i].kind, _natural(i)))  # "N more" last
        offset = (height - (len(ids) * NODE_HEIGHT + (len(ids) - 1) * ROW_GAP)) / 2
        for r, node_id in enumerate(ids):
            n = nodes[node_id]
            x = MARGIN + c * (NODE_WIDTH + COLUMN_GAP)
            y = offset + r * (NODE_HEIGHT + ROW_GAP)
            placed[node_id] = Node(n.id, n.kind, n.label, n.detail, n.href, x, y, node_id == root, n.state)
    drawn = []
    for source, target, relation in edge_list:
        if source not in placed or target not in placed:
            continue
        a, b = placed[source], placed[target]
        x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT / 2
        x2, y2 = b.x, b.y + NODE_HEIGHT / 2
        bend = max(abs(x2 - x1) / 2, 30)
        drawn.append(
            Edge(
                f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}",
                relation,
            )
        )
    width = MARGIN * 2 + len(columns) * NODE_WIDTH + (len(columns) - 1) * COLUMN_GAP
    return GraphLayout(width, int(height), NODE_WIDTH, NODE_HEIGHT, tuple(placed.values()), tuple(drawn))
