"""The ``lorry`` command line through its real entry point, in a subprocess, on the local store and on
S3 (moto)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import lorry
from lorry.cache import Cache
from lorry.cli import main
from lorry.model.digest import format_digest
from lorry.model.display import human_size, human_time, parse_size
from lorry.model.secret import redact_setting as redact
from lorry.storage.local import LocalStore
from lorry.transfer import known, upload
from tests.conftest import write
from tests.fixtures_s3 import S3Server

COMMANDS = [
    ["put"], ["get"], ["ls"], ["versions"], ["show"], ["lineage"], ["alias"], ["alias", "set"],
    ["alias", "rm"], ["verify"], ["cache"], ["cache", "info"], ["cache", "cleanup"], ["config"], ["ui"],
]  # fmt: skip


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorry.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.returncode == 0, f"lorry {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json"))


def fails(*args: str, code: int = 1) -> str:
    """Run a command expected to fail; return its stderr, checked to be one line (for code 1)."""
    result = cli(*args)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    if code == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lorry: error: "), result.stderr
        assert "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture
def data() -> Path:
    write("data/images/cat.png", b"\x89PNG cat")
    write("data/images/dog.png", b"\x89PNG dog")
    write("data/labels.csv", "file,label\ncat.png,cat\ndog.png,dog\n")
    return Path("data")


# -- the local store --------------------------------------------------------------------------------


def test_put_prints_the_version_and_unchanged_content_makes_none(data: Path) -> None:
    assert ok("put", str(data), "--name", "ds", "--type", "dataset", "--alias", "raw").strip() == (
        "tester/uncategorized/ds:v0"
    )
    again = ok("put", str(data), "--name", "ds", "--type", "dataset", "--alias", "again")
    assert again.strip() == "tester/uncategorized/ds:v0 (unchanged)"
    write("data/labels.csv", "file,label\n")
    doc = as_json(
        "put", str(data), "--name", "ds", "--type", "dataset", "--description", "fewer labels",
        "--metadata", '{"rows": 0, "nested": {"ok": true}}',
    )  # fmt: skip
    assert doc["name"] == "tester/uncategorized/ds:v1" and doc["unchanged"] is False
    assert doc["aliases"] == ["latest"] and doc["files"] == 3
    one = as_json("put", "data/labels.csv", "--name", "labels", "--type", "table", "--project", "other")
    assert one["name"] == "tester/other/labels:v0"
    artifact = lorry.Api().artifact("ds:v1")
    assert artifact.description == "fewer labels"
    assert artifact.metadata == {"rows": 0, "nested": {"ok": True}}
    assert lorry.Api().artifact("ds:again").version == "v0"


def test_get_downloads_and_prints_where(data: Path, tmp_path: Path) -> None:
    ok("put", str(data), "--name", "ds", "--type", "dataset", "--alias", "raw")
    folder = Path(ok("get", "ds:raw").strip())
    assert folder == Path.cwd() / "artifacts" / "ds:v0"
    assert (folder / "images/cat.png").read_bytes() == b"\x89PNG cat"
    root = tmp_path / "elsewhere"
    assert Path(ok("get", "tester/uncategorized/ds", "--root", str(root)).strip()) == root
    assert (root / "labels.csv").exists()
    doc = as_json("get", "ds:v0", "--root", str(root))
    assert doc["path"] == str(root) and doc["version"] == "v0"


def test_ls_and_versions(data: Path) -> None:
    assert "no store at" in fails("ls")  # nothing logged yet, and nothing made by looking
    ok("put", str(data), "--name", "ds", "--type", "dataset")
    assert "no artifacts in elsewhere" in ok("ls", "elsewhere")
    write("data/more.txt", "more")
    ok("put", str(data), "--name", "ds", "--type", "dataset", "--alias", "best")
    ok("put", "data/labels.csv", "--name", "labels", "--type", "table")
    table = ok("ls").splitlines()
    assert table[0].split() == ["NAME", "TYPE", "VERSIONS", "LATEST", "SIZE", "UPDATED"]
    assert table[1].split()[:4] == ["ds", "dataset", "2", "v1"]
    assert table[1].endswith("just now")
    listing = as_json("ls")
    assert [(c["name"], c["type"], c["versions"], c["latest"]) for c in listing] == [
        ("ds", "dataset", 2, "v1"),
        ("labels", "table", 1, "v0"),
    ]
    assert set(listing[0]) == {
        "name",
        "tags",
        "entity",
        "project",
        "type",
        "versions",
        "latest",
        "size",
        "updated_at",
    }
    assert [c["name"] for c in as_json("ls", "tester/uncategorized", "--type", "table")] == ["labels"]
    assert as_json("ls", "other-project") == []

    lines = ok("versions", "ds").splitlines()
    assert lines[0].split() == ["VERSION", "ALIASES", "SIZE", "FILES", "DIGEST", "CREATED", "RUN"]
    assert lines[1].startswith("v0 ") and lines[2].startswith("v1 ")
    assert "latest, best" in lines[2] and "(lorry-put)" in lines[2]
    versions = as_json("versions", "ds")
    assert [v["version"] for v in versions] == ["v0", "v1"]
    assert versions[1]["aliases"] == ["latest", "best"] and versions[1]["files"] == 4
    assert versions[0]["logged_by"].startswith("tester/uncategorized/")
    assert len(versions[0]["digest"]) == 64



def test_ls_reads_each_collection_record_once(
    data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ok("put", str(data), "--name", "ds", "--type", "dataset")
    ok("put", "data/labels.csv", "--name", "labels", "--type", "table")
    read: list[str] = []
    real_stream, real_get = LocalStore.stream, LocalStore.get  # what every read of the stack comes down to

    def streamed(self: LocalStore, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        read.append(key)
        return real_stream(self, key, start, end)

    async def got(self: LocalStore, key: str, start: int = 0, end: int | None = None) -> bytes:
        read.append(key)
        return await real_get(self, key, start, end)

    monkeypatch.setattr(LocalStore, "stream", streamed)
    monkeypatch.setattr(LocalStore, "get", got)
    assert main(["ls", "--json"]) == 0
    assert [c["versions"] for c in json.loads(capsys.readouterr().out)] == [1, 1]
    assert sorted(k for k in read if k.endswith("/collection.json")) == [
        "tester/uncategorized/artifacts/ds/collection.json",
        "tester/uncategorized/artifacts/labels/collection.json",
    ]

def _pipeline() -> None:
    """raw → (preprocess) → clean → (train) → model, through the library."""
    with lorry.init(job_type="ingest") as run:
        raw = lorry.Artifact("raw", type="dataset")
        with raw.new_file("rows.csv") as handle:
            handle.write("a,b\n1,2\n")
        run.log_artifact(raw)
    with lorry.init(job_type="preprocess") as run:
        run.use_artifact("raw:latest")
        clean = lorry.Artifact("clean", type="dataset", description="cleaned", metadata={"rows": 1})
        for i in range(25):
            with clean.new_file(f"part-{i:02}.csv") as handle:
                handle.write(f"{i}\n")
        run.log_artifact(clean, aliases=["good"])
    with lorry.init(job_type="train") as run:
        run.use_artifact("clean:good")
        model = lorry.Artifact("model", type="model")
        with model.new_file("w.bin", mode="wb") as handle:
            handle.write(b"\x00" * 2048)
        run.log_artifact(model)


def test_show_lists_metadata_files_and_lineage() -> None:
    _pipeline()
    text = ok("show", "clean:good")
    assert text.splitlines()[0] == "tester/uncategorized/clean:v0"
    expected = ["dataset", "latest, good", "cleaned", "rows: 1", "part-00.csv", "and 5 more", "(preprocess)",
                "used      tester/uncategorized/raw:v0 (dataset)", "(train)"]  # fmt: skip
    for part in expected:
        assert part in text, part
    doc = as_json("show", "clean")
    assert doc["metadata"] == {"rows": 1} and doc["description"] == "cleaned"
    assert len(doc["entries"]) == 25 and doc["entries"][0]["size"] == 2
    assert doc["producer"]["job_type"] == "preprocess"
    assert doc["producer"]["inputs"] == ["tester/uncategorized/raw:v0"]
    assert [r["job_type"] for r in doc["consumers"]] == ["train"]
    assert "logged by   -" not in ok("show", "raw")


def test_lineage_tree_dot_and_json() -> None:
    _pipeline()
    tree = ok("lineage", "clean:good")
    lines = tree.splitlines()
    assert lines[0] == "tester/uncategorized/clean:v0 (dataset)"
    up, down = tree.index("upstream"), tree.index("downstream")
    assert tree.index("(preprocess)") < tree.index("raw:v0") < tree.index("(ingest)") < down
    assert up < down < tree.index("(train)") < tree.index("model:v0")
    assert "└── " in tree
    dot = ok("lineage", "clean:good", "--dot")
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    assert '"tester/uncategorized/raw:v0" -> ' in dot and '[label="used"]' in dot
    graph = as_json("lineage", "model")
    assert graph["root"] == "tester/uncategorized/model:v0"
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert sorted(k for k in kinds if kinds[k] == "artifact") == [
        "tester/uncategorized/clean:v0",
        "tester/uncategorized/model:v0",
        "tester/uncategorized/raw:v0",
    ]
    assert {e["relation"] for e in graph["edges"]} == {"used", "logged"}
    shallow = as_json("lineage", "model", "--depth", "1")
    assert "tester/uncategorized/raw:v0" not in {n["id"] for n in shallow["nodes"]}
    alone = ok("lineage", "raw")
    assert "(none)" not in alone.split("downstream")[1]


def test_alias_set_moves_and_rm_removes(data: Path) -> None:
    ok("put", str(data), "--name", "ds", "--type", "dataset")
    write("data/extra.txt", "x")
    ok("put", str(data), "--name", "ds", "--type", "dataset", "--alias", "prod")
    assert ok("alias", "set", "ds:v0", "prod").strip() == "tester/uncategorized/ds:v0 aliases: prod"
    assert lorry.Api().artifact("ds:prod").version == "v0"
    assert as_json("alias", "set", "ds:v1", "stable")["aliases"] == ["latest", "stable"]
    assert ok("alias", "rm", "ds", "prod").strip() == "tester/uncategorized/ds:v0 aliases: -"
    assert not lorry.Api().artifact_exists("ds:prod")
    assert "no alias 'prod'" in fails("alias", "rm", "ds", "prod")
    assert "managed by lorry" in fails("alias", "set", "ds:v0", "latest")
    assert "reserved" in fails("alias", "set", "ds:v0", "v7")
    assert "version number" in fails("alias", "rm", "ds", "v0")


def test_verify_passes_then_names_what_differs(data: Path) -> None:
    ok("put", str(data), "--name", "ds", "--type", "dataset")
    folder = Path(ok("get", "ds").strip())
    assert ok("verify", "ds").startswith("ok: artifacts/ds:v0 matches tester/uncategorized/ds:v0 (3 files")
    assert as_json("verify", "ds:latest", "--root", str(folder))["ok"] is True
    (folder / "labels.csv").write_text("tampered")
    (folder / "stray.txt").write_text("stray")
    message = fails("verify", "ds:v0", "--root", str(folder))
    assert "1 file differs (labels.csv)" in message and "1 file not in the artifact (stray.txt)" in message


def test_cache_info_and_cleanup_on_the_local_store() -> None:
    assert ok("cache", "info").strip().endswith(
        ": 0 files, 0 B; staging 0 files, 0 B; remembered digests 0 files, 0 B"
    )
    assert as_json("cache", "info")["bytes"] == 0
    assert as_json("cache", "cleanup", "--max-size", "1G")["freed"] == 0


def log_large_files(names: list[str]) -> None:
    with lorry.init(project="p") as run:
        artifact = lorry.Artifact("weights", type="model")
        for name in names:
            artifact.add_file(name, policy="immutable")
        run.log_artifact(artifact)
        artifact.wait()


def test_remembered_digests_are_counted_and_those_of_gone_or_changed_files_reclaimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(known, "SETTLED_NS", 0)  # remembered at once (see known.py)
    names = ["gone.bin", "changed.bin", "kept.bin"]
    for i, name in enumerate(names):
        write(name, bytes([i]) * (2 << 20))  # large: stored one by one, and remembered
    log_large_files(names)
    remembered = tmp_path / "cache" / "digests"
    entries = {p: p.stat().st_size for p in remembered.iterdir()}
    info = as_json("cache", "info")["digests"]
    assert info == {"files": 3, "bytes": sum(entries.values())}
    assert ok("cache", "info").strip().endswith(
        f"; remembered digests 3 files, {human_size(info['bytes'])}"
    )
    Path("gone.bin").unlink()
    with open("changed.bin", "r+b") as handle:  # same size, same inode: its stamp no longer holds
        handle.write(b"\xff")
    left_by_a_crash = remembered / ".0-0.1234.tmp"
    left_by_a_crash.write_text("half")
    monkeypatch.chdir(tmp_path)  # the paths were relative to where the files were logged
    cleaned = as_json("cache", "cleanup")
    assert cleaned["digests_freed"] == info["bytes"] - entries[_entry_of(remembered, "kept.bin")] + 4
    assert cleaned["digests"]["files"] == 1 and not left_by_a_crash.exists()
    monkeypatch.chdir(tmp_path / "work")

    def refuse(src: int, dst: int) -> str:
        raise AssertionError("the file was read to hash it")

    monkeypatch.setattr(upload, "copy_fd_hashing", refuse)
    monkeypatch.setenv("LORRY_STORE", str(tmp_path / "second-store"))
    log_large_files(["kept.bin"])  # its digest stayed: not read again
    # A size target counts them too; the blobs go before them (one spares reading a whole file).
    cache = Cache(tmp_path / "cache")
    downloaded = write(tmp_path / "downloaded", b"blob")  # smaller than the one digest left
    cache.admit(downloaded, format_digest("ab" * 32))
    kept = as_json("cache", "info")["digests"]["bytes"]
    shrunk = as_json("cache", "cleanup", "--max-size", str(kept))
    assert (shrunk["freed"], shrunk["files"], shrunk["digests"]["files"]) == (4, 0, 1)
    emptied = as_json("cache", "cleanup", "--max-size", "0")
    assert (emptied["digests_freed"], emptied["digests"]) == (kept, {"files": 0, "bytes": 0})


def _entry_of(remembered: Path, name: str) -> Path:
    (entry,) = (p for p in remembered.iterdir() if p.read_bytes().endswith(f"/{name}\n".encode()))
    return entry


def test_config_says_where_each_setting_came_from_and_hides_secrets() -> None:
    rows = {r["name"]: r for r in as_json("config")}
    assert rows["store"]["source"] == "$LORRY_STORE" and rows["store"]["value"] == os.environ["LORRY_STORE"]
    assert rows["entity"]["value"] == "tester" and rows["project"]["source"] == "default"
    assert set(rows["max_requests"]) == {"name", "value", "source"}
    text = ok("config", "--store", "https://alice:hunter2@example.com/store?X-Amz-Signature=abc&part=1")
    assert "hunter2" not in text and "abc" not in text
    assert "https://alice:***@example.com/store?X-Amz-Signature=***&part=1" in text
    assert "argument" in text.splitlines()[1]
    secret_env = cli("config", env={"LORRY_STORE": "s3://bucket/p?token=t0ps3cret"})
    assert secret_env.returncode == 0 and "t0ps3cret" not in secret_env.stdout


# -- errors and usage ---------------------------------------------------------------------------------


def test_failures_are_one_line_with_exit_code_1(data: Path) -> None:
    assert "no store at" in fails("get", "nope")
    ok("put", str(data), "--name", "ds", "--type", "dataset")
    assert "tester/uncategorized/nope" in fails("get", "nope")
    assert "no alias 'missing'" in fails("show", "ds:missing")
    assert "no such file" in fails("put", "absent.bin", "--name", "x", "--type", "model")
    assert "artifact name" in fails("put", str(data), "--name", "bad/name", "--type", "dataset")
    assert "type 'dataset'" in fails("put", "data/labels.csv", "--name", "ds", "--type", "model")
    assert "names a version" in fails("versions", "ds:v0")
    assert "project" in fails("ls", "a/b/c")
    assert "artifacts/ds:v0 does not exist" in fails("verify", "ds")  # never downloaded
    ok("get", "ds", "--root", "copy")
    (Path("copy") / "labels.csv").unlink()
    unverified = fails("verify", "ds", "--root", "copy")
    assert "does not match tester/uncategorized/ds:v0" in unverified and "labels.csv" in unverified
    assert not lorry.Api().artifact_exists("x:latest")


def test_debug_shows_the_traceback() -> None:
    result = cli("get", "nope", "--debug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "StoreNotFoundError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("lorry: error: ")


def test_bad_usage_exits_2(data: Path) -> None:
    assert "invalid choice" in fails("bogus", code=2)
    assert "required" in fails(code=2)
    assert "--name" in fails("put", str(data), "--type", "dataset", code=2)
    message = fails("put", str(data), "--name", "x", "--type", "t", "--metadata", "{bad", code=2)
    assert "argument --metadata: not valid JSON" in message
    assert "JSON object" in fails("put", str(data), "--name", "x", "--type", "t", "--metadata", "[1]", code=2)
    assert "invalid size" in fails("cache", "cleanup", "--max-size", "lots", code=2)
    assert "positive integer" in fails("lineage", "x", "--depth", "0", code=2)
    assert not lorry.Api().artifact_exists("x:latest")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_says_what_each_command_does_with_an_example(command: list[str]) -> None:
    text = ok(*command, "--help")
    assert text.startswith("usage: lorry " + " ".join(command))
    assert "examples:\n  lorry " + command[0] in text


def test_version_and_top_level_help() -> None:
    assert ok("--version").strip() == f"lorry {lorry.__version__}"
    text = ok("--help")
    for name in ("put", "get", "ls", "versions", "show", "lineage", "alias", "verify", "cache", "config"):
        assert f"    {name}" in text


def _on_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run the command with its stdout on a pseudo-terminal; return what it printed."""
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lorry.cli", *args],
            stdout=follower,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
            timeout=60,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert result.returncode == 0, result.stderr
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(data: Path) -> None:
    ok("put", str(data), "--name", "ds", "--type", "dataset")
    env = {"TERM": "xterm"}
    assert "\x1b[" in _on_terminal(["ls"], {**env, "NO_COLOR": ""})
    assert "\x1b[" not in _on_terminal(["ls"], {**env, "NO_COLOR": "1"})
    assert "\x1b[" not in ok("ls")


# -- presentation helpers -----------------------------------------------------------------------------


def test_sizes_times_and_redaction() -> None:
    assert [human_size(n) for n in (0, 1023, 1536, 10 << 30)] == ["0 B", "1023 B", "1.5 KiB", "10.0 GiB"]
    assert parse_size("10G") == 10 << 30 and parse_size("500M") == 500 << 20
    assert parse_size("1.5KiB") == 1536 and parse_size("4096") == 4096 and parse_size("0") == 0
    assert human_time("2024-01-01T00:00:00+00:00").startswith("2024-01-01")
    assert human_time(None) == "-"
    assert redact("store", "s3://bucket/prefix") == "s3://bucket/prefix"
    assert redact("access_key", "AKIA123") == "***"


# -- S3 (moto) ----------------------------------------------------------------------------------------


@pytest.fixture
def moto_store(request: pytest.FixtureRequest, moto_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on moto as ``$LORRY_STORE``, with the ``AWS_*`` variables pointing at it (the
    shared ``s3_bucket`` fixture; subprocesses inherit the environment)."""
    make_bucket: Callable[[S3Server], str] = request.getfixturevalue("s3_bucket")
    url = make_bucket(moto_server)
    monkeypatch.setenv("LORRY_STORE", url)
    return url


def test_put_get_ls_versions_on_s3(moto_store: str, data: Path, tmp_path: Path) -> None:
    assert ok("put", str(data), "--name", "ds", "--type", "dataset", "--alias", "raw").strip() == (
        "tester/uncategorized/ds:v0"
    )
    assert ok("put", str(data), "--name", "ds", "--type", "dataset").strip().endswith("(unchanged)")
    write("data/more.txt", "more")
    assert as_json("put", str(data), "--name", "ds", "--type", "dataset")["version"] == "v1"
    assert [(c["name"], c["versions"], c["latest"]) for c in as_json("ls")] == [("ds", 2, "v1")]
    assert [v["aliases"] for v in as_json("versions", "ds")] == [["raw"], ["latest"]]
    folder = Path(ok("get", "ds:raw", "--root", str(tmp_path / "down")).strip())
    assert (folder / "images/dog.png").read_bytes() == b"\x89PNG dog"
    assert not (folder / "more.txt").exists()
    assert ok("verify", "ds:raw", "--root", str(folder)).startswith("ok: ")
    # Remote blobs pass through the download cache, which the cache commands see and shrink.
    info = as_json("cache", "info")
    assert info["files"] == 3 and info["bytes"] > 0
    assert as_json("cache", "cleanup", "--max-size", "0")["freed"] == info["bytes"]
    assert as_json("cache", "info")["files"] == 0
    assert "tester/uncategorized/nope" in fails("get", "nope")
    assert as_json("config")[0]["value"] == moto_store
    # The same store named on the command line instead of in the environment.
    other = cli("ls", "--store", moto_store, "--json", env={"LORRY_STORE": str(tmp_path / "empty")})
    assert [c["name"] for c in json.loads(other.stdout)] == ["ds"]
