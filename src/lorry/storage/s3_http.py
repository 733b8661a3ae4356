"""S3's object calls (HEAD, GET, PUT, UploadPart) sent straight through aiohttp, signed here.

Every blob and record goes through these four calls, so their cost per request bounds how many small
files a second lorry moves. Through aiobotocore each costs about a millisecond of CPU, mostly in
building, signing and parsing the request in its generic machinery; here it is a signature (see
``sigv4``), a header dict and aiohttp's own work. Everything else S3 can do (listings, multipart
lifecycles, versions) stays with aiobotocore, in ``s3.py``.

Used for servers reached through an endpoint URL (Ceph RGW, MinIO, moto, any S3-compatible server),
addressed by path (``endpoint/bucket/key``), as ``s3.py`` addresses them too. Non-2xx answers become
``S3ResponseError``, which ``s3.py`` maps onto lorry's errors exactly as it maps aiobotocore's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from lorry.storage.failures import retry_after
from lorry.storage.sigv4 import UNSIGNED_PAYLOAD, Credentials, Signer, encode_path, encode_query

ERROR_BODY_LIMIT = 64 << 10
"""Bytes of an error answer read for its code and message; the rest is not worth waiting for."""


class S3ResponseError(Exception):
    """An S3 answer other than 2xx: its status and, when the body says, its error code and message."""

    def __init__(self, status: int, code: str | None, message: str, retry_after: float | None) -> None:
        super().__init__(f"{status} {code or ''} {message}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Answer:
    """A finished call: its headers and (for a GET read whole) its body."""

    headers: CIMultiDictProxy[str]
    body: bytes


class DirectS3:
    """The object calls of one bucket on one endpoint. One aiohttp session, made on first use on the
    running loop; ``close()`` releases it."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        region: str,
        credentials: Callable[[], Awaitable[Credentials]],
        *,
        ssl: Any,
        max_connections: int,
        request_timeout: float,
        socket_factory: Callable[[tuple[Any, ...]], socket.socket],
    ) -> None:
        parts = urlsplit(endpoint)
        self._base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/{encode_path(bucket)}/"
        self._base_path = f"{parts.path.rstrip('/')}/{encode_path(bucket)}/"
        self._host = _host_header(URL(endpoint))
        self._signer = Signer(region)
        self._credentials = credentials
        self._ssl = ssl
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=request_timeout, sock_read=request_timeout
        )
        self._socket_factory = socket_factory
        self._session: aiohttp.ClientSession | None = None

    async def call(
        self,
        method: str,
        key: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | bytearray | memoryview | AsyncIterator[bytes] | None = None,
        read: bool = False,
    ) -> Answer:
        """One request; the body of the answer is read only if ``read``."""
        async with self.open(method, key, query=query, headers=headers, body=body) as response:
            data = await response.read() if read else b""
            return Answer(response.headers, data)

    @asynccontextmanager
    async def open(
        self,
        method: str,
        key: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | bytearray | memoryview | AsyncIterator[bytes] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request whose answer was 2xx (else ``S3ResponseError``); its body is read in the block."""
        path = encode_path(key)
        query_string = encode_query(query) if query else ""
        credentials = await self._credentials()
        signed = self._signer.sign(
            method,
            self._host,
            self._base_path + path,
            query_string,
            headers or {},
            UNSIGNED_PAYLOAD,
            credentials,
            time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        )
        url = URL(self._base + path + ("?" + query_string if query_string else ""), encoded=True)
        session = self._session or self._open_session()
        # A redirect (S3's answer for a bucket of another region) is an error: followed, it would be
        # sent with a signature for the wrong host.
        async with session.request(method, url, headers=signed, data=body, allow_redirects=False) as response:
            if response.status >= 300:
                raise await _failure(response)
            yield response

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, ssl=self._ssl, socket_factory=self._socket_factory
        )
        # Bodies are blobs: handed over byte for byte, never decompressed on the way.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept-Encoding",),
        )
        return self._session


def content_md5(data: bytes | bytearray | memoryview) -> str:
    """``Content-MD5``: the server checks the bytes it received against it and refuses a mismatch."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def content_md5_async(data: bytes | bytearray | memoryview) -> str:
    """``content_md5``, off the event loop for bodies large enough to hold it up."""
    if len(data) < 256 << 10:
        return content_md5(data)
    return await asyncio.to_thread(content_md5, data)


def _host_header(url: URL) -> str:
    # What aiohttp sends as Host: the port only if it is not the scheme's default.
    host = url.raw_host or ""
    return host if url.is_default_port() else f"{host}:{url.port}"


_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{0,2000})</Message>")


async def _failure(response: aiohttp.ClientResponse) -> S3ResponseError:
    try:
        text = await response.content.read(ERROR_BODY_LIMIT) if response.method != "HEAD" else b""
    except (aiohttp.ClientError, TimeoutError):
        text = b""
    code = _CODE.search(text)
    message = _MESSAGE.search(text)
    return S3ResponseError(
        response.status,
        code.group(1).decode(errors="replace") if code else None,
        message.group(1).decode(errors="replace") if message else "",
        retry_after(response.headers.get("Retry-After")),
    )
