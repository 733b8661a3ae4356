"""TLS for every remote connection lorry makes: which certificates are trusted, the warning when
verification is off, and one clear error when a server's certificate is not trusted.

The stores (S3, GCS) and references (``http(s)://``, ``s3://``, ``gs://``) all go through here, so they
trust the same certificates and fail the same way.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from lorry.errors import StoreError, UntrustedCertificateError
from lorry.storage.options import StoreOptions

log = logging.getLogger("lorry")

_warned: set[str] = set()
_warned_lock = threading.Lock()


def aiohttp_ssl(options: StoreOptions) -> ssl.SSLContext | bool:
    """What aiohttp's ``ssl=`` takes: ``False`` without verification, a context that trusts
    ``ca_bundle``, else ``True`` (aiohttp's default verified context, which honours ``SSL_CERT_FILE``)."""
    if not options.verify_tls:
        return False
    if options.ca_bundle is None:
        return True
    try:
        return _trusting(options.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise StoreError(f"cannot load the CA bundle {options.ca_bundle}: {exc}") from exc


@functools.lru_cache(maxsize=8)
def _trusting(ca_bundle: str) -> ssl.SSLContext:
    # Loading a bundle reads and parses a file: done once per bundle, and the context shared (it may be).
    return ssl.create_default_context(cafile=ca_bundle)


def botocore_verify(options: StoreOptions) -> str | bool | None:
    """What botocore's ``verify=`` takes: ``False``, the CA bundle's path, or None to let botocore
    choose as it always does (``AWS_CA_BUNDLE``, the config file's ``ca_bundle``, then certifi)."""
    if not options.verify_tls:
        return False
    return options.ca_bundle


def warn_unverified(options: StoreOptions, where: str) -> None:
    """Log a warning, once per process for each ``where``, that certificates are not verified."""
    if options.verify_tls:
        return
    with _warned_lock:
        if where in _warned:
            return
        _warned.add(where)
    log.warning(
        "TLS certificates are NOT verified for %s (verify_tls is off): anyone on the network path "
        "could read or change what is sent; set LORRY_CA_BUNDLE to trust a private CA instead",
        where,
    )


def endpoint_of(url: str) -> str:
    """``scheme://host:port`` of a URL: where a connection goes, without path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else url


def tls_error(exc: BaseException, where: str) -> StoreError | None:
    """The error to raise for a TLS failure somewhere in ``exc``'s chain (None if there is none).

    A certificate that fails verification becomes ``UntrustedCertificateError`` naming the endpoint and
    the setting that fixes it; any other TLS failure a plain ``StoreError``. Neither is worth a retry.
    """
    for link in _chain(exc):
        # aiohttp keeps the ssl module's error on its own (``certificate_error``) as well as in the chain.
        link = getattr(link, "certificate_error", None) or link  # noqa: PLW2901
        if isinstance(link, ssl.SSLCertVerificationError):
            return untrusted_certificate(where, link.verify_message or link.reason or "verification failed")
    for link in _chain(exc):
        if isinstance(link, ssl.SSLError):
            return StoreError(f"TLS with {where} failed: {link.reason or link}")
    return None


def untrusted_certificate(where: str, reason: str) -> UntrustedCertificateError:
    """The error for a server whose certificate failed verification, naming the settings that fix it."""
    return UntrustedCertificateError(
        f"the TLS certificate of {where} is not trusted ({reason}): set LORRY_CA_BUNDLE (the "
        "ca_bundle setting) to a PEM file holding the certificate of the authority that signed "
        "it, or, on a network you trust, LORRY_VERIFY_TLS=0 to connect without verification"
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
