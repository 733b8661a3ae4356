"""A training loop that logs a checkpoint every epoch without waiting for it to be stored.

``run.log_artifact`` returns at once: hashing and storing happen in the background while the next
epoch trains. Versions still follow call order (epoch 0 is ``v0``), the best epoch carries the alias
``best``, and ``run.finish()`` waits for every pending checkpoint::

    python examples/train_background.py
    lorry versions train-checkpoints

Runs on the store in ``$LORRY_STORE`` (else ``~/.local/share/lorry/store``).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import lorry

EPOCHS = 6


def train_one_epoch(epoch: int, weights: bytearray) -> float:
    """Stand-in for real training: perturb the weights, return a loss that mostly goes down."""
    seed = (epoch + 1) * 2654435761
    for i in range(0, len(weights), 4096):
        weights[i] = (weights[i] + seed + i) % 256
    return round(2.0 * math.exp(-0.6 * epoch) + (0.15 if epoch == EPOCHS - 1 else 0.0), 4)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lorry-train-"))
    weights = bytearray(os.urandom(4 << 20))  # a 4 MiB "model"
    best_loss = math.inf
    checkpoints: list[lorry.Artifact] = []
    started = time.perf_counter()
    waited = 0.0

    with lorry.init(job_type="train", config={"epochs": EPOCHS, "lr": 0.01}) as run:
        for epoch in range(EPOCHS):
            loss = train_one_epoch(epoch, weights)
            path = work / "checkpoint.bin"
            path.write_bytes(weights)  # overwritten next epoch: the default policy snapshots it now
            checkpoint = lorry.Artifact(
                "train-checkpoints", type="model", metadata={"epoch": epoch, "loss": loss}
            )
            checkpoint.add_file(path, name="model.bin")
            aliases = [f"epoch-{epoch}"]
            if loss < best_loss:
                best_loss = loss
                aliases.append("best")  # moves from the previous best
            before = time.perf_counter()
            run.log_artifact(checkpoint, aliases=aliases)  # returns at once
            waited += time.perf_counter() - before
            checkpoints.append(checkpoint)
        # Leaving the block finishes the run: it waits for every checkpoint still being stored.

    total = time.perf_counter() - started
    best = lorry.Api().artifact("train-checkpoints:best")
    print(
        f"trained  {EPOCHS} epochs in {total:.2f} s; log_artifact blocked for {waited * 1000:.1f} ms in all"
    )
    print(
        "logged   " + ", ".join(c.version for c in checkpoints) + f" of {best.qualified_name.split(':')[0]}"
    )
    print(f"best     {best.version} (epoch {best.metadata['epoch']}, loss {best.metadata['loss']})")
    print("try      lorry versions train-checkpoints")


if __name__ == "__main__":
    main()
