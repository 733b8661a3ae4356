"""Several processes on one local store, and a process that exits without finishing its run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lorry

WRITER = """
import os, sys, lorry
index = int(sys.argv[1])
with lorry.init(job_type="writer") as run:
    for i in range(int(sys.argv[2])):
        artifact = lorry.Artifact("shared", type="dataset", metadata={"writer": index, "i": i})
        with artifact.new_file("data.bin", mode="wb") as handle:
            # Writers 0 and 1 write the same contents: identical content must not make two versions.
            handle.write(f"{'shared' if index < 2 else index}-{i}".encode())
        run.log_artifact(artifact, aliases=[f"writer-{index}"])
"""


def test_concurrent_processes_get_gapless_unique_versions(tmp_path: Path) -> None:
    writers, per_writer = 4, 6
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(n), str(per_writer)], env=dict(os.environ))
        for n in range(writers)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    versions = lorry.Api().artifacts("dataset", "shared")
    distinct_contents = (writers - 1) * per_writer  # writers 0 and 1 share theirs
    assert [v.version for v in versions] == [f"v{i}" for i in range(distinct_contents)]
    assert len({v.digest for v in versions}) == distinct_contents
    # Within each process, versions follow call order.
    for writer in range(2, writers):
        mine = [int(v.version[1:]) for v in versions if v.metadata["writer"] == writer]
        assert mine == sorted(mine) and len(mine) == per_writer
    for writer in range(writers):
        assert lorry.Api().artifact(f"shared:writer-{writer}").version
    assert lorry.Api().artifact("shared:latest").version == f"v{distinct_contents - 1}"


def test_exit_without_finish_waits_for_pending_logs(tmp_path: Path) -> None:
    script = """
import lorry
run = lorry.init()
artifact = lorry.Artifact("left-behind", type="model")
with artifact.new_file("weights.bin", mode="wb") as handle:
    handle.write(b"w" * (8 << 20))
run.log_artifact(artifact)
# no wait(), no finish(): the interpreter's exit must complete the commit
"""
    result = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    artifact = lorry.Api().artifact("left-behind:v0")
    assert artifact.size == 8 << 20
    assert artifact.logged_by().state == "finished"  # type: ignore[union-attr]
