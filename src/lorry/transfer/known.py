"""Digests remembered for unchanged local files: a large file logged again is not read again.

One small file per source file in ``<cache>/digests/<device>-<inode>`` holds the file's size,
modification time, change time (both in nanoseconds) and its digest on its first line, and the path
the file was hashed at on its second (for ``reclaim``). A digest is used only while the device, inode,
size and both times still hold for the file. Every write to a file moves its change time, and no call
can set a change time back (``utime`` sets the modification time only), so a changed file is always
hashed again; a file replaced by another (a new inode, or the inode number reused) has a new change
time too.

A write in the same clock tick as the stamp it was hashed under could leave that stamp as it was (a
filesystem keeps times in ticks of up to two seconds): a digest is remembered only for a file that
was last changed at least ``SETTLED_NS`` before it was hashed (the rule git calls "racily clean").
A file written a moment ago is hashed every time until it has been still that long.

Losing this memory costs a hash, nothing else: entries that cannot be read or written are ignored.
An entry whose file is gone from its path or changed since (a rename or a new link moves the change
time too) will never be used again: ``reclaim`` (``lorry cache cleanup``) removes such entries, so they
cannot pile up unseen as files come and go.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from lorry.cache import TEMP_PREFIX, Stamp, replace_whole
from lorry.model.digest import is_content_digest
from lorry.storage.local import make_dirs

SETTLED_NS = 2_000_000_000

@dataclass(frozen=True, slots=True)
class Footprint:
    """How many files, of how many bytes, the remembered digests take (or a cleanup freed)."""

    files: int
    bytes: int


class _Entry(NamedTuple):
    stamp: Stamp
    digest: str
    path: str  # "" in an entry written before paths were kept


class KnownDigests:
    """The digests of files hashed before under the cache folder ``cache_dir``."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "digests"

    def _path(self, stamp: Stamp) -> Path:
        return self.root / f"{stamp.device:x}-{stamp.inode:x}"

    def lookup(self, stamp: Stamp) -> str | None:
        """The digest remembered for exactly this stamp, if any."""
        entry = _read(self._path(stamp))
        if entry is None or entry.stamp != stamp:
            return None  # another file, a changed one, or a damaged entry: hashed again, written over
        return entry.digest

    def of_file(self, path: str) -> str | None:
        """The digest remembered for the file at ``path`` as it is now, if any."""
        try:
            return self.lookup(Stamp.of_stat(os.stat(path)))
        except OSError:
            return None

    def remember(self, stamp: Stamp, digest: str, hashed_at_ns: int, source: str) -> None:
        """Remember ``digest`` for the file at ``source``, seen with ``stamp`` (the same before and
        after it was hashed) at ``hashed_at_ns``, if it had been still long enough for the stamp to
        tell any write apart."""
        if max(stamp.mtime_ns, stamp.ctime_ns) > hashed_at_ns - SETTLED_NS:  # not still long enough
            return
        head = f"{stamp.size} {stamp.mtime_ns} {stamp.ctime_ns} {digest}\n".encode()
        with contextlib.suppress(OSError):
            make_dirs(self.root)
            replace_whole(self._path(stamp), head + os.fsencode(os.path.abspath(source)) + b"\n")

    def footprint(self) -> Footprint:
        """What the remembered digests hold now."""
        files = size = 0
        for path in self._files():
            with contextlib.suppress(OSError):
                size += path.stat().st_size
                files += 1
        return Footprint(files, size)

    def reclaim(self, max_bytes: int | None = None) -> Footprint:
        """Remove every entry that no file can use again: its file gone from where it was hashed or
        changed since (by the entry's own rule, its stamp), a damaged entry, and one left half-written
        by a process that died. With ``max_bytes``, then the least recently written of the others too,
        until those left hold at most ``max_bytes``. Return what was freed.

        A process remembering a digest meanwhile may lose it: that costs it one hash, nothing else."""
        kept: list[tuple[int, int, Path]] = []
        freed = Footprint(0, 0)
        for path in self._files():
            try:
                st = path.stat()
            except OSError:
                continue
            if path.name.startswith(TEMP_PREFIX) or not _still_true(path):
                freed = _remove(path, st.st_size, freed)
            else:
                kept.append((st.st_mtime_ns, st.st_size, path))
        if max_bytes is not None:
            kept.sort()
            left = sum(size for _, size, _ in kept)
            for _, size, path in kept:
                if left <= max_bytes:
                    break
                freed = _remove(path, size, freed)
                left -= size
        return freed

    def _files(self) -> list[Path]:
        try:
            return [self.root / name for name in os.listdir(self.root)]
        except OSError:  # no such folder yet: nothing remembered
            return []




def _read(path: Path) -> _Entry | None:
    """The entry in ``path``, or None if there is none or it is damaged."""
    try:
        data = path.read_bytes()
        device, inode = (int(part, 16) for part in path.name.split("-"))
        head, _, source = data.partition(b"\n")
        fields = head.decode("ascii").split()
        size, mtime_ns, ctime_ns = (int(field) for field in fields[:3])
    except (OSError, ValueError):  # a decode error is a ValueError too
        return None
    if len(fields) != 4 or not is_content_digest(fields[3]):
        return None
    stamp = Stamp(device, inode, size, mtime_ns, ctime_ns)
    return _Entry(stamp, fields[3], os.fsdecode(source.removesuffix(b"\n")))


def _still_true(path: Path) -> bool:
    """Whether the entry in ``path`` can still be used: the file it names is where it was hashed, as
    it was then."""
    entry = _read(path)
    if entry is None or not entry.path:
        return False
    try:
        return Stamp.of_stat(os.stat(entry.path)) == entry.stamp
    except OSError:
        return False


def _remove(path: Path, size: int, freed: Footprint) -> Footprint:
    try:
        path.unlink()
    except FileNotFoundError:  # removed meanwhile by another cleanup
        return freed
    return Footprint(freed.files + 1, freed.bytes + size)
