"""A store in a Google Cloud Storage bucket, over the JSON API with gcloud-aio-storage.

``gs://bucket/prefix``: keys are relative to ``prefix``. Preconditions map onto object generations:

- ``Create``: ``ifGenerationMatch=0`` (succeed only if no live object has the name);
- ``Update(etag)``: the etag *is* the object's generation, sent as ``ifGenerationMatch=<etag>``;
- ``Overwrite``: no precondition.

GCS answers a lost precondition with ``412 Precondition Failed``, which becomes ``ConflictError``.
Other errors are mapped at this boundary: ``404`` to ``ObjectNotFoundError``, ``401``/``403`` to a
``StoreError`` saying the credentials were refused, everything else (other statuses, connection
failures, timeouts) to ``StoreError``; the original exception stays attached as ``__cause__``.

Endpoint and credentials: ``STORAGE_EMULATOR_HOST`` (or ``endpoint=``) points the store at an emulator
and sends no credentials; otherwise gcloud-aio-auth finds credentials the usual way
(``GOOGLE_APPLICATION_CREDENTIALS``, the gcloud SDK's application default credentials, then the GCE
metadata server). The endpoint is resolved once, when the store is built.

TLS and encryption at rest come from ``options`` (``StoreOptions``): the session verifies certificates
against ``ca_bundle`` (else the system's), and with ``gcs_kms_key`` every upload names that Cloud KMS
key (``kmsKeyName``); reads of such objects need nothing more.

Why only ``Store`` and not ``MultipartStore``: GCS has no S3-style multipart upload. The two things
that look like it do not honour the contract, which lets the transfer layer send numbered parts in any
order, in parallel, replace a part, and list the parts stored so far:

- a resumable upload session takes bytes strictly in order, one request at a time, every chunk but
  the last a multiple of 256 KiB, and remembers only how many bytes it has persisted, so parts can be
  neither parallel nor replaced nor listed;
- parts uploaded as temporary objects and joined with ``compose`` (at most 32 sources per call, so a
  tree of composes for more) would be honest on real GCS, but ``compose`` crashes the emulator these
  tests run against, so that code could not be tested against any real server here.

Large objects therefore go up in one ``put`` of a stream (a file): a resumable upload session that
takes the bytes in order, a chunk per request, so memory holds one chunk whatever the object's size.
Bytes and small streams go in a single-request media upload. Downloads need nothing special: ``get``
and ``stream`` take byte ranges, which the transfer layer fetches in parallel.

Retries and parallelism live in ``lorry.transfer``: this module makes one HTTP request per call (more
for a multi-page ``list`` or a resumable upload) and never retries.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import BinaryIO, cast
from urllib.parse import quote, urlsplit

import aiohttp
from gcloud.aio.storage import Storage
from yarl import URL

from lorry.errors import (
    AccessDeniedError,
    ConflictError,
    ObjectNotFoundError,
    StoreError,
    TransientError,
    UsageError,
    ValidationError,
)
from lorry.storage.base import (
    OVERWRITE,
    STREAM_READ,
    Body,
    Create,
    ObjectMeta,
    PutMode,
    Update,
    VersionedBody,
    VersionedMeta,
    check_key,
    is_stream,
    read_chunk,
    read_whole,
    remaining,
)
from lorry.storage.failures import no_answer, retry_after, transient_status
from lorry.storage.options import StoreOptions
from lorry.storage.tls import aiohttp_ssl, endpoint_of, tls_error, warn_unverified

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
GCS_API_ROOT = "https://storage.googleapis.com"
CONTENT_TYPE = "application/octet-stream"
STREAM_CHUNK = 1 << 20
_MAX_ERROR_TEXT = 300


class GCSStore:
    """``Store`` over a GCS bucket, optionally under a prefix.

    >>> store = GCSStore.from_url("gs://my-bucket/team/lorry")  # doctest: +SKIP
    >>> meta = await store.put("a/b.bin", b"bytes", CREATE)  # doctest: +SKIP
    >>> meta.etag  # the object's generation  # doctest: +SKIP
    '1718000000000000'

    One aiohttp session per store, created on the event loop of the first call and closed by
    ``close()``; after ``close()`` the store may be used again (on any loop) and opens a new session.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        service_file: str | None = None,
        connect_timeout: float = 30.0,
        read_timeout: float = 300.0,
        max_connections: int = 256,
        list_page_size: int | None = None,
        upload_chunk_size: int = STREAM_READ,
        options: StoreOptions | None = None,
    ) -> None:
        """Build a store; nothing is contacted until the first call.

        ``endpoint``: an emulator's ``http://host:port`` (default: ``$STORAGE_EMULATOR_HOST``, else
        GCS itself). ``service_file``: a credentials JSON file (default: the usual discovery).
        ``read_timeout`` bounds each wait for bytes from the server, not a whole transfer, so large
        objects can stream for as long as they keep moving. ``list_page_size``: ``maxResults`` for
        ``list`` (default: the server's, 1000 on GCS). ``upload_chunk_size``: a stream larger than
        this goes up as a resumable upload in chunks of this size (a multiple of 256 KiB), smaller
        ones in one request. ``options``: TLS trust and the KMS key.
        """
        if upload_chunk_size <= 0 or upload_chunk_size % (256 << 10):
            raise ValidationError(f"upload_chunk_size {upload_chunk_size} is not a multiple of 256 KiB")
        if not bucket or "/" in bucket:
            raise ValidationError(f"invalid GCS bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        if endpoint is None:
            endpoint = os.environ.get(EMULATOR_ENV) or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            endpoint = f"http://{endpoint}"
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self._service_file = service_file
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._max_connections = max_connections
        self._list_page_size = list_page_size
        self._upload_chunk = upload_chunk_size
        self._options = options or StoreOptions()
        self._session: aiohttp.ClientSession | None = None
        self._storage: Storage | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint: str | None = None,
        service_file: str | None = None,
        options: StoreOptions | None = None,
    ) -> GCSStore:
        """A store for ``gs://bucket`` or ``gs://bucket/prefix``."""
        parts = urlsplit(url)
        if parts.scheme != "gs" or not parts.netloc or parts.query or parts.fragment:
            raise ValidationError(f"not a gs://bucket/prefix URL: {url!r}")
        # As for S3: a request that makes no progress for ``request_timeout`` is abandoned and retried.
        timeout = (options or StoreOptions()).request_timeout
        return cls(
            parts.netloc,
            parts.path,
            endpoint=endpoint,
            service_file=service_file,
            connect_timeout=timeout,
            read_timeout=timeout,
            options=options,
        )

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}" if self.prefix else f"gs://{self.bucket}"

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"GCSStore({self.url!r}{where})"

    # -- the Store contract -------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectMeta:
        storage = await self._client()
        with self._mapped(key):
            resource = await storage.download_metadata(self.bucket, self._name(key), timeout=self._t())
        return self._meta(key, resource)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return b"".join([chunk async for chunk in self.stream(key, start, end)])

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if start < 0 or (end is not None and end < 0):
            raise ValidationError(f"invalid byte range [{start}, {end}) for {key}")
        if end is not None and end <= start:
            await self.head(key)  # an empty range still needs the object to exist
            return
        headers: dict[str, str] = {}
        if start or end is not None:
            # HTTP ranges are inclusive; ``end`` here is exclusive.
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        storage = await self._client()
        name = self._name(key)
        with self._mapped(key, range_ok=True) as outcome:
            response = await storage.download_stream(self.bucket, name, headers=headers, timeout=self._t())
        if outcome.unsatisfiable:  # 416: the range starts at or past the end of the object
            return
        with self._mapped(key):
            async with response as resp:
                http = cast("aiohttp.ClientResponse", resp)
                # A server that ignores Range answers 200 with the whole object: cut it here.
                skip = start if http.status == 200 else 0
                remaining = None if end is None else end - start
                async for chunk in http.content.iter_chunked(STREAM_CHUNK):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk = chunk[skip:]  # noqa: PLW2901
                        skip = 0
                    if remaining is not None:
                        chunk = chunk[:remaining]  # noqa: PLW2901
                        remaining -= len(chunk)
                    if chunk:
                        yield chunk
                    if remaining == 0:
                        break

    async def put(self, key: str, data: Body, mode: PutMode = OVERWRITE) -> ObjectMeta:
        parameters: dict[str, str] = {}
        if isinstance(mode, Create):
            parameters["ifGenerationMatch"] = "0"
        elif isinstance(mode, Update):
            if not mode.etag.isdecimal():
                # Every etag this store hands out is a generation; anything else cannot match.
                raise ConflictError(f"{key} has no generation {mode.etag!r} in {self.url}")
            parameters["ifGenerationMatch"] = mode.etag
        if self._options.gcs_kms_key is not None:
            parameters["kmsKeyName"] = self._options.gcs_kms_key
        if is_stream(data) and (size := remaining(data)) > self._upload_chunk:
            return await self._put_resumable(key, data, size, mode, parameters)
        body = await read_whole(data)  # at most one chunk
        storage = await self._client()
        with self._mapped(key, conflict=mode):
            resource = await storage.upload(
                self.bucket,
                self._name(key),
                io.BytesIO(body),  # shares a bytes object without copying it
                content_type=CONTENT_TYPE,
                # An empty object goes up as a multipart upload (metadata and media in one request):
                # gcp-storage-emulator drops the connection on an empty media upload; GCS takes both.
                metadata={"contentType": CONTENT_TYPE} if not body else None,
                parameters=parameters,
                force_resumable_upload=False,  # one request; retries belong to the transfer layer
                timeout=self._t(),
            )
        return self._meta(key, resource)

    async def _put_resumable(
        self, key: str, stream: BinaryIO, size: int, mode: PutMode, parameters: dict[str, str]
    ) -> ObjectMeta:
        """A resumable upload: a session started with the preconditions, then the bytes in chunks of
        ``upload_chunk_size``, one request each, so memory holds one chunk whatever the size.

        The server answers every chunk but the last with ``308`` and how much it has persisted; a
        chunk it kept only part of is sent again from there. A failure fails the whole ``put`` (a retry
        starts a new session), so no session outlives its call.
        """
        storage = await self._client()
        session = self._session
        assert session is not None  # made with the client
        headers = await self._auth(storage)
        params = {**parameters, "uploadType": "resumable", "name": self._name(key)}
        start = stream.tell()
        with self._mapped(key, conflict=mode):
            async with session.post(
                f"{self.endpoint or GCS_API_ROOT}/upload/storage/v1/b/{self.bucket}/o",
                params=params,
                json={"name": self._name(key), "contentType": CONTENT_TYPE},
                headers={
                    **headers,
                    "X-Upload-Content-Type": CONTENT_TYPE,
                    "X-Upload-Content-Length": str(size),
                },
            ) as response:
                await _raise_for_status(response)
                location = response.headers.get("Location")
            if not location:
                raise StoreError(f"GCS started no upload session for {key} in {self.url}")
            offset = 0
            while True:
                wanted = min(self._upload_chunk, size - offset)
                chunk = await asyncio.to_thread(read_chunk, stream, wanted)
                if len(chunk) != wanted:
                    raise ValidationError(f"{stream!r} ended before the {size} bytes it held")
                end = offset + wanted
                async with session.put(
                    URL(location, encoded=True),
                    data=chunk,
                    headers={**headers, "Content-Range": f"bytes {offset}-{end - 1}/{size}"},
                ) as response:
                    if response.status != 308:  # the last chunk: the object's resource
                        await _raise_for_status(response)
                        resource = await response.json(content_type=None)
                        break
                    persisted = _persisted(response.headers.get("Range"))
                if persisted != end:
                    stream.seek(start + persisted)
                offset = persisted
        return self._meta(key, resource)

    async def delete(self, key: str) -> None:
        storage = await self._client()
        try:
            with self._mapped(key):
                await storage.delete(self.bucket, self._name(key), timeout=self._t())
        except ObjectNotFoundError:
            return

    async def list(self, prefix: str) -> AsyncIterator[ObjectMeta]:
        async for key, item in self._listed(prefix, "name,size,generation"):
            yield self._meta(key, item)

    async def close(self) -> None:
        session, self._session, self._storage, self._loop = self._session, None, None, None
        if session is not None:
            await session.close()

    # -- generations, for references to objects that lorry did not write ---------------------------
    #
    # ``raw=True`` takes the key verbatim, without ``check_key``: a reference names any object of a
    # bucket, and GCS names may hold ``//``, ``.`` and ``..`` segments that the store's own keys may not.
    # Only these read-only calls accept it.

    async def head_version(
        self, key: str, generation: str | None = None, *, raw: bool = False
    ) -> VersionedMeta:
        """Metadata of ``key`` (of its generation ``generation``; else of the live object), with its
        generation and checksums. ``ObjectNotFoundError`` if that object does not exist."""
        params = {"alt": "json"}
        if generation is not None:
            params["generation"] = generation
        name = self._reference_name(key, raw)
        with self._mapped(key):
            async with await self._get_object(name, params) as response:
                text = await response.text()
        try:
            resource: object = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"GCS returned malformed metadata for {key} in {self.url}") from exc
        return self._versioned(key, resource)

    @asynccontextmanager
    async def open_version(
        self, key: str, generation: str | None = None, *, raw: bool = False
    ) -> AsyncIterator[VersionedBody]:
        """Start reading ``key`` (its generation ``generation``; else the live object).

        The bytes are the stored ones, never transcoded (``Accept-Encoding: gzip``): they are what the
        object's checksums cover. The generation (also the ``etag``, as everywhere in this store) and
        the checksums of ``x-goog-hash`` are known before any byte is read. ``ObjectNotFoundError`` if
        that object does not exist. The connection is released when the block ends.
        """
        params = {"alt": "media"}
        if generation is not None:
            params["generation"] = generation
        name = self._reference_name(key, raw)
        with self._mapped(key):
            response = await self._get_object(name, params, {"Accept-Encoding": "gzip"})
        async with response:
            headers = response.headers
            hashes = _goog_hashes(headers.getall("x-goog-hash", []))
            served = headers.get("x-goog-generation") or None
            size = headers.get("x-goog-stored-content-length") or headers.get("Content-Length")
            yield VersionedBody(
                key=key,
                size=int(size) if size is not None and size.isdecimal() else None,
                etag=served,
                version_id=served,
                md5=hashes.get("md5"),
                crc32c=hashes.get("crc32c"),
                chunks=self._chunks(key, response),
            )

    async def list_latest(self, prefix: str) -> AsyncIterator[VersionedMeta]:
        """Every live object under ``prefix`` (the latest generation of its name), in key order, with
        its generation and checksums."""
        async for key, item in self._listed(prefix, "name,size,generation,md5Hash,crc32c"):
            yield self._versioned(key, item)

    async def _get_object(
        self, name: str, params: Mapping[str, str], headers: Mapping[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """One GET of an object on the JSON API; an error status raises ``ClientResponseError``.

        gcloud-aio-storage's public calls cannot send a ``generation``, so this request is made here,
        on the store's own session, with gcloud-aio-auth's token (none for an emulator), and read
        through ``_mapped`` like every other call.
        """
        storage = await self._client()
        session = self._session
        assert session is not None  # made with the client
        sent = {**(headers or {}), **await self._auth(storage)}
        url = f"{self.endpoint or GCS_API_ROOT}/storage/v1/b/{self.bucket}/o/{quote(name, safe='')}"
        # With Accept-Encoding asked for explicitly, the bytes are wanted as the server sends them.
        response = await session.get(
            url, params=params, headers=sent, auto_decompress="Accept-Encoding" not in sent
        )
        if response.status >= 400:
            async with response:
                await _raise_for_status(response)
        return response

    async def _auth(self, storage: Storage) -> dict[str, str]:
        """The headers of a request made here rather than by gcloud-aio-storage: its token (none
        for an emulator)."""
        if self.endpoint is not None:
            return {}
        return {"Authorization": f"Bearer {await storage.token.get()}"}

    async def _chunks(self, key: str, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        with self._mapped(key):
            async for chunk in response.content.iter_chunked(STREAM_CHUNK):
                yield chunk

    # -- helpers ------------------------------------------------------------------------------------

    async def _listed(self, prefix: str, fields: str) -> AsyncIterator[tuple[str, object]]:
        """``(key, resource)`` of every object under ``prefix``, in key order, page by page."""
        storage = await self._client()
        base = f"{self.prefix}/" if self.prefix else ""
        params: dict[str, str] = {"prefix": base + prefix, "fields": f"items({fields}),nextPageToken"}
        if self._list_page_size is not None:
            params["maxResults"] = str(self._list_page_size)
        while True:
            with self._mapped(None):
                page = await storage.list_objects(self.bucket, params=dict(params), timeout=self._t())
            items = page.get("items", [])
            if not isinstance(items, list):
                raise StoreError(f"listing {self.url} returned a malformed page")
            # An object named exactly like the store's prefix (a console "folder") has no key: skipped.
            found = [(key, item) for item in items if (key := self._key_of(item, base))]
            # GCS lists in name order; sorting each page also covers servers that do not.
            found.sort(key=lambda pair: pair[0])
            for pair in found:
                yield pair
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = str(token)

    async def _client(self) -> Storage:
        loop = asyncio.get_running_loop()
        if self._storage is not None:
            if loop is not self._loop:
                raise UsageError(
                    f"{self!r} is bound to another event loop; close() it there, or use one store per loop"
                )
            return self._storage
        trust = aiohttp_ssl(self._options)
        warn_unverified(self._options, endpoint_of(self.endpoint or GCS_API_ROOT))
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self._max_connections, ssl=trust, socket_factory=self._options.socket_factory()
            ),
            timeout=self._timeout,
        )
        try:
            storage = Storage(
                service_file=self._service_file,
                session=session,  # type: ignore[arg-type]  # typed as requests.Session in the shared build
                api_root=self.endpoint or GCS_API_ROOT,
                api_is_dev=self.endpoint is not None,
            )
        except (OSError, ValueError, KeyError) as exc:
            await session.close()
            raise StoreError(f"cannot load GCS credentials for {self.url}: {exc}") from exc
        self._session, self._storage, self._loop = session, storage, loop
        return storage

    def _t(self) -> int:
        # gcloud-aio's Storage annotates timeouts as int seconds of total time, which would cut off a
        # long download; its AioSession accepts an aiohttp.ClientTimeout, passed through unchanged,
        # which bounds each read instead.
        return cast(int, self._timeout)

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _reference_name(self, key: str, raw: bool) -> str:
        if not raw:
            return self._name(key)
        if not key:
            raise ValidationError("invalid store key ''")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key_of(self, item: object, base: str) -> str:
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name.startswith(base):
            raise StoreError(f"listing {self.url} returned an object outside its prefix: {name!r}")
        return name[len(base) :]

    def _meta(self, key: str, resource: object) -> ObjectMeta:
        if isinstance(resource, Mapping):
            size, generation = resource.get("size"), resource.get("generation")
            if isinstance(size, str | int) and isinstance(generation, str | int):
                try:
                    return ObjectMeta(
                        key=key,
                        size=int(size),
                        etag=str(int(generation)),
                        modified=_timestamp(resource.get("updated")),
                    )
                except ValueError:
                    pass
        raise StoreError(f"GCS returned malformed metadata for {key} in {self.url}")

    def _versioned(self, key: str, resource: object) -> VersionedMeta:
        meta = self._meta(key, resource)
        assert isinstance(resource, Mapping)  # or _meta had refused it
        md5, crc32c = resource.get("md5Hash"), resource.get("crc32c")
        return VersionedMeta(
            key=key,
            size=meta.size,
            etag=meta.etag,
            version_id=meta.etag,
            md5=md5 if isinstance(md5, str) and md5 else None,
            crc32c=crc32c if isinstance(crc32c, str) and crc32c else None,
        )

    @contextmanager
    def _mapped(
        self, key: str | None, *, conflict: PutMode | None = None, range_ok: bool = False
    ) -> Iterator[_Outcome]:
        """Map gcloud-aio and aiohttp failures onto lorry's exceptions."""
        outcome = _Outcome()
        what = f"{key} in {self.url}" if key is not None else self.url
        try:
            yield outcome
        except aiohttp.ClientResponseError as exc:
            status = exc.status
            if status == 416 and range_ok:
                outcome.unsatisfiable = True
                return
            detail = _short(exc.message)
            if status == 404:
                if key is None:
                    raise StoreError(f"GCS bucket {self.bucket} not found ({detail})") from exc
                raise ObjectNotFoundError(f"{key} not found in {self.url}") from exc
            if status == 412:
                if isinstance(conflict, Create):
                    raise ConflictError(f"{key} already exists in {self.url}") from exc
                raise ConflictError(f"{key} changed since it was read ({self.url})") from exc
            if status in (401, 403):
                raise AccessDeniedError(
                    f"GCS refused the credentials for {what} (HTTP {status}): {detail}; check "
                    f"GOOGLE_APPLICATION_CREDENTIALS and the account's permissions on bucket {self.bucket}"
                ) from exc
            if transient_status(status):
                wait = retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                raise TransientError(
                    f"GCS request for {what} failed (HTTP {status}): {detail}", retry_after=wait
                ) from exc
            raise StoreError(f"GCS request for {what} failed (HTTP {status}): {detail}") from exc
        except aiohttp.ClientSSLError as exc:
            # A certificate that is not trusted stays untrusted: final, unlike other connection failures.
            tls = tls_error(exc, endpoint_of(self.endpoint or GCS_API_ROOT))
            raise (tls or StoreError(f"GCS request for {what} failed: {exc}")) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Resets, refused connections, timeouts: no answer from the server, worth another try.
            failed = f"GCS request for {what} failed: {type(exc).__name__}: {exc}"
            raise (TransientError(failed) if no_answer(exc) else StoreError(failed)) from exc


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    """An error status as ``ClientResponseError`` with the server's text, as gcloud-aio raises it, so
    ``_mapped`` reads a request made here like one of the library's."""
    if response.status < 400:
        return
    text = await response.text(errors="replace")
    raise aiohttp.ClientResponseError(
        response.request_info,
        response.history,
        status=response.status,
        message=text or response.reason or "",
        headers=response.headers,
    )


def _persisted(value: str | None) -> int:
    """How many bytes a resumable session holds, from its ``Range: bytes=0-N`` (none: 0)."""
    if value is None:
        return 0
    _, sep, last = value.partition("-")
    if not sep or not last.strip().isdecimal():
        raise StoreError(f"GCS answered a resumable upload with a malformed Range: {value!r}")
    return int(last) + 1


class _Outcome:
    """What ``_mapped`` learnt about a request it let through (a 416 for a range past the end)."""

    unsatisfiable = False


def _goog_hashes(headers: list[str]) -> dict[str, str]:
    """``x-goog-hash: crc32c=...,md5=...`` (one header or several) as ``{'md5': ..., 'crc32c': ...}``."""
    found: dict[str, str] = {}
    for header in headers:
        for part in header.split(","):
            alg, sep, value = part.strip().partition("=")
            if sep and value and value != "None":
                found[alg.lower()] = value
    return found


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."


def _timestamp(value: object) -> datetime | None:
    """An RFC 3339 time as GCS writes it (``2024-05-01T12:00:00.123Z``), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
