"""Start one client and report its resource usage: ``python -S -I launch.py REPORT COMMAND...``.

Linux keeps a process's peak resident memory across ``exec``, and a child starts with its parent's:
a client started straight from the harness (which holds datasets' digests and more) would show the
harness's memory as its own. This launcher is a small process (a few MiB, without ``site``) that
starts the client, waits for it with ``wait4`` and writes to REPORT the client's wall seconds, user and
system CPU seconds and peak RSS (the client's and its waited-for descendants'), then exits with the
client's status. Only the standard library, so it runs with any Python.
"""

import json
import os
import sys
import time


def main() -> int:
    report, command = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, dict(os.environ))
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    with open(report, "w") as handle:
        json.dump(
            {
                "wall": wall,
                "user": usage.ru_utime,
                "system": usage.ru_stime,
                "maxrss": usage.ru_maxrss * 1024,
                "status": status,
            },
            handle,
        )
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
