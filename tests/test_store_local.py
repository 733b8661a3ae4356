"""The conformance suite on a LocalStore in a temporary directory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from lorry.storage.local import LocalStore
from tests.conformance import StoreConformance


class TestLocalStore(StoreConformance):
    KNOWN_FAILURES: ClassVar[Mapping[str, str]] = {
        "test_update_of_deleted_key": (
            "bug in local.py: Update of a deleted key raises ObjectNotFoundError; "
            "base.py says ConflictError"
        ),
    }

    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "store")
