"""A store in a local directory: the embedded default.

Writes go to a temporary file that is then given its key's name in one atomic step, so a reader never
sees half an object. The preconditions that make the registry safe map onto the filesystem:

- ``Create``: ``link(2)`` of the finished temporary file, which fails if the name exists;
- ``Update(etag)``: under an exclusive ``flock`` on the key's lock file, compare then ``rename(2)``;
- ``Overwrite``: ``rename(2)``.

Both hold across processes on one machine (and on any filesystem with POSIX locks). Files are created
readable by their owner only, whatever the umask.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from lorry.errors import ConflictError, ObjectNotFoundError, StoreError, ValidationError
from lorry.storage.base import (
    OVERWRITE,
    Body,
    Create,
    ObjectMeta,
    PutMode,
    Update,
    body_size,
    check_key,
    read_chunk,
)

_INTERNAL = ".lorry"
FILE_MODE = 0o600
DIR_MODE = 0o700
READ_CHUNK = 4 << 20


def etag_of(st: os.stat_result) -> str:
    # A write always lands as a new inode (rename or link of a fresh temporary file), so the inode and
    # change time together identify one content of the key.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with owner-only permissions on every directory it creates."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
            os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask


class LocalStore:
    """``Store`` over a directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {self.root} exists and is not a directory")
        # Nothing is created until the first write: reading a mistyped path must not make a store there.
        self._made: set[str] = set()

    def _internal(self, name: str) -> Path:
        """The store's own folder ``name`` (tmp, locks), made with the store on first write."""
        folder = self.root / _INTERNAL / name
        if name not in self._made:  # looked at once per store object, not on every write
            try:
                make_dirs(folder)
            except OSError as exc:
                raise StoreError(f"cannot create the store at {self.root}: {exc.strerror}") from exc
            self._made.add(name)
        return folder

    def exists(self) -> bool:
        """Whether anything was ever written here (reading a store that does not exist finds it empty)."""
        return self.root.is_dir()

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- the Store contract -------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectMeta:
        return await asyncio.to_thread(self.head_sync, key)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return await asyncio.to_thread(self._get_sync, key, start, end)

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self._open, key)
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        return await asyncio.to_thread(self.put_sync, key, data, mode)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete_sync, key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        for meta in await asyncio.to_thread(lambda: list(self._walk(prefix))):
            yield meta

    async def close(self) -> None:
        return None

    # -- local fast paths, used by the transfer layer when the store is a directory ---------------

    def path_of(self, key: str) -> Path:
        return self.root / check_key(key)

    def temp_path(self) -> Path:
        """A fresh name in the store's own temporary folder (same filesystem, so renames are atomic)."""
        return self._internal("tmp") / uuid.uuid4().hex

    def stale_temp_files(self, cutoff: datetime) -> builtins.list[Path]:
        """Temporary files last written before ``cutoff``: what killed writers left behind."""
        folder = self.root / _INTERNAL / "tmp"
        found: builtins.list[Path] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                with contextlib.suppress(FileNotFoundError):
                    if _modified(entry.stat(follow_symlinks=False)) < cutoff:
                        found.append(Path(entry.path))
        return found

    def commit_file(self, temp: Path, key: str, mode: PutMode) -> ObjectMeta:
        """Give a finished temporary file its key's name, honouring ``mode``; the temp file is consumed."""
        target = self.path_of(key)
        try:
            os.chmod(temp, FILE_MODE)
            make_dirs(target.parent)
            if isinstance(mode, Create):
                try:
                    os.link(temp, target)
                except FileExistsError as exc:
                    raise ConflictError(f"{key} already exists") from exc
            elif isinstance(mode, Update):
                with self._locked(key):
                    try:
                        current = self._stat(key)
                    except ObjectNotFoundError:
                        raise ConflictError(f"{key} was removed since it was read") from None
                    if etag_of(current) != mode.etag:
                        raise ConflictError(f"{key} changed since it was read")
                    os.replace(temp, target)
            else:
                with self._locked(key):
                    os.replace(temp, target)
            return ObjectMeta(key=key, size=target.stat().st_size, etag=etag_of(target.stat()))
        except OSError as exc:
            raise StoreError(f"cannot write {key} in {self.root}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def put_blobs(self, blobs: Iterable[tuple[str, bytes | memoryview]]) -> None:
        """Store each content-addressed object (same key, same bytes: a blob or a manifest) unless it is
        there already: per object an exclusive create, a write and a close, nothing more (the umask is
        looked at once for them all; folders are made when a create finds one missing), and no
        temporary file to create, link and remove (which cost more than the write). A process killed
        mid-write can leave an object short, never different: the size says whether it is complete, and
        a short one is replaced whole, through a temporary file, by the next writer."""
        root = str(self.root)
        fix_mode = _umask_drops_owner_bits()
        for key, data in blobs:
            path = f"{root}/{check_key(key)}"
            try:  # no look first: a new blob is the common case, and the exclusive create is the check
                fd = _create_exclusive(path, fix_mode)
            except FileExistsError:  # stored already, or by another writer: complete, or not yet
                if not _complete(os.stat(path), len(data)):
                    self.put_sync(key, data, OVERWRITE)
                continue
            try:
                write_all(fd, data)
            except OSError as exc:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                raise StoreError(f"cannot write {key} in {self.root}: {exc.strerror or exc}") from exc
            finally:
                os.close(fd)

    def head_sync(self, key: str) -> ObjectMeta:
        st = self._stat(key)
        return ObjectMeta(key=key, size=st.st_size, etag=etag_of(st))

    def put_sync(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        size = body_size(data)  # refuses a stream that cannot seek, as every backend does
        temp = self.temp_path()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, bytes | bytearray | memoryview):
                    handle.write(data)
                else:  # a stream, a chunk at a time
                    while size > 0 and (chunk := read_chunk(data, min(READ_CHUNK, size))):
                        handle.write(chunk)
                        size -= len(chunk)
                    if size:
                        raise ValidationError(f"{data!r} ended {size} bytes short of what it held")
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise StoreError(f"cannot write {key} in {self.root}: {exc.strerror or exc}") from exc
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        return self.commit_file(temp, key, mode)

    # -- helpers ------------------------------------------------------------------------------------

    def _stat(self, key: str) -> os.stat_result:
        try:
            st = self.path_of(key).stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(f"{key} not found in {self.url}") from exc
        if not os.path.isfile(self.path_of(key)):
            raise ObjectNotFoundError(f"{key} not found in {self.url}")
        return st

    def _open(self, key: str) -> BinaryIO:
        try:
            return self.path_of(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(f"{key} not found in {self.url}") from exc

    def _get_sync(self, key: str, start: int, end: int | None) -> bytes:
        try:
            with self.path_of(key).open("rb") as handle:
                handle.seek(start)
                return handle.read() if end is None else handle.read(max(0, end - start))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(f"{key} not found in {self.url}") from exc

    def _delete_sync(self, key: str) -> None:
        with self._locked(key), contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self.path_of(key).unlink()

    def _walk(self, prefix: str) -> Iterator[ObjectMeta]:
        base = prefix.rpartition("/")[0]
        top = self.root / base if base else self.root
        found: list[ObjectMeta] = []
        for dirpath, dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel + "/"
            if rel == "":
                dirnames[:] = [d for d in dirnames if d != _INTERNAL]
            for filename in filenames:
                key = rel + filename
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(os.path.join(dirpath, filename))
                        found.append(ObjectMeta(key, *_size_etag(st), modified=_modified(st)))
        found.sort(key=lambda m: m.key)
        return iter(found)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        # A fixed set of lock stripes: bounded files, and unrelated keys rarely share one.
        name = hashlib.sha256(key.encode()).hexdigest()[:2]
        fd = os.open(self._internal("locks") / name, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _complete(st: os.stat_result, size: int) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def _create_exclusive(path: str, fix_mode: bool) -> int:
    """Open a new file at ``path`` (its folder made if need be), owner-only whatever the umask (which
    can only take bits away from ``FILE_MODE``: they are put back only if it took the owner's)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileNotFoundError:
        make_dirs(Path(path).parent)
        fd = os.open(path, flags, FILE_MODE)
    if fix_mode:
        os.fchmod(fd, FILE_MODE)
    return fd


def _umask_drops_owner_bits() -> bool:
    """Whether the process's umask takes away a bit of ``FILE_MODE`` (read without changing it, which
    ``os.umask`` cannot do: from /proc, or assumed so where that is not there)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8) & FILE_MODE != 0
    except (OSError, ValueError):
        pass
    return True


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``write(2)`` until every byte is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _size_etag(st: os.stat_result) -> tuple[int, str]:
    return st.st_size, etag_of(st)


def _modified(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, UTC)
