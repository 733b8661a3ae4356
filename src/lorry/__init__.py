"""lorry: version datasets, models and results as artifacts, and move their bytes fast.

The surface is the Weights & Biases Artifacts API, so ``import lorry as wandb`` runs code written for
it::

    import lorry as wandb

    run = wandb.init(job_type="train")
    artifact = wandb.Artifact("bike-dataset", type="dataset")
    artifact.add_file("bicycle-data.h5")
    run.log_artifact(artifact)
"""

from typing import Any

from lorry.api import Api, ArtifactCollection
from lorry.artifact import Artifact, ArtifactEntry, ArtifactTTL
from lorry.errors import (
    AccessDeniedError,
    ArtifactDeletedError,
    ArtifactFailedError,
    ArtifactNotFoundError,
    ConflictError,
    CorruptRecordError,
    IntegrityError,
    InvalidMetadataError,
    InvalidNameError,
    InvalidPathError,
    LocalFileError,
    LorryError,
    NotFoundError,
    ObjectNotFoundError,
    RunNotFoundError,
    SourceChangedError,
    StoreError,
    StoreNotFoundError,
    TransientError,
    UnsafeStoreError,
    UntrustedCertificateError,
    UsageError,
    ValidationError,
)
from lorry.lineage import LoggedRun
from lorry.model.retention import BestRule, RetentionPolicy
from lorry.runs import Run, finish, init, log, log_artifact, use_artifact
from lorry.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "Api",
    "Artifact",
    "ArtifactCollection",
    "ArtifactDeletedError",
    "ArtifactEntry",
    "ArtifactFailedError",
    "ArtifactNotFoundError",
    "ArtifactTTL",
    "BestRule",
    "ConflictError",
    "CorruptRecordError",
    "IntegrityError",
    "InvalidMetadataError",
    "InvalidNameError",
    "InvalidPathError",
    "LocalFileError",
    "LoggedRun",
    "LorryError",
    "NotFoundError",
    "ObjectNotFoundError",
    "RetentionPolicy",
    "Run",
    "RunNotFoundError",
    "Settings",
    "SourceChangedError",
    "StoreError",
    "StoreNotFoundError",
    "TransientError",
    "UnsafeStoreError",
    "UntrustedCertificateError",
    "UsageError",
    "ValidationError",
    "__version__",
    "finish",
    "init",
    "log",
    "log_artifact",
    "use_artifact",
]


def __getattr__(name: str) -> Any:
    # ``lorry.run`` is the current run (or None), as ``wandb.run`` is.
    if name == "run":
        from lorry.runs import current_run

        return current_run()
    raise AttributeError(f"module 'lorry' has no attribute {name!r}")
