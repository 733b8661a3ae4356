"""Something to look at in ``lorry ui``: a dataset, the checkpoints of a training run with their loss
and accuracy as metadata (each kept for 30 days unless it is the best, one of them deleted), and an
evaluation of the best one; the collections described and tagged::

    python examples/ui_demo.py
    lorry ui                    # then open the URL it prints

Runs on the store in ``$LORRY_STORE`` (else ``~/.local/share/lorry/store``).
"""

from __future__ import annotations

import math
import random
import tempfile
from datetime import timedelta
from pathlib import Path

import lorry

CHECKPOINTS = 12


def build(project: str = "bikes") -> list[str]:
    """Log the demo's artifacts into ``project``; return their names."""
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for split, rows in (("train", 800), ("valid", 100), ("test", 100)):
            (folder / "rides" / split).mkdir(parents=True)
            for part in range(3):
                lines = [f"{rng.uniform(1, 20):.2f},{rng.uniform(3, 80):.1f}" for _ in range(rows // 3)]
                (folder / "rides" / split / f"part-{part}.csv").write_text("km,minutes\n" + "\n".join(lines))
        (folder / "README.txt").write_text("Bike rides by date: train before May, valid May, test June.")
        with lorry.init(project=project, job_type="collect", config={"source": "city bike share"}) as run:
            data = lorry.Artifact(
                "bike-rides",
                type="dataset",
                description="Rides of the city bike share, May 2026, split by date.",
                metadata={"rows": 1000, "columns": ["km", "minutes"], "source": "city bike share"},
            )
            data.add_dir(folder / "rides", name="rides")
            data.add_file(folder / "README.txt")
            run.log_artifact(data, aliases=["raw"], tags=["may-2026"])
    names = ["bike-rides:raw"]
    with lorry.init(project=project, job_type="train", config={"lr": 3e-4, "epochs": CHECKPOINTS}) as run:
        run.use_artifact("bike-rides:raw")
        for epoch in range(CHECKPOINTS):
            loss = 0.18 + 0.9 * math.exp(-epoch / 3) + rng.uniform(-0.02, 0.04)
            model = lorry.Artifact(
                "ride-time-model",
                type="model",
                description=f"Checkpoint after epoch {epoch + 1}.",
                metadata={"epoch": epoch + 1, "loss": round(loss, 4), "accuracy": round(1 - loss / 1.5, 4)},
            )
            with model.new_file("weights.bin", "wb") as handle:
                handle.write(rng.randbytes(2048 + 256 * epoch))
            with model.new_file("config.json") as handle:
                handle.write('{"layers": 4, "hidden": 128}')
            best = epoch == CHECKPOINTS - 3
            if not best:
                model.ttl = timedelta(days=30)
            run.log_artifact(model, aliases=["best"] if best else [], tags=["candidate"] if best else [])
        names.append(f"ride-time-model ({CHECKPOINTS} checkpoints)")
    api = lorry.Api(overrides={"project": project})
    api.artifact("ride-time-model:v1").delete()  # a checkpoint found to be bad
    for kind, name, description, tags in (
        ("dataset", "bike-rides", "Rides of the city bike share, split by date.", ["tabular", "bikes"]),
        ("model", "ride-time-model", "Predicts a ride's minutes from its km; one checkpoint per epoch.",
         ["regression", "bikes"]),
    ):  # fmt: skip
        collection = api.artifact_collection(kind, name)
        collection.description, collection.tags = description, tags
        collection.save()
    with lorry.init(project=project, job_type="evaluate") as run:
        best = run.use_artifact("ride-time-model:best")
        report = lorry.Artifact(
            "evaluation",
            type="report",
            description=f"Test-set results of {best.version}.",
            metadata={"mae_minutes": 2.71, "model": best.version},
        )
        with report.new_file("report.md") as handle:
            handle.write("# Evaluation\n\nMAE 2.71 minutes on the June rides.\n")
        run.log_artifact(report)
        names.append("evaluation")
    return names


if __name__ == "__main__":
    for name in build():
        print(f"logged {name}")
    api = lorry.Api(overrides={"project": "bikes"})
    kept = [a.version for a in api.artifacts("model", "ride-time-model")]
    print(f"kept {len(kept)} checkpoints; v1 deleted: {'v1' not in kept}")
    print("browse them: lorry ui")
