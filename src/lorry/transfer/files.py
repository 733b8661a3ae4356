"""Blocking file work, run on the engine's thread pool: hashing, verified copies, safe targets.

Every function here either finishes its file completely or leaves nothing under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import io
import itertools
import mmap
import os
import stat
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from blake3 import blake3

from lorry.errors import IntegrityError, InvalidPathError, LocalFileError, SourceChangedError
from lorry.model.digest import ALL_CORES, format_digest, new_hasher
from lorry.storage.local import write_all
from lorry.transfer.plan import SMALL_OBJECT

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
    try:
        with open(path, "rb", buffering=0) as handle:
            return hash_fd(handle.fileno())
    except OSError as exc:
        raise local_error(exc, f"cannot read {path}") from exc


def _buffer_for(fd: int) -> bytearray:
    """A read buffer no larger than the file needs (one byte more, so that a second read sees its
    end): a 4 KiB file must not pay for zeroing an 8 MiB buffer, which cost more than the file's I/O."""
    return bytearray(min(CHUNK, os.fstat(fd).st_size + 1))


def read_checked(
    path: LocalPath, stamp: FileStamp, entry: str, into: memoryview | None = None
) -> bytes | memoryview:
    """The whole content of a file that must still be as ``stamp`` saw it, before and after the read
    (checked on the open descriptor: no second lookup of the path); read into ``into`` (at least one
    byte longer than the file) if given, and then a view of it."""
    try:
        with open(path, "rb", buffering=0) as handle:
            check_stamp(FileStamp.of_fd(handle.fileno()), stamp, path, entry)
            # One byte more than the stamp's size, to see a file that grew.
            data = handle.read(stamp.size + 1) if into is None else _read_into(handle, into[: stamp.size + 1])
            check_stamp(FileStamp.of_fd(handle.fileno()), stamp, path, entry)
    except FileNotFoundError:
        raise SourceChangedError(f"{path} (entry {entry!r}) was removed after it was added") from None
    except OSError as exc:
        raise local_error(exc, f"cannot read {path}") from exc
    if len(data) != stamp.size:
        raise SourceChangedError(f"{path} (entry {entry!r}) changed while it was being logged")
    return data


def _read_into(handle: io.FileIO, view: memoryview) -> memoryview:
    """``view`` filled from ``handle`` as far as the file goes: the part read."""
    done = 0
    while done < len(view) and (count := handle.readinto(view[done:])):
        done += count
    return view[:done]


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
    fewer if the file is shorter now, from and to the files' current positions; return how many were
    copied. ``copy_file_range`` where the kernel can (it shares extents on XFS and btrfs, and copies
    inside the filesystem elsewhere), ``sendfile`` between filesystems that cannot."""
    copied = 0
    kernel_range = True
    while copied < size:
        if kernel_range:
            try:
                sent = os.copy_file_range(src, dst, size - copied)
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE:
                    raise
                kernel_range = False
                continue
        else:
            sent = os.sendfile(dst, src, None, size - copied)
        if not sent:
            break
        copied += sent
    return copied


_NO_COPY_RANGE = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF)
"""How ``copy_file_range`` says it cannot copy between these two files (another filesystem, a kind of
file it does not handle): ``sendfile`` can."""

FICLONE = 0x40049409
"""The Linux ioctl that makes a file share another's extents (XFS with reflink, btrfs): a copy that
costs no bytes until either is written (``fcntl.FICLONE`` from Python 3.12 on)."""


def clone(src: int, dst: int) -> bool:
    """Make the empty file ``dst`` share all of ``src``'s extents (a reflink); False where the
    filesystem cannot (or the two are on different filesystems)."""
    try:
        fcntl.ioctl(dst, FICLONE, src)
    except OSError:
        return False
    return True


def clone_or_copy(src: int, dst: int, size: int) -> None:
    """Make the empty file ``dst`` a copy of the whole file ``src`` of ``size`` bytes: a reflink where
    the filesystem shares extents, else a copy in the kernel."""
    if not clone(src, dst):
        copy_all(src, dst, size)


HASH_ALONGSIDE = 64 << 20
"""From this size on, a copy is hashed in a thread of its own a window behind the kernel's copy, so the
copy costs the longer of the two, not their sum; below it, the files copied at the same time keep both
cores busy."""
HASH_WINDOW = 32 << 20
"""How much of a copy is mapped at once to be hashed: mapped pages count towards the process's
resident memory while they are mapped."""


def hash_fd(fd: int, threads: int = 1) -> str:
    """The digest of the open file ``fd``, read from its start (``pread``: its position is left to a
    copy that may be using it at the same time), by up to ``threads`` threads. (Read, not mapped: a
    file that is not lorry's own could be cut short by its owner while mapped, and reading past its
    end would kill the process.)"""
    hasher = new_hasher(threads)
    buffer = _buffer_for(fd)
    view = memoryview(buffer)
    offset = 0
    while count := os.preadv(fd, [buffer], offset):
        hasher.update(view[:count])
        offset += count
    return format_digest(hasher.hexdigest())


def _hash_mapped(hasher: blake3, fd: int, start: int, length: int) -> None:
    """Hash ``length`` bytes of the file ``fd`` from ``start`` (a multiple of the page size) where they
    lie in the page cache: mapped, not copied out."""
    with mmap.mmap(fd, length, offset=start, access=mmap.ACCESS_READ) as mapped:
        hasher.update(mapped)


def copy_fd_hashing(src: int, dst: int) -> str:
    """Copy the whole open file ``src`` into the empty file ``dst`` (open for reading too: lorry's own
    new file) and return the digest of what ``dst`` holds: each byte copied once by the kernel and
    hashed where the copy put it. A reflink copies no byte: the source is hashed then, on every core.
    A source that changes meanwhile can leave a mixed copy: callers that cannot rule that out compare
    the source's stamps before and after."""
    size = os.fstat(src).st_size
    if size <= SMALL_OBJECT:  # one read and one write: less than a kernel copy and a hash's read
        hasher = new_hasher()
        buffer = _buffer_for(src)
        view = memoryview(buffer)
        while count := os.readv(src, [buffer]):
            hasher.update(view[:count])
            write_all(dst, view[:count])
        return format_digest(hasher.hexdigest())
    if clone(src, dst):
        return hash_fd(src, threads=ALL_CORES)
    hasher = new_hasher()
    if size < HASH_ALONGSIDE:
        _copy_windows(src, dst, size, functools.partial(_hash_mapped, hasher, dst))
        return format_digest(hasher.hexdigest())
    with ThreadPoolExecutor(1, thread_name_prefix="lorry-hash") as alongside:
        hashed: list[Future[None]] = []  # one worker: windows are hashed in the order they were copied
        _copy_windows(src, dst, size, lambda start, length: hashed.append(
            alongside.submit(_hash_mapped, hasher, dst, start, length)
        ))  # fmt: skip
        for window in hashed:
            window.result()
    return format_digest(hasher.hexdigest())


def _copy_windows(src: int, dst: int, size: int, then: Callable[[int, int], None]) -> None:
    """Copy ``size`` bytes a window at a time, calling ``then(start, length)`` after each window."""
    start = 0
    while start < size:
        wanted = min(HASH_WINDOW, size - start)
        copied = copy_all(src, dst, wanted)
        if copied:
            then(start, copied)
        start += copied
        if copied < wanted:
            break  # the source is shorter than it was: its stamp tells the caller


def temp_beside(target: Path) -> Path:
    """A hidden temporary name in ``target``'s folder, so the final rename stays on one filesystem."""
    return target.parent / f".{target.name[:64]}.{uuid.uuid4().hex[:12]}.lorry-tmp"


def copy_hashing(source: LocalPath, temp: Path, mode: int = FILE_MODE) -> str:
    """Copy ``source`` to the new file ``temp`` and return the digest of the copy (see
    ``copy_fd_hashing``)."""
    try:
        with open(source, "rb", buffering=0) as src:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
            try:
                return copy_fd_hashing(src.fileno(), fd)
            finally:
                os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


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
    """Write ``data`` as ``target``: the whole file appears at once, or nothing does, unless ``atomic``
    is False (for a path that is itself a fresh temporary name).

    The file is written unnamed (``O_TMPFILE``) and linked in under its name when complete: one entry
    made in the folder, where a temporary name costs three (create it, add the target, remove it) and
    took twice the system time per small file on ext4; a process killed meanwhile leaves nothing. Where
    the target exists already, or the filesystem has no unnamed files, it goes through a temporary
    name beside it (``temp`` if given) and a rename."""
    if atomic and _write_unnamed(target, data, mode, temp):
        return
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


_NO_UNNAMED = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV})
"""What ``open(O_TMPFILE)`` or the link through ``/proc`` fails with where they are not to be had
(an older kernel or a filesystem without unnamed files, no ``/proc``): the named way works there."""


def _write_unnamed(target: LocalPath, data: bytes, mode: int, temp: LocalPath | None) -> bool:
    """``write_new`` through an unnamed file; False where that cannot be done here (nothing is left)."""
    proc = _proc_fds()
    if proc is None:
        return False
    folder, _, _ = str(target).rpartition("/")
    try:
        fd = os.open(folder or ".", os.O_WRONLY | os.O_TMPFILE, mode)
    except OSError as exc:
        if exc.errno in _NO_UNNAMED:
            return False
        raise local_error(exc, f"cannot write {target}") from exc
    named: LocalPath | None = None
    try:
        write_all(fd, data)
        try:
            os.link(str(fd), target, src_dir_fd=proc, follow_symlinks=True)
        except FileExistsError:  # replaced whole: linked in under a temporary name, renamed over it
            named = temp if temp is not None else temp_beside(Path(target))
            os.link(str(fd), named, src_dir_fd=proc, follow_symlinks=True)
    except OSError as exc:
        if exc.errno in _NO_UNNAMED:
            return False
        raise local_error(exc, f"cannot write {target}") from exc
    finally:
        os.close(fd)
    if named is not None:
        give_name(named, target)
    return True


_proc_lock = threading.Lock()
_proc: tuple[int, int | None] | None = None


def _proc_fds() -> int | None:
    """This process's ``/proc/self/fd``, opened once per process (a forked child opens its own: the
    folder is the opener's), or None without ``/proc``."""
    global _proc  # noqa: PLW0603
    pid = os.getpid()
    with _proc_lock:
        if _proc is None or _proc[0] != pid:
            try:
                found: int | None = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                found = None
            _proc = (pid, found)
        return _proc[1]


def _forget_proc_after_fork() -> None:
    # A lock another thread held at the fork stays held in the child; the parent's folder is not ours.
    global _proc_lock, _proc
    if _proc is not None and _proc[1] is not None:
        with contextlib.suppress(OSError):
            os.close(_proc[1])
    _proc_lock, _proc = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_proc_after_fork)


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
    """Safe targets below one ``root`` for the entries of a download: the real paths of the root and of
    each folder are looked up once, not once per entry (entries share folders), and ``temps`` names
    their temporary files. Shared by the threads of one download."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.temps = TempNames()
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
