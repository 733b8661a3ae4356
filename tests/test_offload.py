"""Large artifacts are stored by a helper process: same entries, same errors, and a caller that keeps
its interpreter lock. The helper is a plain child process, so scripts without a main guard work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import lorry
from lorry import publish
from lorry.errors import ArtifactFailedError, SourceChangedError, ValidationError
from lorry.settings import Settings
from lorry.transfer import download, offload
from lorry.transfer.files import FileStamp
from lorry.transfer.upload import FileSource
from tests.conftest import write


def _folder(root: Path, files: int) -> Path:
    for i in range(files):
        write(root / f"d{i % 7}" / f"f{i}.bin", f"content {i}" * (i % 5 + 1))
    return root


def _not_here(*args: object) -> None:
    raise AssertionError("stored in the calling process, not by the helper")


def test_a_large_artifact_is_stored_by_the_helper_and_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", offload.OFFLOAD_FILES)
    monkeypatch.setattr(publish, "store_files", _not_here)  # this process cannot store files
    with lorry.init() as run:
        artifact = lorry.Artifact("many", type="dataset")
        artifact.add_dir(folder)
        run.log_artifact(artifact)
        artifact.wait()
        parent = os.getpriority(os.PRIO_PROCESS, 0)
        for turn in range(offload.HELPERS):  # the parts went to every helper in turn
            process = offload.helper(turn)._process
            assert process is not None and process.poll() is None  # a helper did it, and waits for more
            # at a lower CPU priority than its parent
            assert os.getpriority(os.PRIO_PROCESS, process.pid) == min(19, parent + 10)
            # with the transfer layer only: not the public API, nor the HTTP client it imports
            assert "aiohttp" not in Path(f"/proc/{process.pid}/maps").read_text()
    down = Path(lorry.Api().artifact("many:latest").download(tmp_path / "down"))
    assert sorted(p.relative_to(down) for p in down.rglob("*.bin")) == sorted(
        p.relative_to(folder) for p in folder.rglob("*.bin")
    )
    for path in folder.rglob("*.bin"):
        assert (down / path.relative_to(folder)).read_bytes() == path.read_bytes()


def test_the_helpers_share_the_memory_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # LORRY_MAX_MEMORY bounds the file content held for the caller: its helpers split it, each one's
    # engine holding its share, not a whole budget of its own.
    folder = _folder(tmp_path / "data", offload.OFFLOAD_FILES)
    monkeypatch.setenv("LORRY_MAX_MEMORY", str(64 << 20))
    budgets: list[int] = []
    store_files = offload.Helper.store_files

    async def spying(self: offload.Helper, settings: Settings, *args: Any) -> list[str]:
        budgets.append(settings.max_memory)
        return await store_files(self, settings, *args)

    monkeypatch.setattr(offload.Helper, "store_files", spying)
    with lorry.init() as run:
        artifact = lorry.Artifact("many", type="dataset")
        artifact.add_dir(folder)
        run.log_artifact(artifact)
        artifact.wait()
    assert budgets and set(budgets) == {(64 << 20) // offload.HELPERS}


def test_a_large_download_from_a_local_store_is_written_by_the_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 256 small files and up from a local store: the helper processes write them (both cores create
    # files), whole and in place; a blob damaged in the store fails the download with its own error.
    folder = _folder(tmp_path / "data", offload.OFFLOAD_FILES)
    with lorry.init() as run:
        artifact = lorry.Artifact("many", type="dataset")
        artifact.add_dir(folder)
        run.log_artifact(artifact)
        artifact.wait()
    monkeypatch.setattr(download, "_install_small_from_store", _not_here)  # not in this process
    down = Path(lorry.Api().artifact("many:latest").download(tmp_path / "down"))
    for path in folder.rglob("*.bin"):
        assert (down / path.relative_to(folder)).read_bytes() == path.read_bytes()
    assert len(list(down.rglob("*.bin"))) == offload.OFFLOAD_FILES
    assert offload.helper(0)._process is not None
    entry = lorry.Api().artifact("many:latest").manifest.entries["d0/f0.bin"]
    assert entry.digest is not None
    hexd = entry.digest.partition(":")[2]
    blob = Path(Settings.load().store) / "blobs" / "blake3" / hexd[:2] / hexd
    blob.write_bytes(b"X" * (entry.size or 0))
    with pytest.raises(lorry.IntegrityError, match="does not match its digest"):
        lorry.Api().artifact("many:latest").download(tmp_path / "again")


def test_small_artifacts_stay_in_process_unless_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    offload.close_helper()
    folder = _folder(tmp_path / "data", 3)
    with lorry.init() as run:
        artifact = lorry.Artifact("few", type="dataset")
        artifact.add_dir(folder)
        run.log_artifact(artifact)
        artifact.wait()
    assert offload.helper()._process is None
    monkeypatch.setenv("LORRY_TRANSFER_PROCESS", "always")
    with lorry.init() as run:
        again = lorry.Artifact("few", type="dataset")
        again.add_dir(folder)
        write(folder / "new.bin", "new")
        again.add_file(folder / "new.bin", name="new.bin")
        run.log_artifact(again)
        assert again.wait().version == "v1"
    assert offload.helper()._process is not None


def test_bytes_are_stored_here_while_the_caller_waits_and_by_the_helper_while_it_runs(
    tmp_path: Path,
) -> None:
    # 66 MiB in two files: bytes, which move outside the interpreter lock. A caller blocked in wait()
    # or finish() has an idle interpreter, so a helper would only add its start; a caller that goes
    # on running (a training loop) gets the helper.
    offload.close_helper()
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in ("a.bin", "b.bin"):
        (folder / name).write_bytes(os.urandom(33 << 20))
    with lorry.init() as run:
        waited = lorry.Artifact("ckpt", type="model")
        waited.add_dir(folder)
        run.log_artifact(waited)
        assert waited.wait().version == "v0"
    assert not offload.helper().running()
    (folder / "a.bin").write_bytes(os.urandom(33 << 20))
    with lorry.init() as run:
        background = lorry.Artifact("ckpt", type="model")
        background.add_dir(folder)
        run.log_artifact(background)
        deadline = time.monotonic() + 60
        while background.is_pending() and time.monotonic() < deadline:
            time.sleep(0.01)  # the caller's own work, never a wait()
        assert offload.helper().running()
    assert background.version == "v1"
    down = Path(lorry.Api().artifact("ckpt:v1").download(tmp_path / "down"))
    for name in ("a.bin", "b.bin"):
        assert (down / name).read_bytes() == (folder / name).read_bytes()


def test_a_failure_in_the_helper_keeps_its_class_and_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LORRY_TRANSFER_PROCESS", "always")
    source = write(tmp_path / "weights.bin", b"w" * 1000)
    with lorry.init() as run:
        artifact = lorry.Artifact("changing", type="model")
        artifact.add_file(source, policy="immutable")
        write(source, b"changed after it was added")
        run.log_artifact(artifact)
        with pytest.raises(ArtifactFailedError) as failed:
            artifact.wait()
        assert isinstance(failed.value.__cause__, SourceChangedError)
        assert "weights.bin" in str(failed.value)
        run.finish()  # the failure was raised by wait() already: not a second time


def test_a_helper_that_dies_fails_its_log_clearly_and_the_next_log_starts_another(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LORRY_TRANSFER_PROCESS", "always")
    big = write(tmp_path / "big.bin", os.urandom(1 << 20))
    run = lorry.init()
    first = lorry.Artifact("doomed", type="model")
    first.add_file(big)
    process = offload.helper()._start()
    process.send_signal(signal.SIGSTOP)  # holds the job until the kill below
    run.log_artifact(first)
    time.sleep(0.5)
    process.kill()
    with pytest.raises(ArtifactFailedError, match="helper process"):
        first.wait(timeout=60)
    second = lorry.Artifact("doomed", type="model")
    second.add_file(big)
    run.log_artifact(second)
    assert second.wait(timeout=60).version == "v0"
    assert offload.helper()._process is not process
    run.finish()  # the first log's failure was raised by its wait(): not a second time
    assert lorry.Api().run(run.path).state == "failed"  # and the run is recorded as failed


def test_a_helper_is_replaced_when_the_environment_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Endpoints and credentials come from the environment: a job must see what the caller sees."""
    monkeypatch.setenv("LORRY_TRANSFER_PROCESS", "always")
    with lorry.init() as run:
        first = lorry.Artifact("env", type="dataset")
        first.add_file(write(tmp_path / "a.bin", "a"))
        run.log_artifact(first)
        first.wait()
        before = offload.helper()._process
        monkeypatch.setenv("AWS_PROFILE", "another-profile")
        second = lorry.Artifact("env", type="dataset")
        second.add_file(write(tmp_path / "b.bin", "b"))
        run.log_artifact(second)
        assert second.wait().version == "v1"
        after = offload.helper()._process
    assert before is not None and after is not None and after is not before
    assert before.wait(timeout=30) == 0  # the replaced helper ended once its stdin closed


def test_a_script_without_a_main_guard_can_use_the_helper(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import lorry
            with lorry.init(project="p") as run:
                artifact = lorry.Artifact("data", type="dataset")
                with artifact.new_file("a.txt") as handle:
                    handle.write("hello")
                run.log_artifact(artifact)
                print(artifact.wait().version)
            """
        )
    )
    env = {**os.environ, "LORRY_TRANSFER_PROCESS": "always"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "v0"


def test_the_setting_is_checked() -> None:
    assert Settings.load(transfer_process="never").transfer_process == "never"
    with pytest.raises(ValidationError, match="transfer_process"):
        Settings.load(transfer_process="sometimes")


def test_the_helper_takes_artifacts_of_256_files_or_64_mib_and_up() -> None:
    """The default (``auto``, not set here) sends an artifact to the helper from 256 files or 64 MiB."""
    settings = Settings.load()
    assert settings.transfer_process == "auto"

    def files(count: int, size: int) -> list[FileSource]:
        return [FileSource(f"f{i}", Path(f"f{i}"), FileStamp(size, 0, i), owned=False) for i in range(count)]

    assert not offload.wants_helper(settings, files(255, 1))
    assert offload.wants_helper(settings, files(256, 1))
    assert not offload.wants_helper(settings, files(1, (64 << 20) - 1))
    assert offload.wants_helper(settings, files(1, 64 << 20))
    assert offload.wants_helper(settings, files(4, 16 << 20))
    never = Settings.load(transfer_process="never")
    assert not offload.wants_helper(never, files(10_000, 1 << 30))
    assert offload.wants_helper(Settings.load(transfer_process="always"), files(1, 0))
    # Small files are shared by both helpers (work per file); large ones go to one (work per byte,
    # outside the interpreter lock: a second helper would add its start and no speed).
    assert offload.helpers_for(files(10_000, 4 << 10)) == offload.HELPERS
    assert offload.helpers_for(files(256, 4 << 20)) == 1
    assert offload.helpers_for(files(256, 1 << 20)) == 1
    assert offload.helpers_for(files(256, (1 << 20) - 1)) == offload.HELPERS


PARENT = """
import os, sys, time, lorry
from lorry.transfer import offload
with lorry.init() as run:
    artifact = lorry.Artifact("small", type="dataset")
    with artifact.new_file("a.txt") as handle:
        handle.write("a")
    run.log_artifact(artifact)
    artifact.wait()
print(offload.helper()._process.pid, flush=True)
time.sleep(120)
"""


def test_the_helper_dies_with_its_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parent killed with SIGKILL takes its helper with it, even one that cannot notice the closed
    pipe (stopped here): the kernel kills it (``PR_SET_PDEATHSIG``)."""
    monkeypatch.setenv("LORRY_TRANSFER_PROCESS", "always")
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert parent.stdout is not None
        helper_pid = int(parent.stdout.readline())
        os.kill(helper_pid, signal.SIGSTOP)  # it would otherwise end on the EOF of its pipe
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while _alive(helper_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(helper_pid)
    if alive:
        os.kill(helper_pid, signal.SIGKILL)  # by the PID this test got: the helper it started
    assert not alive, "the helper outlived its parent"


def _alive(pid: int) -> bool:
    """Running or stopped, not gone and not a zombie waiting for a parent that will never reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_snapshots_read_a_run_at_a_time_are_each_their_own_bytes(tmp_path: Path) -> None:
    """Snapshots that follow each other in a pack are read with one ``pread``; a gap, another pack or a
    file of its own starts another read, and each item still gets exactly its own bytes."""
    from lorry.model.digest import digest_bytes
    from lorry.transfer.upload import _SmallReader

    first, second, own = tmp_path / "pack-1", tmp_path / "pack-2", tmp_path / "own.txt"
    first.write_bytes(b"aa" + b"bbb" + b"skipped" + b"c")
    second.write_bytes(b"dddd")
    own.write_bytes(b"whole")

    def snapshot(pack: Path, offset: int, size: int) -> FileSource:
        return FileSource(f"e{offset}", str(pack), FileStamp(size, 0, 0), owned=True, offset=offset)

    items = [
        snapshot(first, 0, 2),
        snapshot(first, 2, 3),
        snapshot(first, 12, 1),  # after a gap
        snapshot(second, 0, 4),  # another pack
        FileSource("own", str(own), FileStamp.of(own), owned=False),
        snapshot(first, 0, 2),  # back to the first pack
    ]
    with _SmallReader() as reader:
        read = reader.read_all(items)
    expected = [b"aa", b"bbb", b"c", b"dddd", b"whole", b"aa"]
    assert read == [(data, digest_bytes(data)) for data in expected]
    with _SmallReader() as reader, pytest.raises(SourceChangedError, match="cut short"):
        reader.read_all([snapshot(second, 0, 4), snapshot(second, 4, 1)])  # past the pack's end


def test_the_helper_collects_cycles_less_often() -> None:
    """The helper's set-up keeps what is loaded out of the collector and collects the youngest
    generation every ``GC_THRESHOLD`` allocations: per-request garbage is freed by reference counting,
    and frequent collections only traversed the requests in flight."""
    probe = (
        "import gc; from lorry.transfer import offload; offload._setup(); "
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)"
    )
    said = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert said.stdout.split() == [str(offload.GC_THRESHOLD), "True"]
