"""AWS Signature Version 4 for S3 requests sent in a header: pure functions, no I/O.

A request's signature covers its method, path, query, the headers named in ``SignedHeaders`` and the
payload's hash (or ``UNSIGNED-PAYLOAD``), under a key derived from the secret, the day, the region and
the service. The derived key changes once a day and is cached; what is left per request is two SHA-256
and one HMAC over a few hundred bytes, a few microseconds.

>>> signer = Signer("us-east-1")
>>> keys = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
>>> headers = signer.sign(
...     "GET", "examplebucket.s3.amazonaws.com", "/test.txt", "", {"range": "bytes=0-9"},
...     EMPTY_SHA256, keys, "20130524T000000Z",
... )
>>> headers["Authorization"].rpartition("Signature=")[2]
'f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41'
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class Credentials:
    """One set of AWS credentials. ``repr`` never shows the secret or the token."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def encode_path(path: str) -> str:
    """A key's path as S3 expects it, in the URL and in the canonical request alike: every byte
    percent-encoded but the unreserved characters and ``/``."""
    return quote(path, safe="/~")


def encode_query(params: Mapping[str, str]) -> str:
    """The canonical query string: names and values percent-encoded (``/`` too), sorted by name."""
    return "&".join(
        f"{quote(name, safe='~')}={quote(value, safe='~')}" for name, value in sorted(params.items())
    )


class Signer:
    """Signs requests for one region and service with any credentials; safe to share across threads."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        payload_hash: str,
        credentials: Credentials,
        amz_date: str,
    ) -> dict[str, str]:
        """The headers to send: ``headers`` (lower-case names, all signed), ``host`` excepted (the HTTP
        client sends it), plus ``x-amz-date``, ``x-amz-content-sha256``, the session token if any and
        ``Authorization``. ``path`` and ``query`` are given encoded, exactly as they will be sent;
        ``amz_date`` is the request's time as ``YYYYMMDDTHHMMSSZ``."""
        signed = dict(headers)
        signed["host"] = host
        signed["x-amz-date"] = amz_date
        signed["x-amz-content-sha256"] = payload_hash
        if credentials.token is not None:
            signed["x-amz-security-token"] = credentials.token
        names = sorted(signed)
        canonical_headers = "".join(f"{name}:{' '.join(str(signed[name]).split())}\n" for name in names)
        signed_headers = ";".join(names)
        canonical = "\n".join((method, path, query, canonical_headers, signed_headers, payload_hash))
        day = amz_date[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join((_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))
        signature = hmac.new(self._key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256)
        del signed["host"]
        signed["Authorization"] = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature.hexdigest()}"
        )
        return signed

    def _key(self, secret: str, day: str) -> bytes:
        with self._lock:
            key = self._keys.get((secret, day))
            if key is None:
                key = ("AWS4" + secret).encode()
                for part in (day, self.region, self.service, "aws4_request"):
                    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
                if len(self._keys) >= 16:  # yesterday's keys, or credentials rotated many times
                    self._keys.clear()
                self._keys[(secret, day)] = key
            return key
