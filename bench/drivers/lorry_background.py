"""A training-like loop that logs a checkpoint every few steps, in the background.

    python lorry_background.py calibrate SECONDS
    python lorry_background.py loop KIND STEPS EVERY WORK CHECKPOINTS     # LORRY_STORE says where

Each step is ``WORK`` iterations of pure-Python arithmetic: it holds the GIL all the time, the worst
case for anything else running in the process. KIND ``none`` is the loop alone; ``files`` logs the
folder ``CHECKPOINTS/cNN`` (its files) every EVERY steps, ``large`` the file
``CHECKPOINTS/cNN/checkpoint.bin``, both with ``policy="immutable"``. The checkpoints exist before the
loop starts, so writing them is not part of what is measured. Prints the loop's seconds, each
``log_artifact`` call's seconds, the seconds ``add_dir``/``add_file`` took, and how long ``finish``
then waited for the uploads.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import lorry


def work(iterations: int) -> int:
    x = 0
    for i in range(iterations):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x


def calibrate(seconds: float) -> int:
    probe = 200_000
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        work(probe)
        timings.append(time.perf_counter() - started)
    return max(1, int(probe * seconds / statistics.median(timings)))


def loop(kind: str, steps: int, every: int, iterations: int, checkpoints: Path) -> dict[str, object]:
    latencies: list[float] = []
    adding: list[float] = []
    step_seconds: list[float] = []
    with lorry.init(project="bench", job_type="train") as run:
        started = time.perf_counter()
        for step in range(steps):
            step_started = time.perf_counter()
            work(iterations)
            if kind != "none" and (step + 1) % every == 0:
                number = (step + 1) // every - 1
                artifact = lorry.Artifact("checkpoints", type="model", metadata={"step": step})
                began = time.perf_counter()
                if kind == "files":
                    artifact.add_dir(checkpoints / f"c{number:02d}", policy="immutable")
                else:
                    artifact.add_file(checkpoints / f"c{number:02d}" / "checkpoint.bin", policy="immutable")
                called = time.perf_counter()
                run.log_artifact(artifact)
                latencies.append(time.perf_counter() - called)
                adding.append(called - began)
            step_seconds.append(time.perf_counter() - step_started)
        loop_seconds = time.perf_counter() - started
    finished = time.perf_counter() - started - loop_seconds
    return {
        "loop_seconds": loop_seconds,
        "finish_seconds": finished,
        "log_seconds": latencies,
        "add_seconds": adding,
        "slowest_step": max(step_seconds),
        "median_step": statistics.median(step_seconds),
    }


def main(argv: list[str]) -> int:
    if argv[1] == "calibrate":
        print(json.dumps({"iterations": calibrate(float(argv[2]))}))
        return 0
    kind, steps, every, iterations, folder = argv[2], int(argv[3]), int(argv[4]), int(argv[5]), argv[6]
    print(json.dumps(loop(kind, steps, every, iterations, Path(folder))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
