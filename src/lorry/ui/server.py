"""``lorry ui``: a read-only web server over a store.

Pages are rendered on the server by Jinja2 with autoescaping, so every name, description, metadata value
and file name from the store reaches the browser as text. The Content-Security-Policy allows scripts and
styles only from this server's own ``/static/`` files, so even markup that slipped through could not
run. Every URL names things by validated names (entity, project, artifact, alias, entry path), never by
store key or file path: a file download is found in the version's manifest, so no URL reaches outside
the store or the artifact's own entries. Bound anywhere but loopback, every request needs the token
printed at start.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import ipaddress
import json
import logging
import math
import secrets
import shlex
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware

import lorry
from lorry.errors import (
    AccessDeniedError,
    ArtifactDeletedError,
    CorruptRecordError,
    LorryError,
    NotFoundError,
    ValidationError,
)
from lorry.model.digest import format_digest, new_hasher
from lorry.model.display import human_size, human_time
from lorry.model.layout import Collection
from lorry.model.manifest import normalize_entry_path
from lorry.model.names import LATEST, validate_alias, validate_artifact_name, validate_segment, version_alias
from lorry.model.secret import redact_setting, redact_text, redact_uri
from lorry.registry.records import ArtifactRef, VersionRecord
from lorry.settings import Settings
from lorry.ui import lineage, query, views
from lorry.ui.reader import Reader, gone

log = logging.getLogger("lorry")

VERSIONS_PER_PAGE = 50
FILES_PER_PAGE = 100
DIFF_ROWS_SHOWN = 500
METADATA_COLUMNS = 12
LINEAGE_DEPTH = 3
RUN_REFS_SHOWN = 500
# A lineage graph draws at most this many runs and versions, and at most LINEAGE_FANOUT new neighbours
# of any one node; the rest is one "N more" node linking to where they are listed.
LINEAGE_BUDGET = 100
LINEAGE_FANOUT = 25
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
TOKEN_COOKIE = "lorry_ui_token"
_STATIC = {"style.css": "text/css", "ui.js": "text/javascript", "favicon.svg": "image/svg+xml"}
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use the server: anyone on this machine (``token`` None) or holders of ``token``."""

    token: str | None

    @classmethod
    def for_host(cls, host: str) -> Access:
        """No token on loopback; a fresh one when bound elsewhere (other machines can reach it)."""
        return cls(None if host in LOOPBACK_NAMES else secrets.token_urlsafe(24))

    def allows(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        offered = request.cookies.get(TOKEN_COOKIE) or request.query.get("token") or ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            offered = header.removeprefix("Bearer ")
        return hmac.compare_digest(offered.encode(), self.token.encode())


def url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


# -- the application ---------------------------------------------------------------------------------------


def make_app(settings: Settings, access: Access) -> web.Application:
    pages = Pages(Reader(settings), _templates())
    app = web.Application(middlewares=[_headers, _guard(access), _errors(pages)])
    e, p, n, v = "{entity}", "{project}", "{name}", "{version}"
    app.router.add_get("/", pages.index)
    app.router.add_get(f"/a/{e}/{p}/{n}", pages.collection)
    app.router.add_get(f"/a/{e}/{p}/{n}/diff", pages.diff)
    app.router.add_get(f"/a/{e}/{p}/{n}/v/{v}", pages.version)
    app.router.add_get(f"/a/{e}/{p}/{n}/v/{v}/lineage", pages.lineage)
    app.router.add_get(f"/a/{e}/{p}/{n}/v/{v}/file/{{path:.+}}", pages.file)
    app.router.add_get(f"/r/{e}/{p}/{{run}}", pages.run)
    app.router.add_get("/static/{file}", static)
    return app


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lorry.ui", "templates"),
        autoescape=True,  # every page is HTML: escape everything not marked safe, which nothing is
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=human_size,
        ago=human_time,
        json=lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True),
        pretty=lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2),
        redact_uri=redact_uri,
        v=version_alias,
        short=lambda digest: (digest or "-").partition(":")[2][:12] or (digest or "-")[:12],
        when=_when,
        until=_until,
        duration=_duration,
    )
    env.globals.update(
        collection_url=collection_url,
        version_url=version_url,
        run_url=run_url,
        ref_url=ref_url,
        MISSING=views.MISSING,
        gone=gone,
    )
    return env


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", _POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _guard(access: Access) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if access.token is None:
            # Loopback only: refuse a page asked for under another host name, as a page of another
            # site would after re-pointing its name at 127.0.0.1 (DNS rebinding).
            if (request.url.host or "") not in (*LOOPBACK_NAMES, "[::1]"):
                raise web.HTTPForbidden(text="lorry ui answers only to 127.0.0.1 and localhost\n")
            return await handler(request)
        if not access.allows(request):
            raise web.HTTPUnauthorized(
                text="lorry ui needs its token: open the URL it printed when it started\n"
            )
        if "token" in request.query:  # keep it in a cookie, out of the address bar and history
            rest = {k: v for k, v in request.query.items() if k != "token"}
            response = web.HTTPFound(request.path + (f"?{urlencode(rest)}" if rest else ""))
            response.set_cookie(TOKEN_COOKIE, access.token, httponly=True, samesite="Strict")
            raise response
        return await handler(request)

    return guard


def _errors(pages: Pages) -> Middleware:
    """Failures become a page with one clear line; store messages pass through redaction."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except ArtifactDeletedError as exc:
            return pages.error(410, "Deleted", str(exc))
        except NotFoundError as exc:
            return pages.error(404, "Not found", str(exc))
        except ValidationError as exc:
            return pages.error(400, "Bad request", str(exc))
        except AccessDeniedError as exc:
            return pages.error(502, "The store refused access", redact_text(str(exc)))
        except CorruptRecordError as exc:
            return pages.error(500, "A record on the store is damaged", redact_text(str(exc)))
        except LorryError as exc:
            return pages.error(502, "The store failed", redact_text(str(exc)))

    return errors


async def static(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name not in _STATIC:  # a fixed set of files: nothing else of the machine is reachable here
        raise web.HTTPNotFound()
    body = importlib.resources.files("lorry.ui").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=_STATIC[name], headers={"Cache-Control": "max-age=300"})


# -- URLs -----------------------------------------------------------------------------------------------


def collection_url(collection: Collection) -> str:
    return "/a/" + "/".join(
        quote(part, safe="") for part in (collection.entity, collection.project, collection.name)
    )


def version_url(collection: Collection, version: int | str, page: str = "") -> str:
    alias = version_alias(version) if isinstance(version, int) else version
    return f"{collection_url(collection)}/v/{quote(alias, safe='')}" + (f"/{page}" if page else "")


def ref_url(ref: ArtifactRef) -> str:
    return version_url(Collection(ref.entity, ref.project, ref.name), ref.version)


def run_url(entity: str, project: str, run_id: str) -> str:
    return "/r/" + "/".join(quote(part, safe="") for part in (entity, project, run_id))


def _collection(request: web.Request) -> Collection:
    info = request.match_info
    return Collection(
        validate_segment(info["entity"], "entity"),
        validate_segment(info["project"], "project"),
        validate_artifact_name(info["name"]),
    )


def _alias(text: str) -> str:
    return LATEST if text == LATEST else validate_alias(text, allow_version=True)


def _page_number(request: web.Request) -> int:
    try:
        return max(1, int(request.query.get("page", "1")))
    except ValueError:
        raise ValidationError(f"page {request.query['page']!r} is not a number") from None


@dataclass(frozen=True, slots=True)
class Pager:
    """One page of a long list: the items shown and the links around them."""

    number: int
    pages: int
    start: int
    end: int
    total: int
    items: Sequence[Any]

    @classmethod
    def of(cls, items: Sequence[Any], number: int, size: int) -> Pager:
        pages = max(1, math.ceil(len(items) / size))
        number = min(number, pages)
        start = (number - 1) * size
        shown = items[start : start + size]
        return cls(number, pages, start + 1 if shown else 0, start + len(shown), len(items), shown)


def with_query(request: web.Request, **changes: object) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    params = dict(request.query)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return request.path + (f"?{urlencode(params)}" if params else "")


# -- pages ------------------------------------------------------------------------------------------------


class Pages:
    def __init__(self, reader: Reader, templates: jinja2.Environment) -> None:
        self.reader = reader
        self.templates = templates

    def render(
        self, request: web.Request | None, name: str, status: int = 200, **context: Any
    ) -> web.Response:
        template = self.templates.get_template(name)
        text = template.render(
            store=redact_setting("store", self.reader.store_url),
            url=(lambda **changes: with_query(request, **changes)) if request is not None else None,
            **context,
        )
        return web.Response(text=text, content_type="text/html", status=status)

    def error(self, status: int, title: str, message: str) -> web.Response:
        return self.render(None, "error.html", status, title=title, message=message, crumbs=[])

    async def index(self, request: web.Request) -> web.Response:
        found = await self.reader.collections()
        kind, name, project, tag = (request.query.get(k, "") for k in ("type", "name", "project", "tag"))
        projects = sorted({f"{c.collection.entity}/{c.collection.project}" for c in found})
        shown = [
            c
            for c in found
            if (not kind or c.type == kind)
            and (not project or f"{c.collection.entity}/{c.collection.project}" == project)
            and (not tag or tag in c.tags)
            and name.lower() in c.collection.name.lower()
        ]
        return self.render(
            request,
            "index.html",
            collections=shown,
            total=len(found),
            types=sorted({c.type for c in found if c.type}),
            tags=sorted({t for c in found for t in c.tags}),
            projects=projects,
            per_project=Counter(f"{c.collection.entity}/{c.collection.project}" for c in found),
            chosen={"type": kind, "name": name, "project": project, "tag": tag},
            crumbs=[],
        )

    async def collection(self, request: web.Request) -> web.Response:
        view = await self.reader.collection(_collection(request))
        live = view.live
        # Deleted and expired versions are left out unless asked for, and then marked as such; the
        # chart and the default diff only ever offer live ones.
        show_gone = request.query.get("deleted") == "1"
        records = view.records if show_gone else live
        keys = _metadata_keys(records)
        error = None
        text = request.query.get("filter", "")
        try:
            chosen = query.parse_filter(text)
        except ValidationError as exc:
            error, chosen = str(exc), query.parse_filter("")
        sort, order = request.query.get("sort", "version"), request.query.get("order", "desc")
        matching = _sorted([r for r in records if chosen.matches(r.metadata)], sort, order == "desc")
        numeric = [k for k in keys if any(query.number_at(r.metadata, k) is not None for r in live)]
        chart_key = request.query.get("chart") or (numeric[0] if numeric else "")
        live_numbers = [r.version for r in live]
        values = (
            sorted(
                (r.version, value)
                for r in matching
                if r.version in set(live_numbers)
                and (value := query.number_at(r.metadata, chart_key)) is not None
            )
            if chart_key
            else []
        )
        previous = dict(zip(live_numbers[1:], live_numbers, strict=False))  # live version → live one before
        return self.render(
            request,
            "collection.html",
            view=view,
            pager=Pager.of(matching, _page_number(request), VERSIONS_PER_PAGE),
            keys=keys[:METADATA_COLUMNS],
            hidden_keys=len(keys) - min(len(keys), METADATA_COLUMNS),
            lookup=_shown_value,
            filter_text=text,
            filter_error=error,
            matching=len(matching),
            sort=sort,
            order=order,
            numeric=numeric,
            chart_key=chart_key,
            chart=views.chart(values),
            live=len(live),
            gone_count=len(view.records) - len(live),
            show_gone=show_gone,
            previous=previous,
            diff_from=version_alias(live_numbers[-2] if len(live) > 1 else live_numbers[0]) if live else "",
            diff_to=version_alias(live_numbers[-1]) if live else "",
            crumbs=_crumbs(view.collection),
        )

    async def version(self, request: web.Request) -> web.Response:
        collection = _collection(request)
        found = await self.reader.version(
            collection, _alias(request.match_info["version"]), include_gone=True
        )
        record = found.record
        if found.gone is not None:  # not served: the page says since when and why, nothing to fetch
            return self.render(
                request,
                "gone.html",  # a page about the version's record, which is kept: 200, not 404 or 410
                found=found,
                record=record,
                crumbs=[*_crumbs(collection), (version_alias(record.version), "")],
            )
        entries, consumers, previous = await asyncio.gather(
            self.reader.entries(record.manifest),
            self.reader.consumers(collection, record.version),
            self.reader.previous_live(collection, record.version),
        )
        folder = request.query.get("dir", "")
        folder = normalize_entry_path(folder) if folder else ""
        listing = views.list_folder(entries, folder)
        if folder and not len(listing):
            raise lorry.ArtifactNotFoundError(f"{found.name} has no folder {folder!r}")
        rows: list[Any] = [*listing.folders, *listing.files]
        pager = Pager.of(rows, _page_number(request), FILES_PER_PAGE)
        # Only the entries shown are parsed and checked.
        pager = replace(pager, items=[entries.entry(r) if isinstance(r, int) else r for r in pager.items])
        name, store = found.name, redact_setting("store", self.reader.store_url)
        return self.render(
            request,
            "version.html",
            found=found,
            record=record,
            consumers=consumers,
            previous=previous,
            folder=folder,
            parents=_parents(folder),
            pager=pager,
            python=f"import lorry\n\nartifact = lorry.Api(store={store!r}).artifact({name!r})\n"
            "folder = artifact.download()",
            cli=f"lorry get {shlex.quote(name)} --store {shlex.quote(store)}",
            crumbs=[*_crumbs(collection), (version_alias(record.version), "")],
        )

    async def file(self, request: web.Request) -> web.StreamResponse:
        collection = _collection(request)
        found = await self.reader.version(collection, _alias(request.match_info["version"]))
        entries = await self.reader.entries(found.record.manifest)
        path = normalize_entry_path(request.match_info["path"])
        entry = entries.find(path)
        if entry is None:
            raise lorry.ArtifactNotFoundError(f"{found.name} has no file {path!r}")
        if entry.ref is not None or entry.digest is None:
            # A reference points outside the store: the page shows its URI, the server never fetches it.
            shown = redact_uri(entry.ref or "")
            raise ValidationError(f"{path!r} is a reference to {shown}, not stored here")
        response = web.StreamResponse(
            headers={
                # Served as bytes to save, never as a page to render, whatever the file holds.
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.rpartition('/')[2])}",
            }
        )
        if entry.size is not None:
            response.content_length = entry.size
        # Hash while sending and hold the last chunk back until the bytes match their digest: a
        # damaged blob ends the download short (the browser reports it failed), never complete.
        hasher = new_hasher()
        chunks = self.reader.blob(entry.digest)
        held = await anext(chunks, b"")  # a missing blob fails here, before the headers are sent
        await response.prepare(request)
        async for chunk in chunks:
            hasher.update(held)
            await response.write(held)
            held = chunk
        hasher.update(held)
        if format_digest(hasher.hexdigest()) != entry.digest:
            log.warning("%s: %r on the store does not match its digest; download cut short", found.name, path)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write(held)
        await response.write_eof()
        return response

    async def lineage(self, request: web.Request) -> web.Response:
        collection = _collection(request)
        found = await self.reader.version(
            collection, _alias(request.match_info["version"]), include_gone=True
        )
        graph = await self.reader.on_engine(
            lineage.walk(
                self.reader.registry, collection, found.record, LINEAGE_DEPTH, LINEAGE_BUDGET, LINEAGE_FANOUT
            )
        )
        layout = views.layout_graph(graph.root, *_graph_nodes(graph))
        return self.render(
            request,
            "lineage.html",
            found=found,
            layout=layout,
            depth=LINEAGE_DEPTH,
            left_out=sum(graph.more.values()),
            crumbs=[
                *_crumbs(collection),
                (version_alias(found.record.version), version_url(collection, found.record.version)),
                ("lineage", ""),
            ],
        )

    async def diff(self, request: web.Request) -> web.Response:
        collection = _collection(request)
        before_alias, after_alias = request.query.get("from", ""), request.query.get("to", "")
        if not before_alias or not after_alias:
            raise ValidationError("choose two versions to compare: ?from=v0&to=v1")
        before, after = await asyncio.gather(
            self.reader.version(collection, _alias(before_alias)),
            self.reader.version(collection, _alias(after_alias)),
        )
        a, b = await asyncio.gather(
            self.reader.entries(before.record.manifest), self.reader.entries(after.record.manifest)
        )
        diff = views.diff_versions(a, b, before.record.metadata, after.record.metadata)
        shown = DIFF_ROWS_SHOWN
        return self.render(
            request,
            "diff.html",
            collection=collection,
            before=before,
            after=after,
            diff=diff,
            added=[b.entry(i) for i in diff.added[:shown]],
            removed=[a.entry(i) for i in diff.removed[:shown]],
            changed=[views.Change(c.name, a.entry(c.before), b.entry(c.after)) for c in diff.changed[:shown]],
            crumbs=[*_crumbs(collection), ("diff", "")],
        )

    async def run(self, request: web.Request) -> web.Response:
        info = request.match_info
        record = await self.reader.run(
            validate_segment(info["entity"], "entity"),
            validate_segment(info["project"], "project"),
            validate_segment(info["run"], "run id"),
        )
        project = f"{record.entity}/{record.project}"
        # Each version listed is looked up, to mark those deleted or expired since the run.
        shown = {"inputs": record.inputs[:RUN_REFS_SHOWN], "outputs": record.outputs[:RUN_REFS_SHOWN]}
        states = await self.reader.states([*shown["inputs"], *shown["outputs"]])
        return self.render(
            request,
            "run.html",
            run=record,
            shown=shown,
            states=states,
            crumbs=[(project, f"/?{urlencode({'project': project})}"), (f"run {record.id}", "")],
        )


def _graph_nodes(
    graph: lineage.Lineage,
) -> tuple[dict[str, views.GraphNode], list[tuple[str, str, str]]]:
    """The walked lineage as nodes to draw: versions (marked when not served), runs, and one "N
    more" node per node whose neighbours were left out, linked to the page that lists them all."""
    nodes: dict[str, views.GraphNode] = {}
    for node, record in graph.versions.items():
        ref = graph.refs[node]
        where = Collection(ref.entity, ref.project, ref.name)
        label = f"{ref.name}:{version_alias(ref.version)}"
        if record is None:
            nodes[node] = views.GraphNode(
                node, "artifact", label, "missing", version_url(where, ref.version), "missing"
            )
            continue
        state = gone(record)
        if state is None:
            detail, href = (
                f"{record.type} · {ref.entity}/{ref.project}",
                version_url(where, ref.version, "lineage"),
            )
        else:  # its own page says when it went
            detail, href = f"{state.how} · {record.type}", version_url(where, ref.version)
        nodes[node] = views.GraphNode(node, "artifact", label, detail, href, state.how if state else "")
    for node, run in graph.runs.items():
        entity, project, run_name = node.split("/")
        if run is None:
            nodes[node] = views.GraphNode(
                node, "run", "run", f"run {run_name} · missing", run_url(entity, project, run_name), "missing"
            )
        else:
            nodes[node] = views.GraphNode(
                node,
                "run",
                run.job_type or "run",
                f"run {run.id} · {run.state}",
                run_url(entity, project, run.id),
            )
    edges = list(graph.edges)
    for (node, direction), count in graph.more.items():
        more = f"{node} {direction} more"
        is_version = node in graph.versions
        what = ("run" if is_version else "version") + ("" if count == 1 else "s")
        nodes[more] = views.GraphNode(
            more, "more", f"{count} more {what}", "not drawn", nodes[node].href.removesuffix("/lineage")
        )
        edges.append((node, more, "more") if direction == lineage.DOWN else (more, node, "more"))
    return nodes, edges


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _until(moment: datetime, now: datetime | None = None) -> str:
    """How long until ``moment``: 'in 29 days', 'in 3 hours', 'in 5 minutes', or 'now'."""
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = int(seconds // size)
            return f"in {count} {unit}{'' if count == 1 else 's'}"
    return "now"


def _duration(seconds: float | None) -> str:
    """A time to live in the largest unit that divides it: '30 days', '36 hours', '1.5 seconds'."""
    if seconds is None:
        return "-"
    units = ((86400, "day"), (3600, "hour"), (60, "minute"))
    size, unit = next(((s, u) for s, u in units if seconds >= s and seconds % s == 0), (1, "second"))
    count = seconds / size
    return f"{count:g} {unit}{'' if count == 1 else 's'}"


def _crumbs(collection: Collection) -> list[tuple[str, str]]:
    project = f"{collection.entity}/{collection.project}"
    return [(project, f"/?{urlencode({'project': project})}"), (collection.name, collection_url(collection))]


def _parents(folder: str) -> list[tuple[str, str]]:
    """``a/b/c`` → [('a', 'a'), ('b', 'a/b'), ('c', 'a/b/c')]: the links of a folder's path."""
    if not folder:
        return []
    parts = folder.split("/")
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def _metadata_keys(records: Sequence[Any]) -> list[str]:
    """Metadata keys across versions, the most common first."""
    seen: dict[str, int] = {}
    for record in records:
        for key in record.metadata:
            seen[key] = seen.get(key, 0) + 1
    return sorted(seen, key=lambda k: (-seen[k], k))


_BUILTIN_SORTS: Mapping[str, Callable[[Any], Any]] = {
    "version": lambda r: r.version,
    "created": lambda r: r.created_at,
    "size": lambda r: r.size,
    "files": lambda r: r.file_count,
}


def _sorted(records: list[VersionRecord], sort: str, descending: bool) -> list[VersionRecord]:
    """By a column (version, created, size, files) or a metadata key (``meta:loss``); versions without
    the key come last either way."""
    if sort in _BUILTIN_SORTS:
        return sorted(records, key=_BUILTIN_SORTS[sort], reverse=descending)
    path = sort.removeprefix("meta:").split(".")
    having = [r for r in records if not query.missing(query.lookup(r.metadata, path))]
    lacking = [r for r in records if query.missing(query.lookup(r.metadata, path))]
    return (
        sorted(having, key=lambda r: (query.sort_key(r.metadata, path), r.version), reverse=descending)
        + lacking
    )


def _shown_value(metadata: Mapping[str, Any], key: str) -> str:
    value = metadata.get(key, views.MISSING)
    if value is views.MISSING:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
