"""The original documentation's examples, verbatim apart from ``import lorry as wandb``, and the
project's own examples, each run as a user would: a fresh Python process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each block is one code block of the original's page, in order; PREAMBLE gives the names the page
# leaves to the reader (``path``, ``uri``, ``name``) and the files its tables assume.
PREAMBLE = """
import lorry as wandb
import pathlib
for rel, data in [("images/cat.png", b"cat"), ("images/dog.png", b"dog"), ("checkpoints/model.h5", b"ck"),
                  ("model.h5", b"model"), ("bicycle-data.h5", b"bikes")]:
    p = pathlib.Path(rel); p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(data)
path = "model.h5"
uri = pathlib.Path("images/cat.png").resolve().as_uri()
name = "hello.txt"
"""

BLOCKS = [
    """
run = wandb.init(job_type='train')
""",
    """
artifact = wandb.Artifact('bike-dataset', type='dataset')

# Add a file to the artifact's contents
artifact.add_file('bicycle-data.h5')

# Save the artifact version to W&B and mark it as the output of this run
run.log_artifact(artifact)
""",
    """
for i in range(10):
    a = wandb.Artifact('race', type='dataset', metadata={
        "index": i,
    })
    # ... add files to artifact a ...
    run.log_artifact(a)
""",
    """
# Query W&B for an artifact and mark it as input to this run
artifact = run.use_artifact('bike-dataset:v0')

# Download the artifact's contents
artifact_dir = artifact.download()
""",
    """
artifact = wandb.Artifact('bike-model', type='model')
artifact.add_file('model.h5')
run.use_artifact(artifact)
""",
    """
artifact = run.use_artifact('bike-dataset:latest')
""",
    """
artifact = wandb.Artifact('run-3nq3ctyy-bike-model', type='model')
artifact.add_file('model.h5')
run.log_artifact(artifact, aliases=['latest','best-ap50'])
""",
    """
artifact = wandb.Artifact('bike-dataset', type='dataset')
""",
    """
# Add a single file
artifact.add_file(path, name='optional-name')

# Recursively add a directory
artifact.add_dir(path.replace('model.h5', 'images'), name='optional-prefix')

# Return a writeable file-like object, stored as <name> in the artifact
with artifact.new_file(name) as f:
    ...  # Write contents into the file

# Add a URI reference
artifact.add_reference(uri, name='optional-name-ref')
""",
    """
artifact = run.use_artifact('bike-dataset:latest')
""",
    """
datadir = artifact.download(root=None)
""",
    """
path = artifact.get_path('bicycle-data.h5')
path.download()
assert path.ref() is None
""",
    """
artifact = wandb.Artifact('reference model')
artifact.add_file('model.h5')
run.use_artifact(artifact)
""",
    """
# Query W&B for an artifact from another project and mark it
# as an input to this run.
for entity in (None, 'my-entity'):
    other = wandb.init(project='my-project', entity=entity)
    bike = wandb.Artifact('bike-model', type='model'); bike.add_file('model.h5'); other.log_artifact(bike)
    other.finish()
run = wandb.init(job_type='train')
artifact = run.use_artifact('my-project/bike-model:v0')

# Use an artifact from another entity and mark it
# as an input to this run.
artifact = run.use_artifact('my-entity/my-project/bike-model:v0')
""",
    """
api = wandb.Api()
artifact = api.artifact('my-entity/my-project/bike-model:latest')
artifact.download()
""",
    """
api = wandb.Api()
artifact = api.artifact('bike-dataset:latest')

# Update the description
artifact.description = "My new description"

# Selectively update metadata keys
artifact.metadata["oldKey"] = "new value"

# Replace the metadata entirely
artifact.metadata = {"newKey": "new value"}

# Add an alias
artifact.aliases.append('best')

# Remove an alias
artifact.aliases.remove('latest')

# Completely replace the aliases
artifact.aliases = ['replaced']

# Persist all artifact modifications
artifact.save()
""",
    """
artifact = wandb.use_artifact('race:v0')
producer_run = artifact.logged_by()
input_artifacts = producer_run.used_artifacts()
""",
]

CHECKS = """
api = wandb.Api()
# The loop adds no files, so all ten have the same (empty) content: one version, the first call's.
assert [(a.version, a.metadata["index"]) for a in api.artifacts("dataset", "race")] == [("v0", 0)]
assert api.artifact("bike-dataset:replaced").metadata == {"newKey": "new value"}
assert api.artifact("bike-dataset:replaced").description == "My new description"
assert pathlib.Path(datadir, "bicycle-data.h5").read_bytes() == b"bikes"
assert api.artifact("reference model:latest").version == "v0"
assert {a.name for a in producer_run.logged_artifacts()} >= {"bike-dataset", "race"}
print("all examples ran")
"""


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_original_examples_run_verbatim(tmp_path: Path) -> None:
    script = PREAMBLE + "".join(textwrap.dedent(b) for b in BLOCKS) + CHECKS
    result = run_python(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "all examples ran" in result.stdout


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_project_examples_run(example: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for claim in EXAMPLE_CLAIMS[example]:
        assert re.search(claim, result.stdout, re.MULTILINE), (claim, result.stdout)


# What each example shows, in its own output (the examples check their results before printing them).
EXAMPLE_CLAIMS = {
    "download_model.py": [r"^again .*: 2 of 2 files kept as they were, none fetched$",
                          r"^download .* verified$"],
    "pipeline.py": [r"^report +\S+pipeline-report:v0: mean absolute error [0-9.]+ min$",
                    r"^preprocess .* from \S+pipeline-raw:v0$"],
    "quickstart.py": [r"^logged +\S+:v0  4 files", r"^download .*: images/bike\.png, images/cat\.png"],
    "train_background.py": [r"^logged +v0, v1, ", r"^best +v\d+ \(epoch \d+"],
    "ui_demo.py": [r"^logged ride-time-model \(12 checkpoints\)$",
                   r"^kept 11 checkpoints; v1 deleted: True$"],
}
