"""Arguments of the original API that have no meaning here: accepted, and said so once in the log.

Code written for the original passes them (``is_tmp``, ``multipart``, ``reinit``, ...); refusing them
would break that code for nothing, and ignoring them silently would hide that they do nothing.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("lorry")

_noted: set[str] = set()
_lock = threading.Lock()


def accept_unused(call: str, argument: str, value: object, default: object, why: str) -> None:
    """Log once per process that ``call``'s ``argument`` was given a value with no effect here."""
    if value is default or value == default:
        return
    note_once(f"{call}:{argument}", f"{call}({argument}=...) has no effect in lorry: {why}")


def note_once(key: str, message: str) -> None:
    """Log ``message`` the first time ``key`` is noted in this process."""
    with _lock:
        if key in _noted:
            return
        _noted.add(key)
    log.info("%s", message)
