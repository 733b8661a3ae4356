"""A dataset pipeline with lineage: raw data → split → trained model → evaluation report.

Each stage is a run that uses the previous stage's artifact and logs its own, so the store records
which run made what from what. Afterwards the script walks that graph back from the report::

    python examples/pipeline.py
    lorry lineage pipeline-report:latest      # the same graph, drawn by the command line

Runs on the store in ``$LORRY_STORE`` (else ``~/.local/share/lorry/store``).
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import lorry


def make_raw_rides(folder: Path, rows: int = 200) -> Path:
    rng = random.Random(7)
    path = folder / "rides.csv"
    lines = ["distance_km,minutes"]
    for _ in range(rows):
        distance = rng.uniform(1, 20)
        lines.append(f"{distance:.2f},{distance * 3.5 + rng.gauss(0, 2):.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def read_rows(path: Path) -> list[tuple[float, float]]:
    rows = []
    for line in path.read_text().splitlines()[1:]:
        distance, minutes = line.split(",")
        rows.append((float(distance), float(minutes)))
    return rows


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lorry-pipeline-"))

    # 1. Ingest: the raw data as it arrived.
    with lorry.init(job_type="ingest") as run:
        raw = lorry.Artifact("pipeline-raw", type="dataset", description="bike rides as collected")
        raw.add_file(make_raw_rides(work))
        run.log_artifact(raw)

    # 2. Preprocess: split into train and test.
    with lorry.init(job_type="preprocess", config={"test_fraction": 0.25}) as run:
        source = run.use_artifact("pipeline-raw:latest")
        rows = read_rows(Path(source.download(work / "raw")) / "rides.csv")
        cut = int(len(rows) * 0.75)
        split = lorry.Artifact(
            "pipeline-split", type="dataset", metadata={"train": cut, "test": len(rows) - cut}
        )
        for name, part in (("train.json", rows[:cut]), ("test.json", rows[cut:])):
            with split.new_file(name) as handle:
                json.dump(part, handle)
        run.log_artifact(split)

    # 3. Train: fit minutes = slope * distance (least squares through the origin).
    with lorry.init(job_type="train") as run:
        data = run.use_artifact("pipeline-split:latest")
        train = json.loads(Path(data.get_path("train.json").download(work / "split")).read_text())
        slope = sum(d * m for d, m in train) / sum(d * d for d, _ in train)
        model = lorry.Artifact("pipeline-model", type="model", metadata={"slope": round(slope, 4)})
        with model.new_file("model.json") as handle:
            json.dump({"slope": slope}, handle)
        run.log_artifact(model, aliases=["candidate"])

    # 4. Evaluate: the model on the test split; the report records both inputs.
    with lorry.init(job_type="evaluate") as run:
        model = run.use_artifact("pipeline-model:candidate")
        data = run.use_artifact("pipeline-split:latest")
        slope = json.loads(Path(model.get_path("model.json").download(work / "model")).read_text())["slope"]
        test = json.loads(Path(data.get_path("test.json").download(work / "split")).read_text())
        mae = sum(abs(m - slope * d) for d, m in test) / len(test)
        report = lorry.Artifact("pipeline-report", type="report", metadata={"mae_minutes": round(mae, 3)})
        with report.new_file("report.json") as handle:
            json.dump({"mae_minutes": mae, "test_rows": len(test)}, handle)
        run.log_artifact(report)
        report.wait()

    # Walk the lineage back from the report, as anyone with access to the store could.
    print(f"report     {report.qualified_name}: mean absolute error {report.metadata['mae_minutes']} min")
    frontier = [lorry.Api().artifact(report.qualified_name)]
    seen: set[str] = set()
    while frontier:
        artifact = frontier.pop(0)
        producer = artifact.logged_by()
        if producer is None or producer.path in seen:
            continue
        seen.add(producer.path)
        inputs = producer.used_artifacts()
        names = ", ".join(a.qualified_name for a in inputs) or "nothing"
        print(f"{producer.job_type:<10} run {producer.id} made {artifact.qualified_name} from {names}")
        frontier.extend(inputs)
    print(f"try        lorry lineage {report.collection.name}:latest")


if __name__ == "__main__":
    main()
