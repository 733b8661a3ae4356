"""lorry through its public API: log a folder as an artifact, or download the latest version.

python lorry_driver.py up FOLDER NAME        # LORRY_STORE says where
python lorry_driver.py down NAME FOLDER      # with an empty LORRY_CACHE_DIR: a cold cache
"""

from __future__ import annotations

import json
import sys
import time

import lorry


def main(argv: list[str]) -> int:
    direction = argv[1]
    started = time.perf_counter()
    if direction == "up":
        folder, name = argv[2], argv[3]
        with lorry.init(project="bench", job_type="bench-upload") as run:
            artifact = lorry.Artifact(name, type="dataset")
            artifact.add_dir(folder, policy="immutable")
            run.log_artifact(artifact)
            artifact.wait()
        info = {"version": artifact.version, "files": artifact.file_count}
    else:
        name, folder = argv[2], argv[3]
        with lorry.init(project="bench", job_type="bench-download") as run:
            artifact = run.use_artifact(f"{name}:latest")
            artifact.download(folder)
        info = {"version": artifact.version, "files": artifact.file_count}
    print(json.dumps({"op_seconds": time.perf_counter() - started, **info}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
