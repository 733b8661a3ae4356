"""Storage backends: each implements the Store contract in ``base.py``.

``open_store(url, options)`` picks one from a URL: a path or ``file://`` URL (the embedded default),
``s3://bucket/prefix`` or ``gs://bucket/prefix``; ``options`` (TLS trust, server-side encryption) go to
the remote ones.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from lorry.errors import ValidationError
from lorry.storage.base import Store
from lorry.storage.options import StoreOptions

DEFAULT_OPTIONS = StoreOptions()


def open_store(url: str, options: StoreOptions = DEFAULT_OPTIONS) -> Store:
    """The store that ``url`` names. Remote clients connect lazily, on first use."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme in ("", "file"):
        from lorry.storage.local import LocalStore

        path = unquote(urlsplit(url).path) if scheme == "file" else url
        return LocalStore(path)
    if scheme == "s3":
        from lorry.storage.s3 import S3Store

        return S3Store(url, options=options)
    if scheme == "gs":
        from lorry.storage.gcs import GCSStore

        return GCSStore.from_url(url, options=options)
    raise ValidationError(f"unsupported store URL {url!r}: use a path, file://, s3:// or gs://")
