"""The conformance suite on a LocalStore in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorry.storage.local import LocalStore
from tests.conformance import StoreConformance


class TestLocalStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "store")
