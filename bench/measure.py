"""Running one client as a subprocess and measuring its whole process tree.

- wall: from spawn to exit, what a user waits for;
- CPU: user + system seconds of the client and every descendant it waited for (``wait4``);
- peak RSS: the larger of ``wait4``'s ``ru_maxrss`` (the largest single process of the tree) and the
  largest sum of resident memory over the tree, sampled every 20 ms from ``/proc`` (clients that run
  helper processes at once, like the original SDK's service, count them all);
- the machine: CPU seconds the server's processes and everything else on the machine used meanwhile
  (``/proc/stat``), so a figure taken while other work shared the machine can be told apart.

The client is started by ``launch.py``, a small process of its own, so that the harness's memory does
not show in the client's peak (see there).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCH = Path(__file__).resolve().parent / "launch.py"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    wall: float
    user: float
    system: float
    peak_rss: int
    returncode: int
    stdout: str
    stderr: str
    server_cpu: float
    other_cpu: float  # CPU seconds used on the machine by neither the client nor the server
    load: float  # 1-minute load average at the end

    @property
    def cpu(self) -> float:
        return self.user + self.system


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found.extend(int(p) for p in handle.read().split())
        except OSError:
            continue
    return found


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants now."""
    total = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(_children(pid))
    return total


def process_cpu(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (those still running)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, IndexError, ValueError):
            continue
    return total


def machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (not idle, not waiting for I/O) since boot."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICKS


class _Sampler(threading.Thread):
    """The peak, over time, of the summed RSS of ``pid``'s descendants (not ``pid`` itself)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, sum(tree_rss(child) for child in _children(self.pid)))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800,
    server_pids: Sequence[int] = (),
) -> Measured:
    """Run ``command`` to completion and measure it (see the module docstring)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        report = Path(tmp, "usage.json")
        server_before = process_cpu(server_pids)
        machine_before = machine_cpu()
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-S", "-I", str(LAUNCH), str(report), *command],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # its own process group: a timeout ends the whole tree
        )
        sampler = _Sampler(process.pid)
        sampler.start()
        timer = threading.Timer(timeout, _kill_group, (process.pid,))
        timer.start()
        try:
            _, status, _ = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
            sampler.stop()
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        server = process_cpu(server_pids) - server_before
        machine = machine_cpu() - machine_before
        try:
            usage = json.loads(report.read_text())
        except (OSError, ValueError):  # the launcher itself was killed (a timeout)
            usage = {"wall": wall, "user": 0.0, "system": 0.0, "maxrss": 0}
        out.seek(0)
        err.seek(0)
        user, system = float(usage["user"]), float(usage["system"])
        return Measured(
            wall=float(usage["wall"]),
            user=user,
            system=system,
            peak_rss=max(int(usage["maxrss"]), sampler.peak),
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            server_cpu=server,
            other_cpu=max(0.0, machine - user - system - server),
            load=os.getloadavg()[0],
        )


def _kill_group(pid: int) -> None:
    # The group was created for this one child (start_new_session): only what it started is in it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
