"""The session: one store stack and one registry per store, so what a registry learns, it learns once."""

from __future__ import annotations

from unittest import mock

import pytest

import lorry
from lorry import _bridge
from lorry.model.layout import Collection
from lorry.registry import safety
from lorry.session import session


def test_single_writer_logs_probe_the_store_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With LORRY_SINGLE_WRITER=1 the check wraps the store once; a second run's log asks nothing again."""
    monkeypatch.setenv("LORRY_SINGLE_WRITER", "1")
    probe = mock.AsyncMock(wraps=safety.probe_conditional_writes)  # the real probe, counted
    monkeypatch.setattr(safety, "probe_conditional_writes", probe)
    for round_ in range(2):
        with lorry.init(project="single") as run:
            artifact = lorry.Artifact("once", type="dataset")
            with artifact.new_file("a.txt") as handle:
                handle.write(f"round {round_}")
            run.log_artifact(artifact)
    settings = lorry.Settings.load(project="single")
    registry = session(settings).registry(settings)
    assert isinstance(registry.store, safety.SingleWriterStore)
    versions = _bridge.run_sync(registry.versions(Collection(settings.entity, "single", "once")))
    assert [record.version for record in versions] == [0, 1]
    assert probe.await_count == 1, probe.await_args_list


def test_one_registry_and_one_stack_per_store() -> None:
    settings = lorry.Settings.load()
    current = session(settings)
    assert session(lorry.Settings.load(project="other")) is current  # one session per process
    assert current.registry(settings) is current.registry(lorry.Settings.load(project="other"))
    assert current.registry(settings).store is current.store(settings.store, settings.store_options)
    single = lorry.Settings.load(single_writer=True)
    assert current.registry(single) is not current.registry(settings)
    assert current.registry(single) is current.registry(single)
