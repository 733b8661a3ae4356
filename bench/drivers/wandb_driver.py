"""The original SDK (``wandb``) in offline mode: log a folder as an artifact and finish the run.

    python wandb_driver.py FOLDER OUTDIR

``add_dir`` with the SDK's default policy (each file hashed and copied to its staging area), then
``log_artifact`` and ``finish``, which waits until the offline run has recorded it. Every wandb folder
(run files, cache, staging, config) is under OUTDIR.
"""

from __future__ import annotations

import json
import sys
import time

import wandb


def main(argv: list[str]) -> int:
    folder, outdir = argv[1], argv[2]
    started = time.perf_counter()
    run = wandb.init(mode="offline", project="bench", dir=outdir)
    artifact = wandb.Artifact("dataset", type="dataset")
    artifact.add_dir(folder)
    run.log_artifact(artifact)
    run.finish()
    print(json.dumps({"op_seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
