"""``lorry ui`` started as a user starts it, in a subprocess, and plain HTTP requests to it."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import lorry

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Playwright

ROOT = Path(__file__).resolve().parent.parent

_URL = re.compile(r"at (http://\S+)")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass(frozen=True)
class UiServer:
    url: str  # as printed, token included when there is one
    process: subprocess.Popen[str]

    @property
    def base(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        """GET ``path`` exactly as given (no normalising of ``..`` or escapes), no redirects followed."""
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()


@contextmanager
def ui_server(*args: str, env: dict[str, str] | None = None) -> Iterator[UiServer]:
    """Start ``lorry ui --port 0 ARGS`` and yield it once it prints its URL; stop it (by its pid)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lorry.cli", "ui", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the server prints one line once it listens
        match = _URL.search(line)
        if match is None:
            process.kill()
            raise AssertionError(f"lorry ui printed {line!r}; stderr: {process.communicate()[1]}")
        yield UiServer(match.group(1), process)
    finally:
        process.terminate()
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.communicate()


# What a hostile writer could put in a store: markup and script in every field a page shows.
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
HOSTILE_FILE = '<img src=x onerror="window.__pwned = 3">.txt'
HOSTILE_FOLDER = '<em onmouseover="window.__pwned = 6">dir'
HOSTILE_CELL = "</td></tr></table><script>window.__pwned = 4</script>"
HOSTILE_TAG = '<b onclick="window.__pwned = 7">tag</b>'
SIGNATURE = "S3CR3TSIGNATURE"


def log_hostile(project: str) -> None:
    """Log ``hostile:v0`` (and its run) into ``project`` of the current store."""
    with lorry.init(project=project, job_type="<b>job</b>", config={"<i>k</i>": HOSTILE}) as run:
        artifact = lorry.Artifact(
            "hostile",
            type='<svg onload="window.__pwned = 5">',
            description=HOSTILE,
            metadata={"<b>key</b>": HOSTILE, "note": HOSTILE_CELL, "loss": 0.5},
        )
        with artifact.new_file(HOSTILE_FILE) as handle:
            handle.write(HOSTILE)
        with artifact.new_file(f"{HOSTILE_FOLDER}/inner.txt") as handle:
            handle.write("inside")
        artifact.add_reference(
            f"https://example.com/data.bin?X-Amz-Signature={SIGNATURE}&X-Amz-Expires=60",
            name="signed.bin",
            checksum=False,
        )
        run.log_artifact(artifact, tags=["hostile"])
    collection = lorry.Api().artifact_collection(artifact.type, f"{project}/hostile")
    collection.description, collection.tags = HOSTILE, ["untrusted"]
    collection.save()


def plant_damaged_collection(store: Path, entity: str, project: str) -> None:
    """A ``collection.json`` written by hand with markup where tags go: not a lorry record."""
    folder = store / entity / project / "artifacts" / "damaged"
    folder.mkdir(parents=True)
    (folder / "collection.json").write_text(json.dumps({"type": "dataset", "tags": [HOSTILE_TAG]}))


def build_demo(store: Path, entity: str = "tester", *, hostile: bool = True) -> Path:
    """Log examples/ui_demo.py's artifacts (and ``hostile:v0``) into project ``bikes`` of ``store``."""
    spec = importlib.util.spec_from_file_location("ui_demo", ROOT / "examples" / "ui_demo.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    saved = {name: os.environ.get(name) for name in ("LORRY_STORE", "LORRY_ENTITY")}
    os.environ.update(LORRY_STORE=str(store), LORRY_ENTITY=entity)
    try:
        demo.build("bikes")
        if hostile:
            log_hostile("bikes")
            plant_damaged_collection(store, entity, "bikes")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return store


CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by scripts/servers/install.sh


def launch_chromium(playwright: Playwright, profile: Path) -> BrowserContext:
    """Headless chromium with a fresh profile that makes no connection of its own."""
    if not CHROMIUM.exists():  # a failure, never a skip: the browser tests must run wherever tests run
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/servers/install.sh, which installs chromium")
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
        viewport={"width": 1280, "height": 800},
        accept_downloads=True,
    )
