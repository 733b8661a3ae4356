"""What every backend decides the same way about a failed request, decided here once.

Each backend keeps one table that maps its library's failures onto lorry's errors (``s3.py``:
``_S3_CODES``; ``gcs.py``: ``_mapped``); the facts they share are these:

- ``transient_status``: which HTTP statuses may pass if the request is made again (``408``, ``429``
  and every ``5xx``);
- ``no_answer``: which exceptions mean the request got no answer at all (a reset, a refused
  connection, a timeout, a body cut short), equally worth another try; a TLS certificate that fails
  verification is checked for first by every caller (``tls.tls_error``), since it stays untrusted;
- ``retry_after``: how long a ``Retry-After`` header asks to wait, in seconds or as an HTTP date;
- ``full_answer``: whether an answer says the store is full (a quota, a full cluster): never retried.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from datetime import UTC, datetime


def transient_status(status: int) -> bool:
    """Whether an answer with this status may be different if the request is made again."""
    return status in (408, 429) or status >= 500


def no_answer(exc: BaseException) -> bool:
    """Whether ``exc`` means the request got no answer: worth another try."""
    import aiohttp  # asked only of failures: a local store never loads the HTTP client

    return isinstance(
        exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError | ConnectionError
    )


def retry_after(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """The seconds a ``Retry-After`` header asks for (``120``, or ``Wed, 21 Oct 2026 07:28:00 GMT``);
    None when there is no header or it says neither. A time already past asks for no wait."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


# What a server says when it has no room left: a quota, a full cluster (Ceph's "pool full").
_FULL_CODES = frozenset({"QuotaExceeded", "InsufficientCapacity", "InsufficientStorage", "XMinioStorageFull"})
_FULL_WORDS = ("pool full", "no space left", "storage full", "insufficient storage")


def full_answer(status: int | None, code: str | None, message: str | None) -> bool:
    """Whether an answer says the store is full: not transient in any useful sense, since trying again
    for the whole retry deadline would only hide it."""
    text = (message or "").lower()
    return status == 507 or code in _FULL_CODES or any(word in text for word in _FULL_WORDS)
