"""One writer of the many-writers stress test: ``python tests/stress_worker.py WORKER START COUNT JOURNAL``.

Logs ``COUNT`` versions of the artifact ``stressed`` (log calls ``START`` .. ``START + COUNT - 1``) to
the store in ``$LORRY_STORE``, five at a time in the background, then waits for them. Before each call
it appends an ``intent`` line to ``JOURNAL`` (what it is about to log), after each commit a ``done``
line (which version it got), each flushed to disk, so that a test that kills it knows what may and
what must have been committed. Contents are derived from their key, so the test can rebuild them.
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import IO

import lorry

ARTIFACT = "stressed"
POOL = 6  # contents shared by every worker: identical content logged by several processes
LARGE = 36 << 20  # above the multipart threshold


def contents(key: str) -> dict[str, bytes]:
    """The files of content ``key``: ``pool-K`` (shared), ``wW-I`` (one worker's), ``big-...`` (large)."""
    rng = random.Random(key)
    if key.startswith("big-"):
        return {"weights.bin": rng.randbytes(LARGE)}
    files = {}
    for n in range(1 + rng.randrange(3)):
        size = rng.choice([0, 1, 100, 4096, 70_000, 300_000])
        files[f"part-{n}/data.bin" if n else "data.bin"] = rng.randbytes(size)
    return files


def choose(worker: int, call: int, large: bool) -> tuple[str, list[str]]:
    rng = random.Random(f"{worker}-{call}")
    if large and rng.random() < 0.04:
        key = f"big-{worker}-{call}"
    elif rng.random() < 0.3:
        key = f"pool-{rng.randrange(POOL)}"
    else:
        key = f"w{worker}-{call}"
    aliases = [alias for alias in ("best", "prod") if rng.random() < 0.3]
    return key, aliases


def note(journal: IO[str], **line: object) -> None:
    journal.write(json.dumps(line) + "\n")
    journal.flush()
    os.fsync(journal.fileno())


def main() -> None:
    worker, start, count, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    large = os.environ.get("STRESS_LARGE") == "1"
    with open(path, "a") as journal, lorry.init(project="stress", job_type="stress") as run:
        pending: list[tuple[int, str, lorry.Artifact]] = []
        for call in range(start, start + count):
            key, aliases = choose(worker, call, large)
            artifact = lorry.Artifact(ARTIFACT, type="dataset", metadata={"key": key})
            for name, data in contents(key).items():
                with artifact.new_file(name, mode="wb") as handle:
                    handle.write(data)
            note(journal, kind="intent", call=call, key=key, aliases=aliases, run=run.id)
            run.log_artifact(artifact, aliases=aliases)
            pending.append((call, key, artifact))
            if len(pending) == 5 or call == start + count - 1:
                for done_call, done_key, done in pending:
                    done.wait()
                    note(
                        journal,
                        kind="done",
                        call=done_call,
                        key=done_key,
                        version=int(done.version[1:]),
                        digest=done.digest,
                        run=run.id,
                    )
                pending.clear()


if __name__ == "__main__":
    main()
