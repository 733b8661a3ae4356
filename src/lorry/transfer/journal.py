"""The multipart journal: which upload holds the parts of which blob, so that a process killed in
the middle of a large upload continues it on the next attempt instead of sending every part again.

One small JSON file per upload in ``<cache>/uploads/``, written atomically. An entry is trusted only
for the same store, blob (its key is the content digest) and part size, and only if the parts were
read from a file that could not change under them: lorry's own snapshot, or the same source file with
the same stamp (size, mtime, inode). Otherwise the old upload is aborted and a new one begins.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from lorry.storage.local import FILE_MODE, make_dirs
from lorry.transfer.files import FileStamp


@dataclass(frozen=True, slots=True)
class JournalEntry:
    store: str
    key: str
    upload_id: str
    part_size: int
    stamp: FileStamp
    owned: bool
    """The source was lorry's own snapshot: its bytes are exactly the blob's, whatever its stamp."""
    created_at: float


class Journal:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.root = cache_dir / "uploads"

    def _path(self, store: str, key: str) -> Path:
        return self.root / (hashlib.sha256(f"{store}\n{key}".encode()).hexdigest()[:40] + ".json")

    def load(self, store: str, key: str) -> JournalEntry | None:
        try:
            doc = orjson.loads(self._path(store, key).read_bytes())
            entry = JournalEntry(
                store=doc["store"],
                key=doc["key"],
                upload_id=doc["upload_id"],
                part_size=int(doc["part_size"]),
                stamp=FileStamp(*doc["stamp"]),
                owned=bool(doc["owned"]),
                created_at=float(doc["created_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or damaged: start afresh
        return entry if (entry.store, entry.key) == (store, key) else None

    def save(self, entry: JournalEntry) -> None:
        make_dirs(self.root)
        path = self._path(entry.store, entry.key)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        doc = {
            "store": entry.store,
            "key": entry.key,
            "upload_id": entry.upload_id,
            "part_size": entry.part_size,
            "stamp": [entry.stamp.size, entry.stamp.mtime_ns, entry.stamp.inode],
            "owned": entry.owned,
            "created_at": entry.created_at,
        }
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(orjson.dumps(doc))
        os.replace(temp, path)

    def remove(self, store: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(store, key).unlink()
