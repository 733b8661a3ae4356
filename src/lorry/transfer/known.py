"""Digests remembered for unchanged local files: a large file logged again is not read again.

One small file per source file in ``<cache>/digests/<device>-<inode>`` holds the file's size,
modification time, change time (both in nanoseconds) and its digest. A digest is used only while all
of them still hold for the file. Every write to a file moves its change time, and no call can set a
change time back (``utime`` sets the modification time only), so a changed file is always hashed
again; a file replaced by another (a new inode, or the inode number reused) has a new change time
too.

A write in the same clock tick as the stamp it was hashed under could leave that stamp as it was (a
filesystem keeps times in ticks of up to two seconds): a digest is remembered only for a file that
was last changed at least ``SETTLED_NS`` before it was hashed (the rule git calls "racily clean").
A file written a moment ago is hashed every time until it has been still that long.

Losing this memory costs a hash, nothing else: entries that cannot be read or written are ignored.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from lorry.model.digest import is_content_digest
from lorry.storage.local import FILE_MODE, make_dirs

SETTLED_NS = 2_000_000_000


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

    def settled(self, now_ns: int) -> bool:
        """Whether the file had been still for ``SETTLED_NS`` at ``now_ns``."""
        return max(self.mtime_ns, self.ctime_ns) <= now_ns - SETTLED_NS


class KnownDigests:
    """The digests of files hashed before under the cache folder ``cache_dir``."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "digests"

    def _path(self, stamp: Stamp) -> Path:
        return self.root / f"{stamp.device:x}-{stamp.inode:x}"

    def lookup(self, stamp: Stamp) -> str | None:
        """The digest remembered for exactly this stamp, if any."""
        try:
            fields = self._path(stamp).read_text().split()
        except (OSError, UnicodeDecodeError):
            return None
        if len(fields) != 4 or not is_content_digest(fields[3]):
            return None  # damaged: hashed again, and written over
        if fields[:3] != [str(stamp.size), str(stamp.mtime_ns), str(stamp.ctime_ns)]:
            return None
        return fields[3]

    def of_file(self, path: str) -> str | None:
        """The digest remembered for the file at ``path`` as it is now, if any."""
        try:
            return self.lookup(Stamp.of_stat(os.stat(path)))
        except OSError:
            return None

    def remember(self, stamp: Stamp, digest: str, hashed_at_ns: int) -> None:
        """Remember ``digest`` for a file seen with ``stamp`` (the same before and after it was hashed)
        at ``hashed_at_ns``, if it had been still long enough for the stamp to tell any write apart."""
        if not stamp.settled(hashed_at_ns):
            return
        path = self._path(stamp)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            make_dirs(self.root)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{stamp.size} {stamp.mtime_ns} {stamp.ctime_ns} {digest}\n")
            os.replace(temp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
