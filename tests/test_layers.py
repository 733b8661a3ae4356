"""The layering: the README's diagram is the import contract, and no import goes up a layer."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return list(contract["layers"])


def readme_layers() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Layers\n") :]
    block = re.search(r"```text\n(.*?)```", section, re.S)
    assert block is not None, "the Layers section has no diagram"
    # A layer's line starts at the margin: its modules, then two spaces or more, then what they do.
    return [re.split(r"\s{2,}", line)[0] for line in block[1].splitlines() if line and not line[0].isspace()]


def test_readme_diagram_is_the_contract() -> None:
    assert readme_layers() == contract_layers()


def test_no_import_goes_up_a_layer() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_import_lorry_loads_no_network_client() -> None:
    """``import lorry`` (every script, every CLI command) loads the clients of remote stores and of
    http(s) references only when one is used: a run on the local store never pays for them."""
    clients = ("aiohttp", "aiobotocore", "botocore", "awscrt")
    probe = f"import sys, lorry; print(sorted(set({clients!r}) & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
