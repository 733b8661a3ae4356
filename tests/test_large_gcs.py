"""A 2 GiB file logged to GCS (the emulator) goes up as a resumable upload a chunk at a time: the
logging process's peak resident memory stays far below the file's size.

The source is a sparse file (2 GiB of holes: written in no time, hashed as zeros), and only the log is
measured, in a child process, so the test's own memory is not counted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import lorry
from lorry import _bridge
from lorry.model.layout import blob_key
from lorry.session import session
from tests.fixtures_gcs import start_emulator
from tests.test_large import GiB, MiB, run_child

pytestmark = pytest.mark.slow

LOG_ONLY = """
import json, sys, lorry
source = sys.argv[1]
with lorry.init(job_type="large") as run:
    artifact = lorry.Artifact("sparse", type="model")
    artifact.add_file(source, policy="immutable")
    run.log_artifact(artifact)
    artifact.wait()
(entry,) = artifact.manifest.entries.values()
# This process's own peak (VmHWM): ru_maxrss would also count the test process it was forked from.
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss": peak, "digest": entry.digest, "size": entry.size}))
"""


def test_two_gib_file_to_gcs_with_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "sparse.bin"
    with open(source, "wb") as handle:
        handle.truncate(2 * GiB)
    # An emulator of its own, which holds the 2 GiB in memory only until this test ends.
    with start_emulator(tmp_path) as emulator:
        emulator.create_bucket("large")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
        monkeypatch.setenv("LORRY_STORE", "gs://large/store")
        monkeypatch.setenv("LORRY_TRANSFER_PROCESS", "never")  # measured in the logging process itself
        started = time.monotonic()
        report = run_child(LOG_ONLY, str(source))
        print(f"logged 2 GiB to the emulator in {time.monotonic() - started:.1f} s")
        assert report["size"] == 2 * GiB
        settings = lorry.Settings.load()
        store = session(settings).store(settings.store, settings.store_options)
        stored = _bridge.run_sync(store.head(blob_key(str(report["digest"]))))
        assert stored.size == 2 * GiB
    assert int(str(report["peak_rss"])) < 300 * MiB, report
