"""S3's object calls (HEAD, GET, PUT, UploadPart, DELETE, listings) through awscrt's S3 client (in C).

Every blob and record goes through these calls, so their cost per request and per byte bounds how fast
lorry moves data. The C client signs (SigV4), sends and receives on its own threads; Python hands it a
request and gets back the answer, or, for a whole object, names the file the C client writes it to
(``get_file``: parallel ranged GETs, each byte written once, by C). Multipart lifecycles, versions and
long streamed reads stay with aiobotocore, in ``s3.py``.

The client does not retry (lorry's retries keep their place; a conditional PUT retried after a lost
answer would report its own success as a conflict), and a request that makes no progress for
``request_timeout`` is cancelled here: the C client has no such timeout of its own.

Non-2xx answers become ``S3CallError`` (with the status and S3's error code); failures without an
answer become ``CrtFailure``. ``s3.py`` maps both onto lorry's errors with the rest.
"""

from __future__ import annotations

import asyncio
import errno
import io
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

from awscrt.auth import (
    AwsCredentials,
    AwsCredentialsProvider,
    AwsSignatureType,
    AwsSignedBodyHeaderType,
    AwsSigningAlgorithm,
    AwsSigningConfig,
)
from awscrt.exceptions import AwsCrtError
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import (
    ClientBootstrap,
    ClientTlsContext,
    DefaultHostResolver,
    EventLoopGroup,
    TlsConnectionOptions,
    TlsContextOptions,
)
from awscrt.s3 import (
    S3Client,
    S3Request,
    S3RequestTlsMode,
    S3RequestType,
    S3ResponseError,
    S3RetryConfig,
    S3RetryMode,
)

from lorry.storage.base import FileSpan, ObjectMeta
from lorry.storage.failures import retry_after

PART_SIZE = 8 << 20
"""The size of the ranges ``get_file`` asks for in parallel."""
SMALL_BODY = 256 << 10
"""A body up to this size is sent from a copy (its read costs no Python) and in one go: no progress is
watched during it, only its answer."""
MEMORY_LIMIT = 256 << 20
"""What the C client may hold in buffers (the least it takes): its default, 2 GiB or more, let a 2 GiB
download hold over a GiB of ranges waiting to be written in order."""

_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{0,2000})</Message>")


# Answers the C client (0.38.1) reports as its own error codes, without the status, headers or body it
# received, and without calling ``on_headers`` or ``on_body`` for it: a ``503 SlowDown``'s ``Retry-After``
# cannot be read on this path, nor a 503 that says the store is full (Ceph's "pool full"): such a 503
# is taken for SlowDown, and retried.
_ANSWERS_WITHOUT_BODY = {
    "AWS_ERROR_S3_SLOW_DOWN": (503, "SlowDown"),
    "AWS_ERROR_S3_INTERNAL_ERROR": (500, "InternalError"),
}


# The C client's failures to write the file it was given: lorry's local errors, never retried.
_FILE_ERRORS = {
    "AWS_ERROR_NO_SPACE": errno.ENOSPC,
    "AWS_ERROR_NO_PERMISSION": errno.EACCES,
    "AWS_ERROR_FILE_WRITE_FAILURE": errno.EIO,
    "AWS_ERROR_FILE_OPEN_FAILURE": errno.EIO,
    "AWS_ERROR_S3_RECV_FILE_NOT_FOUND": errno.ENOENT,
}


class S3CallError(Exception):
    """An S3 answer other than 2xx: its status and, when the body says, its error code and message."""

    def __init__(self, status: int, code: str | None, message: str, retry_after: float | None) -> None:
        super().__init__(f"{status} {code or ''} {message}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class CrtFailure(Exception):
    """A request that got no answer: the connection failed, was cut, or made no progress in time.
    ``tls`` marks a failed TLS handshake (a certificate that is not trusted, most often)."""

    def __init__(self, message: str, *, tls: bool = False) -> None:
        super().__init__(message)
        self.tls = tls


@dataclass(frozen=True, slots=True)
class Answer:
    """A finished call: its headers (names in lower case) and, for a GET read whole, its body."""

    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a ListObjectsV2 answer asked with ``encoding-type=url``: its objects, with the whole
    key each, and the token of the next page (None on the last)."""

    objects: list[ObjectMeta]
    next_token: str | None

    @classmethod
    def parse(cls, body: bytes) -> Listing:
        """``ValueError`` for a body that is not such an answer."""
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as exc:
            raise ValueError(f"the answer is not XML: {exc}") from None
        if _local(root.tag) != "ListBucketResult":
            raise ValueError(f"the answer is a {_local(root.tag)}, not a listing")
        objects, truncated, token = [], False, None
        for item in root:
            tag = _local(item.tag)
            if tag == "IsTruncated":
                truncated = (item.text or "").strip() == "true"
            elif tag == "NextContinuationToken":
                token = item.text or None
            elif tag == "Contents":
                objects.append(_listed(item))
        if truncated and token is None:
            raise ValueError("the listing goes on, but its answer has no NextContinuationToken")
        return cls(objects, token if truncated else None)


def _listed(item: ElementTree.Element) -> ObjectMeta:
    """One ``Contents`` of a listing; ``ValueError`` if it is malformed."""
    values = {_local(child.tag): child.text or "" for child in item}
    modified = values.get("LastModified")
    try:
        return ObjectMeta(
            key=unquote_plus(values["Key"]),
            size=int(values["Size"]),
            etag=values.get("ETag", "").strip('"'),
            modified=datetime.fromisoformat(modified) if modified else None,
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"a listed object is malformed ({type(exc).__name__}: {exc})") from None


def _local(tag: str) -> str:
    """An XML tag without its namespace."""
    return tag.rpartition("}")[2]


class CrtS3:
    """The object calls of one bucket. ``endpoint`` None means AWS itself: the bucket's own host,
    ``bucket.s3.region.amazonaws.com`` (by path on the regional host when the name needs it)."""

    def __init__(
        self,
        endpoint: str | None,
        bucket: str,
        region: str,
        credentials: Credentials | Callable[[], Credentials],
        *,
        ca_bundle: str | None,
        verify_tls: bool,
        max_connections: int,
        request_timeout: float,
    ) -> None:
        if endpoint is not None:
            parts = urlsplit(endpoint)
            self._host = parts.netloc.rpartition("@")[2]
            self._base = f"{parts.path.rstrip('/')}/{quote(bucket, safe='')}/"
            secure = parts.scheme == "https"
        elif "." in bucket:  # a dotted name does not match the wildcard certificate of virtual hosts
            self._host, self._base, secure = f"s3.{region}.amazonaws.com", f"/{bucket}/", True
        else:
            self._host, self._base, secure = f"{bucket}.s3.{region}.amazonaws.com", "/", True
        self._timeout = request_timeout
        group = EventLoopGroup()
        tls: TlsConnectionOptions | None = None
        if secure:
            context = TlsContextOptions()
            context.verify_peer = verify_tls
            if ca_bundle is not None and verify_tls:  # unverified: no trust store is read at all
                context.override_default_trust_store_from_path(ca_filepath=ca_bundle)
            tls = ClientTlsContext(context).new_connection_options()
        if isinstance(credentials, Credentials):
            provider = AwsCredentialsProvider.new_static(
                credentials.access_key, credentials.secret_key, credentials.token
            )
        else:
            source = credentials

            def delegate() -> AwsCredentials:
                found = source()
                return AwsCredentials(found.access_key, found.secret_key, found.token)

            provider = AwsCredentialsProvider.new_delegate(delegate)
        self._provider, self._region = provider, region
        self._client = S3Client(
            bootstrap=ClientBootstrap(group, DefaultHostResolver(group)),
            region=region,
            credential_provider=provider,
            tls_mode=S3RequestTlsMode.ENABLED if secure else S3RequestTlsMode.DISABLED,
            tls_connection_options=tls,
            part_size=PART_SIZE,
            memory_limit=MEMORY_LIMIT,
            # Retries are lorry's: they keep their place and know a conditional write's outcome.
            retry_config=S3RetryConfig(retry_mode=S3RetryMode.NONE),
            max_active_connections_override=max_connections,
            connect_timeout_ms=max(1, int(request_timeout * 1000)),
        )

    async def call(
        self,
        operation: str,
        method: str,
        key: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | bytearray | memoryview | BinaryIO | FileSpan | None = None,
        size: int | None = None,
        read: bool = False,
        body_sha256: str | None = None,
    ) -> Answer:
        """One request, answered 2xx (else ``S3CallError``); the answer's body is kept only if ``read``.
        A stream ``body`` is sent from its position, ``size`` bytes of it; a ``FileSpan`` is read by
        the C client's thread straight into the C client's buffer. With ``body_sha256`` (the body's
        SHA-256, in hex) the signature covers the body: a server that checks it refuses bytes changed
        on the way (otherwise the C client signs ``UNSIGNED-PAYLOAD``)."""
        request, reader = self._request(method, key, query, headers, body, size)
        kind = S3RequestType.DEFAULT
        chunks: list[bytes] = []
        on_body = (lambda chunk, **_: chunks.append(bytes(chunk))) if read else (lambda chunk, **_: None)
        # Bytes sent are watched only in a large body: a small one goes in one write, and the answer's
        # headers and body (watched always) say the rest.
        sending = body is not None and not (
            isinstance(body, bytes | bytearray | memoryview) and len(body) <= SMALL_BODY
        )
        try:
            return await self._run(
                operation,
                kind,
                request,
                on_body=on_body,
                chunks=chunks,
                watch_progress=sending,
                signing=None if body_sha256 is None else self._signing(body_sha256),
            )
        except Exception:
            if isinstance(reader, _SpanReader) and reader.failure is not None:
                raise reader.failure from None  # the file, not the network: never retried
            raise

    def _signing(self, body_sha256: str) -> AwsSigningConfig:
        """SigV4 as the C client signs S3 requests, with the body's own hash in place of
        ``UNSIGNED-PAYLOAD`` (left empty, the C client would not hash the body: it signs it unsigned)."""
        return AwsSigningConfig(
            algorithm=AwsSigningAlgorithm.V4,
            signature_type=AwsSignatureType.HTTP_REQUEST_HEADERS,
            credentials_provider=self._provider,
            region=self._region,
            service="s3",
            signed_body_value=body_sha256,
            signed_body_header_type=AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
            use_double_uri_encode=False,
            should_normalize_uri_path=False,
        )

    async def get_file(self, key: str, path: str, headers: Mapping[str, str]) -> Answer:
        """The whole object ``key`` written by the C client into the new file ``path``, in parallel
        ranges of ``PART_SIZE``."""
        request, _ = self._request("GET", key, None, headers, None, None)
        return await self._run("GetObject", S3RequestType.GET_OBJECT, request, recv_filepath=path)

    def _request(
        self,
        method: str,
        key: str,
        query: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        body: bytes | bytearray | memoryview | BinaryIO | FileSpan | None,
        size: int | None,
    ) -> tuple[HttpRequest, io.RawIOBase | BinaryIO | None]:
        path = self._base + quote(key, safe="/~")
        if query:
            path += "?" + "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in query.items())
        sent = HttpHeaders([("host", self._host), *(headers or {}).items()])
        stream: io.RawIOBase | BinaryIO | None = None
        if isinstance(body, bytes | bytearray | memoryview):
            sent.set("content-length", str(len(body)))
            # A small body is copied into a BytesIO, read by C without a line of Python; a large one is
            # read in place.
            stream = io.BytesIO(body) if len(body) <= SMALL_BODY else _Reader(memoryview(body).cast("B"))
        elif isinstance(body, FileSpan):
            sent.set("content-length", str(body.size))
            stream = _SpanReader(body)
        elif body is not None:
            sent.set("content-length", str(size))
            stream = body
        return HttpRequest(method, path, sent, stream), stream

    async def _run(
        self,
        operation: str,
        kind: S3RequestType,
        request: HttpRequest,
        *,
        on_body: Callable[..., None] | None = None,
        chunks: list[bytes] | None = None,
        recv_filepath: str | None = None,
        watch_progress: bool = True,
        signing: AwsSigningConfig | None = None,
    ) -> Answer:
        loop = asyncio.get_running_loop()
        progress = _Progress()
        answered: dict[str, str] = {}
        finished = asyncio.Event()
        outcome: dict[str, Any] = {}

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            progress.touch()
            answered.update((name.lower(), value) for name, value in headers)

        def on_body_seen(chunk: Any, **kwargs: Any) -> None:
            progress.touch()
            if on_body is not None:
                on_body(chunk, **kwargs)

        def on_done(**kwargs: Any) -> None:  # the error, and the failed answer also where it names none
            outcome.update(kwargs)
            loop.call_soon_threadsafe(finished.set)

        extra: dict[str, Any] = (
            {"recv_filepath": recv_filepath} if recv_filepath else {"on_body": on_body_seen}
        )
        if watch_progress:
            extra["on_progress"] = lambda _count: progress.touch()
        if signing is not None:
            extra["signing_config"] = signing
        made = self._client.make_request(
            type=kind,
            request=request,
            operation_name=operation if kind is S3RequestType.DEFAULT else None,
            on_headers=on_headers,
            on_done=on_done,
            **extra,
        )
        watchdog = _Watchdog(loop, self._timeout, progress, made)
        try:
            await finished.wait()
        except asyncio.CancelledError:
            made.cancel()
            await asyncio.shield(finished.wait())  # the C client lets go of the request's file first
            raise
        finally:
            watchdog.stop()
        if watchdog.fired:  # a timeout, as the retries tell a stalled request from a refused one
            stalled = f"no progress from {self._host} for {self._timeout:g} s"
            raise CrtFailure(stalled) from TimeoutError(stalled)
        error = outcome.get("error")
        if error is not None:
            raise _failure(error, self._host, outcome) from error
        return Answer(answered, b"".join(chunks or ()))


class _Progress:
    """When a request last moved (bytes sent or received, an answer), as the C client's threads say."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()


class _Watchdog:
    """Cancels a request that made no progress for ``timeout``: one timer, pushed back while it moves.
    ``stop`` drops the timer (and with it the only reference back to this object)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout: float, progress: _Progress, request: S3Request
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._progress = progress
        self._request = request
        self.fired = False
        self._timer = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        left = self._timeout - (time.monotonic() - self._progress.last)
        if left > 0:
            self._timer = self._loop.call_later(left, self._check)
        else:
            self.fired = True
            self._request.cancel()

    def stop(self) -> None:
        self._timer.cancel()


class _Body(io.RawIOBase):
    """A request body of ``size`` bytes that the C client reads on its own threads (``readinto``
    into its buffer, ``seek`` back for a retry of its own); what it is read from is the subclass's."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._at = 0
        self._lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._lock:
            base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._size}[whence]
            self._at = max(0, base + offset)
            return self._at

    def readinto(self, buffer: Any) -> int:
        with self._lock:
            count = self._read(memoryview(buffer).cast("B"), self._at)
            self._at += count
            return count

    def _read(self, target: memoryview, at: int) -> int:
        """Fill ``target`` with the body's bytes from ``at``, as far as the body goes; how many."""
        raise NotImplementedError


class _Reader(_Body):
    """A request body read by the C client straight out of ``view``: no copy on the Python side."""

    def __init__(self, view: memoryview) -> None:
        super().__init__(len(view))
        self._view = view

    def _read(self, target: memoryview, at: int) -> int:
        count = min(len(target), len(self._view) - at)
        target[:count] = self._view[at : at + count]
        return count


class _SpanReader(_Body):
    """A request body read by the C client straight from a file: each ``readinto`` is one ``preadv``
    into the C client's own buffer (it asks for a whole part at once), the interpreter lock let go
    while the kernel copies. A file that shrank fails the read; ``failure`` says why, as the C client
    reports only that the read failed."""

    def __init__(self, span: FileSpan) -> None:
        super().__init__(span.size)
        self._span = span
        self.failure: Exception | None = None

    def _read(self, target: memoryview, at: int) -> int:
        try:
            return self._span.read_into(target, at)
        except Exception as exc:  # raised here, it would be printed by the C client's thread
            self.failure = exc
            return 0


def _failure(error: BaseException, host: str, done: Mapping[str, Any]) -> Exception:
    """The failure as an answer (the C client reports some, such as ``503 SlowDown``, as its own error
    codes, but still hands over the answer), else as ``CrtFailure``."""
    status = error.status_code if isinstance(error, S3ResponseError) else done.get("status_code")
    if status:
        text = (error.body if isinstance(error, S3ResponseError) else done.get("error_body")) or b""
        raw_headers = error.headers if isinstance(error, S3ResponseError) else done.get("error_headers")
        code = _CODE.search(text)
        message = _MESSAGE.search(text)
        headers = {name.lower(): value for name, value in raw_headers or []}
        return S3CallError(
            status,
            code.group(1).decode(errors="replace") if code else None,
            message.group(1).decode(errors="replace") if message else "",
            retry_after(headers.get("retry-after")),
        )
    if isinstance(error, AwsCrtError) and error.name in _ANSWERS_WITHOUT_BODY:
        answered_status, answered_code = _ANSWERS_WITHOUT_BODY[error.name]
        return S3CallError(answered_status, answered_code, error.message, None)
    if isinstance(error, AwsCrtError) and error.name in _FILE_ERRORS:  # the file written, not the network
        return OSError(_FILE_ERRORS[error.name], f"{error.name}: {error.message}")
    if isinstance(error, AwsCrtError):
        return CrtFailure(f"{error.name} ({host}): {error.message}", tls="TLS" in error.name)
    return CrtFailure(f"{type(error).__name__} ({host}): {error}")
