"""How values are shown to people, and read back from them: sizes in binary units, times as ages.

The command line, the web UI and the progress bars all show sizes through ``human_size``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: float | None) -> str:
    """``1536`` → ``'1.5 KiB'`` (a size, or a rate in bytes per second); None → ``'-'``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``'10G'``, ``'500M'``, ``'1.5GiB'``, ``'4096'`` → bytes (binary units: 1K = 1024)."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"invalid size {text!r}: use a number with K, M, G or T, like 10G")
    number, unit = match.groups()
    power = "kmgtp".find(unit.lower()) + 1 if unit else 0
    return int(float(number) * 1024**power)


def human_time(iso: str | None, now: datetime | None = None) -> str:
    """An ISO timestamp → ``'3 minutes ago'`` (recent) or the local date and time."""
    if not iso:
        return "-"
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    for limit, unit, size in ((3600, "minute", 60), (86400, "hour", 3600), (86400 * 14, "day", 86400)):
        if seconds < limit:
            if seconds < 60:
                return "just now"
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return when.astimezone().strftime("%Y-%m-%d %H:%M")
