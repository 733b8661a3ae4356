"""The conformance suite on Ceph RGW and moto, and what is particular to S3."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from lorry.errors import ConflictError, ObjectNotFoundError, StoreError, ValidationError
from lorry.storage.base import CREATE, MultipartStore, Store, Update
from lorry.storage.s3 import S3Store
from tests.conformance import StoreConformance, listing, run, store_test
from tests.fixtures_s3 import MakeStore, S3Server


class TestCephStore(StoreConformance):
    KNOWN_FAILURES: ClassVar[Mapping[str, str]] = {
        "test_complete_create_on_existing_key": (
            "Ceph RGW 16.2 ignores If-None-Match on CompleteMultipartUpload and overwrites the object"
        ),
    }

    @pytest.fixture
    def store(self, ceph_rgw: S3Server, s3_store: MakeStore) -> S3Store:
        return s3_store(ceph_rgw)


class TestMotoStore(StoreConformance):
    @pytest.fixture
    def store(self, moto_server: S3Server, s3_store: MakeStore) -> S3Store:
        return s3_store(moto_server)
