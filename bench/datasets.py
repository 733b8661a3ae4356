"""Deterministic datasets: every byte is a function of (seed, dataset, file), so two machines that run
the benchmark move the same bytes, and every download can be checked against digests known in advance.

Contents come from BLAKE3's extendable output keyed by the seed: incompressible, distinct per file, and
generated at ~2 GB/s. A dataset is generated once into ``bench/data/<name>`` and reused while its
description (``<name>.json``) still matches.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from blake3 import blake3

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
CHUNK = 8 * MiB
SEED = "lorry-bench-1"


@dataclass(frozen=True)
class Spec:
    """A dataset: ``files`` files of ``file_size`` bytes, laid out by ``layout``."""

    name: str
    files: int
    file_size: int
    layout: str  # "nested": 10 x 10 folders; "flat": one folder of shards; "single": one file

    @property
    def total_bytes(self) -> int:
        return self.files * self.file_size

    def relative_paths(self) -> Iterator[str]:
        for i in range(self.files):
            if self.layout == "nested":
                yield f"d{i * 10 // self.files}/e{i * 100 // self.files % 10}/f{i:05d}.bin"
            elif self.layout == "flat":
                yield f"shards/part-{i:04d}.bin"
            else:
                yield "checkpoint.bin" if self.files == 1 else f"checkpoint-{i}.bin"

    def describe(self) -> str:
        return f"{self.files:,} x {human_bytes(self.file_size)}"


FULL = {
    "S": Spec("S", 10_000, 4 * KiB, "nested"),
    "M": Spec("M", 256, 4 * MiB, "flat"),
    "L": Spec("L", 1, 2 * GiB, "single"),
}
QUICK = {
    "S": Spec("S", 1_000, 4 * KiB, "nested"),
    "M": Spec("M", 32, 4 * MiB, "flat"),
    "L": Spec("L", 1, 256 * MiB, "single"),
}


def human_bytes(size: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{int(size)} B"


def _key(seed: str) -> bytes:
    return blake3(seed.encode()).digest()


def write_file(path: Path, key: bytes, label: str, size: int) -> str:
    """Write ``size`` bytes of the stream named ``label`` under ``key``; return their BLAKE3 hex."""
    stream = blake3(label.encode(), key=key)
    check = blake3(max_threads=blake3.AUTO)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for offset in range(0, size, CHUNK):
            block = stream.digest(length=min(CHUNK, size - offset), seek=offset)
            check.update(block)
            handle.write(block)
    return check.hexdigest()


@dataclass(frozen=True)
class Dataset:
    """A generated dataset on disk and what each of its files must hold."""

    spec: Spec
    root: Path
    digests: dict[str, tuple[int, str]]  # relative path -> (size, blake3 hex)

    @property
    def files(self) -> int:
        return self.spec.files

    @property
    def total_bytes(self) -> int:
        return self.spec.total_bytes


def ensure(spec: Spec, data_dir: Path, seed: str = SEED) -> Dataset:
    """The dataset ``spec`` under ``data_dir``, generated unless an identical one is already there."""
    root = data_dir / spec.name
    index = data_dir / f"{spec.name}.json"
    wanted = {"spec": asdict(spec), "seed": seed}
    if index.exists() and root.is_dir():
        saved = json.loads(index.read_text())
        if {k: saved.get(k) for k in wanted} == wanted:
            digests = {p: (int(s), d) for p, (s, d) in saved["digests"].items()}
            if _looks_intact(root, digests):
                return Dataset(spec, root, digests)
    if root.exists():
        shutil.rmtree(root)
    index.unlink(missing_ok=True)
    key = _key(seed)
    digests = {}
    for number, relative in enumerate(spec.relative_paths()):
        digest = write_file(root / relative, key, f"{spec.name}/{number}", spec.file_size)
        digests[relative] = (spec.file_size, digest)
    index.write_text(json.dumps({**wanted, "digests": digests}))
    return Dataset(spec, root, digests)


def _looks_intact(root: Path, digests: dict[str, tuple[int, str]]) -> bool:
    """Cheap check of a reused dataset: every file there with its size (contents are checked by digest
    only where bytes arrive, after each transfer)."""
    try:
        return all((root / rel).stat().st_size == size for rel, (size, _) in digests.items())
    except OSError:
        return False


def file_digest(path: Path) -> str:
    """BLAKE3 of a file, read in chunks (not mapped: the harness's memory stays small)."""
    hasher = blake3(max_threads=blake3.AUTO)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def check_tree(dataset: Dataset, root: Path) -> str | None:
    """None when ``root`` holds exactly the dataset's files byte for byte; else what differs."""
    found: dict[str, Path] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            found[path.relative_to(root).as_posix()] = path
    missing = sorted(set(dataset.digests) - set(found))
    extra = sorted(set(found) - set(dataset.digests))
    if missing or extra:
        return f"{len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})"
    for relative, (size, digest) in dataset.digests.items():
        path = found[relative]
        if path.stat().st_size != size:
            return f"{relative}: {path.stat().st_size} bytes, expected {size}"
        if file_digest(path) != digest:
            return f"{relative}: content differs"
    return None


def check_contains(dataset: Dataset, root: Path) -> str | None:
    """None when some file below ``root`` holds each of the dataset's contents (for tools that store
    files under their own names: a content-addressed store, a cache, a copy)."""
    wanted = {digest for _, digest in dataset.digests.values()}
    sizes = {size for size, _ in dataset.digests.values()}
    seen: set[str] = set()
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if path.is_symlink() or not path.is_file() or path.stat().st_size not in sizes:
                continue
            seen.add(file_digest(path))
    lost = wanted - seen
    return None if not lost else f"{len(lost)} of {len(wanted)} contents not found under {root}"
