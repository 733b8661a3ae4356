"""The Store contract: a small set of stateless object-storage calls with explicit preconditions.

Every backend (a local directory, S3, GCS, memory) implements ``Store`` and passes the same
conformance suite. Chunking, retries and parallelism live in ``lorry.transfer``, never in a backend.

Keys are ``/``-separated relative paths of printable characters without ``..`` segments.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Generic, Protocol, TypeGuard, TypeVar, cast, runtime_checkable

from lorry.errors import SourceChangedError, ValidationError


@dataclass(frozen=True, slots=True)
class Overwrite:
    """Write unconditionally."""


@dataclass(frozen=True, slots=True)
class Create:
    """Write only if the key does not exist; else ``ConflictError``."""


@dataclass(frozen=True, slots=True)
class Update:
    """Write only if the object still has this etag (compare-and-swap); else ``ConflictError``."""

    etag: str


PutMode = Overwrite | Create | Update
OVERWRITE = Overwrite()
CREATE = Create()


Body = bytes | bytearray | memoryview | BinaryIO
"""What ``put`` stores: bytes, or a binary file or stream (anything with ``read``, ``seek`` and
``tell``: an open file, ``io.BytesIO``), read from its position to its end a chunk at a time, so a
large object needs little memory. A stream must be seekable: a retry sends it again from where it
started (``RetryingStore`` seeks back), and some backends read it twice (S3's ``Content-MD5``)."""


@dataclass(frozen=True, slots=True)
class FileSpan:
    """``size`` bytes of the open file ``fd`` from ``start``, as the body of a part: the backend reads
    them where they lie, when it sends them (into its own buffer: no copy on the way), and reads them
    again for a retry. ``source`` names the file in errors. Fewer bytes than ``size`` there (the file
    shrank) fail the part with ``SourceChangedError``; the caller owns ``fd`` and keeps it open."""

    fd: int
    start: int
    size: int
    source: str

    def read_into(self, target: memoryview, at: int) -> int:
        """Fill ``target`` with the span's bytes from ``at`` (counted from the span's start), as far
        as the span goes; how many. A file that ends sooner is ``SourceChangedError``."""
        want, got = min(len(target), self.size - at), 0
        # One preadv, as a rule: it returns short of a regular file's end only when interrupted.
        while got < want and (count := os.preadv(self.fd, [target[got:want]], self.start + at + got)):
            got += count
        if got < want:
            raise SourceChangedError(f"{self.source} shrank while it was being sent")
        return got


PartBody = bytes | bytearray | FileSpan
"""What ``put_part`` stores: bytes in memory, or a span of a file the backend reads itself."""


def part_size(body: PartBody) -> int:
    return body.size if isinstance(body, FileSpan) else len(body)


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What a store says about one object. ``etag`` changes whenever the object's bytes change.

    ``modified`` is when the object was last written, as the server's clock says (timezone-aware), where
    the call that returned it reports it (listings do); garbage collection's grace period reads it.
    """

    key: str
    size: int
    etag: str
    modified: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class VersionedMeta:
    """One version of an object as its bucket describes it: what a reference records.

    Not part of the ``Store`` contract: the S3 and GCS backends answer it for objects that lorry did
    not write. ``version_id`` is the S3 ``versionId`` or the GCS generation, None when the object has
    none that can be asked for; ``md5`` and ``crc32c`` are the base64 checksums GCS reports (None on S3).
    """

    key: str
    size: int
    etag: str
    version_id: str | None = None
    md5: str | None = None
    crc32c: str | None = None


@dataclass(frozen=True, slots=True)
class VersionedBody:
    """An object's bytes being read, with what the response said about them before the first byte.

    Every field but ``chunks`` is None when the response did not say it. ``chunks`` maps failures onto
    lorry's exceptions like the rest of the backend.
    """

    key: str
    size: int | None
    etag: str | None
    version_id: str | None
    md5: str | None
    crc32c: str | None
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class Part:
    """One stored part of a multipart upload."""

    number: int
    etag: str
    size: int


@runtime_checkable
class Store(Protocol):
    """Object storage, as small as it can be and still carry versions safely."""

    @property
    def url(self) -> str:
        """Where the store lives, without credentials (``file:///...``, ``s3://bucket/prefix``)."""

    async def head(self, key: str) -> ObjectMeta:
        """Metadata of ``key``; ``ObjectNotFoundError`` if absent."""

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of ``key`` (to its end when ``end`` is None)."""

    def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Like ``get`` but in chunks, for objects too large to hold in memory."""

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        """Store ``data`` (bytes, or a stream read to its end) under ``key`` if ``mode`` allows it;
        ``ConflictError`` if it does not."""

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a key that does not exist is not an error."""

    def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        """Every object whose key starts with ``prefix``, in key order."""

    async def close(self) -> None:
        """Release connections and files."""


C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Capability(Generic[C]):
    """A fast path below the contract that a store may offer, named by the ``runtime_checkable``
    protocol that describes it: ``LOCAL_FILES.of(store)`` is the part of ``store`` that has local
    files, found through any wrappers, or None.

    Calls made through a capability bypass the wrappers, so it is for work they have nothing to add
    to (linking a local file is no request to limit or retry) or that does its own.
    """

    protocol: type

    def of(self, store: object) -> C | None:
        if _conforms(store, self.protocol):
            return cast(C, store)  # the protocol is C's: Capability[C](C)
        if _conforms(store, Wrapper):
            return cast(Wrapper, store).capability(self)
        return None


_conformance: dict[tuple[type, type], bool] = {}


def _conforms(store: object, protocol: type) -> bool:
    """``isinstance(store, protocol)``, answered once per class: a runtime-checkable protocol looks
    up each of its members on every check (0.1 ms, several per file transferred), and a store's
    members are its class's."""
    key = (type(store), protocol)
    found = _conformance.get(key)
    if found is None:
        found = _conformance[key] = isinstance(store, protocol)
    return found


@runtime_checkable
class Wrapper(Protocol):
    """A store that wraps another (limits, retries, checks) and passes its capabilities through."""

    def capability(self, kind: Capability[C]) -> C | None:
        """What the wrapped store offers of ``kind``: ``kind.of(inner)``."""


@runtime_checkable
class LocalFiles(Protocol):
    """A store whose objects are files on this machine (``LocalStore``): the transfer layer links or
    copies in the kernel instead of reading and sending, and garbage collection removes the temporary
    files that killed writers left."""

    @property
    def root(self) -> Path:
        """The store's folder."""

    def exists(self) -> bool:
        """Whether the store's folder is there (a local store is made by its first write)."""

    def path_of(self, key: str) -> Path:
        """The file that holds ``key``."""

    def temp_path(self) -> Path:
        """A fresh name on the store's filesystem, for a file ``commit_file`` will name."""

    def commit_file(self, temp: Path, key: str, mode: PutMode) -> ObjectMeta:
        """Give a finished temporary file its key's name, honouring ``mode``."""

    def put_blobs(self, blobs: Iterable[tuple[str, bytes | memoryview]]) -> None:
        """Store each content-addressed object unless it is there already (one exclusive create each),
        with what can be done once for them all done once."""

    def stale_temp_files(self, cutoff: datetime) -> list[Path]:
        """Temporary files last written before ``cutoff``."""


@runtime_checkable
class VersionedReads(Protocol):
    """Reads of any object of a bucket and of its versions (S3 ``versionId``, GCS generation): what a
    reference records and downloads. ``raw`` takes the key verbatim (a bucket's own names may hold
    segments that the store's keys may not)."""

    async def head_version(
        self, key: str, version: str | None = None, /, *, raw: bool = False
    ) -> VersionedMeta: ...

    def open_version(
        self, key: str, version: str | None = None, /, *, raw: bool = False
    ) -> AbstractAsyncContextManager[VersionedBody]: ...

    def list_latest(self, prefix: str) -> AsyncIterator[VersionedMeta]: ...


@runtime_checkable
class FileGets(Protocol):
    """A store that writes a whole object into a local file itself (S3: awscrt's parallel ranged GETs,
    in C): each byte lands in the file once, with no Python per chunk. The retrying wrapper passes it on
    with its retries."""

    async def get_file(self, key: str, path: Path) -> int:
        """Write the object ``key`` into ``path`` (replacing what is there); return its size. A file
        that cannot be written is an ``OSError``."""


LOCAL_FILES: Capability[LocalFiles] = Capability(LocalFiles)
FILE_GETS: Capability[FileGets] = Capability(FileGets)
VERSIONED_READS: Capability[VersionedReads] = Capability(VersionedReads)


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload that was created and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime


@runtime_checkable
class MultipartStore(Store, Protocol):
    """A store that takes large objects in parts (S3 multipart, GCS resumable or compose).

    Part numbers start at 1. ``complete_multipart`` honours ``mode`` where the server does; the
    transfer layer checks the result where it does not.
    """

    async def create_multipart(self, key: str) -> str:
        """Start an upload and return its id."""

    async def put_part(self, key: str, upload_id: str, number: int, data: PartBody) -> Part:
        """Store one part; storing the same number again replaces it."""

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[Part], mode: PutMode = OVERWRITE
    ) -> ObjectMeta:
        """Join ``parts`` (in number order) into the object ``key``."""

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop the upload and its parts; aborting an unknown upload is not an error."""

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """The parts stored so far, in number order (to resume an interrupted upload)."""

    def list_multipart(self, prefix: str) -> AsyncIterator[Upload]:
        """Uploads under ``prefix`` that are still open (for garbage collection)."""


def check_key(key: str) -> str:
    """Refuse keys that could name something outside the store's root."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValidationError(f"invalid store key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValidationError(f"invalid store key {key!r}")
    return key


# -- bodies: what every backend needs to send a stream --------------------------------------------------

STREAM_READ = 8 << 20
"""Bytes read from a stream at a time (a multiple of 256 KiB, as GCS's resumable uploads need)."""


def is_stream(body: Body) -> TypeGuard[BinaryIO]:
    """Whether ``body`` is a stream to read rather than bytes in memory."""
    return not isinstance(body, bytes | bytearray | memoryview)


def remaining(stream: BinaryIO) -> int:
    """Bytes from the stream's position to its end; the position is left where it was."""
    if not stream.seekable():
        raise ValidationError(f"{stream!r} cannot seek: put takes bytes or a seekable file or stream")
    start = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(start)
    return max(0, end - start)


def body_size(body: Body) -> int:
    """How many bytes ``put`` would store."""
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    return remaining(body)


def read_chunk(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the stream (``read`` may return short)."""
    chunk = stream.read(size)
    if len(chunk) == size or not chunk:
        return chunk
    parts = [chunk]
    got = len(chunk)
    while got < size and (more := stream.read(size - got)):
        parts.append(more)
        got += len(more)
    return b"".join(parts)


async def stream_chunks(stream: BinaryIO, size: int, chunk: int = STREAM_READ) -> AsyncIterator[bytes]:
    """The next ``size`` bytes of ``stream`` in chunks, each read in a thread; a stream that ends
    early is a ``ValidationError`` (the object would be stored short)."""
    left = size
    while left > 0:
        data = await asyncio.to_thread(read_chunk, stream, min(chunk, left))
        if not data:
            raise ValidationError(f"{stream!r} ended {left} bytes short of the {size} it held")
        left -= len(data)
        yield data


async def read_whole(body: Body) -> bytes | bytearray | memoryview:
    """``body``'s bytes in memory (a stream read to its end): for bodies known to be small."""
    if isinstance(body, bytes | bytearray | memoryview):
        return body
    return b"".join([chunk async for chunk in stream_chunks(body, remaining(body))])
