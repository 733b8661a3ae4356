"""``lorry bench URL`` through the real command line: it measures, checks the bytes it downloaded, and
leaves nothing behind on the store, in the cache or in its working folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_s3 import S3Server

TINY = ["--small", "20", "--medium", "2", "--medium-size", "256K", "--large", "3M"]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorry.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def report(*args: str) -> dict[str, Any]:
    result = bench(*args, "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def check_figures(document: dict[str, Any], runs: int = 1) -> None:
    assert document["verified"] is True
    assert document["runs"] == runs
    rows = {(r["dataset"], r["direction"]): r for r in document["results"]}
    expected = {"small": (20, 20 * 4096), "medium": (2, 2 * 256 * 1024), "large": (1, 3 * 1024 * 1024)}
    assert set(rows) == {(d, way) for d in expected for way in ("log", "download")}
    for (dataset, _), row in rows.items():
        assert (row["files"], row["bytes"]) == expected[dataset]
        assert row["verified"] is True
        assert 0 < row["seconds_min"] <= row["seconds"] <= row["seconds_max"] < 30
        assert row["mb_per_s"] == pytest.approx(row["bytes"] / 1e6 / row["seconds"])
        assert row["files_per_s"] == pytest.approx(row["files"] / row["seconds"])
        assert row["cpu_seconds"] > 0
        assert 10 << 20 < row["peak_rss"] < 2 << 30  # a Python process with lorry loaded


def files_below(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_bench_on_the_local_store_measures_and_cleans_up(tmp_path: Path) -> None:
    store = tmp_path / "bench-store"
    work = tmp_path / "bench-work"
    work.mkdir()
    check_figures(report(str(store), *TINY, "--runs", "2", "--workdir", str(work)), runs=2)
    assert [p for p in files_below(store) if ".lorry" not in p.parts] == []
    assert files_below(work) == []
    assert files_below(Path(os.environ["LORRY_CACHE_DIR"])) == []


def test_bench_prints_a_table(tmp_path: Path) -> None:
    result = bench(str(tmp_path / "store"), "--small", "5", "--medium", "0", "--large", "1M")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("lorry bench on ")
    assert lines[1].split()[:4] == ["DATASET", "DIRECTION", "FILES", "SIZE"]
    body = [line.split() for line in lines[2:6]]
    assert [(row[0], row[1], row[-1]) for row in body] == [
        ("small", "log", "committed"),
        ("small", "download", "verified"),
        ("large", "log", "committed"),
        ("large", "download", "verified"),
    ]
    assert "small download run 1:" in result.stderr


def test_bench_without_any_dataset_is_refused(tmp_path: Path) -> None:
    result = bench(str(tmp_path / "store"), "--small", "0", "--medium", "0", "--large", "0")
    assert result.returncode == 1
    assert result.stderr.strip() == "lorry: error: nothing to measure: every dataset has no files or no bytes"


def test_bench_on_s3_measures_and_empties_what_it_wrote(
    moto_server: S3Server, s3_bucket: Any, tmp_path: Path
) -> None:
    url: str = s3_bucket(moto_server)
    check_figures(report(url, *TINY, "--workdir", str(tmp_path)))
    bucket = url.removeprefix("s3://").split("/")[0]
    left = moto_server.admin().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert left == []
