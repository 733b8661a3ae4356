"""How a remote store is reached and what it is asked to do with the bytes: TLS trust, server-side
encryption, and how long to wait for it. One frozen value, built by ``Settings.store_options`` and
given to ``open_store``.

TLS: certificates are verified by default, against ``ca_bundle`` when one is given, else against what
the client library trusts by default (botocore: ``AWS_CA_BUNDLE``, the ``ca_bundle`` of the AWS config
file, then certifi's bundle; aiohttp: the system's, which ``SSL_CERT_FILE`` can point elsewhere).
``verify_tls=False`` turns verification off; every store opened that way logs a warning.

Encryption at rest, on every write that creates an object (and, for a customer key, on every read):

- ``s3_sse="AES256"``: SSE-S3, keys managed by the server;
- ``s3_sse="aws:kms"``, with ``s3_sse_kms_key_id`` or the server's default key: SSE-KMS;
- ``s3_sse_c_key``: SSE-C, a 256-bit key of the customer's (base64), held as a ``Secret``. The server
  keeps only a salted hash of it, so every read and ``HEAD`` must send it again;
- ``gcs_kms_key``: a Cloud KMS key name (``projects/.../cryptoKeys/...``) for GCS objects; reads need
  nothing.

Waiting: ``request_timeout`` is how long an S3 or GCS request may make no progress (connecting, sending,
or between bytes received) before it is abandoned and tried again; ``retry_deadline`` is how long
failing calls are tried again before they fail (see ``lorry.transfer.retry``).
"""

from __future__ import annotations

import base64
import binascii
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lorry.errors import ValidationError
from lorry.model.secret import Secret

SSE_MODES = ("AES256", "aws:kms")


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """TLS and encryption options of a remote store; the defaults verify TLS and ask for no encryption.

    >>> StoreOptions(s3_sse_c_key=Secret(base64.b64encode(bytes(32)).decode()))
    StoreOptions(ca_bundle=None, verify_tls=True, s3_sse=None, s3_sse_kms_key_id=None, s3_sse_c_key=Secret('***'), gcs_kms_key=None, request_timeout=60.0, retry_deadline=600.0, s3_body_check=True)
    """  # noqa: E501 - a doctest's output is one line

    ca_bundle: str | None = None
    """A PEM file of the certificate authorities that TLS trusts, instead of the default ones."""
    verify_tls: bool = True
    """Verify TLS certificates. Off only when set so explicitly, and every store opened then warns."""
    s3_sse: str | None = None
    """Server-side encryption of S3 objects: ``AES256`` (SSE-S3) or ``aws:kms`` (SSE-KMS)."""
    s3_sse_kms_key_id: str | None = None
    """The KMS key of ``s3_sse="aws:kms"`` (default: the server's own)."""
    s3_sse_c_key: Secret | None = None
    """SSE-C: a base64 256-bit key of the user's, sent with every write and read; never shown."""
    gcs_kms_key: str | None = None
    """A Cloud KMS key name for GCS objects (customer-managed encryption)."""
    request_timeout: float = 60.0
    """Seconds an S3 or GCS request may make no progress (connecting, sending, receiving) before it is
    abandoned and tried again."""
    retry_deadline: float = 600.0
    """Seconds that failing requests are tried again (a store that does not answer for that long
    fails what waits on it)."""
    s3_body_check: bool = True
    """Send with each S3 write a digest of its body that the server checks (a signed SHA-256 or
    ``Content-MD5``), so that a body damaged on the way is refused and sent again. Off, bodies go as
    most S3 clients send them, with TCP's checksum only: cheaper (on Ceph RGW 16, the SHA-256 costs
    the client and the server about 1.2 CPU s per GiB each), and damage on the way is found only when
    the blob is read and fails its BLAKE3 digest."""

    def __post_init__(self) -> None:
        for name in ("request_timeout", "retry_deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ValidationError(f"setting {name} must be a positive number of seconds, not {value!r}")
        if self.s3_sse is not None and self.s3_sse not in SSE_MODES:
            modes = ", ".join(SSE_MODES)
            raise ValidationError(f"setting s3_sse must be one of {modes}, not {self.s3_sse!r}")
        if self.s3_sse_kms_key_id is not None and self.s3_sse != "aws:kms":
            raise ValidationError("setting s3_sse_kms_key_id needs s3_sse='aws:kms'")
        if self.s3_sse_c_key is not None:
            if self.s3_sse is not None:
                raise ValidationError("settings s3_sse and s3_sse_c_key exclude each other: choose one")
            self.sse_customer_key()  # refuses a malformed key now, not at the first write
        if self.gcs_kms_key is not None and not self.gcs_kms_key.strip():
            raise ValidationError("setting gcs_kms_key is empty")

    def sse_customer_key(self) -> bytes | None:
        """The SSE-C key's 32 bytes (None without one). The error never shows the key."""
        if self.s3_sse_c_key is None:
            return None
        try:
            key = base64.b64decode(self.s3_sse_c_key.reveal(), validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("setting s3_sse_c_key is not valid base64") from None
        if len(key) != 32:
            raise ValidationError(f"setting s3_sse_c_key must be 32 bytes (AES-256), not {len(key)}")
        return key

    def socket_factory(self) -> Callable[[tuple[Any, ...]], socket.socket]:
        """Sockets (for aiohttp's ``socket_factory``) whose sent bytes must be acknowledged, and taken
        from a full window, within ``request_timeout`` or the connection fails: aiohttp has no timeout
        of its own for sending a body, and a server that stops reading would hold it for ever."""
        timeout_ms = max(1, int(self.request_timeout * 1000))

        def make(addr_info: tuple[Any, ...]) -> socket.socket:
            family, kind, proto = addr_info[:3]
            sock = socket.socket(family=family, type=kind, proto=proto)
            if hasattr(socket, "TCP_USER_TIMEOUT") and family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
            return sock

        return make

    def for_references(self) -> StoreOptions:
        """The options for reading objects lorry did not write: the same TLS trust and waiting, no
        encryption settings (those belong to this store's own objects; a customer key sent with a read of an
        object not encrypted with it is refused)."""
        return StoreOptions(
            ca_bundle=self.ca_bundle,
            verify_tls=self.verify_tls,
            request_timeout=self.request_timeout,
            retry_deadline=self.retry_deadline,
        )
