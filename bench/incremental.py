"""A new version of a large dataset with a few files changed: ``python -m bench.incremental``.

Logs a dataset of ``--files`` small files to a fresh local store (or ``--store``), then a new version
with ``--changed`` of them replaced, three ways: a fresh ``Artifact`` holding every file again (each
file is read and hashed, nothing new is stored), ``artifact.new_draft()`` with the changed files
replaced, and ``Artifact(..., incremental=True)`` holding only the changed files. Prints one JSON line
with the seconds each took and how many files each read.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import lorry


def timed(run: lorry.Run, artifact: lorry.Artifact) -> tuple[float, int]:
    started = time.perf_counter()
    run.log_artifact(artifact)
    artifact.wait()
    return time.perf_counter() - started, artifact._counters.files_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=10)
    parser.add_argument("--store", help="store URL (default: a fresh local store in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorry-bench-incremental-") as scratch:
        root = Path(scratch)
        os.environ.setdefault("LORRY_CACHE_DIR", str(root / "cache"))
        os.environ["LORRY_STORE"] = args.store or str(root / "store")
        os.environ["LORRY_TRANSFER_PROCESS"] = "never"  # the same engine for every way
        data = root / "data"
        for i in range(args.files):
            path = data / f"{i % 100:02d}" / f"{i}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(i.to_bytes(8, "little") * 64)
        with lorry.init(job_type="bench-incremental") as run:
            base = lorry.Artifact("bench-incremental", type="dataset")
            base.add_dir(data, policy="immutable")
            first, _ = timed(run, base)
            changed = [data / f"{i % 100:02d}" / f"{i}.bin" for i in range(args.changed)]
            results: dict[str, object] = {"files": args.files, "changed": args.changed, "first_log_s": first}
            for way in ("full", "new_draft", "incremental"):
                for n, path in enumerate(changed):
                    path.write_bytes(f"{way} {n}".encode() * 64)
                started = time.perf_counter()  # building the artifact counts: new_draft reads a manifest
                if way == "full":
                    artifact = lorry.Artifact("bench-incremental", type="dataset")
                    artifact.add_dir(data, policy="immutable")
                elif way == "new_draft":
                    artifact = lorry.Api().artifact("bench-incremental:latest").new_draft()
                    for path in changed:
                        artifact.add_file(path, name=path.relative_to(data).as_posix(), overwrite=True)
                else:
                    artifact = lorry.Artifact("bench-incremental", type="dataset", incremental=True)
                    for path in changed:
                        artifact.add_file(path, name=path.relative_to(data).as_posix())
                built = time.perf_counter() - started
                seconds, read = timed(run, artifact)
                results[f"{way}_s"], results[f"{way}_files_read"] = round(built + seconds, 3), read
                results[f"{way}_version"] = artifact.version
        print(json.dumps(results))


if __name__ == "__main__":
    main()
