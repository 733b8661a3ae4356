"""The defaults the README names, checked as they are (every other test sets its own store, cache
and entity): the store and cache under the XDG folders, the entity from the OS user, the retry
deadline, the backoff cap, the request timeout, and the ``max_objects`` of a reference."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

import lorry
from lorry.session import session
from lorry.settings import Settings
from lorry.transfer.retry import RetryingStore

CHILD = """
import json, lorry
from lorry.settings import Settings
with open("notes.txt", "w") as handle:
    handle.write("notes")
with lorry.init() as run:
    artifact = lorry.Artifact("defaults", type="dataset")
    artifact.add_file("notes.txt")  # a snapshot in the cache's staging area
    run.log_artifact(artifact)
    artifact.wait()
settings = Settings.load()
print(json.dumps({"path": run.path, "entity": run.entity, "project": run.project,
                  "store": settings.store, "cache": str(settings.cache_dir)}))
"""


def _child(tmp_path: Path, **env: str) -> dict[str, str]:
    """Run ``CHILD`` with no lorry setting and no user name in its environment, HOME in ``tmp_path``."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("LORRY_", "XDG_")) and k not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
                            cwd=work, env={**clean, "HOME": str(tmp_path / "home"), **env})
    assert result.returncode == 0, result.stderr
    report: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_store_cache_and_entity_default_to_xdg_folders_and_the_os_user(tmp_path: Path) -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    home = tmp_path / "home"
    plain = _child(tmp_path)
    assert plain["store"] == str(home / ".local/share/lorry/store")
    assert plain["cache"] == str(home / ".cache/lorry")
    assert (plain["entity"], plain["project"]) == (user, "uncategorized")
    assert any((home / ".local/share/lorry/store/blobs").rglob("*"))
    versions = f"{user}/uncategorized/artifacts/defaults/versions"
    assert (home / ".local/share/lorry/store" / versions / "0.json").is_file()
    assert (home / ".cache/lorry/staging").is_dir()  # the snapshot went through the cache

    xdg = _child(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache-home"))
    assert xdg["store"] == str(tmp_path / "data/lorry/store")
    assert xdg["cache"] == str(tmp_path / "cache-home/lorry")
    assert (tmp_path / "data/lorry/store" / versions / "0.json").is_file()
    assert (tmp_path / "cache-home/lorry/staging").is_dir()


def test_retry_deadline_backoff_cap_and_request_timeout_defaults() -> None:
    """A remote store's calls are retried for 600 s, each wait at most 10 s; a request may make no
    progress for 60 s."""
    settings = Settings.load()
    store = session(settings).store("s3://some-bucket/prefix", settings.store_options)
    assert isinstance(store, RetryingStore)
    policy = store.policy
    assert policy.deadline == 600.0
    longest = dataclasses.replace(policy, rand=lambda: 1.0)  # the top of the jitter's range
    assert [longest.delay(attempt, None) for attempt in (0, 5, 8, 20, 60)] == [0.05, 1.6, 10.0, 10.0, 10.0]
    assert settings.store_options.request_timeout == 60.0


def test_a_reference_holds_at_most_10_000_objects_by_default(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for i in range(10_001):
        sub = folder / f"d{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}").touch()
    artifact = lorry.Artifact("refs", type="dataset")
    with pytest.raises(lorry.ValidationError, match="max_objects=10000"):
        artifact.add_reference(folder.as_uri(), checksum=False)
    (folder / "d0" / "f0").unlink()
    assert len(artifact.add_reference(folder.as_uri(), checksum=False)) == 10_000
