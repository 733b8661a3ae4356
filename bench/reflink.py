"""A filesystem that shares extents between files (XFS with ``reflink=1``), made for a run and gone after.

The filesystem lives in a sparse image file, attached to a loop device and mounted; whatever happens
inside, it is unmounted, the loop device detached and the image removed. It needs root and xfsprogs
(``scripts/servers/install.sh`` installs them); without them ``unavailable()`` says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

XFS_MIN_BYTES = 300 << 20
"""mkfs.xfs refuses smaller filesystems."""


class ReflinkUnavailable(RuntimeError):
    """The machine cannot make the filesystem here (not root, no loop device, no xfsprogs)."""


def unavailable() -> str | None:
    """Why a reflink filesystem cannot be made here, or None if it can."""
    if os.geteuid() != 0:
        return "it needs root (to attach a loop device and mount)"
    if not Path("/dev/loop-control").exists():
        return "there is no loop device (/dev/loop-control)"
    for tool in ("mkfs.xfs", "losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (xfsprogs, util-linux: scripts/servers/install.sh)"
    if "xfs" not in Path("/proc/filesystems").read_text():
        return "the kernel has no XFS"
    return None


def _run(*command: str) -> str:
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ReflinkUnavailable(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def reflink_filesystem(image: Path, mount_point: Path, size: int) -> Iterator[Path]:
    """An XFS filesystem with reflink of ``size`` bytes (sparse: only what is written takes room) in
    ``image``, mounted on ``mount_point`` for the ``with`` block."""
    reason = unavailable()
    if reason is not None:
        raise ReflinkUnavailable(f"no reflink filesystem: {reason}")
    image.parent.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as handle:
        handle.truncate(max(size, XFS_MIN_BYTES))
    try:
        _run("mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(image))
        device = _run("losetup", "--find", "--show", str(image))
        try:
            mount_point.mkdir(parents=True, exist_ok=True)
            _run("mount", "-t", "xfs", device, str(mount_point))
            try:
                yield mount_point
            finally:
                if subprocess.run(["umount", str(mount_point)], check=False, capture_output=True).returncode:
                    # still in use by a process that outlived its run: detached now, gone when it ends
                    subprocess.run(["umount", "--lazy", str(mount_point)], check=False, capture_output=True)
        finally:
            subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
    finally:
        image.unlink(missing_ok=True)
