"""Storing an artifact's files in a helper process, so that the job that logs it keeps its own core.

A training loop that logs in the background shares one interpreter lock with lorry's engine: every
file the engine reads, hashes and sends costs the loop the Python time spent on it, and on a small
machine the engine's threads compete with the loop for cores as well. So large artifacts (at least
``OFFLOAD_FILES`` files or ``OFFLOAD_BYTES`` bytes, by the ``transfer_process`` setting) are stored by
helper processes instead (``HELPERS`` per process, taking parts of the files in turn), each started on
first use, running the same ``store_files`` on an engine of its own, at a lower CPU priority (``NICE``)
so that a busy machine serves the job first.

Only storing moves there: the calling process still draws the version's place, writes the manifest
and commits, so the order of versions and every guarantee of the commit protocol are unchanged. The
helper dies with its parent (``PR_SET_PDEATHSIG``): a job killed mid-log leaves exactly what an
in-process log leaves, blobs that no version names yet.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import gc
import itertools
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lorry.errors import StoreError
from lorry.model.manifest import Entry
from lorry.settings import Settings
from lorry.storage.base import LOCAL_FILES, Store
from lorry.transfer.engine import Counters, Engine
from lorry.transfer.journal import Journal
from lorry.transfer.known import KnownDigests
from lorry.transfer.plan import SMALL_OBJECT
from lorry.transfer.retry import RetryStats
from lorry.transfer.upload import FileSource, store_files

OFFLOAD_FILES = 256
OFFLOAD_BYTES = 64 << 20
NICE = 10
"""How much less CPU priority the helper has than its parent: enough for the job to come first."""
SETTLE_SECONDS = 0.05
"""How long a log that would start a helper gives its caller to show that it waits (``offload_now``)."""
GC_THRESHOLD = 20_000
"""Allocations between two collections of the youngest generation in the helper (Python's: 700)."""
_PR_SET_PDEATHSIG = 1
_TRANSFER_ONLY = (
    "import importlib.util; "
    "sys.modules['lorry'] = importlib.util.module_from_spec(importlib.util.find_spec('lorry'))"
)
"""The helper's ``lorry`` package is made, not run: it needs the transfer layer, not the public API
that the package's ``__init__`` imports (and aiohttp with it). A start takes 0.1 s instead of 0.3 s,
which an artifact of 10,000 small files waits for."""


def wants_helpers_for(settings: Settings, count: int) -> bool:
    """Whether ``count`` files go to the helper processes under ``settings`` by their number alone:
    ``always``, or ``auto`` and at least ``OFFLOAD_FILES``."""
    if settings.transfer_process == "auto":
        return count >= OFFLOAD_FILES
    return settings.transfer_process == "always"


def wants_helper(settings: Settings, files: Sequence[FileSource], store: Store | None = None) -> bool:
    """Whether ``files`` are stored by the helper process under ``settings``: by their number, or
    by the bytes to read. On a local store, a file whose digest is remembered (see ``known.py``) is
    neither read nor hashed: no work worth a helper."""
    if wants_helpers_for(settings, len(files)):
        return True
    if settings.transfer_process == "auto":
        known = KnownDigests(settings.cache_dir) if LOCAL_FILES.of(store) is not None else None
        work = 0
        for f in files:
            if known is None or f.owned or f.stamp.size <= SMALL_OBJECT or known.of_file(f.source) is None:
                work += f.stamp.size
        return work >= OFFLOAD_BYTES
    return False


_waiting = 0
_watchers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
_waiting_lock = threading.Lock()


@contextlib.contextmanager
def caller_waits() -> Iterator[None]:
    """Around a call that blocks the caller until its logs are stored (``wait()``, ``finish()``):
    while it blocks, its interpreter has nothing else to run."""
    global _waiting  # noqa: PLW0603
    with _waiting_lock:
        _waiting += 1
        for loop, event in _watchers:
            loop.call_soon_threadsafe(event.set)
    try:
        yield
    finally:
        with _waiting_lock:
            _waiting -= 1


def caller_is_waiting() -> bool:
    """Whether some thread of this process is blocked in a ``caller_waits`` call."""
    return _waiting > 0


async def _caller_waits_within(seconds: float) -> None:
    """Return once a caller waits (``caller_waits``), or after ``seconds``."""
    watcher = (asyncio.get_running_loop(), asyncio.Event())
    with _waiting_lock:
        if _waiting:
            return
        _watchers.add(watcher)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher[1].wait(), seconds)
    finally:
        with _waiting_lock:
            _watchers.discard(watcher)


def helpers_for(files: Sequence[FileSource]) -> int:
    """How many helper processes share the storing of ``files``: all ``HELPERS`` where the work is
    per file (small files: an interpreter's work for each, on one core per process), one where it
    is bytes (files of ``SMALL_OBJECT`` and more on average: read, hashed and sent outside the
    interpreter lock, so a second process adds its start, 0.5 CPU s here, and no speed)."""
    if not files or sum(f.stamp.size for f in files) >= SMALL_OBJECT * len(files):
        return 1
    return HELPERS


async def offload_now(settings: Settings, helpers: int, turn: int) -> bool:
    """Whether the next part of an artifact chosen for the helpers (``wants_helper``) goes to them, as
    ``helpers_for`` split it: always, unless the work is bytes (one helper), ``transfer_process`` is
    ``auto`` and the caller is blocked waiting for its logs. Then the caller's interpreter is idle,
    the bytes move outside its lock anyway, and a helper would only add its start.

    A log starts as ``log_artifact`` returns, before a caller that waits has called ``wait()``: when
    the helper is not running yet, the caller gets ``SETTLE_SECONDS`` to show which it does."""
    if helpers > 1 or settings.transfer_process != "auto":
        return True
    if not helper(turn).running():
        await _caller_waits_within(SETTLE_SECONDS)
    return not caller_is_waiting()


@dataclass(frozen=True, slots=True)
class Stored:
    """What the helper sends back for one job: the files' digests, and what retrying cost it."""

    digests: list[str]
    retries: RetryStats


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A job sent to a helper, and where its answer goes."""

    loop: asyncio.AbstractEventLoop
    answer: asyncio.Future[Stored]
    process: subprocess.Popen[bytes]


class Helper:
    """The helper process of one process: started on first use, started again if it died.

    Jobs go to its stdin and answers come back on its stdout, each a pickled frame with a length in
    front; a reader thread hands each answer to the job that waits for it. The helper is a plain
    ``python -c`` of this module's ``serve``, not a ``multiprocessing`` child: those import the
    caller's main module again, which a script without ``if __name__ == "__main__"`` cannot survive.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._environ: dict[str, str] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._waiting: dict[int, _Waiting] = {}
        self._jobs = itertools.count()

    async def store_files(
        self, settings: Settings, files: Sequence[FileSource], counters: Counters, retries: RetryStats
    ) -> list[str]:
        """``upload.store_files`` in the helper. ``counters`` advance when the helper is done."""
        stored = await self._run(STORE, settings, tuple(files))
        counters.files_done += len(files)
        counters.bytes_done += sum(f.stamp.size for f in files)
        retries.merge(stored.retries)
        return stored.digests

    async def fetch_small(
        self, settings: Settings, store_root: str, entries: Sequence[Entry], root: Path
    ) -> None:
        """Small entries of the local store at ``store_root`` written below ``root`` by the helper
        (see ``download.fetch_small_part``)."""
        await self._run(FETCH, settings, (store_root, tuple(entries), root))

    async def _run(self, kind: str, settings: Settings, payload: Any) -> Stored:
        """One job of ``kind`` in the helper, and its answer."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Stored] = loop.create_future()
        job = next(self._jobs)
        level = logging.getLogger("lorry").getEffectiveLevel()  # the helper logs what would be seen here
        frame = pickle.dumps((job, kind, settings, payload, level), protocol=pickle.HIGHEST_PROTOCOL)
        process = await loop.run_in_executor(None, self._start)
        with self._lock:
            self._waiting[job] = _Waiting(loop, answer, process)
        try:
            await loop.run_in_executor(None, self._send, process, frame)
            return await answer
        finally:
            with self._lock:
                self._waiting.pop(job, None)

    def running(self) -> bool:
        """Whether the helper process is started and alive."""
        with self._lock:
            return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        """Let the helper finish what it was given and end (it ends when its stdin closes)."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _start(self) -> subprocess.Popen[bytes]:
        """The helper, started if there is none, if it died, or if the environment changed since it
        started: endpoints and credentials come from the environment, and a job must see what the
        caller sees now. A replaced helper finishes what it was given, then ends."""
        environ = dict(os.environ)
        with self._lock:
            current = self._process
            if current is None or current.poll() is not None or environ != self._environ:
                if current is not None and current.stdin is not None:
                    with contextlib.suppress(OSError):
                        current.stdin.close()
                path = f"import sys; sys.path[:0] = {sys.path!r}"  # lorry found where the caller found it
                code = f"{path}; {_TRANSFER_ONLY}; from lorry.session import serve_helper; serve_helper()"
                self._process = subprocess.Popen(
                    [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environ
                )
                self._environ = environ
                threading.Thread(
                    target=self._read, args=(self._process,), name="lorry-helper-reader", daemon=True
                ).start()
                current = self._process
            return current

    def _send(self, process: subprocess.Popen[bytes], frame: bytes) -> None:
        assert process.stdin is not None
        try:
            with self._send_lock:
                _write_frame(process.stdin, frame)
        except (OSError, ValueError) as exc:  # ValueError: its pipe closed (the helper was replaced)
            raise StoreError("the helper process that stores files is gone; nothing was committed") from exc

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        """The reader thread: every answer to its job and every log record to this process's loggers,
        then (at the end) a failure to the jobs left."""
        assert process.stdout is not None
        while (frame := _read_frame(process.stdout)) is not None:
            kind, *rest = pickle.loads(frame)
            if kind == "log":
                record = logging.makeLogRecord(rest[0])
                logging.getLogger(record.name).handle(record)
                continue
            job, ok, value = rest
            with self._lock:
                waiting = self._waiting.get(job)
            if waiting is not None:
                waiting.loop.call_soon_threadsafe(_settle, waiting.answer, ok, value)
        process.wait()
        gone = StoreError(
            f"the helper process that stores files ended (exit status {process.returncode}) before it "
            "finished; nothing was committed"
        )
        with self._lock:
            left = [waiting for waiting in self._waiting.values() if waiting.process is process]
        for waiting in left:
            waiting.loop.call_soon_threadsafe(_settle, waiting.answer, False, gone)


def _settle(answer: asyncio.Future[Stored], ok: bool, value: Any) -> None:
    if answer.done():
        return
    if ok:
        answer.set_result(value)
    else:
        answer.set_exception(value)


HELPERS = max(1, min(2, os.cpu_count() or 1))
"""Helper processes per process. The parts of an artifact's files go to them in turn: most of what
storing a small file costs is the kernel creating it, which runs on as many cores as ask for it."""

_helpers: dict[int, list[Helper]] = {}
_helpers_lock = threading.Lock()


def helper(turn: int = 0) -> Helper:
    """The helper of this process whose turn ``turn`` is (a forked child gets its own: its parent's
    pipes are not its own). Each is started on first use."""
    with _helpers_lock:
        pid = os.getpid()
        if pid not in _helpers:
            _helpers.clear()
            _helpers[pid] = [Helper() for _ in range(HELPERS)]
        return _helpers[pid][turn % HELPERS]


def close_helper() -> None:
    """Let every helper of this process finish what it was given and end."""
    with _helpers_lock:
        current = _helpers.pop(os.getpid(), [])
    for each in current:
        each.close()


# -- the helper's side -----------------------------------------------------------------------------------


STORE = "store"
FETCH = "fetch"
"""The kinds of job a helper runs: store files (``store_job``), or write small downloaded entries."""
Submit = Callable[[str, Settings, Any], concurrent.futures.Future[Stored]]


def serve(submit: Submit) -> None:
    """The helper's main: run every job that arrives on stdin (``submit`` starts it), answer each on
    stdout, end at EOF."""
    _setup()
    jobs = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else prints goes to stderr, never into the answers
    lock = threading.Lock()
    answered = threading.Condition()
    unanswered = 0  # a count, not the futures: a job's result is let go once it is sent

    def send(frame: tuple[Any, ...]) -> None:
        with lock:
            _write_frame(answers, pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))

    def reply(job: int, done: concurrent.futures.Future[Stored]) -> None:
        nonlocal unanswered
        error = done.exception()
        send(
            ("answer", job, True, done.result())
            if error is None
            else ("answer", job, False, _portable(error))
        )
        with answered:
            unanswered -= 1
            answered.notify_all()

    logger = logging.getLogger("lorry")
    logger.addHandler(_ForwardLogs(send))
    logger.propagate = False
    while (frame := _read_frame(jobs)) is not None:
        job, kind, settings, payload, level = pickle.loads(frame)
        logger.setLevel(level)
        with answered:
            unanswered += 1
        submit(kind, settings, payload).add_done_callback(functools.partial(reply, job))
    with answered:
        answered.wait_for(lambda: unanswered == 0)


class _ForwardLogs(logging.Handler):
    """The helper's log records, sent to the parent to be handled there as its own."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record) if record.exc_info else record.getMessage()
            fields = {"name": record.name, "levelno": record.levelno, "levelname": record.levelname}
            self._send(("log", {**fields, "msg": message, "created": record.created}))
        except Exception:
            self.handleError(record)


def _setup() -> None:
    """Die with the parent; step back in CPU priority; collect cycles less often."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the line above took effect
        os._exit(1)
    with contextlib.suppress(OSError):
        os.nice(NICE)
    # Every request allocates a few dozen short-lived containers (awscrt's request, its futures and
    # callbacks), freed by reference counting; collected every 700 allocations (the default), the
    # requests in flight were traversed again and again, and the modules loaded so far with them:
    # about a tenth of the helper's CPU on many small files. What is loaded now stays out of every
    # collection, and the youngest generation is collected a fraction as often.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


async def store_job(engine: Engine, settings: Settings, files: tuple[FileSource, ...]) -> Stored:
    """One job of the helper: store ``files`` with ``engine`` on the store ``settings`` name."""
    before = engine.retries.copy()
    store = engine.store(settings.store, settings.store_options)
    digests = await store_files(engine, store, files, Counters(), Journal(settings.cache_dir))
    return Stored(digests, engine.retries.since(before))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` as an error that survives the trip back: as itself if it pickles, else as an error of
    the same class with its message, else as a ``StoreError`` with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        pass
    try:
        return type(exc)(str(exc))
    except Exception:
        return StoreError(f"{type(exc).__name__}: {exc}")


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(len(payload).to_bytes(8, "big") + payload)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "big")
    payload = stream.read(size)
    return payload if len(payload) == size else None
