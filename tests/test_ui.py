"""``lorry ui`` without a browser: the filter language, the shaping of pages, and the server's promises
over HTTP (escaping, no way out of the store, the token, fresh data, remote stores). The pages as a
person sees them are tested in a real browser in test_ui_browser.py."""

from __future__ import annotations

import asyncio
import http.client
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

import click
import orjson
import pytest

import lorry
from lorry import _bridge
from lorry.cli import build_cli
from lorry.errors import CorruptRecordError, ValidationError
from lorry.model.layout import blob_key
from lorry.registry.records import ArtifactRef, RunRecord, VersionRecord
from lorry.registry.registry import Collection
from lorry.session import session
from lorry.settings import Settings
from lorry.ui import lineage, query, views
from lorry.ui import server as server_module
from lorry.ui.entries import EntryTable
from lorry.ui.server import LINEAGE_FANOUT
from tests import ui_support
from tests.conftest import logged, use_remote_store
from tests.ui_support import (
    HOSTILE,
    HOSTILE_CELL,
    HOSTILE_FILE,
    HOSTILE_FOLDER,
    SIGNATURE,
    UiServer,
    build_demo,
    ui_server,
)

# -- the filter language --------------------------------------------------------------------------------

META = [
    {"loss": 0.2, "split": "train", "eval": {"acc": 0.91}, "odd key": 1, "flag": True},
    {"loss": 0.35, "split": "valid", "eval": {"acc": 0.85}, "flag": 1},
    {"loss": "n/a", "split": "train"},
    {"split": "test", "eval.acc": 0.99},
]


@pytest.mark.parametrize(
    ("text", "matching"),
    [
        ("", [0, 1, 2, 3]),
        ("loss < 0.3", [0]),  # a string loss is not less than a number; a missing one neither
        ("loss >= 0.2", [0, 1]),
        ("loss > 0.2", [1]),
        ("loss < 0.35", [0]),
        ("loss <= 0.35", [0, 1]),
        ('split = "train"', [0, 2]),
        ("split = train", [0, 2]),  # a bare word is a string
        ("split != train", [1, 3]),  # a missing or different value
        ('loss < 0.3 and split = "train"', [0]),
        ("loss<0.3 AND split=train", [0]),
        ("eval.acc > 0.9", [0, 3]),  # into objects, and a key that holds the dot itself
        ('"odd key" = 1', [0]),
        ("flag = true", [0]),  # true is not 1
        ("flag == 1", [1]),
        ('split > "tr"', [0, 1, 2]),  # strings compare as strings: "test" < "tr" < "train"
        ("loss = null", []),
    ],
)
def test_filter_selects_the_versions_it_says(text: str, matching: list[int]) -> None:
    chosen = query.parse_filter(text)
    assert [i for i, m in enumerate(META) if chosen.matches(m)] == matching


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss <", "incomplete condition"),
        ("loss 0.3", "incomplete condition"),
        ("loss 0.3 x", "is not key OP value"),
        ("loss < 0.3 or split = train", "expected 'and'"),
        ("< 0.3 x", "is not key OP value"),
        ('split = "train', "cannot read the filter"),
    ],
)
def test_a_bad_filter_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        query.parse_filter(text)


def test_sorting_puts_numbers_then_strings_then_the_rest() -> None:
    values = [{"k": "b"}, {"k": 2}, {"k": [1]}, {"k": 1.5}, {"k": "a"}, {}]
    ordered = sorted(values, key=lambda m: query.sort_key(m, ["k"]))
    assert ordered == [{"k": 1.5}, {"k": 2}, {"k": "a"}, {"k": "b"}, {"k": [1]}, {}]


# -- shaping pages --------------------------------------------------------------------------------------


def manifest(*entries: dict[str, object]) -> bytes:
    return orjson.dumps({"format": 1, "entries": list(entries)})


def entry(path: str, digest_char: str = "a", size: int = 1) -> dict[str, object]:
    return {"path": path, "digest": "blake3:" + digest_char * 64, "size": size}


def test_entry_table_checks_an_entry_only_when_it_is_shown() -> None:
    table = EntryTable(
        manifest(entry("b/2.txt", size=5), entry("a.txt"), {"path": "../escape", "digest": None, "size": 1}),
        "manifest m",
    )
    assert table.paths == ["../escape", "a.txt", "b/2.txt"]  # sorted, whatever order it was stored in
    found = table.find("b/2.txt")
    assert found is not None and found.size == 5
    assert table.find("b") is None
    with pytest.raises(CorruptRecordError, match="manifest m"):
        table.entry(0)  # the bad entry fails when it is looked at, as Manifest would fail
    with pytest.raises(CorruptRecordError, match="not a lorry manifest"):
        EntryTable(orjson.dumps({"format": 1, "entries": [{"path": 3}]}), "manifest m")
    with pytest.raises(CorruptRecordError, match="not valid JSON"):
        EntryTable(b"{", "manifest m")


def test_folder_listing_counts_what_lies_below() -> None:
    table = EntryTable(
        manifest(entry("a/x/1", size=2), entry("a/x/2", size=3), entry("a/y"), entry("ab"), entry("z")),
        "m",
    )
    root = views.list_folder(table, "")
    assert [(f.name, f.files, f.size) for f in root.folders] == [("a", 3, 6)]
    assert [table.paths[i] for i in root.files] == ["ab", "z"]
    inner = views.list_folder(table, "a")
    assert [(f.path, f.files) for f in inner.folders] == [("a/x", 2)]
    assert [table.paths[i] for i in inner.files] == ["a/y"]
    assert not len(views.list_folder(table, "nothing"))


def test_diff_finds_added_removed_and_changed_files_and_metadata() -> None:
    before = EntryTable(manifest(entry("same"), entry("gone"), entry("edited", "b")), "m")
    after = EntryTable(manifest(entry("same"), entry("new"), entry("edited", "c")), "m")
    diff = views.diff_versions(
        before, after, {"loss": 1, "kept": 2, "old": 3}, {"loss": 0.5, "kept": 2, "new": 4}
    )
    assert [after.paths[i] for i in diff.added] == ["new"]
    assert [before.paths[i] for i in diff.removed] == ["gone"]
    assert [c.name for c in diff.changed] == ["edited"]
    assert [(c.name, c.before, c.after) for c in diff.metadata] == [
        ("loss", 1, 0.5),
        ("new", views.MISSING, 4),
        ("old", 3, views.MISSING),
    ]


def test_chart_places_points_and_marks_the_lowest_and_highest() -> None:
    drawn = views.chart([(0, 1.0), (1, 0.4), (2, 0.7), (5, 0.4)])
    assert drawn is not None
    assert (drawn.lowest.version, drawn.highest.version) == (1, 0)  # the first of equal lowest values
    xs = [p.x for p in drawn.points]
    assert xs == sorted(xs) and xs[0] == drawn.left and xs[-1] == drawn.right
    assert drawn.highest.y == min(p.y for p in drawn.points)  # higher values are drawn higher up
    assert all(drawn.top <= p.y <= drawn.bottom for p in drawn.points)
    assert views.chart([]) is None
    single = views.chart([(3, 2.0)])
    assert single is not None and single.points[0].x == (single.left + single.right) / 2


def test_lineage_layout_puts_inputs_left_and_outputs_right() -> None:
    nodes = {n: views.GraphNode(n, "artifact" if ":" in n else "run", n, "", f"/{n}") for n in
             ("data:v0", "prep", "train", "model:v0", "eval", "report:v0")}  # fmt: skip
    edges = [
        ("prep", "data:v0", "logged"), ("data:v0", "train", "used"), ("train", "model:v0", "logged"),
        ("model:v0", "eval", "used"), ("eval", "report:v0", "logged"),
    ]  # fmt: skip
    layout = views.layout_graph("model:v0", nodes, edges)
    x = {n.id: n.x for n in layout.nodes}
    assert x["prep"] < x["data:v0"] < x["train"] < x["model:v0"] < x["eval"] < x["report:v0"]
    assert [n.id for n in layout.nodes if n.root] == ["model:v0"]
    assert len(layout.edges) == 5
    assert all(n.x >= 0 and n.x + layout.node_width <= layout.width for n in layout.nodes)


# -- the server over HTTP --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo example's artifacts and a hostile one, in a store of this module's own."""
    return build_demo(tmp_path_factory.mktemp("ui") / "store")


@pytest.fixture(scope="module")
def demo(demo_store: Path) -> Iterator[UiServer]:
    with ui_server("--store", str(demo_store)) as server:
        yield server


def page(server: UiServer, path: str, status: int = 200) -> str:
    reply = server.get(path)
    assert reply.status == status, reply.text[:2000]
    return reply.text


def test_every_value_from_the_store_is_escaped(demo: UiServer) -> None:
    base = "/a/tester/bikes/hostile"
    pages = [
        page(demo, "/"),
        page(demo, base),
        page(demo, base + "/v/v0"),
        page(demo, base + "/v/v0?dir=" + quote(HOSTILE_FOLDER)),
        page(demo, base + "/v/v0/lineage"),
        page(demo, base + "/diff?from=v0&to=v0"),
        page(demo, "/a/tester/bikes/damaged", 500),  # markup where a collection's tags go
    ]
    run_link = re.search(r'href="(/r/tester/bikes/[^"]+)"', pages[2])
    assert run_link is not None
    pages.append(page(demo, run_link.group(1)))
    for text in pages:
        assert "<script>window" not in text and "<img" not in text and "<svg onload" not in text
        assert "<b>key" not in text and "<b>job" not in text and "<em" not in text and "<i>k" not in text
        assert "<b onclick" not in text
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in pages[2]  # the description, as text
    assert "&lt;img src=x onerror=&#34;window.__pwned = 3&#34;&gt;.txt" in pages[2]  # the file name
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;" in pages[1]  # a metadata value in the table
    assert "&lt;b&gt;key&lt;/b&gt;" in pages[2]  # a metadata key
    assert "&lt;b&gt;job&lt;/b&gt;" in pages[7]  # the run's job type
    escaped_description = "&lt;script&gt;window.__pwned = 1&lt;/script&gt;"
    assert pages[0].count(escaped_description) >= 1  # the collection's description, in the list
    assert 'id="collection-description">' + escaped_description in pages[1]  # and on its page
    escaped_tag = "&lt;b onclick=&#34;window.__pwned = 7&#34;&gt;tag&lt;/b&gt;"
    assert escaped_tag in pages[0] and escaped_tag in pages[6]  # the damaged record, said as text
    assert (
        HOSTILE not in "".join(pages) and HOSTILE_CELL not in "".join(pages) and HOSTILE_FILE not in pages[2]
    )


def test_a_signed_reference_is_shown_without_its_signature(demo: UiServer) -> None:
    text = page(demo, "/a/tester/bikes/hostile/v/v0")
    assert "https://example.com/data.bin?X-Amz-Signature=***&amp;X-Amz-Expires=***" in text
    assert SIGNATURE not in text
    refused = demo.get("/a/tester/bikes/hostile/v/v0/file/signed.bin")
    assert refused.status == 400  # a reference is never fetched by the server
    assert SIGNATURE not in refused.text and "is a reference" in refused.text


def test_a_file_downloads_as_an_attachment_with_its_stored_bytes(demo: UiServer) -> None:
    reply = demo.get("/a/tester/bikes/hostile/v/v0/file/" + quote(HOSTILE_FILE))
    assert reply.status == 200
    assert reply.body == HOSTILE.encode()
    assert reply.headers["Content-Type"] == "application/octet-stream"  # never rendered as a page
    assert reply.headers["Content-Disposition"].startswith("attachment;")
    nested = demo.get("/a/tester/bikes/bike-rides/v/raw/file/rides/train/part-0.csv")
    assert nested.status == 200 and nested.body.startswith(b"km,minutes\n")


def test_a_damaged_file_is_never_served_whole(store_dir: Path) -> None:
    with lorry.init(project="p") as run:
        artifact = logged(run, "data", {"big.bin": bytes(range(256)) * 4096})
    digest = artifact.files()[0].digest
    assert digest is not None
    blob = store_dir / blob_key(digest)
    damaged = bytearray(blob.read_bytes())
    damaged[-1] ^= 1
    blob.write_bytes(bytes(damaged))
    with ui_server() as server:
        with pytest.raises(http.client.IncompleteRead) as cut:
            server.get("/a/tester/p/data/v/v0/file/big.bin")
        assert len(cut.value.partial) < len(damaged)
        assert server.get("/").status == 200  # and the server goes on


@pytest.mark.parametrize(
    "path",
    [
        "/a/tester/bikes/hostile/v/v0/file/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/a/tester/bikes/hostile/v/v0/file/../../../../etc/passwd",
        "/a/tester/bikes/hostile/v/v0/file/%2Fetc%2Fpasswd",
        "/a/tester/bikes/hostile/v/v0/file/rides/train/part-0.csv",  # another version's file
        "/a/tester/bikes/hostile/v/v0/file/blobs",
        "/a/..%2F..%2Fetc/bikes/hostile/v/v0",
        "/a/tester/bikes/..%2F..%2F..%2Fetc%2Fpasswd",
        "/a/tester/bikes/hostile/v/..%2Fv0",
        "/r/tester/bikes/..%2F..%2Fhostile",
        "/static/..%2Fserver.py",
        "/static/../server.py",
        "/static/%2Fetc%2Fpasswd",
        "/etc/passwd",
    ],
)
def test_no_url_reaches_outside_the_store_or_the_versions_own_entries(demo: UiServer, path: str) -> None:
    reply = demo.get(path)
    assert reply.status in (400, 404), (reply.status, reply.text[:500])
    assert b"root:" not in reply.body and b"import " not in reply.body


def test_headers_forbid_inline_script_and_other_hosts(demo: UiServer) -> None:
    reply = demo.get("/")
    assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    # A page of another site whose name was pointed at 127.0.0.1 (DNS rebinding) is refused.
    assert demo.get("/", headers={"Host": "evil.example:80"}).status == 403
    assert demo.get("/", headers={"Host": "localhost"}).status == 200


def test_collections_by_project_and_a_version_with_the_runs_around_it(
    demo: UiServer, demo_store: Path
) -> None:
    listed = page(demo, "/?project=tester/bikes")
    assert all(f">{name}</a>" in listed for name in ("bike-rides", "ride-time-model", "evaluation"))
    assert "bike-rides" not in page(demo, "/?project=tester/other")
    best = lorry.Api(store=str(demo_store)).artifact("tester/bikes/ride-time-model:best")
    producer, consumers = best.logged_by(), best.used_by()
    assert producer is not None and len(consumers) == 1
    text = page(demo, "/a/tester/bikes/ride-time-model/v/best")
    assert (
        f'href="/r/tester/bikes/{producer.id}"' in text
        and f'href="/r/tester/bikes/{consumers[0].id}"' in text
    )
    assert f"ride-time-model:{best.version}" in text


def test_missing_things_and_bad_input_are_pages_that_say_so(demo: UiServer) -> None:
    assert "artifact tester/bikes/nothing does not exist" in page(demo, "/a/tester/bikes/nothing", 404)
    assert "has no alias &#39;nope&#39;" in page(demo, "/a/tester/bikes/bike-rides/v/nope", 404)
    assert "has no folder" in page(demo, "/a/tester/bikes/bike-rides/v/v0?dir=nowhere", 404)
    assert "choose two versions" in page(demo, "/a/tester/bikes/bike-rides/diff", 400)
    # A bad filter keeps the page and says what is wrong.
    text = page(demo, "/a/tester/bikes/ride-time-model?filter=" + quote("loss <"))
    assert "incomplete condition" in text and 'id="versions"' in text


def test_the_token_is_required_when_bound_beyond_localhost(demo_store: Path) -> None:
    # 127.0.0.2 is this machine too, but it is not the default address: the server treats it as it
    # treats any other, which a test can bind without reaching the network.
    with ui_server("--store", str(demo_store), "--host", "127.0.0.2") as server:
        token = re.search(r"\?token=([\w-]+)$", server.url)
        assert token is not None and len(token.group(1)) >= 32
        assert server.get("/").status == 401
        assert server.get("/a/tester/bikes/hostile/v/v0/file/" + quote(HOSTILE_FILE)).status == 401
        assert server.get("/?token=wrong").status == 401
        assert server.get("/", headers={"Cookie": "lorry_ui_token=wrong"}).status == 401
        entered = server.get(f"/?token={token.group(1)}&type=model")
        assert (
            entered.status == 302 and entered.headers["Location"] == "/?type=model"
        )  # out of the address bar
        cookie = entered.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert server.get("/", headers={"Cookie": cookie.split(";")[0]}).status == 200
        assert server.get("/", headers={"Authorization": f"Bearer {token.group(1)}"}).status == 200
    with ui_server("--store", str(demo_store)) as local:  # the default address: this machine only
        assert local.url.startswith("http://127.0.0.1:") and "token" not in local.url
        assert local.get("/").status == 200
    cli = build_cli()
    ui = cli.get_command(click.Context(cli), "ui")
    assert ui is not None
    defaults = {param.name: param.default for param in ui.params}
    assert (defaults["host"], defaults["port"]) == ("127.0.0.1", 8765)


def test_a_port_in_use_fails_with_one_line(demo: UiServer) -> None:
    port = str(urlsplit(demo.url).port)
    result = subprocess.run(
        [sys.executable, "-m", "lorry.cli", "ui", "--port", port], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and not result.stdout
    assert result.stderr.startswith("lorry: error: ") and "address already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_new_versions_appear_without_a_restart() -> None:
    with lorry.init(project="live") as run:
        logged(run, "growing", {"a.txt": b"1"}, metadata={"step": 1})
    with ui_server() as server:  # the store of $LORRY_STORE
        text = page(server, "/a/tester/live/growing")
        assert ">v0<" in text and ">v1<" not in text
        with lorry.init(project="live") as run:
            logged(run, "growing", {"a.txt": b"2"}, metadata={"step": 2})
            logged(run, "fresh", {"b.txt": b"3"})
        text = page(server, "/a/tester/live/growing")
        assert ">v1<" in text and "2 versions" in text
        assert "fresh" in page(server, "/")


@pytest.mark.parametrize("kind", ["moto", "gcs"])
def test_the_same_pages_over_s3_and_gcs(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = use_remote_store(kind, request, monkeypatch)
    with lorry.init(project="remote", job_type="prep") as run:
        logged(run, "data", {"x/a.txt": b"remote bytes"}, description="on a bucket", metadata={"n": 1})
    with ui_server("--store", url) as server:
        assert "data" in page(server, "/")
        assert "on a bucket" in page(server, "/a/tester/remote/data")
        version = page(server, "/a/tester/remote/data/v/latest?dir=x")
        assert "a.txt" in version and url in version  # the lines to use it name the store
        download = server.get("/a/tester/remote/data/v/v0/file/x/a.txt")
        assert download.status == 200 and download.body == b"remote bytes"
        lineage = page(server, "/a/tester/remote/data/v/v0/lineage")
        assert "prep" in lineage


# -- deleted and expired versions; a crowded lineage ------------------------------------------------------


def version_record(name: str, project: str, number: int) -> VersionRecord:
    settings = Settings.load()
    registry = session(settings).registry(settings)
    collection = Collection("tester", project, name)
    return _bridge.run_sync(registry.read_version(collection, number, include_gone=True))


def test_deleted_and_expired_versions_are_never_offered_as_live() -> None:
    with lorry.init(project="prune", job_type="prep") as run:
        logged(run, "data", {"rows.csv": b"1,2"})
    with lorry.init(project="prune", job_type="train") as run:
        run.use_artifact("data:latest")
        for n in range(4):
            logged(run, "ckpt", {"w.bin": bytes([n])}, metadata={"loss": 1 - n / 10})
        logged(run, "scrapped", {"x.bin": b"x"})
    api = lorry.Api(overrides={"project": "prune"})
    api.artifact("scrapped:v0").delete()
    api.artifact("ckpt:v1").delete()
    expiring = api.artifact("ckpt:v2")
    expiring.ttl = timedelta(milliseconds=1)  # expired at once; no gc has marked it deleted
    expiring.save()
    api.artifact("ckpt:v3").delete()
    deleted_at = datetime.fromisoformat(version_record("ckpt", "prune", 1).deleted_at or "")
    with ui_server() as server:
        listed = page(server, "/?project=tester/prune")
        rows = {m[0]: m[1] for m in re.findall(r">(ckpt|scrapped)</a>(.*?)</tr>", listed, re.S)}
        assert 'href="/a/tester/prune/ckpt/v/v0">v0<' in rows["ckpt"]  # the latest live version
        assert '<td class="num">4</td>' in rows["ckpt"]  # versions logged
        assert '<span class="gone-badge">all deleted</span>' in rows["scrapped"]
        assert "/a/tester/prune/scrapped/v/" not in rows["scrapped"]
        text = page(server, "/a/tester/prune/ckpt")
        assert re.findall(r">(v\d+)</a>", text.partition('id="versions"')[2]) == ["v0"]
        assert "· 1 version · 3 deleted or expired" in " ".join(text.split())
        assert text.count('class="point') == 1  # the chart: v0 alone
        assert 'name="from" value="v0"' in text and 'name="to" value="v0"' in text
        shown = page(server, "/a/tester/prune/ckpt?deleted=1")
        assert re.findall(r">(v\d+)</a>", shown.partition('id="versions"')[2]) == ["v3", "v2", "v1", "v0"]
        assert shown.count('<tr class="gone">') == 3
        assert re.findall(r'class="gone-badge"[^>]*>(\w+)<', shown) == ["deleted", "expired", "deleted"]
        assert shown.count('class="point') == 1  # shown, but still not charted
        gone_page = page(server, "/a/tester/prune/ckpt/v/v1")
        assert f"This version was deleted on {deleted_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" in gone_page
        assert "download" not in gone_page and "lorry get" not in gone_page
        expired_page = page(server, "/a/tester/prune/ckpt/v/v2")
        assert (
            "This version expired on" in expired_page
            and "time to live of 0.001 seconds ran out" in expired_page
        )
        assert "<h1>ckpt:v0" in page(server, "/a/tester/prune/ckpt/v/latest")
        refused = server.get("/a/tester/prune/ckpt/v/v2/file/w.bin")
        assert refused.status == 410 and b"expired" in refused.body
        assert server.get("/a/tester/prune/ckpt/diff?from=v0&to=v1").status == 410
        graph = page(server, "/a/tester/prune/data/v/v0/lineage")  # its run logged all four
        marked = re.findall(r'data-node="tester/prune/ckpt:(v\d)">\s*<g class="node artifact( gone)?', graph)
        assert sorted(marked) == [("v0", ""), ("v1", " gone"), ("v2", " gone"), ("v3", " gone")]
        assert graph.count('<span class="gone-badge">deleted</span>') == 3  # and scrapped:v0
        assert graph.count('<span class="gone-badge">expired</span>') == 1
        producer = api.artifact("ckpt:v0").logged_by()
        assert producer is not None
        logged_list = page(server, f"/r/tester/prune/{producer.id}").partition('id="run-outputs"')[2]
        marks = re.findall(r'/ckpt:(v\d)</a>(?: <span class="gone-badge">(\w+)</span>)?', logged_list)
        assert marks == [("v0", ""), ("v1", "deleted"), ("v2", "expired"), ("v3", "deleted")]


USERS = 2_000


def test_a_version_used_by_thousands_of_runs_draws_its_lineage_at_once() -> None:
    with lorry.init(project="popular", job_type="prep") as run:
        logged(run, "data", {"a.txt": b"a"})
    settings = Settings.load()
    registry = session(settings).registry(settings)
    collection = Collection("tester", "popular", "data")

    async def add_users() -> None:
        async def one(i: int) -> None:
            user = RunRecord(
                id=f"user{i:05}", entity="tester", project="popular", name=f"user {i}", job_type="eval",
                config={}, created_at="2026-12-01T10:00:00+00:00", state="finished",
                inputs=(ArtifactRef("tester", "popular", "data", 0),),
            )  # fmt: skip
            await registry.put_run(user, create=True)
            await registry.add_consumer(collection, 0, user)

        for start in range(0, USERS, 200):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 200, USERS))))

    _bridge.run_sync(add_users())
    with ui_server() as server:
        started = time.monotonic()
        text = page(server, "/a/tester/popular/data/v/v0/lineage")
        took = time.monotonic() - started
        print(f"lineage of a version used by {USERS} runs: {took:.2f} s")
        assert text.count('<g class="node run') == LINEAGE_FANOUT + 1  # its users shown, and its producer
        more = f"{USERS - LINEAGE_FANOUT} more runs"
        # One "more" node, opening the version's page, which lists every run that used it.
        marker = re.search(
            r'<a href="([^"]+)" class="node-link"[^>]*>\s*<g class="node more">.*?</g>', text, re.S
        )
        assert (
            marker is not None
            and marker.group(1) == "/a/tester/popular/data/v/v0"
            and more in marker.group(0)
        )
        assert f'id="lineage-more">{USERS - LINEAGE_FANOUT} more runs and versions are not drawn' in text
        assert took < 2.0
    # The budget bounds the whole graph, whatever the fanout.
    record = _bridge.run_sync(registry.read_version(collection, 0))
    small = _bridge.run_sync(lineage.walk(registry, collection, record, depth=3, budget=10, fanout=100))
    assert len(small.versions) + len(small.runs) == 10
    assert small.more == {("tester/popular/data:v0", lineage.DOWN): USERS - 8}  # root, producer, 8 users


def test_times_to_live_read_as_a_person_says_them() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert server_module._until(now + timedelta(days=29, hours=23), now) == "in 29 days"
    assert server_module._until(now + timedelta(hours=1), now) == "in 1 hour"
    assert server_module._until(now + timedelta(seconds=30), now) == "now"
    assert server_module._duration(30 * 86400) == "30 days"
    assert server_module._duration(36 * 3600) == "36 hours"
    assert server_module._duration(90) == "90 seconds"
    assert server_module._duration(0) == "0 seconds"


def test_without_chromium_the_browser_tests_fail_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ui_support, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(RuntimeError, match=r"no-chromium is missing: run scripts/servers/install\.sh"):
        ui_support.launch_chromium(cast(Any, None), tmp_path / "profile")
