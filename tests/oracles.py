"""What the README says is accepted, written out independently of lorry's own checks, so a property
test can hold lorry to both directions: everything valid is accepted (and read back as it was given),
everything invalid is refused.

Each function follows the README's words ("What is accepted") rather than lorry's code: no regular
expression or helper of ``lorry.model`` is used here.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _word(text: str) -> bool:
    return bool(text) and all(c in NAME_CHARS for c in text)


def valid_artifact_name(value: object) -> bool:
    """Letters, digits, '_', '-', '.', and single spaces between words; 1-128 characters; not '.'
    or '..'."""
    if not isinstance(value, str) or not 1 <= len(value) <= 128 or value in (".", ".."):
        return False
    return all(_word(word) for word in value.split(" "))


def valid_alias(value: object) -> bool:
    """Letters, digits, '_', '-', '.'; 1-128 characters; not '.', '..' or a version name ('v0',
    'v12'; 'v01' is not one)."""
    if not isinstance(value, str) or not _word(value) or len(value) > 128 or value in (".", ".."):
        return False
    number = value[1:]
    is_version = value.startswith("v") and number.isdigit() and str(int(number)) == number
    return not is_version


def valid_type(value: object) -> bool:
    """Free text without '/', ':' or control characters; not blank; at most 128 characters; valid
    UTF-8."""
    if not isinstance(value, str) or not value.strip() or len(value) > 128 or not _encodable(value):
        return False
    return not any(c in "/:" or unicodedata.category(c) == "Cc" for c in value)


def valid_description(value: object) -> bool:
    return value is None or (isinstance(value, str) and _encodable(value))


def normal_entry_name(value: object) -> str | None:
    """The name an entry is stored under ('a//b/./c' → 'a/b/c', 'a\\\\b' → 'a/b'), or None where it
    must be refused: not text, absolute, '..', a control character, not UTF-8, no file named, a
    part longer than 255 bytes."""
    if not isinstance(value, str) or not value or not _encodable(value):
        return None
    if any(unicodedata.category(c) == "Cc" for c in value):
        return None
    if value.startswith("/") or (len(value) >= 2 and value[0].isalpha() and value[1] == ":"):
        return None
    parts = [part for part in value.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts or any(len(part.encode()) > 255 for part in parts):
        return None
    return "/".join(parts)


def storable_metadata(value: object, depth: int = 0) -> bool:
    """A JSON object (or None) whose keys are text and whose values are finite numbers, 64-bit
    integers, valid UTF-8 text, booleans, None, lists and objects of the same."""
    if depth == 0:
        return value is None or (isinstance(value, Mapping) and _storable(value, 0))
    return _storable(value, depth)


def _storable(value: object, depth: int) -> bool:
    if depth > 64:
        return False
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return _encodable(value)
    if isinstance(value, int):
        return -(1 << 63) <= value <= (1 << 64) - 1
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(
            isinstance(k, str) and _encodable(k) and _storable(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return all(_storable(v, depth + 1) for v in value)
    return False


def plain(value: Any) -> Any:
    """What a storable value reads back as: tuples become lists, subclasses their base type."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
