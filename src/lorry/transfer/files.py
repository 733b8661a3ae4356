"""Blocking file work, run on the engine's thread pool: hashing, verified copies, safe targets.

Every function here either finishes its file completely or leaves nothing under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorry.errors import IntegrityError, InvalidPathError, LocalFileError, SourceChangedError
from lorry.model.digest import format_digest, new_hasher
from lorry.storage.local import write_all

LocalPath = str | Path
CHUNK = 8 << 20
FILE_MODE = 0o600
"""lorry's own files (store, cache, staging): readable by their owner only, whatever the umask."""
DOWNLOAD_MODE = 0o666
"""Downloaded files are the user's: their umask decides, as for any file they create."""


def owner_only(path: str, flags: int) -> int:
    """An opener for ``open()``: the file is created readable by its owner only, whatever the umask,
    from its first byte on."""
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What identifies one content of a local file cheaply: a write changes at least one of these."""

    size: int
    mtime_ns: int
    inode: int

    def __reduce__(self) -> tuple[type[FileStamp], tuple[int, int, int]]:
        return FileStamp, (self.size, self.mtime_ns, self.inode)  # see FileSource.__reduce__

    @classmethod
    def of(cls, path: LocalPath) -> FileStamp:
        return cls.of_stat(os.stat(path))

    @classmethod
    def of_fd(cls, fd: int) -> FileStamp:
        return cls.of_stat(os.fstat(fd))

    @classmethod
    def of_stat(cls, st: os.stat_result) -> FileStamp:
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


def check_unchanged(path: LocalPath, stamp: FileStamp, entry: str) -> None:
    try:
        now = FileStamp.of(path)
    except FileNotFoundError:
        raise SourceChangedError(f"{path} (entry {entry!r}) was removed after it was added") from None
    check_stamp(now, stamp, path, entry)


def check_stamp(now: FileStamp, stamp: FileStamp, path: LocalPath, entry: str) -> None:
    if now != stamp:
        raise SourceChangedError(
            f"{path} (entry {entry!r}) changed after it was added with policy='immutable'; "
            "the version that holds it was not committed"
        )


def hash_file(path: LocalPath) -> str:
    """The content digest of a file, read once in chunks. (Not mmap: mapped pages count towards the
    process's resident memory, and a 2 GiB file would show as 2 GiB of RSS.)"""
    hasher = new_hasher()
    try:
        with open(path, "rb", buffering=0) as handle:
            buffer = _buffer_for(handle.fileno())
            view = memoryview(buffer)
            while count := handle.readinto(buffer):
                hasher.update(view[:count])
    except OSError as exc:
        raise local_error(exc, f"cannot read {path}") from exc
    return format_digest(hasher.hexdigest())


def _buffer_for(fd: int) -> bytearray:
    """A read buffer no larger than the file needs (one byte more, so that a second read sees its
    end): a 4 KiB file must not pay for zeroing an 8 MiB buffer, which cost more than the file's I/O."""
    return bytearray(min(CHUNK, os.fstat(fd).st_size + 1))


def read_checked(path: LocalPath, stamp: FileStamp, entry: str) -> bytes:
    """The whole content of a file that must still be as ``stamp`` saw it, before and after the read
    (checked on the open descriptor: no second lookup of the path)."""
    try:
        with open(path, "rb", buffering=0) as handle:
            check_stamp(FileStamp.of_fd(handle.fileno()), stamp, path, entry)
            data = handle.read(stamp.size + 1)
            check_stamp(FileStamp.of_fd(handle.fileno()), stamp, path, entry)
    except FileNotFoundError:
        raise SourceChangedError(f"{path} (entry {entry!r}) was removed after it was added") from None
    except OSError as exc:
        raise local_error(exc, f"cannot read {path}") from exc
    if len(data) != stamp.size:
        raise SourceChangedError(f"{path} (entry {entry!r}) changed while it was being logged")
    return data


PACK_BYTES = 1 << 30
"""A pack of snapshots is closed and a new one begun past this size: no single staging file grows
without bound."""


class Packs:
    """Snapshots of small files appended one after another to a few pack files (owner-only, like
    every staged file), each named by ``new_name``: a snapshot costs a copy into an open file,
    not a file of its own to create, then link or read, then remove. A pack is removed with the
    staging folder it is in; bytes of an entry removed from the draft just stay until then."""

    def __init__(self, new_name: Callable[[], str]) -> None:
        self._new_name = new_name
        self._pack: io.FileIO | None = None
        self._path = ""
        self._end = 0

    def append(self, src: int, size: int) -> tuple[str, int, int]:
        """Copy the first ``size`` bytes of the open file ``src`` (fewer if it is shorter now) to the
        end of a pack; return the pack's path, where the copy starts in it and its length."""
        if self._pack is None or self._end + size > PACK_BYTES:
            self.close()
            self._path = self._new_name()
            self._pack = open(self._path, "xb", buffering=0, opener=owner_only)  # noqa: SIM115 (kept open)
            self._end = 0
        pack, start = self._pack.fileno(), self._end
        try:
            length = copy_all(src, pack, size)
        except BaseException:
            if start == 0:  # nothing else in it: no empty pack is left behind
                self.close()
                discard(Path(self._path))
            else:
                with contextlib.suppress(OSError):  # the pack ends where the last whole snapshot ends
                    os.ftruncate(pack, start)
                    os.lseek(pack, start, os.SEEK_SET)
            raise
        self._end += length
        return self._path, start, length

    def close(self) -> None:
        """Close the pack being written (what was copied is in it: its writes are unbuffered)."""
        if self._pack is not None:
            self._pack.close()
            self._pack = None


def copy_all(src: int, dst: int, size: int) -> int:
    """Copy the ``size`` bytes seen in the kernel (a snapshot is the file as it was when looked at),
    fewer if the file is shorter now; return how many were copied."""
    copied = 0
    while copied < size and (sent := os.sendfile(dst, src, None, size - copied)):
        copied += sent
    return copied


def temp_beside(target: Path) -> Path:
    """A hidden temporary name in ``target``'s folder, so the final rename stays on one filesystem."""
    return target.parent / f".{target.name[:64]}.{uuid.uuid4().hex[:12]}.lorry-tmp"


def copy_hashing(source: LocalPath, temp: Path, mode: int = FILE_MODE) -> str:
    """Copy ``source`` to the new file ``temp`` and return the digest of the bytes written."""
    hasher = new_hasher()
    try:
        with open(source, "rb", buffering=0) as src:
            buffer = _buffer_for(src.fileno())
            view = memoryview(buffer)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with open(fd, "wb", buffering=0) as dst:
                while count := src.readinto(buffer):
                    chunk = view[:count]
                    hasher.update(chunk)
                    write_all(dst.fileno(), chunk)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return format_digest(hasher.hexdigest())


class TempNames:
    """Temporary names like ``temp_beside``'s, made from one random token and a count: a name per
    file without a call to the system's random source per file."""

    def __init__(self) -> None:
        self._token = uuid.uuid4().hex[:8]
        self._count = itertools.count()

    def beside(self, target: str) -> str:
        folder, _, name = target.rpartition("/")
        return f"{folder}/.{name[:64]}.{self._token}{next(self._count):x}.lorry-tmp"


def write_new(
    target: LocalPath,
    data: bytes,
    *,
    atomic: bool = True,
    mode: int = FILE_MODE,
    temp: LocalPath | None = None,
) -> None:
    """Write ``data`` as ``target``, through a temporary name beside it (``temp`` if given) unless
    ``atomic`` is False (for a path that is itself a fresh temporary name)."""
    if not atomic:
        temp = target
    elif temp is None:
        temp = temp_beside(Path(target))
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        discard(temp)
        raise local_error(exc, f"cannot write {target}") from exc
    if atomic:
        give_name(temp, target)


def install_verified(source: Path, target: Path, digest: str, what: str) -> None:
    """Copy ``source`` to ``target`` through a temporary file, checking ``digest`` before the rename."""
    temp = temp_beside(target)
    try:
        actual = copy_hashing(source, temp, DOWNLOAD_MODE)
    except OSError as exc:
        raise local_error(exc, f"cannot write {target}") from exc
    if actual != digest:
        temp.unlink()
        raise IntegrityError(f"{what} does not match its digest (expected {digest}, got {actual})")
    give_name(temp, target)


def give_name(temp: LocalPath, target: LocalPath) -> None:
    """Rename a finished temporary file to its final name; if that fails, the temporary file goes too
    and the error names the target (not the temporary name, which the user never chose)."""
    try:
        os.replace(temp, target)
    except OSError as exc:
        discard(temp)
        raise local_error(exc, f"cannot write {target}") from exc


def matches(path: Path, size: int | None, digest: str | None) -> bool:
    """Whether ``path`` already holds exactly this content (a cheap size check first)."""
    try:
        if not path.is_file() or path.is_symlink() or (size is not None and path.stat().st_size != size):
            return False
    except OSError:
        return False
    return digest is not None and hash_file(path) == digest


def refuse_folder(target: Path, entry_path: str) -> Path:
    """``target``, unless a folder stands there: then an error naming the entry and the folder."""
    if target.is_dir():  # a symlink was refused already (``Targets.target``)
        raise LocalFileError(f"cannot download entry {entry_path!r}: {target} is a folder")
    return target


class Targets:
    """Safe targets below one ``root`` for a batch of entries: the real paths of the root and of each
    folder are looked up once per batch, not once per entry (entries of a batch share folders)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root = os.path.realpath(root)
        self._inside: dict[str, bool] = {}  # folder → whether it really lies below the root
        self._made: set[str] = set()

    def target(self, entry_path: str) -> Path:
        target = Path(self.root, entry_path)
        parent = str(target.parent)
        inside = self._inside.get(parent)
        if inside is None:
            real_parent = os.path.realpath(parent)
            inside = os.path.commonpath([self._real_root, real_parent]) == self._real_root
            self._inside[parent] = inside
        if not inside:
            raise InvalidPathError(f"entry {entry_path!r} would be written outside {self.root}")
        if target.is_symlink():
            raise InvalidPathError(f"entry {entry_path!r} would be written through the symlink {target}")
        return target

    def look(self, entry_path: str) -> tuple[str, os.stat_result | None]:
        """``target``'s checks, and what stands there now (``None``: nothing), in one ``lstat``."""
        target = f"{self.root}/{entry_path}"
        parent = target.rpartition("/")[0]
        inside = self._inside.get(parent)
        if inside is None:
            return str(self.target(entry_path)), _lstat(target)
        if not inside:
            raise InvalidPathError(f"entry {entry_path!r} would be written outside {self.root}")
        standing = _lstat(target)
        if standing is not None and stat.S_ISLNK(standing.st_mode):
            raise InvalidPathError(f"entry {entry_path!r} would be written through the symlink {target}")
        return target, standing

    def make_parents(self, target: LocalPath) -> None:
        parent = os.path.dirname(target)
        if parent in self._made:
            return
        try:
            os.makedirs(parent, exist_ok=True)
        except FileExistsError as exc:
            raise LocalFileError(
                f"cannot create the folder for {target}: a file stands in its place under {self.root}"
            ) from exc
        except OSError as exc:
            raise local_error(exc, f"cannot create the folder {parent}") from exc
        self._made.add(parent)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def discard(path: LocalPath) -> None:
    """Remove a temporary file, if it is still there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def local_error(exc: OSError, action: str) -> LocalFileError:
    """An ``OSError`` as one clear line: what lorry was doing and why it failed."""
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "the filesystem is read-only",
        errno.ENOENT: "no such file or directory",
        errno.EISDIR: "it is a directory",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    error = LocalFileError(f"{action}: {reason}")
    error.errno = exc.errno
    return error
