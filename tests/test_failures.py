"""Transient-or-not and Retry-After are decided in one place (``storage/failures.py``), and every
backend reports what a server asked for, in seconds or as an HTTP date, on the ``TransientError``."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from lorry.errors import StoreError, TransientError
from lorry.storage.failures import no_answer, retry_after, transient_status
from lorry.storage.gcs import GCSStore
from lorry.storage.s3 import S3Store
from lorry.transfer.refs import _http_status_error

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    def now() -> datetime:
        return NOW

    assert retry_after("120", now) == 120.0
    assert retry_after(" 1.5 ", now) == 1.5
    assert retry_after("Wed, 02 Dec 2026 10:00:30 GMT", now) == 30.0
    assert retry_after("Wed, 02 Dec 2026 09:00:00 GMT", now) == 0.0  # already past: no wait
    assert retry_after("-5", now) == 0.0
    for unreadable in (None, "", "soon", "nan", "inf", "Wed, 99 Foo 2026"):
        assert retry_after(unreadable, now) is None


def test_which_statuses_and_failures_may_pass() -> None:
    assert all(transient_status(s) for s in (408, 429, 500, 502, 503, 504))
    assert not any(transient_status(s) for s in (400, 401, 403, 404, 409, 412, 416))
    assert no_answer(aiohttp.ServerDisconnectedError())
    assert no_answer(ConnectionResetError())
    assert no_answer(TimeoutError())
    assert not no_answer(aiohttp.InvalidURL("x"))
    assert not no_answer(ValueError())


def _in_seconds(seconds: int) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def server(respond: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", respond)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def slow_down(request: web.Request) -> web.Response:
    body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    return web.Response(
        status=503, text=body, content_type="application/xml", headers={"Retry-After": _in_seconds(30)}
    )


def test_s3_reads_a_retry_after_date_where_its_library_hands_it_over() -> None:
    """aiobotocore (the control calls) hands over a ``503 SlowDown``'s headers: its ``Retry-After``
    date is read. awscrt 0.38.1 (the object calls) reports the answer as its own error code without
    status, headers or body: still ``SlowDown``, retried, at lorry's own pace."""

    async def body() -> None:
        async with server(slow_down) as endpoint:
            store = S3Store(
                "s3://bkt/pre", endpoint_url=endpoint, access_key_id="AKID", secret_access_key="secret"
            )
            try:
                with pytest.raises(TransientError, match="SlowDown"):
                    await store.get("k")  # through awscrt
                with pytest.raises(TransientError, match="SlowDown") as boto:
                    await store.create_multipart("k")  # through aiobotocore
            finally:
                await store.close()
            assert boto.value.retry_after is not None
            assert 25 < boto.value.retry_after <= 30

    asyncio.run(body())


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("<html>busy</html", "not XML"),
        ("<ListAllMyBucketsResult/>", "a ListAllMyBucketsResult, not a listing"),
        (
            "<ListBucketResult><Contents><Key>pre/a</Key><Size>many</Size></Contents></ListBucketResult>",
            "a listed object is malformed",
        ),
        (
            "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>pre/a</Key><Size>1</Size>"
            "</Contents></ListBucketResult>",
            "no NextContinuationToken",
        ),
    ],
)
def test_an_s3_listing_that_cannot_be_read_fails_with_what_is_wrong(body: str, says: str) -> None:
    # A listing that is cut short, or that is not one, must not pass for a shorter listing: the keys
    # missing from it would be taken for absent (by gc, by a download's planning).
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=200, text=body, content_type="application/xml")

    async def main() -> None:
        async with server(answer) as endpoint:
            store = S3Store(
                "s3://bkt/pre", endpoint_url=endpoint, access_key_id="AKID", secret_access_key="secret"
            )
            try:
                with pytest.raises(StoreError, match=says):
                    [meta async for meta in store.list("")]
            finally:
                await store.close()

    asyncio.run(main())


def test_gcs_reads_a_retry_after_date() -> None:
    async def busy(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"code": 429, "message": "rate"}}, status=429, headers={"Retry-After": _in_seconds(30)}
        )

    async def body() -> None:
        async with server(busy) as endpoint:
            store = GCSStore("bkt", "pre", endpoint=endpoint)
            try:
                with pytest.raises(TransientError, match="HTTP 429") as caught:
                    await store.get("k")
            finally:
                await store.close()
            assert caught.value.retry_after is not None
            assert 25 < caught.value.retry_after <= 30

    asyncio.run(body())


def test_an_http_reference_reads_a_retry_after_date() -> None:
    busy = _http_status_error("https://example.test/f", 503, {"Retry-After": _in_seconds(30)}, "reference")
    assert isinstance(busy, TransientError)
    assert busy.retry_after is not None
    assert 25 < busy.retry_after <= 30
    gone = _http_status_error("https://example.test/f", 403, {}, "reference")
    assert isinstance(gone, StoreError)
    assert not isinstance(gone, TransientError)
