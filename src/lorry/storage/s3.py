"""A store in an S3 bucket (AWS, or an S3-compatible server such as Ceph RGW), through aiobotocore.

``S3Store("s3://bucket/prefix")`` keeps every key under ``prefix/``. Endpoint, region and credentials
not given explicitly come from the standard AWS configuration exactly as botocore reads it
(``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``, the config and
credentials files, ...), plus ``AWS_REGION``, which botocore itself does not read.

TLS and encryption at rest come from ``options`` (``StoreOptions``): certificates are verified against
``ca_bundle`` (else botocore's own choice: ``AWS_CA_BUNDLE``, the config file, certifi); SSE-S3 and
SSE-KMS parameters go with every request that creates an object, and an SSE-C key with those and with
every request that reads one (``HEAD``, ``GET``, ``UploadPart``), as S3 requires.

Preconditions map onto S3's conditional writes: ``Create`` sends ``If-None-Match: *`` and
``Update(etag)`` sends ``If-Match``. The client does not retry: retries live in ``lorry.transfer``,
and a conditional PUT retried after a lost response would report its own success as a conflict.

aiobotocore has no type information, so every call goes through ``_call``, the one place where its
untyped values enter; responses are read field by field into lorry's own types.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import enum
import hashlib
import logging
import os
import ssl
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from lorry.errors import (
    AccessDeniedError,
    ConflictError,
    LorryError,
    ObjectNotFoundError,
    StoreError,
    TransientError,
    UsageError,
    ValidationError,
)
from lorry.model.layout import probe_key
from lorry.model.secret import REDACTED
from lorry.storage.base import (
    OVERWRITE,
    STREAM_READ,
    Body,
    Create,
    FileSpan,
    ObjectMeta,
    Part,
    PartBody,
    PutMode,
    Update,
    Upload,
    VersionedBody,
    VersionedMeta,
    body_size,
    check_key,
    part_size,
    read_chunk,
)
from lorry.storage.failures import full_answer, no_answer, retry_after, transient_status
from lorry.storage.options import StoreOptions
from lorry.storage.s3_crt import Answer, Credentials, CrtFailure, CrtS3, Listing, S3CallError
from lorry.storage.tls import (
    aiohttp_ssl,
    botocore_verify,
    endpoint_of,
    tls_error,
    untrusted_certificate,
    warn_unverified,
)

T = TypeVar("T")
STREAM_CHUNK = 1 << 20
SPAN_PIECE = 1 << 20
"""The piece of a part read at a time for its digest (a part's bytes are read where they lie, twice)."""
WHOLE_READ = 8 << 20
"""Ranges up to this size are read whole, in one request through the C client; longer ones stream."""
DEFAULT_REGION = "us-east-1"

# What S3's error codes (or, for an answer without a body, its status) mean to lorry: the one table
# ``_error`` reads, for both of the store's clients. A code not here is decided by its status
# (``failures.transient_status``); a failure without an answer by ``_no_answer``.
_S3_CODES: dict[str, type[LorryError]] = {
    **dict.fromkeys(["NoSuchBucket"], StoreError),
    **dict.fromkeys(["NoSuchUpload", "404", "NoSuchKey", "NotFound"], ObjectNotFoundError),
    **dict.fromkeys(["412", "PreconditionFailed", "409", "ConditionalRequestConflict"], ConflictError),
    **dict.fromkeys(
        [
            "403",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidToken",
            "ExpiredToken",
            "TokenRefreshRequired",
        ],
        AccessDeniedError,
    ),
    # Busy or broken for now: worth another try after a pause, whatever the status says. A wrong
    # digest and IncompleteBody: the body was damaged or cut on the way (its Content-MD5 or signed
    # SHA-256 caught it); the file is intact.
    **dict.fromkeys(
        [
            "BadDigest",
            "XAmzContentSHA256Mismatch",
            "IncompleteBody",
            "SlowDown",
            "RequestTimeout",
            "RequestTimeTooSkewed",
            "InternalError",
            "ServiceUnavailable",
            "Throttling",
            "ThrottlingException",
            "TooManyRequests",
            "RequestLimitExceeded",
        ],
        TransientError,
    ),
}
# What S3 answers for a body that does not match the digest sent with it.
_WRONG_DIGEST = {"BadDigest", "XAmzContentSHA256Mismatch"}
# What S3 answers for a version id that names no version: NoSuchVersion, or 400 InvalidArgument for one
# that is not even well formed (AWS, moto).
_NO_SUCH_VERSION = {"NoSuchVersion", "InvalidArgument"}
# Connection and read failures raised by botocore itself (no HTTP answer at all).
_BOTOCORE_NO_ANSWER = {
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "ResponseStreamingError",
    "IncompleteReadError",
    "HTTPClientError",
    "ProxyConnectionError",
}


class S3Store:
    """``Store`` and ``MultipartStore`` over ``s3://bucket/prefix``.

    >>> store = S3Store("s3://models/team-a", endpoint_url="http://127.0.0.1:7480")
    >>> store.url
    's3://models/team-a'

    One client per store, created on first use on the running event loop; ``close()`` releases it,
    after which the store may be used again (on any loop).
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        max_pool_connections: int = 64,
        options: StoreOptions | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValidationError(f"not an S3 store URL (s3://bucket/prefix): {url!r}")
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        if prefix:
            check_key(prefix)
        self.prefix = prefix + "/" if prefix else ""
        if (access_key_id is None) != (secret_access_key is None):
            raise ValidationError("give both access_key_id and secret_access_key, or neither")
        if max_pool_connections < 1:
            raise ValidationError("max_pool_connections must be at least 1")
        self._endpoint_url = endpoint_url
        self._region = region
        self._credentials = (access_key_id, secret_access_key, session_token)
        self._profile = profile
        self._max_pool_connections = max_pool_connections
        self._options = options or StoreOptions()
        self._sse_write, self._sse_read = _sse_parameters(self._options)
        self._sse_write_headers, self._sse_read_headers = _sse_headers(self._options)
        self._endpoint_shown = endpoint_of(endpoint_url) if endpoint_url else "S3"
        self._client_task: asyncio.Task[Any] | None = None
        self._boto_task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._body_check_task: asyncio.Future[BodyCheck] | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.rstrip('/')}" if self.prefix else f"s3://{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    # -- the Store contract -------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectMeta:
        answer = await self._send("HeadObject", "HEAD", key, headers=self._sse_read_headers)
        size, etag = answer.headers.get("content-length", "0"), answer.headers.get("etag", "")
        return ObjectMeta(key=key, size=int(size), etag=_etag(etag))

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if not _valid_range(start, end):
            return b"".join([chunk async for chunk in self.stream(key, start, end)])
        headers = {**self._sse_read_headers, **_range_header(start, end)}
        try:
            answer = await self._send("GetObject", "GET", key, headers=headers, read=True)
        except StoreError as exc:
            if _code(exc.__cause__) in ("InvalidRange", "416"):
                return b""  # the range starts at or past the end of the object
            raise
        return answer.body

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if start < 0 or (end is not None and end < 0):
            raise ValidationError(f"invalid range [{start}, {end}) of {key}")
        if end is not None and end <= start:
            await self.head(key)  # nothing to read, but a missing key is still an error
            return
        if end is not None and end - start <= WHOLE_READ:  # small: one request through the C client
            if data := await self.get(key, start, end):
                yield data
            return
        # Larger or open-ended: through aiobotocore, which reads no faster than its reader takes, so
        # memory holds a chunk.
        params: dict[str, Any] = {"Key": self._key(key), **self._sse_read}
        if start or end is not None:
            params["Range"] = _range_header(start, end)["range"]
        try:
            response = await self._call("get_object", key, **params)
        except StoreError as exc:
            if _code(exc.__cause__) in ("InvalidRange", "416"):
                return  # the range starts at or past the end of the object
            raise
        async with response["Body"] as body:
            async for chunk in self._chunks(body, key):
                yield chunk

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        size = body_size(data)
        # A stream is read twice: once for its digest (which S3 needs before the body), once sent.
        proof, body_sha256 = await self._body_proof(data)
        headers = {**proof, **self._sse_write_headers, **_precondition_headers(mode)}
        sent = self._send(
            "PutObject", "PUT", key, headers=headers, body=data, size=size, body_sha256=body_sha256
        )
        etag = (await self._guarded(mode, key, sent)).headers.get("etag", "")
        return ObjectMeta(key=key, size=size, etag=_etag(etag))

    async def delete(self, key: str) -> None:
        await self._send("DeleteObject", "DELETE", key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        # Keys come URL-encoded (as botocore asks for them too): a key may hold characters XML cannot.
        query = {"list-type": "2", "prefix": self.prefix + prefix, "encoding-type": "url"}
        while True:
            answer = await self._send("ListObjectsV2", "GET", None, query=query, read=True)
            try:
                page = Listing.parse(answer.body)
            except ValueError as exc:
                raise StoreError(f"ListObjectsV2 {self.url}: {exc}") from None
            for item in page.objects:
                yield replace(item, key=item.key[len(self.prefix) :])
            if page.next_token is None:
                return
            query["continuation-token"] = page.next_token

    async def close(self) -> None:
        task, self._client_task, self._loop = self._client_task, None, None
        boto_task, self._boto_task = self._boto_task, None
        self._body_check_task = None
        for made in (task, boto_task):
            if made is None:
                continue
            try:
                client = await made
            except Exception:
                continue  # never made: nothing to release (the error went to whoever asked for it)
            boto = client.boto if isinstance(client, _Clients) else client
            if boto is not None:
                await boto.close()

    # -- multipart ----------------------------------------------------------------------------------

    async def create_multipart(self, key: str) -> str:
        response = await self._call("create_multipart_upload", key, Key=self._key(key), **self._sse_write)
        return str(response["UploadId"])

    async def put_part(self, key: str, upload_id: str, number: int, data: PartBody) -> Part:
        proof, body_sha256 = await self._body_proof(data)
        query = {"partNumber": str(number), "uploadId": upload_id}
        headers = {**proof, **self._sse_read_headers}
        answer = await self._send(
            "UploadPart", "PUT", key, query=query, headers=headers, body=data, body_sha256=body_sha256
        )
        return Part(number=number, etag=_etag(answer.headers.get("etag", "")), size=part_size(data))

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[Part], mode: PutMode = OVERWRITE
    ) -> ObjectMeta:
        ordered = sorted(parts, key=lambda part: part.number)
        await self._conditional(
            mode,
            "complete_multipart_upload",
            key,
            Key=self._key(key),
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": f'"{p.etag}"'} for p in ordered]},
        )
        # Ceph RGW (16.2) ignores If-None-Match/If-Match on CompleteMultipartUpload and answers with an
        # empty ETag; a HEAD gives the real one (and the size) on every server.
        return await self.head(key)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(ObjectNotFoundError):  # NoSuchUpload: completed or aborted already
            await self._call("abort_multipart_upload", key, Key=self._key(key), UploadId=upload_id)

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[Part]:
        params: dict[str, Any] = {"Key": self._key(key), "UploadId": upload_id}
        parts: builtins.list[Part] = []
        while True:
            response = await self._call("list_parts", key, **params)
            parts.extend(
                Part(number=int(p["PartNumber"]), etag=_etag(p["ETag"]), size=int(p["Size"]))
                for p in response.get("Parts", [])
            )
            if not response.get("IsTruncated"):
                return sorted(parts, key=lambda part: part.number)
            params["PartNumberMarker"] = response["NextPartNumberMarker"]

    async def list_multipart(self, prefix: str) -> AsyncIterator[Upload]:
        params: dict[str, Any] = {"Prefix": self.prefix + prefix}
        while True:
            response = await self._call("list_multipart_uploads", None, **params)
            for item in response.get("Uploads", []):
                initiated: datetime = item["Initiated"]
                key = str(item["Key"])[len(self.prefix) :]
                yield Upload(key=key, upload_id=str(item["UploadId"]), initiated=initiated)
            if not response.get("IsTruncated"):
                return
            params["KeyMarker"] = response["NextKeyMarker"]
            params["UploadIdMarker"] = response["NextUploadIdMarker"]

    # -- versions, for references to objects that lorry did not write ------------------------------
    #
    # ``raw=True`` takes the key verbatim, without ``check_key``: a reference names any object of a
    # bucket, and S3 keys may hold ``//``, ``.`` and ``..`` segments that the store's own keys may not.
    # Only these read-only calls accept it.

    async def head_version(
        self, key: str, version_id: str | None = None, *, raw: bool = False
    ) -> VersionedMeta:
        """Metadata of ``key`` (of its version ``version_id``; else of its latest version).

        ``ObjectNotFoundError`` if the key or that version does not exist.
        """
        params = self._version_params(key, version_id, raw)
        response = await self._call_version("head_object", key, version_id, **params)
        return VersionedMeta(
            key=key,
            size=int(response["ContentLength"]),
            etag=_etag(response.get("ETag") or ""),
            version_id=_version(response.get("VersionId")),
        )

    @asynccontextmanager
    async def open_version(
        self, key: str, version_id: str | None = None, *, raw: bool = False
    ) -> AsyncIterator[VersionedBody]:
        """Start reading ``key`` (its version ``version_id``; else its latest version).

        The response's ETag, size and version id are known before any byte is read, so a caller can
        refuse an object that changed without downloading it. ``ObjectNotFoundError`` if the key or
        that version does not exist. The connection is released when the block ends.
        """
        params = self._version_params(key, version_id, raw)
        response = await self._call_version("get_object", key, version_id, **params)
        async with response["Body"] as body:
            length = response.get("ContentLength")
            yield VersionedBody(
                key=key,
                size=None if length is None else int(length),
                etag=_etag(response.get("ETag") or ""),
                version_id=_version(response.get("VersionId")),
                md5=None,
                crc32c=None,
                chunks=self._chunks(body, key),
            )

    async def versioning_enabled(self) -> bool:
        """Whether objects of the bucket may carry version ids: versioning is on, or was once
        (``Suspended`` keeps the versions written before)."""
        response = await self._call("get_bucket_versioning", None)
        return response.get("Status") in ("Enabled", "Suspended")

    async def list_latest(self, prefix: str) -> AsyncIterator[VersionedMeta]:
        """The latest version of every object under ``prefix`` that is not deleted, in key order.

        In a bucket that keeps versions each comes with its version id; otherwise (and when the
        credentials may not ask whether it does) this is a plain listing, without version ids.
        """
        try:
            versioned = await self.versioning_enabled()
        except TransientError:
            raise
        except StoreError:
            versioned = False  # not allowed to ask: list without versions (a missing bucket fails below)
        if not versioned:
            async for meta in self.list(prefix):
                yield VersionedMeta(key=meta.key, size=meta.size, etag=meta.etag)
            return
        params: dict[str, Any] = {"Prefix": self.prefix + prefix}
        while True:
            page = await self._call("list_object_versions", None, **params)
            # Deleted keys have a delete marker (under DeleteMarkers) as their latest version.
            for item in page.get("Versions", []):
                if item.get("IsLatest"):
                    yield VersionedMeta(
                        key=str(item["Key"])[len(self.prefix) :],
                        size=int(item["Size"]),
                        etag=_etag(item.get("ETag") or ""),
                        version_id=_version(item.get("VersionId")),
                    )
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page["NextKeyMarker"]
            params["VersionIdMarker"] = page["NextVersionIdMarker"]

    def _version_params(self, key: str, version_id: str | None, raw: bool) -> dict[str, Any]:
        if raw and not key:
            raise ValidationError("invalid store key ''")
        params: dict[str, Any] = {"Key": self.prefix + key if raw else self._key(key), **self._sse_read}
        if version_id is not None:
            params["VersionId"] = version_id
        return params

    async def _call_version(
        self, operation: str, key: str, version_id: str | None, **params: Any
    ) -> dict[str, Any]:
        try:
            return await self._call(operation, key, **params)
        except StoreError as exc:
            if version_id is not None and _code(exc.__cause__) in _NO_SUCH_VERSION:
                raise ObjectNotFoundError(f"{key} has no version {version_id} in {self.url}") from exc
            raise

    # -- the boundary with aiobotocore --------------------------------------------------------------

    def _key(self, key: str | None) -> str:
        """The object's name in the bucket; None: the bucket itself (a listing)."""
        return "" if key is None else self.prefix + check_key(key)

    async def _call(self, operation: str, key: str | None, **params: Any) -> dict[str, Any]:
        """One call through aiobotocore (made on first use, see ``_boto``)."""
        boto = await self._boto()
        try:
            async with (await self._clients()).permits:
                response: dict[str, Any] = await getattr(boto, operation)(Bucket=self.bucket, **params)
        except Exception as exc:
            if not _boto_failure(exc):
                raise
            raise self._error(exc, operation, key) from exc
        return response

    async def _send(self, operation: str, method: str, key: str | None, **kwargs: Any) -> Answer:
        """One object call through the C client (``s3_crt``), its failure mapped like every other's."""
        crt = await self._crt()
        try:
            async with (await self._clients()).permits:
                return await crt.call(operation, method, self._key(key), **kwargs)
        except (S3CallError, CrtFailure) as exc:
            raise self._error(exc, operation, key) from exc

    async def get_file(self, key: str, path: Path) -> int:
        """The whole object ``key`` written into the new file ``path`` by the C client (parallel ranged
        GETs, each byte written once); its size."""
        crt = await self._crt()
        try:
            async with (await self._clients()).permits:  # one, for a download of several connections
                answer = await crt.get_file(self._key(key), str(path), self._sse_read_headers)
        except (S3CallError, CrtFailure) as exc:
            raise self._error(exc, "GetObject", key) from exc
        return int(answer.headers.get("content-length", "-1"))

    async def _chunks(self, body: Any, key: str) -> AsyncIterator[bytes]:
        """The chunks of a ``get_object`` body, with read failures mapped like every other call's."""
        try:
            async for chunk in body.iter_chunks(STREAM_CHUNK):
                yield chunk
        except Exception as exc:
            if not _boto_failure(exc):
                raise
            raise self._error(exc, "GetObject", key) from exc

    async def _conditional(self, mode: PutMode, operation: str, key: str, **params: Any) -> dict[str, Any]:
        """A write with ``mode``'s precondition: ``If-None-Match: *`` or ``If-Match: <etag>``."""
        if isinstance(mode, Create):
            params["IfNoneMatch"] = "*"
        elif isinstance(mode, Update):
            params["IfMatch"] = mode.etag  # unquoted: see _precondition_headers
        return await self._guarded(mode, key, self._call(operation, key, **params))

    async def _guarded(self, mode: PutMode, key: str, call: Awaitable[T]) -> T:
        """A conditional write's outcome, with a vanished object read as the conflict it is."""
        try:
            return await call
        except ObjectNotFoundError as exc:
            if isinstance(mode, Update) and _code(exc.__cause__) != "NoSuchUpload":
                # AWS and moto answer If-Match on a missing key with 404, RGW with 412: either way
                # the object is no longer the one that was read.
                raise ConflictError(f"{key} was deleted since it was read ({self.url})") from exc
            raise

    def _error(self, exc: BaseException, operation: str, key: str | None) -> Exception:
        """``exc`` (from either client) as lorry's error, by ``_S3_CODES``."""
        where = f"{self.url}/{key}" if key is not None else self.url
        tls = tls_error(exc, self._endpoint_shown)
        if tls is not None:
            return tls
        if isinstance(exc, CrtFailure) and exc.tls:
            return untrusted_certificate(self._endpoint_shown, str(exc))
        if _is_botocore(exc, "NoCredentialsError"):
            return AccessDeniedError(
                f"no AWS credentials found for {self.url} (set AWS_ACCESS_KEY_ID or a profile)"
            )
        answer = _answer(exc)
        if answer is None:
            detail = f"{type(exc).__name__}: {exc}"
            if _no_answer(exc):
                return TransientError(f"{operation} {where} failed: {detail}")
            return StoreError(f"{operation} {where} failed: {detail}")
        code = answer.code
        detail = f"{code} {answer.message}".strip()
        kind = _S3_CODES.get(code)
        if code == "NoSuchBucket":
            return StoreError(f"bucket {self.bucket!r} does not exist ({operation} {where})")
        if code == "NoSuchUpload":
            return ObjectNotFoundError(f"no such multipart upload of {where}")
        if kind is ObjectNotFoundError:
            return ObjectNotFoundError(f"{key} not found in {self.url}")
        if kind is ConflictError:
            return ConflictError(f"{key} already exists or changed since it was read ({where})")
        if kind is AccessDeniedError:
            return AccessDeniedError(
                f"the S3 server refused the credentials or their permissions for {operation} {where}: "
                f"{detail}"
            )
        if full_answer(answer.status, code, answer.message):  # retrying for the whole deadline would hide it
            return StoreError(f"the store is full: {operation} {where} was refused: {detail}")
        if kind is TransientError or (answer.status is not None and transient_status(answer.status)):
            return TransientError(f"{operation} {where} failed: {detail}", retry_after=answer.retry_after)
        return StoreError(f"{operation} {where} failed: {detail}")

    async def _body_proof(self, data: Body | FileSpan) -> tuple[dict[str, str], str | None]:
        """What lets the server check that ``data`` arrived as sent: a header, or the body's SHA-256
        (hex) for the request's signature; nothing with ``s3_body_check`` off."""
        if not self._options.s3_body_check:
            return {}, None
        check = await self.body_check()
        digest = await _body_digest(check, data)
        if check is BodyCheck.SIGNED_SHA256:
            return {}, digest.hex()
        return {"content-md5": base64.b64encode(digest).decode()}, None

    async def body_check(self) -> BodyCheck:
        """The cheapest body digest this server checks: a signed SHA-256 (1.2 GB/s per core here,
        against MD5's 0.7) where it refuses a wrong one, else ``Content-MD5``. Found once per store."""
        await self._clients()  # on this store's loop, as the task below must be
        task = self._body_check_task
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._body_check_task = asyncio.ensure_future(self._probe_body_check())
        return await asyncio.shield(task)

    async def _probe_body_check(self) -> BodyCheck:
        """A PUT whose signature holds a SHA-256 that is not its body's: refused by a server that checks
        the signed hash, stored (then deleted) by one that does not."""
        key = probe_key(uuid.uuid4().hex)
        body = b"lorry: does this server check a signed body hash?"
        wrong = hashlib.sha256(b"not " + body).hexdigest()
        try:
            await self._send(
                "PutObject", "PUT", key, headers=self._sse_write_headers, body=body, body_sha256=wrong
            )
        except StoreError as exc:
            if _code(exc.__cause__) in _WRONG_DIGEST:
                return BodyCheck.SIGNED_SHA256
            raise
        with contextlib.suppress(StoreError):
            await self.delete(key)  # else a gc removes it (it is a probe's key)
        return BodyCheck.CONTENT_MD5

    async def _crt(self) -> CrtS3:
        crt = (await self._clients()).crt
        if crt is None:
            raise AccessDeniedError(
                f"no AWS credentials found for {self.url} (set AWS_ACCESS_KEY_ID or a profile)"
            )
        return crt

    async def _clients(self) -> _Clients:
        loop = asyncio.get_running_loop()
        if self._client_task is None:
            self._loop = loop
            self._client_task = loop.create_task(self._create_client())
        elif self._loop is not loop:
            raise UsageError(f"{self!r} is in use on another event loop; close() it there first")
        try:
            return await asyncio.shield(self._client_task)
        except Exception as exc:
            self._client_task = self._loop = None
            if (refused := self._refused(exc)) is None:
                raise
            raise refused from exc

    async def _boto(self) -> Any:
        """The aiobotocore client: made with the C client when botocore resolved the setup, else on
        first use (most runs never make a call that needs it, and importing botocore costs 0.3 s)."""
        clients = await self._clients()
        if clients.boto is not None:
            return clients.boto
        if self._boto_task is None:
            self._boto_task = asyncio.get_running_loop().create_task(self._open_boto(None, clients.setup))
        try:
            return await asyncio.shield(self._boto_task)
        except Exception as exc:
            self._boto_task = None
            if (refused := self._refused(exc)) is None:
                raise
            raise refused from exc

    def _refused(self, exc: Exception) -> StoreError | None:
        """A failure to make a client as the ``StoreError`` that names the store, where botocore (or
        the C client) refused the configuration; None for any other failure, raised as it is."""
        if isinstance(exc, ValueError) or _is_botocore(exc, "BotoCoreError"):
            return StoreError(f"cannot set up an S3 client for {self.url}: {exc}")
        return None

    async def _create_client(self) -> _Clients:
        setup, boto = self._setup_from_environment(), None
        if setup is None:
            setup, boto = await self._setup_by_botocore()
        self._endpoint_shown = endpoint_of(setup.endpoint_shown)
        warn_unverified(self._options, self._endpoint_shown)
        crt = None
        if setup.credentials is not None:
            endpoint_url = setup.endpoint_url
            secure = urlsplit(endpoint_url).scheme != "http" if endpoint_url else True
            if secure and endpoint_url and self._options.verify_tls:
                await self._check_certificate(endpoint_url, setup.ca_bundle)
            crt = CrtS3(
                endpoint_url,
                self.bucket,
                setup.region,
                setup.credentials,
                ca_bundle=(self._options.ca_bundle or setup.ca_bundle) if secure else None,
                verify_tls=self._options.verify_tls,
                max_connections=self._max_pool_connections,
                request_timeout=self._options.request_timeout,
            )
        # The store's connections, shared by both libraries (the C client caps only each of its
        # downloads' own): at most this many requests at a time.
        return _Clients(boto, crt, asyncio.Semaphore(self._max_pool_connections), setup)

    def _setup_from_environment(self) -> _Setup | None:
        """The setup when what was given and the environment alone decide it, as botocore would; None
        where a profile or the config file could (then botocore resolves it: ``_setup_by_botocore``).
        Credentials and endpoint from the environment come before the config file's in botocore's
        order, and no profile is named; an https endpoint's trust must be named too."""
        env = os.environ
        if self._profile or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE"):
            return None
        access_key, secret_key, token = self._credentials
        if access_key is None or secret_key is None:
            access_key, secret_key = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
            token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN") or None
            if not access_key or not secret_key:
                return None
        region = self._region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
            endpoint = self._endpoint_url
        else:
            endpoint = self._endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        ca_bundle = env.get("AWS_CA_BUNDLE") or None
        secure = endpoint is not None and urlsplit(endpoint).scheme != "http"
        if not region or not endpoint or (secure and self._options.ca_bundle is None and ca_bundle is None):
            return None
        credentials = Credentials(access_key, secret_key, token)
        return _Setup(endpoint, region, ca_bundle, credentials, endpoint)

    async def _setup_by_botocore(self) -> tuple[_Setup, Any]:
        """The setup as botocore resolves it (profiles, the config file, every credential provider),
        and the aiobotocore client made from it."""
        from aiobotocore.session import AioSession  # type: ignore[import-untyped]

        session = AioSession(profile=self._profile)
        endpoint_url = self._endpoint_url or _configured_endpoint(session)
        region = self._region or os.environ.get("AWS_REGION") or session.get_config_variable("region")
        setup = _Setup(
            endpoint_url,
            region or DEFAULT_REGION,
            session.get_config_variable("ca_bundle"),
            None,
            endpoint_url or "",
        )
        client = await self._open_boto(session, setup)
        credentials = await self._crt_credentials(session)
        return replace(setup, credentials=credentials, endpoint_shown=str(client.meta.endpoint_url)), client

    async def _open_boto(self, session: Any, setup: _Setup) -> Any:
        """An aiobotocore client for ``setup`` (from ``session``, else a session of its own)."""
        from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
        from aiobotocore.session import AioSession
        from botocore.handlers import add_expect_header  # type: ignore[import-untyped]

        config = AioConfig(
            region_name=setup.region,
            max_pool_connections=self._max_pool_connections,
            # S3-compatible servers reject or mangle the newer default CRC checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Virtual-hosted addressing needs DNS for every bucket: servers other than AWS use paths.
            s3={"addressing_style": "path" if setup.endpoint_url else "auto"},
            retries={"total_max_attempts": 1},
            # A request that makes no progress for this long fails (and is retried by lorry): waiting
            # to connect, between bytes received, and (TCP_USER_TIMEOUT) for sent bytes to be taken.
            connect_timeout=self._options.request_timeout,
            read_timeout=self._options.request_timeout,
            connector_args={"socket_factory": self._options.socket_factory()},
        )
        access_key, secret_key, token = self._credentials
        if session is None:
            session = AioSession(profile=self._profile)
            if access_key is None and isinstance(setup.credentials, Credentials):
                access_key, secret_key, token = (
                    setup.credentials.access_key,
                    setup.credentials.secret_key,
                    setup.credentials.token,
                )
        context = session.create_client(
            "s3",
            endpoint_url=setup.endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=token,
            config=config,
            verify=botocore_verify(self._options),
        )
        client = await context.__aenter__()
        # No "Expect: 100-continue": aiohttp waits for the "100 Continue" without any timeout, so a
        # server that never sends it would hold the request forever.
        client.meta.events.unregister("before-call.s3", add_expect_header)
        return client

    async def _check_certificate(self, endpoint_url: str, configured_ca: str | None) -> None:
        """Refuse an endpoint whose certificate is not trusted at once, with the error that says how to
        trust it: the C client's TLS library delays every failed handshake by 10 to 30 seconds (a
        defence against timing attacks), and would fail only the first request, that late."""
        parts = urlsplit(endpoint_url)
        trust = aiohttp_ssl(replace(self._options, ca_bundle=self._options.ca_bundle or configured_ca))
        context = trust if isinstance(trust, ssl.SSLContext) else ssl.create_default_context()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port or 443, ssl=context),
                self._options.request_timeout,
            )
        except ssl.SSLError as exc:
            raise self._error(exc, "connect", None) from exc
        except (OSError, TimeoutError):
            return  # no answer now: the requests themselves fail, and are retried, as they would
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()

    async def _crt_credentials(self, session: Any) -> Credentials | Callable[[], Credentials] | None:
        """The credentials the C client signs with: the ones given, else botocore's (asked for again
        on this loop whenever botocore would refresh them); None when there are none."""
        access_key, secret_key, token = self._credentials
        if access_key is not None and secret_key is not None:
            return Credentials(access_key, secret_key, token)
        from aiobotocore.credentials import AioRefreshableCredentials  # type: ignore[import-untyped]

        found = await session.get_credentials()
        if found is None:
            return None
        if not isinstance(found, AioRefreshableCredentials):
            frozen = await found.get_frozen_credentials()
            return Credentials(frozen.access_key, frozen.secret_key, frozen.token)
        loop = asyncio.get_running_loop()

        def current() -> Credentials:  # called on one of the C client's threads
            frozen = asyncio.run_coroutine_threadsafe(found.get_frozen_credentials(), loop).result(60)
            return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

        return current


@dataclass(frozen=True, slots=True)
class _Setup:
    """Where the store's clients connect and as whom: resolved once per store."""

    endpoint_url: str | None
    region: str
    ca_bundle: str | None
    """The trust the environment or the config file names (the store's own options come first)."""
    credentials: Credentials | Callable[[], Credentials] | None
    endpoint_shown: str
    """The endpoint as messages name it."""


@dataclass(frozen=True, slots=True)
class _Clients:
    boto: Any
    """The aiobotocore client, when botocore resolved the setup; else made on first use."""
    crt: CrtS3 | None
    permits: asyncio.Semaphore
    setup: _Setup


def _valid_range(start: int, end: int | None) -> bool:
    return start >= 0 and (end is None or end > start)


def _range_header(start: int, end: int | None) -> dict[str, str]:
    if not start and end is None:
        return {}
    return {"range": f"bytes={start}-{'' if end is None else end - 1}"}


def _precondition_headers(mode: PutMode) -> dict[str, str]:
    if isinstance(mode, Create):
        return {"if-none-match": "*"}
    if isinstance(mode, Update):
        # Unquoted: RGW (and DigitalOcean Spaces) answer 412 to the quoted form; AWS takes both.
        return {"if-match": mode.etag}
    return {}


def _sse_headers(options: StoreOptions) -> tuple[dict[str, str], dict[str, str]]:
    """The encryption headers of requests that create an object, and of those that read one.

    SSE-S3 and SSE-KMS are named when an object is created and never again (S3 refuses them on
    ``UploadPart``, ``GET`` and ``HEAD``). An SSE-C key goes with both: the server does not keep it.
    """
    customer_key = options.sse_customer_key()
    if customer_key is not None:
        sse_c = {
            "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": base64.b64encode(customer_key).decode(),
            "x-amz-server-side-encryption-customer-key-md5": content_md5(customer_key),
        }
        return sse_c, dict(sse_c)
    write: dict[str, str] = {}
    if options.s3_sse is not None:
        write["x-amz-server-side-encryption"] = options.s3_sse
    if options.s3_sse_kms_key_id is not None:
        write["x-amz-server-side-encryption-aws-kms-key-id"] = options.s3_sse_kms_key_id
    return write, {}


_BOTOCORE_SSE = {
    "x-amz-server-side-encryption": "ServerSideEncryption",
    "x-amz-server-side-encryption-aws-kms-key-id": "SSEKMSKeyId",
}


def _sse_parameters(options: StoreOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """``_sse_headers`` as aiobotocore's parameters. botocore adds an SSE-C key's MD5 and base64-encodes
    it itself; every form of the key is kept out of botocore's DEBUG logs (below)."""
    customer_key = options.sse_customer_key()
    if customer_key is not None:
        assert options.s3_sse_c_key is not None  # or there would be no key
        _hide_in_botocore_logs(
            options.s3_sse_c_key.reveal(), base64.b64encode(customer_key).decode(), repr(customer_key)[2:-1]
        )
        sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": customer_key}
        return sse_c, dict(sse_c)
    write, _ = _sse_headers(options)
    return {_BOTOCORE_SSE[name]: value for name, value in write.items()}, {}


# botocore's DEBUG logging (off unless an application turns it on; lorry never does) shows each request's
# parameters and canonical headers, an SSE-C key among them. These loggers get a filter that replaces the
# secrets lorry handed to botocore with ``***``; it only runs for records a handler would receive.
_BOTOCORE_LOGGERS = (
    "botocore.endpoint",
    "botocore.auth",
    "botocore.parsers",
    "botocore.hooks",
    "botocore.httpsession",
    "aiobotocore.endpoint",
    "aiobotocore.httpsession",
)


class _HideSecrets(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: frozenset[str] = frozenset()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        hidden = text
        for secret in self.secrets:
            hidden = hidden.replace(secret, REDACTED)
        if hidden != text:
            record.msg, record.args = hidden, None
        return True


_hide_secrets = _HideSecrets()
_hide_secrets_lock = threading.Lock()


def _hide_in_botocore_logs(*secrets: str) -> None:
    with _hide_secrets_lock:
        if not _hide_secrets.secrets:
            for name in _BOTOCORE_LOGGERS:
                logging.getLogger(name).addFilter(_hide_secrets)
        _hide_secrets.secrets |= {secret for secret in secrets if len(secret) >= 8}


def _configured_endpoint(session: Any) -> str | None:
    """The S3 endpoint from ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL`` or the config file.

    botocore resolves it inside client creation; it is resolved here first, with botocore's own
    provider, because path-style addressing must be chosen before the client exists.
    """
    from botocore.configprovider import ConfiguredEndpointProvider  # type: ignore[import-untyped]

    if session.get_config_variable("ignore_configured_endpoint_urls"):
        return None
    provider = ConfiguredEndpointProvider(
        full_config=session.full_config, scoped_config=session.get_scoped_config(), client_name="s3"
    )
    endpoint: str | None = provider.provide()
    return endpoint


def content_md5(data: bytes | bytearray | memoryview) -> str:
    """``Content-MD5``: the server checks the bytes it received against it and refuses a mismatch."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class BodyCheck(enum.Enum):
    """How a server is shown that a body arrived as it was sent, by the digest it checks."""

    SIGNED_SHA256 = "sha256"
    """The body's SHA-256 in the request's signature (``x-amz-content-sha256``)."""
    CONTENT_MD5 = "md5"
    """The body's MD5 in ``Content-MD5``, which every S3 server checks."""


async def _body_digest(check: BodyCheck, data: Body | FileSpan) -> bytes:
    """The digest ``check`` sends of ``data`` (bytes, a span of a file, or the rest of a stream, whose
    position is kept), off the event loop for a body large enough to hold it up."""
    if isinstance(data, FileSpan):
        return await asyncio.to_thread(_span_digest, check, data)
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) < 256 << 10:
            return hashlib.new(check.value, data).digest()
        return await asyncio.to_thread(lambda: hashlib.new(check.value, data).digest())
    return await asyncio.to_thread(_stream_digest, check, data)


def _span_digest(check: BodyCheck, span: FileSpan) -> bytes:
    # Read in small pieces that stay in the processor's cache while they are hashed; the C client
    # reads the span again as it sends it, into its own buffer.
    hasher = hashlib.new(check.value)
    buffer = memoryview(bytearray(min(span.size, SPAN_PIECE)))
    at = 0
    while at < span.size:
        count = span.read_into(buffer, at)
        hasher.update(buffer[:count])
        at += count
    return hasher.digest()


def _stream_digest(check: BodyCheck, stream: BinaryIO) -> bytes:
    start = stream.tell()
    hasher = hashlib.new(check.value)
    while chunk := read_chunk(stream, STREAM_READ):
        hasher.update(chunk)
    stream.seek(start)
    return hasher.digest()


def _etag(value: object) -> str:
    return str(value).strip('"')


def _version(value: object) -> str | None:
    # "null" is the version of an object written while versioning was off: it cannot be asked for.
    return None if value in (None, "", "null") else str(value)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A failed request's answer, as either client reports it. ``code`` is S3's error code, else the
    status (an answer to ``HEAD`` has no body to name a code)."""

    status: int | None
    code: str
    message: str
    retry_after: float | None


def _answer(exc: BaseException | None) -> _Answer | None:
    """The answer behind ``exc``; None when the request got none."""
    if isinstance(exc, S3CallError):
        return _Answer(exc.status, exc.code or str(exc.status), exc.message, exc.retry_after)
    if exc is not None and _is_botocore(exc, "ClientError"):
        response: dict[str, Any] = getattr(exc, "response", {})
        error = response.get("Error", {})
        metadata = response.get("ResponseMetadata", {})
        status = metadata.get("HTTPStatusCode")
        code = error.get("Code") or status
        if code is None:
            return None
        return _Answer(
            int(status) if status is not None else None,
            str(code),
            str(error.get("Message") or ""),
            retry_after(metadata.get("HTTPHeaders", {}).get("retry-after")),
        )
    return None


def _code(exc: BaseException | None) -> str | None:
    answer = _answer(exc)
    return None if answer is None else answer.code


def _no_answer(exc: BaseException) -> bool:
    """A failure without an answer (reset, refused, timed out), from aiohttp or from botocore."""
    if isinstance(exc, CrtFailure):
        return True
    return no_answer(exc) or (
        _is_botocore(exc, "BotoCoreError") and type(exc).__name__ in _BOTOCORE_NO_ANSWER
    )


def _is_botocore(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is botocore's exception ``name``: never, while botocore is not even loaded."""
    module = sys.modules.get("botocore.exceptions")
    return module is not None and isinstance(exc, getattr(module, name))


def _boto_failure(exc: BaseException) -> bool:
    """A failure of an aiobotocore call: botocore's own, aiohttp's, or a timeout."""
    http = sys.modules.get("aiohttp")
    return (
        isinstance(exc, TimeoutError)
        or _is_botocore(exc, "BotoCoreError")
        or _is_botocore(exc, "ClientError")
        or (http is not None and isinstance(exc, http.ClientError))
    )
