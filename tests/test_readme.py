"""Every runnable block of the README runs as written.

Fences ```python and ```sh are run in the order they appear, in one temporary directory, against a
fresh local store (``LORRY_STORE`` and ``LORRY_CACHE_DIR`` in the environment); ``lorry`` in a sh block
is the installed command. A block that cannot run here as written (AWS credentials, a cloud bucket, a
long run) is fenced ```text. A ``print(...)  # shown`` line in a python block must print what its
comment shows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
RUNNABLE = ("python", "sh")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_PRINTED = re.compile(r"^\s*print\(.*\)\s+#\s*(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language})"


def blocks(text: str) -> list[Block]:
    return [
        Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(text)
        if m.group(1) in RUNNABLE
    ]


def test_the_readme_has_runnable_blocks_and_text_ones() -> None:
    text = README.read_text()
    languages = {m.group(1) for m in _FENCE.finditer(text)}
    assert {"python", "sh", "text"} <= languages
    assert len(blocks(text)) >= 4


def test_every_runnable_readme_block_runs_as_written(tmp_path: Path) -> None:
    # The working directory, LORRY_STORE and LORRY_CACHE_DIR are the test's own (see conftest.py).
    assert not (tmp_path / "store").exists()
    bin_dir = str(Path(sys.executable).parent)  # where the installed ``lorry`` command is
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    for block in blocks(README.read_text()):
        python = [sys.executable, "-c", block.code]
        command = python if block.language == "python" else ["bash", "-euc", block.code]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{block} failed:\n{block.code}\n{result.stdout}\n{result.stderr}"
        for shown in _PRINTED.findall(block.code):
            assert printed(shown, result.stdout), f"{block} printed {result.stdout!r}, not {shown!r}"


def printed(shown: str, stdout: str) -> bool:
    """Whether ``stdout`` holds what a README comment says a print shows; ``...`` stands for any text
    (a date, the user's name)."""
    parts = [re.escape(part.strip()) for part in shown.split("...") if part.strip()]
    return re.search(".*?".join(parts), stdout) is not None


@pytest.mark.parametrize(
    ("fence", "runs"), [("python", True), ("sh", True), ("text", False), ("", False), ("console", False)]
)
def test_which_fences_run(fence: str, runs: bool) -> None:
    assert bool(blocks(f"intro\n```{fence}\necho hi\n```\n")) is runs


def test_a_printed_comment_is_matched_literally_but_for_its_dots() -> None:
    out = "artifact tester/manage/checkpoints:v0 was deleted at 2026-12-02T10:56:04\n"
    assert printed("... checkpoints:v0 was deleted at 2026-...", out)
    assert not printed("... checkpoints:v1 was deleted at 2026-...", out)
    assert not printed("checkpoints:v0 (deleted)", out)
    assert printed("['v1']", "['v1']\n") and not printed("['v1']", "['v2']\n")
