"""MLflow's local artifact store: ``log_artifacts`` of a folder in a run, on a ``file:`` tracking URI.

    python mlflow_driver.py FOLDER OUTDIR

MLflow 3 keeps its file backend in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE=true``, which
the harness sets; the artifact path (a local copy of the folder) is the same with any backend.
"""

from __future__ import annotations

import json
import os
import sys
import time

import mlflow


def main(argv: list[str]) -> int:
    folder, outdir = argv[1], argv[2]
    started = time.perf_counter()
    mlflow.set_tracking_uri("file://" + os.path.abspath(os.path.join(outdir, "mlruns")))
    with mlflow.start_run():
        mlflow.log_artifacts(folder, artifact_path="dataset")
    print(json.dumps({"op_seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
