"""Download a model onto a machine that serves it: no run, just a lookup and a verified download.

The script fetches ``serving-model:production`` (publishing a small one first if the store has none,
so that it runs on a fresh store), checks the files byte for byte, and loads the model. Downloading
again fetches nothing: only missing or different files are transferred::

    python examples/download_model.py
    lorry get serving-model:production --root /srv/model     # the same from a shell

Runs on the store in ``$LORRY_STORE`` (else ``~/.local/share/lorry/store``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import lorry

MODEL = "serving-model"
ALIAS = "production"


def publish_demo_model() -> None:
    """What a training job would have done: log a model and mark it for production."""
    with lorry.init(job_type="train") as run:
        model = lorry.Artifact(MODEL, type="model", description="demo model", metadata={"accuracy": 0.93})
        with model.new_file("config.json") as handle:
            json.dump({"layers": [16, 8, 1], "activation": "relu"}, handle)
        with model.new_file("weights.bin", mode="wb") as handle:
            handle.write(bytes(range(256)) * 4096)  # 1 MiB
        run.log_artifact(model, aliases=[ALIAS])


def main() -> None:
    api = lorry.Api()
    if not api.artifact_exists(f"{MODEL}:{ALIAS}"):
        publish_demo_model()

    target = Path(tempfile.mkdtemp(prefix="lorry-serve-")) / "model"
    model = api.artifact(f"{MODEL}:{ALIAS}")
    started = time.perf_counter()
    folder = Path(model.download(target))
    first = time.perf_counter() - started
    files = [p for p in folder.rglob("*") if p.is_file()]
    stamps = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files]  # a rewritten file changes both
    started = time.perf_counter()
    model.download(target)  # everything is already there and verified: nothing to fetch
    second = time.perf_counter() - started
    kept = sum((p.stat().st_ino, p.stat().st_mtime_ns) == s for p, s in zip(files, stamps, strict=True))
    model.verify(folder)

    config = json.loads((folder / "config.json").read_text())
    print(f"model    {model.qualified_name} {model.aliases}, {model.file_count} files, {model.size} bytes")
    print(f"metadata {model.metadata}")
    print(f"download {folder} in {first * 1000:.0f} ms, verified")
    print(f"again    {second * 1000:.0f} ms: {kept} of {len(files)} files kept as they were, none fetched")
    print(f"loaded   layers {config['layers']}")


if __name__ == "__main__":
    main()
