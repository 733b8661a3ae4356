"""Values that must never be shown, and URIs made fit to show.

A ``Secret`` holds a key or a password: its ``repr`` and ``str`` are ``***``, so a setting that holds one
can be printed, logged or put in an error message without giving it away; only ``reveal()`` returns the
value, at the one place that sends it. ``redact_uri`` and ``redact_text`` hide what a URI may carry:
the user information (a password or a token) and the values of its query (a signed URL's signature,
credential and token), keeping the names so a message still says what the URI was. ``redact_setting``
shows a setting's own value to its user, hiding what looks secret by name. Every part of lorry that
shows a secret-bearing value goes through one of these three.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# The schemes whose path is an object key taken verbatim: ``?`` and ``#`` are part of the key there.
_KEY_SCHEMES = ("s3", "gs", "file")
_URI_IN_TEXT = re.compile(r"[a-z][a-z0-9+.\-]*://[^\s'\"<>]+", re.I)


class Secret:
    """A secret string. ``repr`` and ``str`` show ``***``; ``reveal()`` is the only way to the value.

    >>> key = Secret("hunter2")
    >>> key, f"{key}"
    (Secret('***'), '***')
    >>> key.reveal()
    'hunter2'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))


def redact_uri(uri: str) -> str:
    """``uri`` with its user information and the value of every query parameter replaced by ``***``.

    >>> redact_uri("https://cdn.example.com/data.bin?X-Amz-Signature=abc123&X-Amz-Expires=60")
    'https://cdn.example.com/data.bin?X-Amz-Signature=***&X-Amz-Expires=***'
    >>> redact_uri("https://alice:pa55@example.com/a")
    'https://***@example.com/a'
    >>> redact_uri("s3://bucket/odd?key")  # an S3 key may hold '?': it is shown as it is
    's3://bucket/odd?key'
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return REDACTED  # not a URI that can be taken apart: show none of it
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    if parts.scheme.lower() in _KEY_SCHEMES:
        return uri if netloc == parts.netloc else uri.replace(parts.netloc, netloc, 1)
    query = "&".join(_redact_parameter(p) for p in re.split(r"[&;]", parts.query)) if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """``text`` (a library's error message, say) with every URI in it passed through ``redact_uri``."""
    return _URI_IN_TEXT.sub(lambda match: redact_uri(match.group(0)), text)


def _redact_parameter(parameter: str) -> str:
    name, sep, _ = parameter.partition("=")
    return f"{name}={REDACTED}" if sep else REDACTED


_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^/@:\s]*):(?P<secret>[^/@\s]+)@", re.I
)
_SECRET_NAMES = "secret|token|password|passwd|credential|signature|sig|key|auth"
_SECRET_WORDS = re.compile(_SECRET_NAMES, re.I)
_QUERY_SECRET = re.compile(rf"(?P<name>[?&;][^=&;#\s]*(?:{_SECRET_NAMES})[^=&;#\s]*=)[^&;#\s]*", re.I)


def redact_setting(name: str, value: str) -> str:
    """A setting's value as ``lorry config`` and the web UI show it: the whole value of a setting whose
    name looks secret, else the value with a URL's password and secret-looking query parameters hidden
    (the rest stays readable: it is the user's own configuration, shown to them)."""
    if _SECRET_WORDS.search(name):
        return REDACTED if value and value != "None" else value
    value = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", value)
    return _QUERY_SECRET.sub(lambda m: f"{m['name']}{REDACTED}", value)
