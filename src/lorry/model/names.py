"""Names of artifacts, types, aliases and projects, and the paths that address them.

Pure functions: each either returns its input (normalised) or raises an ``InvalidNameError`` that says
which rule was broken.

>>> parse_artifact_path("my-project/bike-dataset:v1")
ArtifactPath(entity=None, project='my-project', name='bike-dataset', alias='v1')
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from lorry.errors import InvalidNameError

MAX_NAME_LENGTH = 128

# Letters, digits, '_', '-' and '.'. A single space between words is accepted too, because the
# original API's own example logs ``Artifact('reference model')``; leading, trailing and repeated
# spaces are not.
_NAME = re.compile(r"[A-Za-z0-9_.\-]+(?: [A-Za-z0-9_.\-]+)*")
_ALIAS = re.compile(r"[A-Za-z0-9_.\-]+")
_VERSION_ALIAS = re.compile(r"v(0|[1-9][0-9]*)")
_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")
_TAG = re.compile(r"[A-Za-z0-9_\-]+(?: +[A-Za-z0-9_\-]+)*")  # the original's rule for tags

LATEST = "latest"


def validate_artifact_name(name: object) -> str:
    """Return ``name`` if it is a valid artifact name, else raise ``InvalidNameError``."""
    text = _check(name, "artifact name", _NAME, "letters, digits, '_', '-' and '.'")
    if text in (".", ".."):  # the name is one segment of the collection's store keys
        raise InvalidNameError(f"artifact name {text!r} is not allowed")
    return text


def validate_type(artifact_type: object) -> str:
    """Types are free text (``dataset``, ``model``...) without ``/``, ``:`` or control characters, at
    most 128 characters."""
    if not isinstance(artifact_type, str):
        raise InvalidNameError(f"artifact type must be a string, not {type(artifact_type).__name__}")
    if not artifact_type.strip():
        raise InvalidNameError("artifact type must not be empty")
    if len(artifact_type) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"artifact type is longer than {MAX_NAME_LENGTH} characters")
    for char in artifact_type:
        kind = unicodedata.category(char)
        if char in "/:" or kind in ("Cc", "Cs"):
            what = {"Cc": "the control character ", "Cs": "the lone surrogate "}.get(kind, "")
            raise InvalidNameError(f"artifact type {artifact_type!r} must not contain {what}{char!r}")
    return artifact_type


def validate_alias(alias: object, *, allow_version: bool = False) -> str:
    """Aliases are names without spaces; ``vN`` is reserved for versions, ``latest`` is managed by lorry."""
    text = _check(alias, "alias", _ALIAS, "letters, digits, '_', '-' and '.'")
    if not allow_version and is_version_alias(text):
        raise InvalidNameError(f"alias {text!r} is reserved: 'vN' names a version and cannot be assigned")
    if text in (".", ".."):
        raise InvalidNameError(f"alias {text!r} is not allowed")
    return text


def validate_tags(tags: object) -> tuple[str, ...]:
    """A list of tags (letters, digits, '_' and '-', words separated by spaces), duplicates dropped,
    order kept."""
    if isinstance(tags, str) or not isinstance(tags, (list, tuple, set, frozenset)):
        raise InvalidNameError(f"tags must be a list of strings, not {type(tags).__name__}")
    checked = (_check(tag, "tag", _TAG, "letters, digits, '_', '-' and single spaces") for tag in tags)
    return tuple(dict.fromkeys(checked))


def check_latest(version: int, newest: int | None) -> None:
    """The one rule for ``latest``: lorry moves it to each new version, so asking for it is accepted
    only where it is already true (a new version, the newest one); leaving it out changes nothing."""
    if version != newest:
        raise latest_is_managed(newest)


def latest_is_managed(newest: int | None) -> InvalidNameError:
    """The one error for ``latest`` set or removed by hand."""
    shown = version_alias(newest) if newest is not None else "no version yet"
    return InvalidNameError(f"alias {LATEST!r} is managed by lorry: it names {shown}, the newest version")


def validate_segment(value: object, what: str) -> str:
    """Entity and project names: one path segment of letters, digits, '_', '-' and '.'."""
    text = _check(value, what, _SEGMENT, "letters, digits, '_', '-' and '.'")
    if text in (".", ".."):
        raise InvalidNameError(f"{what} {text!r} is not allowed")
    return text


def is_version_alias(alias: str) -> bool:
    return _VERSION_ALIAS.fullmatch(alias) is not None


def version_alias(number: int) -> str:
    return f"v{number}"


def version_number(alias: str) -> int | None:
    """``'v12'`` → 12; any other alias → None."""
    match = _VERSION_ALIAS.fullmatch(alias)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class ArtifactPath:
    """``[[entity/]project/]name[:alias]`` as written by a user; missing parts are None."""

    entity: str | None
    project: str | None
    name: str
    alias: str | None

    def __str__(self) -> str:
        prefix = "/".join(p for p in (self.entity, self.project) if p is not None)
        text = f"{prefix}/{self.name}" if prefix else self.name
        return f"{text}:{self.alias}" if self.alias is not None else text


def parse_artifact_path(text: object) -> ArtifactPath:
    """Split ``[[entity/]project/]name[:alias]``; every part is validated."""
    if not isinstance(text, str):
        raise InvalidNameError(f"artifact path must be a string, not {type(text).__name__}")
    body, sep, alias = text.partition(":")
    if sep and not alias:
        raise InvalidNameError(f"artifact path {text!r} has an empty alias after ':'")
    if ":" in alias:
        raise InvalidNameError(f"artifact path {text!r} has more than one ':'")
    parts = body.split("/")
    if len(parts) > 3:
        raise InvalidNameError(f"artifact path {text!r} has more than entity/project/name")
    name = validate_artifact_name(parts[-1])
    project = validate_segment(parts[-2], "project") if len(parts) >= 2 else None
    entity = validate_segment(parts[-3], "entity") if len(parts) == 3 else None
    checked_alias = validate_alias(alias, allow_version=True) if sep else None
    return ArtifactPath(entity=entity, project=project, name=name, alias=checked_alias)


def _check(value: object, what: str, pattern: re.Pattern[str], allowed: str) -> str:
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidNameError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{what} {value[:20]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if pattern.fullmatch(value) is None:
        raise InvalidNameError(f"{what} {value!r} may only contain {allowed}")
    return value
