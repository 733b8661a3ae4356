"""Log a dataset, use it from a second run, download it, and show what happened.

Runs on the embedded local store (``$LORRY_STORE``, else ``~/.local/share/lorry/store``)::

    python examples/quickstart.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import lorry as wandb


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lorry-quickstart-"))
    (work / "images").mkdir()
    for name in ("cat", "dog", "bike"):
        (work / "images" / f"{name}.png").write_bytes(name.encode() * 1000)
    (work / "labels.csv").write_text("file,label\ncat.png,cat\ndog.png,dog\nbike.png,bike\n")

    with wandb.init(job_type="preprocess", config={"source": "quickstart"}) as run:
        dataset = wandb.Artifact("quickstart-images", type="dataset", metadata={"classes": 3})
        dataset.add_dir(work / "images", name="images")
        dataset.add_file(work / "labels.csv")
        run.log_artifact(dataset, aliases=["demo"])
        dataset.wait()
        print(f"logged   {dataset.qualified_name}  {dataset.file_count} files, {dataset.size} bytes")
        print(f"         aliases {dataset.aliases}, digest {dataset.digest[:16]}...")

    with wandb.init(job_type="train") as run:
        used = run.use_artifact("quickstart-images:demo")
        folder = used.download(root=work / "download")
        used.verify(folder)
        print(f"used     {used.qualified_name} in run {run.path}")
        print(f"download {folder}: " + ", ".join(sorted(e.path for e in used.files())))
        producer = used.logged_by()
        assert producer is not None
        print(f"lineage  logged by {producer.path} (job_type={producer.job_type})")

    print(f"store    {wandb.Api().settings.store}")


if __name__ == "__main__":
    main()
