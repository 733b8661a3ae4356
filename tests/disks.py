"""Small filesystems and lesser privileges, made by the tests themselves.

The suite runs as root in CI (``scripts/test``), and what a test needs is installed by the project's
scripts, so nothing here skips: a mount that cannot be made fails the test, naming why. Root writes
through file permissions, so a permission case runs in a child without the capabilities that let it
(``setpriv``, from util-linux).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: file permissions apply to it like to anyone.
WITHOUT_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def mount_tmpfs(point: Path, size_mb: int = 4, *, read_only: bool = False) -> Path:
    """Mount a tmpfs of ``size_mb`` MiB on ``point`` (made if missing); read-only if asked."""
    point.mkdir(parents=True, exist_ok=True)
    options = f"size={size_mb}m,mode=0700" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs on {point} ({result.stderr.strip()}): the suite runs as root")
    return point


def unmount(point: Path) -> None:
    subprocess.run(["umount", "-l", str(point)], check=False)


def python_without_override(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python child to which file permissions apply even when the suite is root."""
    return subprocess.run([*WITHOUT_OVERRIDE, sys.executable, "-c", code, *args],
                          capture_output=True, text=True, timeout=120)
