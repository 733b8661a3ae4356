"""Large files on a local store: copied by the kernel (shared extents where the filesystem has them),
hashed beside the copy, and not read again while their digest is remembered for an unchanged stamp."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.reflink import reflink_filesystem
from blake3 import blake3

import lorry
from lorry.model.digest import format_digest
from lorry.settings import Settings
from lorry.storage.local import LocalStore
from lorry.transfer import files, known, offload, upload
from lorry.transfer.files import FileStamp
from tests.disks import mount_tmpfs, unmount

MiB = 1 << 20


def content(size: int, seed: int = 0) -> bytes:
    return blake3(str(seed).encode()).digest(length=size)


def digest_of(data: bytes) -> str:
    return format_digest(blake3(data).hexdigest())


def log_file(path: Path, name: str = "data", entry: str | None = None) -> lorry.Artifact:
    with lorry.init(project="p") as run:
        artifact = lorry.Artifact(name, type="dataset")
        artifact.add_file(str(path), name=entry, policy="immutable")
        run.log_artifact(artifact)
        artifact.wait()
    return artifact


def stored_digest(artifact: lorry.Artifact, entry: str) -> str:
    digest = artifact.manifest.entries[entry].digest
    assert digest is not None
    return digest


def blob(store: Path, digest: str) -> Path:
    hexd = digest.partition(":")[2]
    return store / "blobs" / "blake3" / hexd[:2] / hexd


@pytest.mark.parametrize("size", [3 * MiB, files.HASH_ALONGSIDE + 12345])
def test_copy_hashing_copies_every_byte_and_hashes_them(tmp_path: Path, size: int) -> None:
    data = content(size)
    source = tmp_path / "source"
    source.write_bytes(data)
    temp = tmp_path / "copy"
    assert files.copy_hashing(source, temp) == digest_of(data)
    assert temp.read_bytes() == data
    assert temp.stat().st_mode & 0o777 == files.FILE_MODE


def test_copy_between_filesystems_falls_back_to_sendfile(tmp_path: Path) -> None:
    """copy_file_range cannot cross filesystems (tmpfs to the disk): the copy still completes."""
    point = mount_tmpfs(tmp_path / "tmpfs", size_mb=16)
    try:
        data = content(5 * MiB, seed=1)
        source = point / "source"
        source.write_bytes(data)
        artifact = log_file(source)
        digest = stored_digest(artifact, "source")
        assert digest == digest_of(data)
        assert blob(tmp_path / "store", digest).read_bytes() == data
    finally:
        unmount(point)


def test_large_local_log_and_download_round_trip(tmp_path: Path) -> None:
    data = content(3 * MiB, seed=2)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    log_file(source)
    with lorry.init(project="p") as run:
        path = run.use_artifact("data:latest").download(str(tmp_path / "out"))
    assert Path(path, "model.bin").read_bytes() == data


def test_a_damaged_blob_is_not_installed(tmp_path: Path) -> None:
    data = content(3 * MiB, seed=3)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    artifact = log_file(source)
    stored = blob(tmp_path / "store", stored_digest(artifact, "model.bin"))
    with open(stored, "r+b") as handle:
        handle.seek(MiB)
        handle.write(b"\0" * 16)
    with lorry.init(project="p") as run, pytest.raises(lorry.IntegrityError):
        run.use_artifact("data:latest").download(str(tmp_path / "out"))
    assert not (tmp_path / "out" / "model.bin").exists()


# -- digests remembered by stamp ------------------------------------------------------------------------


@pytest.fixture
def settled_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as still at once (the real rule waits two seconds, see ``known.py``)."""
    monkeypatch.setattr(known, "SETTLED_NS", 0)


def use_store(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    monkeypatch.setenv("LORRY_STORE", str(store))


def refuse_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: int, dst: int) -> str:
        raise AssertionError("the file was read to hash it")

    monkeypatch.setattr(upload, "copy_fd_hashing", refuse)


def test_an_unchanged_file_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled_now: None
) -> None:
    data = content(3 * MiB, seed=4)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    first = log_file(source)
    assert stored_digest(first, "model.bin") == digest_of(data)
    refuse_hashing(monkeypatch)
    use_store(monkeypatch, tmp_path / "second-store")  # an empty store: the blob is copied, not hashed
    again = log_file(source)
    assert stored_digest(again, "model.bin") == digest_of(data)
    assert blob(tmp_path / "second-store", digest_of(data)).read_bytes() == data


def test_a_changed_file_is_hashed_again_even_with_its_old_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled_now: None
) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(content(3 * MiB, seed=5))
    log_file(source)
    old = source.stat()
    changed = content(3 * MiB, seed=6)
    with open(source, "r+b") as handle:  # the same inode and size, and the mtime put back
        handle.write(changed)
    os.utime(source, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert (source.stat().st_size, source.stat().st_mtime_ns, source.stat().st_ino) == (
        old.st_size,
        old.st_mtime_ns,
        old.st_ino,
    )
    use_store(monkeypatch, tmp_path / "second-store")
    again = log_file(source)
    assert stored_digest(again, "model.bin") == digest_of(changed)
    assert blob(tmp_path / "second-store", digest_of(changed)).read_bytes() == changed


def test_a_remembered_file_is_no_work_for_the_helper_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled_now: None
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(content(offload.OFFLOAD_BYTES, seed=10))
    item = upload.FileSource("big.bin", str(source), FileStamp.of(source), owned=False)
    settings, store = Settings.load(), LocalStore(tmp_path / "store")
    assert offload.wants_helper(settings, [item], store)
    monkeypatch.setenv("LORRY_TRANSFER_PROCESS", "never")
    log_file(source)
    assert not offload.wants_helper(settings, [item], store)
    assert offload.wants_helper(settings, [item])  # elsewhere the file is still read to be sent


def test_a_file_written_a_moment_ago_is_not_remembered(tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(content(3 * MiB, seed=7))
    log_file(source)
    assert not list((tmp_path / "cache" / "digests").glob("*"))


def test_a_damaged_memory_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled_now: None
) -> None:
    data = content(3 * MiB, seed=8)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    log_file(source)
    (remembered,) = (tmp_path / "cache" / "digests").glob("*")
    remembered.write_text(remembered.read_text().replace("blake3:", "blake3:zz"))
    use_store(monkeypatch, tmp_path / "second-store")
    assert stored_digest(log_file(source), "model.bin") == digest_of(data)


def test_a_memory_names_where_its_file_was_hashed_and_is_reclaimed_once_it_moved(
    tmp_path: Path, settled_now: None
) -> None:
    data = content(3 * MiB, seed=9)
    source = tmp_path / "odd name\nwith a line break.bin"
    source.write_bytes(data)
    log_file(source, entry="model.bin")
    digests = known.KnownDigests(tmp_path / "cache")
    assert digests.reclaim() == known.Footprint(0, 0)  # its file is where it was, as it was
    assert digests.of_file(str(source)) == digest_of(data)
    moved = source.rename(tmp_path / "moved.bin")
    assert digests.of_file(str(moved)) is None  # a rename moves the change time: hashed again
    assert digests.reclaim().files == 1
    assert digests.footprint() == known.Footprint(0, 0)


# -- on a filesystem that shares extents ----------------------------------------------------------------


@pytest.fixture
def xfs(tmp_path: Path) -> Iterator[Path]:
    with reflink_filesystem(tmp_path / "xfs.img", tmp_path / "xfs", 320 * MiB) as point:
        yield point


def used_bytes(point: Path) -> int:
    os.sync()
    st = os.statvfs(point)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_on_xfs_the_store_and_the_download_share_the_source_extents(
    xfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = content(96 * MiB, seed=9)
    source = xfs / "checkpoint.bin"
    source.write_bytes(data)
    use_store(monkeypatch, xfs / "store")
    monkeypatch.setenv("LORRY_CACHE_DIR", str(xfs / "cache"))
    before = used_bytes(xfs)
    artifact = log_file(source)
    with lorry.init(project="p") as run:
        out = Path(run.use_artifact("data:latest").download(str(xfs / "out")))
    grown = used_bytes(xfs) - before
    assert grown < 8 * MiB, f"the filesystem grew by {grown / MiB:.1f} MiB: bytes were copied"
    assert blob(xfs / "store", stored_digest(artifact, "checkpoint.bin")).read_bytes() == data
    assert (out / "checkpoint.bin").read_bytes() == data


def test_the_reflink_filesystem_is_removed_also_when_its_user_fails(tmp_path: Path) -> None:
    image, point = tmp_path / "xfs.img", tmp_path / "xfs"
    with pytest.raises(RuntimeError, match="inside"), reflink_filesystem(image, point, 320 * MiB):
        assert os.path.ismount(point)
        (point / "file").write_bytes(b"x")
        raise RuntimeError("failed inside")
    assert not os.path.ismount(point)
    assert not image.exists()
    attached = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(image) not in attached.stdout


@pytest.mark.parametrize("unnamed", [True, False])
def test_small_downloads_appear_whole_and_replace_what_differs(
    tmp_path: Path, unnamed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written unnamed and linked in where the filesystem has unnamed files (ext4 here), through a
    # temporary name and a rename where it has not: either way every file is whole, a file that
    # differs is replaced, and no temporary name is left. (A filesystem without O_TMPFILE, such as
    # FAT, cannot be mounted on this kernel: its refusal is made here.)
    source = tmp_path / "source"
    for i in range(20):
        (source / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (source / f"d{i % 3}" / f"f{i}.txt").write_bytes(content(100 + i, i))
    with lorry.init(project="p") as run:
        artifact = lorry.Artifact("small", type="dataset")
        artifact.add_dir(str(source))
        run.log_artifact(artifact)
        artifact.wait()
    out = tmp_path / "out"
    (out / "d0").mkdir(parents=True)
    (out / "d0" / "f0.txt").write_bytes(b"changed by hand")
    linked: list[str] = []
    link, open_ = os.link, os.open

    def counting_link(src: str, dst: str, **kwargs: Any) -> None:
        linked.append(dst)
        link(src, dst, **kwargs)

    def no_unnamed_files(path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP), path)
        return open_(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "link", counting_link)
    if not unnamed:
        monkeypatch.setattr(os, "open", no_unnamed_files)
    artifact.download(str(out))
    monkeypatch.undo()
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    for path in source.rglob("*.txt"):
        assert (out / path.relative_to(source)).read_bytes() == path.read_bytes()
    # Each of the 20 linked in by its name; for the one there already that link is refused, and it is
    # linked under a temporary name instead, then renamed over it. Nothing linked without unnamed files.
    renamed = [name for name in linked if name.endswith(".lorry-tmp")]
    assert (len(linked), len(renamed)) == ((21, 1) if unnamed else (0, 0))


def test_a_forked_child_writes_through_its_own_descriptor_folder(tmp_path: Path) -> None:
    # Unnamed files are linked in through /proc/self/fd, opened once per process: a forked child must
    # not keep (or use) the parent's, which names the parent's descriptors.
    files.write_new(tmp_path / "parent.txt", b"from the parent")
    parent = files._proc_fds()
    assert parent is not None
    pid = os.fork()
    if pid == 0:
        try:
            files.write_new(tmp_path / "child.txt", b"from the child")
            mine = files._proc_fds()
            own = mine is not None and os.readlink(f"/proc/self/fd/{mine}") == f"/proc/{os.getpid()}/fd"
            try:  # the parent's descriptor is closed, or its number reused for the child's own
                kept = os.readlink(f"/proc/self/fd/{parent}") != f"/proc/{os.getpid()}/fd"
            except OSError:
                kept = False
            os._exit(0 if own and not kept else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "child.txt").read_bytes() == b"from the child"
