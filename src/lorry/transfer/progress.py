"""Progress bars: a thread that reads the engine's counters a few times a second and redraws one line
on stderr. Nothing on the transfer's hot path calls into it: the engine only adds to integers.

Shown when ``Settings.progress`` is True, or when it is None (the default) and stderr is a terminal.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from lorry.transfer.engine import Counters

REFRESH = 0.25


def enabled(setting: bool | None, stream: TextIO | None = None) -> bool:
    if setting is not None:
        return setting
    stream = stream or sys.stderr
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def render(label: str, counters: Sequence[Counters], elapsed: float) -> str:
    files_done = sum(c.files_done for c in counters)
    files_total = sum(c.files_total for c in counters)
    done = sum(c.bytes_done for c in counters)
    total = sum(c.bytes_total for c in counters)
    rate = done / elapsed if elapsed > 0 else 0.0
    width = 24
    filled = int(width * done / total) if total else (width if files_done == files_total else 0)
    bar = "#" * filled + "-" * (width - filled)
    return (
        f"{label} [{bar}] {files_done}/{files_total} files, "
        f"{human_bytes(done)}/{human_bytes(total)}, {human_bytes(rate)}/s"
    )


@contextmanager
def progress(
    label: str, counters: Callable[[], Sequence[Counters]], setting: bool | None, stream: TextIO | None = None
) -> Iterator[None]:
    """Draw a bar for ``counters()`` while the block runs (if progress bars are enabled)."""
    out = stream or sys.stderr
    if not enabled(setting, out):
        yield
        return
    stop = threading.Event()
    start = time.monotonic()

    def draw(final: bool = False) -> None:
        line = render(label, counters(), time.monotonic() - start)
        out.write("\r" + line + ("\n" if final else ""))
        out.flush()

    def loop() -> None:
        while not stop.wait(REFRESH):
            draw()

    thread = threading.Thread(target=loop, name="lorry-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        draw(final=True)
