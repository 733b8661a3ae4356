"""Progress bars: a thread that reads the engine's counters a few times a second and has tqdm redraw one
line on stderr. Nothing on the transfer's hot path calls into it: the engine only adds to integers.

Shown when ``Settings.progress`` is True, or when it is None (the default) and stderr is a terminal.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

from lorry.model.display import human_size
from lorry.transfer.engine import Counters

REFRESH = 0.25
UNCUT, ROWS = 1000, 20  # columns and rows when the terminal does not say


def enabled(setting: bool | None, stream: TextIO | None = None) -> bool:
    if setting is not None:
        return setting
    stream = stream or sys.stderr
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def summary(counters: Sequence[Counters], elapsed: float) -> tuple[int, int, str]:
    """Bytes done, bytes in all, and the text after the bar: files, bytes and rate."""
    files_done = sum(c.files_done for c in counters)
    files_total = sum(c.files_total for c in counters)
    done = sum(c.bytes_done for c in counters)
    total = sum(c.bytes_total for c in counters)
    rate = done / elapsed if elapsed > 0 else 0.0
    text = (
        f"{files_done}/{files_total} files, {human_size(done)}/{human_size(total)}, {human_size(rate)}/s"
    )
    if not total:  # only empty files: the bar is full once they are all done
        return int(files_done == files_total), 1, text
    return done, total, text


def _screen(stream: TextIO) -> tuple[int, int]:
    """The terminal's width (to cut the line at) and height (bars stacked at most). A terminal that
    reports no size (0 x 0, as a bare pseudo-terminal does) would make tqdm draw nothing."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        size = os.terminal_size((0, 0))
    return size.columns or UNCUT, size.lines or ROWS


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
    columns, rows = _screen(out)
    # The thread below decides when to draw; ``delay`` keeps tqdm from drawing on its own.
    bar = tqdm(desc=label, file=out, ascii="-#", delay=REFRESH, ncols=columns, nrows=rows)

    def update() -> None:
        bar.n, bar.total, text = summary(counters(), time.monotonic() - start)
        bar.bar_format = "{desc} [{bar:24}] " + text.replace("{", "{{").replace("}", "}}")

    def loop() -> None:
        while not stop.wait(REFRESH):
            update()
            bar.refresh()

    thread = threading.Thread(target=loop, name="lorry-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        update()
        bar.refresh()  # the last state, kept on its own line
        out.write("\n")
        out.flush()
        bar.close()  # tqdm never drew on its own, so this only lets the bar go
