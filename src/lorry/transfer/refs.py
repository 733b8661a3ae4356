"""References: entries that point at a URI instead of holding content.

A reference records what identifies the source's content (a digest, an ETag, a version id), never the
content itself. Downloading fetches from the source and checks that identity again, so a source that
changed is an error naming the entry.

Schemes, and what a reference records when ``checksum=True``:

- ``file://``: the file's blake3 digest and size; a folder adds every file below it.
- ``http(s)://``: the ``ETag`` and ``Content-Length`` of a ``HEAD`` (or, where ``HEAD`` is refused, of a
  ``GET`` whose body is never read). A server that sends neither gets a warning and the URI alone.
- ``s3://bucket/key``: the ETag, size and, in a versioned bucket, the ``versionId``, which is then
  what a download asks for, so the recorded version still downloads after the key was overwritten.
- ``gs://bucket/name``: the MD5 (or CRC32C for composite objects), size and generation.

An ``s3://`` or ``gs://`` URI that is not an object is a prefix: every object under ``prefix/`` becomes
an entry named relative to the prefix (below ``name`` when one is given), up to ``max_objects``.
With ``checksum=False`` the URI is recorded as one entry and nothing is contacted.

``resolve`` and ``fetch`` run on the engine's loop, with the options of the settings the engine was
given for the call (``Engine.with_settings``). A fetch streams into a temporary file beside its target
and renames it only once verified, so no partial or unverified file ever stands under a final name.

Remote sources are reached with the settings' TLS trust (``StoreOptions.for_references``: the CA bundle,
or verification off, but none of the store's encryption settings, which belong to its own objects).
A reference records URIs, checksums and versions, never bytes. URIs are shown in messages and logs
through ``redact_uri``, so a signed URL's signature never appears there.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import posixpath
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import unquote, urlsplit

from lorry.errors import (
    IntegrityError,
    LocalFileError,
    ObjectNotFoundError,
    StoreError,
    TransientError,
    ValidationError,
)
from lorry.model.manifest import Entry, normalize_entry_path
from lorry.model.secret import redact_text, redact_uri
from lorry.storage.base import VERSIONED_READS, VersionedMeta, VersionedReads
from lorry.storage.failures import no_answer, retry_after, transient_status
from lorry.storage.options import StoreOptions
from lorry.storage.tls import aiohttp_ssl, endpoint_of, tls_error, warn_unverified
from lorry.transfer.engine import Engine
from lorry.transfer.files import (
    DOWNLOAD_MODE,
    copy_hashing,
    discard,
    give_name,
    hash_file,
    local_error,
    temp_beside,
)
from lorry.transfer.retry import RetryPolicy

if TYPE_CHECKING:
    import aiohttp

DEFAULT_MAX_OBJECTS = 10_000
RESOLVE_DEADLINE = 10.0
"""Seconds that looking up a reference (in ``add_reference``, in the caller's thread) is retried."""
STREAM_CHUNK = 1 << 20
REMOTE_SCHEMES = ("http", "https", "s3", "gs")

log = logging.getLogger("lorry")


async def resolve(
    engine: Engine, uri: str, name: str | None, checksum: bool, max_objects: int | None
) -> list[Entry]:
    """The entries a reference to ``uri`` stands for (one, or one per object under a prefix)."""
    scheme = urlsplit(uri).scheme.lower()
    limit = max_objects or DEFAULT_MAX_OBJECTS
    if scheme == "file":
        return await engine.in_thread(_resolve_file, uri, name, checksum, limit)
    if scheme not in REMOTE_SCHEMES:
        raise ValidationError(
            f"cannot add a reference to {redact_uri(uri)!r}: unsupported scheme {scheme or '(none)'!r}"
        )
    entry_name = normalize_entry_path(name) if name is not None else None
    if scheme in ("s3", "gs"):
        _split_bucket(uri)  # refuse a URI without a bucket before anything else
    if not checksum:
        return [Entry(path=entry_name or _basename(uri), digest=None, size=None, ref=uri)]
    settings = engine.settings
    # The caller waits while a reference is looked up: a host that cannot be reached fails it within
    # seconds. The long retry deadline is for transfers already under way (downloads of it).
    options = replace(
        settings.store_options.for_references(),
        retry_deadline=min(settings.retry_deadline, RESOLVE_DEADLINE),
        request_timeout=min(settings.request_timeout, RESOLVE_DEADLINE),
    )
    if scheme in ("s3", "gs"):
        return await _resolve_bucket(engine, options, uri, scheme, entry_name, limit)
    return [await _resolve_http(options, uri, entry_name or _basename(uri))]


async def fetch(engine: Engine, entry: Entry, target: Path) -> None:
    """Fetch the source of the reference ``entry`` into ``target``, verified against what was recorded."""
    assert entry.ref is not None
    scheme = urlsplit(entry.ref).scheme.lower()
    if scheme == "file":
        await engine.in_thread(_fetch_file, entry, target)
        return
    # The TLS settings of the call that fetches (as when the reference was resolved), not the session's.
    options = engine.settings.store_options.for_references()
    if scheme in ("http", "https"):
        await _fetch_http(engine, options, entry, target)
    elif scheme in ("s3", "gs"):
        await _fetch_bucket(engine, options, entry, target, scheme)
    else:
        raise ValidationError(
            f"cannot download reference {redact_uri(entry.ref)!r}: unsupported scheme {scheme!r}"
        )


# -- names ------------------------------------------------------------------------------------------


def _basename(uri: str) -> str:
    """The last segment of the URI's path: the entry name when none is given."""
    if urlsplit(uri).scheme.lower() in ("s3", "gs"):
        path = _split_bucket(uri)[1]
    else:
        path = unquote(urlsplit(uri).path)
    base = posixpath.basename(path.rstrip("/"))
    if not base:
        raise ValidationError(
            f"cannot infer an entry name from the reference {redact_uri(uri)!r}; pass name="
        )
    return normalize_entry_path(base)


def _split_bucket(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → ``('bucket', 'some/key')``; keys are taken verbatim, not unquoted."""
    _, sep, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if not sep or not bucket:
        raise ValidationError(f"reference {uri!r} names no bucket")
    return bucket, key


def _object_name(uri: str, name: str | None) -> str:
    return name or _basename(uri)


@dataclass(frozen=True, slots=True)
class _Listed:
    """One object found under a prefix, with what identifies its content."""

    key: str
    size: int
    digest: str | None
    version_id: str | None


async def _expand(
    uri: str,
    scheme: str,
    bucket: str,
    prefix: str,
    name: str | None,
    limit: int,
    found: AsyncGenerator[_Listed, None],
) -> list[Entry]:
    """Entries for the objects under ``prefix``, named relative to it (below ``name``).

    Listing stops at the first object past ``limit``: a huge prefix costs one page, not all of them.
    """
    entries: list[Entry] = []
    async with contextlib.aclosing(found):
        async for item in found:
            relative = item.key[len(prefix) :]
            if not relative.strip("/"):
                continue  # a folder marker (a zero-byte object named like the prefix) holds no file
            if len(entries) >= limit:
                raise ValidationError(
                    f"reference {uri!r} holds more than max_objects={limit} objects; "
                    "raise max_objects to add them all"
                )
            entry_name = normalize_entry_path(posixpath.join(name, relative) if name else relative)
            entries.append(
                Entry(
                    path=entry_name,
                    digest=item.digest,
                    size=item.size,
                    ref=f"{scheme}://{bucket}/{item.key}",
                    version_id=item.version_id,
                )
            )
    if not entries:
        raise ObjectNotFoundError(f"reference {uri!r} names nothing: no such object and no objects below it")
    return entries


def _bucket(
    engine: Engine, scheme: str, bucket: str, options: StoreOptions
) -> tuple[VersionedReads, RetryPolicy]:
    """The engine's store for a bucket (one client per bucket, closed with the engine), read through
    its versions: calls outside the Store contract, each holding a permit of the request limit, and
    retried here with the store's own policy."""
    url = f"{scheme}://{bucket}"
    reads = VERSIONED_READS.of(engine.store(url, options))
    assert reads is not None  # S3 and GCS stores read versions
    return reads, engine.retry_policy(url, options)


def _content_digest(scheme: str, meta: VersionedMeta) -> str | None:
    """What identifies an object's content: the ETag on S3; on GCS the MD5, or for composite objects
    (which have none) the CRC32C."""
    if scheme == "s3":
        return f"etag:{meta.etag}" if meta.etag else None
    return f"md5:{meta.md5}" if meta.md5 else f"crc32c:{meta.crc32c}" if meta.crc32c else None


async def _resolve_bucket(
    engine: Engine, options: StoreOptions, uri: str, scheme: str, name: str | None, limit: int
) -> list[Entry]:
    bucket, key = _split_bucket(uri)
    store, policy = _bucket(engine, scheme, bucket, options)
    # Resolving only reads, so a transient failure retries the whole of it.
    return await policy.run(
        f"resolve {uri}", lambda: _resolve_bucket_once(store, uri, scheme, bucket, key, name, limit)
    )


async def _resolve_bucket_once(
    store: VersionedReads, uri: str, scheme: str, bucket: str, key: str, name: str | None, limit: int
) -> list[Entry]:
    # Keys are passed with ``raw=True``: a reference names whatever object the bucket holds, including
    # keys with ``//`` or ``.`` segments that ``check_key`` refuses for lorry's own keys.
    if key and not key.endswith("/"):
        try:
            head = await store.head_version(key, raw=True)
        except ObjectNotFoundError:
            pass  # not an object: a prefix
        else:
            digest = _content_digest(scheme, head)
            return [Entry(_object_name(uri, name), digest, head.size, ref=uri, version_id=head.version_id)]
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    listed = (
        _Listed(meta.key, meta.size, _content_digest(scheme, meta), meta.version_id)
        async for meta in store.list_latest(prefix)
    )
    return await _expand(uri, scheme, bucket, prefix, name, limit, listed)


# -- writing a fetched object -----------------------------------------------------------------------


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> object: ...


def _open_new(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DOWNLOAD_MODE)
    return os.fdopen(fd, "wb", buffering=0)


def _write_chunk(handle: IO[bytes], chunk: bytes, hasher: _Hasher | None) -> None:
    if hasher is not None:
        hasher.update(chunk)
    view = memoryview(chunk)
    while view:
        written = handle.write(view)
        view = view[written or 0 :]


async def _install(
    engine: Engine,
    entry: Entry,
    target: Path,
    chunks: AsyncIterator[bytes],
    hasher: _Hasher | None = None,
    verify: Callable[[], None] | None = None,
) -> None:
    """Stream ``chunks`` into a temporary file beside ``target``, check them, then rename.

    The byte count is checked against the recorded size, then ``verify`` (which may read ``hasher``)
    runs; any failure removes the temporary file.
    """
    temp = temp_beside(target)
    count = 0
    try:
        try:
            handle = await engine.in_thread(_open_new, temp)
        except OSError as exc:
            raise local_error(exc, f"cannot write {target}") from exc
        try:
            async for chunk in chunks:
                count += len(chunk)
                try:
                    await engine.in_thread(_write_chunk, handle, chunk, hasher)
                except OSError as exc:
                    raise local_error(exc, f"cannot write {target}") from exc
        finally:
            await engine.in_thread(handle.close)
        if entry.size is not None and count != entry.size:
            raise _changed(entry, f"{count} bytes where {entry.size} were recorded")
        if verify is not None:
            verify()
        await engine.in_thread(give_name, temp, target)
    except BaseException:
        discard(temp)
        raise


def _changed(entry: Entry, detail: str) -> IntegrityError:
    return IntegrityError(
        f"reference {_shown(entry)} of entry {entry.path!r} changed since it was logged: {detail}"
    )


def _gone(entry: Entry) -> IntegrityError:
    version = f" (version {entry.version_id})" if entry.version_id else ""
    return IntegrityError(f"reference {_shown(entry)}{version} of entry {entry.path!r} no longer exists")


def _shown(entry: Entry) -> str:
    """The entry's URI as messages show it: a signed URL without its signature."""
    return redact_uri(entry.ref or "")


# -- http(s):// -------------------------------------------------------------------------------------

# Bytes exactly as served: a compressed transfer would make Content-Length disagree with the body.
_IDENTITY = {"Accept-Encoding": "identity"}
_GONE_STATUSES = (404, 410)


def _http_session(options: StoreOptions, uri: str) -> aiohttp.ClientSession:
    import aiohttp  # the HTTP client is loaded by the first http(s) reference, not by ``import lorry``

    # Certificates are verified unless the settings say otherwise (which warns); the read timeout bounds
    # each wait, not a transfer.
    trust = aiohttp_ssl(options)
    warn_unverified(options, endpoint_of(uri))
    connect = min(30.0, options.request_timeout)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=300)
    return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=trust))


def _http_etag(headers: Mapping[str, str]) -> str | None:
    """The ETag without its quotes; a weak one keeps its ``W/`` mark."""
    raw = headers.get("ETag")
    if not raw:
        return None
    raw = raw.strip()
    weak = raw.startswith(("W/", "w/"))
    value = raw[2:] if weak else raw
    value = value.strip('"')
    return f"W/{value}" if weak else value


def _content_length(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("Content-Length")
    if raw is None or not raw.strip().isdecimal():
        return None
    return int(raw)


def _http_status_error(uri: str, status: int, headers: Mapping[str, str], what: str) -> StoreError:
    shown = redact_uri(uri)
    if transient_status(status):
        wait = retry_after(headers.get("Retry-After"))
        return TransientError(f"{what} {shown} answered HTTP {status}", retry_after=wait)
    return StoreError(f"{what} {shown} answered HTTP {status}")


def _http_failure(exc: Exception, what: str, uri: str) -> StoreError:
    """A failure without an answer: a certificate that fails verification is final, a dropped
    connection or a timeout is worth another try. The library's text may hold the URI: redacted."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientSSLError):
        return tls_error(exc, endpoint_of(uri)) or StoreError(f"{what}: TLS failed: {redact_text(str(exc))}")
    detail = f"{type(exc).__name__}: {redact_text(str(exc))}"
    if no_answer(exc):
        return TransientError(f"{what}: {detail}")
    return StoreError(f"{what}: {detail}")


async def _resolve_http(options: StoreOptions, uri: str, entry_name: str) -> Entry:
    retry = RetryPolicy(deadline=options.retry_deadline)
    headers = await retry.run(f"HEAD {redact_uri(uri)}", lambda: _http_head(options, uri))
    etag, size = _http_etag(headers), _content_length(headers)
    missing = [what for what, value in (("ETag", etag), ("Content-Length", size)) if value is None]
    if missing:
        log.warning(
            "reference %s: the server sends no %s; %s",
            redact_uri(uri),
            " and no ".join(missing),
            "only the URI is recorded, so a change of its content cannot be detected"
            if len(missing) == 2
            else "a change of its content may go undetected",
        )
    return Entry(path=entry_name, digest=f"etag:{etag}" if etag else None, size=size, ref=uri)


async def _http_head(options: StoreOptions, uri: str) -> Mapping[str, str]:
    """The headers of a HEAD, or of a GET whose body is never read if HEAD is refused."""
    import aiohttp

    try:
        async with _http_session(options, uri) as session:
            async with session.head(uri, headers=_IDENTITY, allow_redirects=True) as response:
                status, headers = response.status, response.headers.copy()
            if status >= 400 and status not in _GONE_STATUSES:
                # Some servers (and URLs signed for GET only) refuse HEAD.
                async with session.get(uri, headers=_IDENTITY) as response:
                    status, headers = response.status, response.headers.copy()
                    response.close()  # drop the connection rather than read the body
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc, aiohttp.ClientSSLError):
            raise _http_failure(exc, f"cannot reach the reference {redact_uri(uri)}", uri) from exc
        # No host by that name, or nothing listening: waiting would not change that while a user waits.
        reason = exc.os_error.strerror or str(exc.os_error)
        raise StoreError(
            f"cannot reach {endpoint_of(uri)} for the reference {redact_uri(uri)}: {reason}"
        ) from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise _http_failure(exc, f"cannot reach the reference {redact_uri(uri)}", uri) from exc
    if status in _GONE_STATUSES:
        raise ObjectNotFoundError(f"reference {redact_uri(uri)} not found (HTTP {status})")
    if status >= 400:
        raise _http_status_error(uri, status, headers, "reference")
    return headers


async def _fetch_http(engine: Engine, options: StoreOptions, entry: Entry, target: Path) -> None:
    assert entry.ref is not None
    # A failed attempt leaves nothing behind, so a transient failure starts the download again.
    await RetryPolicy(deadline=options.retry_deadline).run(
        f"GET {_shown(entry)}", lambda: _fetch_http_once(engine, options, entry, target)
    )


async def _fetch_http_once(engine: Engine, options: StoreOptions, entry: Entry, target: Path) -> None:
    import aiohttp

    assert entry.ref is not None
    uri = entry.ref
    try:
        async with (
            engine.limits.requests,
            _http_session(options, uri) as session,
            session.get(uri, headers=_IDENTITY) as response,
        ):
            if response.status in _GONE_STATUSES:
                raise _gone(entry)
            if response.status >= 400:
                what = f"entry {entry.path!r}: reference"
                raise _http_status_error(uri, response.status, response.headers, what)
            if entry.digest is not None and entry.digest.startswith("etag:"):
                served = _http_etag(response.headers)
                if f"etag:{served}" != entry.digest:
                    raise _changed(entry, f"ETag {served!r}, recorded {entry.digest[5:]!r}")
            length = _content_length(response.headers)
            if entry.size is not None and length is not None and length != entry.size:
                raise _changed(entry, f"{length} bytes where {entry.size} were recorded")
            await _install(engine, entry, target, response.content.iter_chunked(STREAM_CHUNK))
    except (aiohttp.ClientError, TimeoutError) as exc:
        what = f"cannot download the reference {_shown(entry)} of entry {entry.path!r}"
        raise _http_failure(exc, what, uri) from exc


async def _fetch_bucket(
    engine: Engine, options: StoreOptions, entry: Entry, target: Path, scheme: str
) -> None:
    assert entry.ref is not None
    bucket, key = _split_bucket(entry.ref)
    store, policy = _bucket(engine, scheme, bucket, options)
    once = _fetch_s3_once if scheme == "s3" else _fetch_gcs_once
    # A failed attempt leaves nothing behind, so a transient failure starts the object again.
    await policy.run(f"GET {entry.ref}", lambda: once(engine, store, entry, key, target))


# -- s3:// ------------------------------------------------------------------------------------------
#
# Keys are passed with ``raw=True``: a reference names whatever object the bucket holds, including keys
# with ``//`` or ``.`` segments that ``check_key`` refuses for lorry's own keys.


async def _fetch_s3_once(
    engine: Engine, store: VersionedReads, entry: Entry, key: str, target: Path
) -> None:
    try:
        async with store.open_version(key, entry.version_id, raw=True) as body:
            served = body.etag or ""
            if entry.digest is not None and entry.digest != f"etag:{served}":
                recorded = entry.digest.removeprefix("etag:")
                raise _changed(entry, f"ETag {served!r}, recorded {recorded!r}")
            await _install(engine, entry, target, body.chunks)
    except ObjectNotFoundError as exc:  # the key, or the recorded version of it, is gone
        raise _gone(entry) from exc


# -- gs:// ------------------------------------------------------------------------------------------
#
# Names are passed with ``raw=True``, as for s3:// above.


def _gcs_hasher(digest: str | None) -> _Hasher | None:
    if digest is None:
        return None
    if digest.startswith("md5:"):
        return hashlib.md5(usedforsecurity=False)
    if digest.startswith("crc32c:"):
        try:
            import google_crc32c
        except ImportError:  # not a dependency: the server's x-goog-hash and the generation still check
            return None
        checksum: Any = google_crc32c.Checksum  # untyped
        return cast(_Hasher, checksum())
    return None


async def _fetch_gcs_once(
    engine: Engine, store: VersionedReads, entry: Entry, key: str, target: Path
) -> None:
    hasher = _gcs_hasher(entry.digest)

    def verify() -> None:
        if hasher is None or entry.digest is None:
            return
        alg, _, recorded = entry.digest.partition(":")
        actual = base64.b64encode(cast(Any, hasher).digest()).decode("ascii")
        if actual != recorded:
            raise _changed(entry, f"{alg} {actual}, recorded {recorded}")

    try:
        async with store.open_version(key, entry.version_id, raw=True) as body:
            generation = body.version_id
            if entry.version_id is not None and generation and generation != entry.version_id:
                raise _changed(entry, f"generation {generation}, recorded {entry.version_id}")
            if entry.digest is not None:
                alg, _, recorded = entry.digest.partition(":")
                served = {"md5": body.md5, "crc32c": body.crc32c}.get(alg)
                if served is not None and served != recorded:
                    raise _changed(entry, f"{alg} {served}, recorded {recorded}")
            await _install(engine, entry, target, body.chunks, hasher, verify)
    except ObjectNotFoundError as exc:  # the object, or the recorded generation of it, is gone
        raise _gone(entry) from exc


# -- file:// ----------------------------------------------------------------------------------------


def _file_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ValidationError(f"file reference {uri!r} names a remote host")
    return Path(unquote(parts.path))


def _resolve_file(uri: str, name: str | None, checksum: bool, max_objects: int) -> list[Entry]:
    path = _file_path(uri)
    if path.is_file():
        entry_name = normalize_entry_path(name or path.name)
        return [_file_entry(path, entry_name, uri, checksum)]
    if not path.is_dir():
        raise LocalFileError(f"reference {uri!r} names nothing: {path} does not exist")
    found: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for filename in sorted(filenames):
            full = Path(dirpath, filename)
            relative = full.relative_to(path).as_posix()
            if len(found) >= max_objects:
                raise ValidationError(
                    f"reference {uri!r} holds more than max_objects={max_objects} files; "
                    "raise max_objects to add them all"
                )
            entry_name = normalize_entry_path(posixpath.join(name, relative) if name else relative)
            found.append(_file_entry(full, entry_name, full.as_uri(), checksum))
    return found


def _file_entry(path: Path, entry_name: str, uri: str, checksum: bool) -> Entry:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise local_error(exc, f"cannot read the reference {uri}") from exc
    digest = hash_file(path) if checksum else None
    return Entry(path=entry_name, digest=digest, size=size, ref=uri)


def _fetch_file(entry: Entry, target: Path) -> None:
    assert entry.ref is not None
    source = _file_path(entry.ref)
    temp = temp_beside(target)
    try:
        actual = copy_hashing(source, temp, DOWNLOAD_MODE)
    except FileNotFoundError as exc:
        raise IntegrityError(f"reference {entry.ref} of entry {entry.path!r} no longer exists") from exc
    except OSError as exc:
        raise local_error(exc, f"cannot fetch the reference {entry.ref}") from exc
    if entry.digest is not None and actual != entry.digest:
        temp.unlink()
        raise IntegrityError(f"reference {entry.ref} of entry {entry.path!r} changed since it was logged")
    give_name(temp, target)
