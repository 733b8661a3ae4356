"""``lorry bench``: what this machine and a store can do with lorry, measured on the spot.

For each dataset (by default 1,000 files of 4 KiB, 64 files of 4 MiB and one file of 512 MiB, all
generated in a temporary folder), lorry logs it to the store and downloads it into an empty folder with
an empty cache, checks every downloaded byte against what was generated, and reports seconds, MB/s,
files/s, the process's CPU seconds and its peak resident memory. Then it removes from the store
everything the benchmark wrote.

>>> from lorry.benchmark import DatasetSpec, run_benchmark
>>> results = run_benchmark("/tmp/store", [DatasetSpec("small", 100, 4096)])  # doctest: +SKIP
>>> [(r.direction, r.verified) for r in results]                               # doctest: +SKIP
[('log', True), ('download', True)]

What is written goes under a project of its own (``lorry-bench-<random>``), and every file's content
is random, drawn anew on each call: the blobs it stores cannot be shared with anything else in the
store, so removing them afterwards touches nothing but the benchmark's own objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from blake3 import blake3

from lorry import _bridge
from lorry.artifact import Artifact
from lorry.model.layout import blob_key, manifest_key
from lorry.runs import Run, resolve_artifact
from lorry.session import session
from lorry.settings import Settings
from lorry.storage.base import LOCAL_FILES, LocalFiles, Store

KiB = 1 << 10
MiB = 1 << 20
MB = 1_000_000
_CHUNK = 8 * MiB
_FILES_PER_FOLDER = 100
_DELETES_IN_FLIGHT = 32


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """``files`` files of ``file_size`` bytes each, named ``name``."""

    name: str
    files: int
    file_size: int

    @property
    def total_bytes(self) -> int:
        return self.files * self.file_size


DEFAULT_DATASETS = (
    DatasetSpec("small", 1_000, 4 * KiB),
    DatasetSpec("medium", 64, 4 * MiB),
    DatasetSpec("large", 1, 512 * MiB),
)


class _Rates:
    """Throughput of anything that moved ``files`` files of ``bytes`` bytes in ``seconds``."""

    __slots__ = ()
    files: int
    bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds else 0.0

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Measurement(_Rates):
    """One transfer of one dataset: ``direction`` is ``"log"`` or ``"download"``.

    ``seconds`` runs from the first call (``add_dir`` for a log, the lookup for a download) until the
    version is committed or every file is in place; ``cpu_seconds`` is the whole process's user and
    system time meanwhile (every thread); ``peak_rss`` the largest resident memory sampled meanwhile.
    """

    dataset: str
    direction: str
    run: int
    files: int
    bytes: int
    seconds: float
    cpu_seconds: float
    peak_rss: int
    verified: bool


@dataclass(frozen=True, slots=True)
class Summary(_Rates):
    """The runs of one dataset and direction: medians, and the range of the seconds."""

    dataset: str
    direction: str
    runs: int
    files: int
    bytes: int
    seconds: float
    seconds_min: float
    seconds_max: float
    cpu_seconds: float
    peak_rss: int
    verified: bool


def summarize(results: Iterable[Measurement]) -> list[Summary]:
    """One ``Summary`` per (dataset, direction), in the order first met."""
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for result in results:
        groups.setdefault((result.dataset, result.direction), []).append(result)
    summaries = []
    for (dataset, direction), group in groups.items():
        seconds = [m.seconds for m in group]
        summaries.append(
            Summary(
                dataset=dataset,
                direction=direction,
                runs=len(group),
                files=group[0].files,
                bytes=group[0].bytes,
                seconds=statistics.median(seconds),
                seconds_min=min(seconds),
                seconds_max=max(seconds),
                cpu_seconds=statistics.median(m.cpu_seconds for m in group),
                peak_rss=max(m.peak_rss for m in group),
                verified=all(m.verified for m in group),
            )
        )
    return summaries


# -- measuring -----------------------------------------------------------------------------------------


class _Meter:
    """Wall time, CPU seconds of this process, and its peak resident memory, over a ``with`` block."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="lorry-bench-rss", daemon=True)

    def __enter__(self) -> _Meter:
        self.peak_rss = _rss()
        self._cpu = _cpu()
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
        self.cpu_seconds = _cpu() - self._cpu
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, _rss())

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, _rss())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    """Resident bytes now; where /proc is missing, the peak so far (all the platform offers)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


# -- datasets ------------------------------------------------------------------------------------------


def _relative_paths(spec: DatasetSpec) -> Iterator[str]:
    """One file: ``data.bin``; more: folders of at most 100 files, so listings stay realistic."""
    if spec.files == 1:
        yield "data.bin"
        return
    for i in range(spec.files):
        yield f"part-{i // _FILES_PER_FOLDER:03d}/file-{i:06d}.bin"


def generate(spec: DatasetSpec, root: Path, key: bytes) -> dict[str, str]:
    """Write the dataset under ``root`` from the random ``key``; return each file's BLAKE3 hex."""
    digests = {}
    for number, relative in enumerate(_relative_paths(spec)):
        stream = blake3(f"{spec.name}/{number}".encode(), key=key)
        check = blake3()
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            for offset in range(0, spec.file_size, _CHUNK):
                block = stream.digest(length=min(_CHUNK, spec.file_size - offset), seek=offset)
                check.update(block)
                handle.write(block)
        digests[relative] = check.hexdigest()
    return digests


def verify(root: Path, digests: dict[str, str]) -> bool:
    """Whether ``root`` holds exactly these files with these contents."""
    found = {
        Path(folder, name).relative_to(root).as_posix()
        for folder, _, names in os.walk(root)
        for name in names
    }
    if found != set(digests):
        return False
    for relative, digest in digests.items():
        hasher = blake3(max_threads=blake3.AUTO)
        with open(root / relative, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        if hasher.hexdigest() != digest:
            return False
    return True


# -- the benchmark -------------------------------------------------------------------------------------


def run_benchmark(
    store: str,
    datasets: Sequence[DatasetSpec] = DEFAULT_DATASETS,
    *,
    runs: int = 1,
    workdir: str | os.PathLike[str] | None = None,
    entity: str | None = None,
    on_result: Callable[[Measurement], None] | None = None,
) -> list[Measurement]:
    """Log and download each dataset ``runs`` times on ``store``; return every measurement.

    Datasets are generated under a new folder in ``workdir`` (default: the system's temporary
    folder), which is removed at the end, as is everything written to the store, whatever happens.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    project = f"lorry-bench-{secrets.token_hex(4)}"
    settings = Settings.load(store=store, entity=entity, project=project)
    folder = Path(tempfile.mkdtemp(prefix="lorry-bench-", dir=workdir))
    results: list[Measurement] = []
    written: set[str] = set()
    try:
        key = secrets.token_bytes(32)
        sources = {}
        for spec in datasets:
            root = folder / "data" / spec.name
            sources[spec.name] = (root, generate(spec, root, key))
        for number in range(1, runs + 1):
            for spec in datasets:
                source, digests = sources[spec.name]
                logged, written_now = _log(settings, spec, source, folder / "cache-log", number)
                written |= written_now
                _emit(results, logged, on_result)
                target = folder / "download"
                cache = folder / "cache-download"
                downloaded = _download(settings.with_(cache_dir=cache), spec, target, number, digests)
                _emit(results, downloaded, on_result)
                for path in (target, cache):
                    shutil.rmtree(path, ignore_errors=True)
                # The next run logs the same content: remove it first, or it would find it stored.
                remove(settings, written)
                written.clear()
    finally:
        with contextlib.suppress(Exception):
            remove(settings, written)
        shutil.rmtree(folder, ignore_errors=True)
    return results


def _emit(
    results: list[Measurement], result: Measurement, on_result: Callable[[Measurement], None] | None
) -> None:
    results.append(result)
    if on_result is not None:
        on_result(result)


def _artifact_name(spec: DatasetSpec) -> str:
    return f"bench-{spec.name}"


def _log(
    settings: Settings, spec: DatasetSpec, source: Path, cache: Path, number: int
) -> tuple[Measurement, set[str]]:
    run = Run(settings.with_(cache_dir=cache), job_type="lorry-bench", name=None, config=None)
    written = {f"{settings.entity}/{settings.project}/"}
    try:
        with _Meter() as meter:
            artifact = Artifact(_artifact_name(spec), type="benchmark")
            artifact.add_dir(source, policy="immutable")
            run.log_artifact(artifact)
            artifact.wait()
        manifest = artifact.manifest
        written.add(manifest_key(manifest.digest))
        written.update(blob_key(e.digest) for e in manifest.values() if e.digest and e.ref is None)
    finally:
        run.finish()
        shutil.rmtree(cache, ignore_errors=True)
    verified = artifact.file_count == spec.files and artifact.size == spec.total_bytes
    result = _measurement(spec, "log", number, meter, verified)
    return result, written


def _download(
    settings: Settings, spec: DatasetSpec, target: Path, number: int, digests: dict[str, str]
) -> Measurement:
    with _Meter() as meter:
        artifact = _bridge.run_sync(resolve_artifact(settings, f"{_artifact_name(spec)}:latest"))
        artifact.download(target)
    return _measurement(spec, "download", number, meter, verify(target, digests))


def _measurement(
    spec: DatasetSpec, direction: str, number: int, meter: _Meter, verified: bool
) -> Measurement:
    return Measurement(
        dataset=spec.name,
        direction=direction,
        run=number,
        files=spec.files,
        bytes=spec.total_bytes,
        seconds=meter.seconds,
        cpu_seconds=meter.cpu_seconds,
        peak_rss=meter.peak_rss,
        verified=verified,
    )


def remove(settings: Settings, keys: Iterable[str]) -> int:
    """Delete ``keys`` from the store; a key ending in ``/`` stands for every object below it.
    Returns the number of objects deleted."""
    wanted = set(keys)
    if not wanted:
        return 0
    store = session(settings).store(settings.store, settings.store_options)
    return _bridge.run_sync(_remove(store, wanted))


async def _remove(store: Store, keys: set[str]) -> int:
    found = {k for k in keys if not k.endswith("/")}
    for prefix in (k for k in keys if k.endswith("/")):
        async for meta in store.list(prefix):
            found.add(meta.key)
    gate = asyncio.Semaphore(_DELETES_IN_FLIGHT)

    async def delete(key: str) -> None:
        async with gate:
            await store.delete(key)

    await asyncio.gather(*(delete(k) for k in sorted(found)))
    if (local := LOCAL_FILES.of(store)) is not None:
        _prune(local, found)
    return len(found)


def _prune(store: LocalFiles, keys: Iterable[str]) -> None:
    """Remove the folders of a local store that the deleted keys leave empty."""
    folders = {store.path_of(k).parent for k in keys}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        current = folder
        while current != store.root and store.root in current.parents:
            try:
                current.rmdir()
            except OSError:
                break  # not empty (or gone): its parents are not empty either
            current = current.parent
