"""A million files: log, list, download and verify one artifact of many tiny files on the local store,
with the peak memory of the process that does it and of lorry's helper process, against the rate at
which the filesystem itself creates files.

``python -m bench.million [--entries N] [--policy mutable|immutable] [--work DIR]``

1. The source tree: N files of a few bytes, 1,000 to a folder, made by a plain loop of exclusive
   creates; its rate (files/s) is the filesystem's own create rate, the bound for lorry here: logging
   a file creates its blob (with ``policy="mutable"``, a small file's snapshot is appended to a pack
   first: no file of its own), downloading it creates the file.
2. Each step runs in a fresh process: log (``add_dir`` + ``log_artifact`` + ``wait``), list (the
   manifest read and every entry looked at), download into an empty folder, verify. Each reports its
   seconds and the peak resident memory (VmHWM) of its own process and of any helper process it
   started; their sum bounds what they held together. Each starts after a ``sync``, with no dirty
   pages of an earlier step (or of the source tree) to write back.

ext4 allocates new inodes slowly for a few minutes after many files were deleted (it passes over
recently freed ones), so a run started right after another (or after any mass delete) measures
both the create rate and lorry slower: leave five minutes between them.

Records go to ``bench/results/million-<UTC time>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PER_FOLDER = 1000

# One step, run in a child process: argv is (step, artifact name, source or target folder, policy).
# Its last line is a JSON report. A helper process is still alive when the step ends, so its VmHWM
# can be read then.
STEP = r"""
import json, os, sys, time
import lorry

def peak(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0

def cpu(pid):
    # user and system CPU seconds of a process so far
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0

def children():
    found = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            found += listing.read().split()
    return found

step, name, folder, policy = sys.argv[1:5]
started = time.perf_counter()
if step == "log":
    with lorry.init(job_type="million") as run:
        artifact = lorry.Artifact(name, type="dataset")
        artifact.add_dir(folder, policy=policy)
        run.log_artifact(artifact)
        artifact.wait()
    count = artifact.file_count
elif step == "list":
    manifest = lorry.Api().artifact(f"{name}:latest").manifest
    count = sum(1 for entry in manifest.values() if entry.size is not None)
elif step == "download":
    artifact = lorry.Api().artifact(f"{name}:latest")
    artifact.download(folder)
    count = artifact.file_count
else:
    artifact = lorry.Api().artifact(f"{name}:latest")
    artifact.verify(folder)
    count = artifact.file_count
seconds = time.perf_counter() - started
helpers = children()
print(json.dumps({
    "entries": count, "seconds": seconds, "caller": peak("self"), "helper": sum(peak(p) for p in helpers),
    "caller_cpu": cpu("self"), "helper_cpu": sum(cpu(p) for p in helpers),
}))
"""


@dataclass(frozen=True)
class Step:
    name: str
    entries: int
    seconds: float
    caller_bytes: int
    helper_bytes: int
    caller_cpu: float = 0.0
    helper_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.entries / self.seconds

    @property
    def peak_bytes(self) -> int:
        return self.caller_bytes + self.helper_bytes


def make_tree(root: Path, entries: int) -> float:
    """``entries`` files of a few bytes (each different) below ``root``; returns files created per second."""
    started = time.perf_counter()
    for first in range(0, entries, PER_FOLDER):
        folder = root / f"d{first // PER_FOLDER:04d}"
        folder.mkdir(parents=True)
        for i in range(first, min(entries, first + PER_FOLDER)):
            fd = os.open(folder / f"f{i:07d}.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, b"entry %d\n" % i)
            finally:
                os.close(fd)
    return entries / (time.perf_counter() - started)


def run_step(step: str, name: str, folder: Path, policy: str, env: dict[str, str]) -> Step:
    done = subprocess.run(
        [sys.executable, "-c", STEP, step, name, str(folder), policy],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"step {step} failed: {done.stderr.strip()}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Step(
        step,
        report["entries"],
        report["seconds"],
        report["caller"],
        report["helper"],
        report["caller_cpu"],
        report["helper_cpu"],
    )


STEPS = ("log", "list", "download", "verify")


def run(entries: int, policy: str, work: Path, steps: tuple[str, ...] = STEPS) -> tuple[float, list[Step]]:
    """The filesystem's create rate and the steps' figures, in a fresh store and cache below ``work``."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = {**os.environ, "LORRY_STORE": str(work / "store"), "LORRY_CACHE_DIR": str(work / "cache")}
    env.pop("LORRY_TRANSFER_PROCESS", None)
    try:
        create_rate = make_tree(work / "source", entries)
        print(json.dumps({"create_rate": create_rate}), flush=True)
        figures = []
        for step in steps:
            # Each step starts with nothing waiting to be written back, as the create-rate loop did: a
            # million small files leave about 4 GiB of dirty pages, and a step that began under them
            # would be held to the disk's writeback speed for the previous step's files, not its own.
            os.sync()
            figures.append(
                run_step(step, "million", work / ("source" if step == "log" else "down"), policy, env)
            )
            print(json.dumps(asdict(figures[-1])), flush=True)  # seen as it comes: a run takes long
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for figure in figures:
        if figure.entries != entries:
            raise RuntimeError(f"step {figure.name} saw {figure.entries} entries, not {entries}")
    return create_rate, figures


def table(entries: int, policy: str, create_rate: float, steps: list[Step]) -> str:
    MiB = 1 << 20
    lines = [
        f"{entries:,} files of a few bytes, `add_dir(policy={policy!r})`, local store; "
        f"the filesystem creates {create_rate:,.0f} files/s",
        "",
        "| step | seconds | entries/s | vs create rate | caller peak | helper peak | together "
        "| caller CPU s | helper CPU s | CPU µs/entry |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in steps:
        lines.append(
            f"| {s.name} | {s.seconds:.1f} | {s.rate:,.0f} | {s.rate / create_rate:.2f} "
            f"| {s.caller_bytes / MiB:,.0f} MiB | {s.helper_bytes / MiB:,.0f} MiB "
            f"| {s.peak_bytes / MiB:,.0f} MiB | {s.caller_cpu:.1f} | {s.helper_cpu:.1f} "
            f"| {(s.caller_cpu + s.helper_cpu) / s.entries * 1e6:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.million", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--policy", choices=("mutable", "immutable"), default="mutable")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lorry-bench-million"))
    args = parser.parse_args(argv)
    create_rate, steps = run(args.entries, args.policy, args.work)
    text = table(args.entries, args.policy, create_rate, steps)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    record = {
        "entries": args.entries,
        "policy": args.policy,
        "create_rate": create_rate,
        "steps": [asdict(s) for s in steps],
    }
    (RESULTS / f"million-{stamp}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"million-{stamp}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
