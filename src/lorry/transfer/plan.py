"""How a large object is cut into parts: sizes that grow with the file so no upload passes S3's
10,000-part limit, and byte ranges for parallel downloads.

>>> plan_parts(40 << 20, 16 << 20).ranges()[-1]
PartRange(number=3, start=33554432, end=41943040)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

MiB = 1 << 20
MAX_PARTS = 10_000
MIN_PART = 5 * MiB  # S3's minimum for every part but the last
MAX_PART = 5 * 1024 * MiB

# Defaults measured against Ceph RGW on loopback (see README, "Measured defaults").
MULTIPART_THRESHOLD = 32 * MiB
PART_SIZE = 8 * MiB
RANGE_SIZE = 16 * MiB
MAX_PARTS_IN_FLIGHT = 4
RANGES_IN_FLIGHT = 16
SMALL_OBJECT = 1 * MiB
"""At or below this size a blob is sent with a conditional create at once (one request; a conflict
means it is already stored); above it a HEAD first saves sending bytes the store already has."""
BATCH_FILES = 64
BATCH_BYTES = 8 * MiB
"""Small files travel in batches of at most this many files and (past the first) bytes: one trip to a
thread per batch, not per file."""


@dataclass(frozen=True, slots=True)
class PartRange:
    number: int  # from 1
    start: int
    end: int  # exclusive

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class PartPlan:
    size: int
    part_size: int

    @property
    def count(self) -> int:
        return max(1, -(-self.size // self.part_size))

    def ranges(self) -> list[PartRange]:
        return [
            PartRange(n + 1, n * self.part_size, min(self.size, (n + 1) * self.part_size))
            for n in range(self.count)
        ]


def plan_parts(size: int, part_size: int = PART_SIZE) -> PartPlan:
    """Parts of at least ``part_size`` (and 5 MiB), grown in whole MiB so there are at most 10,000."""
    if size < 0:
        raise ValueError(f"negative size {size}")
    needed = -(-size // MAX_PARTS)
    grown = max(part_size, MIN_PART, -(-needed // MiB) * MiB)
    if grown > MAX_PART:
        raise ValueError(f"an object of {size} bytes is larger than S3 multipart allows")
    return PartPlan(size=size, part_size=grown)


def batched(items: Iterable[T], size_of: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive groups of at most ``BATCH_FILES`` items and, past an item's own size, ``BATCH_BYTES``.

    >>> [len(b) for b in batched(range(130), lambda _: 1)]
    [64, 64, 2]
    """
    batch: list[T] = []
    size = 0
    for item in items:
        if batch and (len(batch) == BATCH_FILES or size + size_of(item) > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += size_of(item)
    if batch:
        yield batch
