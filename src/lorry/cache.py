"""The download cache: blobs by content digest, bounded in size by ``cleanup``; and the staging area
where ``policy="mutable"`` snapshots, ``new_file`` contents and downloads in progress wait.

Files leave the cache by copy, never by link, so a user's later write to a downloaded file cannot
corrupt the cache (or the store).

A large blob downloaded by the store's native client is not copied into the cache: the cache
remembers where its verified copy was placed (``remember_place``: the path and the file's stamp, a few
places per blob, in ``placed/``), and a later download of the same blob copies it from there, checked
again on the way, as long as that file is as it was left. Writing the blob twice had doubled the
bytes a download writes, and the disk space it takes.

Each process stages in a folder of its own, ``staging/<pid>-<random>/``, with a lock file
(``locks/staging/<pid>-<random>``) it holds (``flock``) for as long as it lives. The folder goes when
the process exits; one whose owner died without exiting (``kill -9``, a crash) is found by
``reclaim_staging``: the kernel released its lock.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from lorry.model.digest import format_digest, hex_part
from lorry.storage.local import FILE_MODE, make_dirs

PLACES_KEPT = 4
"""The places remembered per blob (the latest first): a copy the user changed or removed leaves others."""


@dataclass(frozen=True, slots=True)
class StagingInfo:
    files: int
    bytes: int
    in_use: int
    """Files of processes still running (the rest are left by processes that died)."""


@dataclass(frozen=True, slots=True)
class CacheInfo:
    files: int
    bytes: int
    staging: StagingInfo


@dataclass(frozen=True, slots=True)
class _Area:
    """One process's staging folder and the descriptor that holds its lock."""

    pid: int
    folder: Path
    lock_fd: int

    @classmethod
    def claim(cls, top: Path) -> _Area:
        make_dirs(top)
        make_dirs(_locks(top))
        while True:
            name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            lock = _locks(top) / name
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A cleanup between the open and the lock may have taken it and removed the file: then the
            # lock is on a name that is gone, and another is made.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)
        folder = top / name
        make_dirs(folder)
        area = cls(os.getpid(), folder, fd)
        atexit.register(area.release)
        return area

    def release(self) -> None:
        if os.getpid() != self.pid:  # a forked child exits: the area is its parent's
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(_locks(self.folder.parent) / self.folder.name)
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


_areas: dict[Path, _Area] = {}
_areas_lock = threading.Lock()


def _own_area(top: Path) -> Path:
    """This process's staging folder under ``top``, claimed on first use; again after a fork, and
    after the folder was removed (a cache cleared by hand, or by a benchmark between its runs)."""
    with _areas_lock:
        area = _areas.get(top)
        if area is not None and area.pid == os.getpid() and not area.folder.is_dir():
            area.release()
            area = None
        if area is None or area.pid != os.getpid():
            area = _areas[top] = _Area.claim(top)
        return area.folder


TEMP_PREFIX = "."
"""How ``replace_whole``'s temporary names start (a record's own name never does)."""


def replace_whole(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path``, a small record of the cache: owner-only, under a dot name beside it
    until it is complete, then renamed over it (a process that dies meanwhile leaves only the dot name,
    which readers skip)."""
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@dataclass(frozen=True, slots=True)
class Stamp:
    """Everything about a file that a write, a replacement or a move to another inode changes."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of_stat(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class _Place:
    """A file outside the cache that held a blob's bytes when it was written, and its stamp then."""

    path: str
    stamp: Stamp

    @classmethod
    def of(cls, path: str) -> _Place:
        return cls(path, Stamp.of_stat(os.stat(path)))

    def holds(self) -> bool:
        """Whether the file is still as it was left (its bytes are checked again when copied)."""
        try:
            return _Place.of(self.path) == self
        except OSError:
            return False


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def blob_path(self, digest: str) -> Path:
        hexd = hex_part(digest)
        return self.root / "blobs" / "blake3" / hexd[:2] / hexd

    def lookup(self, digest: str, size: int | None, places: bool = True) -> Path | None:
        """The cached copy of ``digest`` if there is one of the right size, else (if ``places``) a
        remembered place that still holds it (contents are checked again when they are copied out).
        Only blobs written straight to their place have places: the caller knows which."""
        path = self.blob_path(digest)
        try:
            st = path.stat()
        except OSError:
            return self._placed(digest) if places else None
        if size is not None and st.st_size != size:
            return self._placed(digest) if places else None
        with contextlib.suppress(OSError):
            os.utime(path)  # recency, for cleanup
        return path

    def remember_place(self, digest: str, path: Path) -> None:
        """Remember that ``path`` holds the bytes of ``digest`` (verified a moment ago), as the file
        is now; a place whose file has changed since, or is gone, is forgotten. Failing to remember
        costs a later download its fetch, nothing else."""
        with contextlib.suppress(OSError):
            here = _Place.of(os.path.abspath(path))
            kept = [p for p in self._places(digest) if p.path != here.path and p.holds()]
            self._write_places(digest, [here, *kept][:PLACES_KEPT])

    def forget(self, digest: str, copy: Path) -> None:
        """``copy`` (the cache's own, or a remembered place) did not hold the bytes of ``digest``."""
        if copy == self.blob_path(digest):
            with contextlib.suppress(FileNotFoundError):
                copy.unlink()
            return
        with contextlib.suppress(OSError):
            self._write_places(digest, [p for p in self._places(digest) if p.path != str(copy)])

    def _placed(self, digest: str) -> Path | None:
        for place in self._places(digest):
            if place.holds():
                return Path(place.path)
        return None

    def _places_path(self, digest: str) -> Path:
        hexd = hex_part(digest)
        return self.root / "placed" / "blake3" / hexd[:2] / hexd

    def _places(self, digest: str) -> list[_Place]:
        try:
            lines = self._places_path(digest).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeError):
            return []
        places = []
        for line in lines:
            with contextlib.suppress(ValueError, TypeError):
                path, *stamp = json.loads(line)
                places.append(_Place(path, Stamp(*stamp)))
        return places

    def _write_places(self, digest: str, places: list[_Place]) -> None:
        record = self._places_path(digest)
        if not places:
            with contextlib.suppress(FileNotFoundError):
                record.unlink()
            return
        make_dirs(record.parent)
        lines = (json.dumps([p.path, *dataclasses.astuple(p.stamp)]) + "\n" for p in places)
        replace_whole(record, "".join(lines).encode())

    def forget_stale_places(self) -> int:
        """Forget the places whose files have changed or gone; return how many were forgotten. A
        record left half-written by a process that died goes too (one being written meanwhile is
        lost with it: that costs a later download its fetch, nothing else)."""
        forgotten = 0
        for record in _files_below(self.root / "placed"):
            if record.name.startswith(TEMP_PREFIX):  # left by a writer that died, or being written
                with contextlib.suppress(OSError):
                    record.unlink()
                continue
            digest = format_digest(record.name)
            places = self._places(digest)
            holding = [p for p in places if p.holds()]
            if len(holding) != len(places):
                forgotten += len(places) - len(holding)
                with contextlib.suppress(OSError):
                    self._write_places(digest, holding)
        return forgotten

    def temp_path(self) -> Path:
        """A fresh name in this process's staging folder, for a download on its way into the cache."""
        return _own_area(self.staging_root) / f"download-{uuid.uuid4().hex}"

    @property
    def staging_root(self) -> Path:
        return self.root / "staging"

    def admit(self, temp: Path, digest: str) -> Path:
        """Give a verified temporary file its place in the cache."""
        path = self.blob_path(digest)
        make_dirs(path.parent)
        os.replace(temp, path)
        return path

    def staging_folder(self) -> Path:
        """A new folder for one artifact's snapshots and ``new_file`` contents, removed once logged."""
        folder = _own_area(self.staging_root) / uuid.uuid4().hex
        make_dirs(folder)
        return folder

    def info(self) -> CacheInfo:
        files, total = _measure(self._blobs())
        staged = in_use = 0
        staged_bytes = 0
        for folder, alive in self._staging_areas():
            count, size = _measure(_files_below(folder))
            staged, staged_bytes = staged + count, staged_bytes + size
            in_use += count if alive else 0
        return CacheInfo(files, total, StagingInfo(staged, staged_bytes, in_use))

    def reclaim_staging(self) -> int:
        """Remove the staging folders of processes that are gone; return the bytes freed."""
        freed = 0
        for folder, alive in self._staging_areas(take=True):
            if not alive:
                freed += _measure(_files_below(folder))[1]
                shutil.rmtree(folder, ignore_errors=True)
        return freed

    def _staging_areas(self, take: bool = False) -> list[tuple[Path, bool]]:
        """Each process's staging folder and whether its process still holds it. With ``take``, the
        lock of a dead one is taken and its lock file removed, so nobody claims it meanwhile."""
        top = self.staging_root
        try:
            names = sorted(os.listdir(top))
        except FileNotFoundError:
            return []
        return [(top / name, _held(_locks(top) / name, take)) for name in names]

    def cleanup(self, max_size: int) -> int:
        """Remove the least recently used blobs until the cache holds at most ``max_size`` bytes;
        return the bytes freed."""
        entries = []
        for path in self._blobs():
            with contextlib.suppress(OSError):
                st = path.stat()
                entries.append((st.st_mtime_ns, st.st_size, path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in entries:
            if total - freed <= max_size:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                freed += size
        return freed

    def _blobs(self) -> list[Path]:
        return _files_below(self.root / "blobs")  # nothing, if there is no such folder


def _locks(top: Path) -> Path:
    """Where the lock files of the staging folders under ``top`` are (beside it, not in it)."""
    return top.parent / "locks" / top.name


def _held(lock: Path, take: bool) -> bool:
    """Whether a live process holds ``lock`` (no lock file at all: the folder is an orphan)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return True
    if take:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
    os.close(fd)
    return False


def _files_below(folder: Path) -> list[Path]:
    return [Path(d, f) for d, _, files in os.walk(folder) for f in files]


def _measure(paths: list[Path]) -> tuple[int, int]:
    """(files, bytes) of ``paths`` that still exist."""
    files = total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
            files += 1
    return files, total
