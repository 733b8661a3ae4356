"""``lorry ui`` in a real browser (Debian's chromium, driven by Playwright): what a person sees and can
click, hostile content shown as text with no script run, and big stores opening in under a second."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

import lorry
from lorry import _bridge
from lorry.model.digest import digest_bytes
from lorry.model.layout import blob_key
from lorry.model.manifest import Entry, Manifest
from lorry.registry.registry import Collection
from lorry.session import session
from lorry.settings import Settings
from tests.ui_support import (
    HOSTILE,
    HOSTILE_CELL,
    HOSTILE_FILE,
    HOSTILE_FOLDER,
    HOSTILE_TAG,
    ROOT,
    UiServer,
    build_demo,
    launch_chromium,
    ui_server,
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    store = build_demo(tmp_path_factory.mktemp("ui-browser") / "store")
    with ui_server("--store", str(store)) as server:
        yield server


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    yield page
    page.close()
    assert not problems  # no script error, no refused inline script, no missing resource
    assert requests and all(url.startswith("http://127.0.0.1:") for url in requests)  # nothing from elsewhere


def rows(page: Page, table: str) -> list[str]:
    return [r.inner_text() for r in page.locator(f"table#{table} tbody tr").all()]


def names(page: Page, table: str) -> list[str]:
    """The first line of each row's first cell: a name, without what is written under it."""
    return [r.split("\t")[0].split("\n")[0].strip() for r in rows(page, table)]


def test_collections_filtered_by_type_name_and_tag(demo: UiServer, page: Page) -> None:
    page.goto(demo.base + "/")
    expect(page.locator("h1")).to_have_text("Artifacts")
    assert names(page, "collections") == ["bike-rides", "damaged", "evaluation", "hostile", "ride-time-model"]
    model = page.locator("table#collections tr", has_text="ride-time-model")
    expect(model).to_contain_text("Predicts a ride's minutes from its km")  # the collection's description
    expect(model.locator(".tag")).to_have_text(["regression", "bikes"])
    page.select_option("select[name=type]", "model")
    page.click("text=Filter")
    assert names(page, "collections") == ["ride-time-model"]
    page.fill("input[name=name]", "ride")
    page.select_option("select[name=type]", "")
    page.click("text=Filter")
    assert names(page, "collections") == ["bike-rides", "ride-time-model"]
    page.select_option("select[name=tag]", "regression")
    page.click("text=Filter")
    assert names(page, "collections") == ["ride-time-model"]
    page.click("text=clear")
    page.locator("table#collections a.tag", has_text="tabular").click()  # a tag filters by itself
    assert names(page, "collections") == ["bike-rides"]
    page.click("a:text-is('bike-rides')")
    expect(page.locator("h1")).to_contain_text("bike-rides")
    expect(page.locator("h1 .tag")).to_have_text(["tabular", "bikes"])
    expect(page.locator("#collection-description")).to_have_text(
        "Rides of the city bike share, split by date."
    )


def checkpoint_losses(demo: UiServer) -> dict[str, float]:
    versions = lorry.Api(store=demo_store(demo)).artifacts("model", "tester/bikes/ride-time-model")
    return {a.version: a.metadata["loss"] for a in versions}


def test_a_collection_with_its_metadata_table_filtered_sorted_and_charted(demo: UiServer, page: Page) -> None:
    page.goto(demo.base + "/a/tester/bikes/ride-time-model")
    losses = checkpoint_losses(demo)
    live = [f"v{n}" for n in range(11, -1, -1) if n != 1]  # the demo deleted v1
    assert sorted(losses) == sorted(live)
    assert names(page, "versions") == live
    best_row = page.locator("table#versions tr", has_text="v9")
    expect(best_row.locator(".alias")).to_have_text(["best"])
    expect(best_row.locator(".tag")).to_have_text(["candidate"])
    expect(page.locator("table#versions tr", has_text="v8").locator(".expiry")).to_have_text(
        "expires in 29 days"
    )
    page.select_option("select[name=chart]", "loss")  # the page's script submits the choice
    page.wait_for_url("**chart=loss**")
    assert page.locator("svg#chart circle").count() == 11
    best = min(losses, key=lambda v: (losses[v], int(v[1:])))
    expect(page.locator(".chart-note")).to_contain_text(f"Lowest loss: {best}")

    # Filter and sort the metadata table as a person would.
    page.fill("#filter-form input[name=filter]", "loss < 0.3")
    page.click("text=Apply")
    wanted = sorted((v for v, loss in losses.items() if loss < 0.3), key=lambda v: -int(v[1:]))
    assert 0 < len(wanted) < 11
    assert names(page, "versions") == wanted
    expect(page.locator("#match-count")).to_have_text(f"{len(wanted)} of 11 versions match")
    page.click("table#versions th a:text-is('loss')")  # descending, then ascending
    page.click("table#versions th a:has-text('loss')")
    assert names(page, "versions")[0] == best
    page.fill("#filter-form input[name=filter]", "loss <")
    page.click("text=Apply")
    expect(page.locator(".error")).to_contain_text("incomplete condition")


def test_from_the_best_checkpoint_to_its_files_and_lineage(demo: UiServer, page: Page) -> None:
    losses = checkpoint_losses(demo)
    best = min(losses, key=lambda v: (losses[v], int(v[1:])))
    page.goto(demo.base + "/a/tester/bikes/ride-time-model?chart=loss")
    page.locator("svg#chart circle.lowest").click()
    expect(page.locator("h1")).to_contain_text(f"ride-time-model:{best}")
    expect(page.locator("#metadata")).to_contain_text(str(losses[best]))
    expect(page.locator("#cli-snippet")).to_have_text(
        f"lorry get tester/bikes/ride-time-model:{best} --store {demo_store(demo)}"
    )
    expect(page.locator("#python-snippet")).to_contain_text(
        f"artifact('tester/bikes/ride-time-model:{best}')"
    )
    with page.expect_download() as download:
        page.locator("table#files tr", has_text="config.json").locator("a.download").click()
    assert Path(download.value.path()).read_text() == '{"layers": 4, "hidden": 128}'

    # Lineage: the dataset it was trained on, through the training run; click through to both.
    page.click("#lineage-link")
    graph = page.locator("svg#lineage")
    expect(graph.locator("a[data-node='tester/bikes/bike-rides:v0']")).to_have_count(1)
    expect(graph.locator(".node.root")).to_contain_text(f"ride-time-model:{best}")
    graph.locator("a[data-node='tester/bikes/bike-rides:v0']").click()
    expect(page.locator("h1")).to_have_text("Lineage of bike-rides:v0")
    expect(page.locator("svg#lineage .node.artifact")).to_have_count(14)  # data, 12 checkpoints, report
    deleted = page.locator("svg#lineage a[data-node='tester/bikes/ride-time-model:v1']")
    expect(deleted.locator(".node.gone")).to_contain_text("deleted")  # still there, marked as gone
    expect(page.locator("svg#lineage .node.gone")).to_have_count(1)
    page.locator("svg#lineage .node.run", has_text="train").click()
    expect(page.locator("h1")).to_contain_text("train")
    expect(page.locator("main")).to_contain_text("tester/bikes/bike-rides:v0")


def test_tags_time_to_live_and_a_deleted_checkpoint_shown_as_deleted(demo: UiServer, page: Page) -> None:
    deleted_at = deletion_time(demo, "ride-time-model", 1)
    page.goto(demo.base + "/a/tester/bikes/ride-time-model")
    page.locator("table#versions a:text-is('v9')").click()
    expect(page.locator("h1 .tag")).to_have_text(["candidate"])
    expect(page.locator("#tags")).to_have_text("candidate")
    expect(page.locator("#expiry")).to_have_text("never (no time to live)")  # the best is kept
    page.go_back()
    page.locator("table#versions a:text-is('v8')").click()
    expect(page.locator("#expiry")).to_contain_text("in 29 days")
    expect(page.locator("#expiry")).to_contain_text("time to live 30 days")
    page.go_back()
    expect(page.locator("#version-count")).to_contain_text("11 versions · 1 deleted or expired")
    expect(page.locator("#diff-form input[name=from]")).to_have_value("v10")
    page.goto(demo.base + "/a/tester/bikes/ride-time-model/v/v2")
    expect(page.locator("#diff-link")).to_have_text("Diff with v0")  # the version before it that is live
    page.go_back()
    page.click("#show-deleted")
    assert names(page, "versions")[-2:] == ["v1 DELETED", "v0"]  # as a person reads it
    row = page.locator("table#versions tr.gone")
    expect(row).to_have_count(1)
    expect(row.locator(".gone-badge")).to_have_text("deleted")
    expect(row.locator("a", has_text="diff")).to_have_count(0)  # nothing to compare it with
    row.locator("a:text-is('v1')").click()
    expect(page.locator("h1")).to_contain_text("ride-time-model:v1")
    expect(page.locator("#gone")).to_contain_text(
        f"This version was deleted on {deleted_at:%Y-%m-%d %H:%M} UTC"
    )
    expect(page.locator("a.download")).to_have_count(0)
    expect(page.locator("#python-snippet")).to_have_count(0)
    page.click("#lineage-link")  # its lineage is kept, and says what it was
    expect(page.locator("svg#lineage .node.root.gone")).to_contain_text("ride-time-model:v1")
    page.locator("svg#lineage .node.run", has_text="train").click()
    logged_v1 = page.locator("#run-outputs li", has_text="tester/bikes/ride-time-model:v1")
    expect(logged_v1.locator(".gone-badge")).to_have_text("deleted")
    expect(page.locator("#run-outputs .gone-badge")).to_have_count(1)


def deletion_time(demo: UiServer, name: str, version: int) -> datetime:
    settings = Settings.load(store=demo_store(demo))
    registry = session(settings).registry(settings)
    record = _bridge.run_sync(
        registry.read_version(Collection("tester", "bikes", name), version, include_gone=True)
    )
    assert record.deleted_at is not None
    return datetime.fromisoformat(record.deleted_at).astimezone(UTC)


def test_diff_of_the_first_and_last_checkpoints(demo: UiServer, page: Page) -> None:
    page.goto(demo.base + "/a/tester/bikes/ride-time-model")
    page.fill("#diff-form input[name=from]", "v0")
    page.fill("#diff-form input[name=to]", "v11")
    page.click("#diff-form button")
    expect(page.locator("#diff-summary")).to_contain_text("0 added · 0 removed · 1 changed")
    assert [r.split("\t")[0] for r in rows(page, "changed-files")] == ["weights.bin"]
    assert [r.split("\t")[0] for r in rows(page, "metadata-diff")] == ["accuracy", "epoch", "loss"]


def test_folders_open_and_files_page(demo: UiServer, page: Page) -> None:
    page.goto(demo.base + "/a/tester/bikes/bike-rides/v/raw")
    expect(page.locator("h1")).to_contain_text("bike-rides:v0")
    assert [r.split("\t")[0].strip() for r in rows(page, "files")] == ["rides/", "README.txt"]
    page.click("table#files a:has-text('rides/')")
    page.click("table#files a:has-text('train/')")
    expect(page.locator("#folder-path")).to_contain_text("rides/train")
    assert [r.split("\t")[0].strip() for r in rows(page, "files")][1:] == [
        "part-0.csv", "part-1.csv", "part-2.csv",
    ]  # fmt: skip
    page.click("table#files a:has-text('up')")
    expect(page.locator("#folder-path")).not_to_contain_text("train")


def test_hostile_content_is_shown_as_text_and_runs_nothing(demo: UiServer, page: Page) -> None:
    version = "/a/tester/bikes/hostile/v/v0"
    for path in (
        "/",
        "/a/tester/bikes/hostile",
        version,
        version + "/lineage",
        f"{version}?dir={quote(HOSTILE_FOLDER)}",
    ):
        page.goto(demo.base + path)
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("main img, main script, main iframe").count() == 0
    page.goto(demo.base + version)
    expect(page.locator("#description")).to_have_text(HOSTILE)
    expect(page.locator("h1 .type")).to_have_text('<svg onload="window.__pwned = 5">')
    expect(page.locator("#metadata")).to_contain_text(HOSTILE_CELL)
    expect(page.locator("#metadata th", has_text="<b>key</b>")).to_have_count(1)
    names = [r.split("\t")[0] for r in rows(page, "files")]
    assert HOSTILE_FILE in names and any(n.startswith("signed.bin\n→ https://example.com/") for n in names)
    page.locator("table#files a", has_text=HOSTILE_FOLDER + "/").click()
    expect(page.locator("#folder-path .here")).to_have_text(HOSTILE_FOLDER)
    assert [r.split("\t")[0] for r in rows(page, "files")][1:] == ["inner.txt"]
    page.goto(demo.base + "/a/tester/bikes/hostile")
    expect(page.locator("table#versions")).to_contain_text(HOSTILE_CELL)
    expect(page.locator("#collection-description")).to_have_text(HOSTILE)
    expect(page.locator("h1 .tag")).to_have_text(["untrusted"])
    assert page.evaluate("typeof window.__pwned") == "undefined"
    # A collection record with markup where its tags go: listed as damaged, the markup shown as text.
    page.goto(demo.base + "/")
    expect(page.locator("table#collections tr", has_text="hostile")).to_contain_text(HOSTILE[:40])
    expect(page.locator("table#collections .damage")).to_contain_text(HOSTILE_TAG)
    assert page.evaluate("typeof window.__pwned") == "undefined"


def demo_store(server: UiServer) -> str:
    return server.process.args[server.process.args.index("--store") + 1]  # type: ignore[index, union-attr, no-any-return]


# -- big stores ----------------------------------------------------------------------------------------------

VERSIONS = 1_000
FILES, FOLDERS = 100_000, 10


def build_big_store(store: Path) -> None:
    """A collection of 1,000 versions and a version of 100,000 files, committed through the registry as
    ``log_artifact`` commits them, but without hashing 100,000 files: every entry holds one blob."""
    settings = Settings.load(store=str(store), entity="tester", project="big")
    registry = session(settings).registry(settings)
    body = b"x"
    digest = digest_bytes(body)

    async def commit(name: str, kind: str, manifest: Manifest, metadata: dict[str, object]) -> None:
        await registry.put_manifest(manifest)
        await registry.commit(
            Collection("tester", "big", name), kind, manifest, created_at="2026-12-01T10:00:00+00:00",
            logged_by=None, description=None, metadata=metadata,
        )  # fmt: skip

    async def build() -> None:
        await registry.store.put(blob_key(digest), body)
        per_folder = FILES // FOLDERS
        wide = Manifest(
            Entry(f"d{i // per_folder}/f{i % per_folder:05}.bin", digest, 1) for i in range(FILES)
        )
        await commit("wide", "dataset", wide, {})
        for n in range(VERSIONS):
            manifest = Manifest([Entry(f"step-{n}.bin", digest, 1)])
            await commit("many", "model", manifest, {"loss": 1 / (n + 1), "step": n, "split": "train"})

    _bridge.run_sync(build())


def test_a_1000_version_collection_and_a_100000_file_version_open_in_under_a_second(
    tmp_path: Path, page: Page
) -> None:
    store = tmp_path / "big"
    started = time.monotonic()
    build_big_store(store)
    built = time.monotonic() - started
    with ui_server("--store", str(store)) as server:

        def opened(path: str) -> float:
            start = time.monotonic()
            page.goto(server.base + path, wait_until="load")
            return time.monotonic() - start

        seconds = {
            "collection": opened("/a/tester/big/many"),
            "filtered and sorted": opened(
                "/a/tester/big/many?filter=loss+%3C+0.01&sort=meta:loss&order=asc&page=2"
            ),
            "version": opened("/a/tester/big/wide/v/v0"),  # its manifest read for the first time here
            "folder": opened("/a/tester/big/wide/v/v0?dir=d7&page=37"),
        }
        print(f"built in {built:.1f} s; opened: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))
        assert all(s < 1.0 for s in seconds.values()), seconds
        expect(page.locator(".pager").first).to_contain_text("3601\N{EN DASH}3700 of 10000 · page 37 of 100")
        assert rows(page, "files")[1].split("\t")[0] == "f03600.bin"
        page.click(".pager >> nth=0 >> a[rel=next]")
        expect(page.locator(".pager").first).to_contain_text("page 38 of 100")
        page.goto(server.base + "/a/tester/big/many")
        expect(page.locator(".pager").first).to_contain_text("1\N{EN DASH}50 of 1000 · page 1 of 20")
        assert len(rows(page, "versions")) == 50


def test_after_the_quickstart_the_ui_shows_its_artifact_metadata_and_lineage(
    tmp_path: Path, page: Page
) -> None:
    store = tmp_path / "quickstart-store"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path, env={**os.environ, "LORRY_STORE": str(store)}, check=True, capture_output=True,
    )  # fmt: skip
    with ui_server("--store", str(store)) as server:
        page.goto(server.url)
        page.click("a:text-is('quickstart-images')")
        page.click("table#versions a:text-is('v0')")
        expect(page.locator("h1")).to_contain_text("quickstart-images:v0")
        expect(page.locator("#metadata")).to_contain_text("classes")
        page.click("#lineage-link")
        expect(page.locator("svg#lineage .node.run")).to_have_count(2)  # made by preprocess, used by train
        expect(page.locator("svg#lineage")).to_contain_text("preprocess")
        expect(page.locator("svg#lineage")).to_contain_text("train")
