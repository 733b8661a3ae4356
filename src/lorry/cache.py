"""The download cache: blobs by content digest, bounded in size by ``cleanup``; and the staging area
where ``policy="mutable"`` snapshots and ``new_file`` contents wait to be logged.

Files leave the cache by copy, never by link, so a user's later write to a downloaded file cannot
corrupt the cache (or the store).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from lorry.model.digest import hex_part
from lorry.storage.local import make_dirs


@dataclass(frozen=True, slots=True)
class CacheInfo:
    files: int
    bytes: int


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def blob_path(self, digest: str) -> Path:
        hexd = hex_part(digest)
        return self.root / "blobs" / "blake3" / hexd[:2] / hexd

    def lookup(self, digest: str, size: int | None) -> Path | None:
        """The cached copy of ``digest`` if there is one of the right size (contents are checked again
        when they are copied out)."""
        path = self.blob_path(digest)
        try:
            st = path.stat()
        except OSError:
            return None
        if size is not None and st.st_size != size:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recency, for cleanup
        return path

    def temp_path(self) -> Path:
        make_dirs(self.root / "tmp")
        return self.root / "tmp" / uuid.uuid4().hex

    def admit(self, temp: Path, digest: str) -> Path:
        """Give a verified temporary file its place in the cache."""
        path = self.blob_path(digest)
        make_dirs(path.parent)
        os.replace(temp, path)
        return path

    def staging_folder(self) -> Path:
        """A new folder for one artifact's snapshots and ``new_file`` contents, removed once logged."""
        folder = self.root / "staging" / uuid.uuid4().hex
        make_dirs(folder)
        return folder

    def info(self) -> CacheInfo:
        files = total = 0
        for path in self._blobs():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
                files += 1
        return CacheInfo(files=files, bytes=total)

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
        top = self.root / "blobs"
        return [Path(d, f) for d, _, files in os.walk(top) for f in files] if top.exists() else []
