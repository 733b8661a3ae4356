"""The ``lorry`` command line: a thin layer over the public API.

Every command maps onto one or two calls of ``lorry.Api``, ``lorry.init`` / ``Run``, ``Artifact`` or the
download cache; this module only parses arguments and presents results. Exit codes: 0 success, 1 a
failure (one line on stderr, ``lorry: error: ...``; ``--debug`` adds the traceback), 2 bad usage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

import click

import lorry
from lorry.cache import Cache
from lorry.model.display import human_size, human_time, parse_size
from lorry.model.names import LATEST, latest_is_managed, version_number
from lorry.model.retention import BestRule, RetentionPolicy
from lorry.model.secret import redact_setting, redact_uri
from lorry.runs import one_line
from lorry.transfer.known import KnownDigests

log = logging.getLogger("lorry")

Args = SimpleNamespace  # one command's parsed options and arguments, by name

# -- presentation helpers ------------------------------------------------------------------------------

class Style:
    """ANSI colour, only on a terminal and never when ``NO_COLOR`` is set."""

    def __init__(self, stream: TextIO) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(
            isatty is not None
            and isatty()
            and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb"
        )

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)


@dataclass
class Output:
    """Where a command writes: plain or styled text, or one JSON document."""

    json: bool
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def __post_init__(self) -> None:
        self.style = Style(self.out)

    def line(self, text: str = "") -> None:
        print(text, file=self.out)

    def document(self, value: Any) -> None:
        json.dump(value, self.out, indent=2, sort_keys=False, ensure_ascii=False)
        self.out.write("\n")

    def table(
        self, headers: Sequence[str], rows: Iterable[Sequence[str]], styles: Sequence[Any] = ()
    ) -> None:
        """Columns padded to their widest cell; ``styles[i]`` (a Style method or None) colours column i."""
        body = [list(r) for r in rows]
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
        last = len(headers) - 1
        header = "  ".join(
            h.ljust(w) if i < last else h for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
        self.line(self.style.bold(header))
        for row in body:
            cells = []
            for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
                padded = cell.ljust(width) if i < last else cell
                paint = styles[i] if i < len(styles) else None
                cells.append(paint(padded) if paint is not None else padded)
            self.line("  ".join(cells).rstrip())


# -- describing artifacts and runs ---------------------------------------------------------------------


def _run_label(run: lorry.LoggedRun | None) -> str:
    if run is None:
        return "-"
    return f"{run.path} ({run.job_type or 'no job type'})"


def _producer(artifact: lorry.Artifact) -> lorry.LoggedRun | None:
    try:
        return artifact.logged_by()
    except lorry.NotFoundError:
        return None  # the run record is gone: show the version anyway


def _run_json(run: lorry.LoggedRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "path": run.path,
        "id": run.id,
        "name": run.name,
        "job_type": run.job_type,
        "state": run.state,
        "created_at": run.created_at,
    }


def _version_json(artifact: lorry.Artifact, producer: lorry.LoggedRun | None = None) -> dict[str, Any]:
    """One version as every ``--json`` document shows it (``producer``: its run, if already read)."""
    producer = producer if producer is not None else _producer(artifact)
    return {
        "name": artifact.qualified_name,
        "version": artifact.version,
        "type": artifact.type,
        "aliases": list(artifact.aliases),
        "size": artifact.size,
        "files": artifact.file_count,
        "digest": artifact.digest,
        "created_at": artifact.created_at,
        "logged_by": producer.path if producer is not None else None,
        "state": artifact.state,
    }


def _files_text(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'}"


def _aliases_text(aliases: Sequence[str]) -> str:
    return ", ".join(aliases) if aliases else "-"


# -- commands ------------------------------------------------------------------------------------------


def _api(args: Args) -> lorry.Api:
    return lorry.Api(store=args.store, entity=args.entity, project=args.project)


def cmd_put(args: Args, out: Output) -> int:
    artifact = lorry.Artifact(args.name, type=args.type, description=args.description, metadata=args.metadata)
    path = Path(args.path)
    if path.is_dir():
        artifact.add_dir(path, policy=args.policy)
    else:
        artifact.add_file(path, policy=args.policy)
    # The artifact is complete before a run exists, so bad input leaves nothing behind on the store.
    run = lorry.init(project=args.project, entity=args.entity, job_type="lorry-put", store=args.store)
    try:
        run.log_artifact(artifact, aliases=args.alias)
        artifact.wait()
    except BaseException:
        with contextlib.suppress(lorry.LorryError):  # the first error is the one reported
            run.finish(exit_code=1)
        raise
    run.finish()
    producer = _producer(artifact)
    unchanged = producer is None or producer.id != run.id
    if out.json:
        out.document({**_version_json(artifact, producer), "unchanged": unchanged})
    else:
        out.line(out.style.green(artifact.qualified_name) + (" (unchanged)" if unchanged else ""))
    return 0


def cmd_get(args: Args, out: Output) -> int:
    artifact = _api(args).artifact(args.artifact)
    folder = os.path.abspath(artifact.download(args.root))
    if out.json:
        out.document({**_version_json(artifact), "path": folder})
        return 0
    out.line(folder)
    return 0


def cmd_ls(args: Args, out: Output) -> int:
    api = _api(args)
    collections = api.artifact_collections(args.project_name or None, args.type)
    rows: list[dict[str, Any]] = []
    for collection in collections:
        versions = collection.versions()
        if args.tag and not set(args.tag) <= set(collection.tags):  # tagged, or holding versions tagged so
            versions = [v for v in versions if set(args.tag) <= set(v.tags)]
            if not versions:
                continue
        latest = versions[-1] if versions else None
        rows.append(
            {
                "name": collection.name,
                "entity": collection.entity,
                "project": collection.project,
                "type": collection.type,
                "tags": collection.tags,
                "versions": len(versions),
                "latest": latest.version if latest else None,
                "size": latest.size if latest else None,
                "updated_at": latest.created_at if latest else None,
            }
        )
    if out.json:
        out.document(rows)
        return 0
    if not rows:
        where = args.project_name or f"{api.settings.entity}/{api.settings.project}"
        out.line(f"no artifacts in {where}")
        return 0
    s = out.style
    out.table(
        ["NAME", "TYPE", "VERSIONS", "LATEST", "SIZE", "UPDATED"],
        [
            [
                r["name"],
                r["type"],
                str(r["versions"]),
                r["latest"] or "-",
                human_size(r["size"]),
                human_time(r["updated_at"]),
            ]
            for r in rows
        ],
        [s.cyan, None, None, s.green, None, s.dim],
    )
    return 0


def cmd_versions(args: Args, out: Output) -> int:
    api = _api(args)
    if ":" in args.collection:
        raise lorry.ValidationError(f"{args.collection!r} names a version; give the name without ':alias'")
    artifact_type = api.artifact_collection_type(args.collection)
    versions = api.artifacts(artifact_type, args.collection, tags=args.tag or None, include_deleted=True)
    gone = [a.version for a in versions if a.state == "DELETED"]
    if not args.deleted:
        versions = [a for a in versions if a.state != "DELETED"]
    described = [(a, _producer(a)) for a in versions]
    if out.json:
        out.document([_version_json(a, p) for a, p in described])
        return 0
    s = out.style
    out.table(
        ["VERSION", "ALIASES", "SIZE", "FILES", "DIGEST", "CREATED", "RUN"],
        [
            [
                a.version,
                "(deleted)" if a.state == "DELETED" else _aliases_text(a.aliases),
                human_size(a.size),
                str(a.file_count),
                a.digest[:12],
                human_time(a.created_at),
                _run_label(p),
            ]
            for a, p in described
        ],
        [s.green, s.yellow, None, None, s.dim, None, None],
    )
    if gone and not args.deleted:
        out.line(s.dim(f"deleted: {', '.join(gone)} (--deleted lists them)"))
    return 0


MAX_FILES_SHOWN = 20


def cmd_show(args: Args, out: Output) -> int:
    artifact = _api(args).artifact(args.artifact)
    producer = _producer(artifact)
    inputs = producer.used_artifacts() if producer is not None else []
    consumers = artifact.used_by()
    files = sorted(artifact.files(), key=lambda e: e.path)
    if out.json:
        doc = _version_json(artifact, producer)
        doc.update(
            description=artifact.description,
            metadata=artifact.metadata,
            entries=[{"path": e.path, "size": e.size, "digest": e.digest, "ref": e.ref} for e in files],
            producer={**(_run_json(producer) or {}), "inputs": [a.qualified_name for a in inputs]}
            if producer is not None
            else None,
            consumers=[_run_json(r) for r in consumers],
        )
        out.document(doc)
        return 0
    s = out.style
    out.line(s.bold(s.green(artifact.qualified_name)))
    fields = [
        ("type", artifact.type),
        ("aliases", s.yellow(_aliases_text(artifact.aliases))),
        ("description", artifact.description or "-"),
        ("created", f"{human_time(artifact.created_at)} ({artifact.created_at})"),
        ("size", f"{human_size(artifact.size)} in {_files_text(artifact.file_count)}"),
        ("digest", artifact.digest),
    ]
    for name, value in fields:
        out.line(f"  {name:<12} {value}")
    out.line(s.bold("metadata"))
    if not artifact.metadata:
        out.line("  -")
    for key, value in artifact.metadata.items():
        out.line(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    out.line(s.bold("files"))
    if not files:
        out.line("  -")
    width = max((len(human_size(e.size)) for e in files[:MAX_FILES_SHOWN]), default=0)
    for entry in files[:MAX_FILES_SHOWN]:
        ref = entry.ref
        shown = s.dim(f"  -> {redact_uri(ref)}") if ref else ""  # a signed URL without its signature
        out.line(f"  {human_size(entry.size):>{width}}  {entry.path}{shown}")
    if len(files) > MAX_FILES_SHOWN:
        out.line(s.dim(f"  ... and {len(files) - MAX_FILES_SHOWN} more (lorry show --json lists all)"))
    out.line(s.bold("lineage"))
    out.line(f"  logged by   {_run_label(producer)}")
    for used in inputs:
        out.line(f"    used      {used.qualified_name} ({used.type})")
    if not consumers:
        out.line("  used by     -")
    for run in consumers:
        out.line(f"  used by     {_run_label(run)}")
    return 0


@dataclass
class Graph:
    """Artifacts and runs around one version, with ``used`` (artifact → run) and ``logged`` (run →
    artifact) edges; filled by walking the public lineage calls."""

    artifacts: dict[str, lorry.Artifact] = field(default_factory=dict)
    runs: dict[str, lorry.LoggedRun] = field(default_factory=dict)
    edges: set[tuple[str, str, str]] = field(default_factory=set)  # (from, to, relation)

    def upstream(self, node: str) -> list[str]:
        return sorted(a for a, b, _ in self.edges if b == node)

    def downstream(self, node: str) -> list[str]:
        return sorted(b for a, b, _ in self.edges if a == node)


def walk_lineage(root: lorry.Artifact, depth: int | None) -> Graph:
    """Upstream (the run that logged an artifact, the artifacts it used, ...) and downstream (the runs
    that used it, the artifacts they logged, ...), each up to ``depth`` artifacts away."""
    graph = Graph()
    graph.artifacts[root.qualified_name] = root

    def link(artifact: str, run: str, relation: str) -> None:
        # Edges point the way the work went: artifact → the run that used it, run → what it logged.
        graph.edges.add((artifact, run, relation) if relation == "used" else (run, artifact, relation))

    def walk(
        runs_of: Callable[[lorry.Artifact], list[lorry.LoggedRun]],
        artifacts_of: Callable[[lorry.LoggedRun], list[lorry.Artifact]],
        relations: tuple[str, str],  # of an artifact to its runs, of a run to the artifacts next
    ) -> None:
        seen = {root.qualified_name}

        def visit(artifact: lorry.Artifact, level: int) -> None:
            if depth is not None and level >= depth:
                return
            for found in runs_of(artifact):
                run = graph.runs.setdefault(found.path, found)
                link(artifact.qualified_name, run.path, relations[0])
                if run.path in seen:
                    continue
                seen.add(run.path)
                for then in artifacts_of(run):
                    link(then.qualified_name, run.path, relations[1])
                    if then.qualified_name not in seen:
                        seen.add(then.qualified_name)
                        graph.artifacts.setdefault(then.qualified_name, then)
                        visit(then, level + 1)

        visit(root, 0)

    def producers(artifact: lorry.Artifact) -> list[lorry.LoggedRun]:
        producer = _producer(artifact)
        return [] if producer is None else [producer]

    walk(producers, lambda run: run.used_artifacts(), ("logged", "used"))
    walk(lambda artifact: artifact.used_by(), lambda run: run.logged_artifacts(), ("used", "logged"))
    return graph


def _node_label(graph: Graph, node: str) -> str:
    if node in graph.artifacts:
        artifact = graph.artifacts[node]
        return f"{node} ({artifact.type}{', deleted' if artifact.state == 'DELETED' else ''})"
    run = graph.runs[node]
    return f"run {node} ({run.job_type or 'no job type'})"


def _draw_tree(out: Output, graph: Graph, root: str, children: Callable[[str], list[str]], verb: str) -> None:
    s = out.style
    shown: set[str] = set()

    def label(node: str) -> str:
        text = _node_label(graph, node)
        return s.green(text) if node in graph.artifacts else s.cyan(text)

    def draw(node: str, prefix: str, path: tuple[str, ...]) -> None:
        kids = children(node)
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            again = kid in shown or kid in path
            suffix = s.dim(" (see above)") if again and children(kid) else ""
            out.line(f"{prefix}{'└── ' if last else '├── '}{label(kid)}{suffix}")
            if not again:
                shown.add(kid)
                draw(kid, prefix + ("    " if last else "│   "), (*path, kid))

    out.line(s.bold(verb))
    if not children(root):
        out.line("    (none)")
    draw(root, "    ", (root,))


def _dot_string(*lines: str) -> str:
    """A quoted dot string; several lines are joined with dot's own line break."""
    return '"' + "\\n".join(x.replace("\\", "\\\\").replace('"', '\\"') for x in lines) + '"'


def _dot(graph: Graph, root: str) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    for name, artifact in sorted(graph.artifacts.items()):
        style = ', style="bold,filled", fillcolor="#e8f4e8"' if name == root else ""
        lines.append(f"  {_dot_string(name)} [shape=box, label={_dot_string(name, artifact.type)}{style}];")
    for path, run in sorted(graph.runs.items()):
        label = _dot_string(path, run.job_type or "run")
        lines.append(f"  {_dot_string(path)} [shape=ellipse, label={label}];")
    for source, target, relation in sorted(graph.edges):
        lines.append(f"  {_dot_string(source)} -> {_dot_string(target)} [label={_dot_string(relation)}];")
    lines.append("}")
    return "\n".join(lines)


def cmd_lineage(args: Args, out: Output) -> int:
    root = _api(args).artifact(args.artifact)
    graph = walk_lineage(root, args.depth)
    name = root.qualified_name
    if out.json:
        nodes = [
            {"id": n, "kind": "artifact", "type": a.type, "version": a.version}
            for n, a in sorted(graph.artifacts.items())
        ] + [
            {"id": p, "kind": "run", "job_type": r.job_type, "state": r.state}
            for p, r in sorted(graph.runs.items())
        ]
        edges = [{"from": a, "to": b, "relation": rel} for a, b, rel in sorted(graph.edges)]
        out.document({"root": name, "nodes": nodes, "edges": edges})
        return 0
    if args.dot:
        out.line(_dot(graph, name))
        return 0
    out.line(out.style.bold(out.style.green(_node_label(graph, name))))
    _draw_tree(out, graph, name, graph.upstream, "upstream (what it was made from)")
    _draw_tree(out, graph, name, graph.downstream, "downstream (what was made from it)")
    return 0


def cmd_ui(args: Args, out: Output) -> int:
    from lorry.ui import serve  # the web server's modules load only for this command

    def announce(line: str) -> None:
        out.line(line)
        out.out.flush()

    serve(_api(args).settings, args.host, args.port, announce)
    return 0


def _print_aliases(artifact: lorry.Artifact, out: Output) -> int:
    if out.json:
        out.document(_version_json(artifact))
    else:
        out.line(f"{out.style.green(artifact.qualified_name)} aliases: {_aliases_text(artifact.aliases)}")
    return 0


def cmd_alias_set(args: Args, out: Output) -> int:
    artifact = _api(args).artifact(args.artifact)
    if args.alias not in artifact.aliases:
        artifact.aliases.append(args.alias)
        artifact.save()
    return _print_aliases(artifact, out)


def cmd_alias_rm(args: Args, out: Output) -> int:
    if ":" in args.collection:
        raise lorry.ValidationError(f"{args.collection!r} names a version; give the name without ':alias'")
    artifact = _api(args).artifact(f"{args.collection}:{args.alias}")
    if args.alias == LATEST:  # lorry moves it to each new version; removing it by hand is refused
        raise latest_is_managed(version_number(artifact.version))
    if args.alias not in artifact.aliases:  # 'vN' resolves, but is not an alias one can remove
        raise lorry.ValidationError(f"{args.alias!r} is a version number, not an alias")
    artifact.aliases.remove(args.alias)
    artifact.save()
    return _print_aliases(artifact, out)


def cmd_verify(args: Args, out: Output) -> int:
    if args.artifact is None:
        return _verify_store(args, out)
    if args.quick:
        raise lorry.ValidationError("--quick applies to the whole store: give no NAME with it")
    artifact = _api(args).artifact(args.artifact)
    folder = Path(args.root) if args.root is not None else artifact.default_root()
    artifact.verify(folder)
    if out.json:
        out.document({**_version_json(artifact), "path": os.path.abspath(folder), "ok": True})
    else:
        out.line(
            f"{out.style.green('ok')}: {folder} matches {artifact.qualified_name} "
            f"({_files_text(artifact.file_count)}, {human_size(artifact.size)})"
        )
    return 0


def _verify_store(args: Args, out: Output) -> int:
    if args.root is not None:
        raise lorry.ValidationError("--root needs the NAME of the version to check the folder against")
    report = _api(args).verify_store(quick=args.quick)
    if out.json:
        out.document(
            {
                "store": args.store or lorry.Settings.load().store,
                "versions": report.versions,
                "manifests": report.manifests,
                "blobs": report.blobs,
                "bytes_hashed": report.blob_bytes,
                "problems": [{"key": p.key, "problem": p.message} for p in report.problems],
                "ok": report.ok,
            }
        )
        return 0 if report.ok else 1
    checked = "sizes checked" if args.quick else f"{human_size(report.blob_bytes)} hashed"
    summary = f"{report.versions} versions, {report.blobs} blobs ({checked})"
    for problem in report.problems:
        out.line(f"{out.style.red('problem')}: {problem}")
    if report.ok:
        out.line(f"{out.style.green('ok')}: {summary}")
        return 0
    out.line(f"{len(report.problems)} problem(s) in {summary}")
    return 1


def cmd_rm(args: Args, out: Output) -> int:
    api = _api(args)
    if args.all:
        if ":" in args.artifact:
            raise lorry.ValidationError(f"--all deletes every version: give {args.artifact!r}, no ':alias'")
        collection = api.artifact_collection(api.artifact_collection_type(args.artifact), args.artifact)
        doomed = collection.artifacts()
    else:
        if ":" not in args.artifact:
            raise lorry.ValidationError(
                f"give the version to delete ({args.artifact}:v3, {args.artifact}:old), or --all for all"
            )
        try:
            doomed = [api.artifact(args.artifact)]
        except lorry.ArtifactDeletedError as gone:  # a delete run again (after a crash) has nothing to do
            if out.json:
                out.document({"dry_run": args.dry_run, "deleted": []})
            else:
                out.line(f"nothing to delete: {gone}")
            return 0
    aliased = [a for a in doomed if _user_aliases(a)]
    if aliased and not (args.all or args.delete_aliases):
        names = ", ".join(f"{a.qualified_name} ({', '.join(_user_aliases(a))})" for a in aliased)
        raise lorry.UsageError(f"{names} has aliases; pass --delete-aliases to delete it with them")
    if not out.json:
        for artifact in doomed:
            aliases = _user_aliases(artifact)
            note = f" with its aliases {', '.join(aliases)}" if aliases else ""
            out.line(f"{'would delete' if args.dry_run else 'delete'} {artifact.qualified_name}{note}")
    if args.dry_run or not doomed:
        if out.json:
            out.document({"dry_run": True, "deleted": [a.qualified_name for a in doomed]})
        return 0
    if sys.stdin.isatty() and not args.yes:
        answer = input(f"delete {len(doomed)} version(s)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.line("nothing deleted")
            return 1
    if args.all:
        collection.delete()
    else:
        doomed[0].delete(delete_aliases=args.delete_aliases)
    if out.json:
        out.document({"dry_run": False, "deleted": [a.qualified_name for a in doomed]})
    else:
        out.line(f"deleted {len(doomed)} version(s); `lorry gc` frees their files after its grace period")
    return 0


def _user_aliases(artifact: lorry.Artifact) -> list[str]:
    return [a for a in artifact.aliases if a != LATEST]


def cmd_retain(args: Args, out: Output) -> int:
    api = _api(args)
    policy = None
    if args.keep_last is not None or args.keep_best is not None:
        policy = RetentionPolicy(
            keep_last=args.keep_last, keep_aliased=not args.no_keep_aliased, keep_best=args.keep_best
        )
    if args.collection is None:  # every collection of the project that has a policy of its own
        if policy is not None:
            raise lorry.ValidationError(
                "give NAME to apply --keep-last or --keep-best; without NAME, "
                "each artifact's saved policy is applied"
            )
        collections = [c for c in api.artifact_collections() if c.retention is not None]
    else:
        collections = [
            api.artifact_collection(api.artifact_collection_type(args.collection), args.collection)
        ]
    if policy is not None and args.save:
        collections[0].retention = policy
        collections[0].save()
    decided = [(c, d) for c in collections for d in c.apply_retention(policy, dry_run=args.dry_run)]
    if out.json:
        out.document(
            [
                {"name": c.name, "version": f"v{d.version}", "keep": d.keep, "reason": d.reason}
                for c, d in decided
            ]
        )
        return 0
    gone = "would delete" if args.dry_run else "deleted"
    for collection, d in decided:
        verb = out.style.green("keep") if d.keep else out.style.red(gone)
        out.line(f"{verb} {collection.name}:v{d.version}: {d.reason}")
    if not collections:
        out.line("no artifact here has a retention policy (set one with NAME --keep-last N --save)")
    return 0


def cmd_gc(args: Args, out: Output) -> int:
    report = lorry.Api(store=args.store).collect_garbage(args.older_than, dry_run=args.dry_run)
    if out.json:
        out.document(
            {
                "dry_run": report.dry_run,
                "versions": report.versions,
                "expired": report.expired,
                "blobs": report.blobs,
                "blob_bytes": report.blob_bytes,
                "manifests": report.manifests,
                "uploads": report.uploads,
                "spared": report.spared,
                "keys": list(report.keys),
            }
        )
        return 0
    verb = "would remove" if report.dry_run else "removed"
    if report.dry_run:
        for key in report.keys:
            out.line(f"{verb} {key}")
    spared = f", and {report.spared} unreferenced objects younger than {args.older_than}"
    out.line(
        f"{verb} {report.blobs} blobs ({human_size(report.blob_bytes)}), {report.manifests} manifests and "
        f"{report.uploads} stale uploads; kept everything {report.versions} versions need"
        + (spared if report.spared else "")
        + (f"; {report.expired} expired versions marked deleted" if report.expired else "")
    )
    return 0


def _cache() -> tuple[Cache, KnownDigests]:
    """The download cache, and the digests remembered in it for local files (``transfer/known.py``)."""
    root = lorry.Settings.load().cache_dir
    return Cache(root), KnownDigests(root)


def _cache_json(cache: Cache, digests: KnownDigests) -> dict[str, Any]:
    info, remembered = cache.info(), digests.footprint()
    staging = {"files": info.staging.files, "bytes": info.staging.bytes, "in_use": info.staging.in_use}
    return {
        "path": str(cache.root),
        "files": info.files,
        "bytes": info.bytes,
        "staging": staging,
        "digests": {"files": remembered.files, "bytes": remembered.bytes},
    }


def _cache_text(cache: Cache, digests: KnownDigests) -> str:
    info, remembered = cache.info(), digests.footprint()
    staged = info.staging
    left = staged.files - staged.in_use
    dead = f", {left} left by processes that ended (lorry cache cleanup removes them)" if left else ""
    return (
        f"{cache.root}: {_files_text(info.files)}, {human_size(info.bytes)}; "
        f"staging {_files_text(staged.files)}, {human_size(staged.bytes)}{dead}; "
        f"remembered digests {_files_text(remembered.files)}, {human_size(remembered.bytes)}"
    )


def cmd_cache_info(args: Args, out: Output) -> int:
    cache, digests = _cache()
    if out.json:
        out.document(_cache_json(cache, digests))
    else:
        out.line(_cache_text(cache, digests))
    return 0


def cmd_cache_cleanup(args: Args, out: Output) -> int:
    cache, digests = _cache()
    staging_freed = cache.reclaim_staging()
    places_forgotten = cache.forget_stale_places()  # downloaded files changed or removed since
    # Digests no file can use again always go. Under --max-size the blobs yield before the digests
    # that still hold: each of those spares reading a whole large file again, for a hundred bytes.
    digests_freed = digests.reclaim(args.max_size).bytes
    freed = 0
    if args.max_size is not None:
        freed = cache.cleanup(max(0, args.max_size - digests.footprint().bytes))
    if out.json:
        document = {
            "freed": freed,
            "staging_freed": staging_freed,
            "digests_freed": digests_freed,
            "places_forgotten": places_forgotten,
        }
        out.document({**_cache_json(cache, digests), **document})
    else:
        out.line(
            f"freed {human_size(freed)} of blobs, {human_size(staging_freed)} of staging and "
            f"{human_size(digests_freed)} of remembered digests"
        )
        out.line(_cache_text(cache, digests))
    return 0


def cmd_uploads(args: Args, out: Output) -> int:
    api = lorry.Api(store=args.store)
    found = api.stale_uploads(args.older_than) if args.dry_run else api.abort_stale_uploads(args.older_than)
    if out.json:
        out.document(
            [{"key": u.key, "upload_id": u.upload_id, "initiated": u.initiated.isoformat()} for u in found]
        )
        return 0
    verb = "would abort" if args.dry_run else "aborted"
    for upload in found:
        out.line(f"{verb} {upload.key} (started {upload.initiated.isoformat(timespec='seconds')})")
    out.line(f"{verb} {len(found)} stale upload(s) older than {args.older_than}")
    return 0


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value, unit = float(text[:-1]), units[text[-1]]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"must be a duration like 30m, 24h or 7d, not {text!r}") from None
    if value < 0:
        raise ValueError(f"must not be negative: {text!r}")
    return timedelta(seconds=value * unit)


def cmd_config(args: Args, out: Output) -> int:
    settings = lorry.Settings.load(store=args.store, entity=args.entity, project=args.project)
    rows = [
        (name, redact_setting(name, value) if isinstance(value, str) else value, source)
        for name, value, source in settings.describe()
    ]
    if out.json:
        out.document([{"name": n, "value": v, "source": src} for n, v, src in rows])
        return 0
    s = out.style
    out.table(["SETTING", "VALUE", "SOURCE"], [(n, str(v), src) for n, v, src in rows], [s.cyan, None, s.dim])
    return 0


def cmd_bench(args: Args, out: Output) -> int:
    from lorry import benchmark

    store = args.url or lorry.Settings.load().store
    specs = [
        benchmark.DatasetSpec("small", args.small, args.small_size),
        benchmark.DatasetSpec("medium", args.medium, args.medium_size),
        benchmark.DatasetSpec("large", 1, args.large),
    ]
    specs = [spec for spec in specs if spec.files > 0 and spec.file_size > 0]
    if not specs:
        raise lorry.ValidationError("nothing to measure: every dataset has no files or no bytes")
    shown = redact_setting("store", store)
    if not out.json:
        sizes = ", ".join(f"{s.name} {s.files:,} x {human_size(s.file_size)}" for s in specs)
        out.line(f"lorry bench on {shown}: {sizes}; {args.runs} run(s) each, medians")

    def progress(m: benchmark.Measurement) -> None:
        if not out.json:
            print(f"  {m.dataset} {m.direction} run {m.run}: {m.seconds:.2f} s", file=sys.stderr)

    results = benchmark.run_benchmark(
        store, specs, runs=args.runs, workdir=args.workdir, entity=args.entity, on_result=progress
    )
    summaries = benchmark.summarize(results)
    ok = all(s.verified for s in summaries)
    if out.json:
        out.document(
            {
                "store": shown,
                "runs": args.runs,
                "verified": ok,
                "results": [
                    {
                        "dataset": s.dataset,
                        "direction": s.direction,
                        "files": s.files,
                        "bytes": s.bytes,
                        "seconds": s.seconds,
                        "seconds_min": s.seconds_min,
                        "seconds_max": s.seconds_max,
                        "mb_per_s": s.mb_per_s,
                        "files_per_s": s.files_per_s,
                        "cpu_seconds": s.cpu_seconds,
                        "peak_rss": s.peak_rss,
                        "verified": s.verified,
                    }
                    for s in summaries
                ],
            }
        )
        return 0 if ok else 1
    s = out.style
    spread = args.runs > 1
    out.table(
        ["DATASET", "DIRECTION", "FILES", "SIZE", "SECONDS", "MB/S", "FILES/S", "CPU S", "PEAK RSS", "BYTES"],
        [
            [
                r.dataset,
                r.direction,
                f"{r.files:,}",
                human_size(r.bytes),
                f"{r.seconds:.2f}" + (f" [{r.seconds_min:.2f}-{r.seconds_max:.2f}]" if spread else ""),
                f"{r.mb_per_s:,.1f}",
                f"{r.files_per_s:,.0f}" if r.files_per_s >= 10 else f"{r.files_per_s:.2f}",
                f"{r.cpu_seconds:.2f}",
                human_size(r.peak_rss),
                ("verified" if r.direction == "download" else "committed") if r.verified else "FAILED",
            ]
            for r in summaries
        ],
        [s.cyan, None, None, None, s.bold, s.green, s.green, None, None, None],
    )
    out.line(s.dim("everything the benchmark wrote was removed from the store"))
    return 0 if ok else 1


def _whole_number(text: str, least: int, wanted: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise ValueError(f"must be {wanted}, not {text!r}")
    return value


def _count(text: str) -> int:
    return _whole_number(text, 0, "a whole number, 0 or more")


# -- the command line ----------------------------------------------------------------------------------


def _metadata(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object like '{{\"rows\": 10}}', not {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, "a positive integer")


class Parsed(click.ParamType[Any]):
    """A value read by one of this module's parsers; its complaint becomes a usage error (exit 2)."""

    def __init__(self, parse: Callable[[str], Any]) -> None:
        self.parse = parse
        self.name = parse.__name__.strip("_")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # a default, already parsed
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            where = (
                param.opts[0]
                if isinstance(param, click.Option)
                else (param.human_readable_name if param else "")
            )
            raise click.UsageError(f"argument {where}: {exc}", ctx) from None


class _Formatter(click.HelpFormatter):
    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "usage: " if prefix is None else prefix)


class _Context(click.Context):
    formatter_class = _Formatter


class _Help:
    """Help as the command line has always shown it: ``usage:`` first, the examples kept as written."""

    context_class: type[click.Context] = _Context
    epilog: str | None

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.epilog:
            formatter.write("\n" + self.epilog + "\n")


class Command(_Help, click.Command):
    pass


class Group(_Help, click.Group):
    """Subcommands listed under ``commands``; a missing or unknown one is a usage error."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if not name.startswith("-") and self.get_command(ctx, name) is None:
            choices = ", ".join(self.list_commands(ctx))
            raise click.UsageError(f"argument COMMAND: invalid choice: {name!r} (choose from {choices})", ctx)
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they were added, not sorted

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, command.get_short_help_str(200)) for name, command in self.commands.items()]
        with formatter.section("commands"), formatter.indentation():
            formatter.write_dl(rows)


SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class _State:
    """What ``main`` must know after a command ran: whether to show tracebacks."""

    debug: bool = False


def _shared_options(
    *, store: bool = True, project: bool = True, entity: bool = True, json_output: bool = True
) -> list[click.Parameter]:
    """The options commands share, each defined once here."""
    options: list[click.Parameter] = []
    if store:
        options.append(
            click.Option(
                ["--store"],
                metavar="URL",
                help="store: a path, file://, s3:// or gs:// URL (default $LORRY_STORE)",
            )
        )
    if project:
        options.append(
            click.Option(
                ["--project"], metavar="P", help="project (default $LORRY_PROJECT, else 'uncategorized')"
            )
        )
    if entity:
        options.append(
            click.Option(["--entity"], metavar="E", help="entity (default $LORRY_ENTITY, else the user name)")
        )
    if json_output:
        options.append(click.Option(["--json"], is_flag=True, help="print JSON for scripts"))
    options.append(click.Option(["--debug"], is_flag=True, help="log debug messages; show tracebacks"))
    return options


def _run(handler: Callable[[Args, Output], int]) -> Callable[..., int]:
    """The click callback of a command: its parameters become ``args``, its output an ``Output``."""

    def callback(**params: Any) -> int:
        state = click.get_current_context().ensure_object(_State)
        state.debug = state.debug or bool(params.get("debug"))
        _configure_logging(state.debug)
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
        args = Args(**{"store": None, "project": None, "entity": None, **values})
        return handler(args, Output(json=bool(params.get("json"))))

    return callback


def _examples(text: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in text.strip().splitlines())


def _add(
    group: click.Group,
    name: str,
    handler: Callable[[Args, Output], int],
    summary: str,
    examples: str,
    params: Sequence[click.Parameter],
    shared: Sequence[click.Parameter],
) -> None:
    group.add_command(
        Command(
            name,
            callback=_run(handler),
            params=[*params, *shared],
            help=summary[:1].upper() + summary[1:] + ".",
            short_help=summary,
            epilog=_examples(examples),
            context_settings=SETTINGS,
        )
    )


def _group(parent: click.Group, name: str, summary: str, examples: str) -> Group:
    group = Group(
        name,
        help=summary[:1].upper() + summary[1:] + ".",
        short_help=summary,
        epilog=_examples(examples),
        context_settings=SETTINGS,
        no_args_is_help=False,
        subcommand_metavar="COMMAND [ARGS]...",
        invoke_without_command=True,
        callback=click.pass_context(_require_command),
    )
    parent.add_command(group)
    return group


def _arg(name: str, metavar: str, *, required: bool = True) -> click.Argument:
    return click.Argument([name], metavar=metavar, required=required)


def _opt(*names: str, **attrs: Any) -> click.Option:
    return click.Option(list(names), **attrs)


def _flag(*names: str, help: str) -> click.Option:
    return click.Option(list(names), is_flag=True, help=help)


def _top_level(ctx: click.Context, debug: bool = False) -> None:
    ctx.ensure_object(_State).debug = debug
    _require_command(ctx)


def _require_command(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        raise click.UsageError("the following arguments are required: COMMAND", ctx)


def build_cli() -> Group:
    cli = Group(
        "lorry",
        callback=click.pass_context(_top_level),
        help="Version datasets, models and results as artifacts on a store (a local directory, s3:// or gs://).",
        epilog="examples:\n"
        "  lorry put data/ --name bike-dataset --type dataset --alias raw\n"
        "  lorry ls\n"
        "  lorry get bike-dataset:raw --root ./data\n"
        "\n"
        "exit codes: 0 success, 1 failure, 2 bad usage. `lorry COMMAND --help` for each command.",
        params=[
            click.Option(
                ["--version"],
                is_flag=True,
                expose_value=False,
                is_eager=True,
                callback=_print_version,
                help="show the version and exit",
            ),
            _flag("--debug", help="log debug messages; show tracebacks"),
        ],
        context_settings=SETTINGS,
        no_args_is_help=False,
        subcommand_metavar="COMMAND [ARGS]...",
        invoke_without_command=True,
    )
    common = _shared_options()
    name_alias = "NAME[:ALIAS]"

    _add(
        cli,
        "put",
        cmd_put,
        "log a file or a folder as a new version (or find the version that already holds it)",
        """
lorry put data/ --name bike-dataset --type dataset --alias raw
lorry put model.h5 --name bike-model --type model --metadata '{"epochs": 10}'
""",
        [
            _arg("path", "PATH"),
            _opt("--name", required=True, help="artifact name"),
            _opt("--type", required=True, help="artifact type, such as dataset or model"),
            _opt("--alias", multiple=True, metavar="A", help="alias to set (repeatable)"),
            _opt("--description", metavar="TEXT", help="description of the version"),
            _opt("--metadata", type=Parsed(_metadata), metavar="JSON", help="metadata, a JSON object"),
            _opt(
                "--policy",
                type=click.Choice(["immutable", "mutable"]),
                default="immutable",
                help="immutable (default): no copy is made, the version fails if a file changes while it is "
                "stored; mutable: snapshot the files first",
            ),
        ],
        common,
    )

    _add(
        cli,
        "get",
        cmd_get,
        "download a version (fetching only what is missing) and print where it is",
        """
lorry get bike-model                 # the latest version, into ./artifacts/bike-model:vN
lorry get bike-model:best --root /srv/model
""",
        [
            _arg("artifact", name_alias),
            _opt("--root", metavar="DIR", help="download folder (default ./artifacts/<name>:<version>)"),
        ],
        common,
    )

    _add(
        cli,
        "ls",
        cmd_ls,
        "list the artifacts of a project: type, number of versions, latest version and its size",
        """
lorry ls
lorry ls other-team/bikes --type model --json
""",
        [
            _arg("project_name", "PROJECT", required=False),
            _opt("--type", help="only artifacts of this type"),
            _opt(
                "--tag",
                multiple=True,
                metavar="T",
                help="only artifacts tagged T, or with versions tagged T (repeatable: all of them)",
            ),
        ],
        _shared_options(project=False),
    )

    _add(
        cli,
        "versions",
        cmd_versions,
        "list every version of an artifact with aliases, size, digest, creation time and producer run",
        """
lorry versions bike-dataset
lorry versions bikes/bike-dataset --json
""",
        [
            _arg("collection", "NAME"),
            _opt("--tag", multiple=True, metavar="T", help="only versions tagged T (repeatable)"),
            _flag("--deleted", help="list deleted and expired versions too"),
        ],
        common,
    )

    _add(
        cli,
        "show",
        cmd_show,
        "describe a version: metadata, description, aliases, files and lineage",
        """
lorry show bike-dataset              # the latest version
lorry show bike-dataset:v3 --json
""",
        [_arg("artifact", name_alias)],
        common,
    )

    _add(
        cli,
        "lineage",
        cmd_lineage,
        "draw what a version was made from and what was made from it",
        """
lorry lineage bike-model:best
lorry lineage bike-model:best --dot | dot -Tsvg > lineage.svg
""",
        [
            _arg("artifact", name_alias),
            _flag("--dot", help="print the graph in Graphviz dot"),
            _opt("--depth", type=Parsed(_positive_int), metavar="N", help="follow at most N runs each way"),
        ],
        common,
    )

    alias = _group(
        cli,
        "alias",
        "set or remove an alias",
        """
lorry alias set bike-model:v3 production
lorry alias rm bike-model production
""",
    )
    _add(
        alias,
        "set",
        cmd_alias_set,
        "point an alias at a version (moving it from the version that had it)",
        "lorry alias set bike-model:v3 production",
        [_arg("artifact", "NAME:VERSION"), _arg("alias", "ALIAS")],
        common,
    )
    _add(
        alias,
        "rm",
        cmd_alias_rm,
        "remove an alias from the version that has it",
        "lorry alias rm bike-model production",
        [_arg("collection", "NAME"), _arg("alias", "ALIAS")],
        common,
    )

    _add(
        cli,
        "verify",
        cmd_verify,
        "check a folder against a version, or (without NAME) every version in the store",
        """
lorry verify bike-model:best                 # checks ./artifacts/bike-model:vN
lorry verify bike-model:best --root /srv/model
lorry verify                                 # every version's manifest and blobs, bytes hashed
lorry verify --quick --store s3://bucket/team  # presence and sizes only
""",
        [
            _arg("artifact", name_alias, required=False),
            _flag("--quick", help="whole store: check presence and sizes, do not read the bytes"),
            _opt("--root", metavar="DIR", help="folder to check (default ./artifacts/<name>:<version>)"),
        ],
        common,
    )

    cache = _group(
        cli,
        "cache",
        "inspect or shrink the download cache",
        """
lorry cache info
lorry cache cleanup --max-size 10G
""",
    )
    cache_options = _shared_options(store=False, project=False, entity=False)
    _add(
        cache,
        "info",
        cmd_cache_info,
        "show where the cache is and how much it holds",
        "lorry cache info",
        [],
        cache_options,
    )
    _add(
        cache,
        "cleanup",
        cmd_cache_cleanup,
        "remove what processes that ended left in the staging area and the remembered digests of "
        "files gone or changed; with --max-size, the least recently used blobs until the cache is "
        "at most SIZE",
        "lorry cache cleanup\nlorry cache cleanup --max-size 500M",
        [
            _opt(
                "--max-size",
                type=Parsed(parse_size),
                metavar="SIZE",
                help="like 10G, 500M, 0 (1K = 1024 bytes); without it, the blobs stay",
            )
        ],
        cache_options,
    )

    _add(
        cli,
        "rm",
        cmd_rm,
        "delete a version (or --all of them); its number is never given again",
        """
lorry rm bike-model:v3
lorry rm bike-model:old --delete-aliases
lorry rm bike-model --all --dry-run
""",
        [
            _arg("artifact", "NAME:VERSION"),
            _flag("--all", help="delete every version of NAME, aliases too"),
            _flag("--delete-aliases", help="delete a version that has aliases"),
            _flag("--dry-run", help="show what would be deleted, delete nothing"),
            _flag("--yes", "-y", help="do not ask for confirmation on a terminal"),
        ],
        common,
    )

    _add(
        cli,
        "retain",
        cmd_retain,
        "delete the versions a retention policy does not keep, saying why each one stays or goes",
        """
lorry retain checkpoints --keep-last 5 --dry-run
lorry retain checkpoints --keep-last 2 --keep-best loss:min:3 --save
lorry retain checkpoints             # apply the policy saved with --save
lorry retain --dry-run               # every artifact's saved policy
""",
        [
            _arg("collection", "NAME", required=False),
            _opt("--keep-last", type=int, metavar="N", help="keep the newest N versions"),
            _opt(
                "--keep-best",
                type=Parsed(BestRule.parse),
                metavar="KEY:min|max:K",
                help="keep the K versions with the lowest (min) or highest (max) metadata KEY",
            ),
            _flag("--no-keep-aliased", help="versions with aliases may go too (default: kept)"),
            _flag("--save", help="store the policy with the artifact"),
            _flag("--dry-run", help="show what would go and why, delete nothing"),
        ],
        common,
    )

    store_only = _shared_options(project=False, entity=False)
    _add(
        cli,
        "abort-uploads",
        cmd_uploads,
        "abort multipart uploads that crashed processes left open longer than a grace period",
        """
lorry abort-uploads --dry-run
lorry abort-uploads --older-than 6h --store s3://bucket/team
""",
        _grace("uploads started", "list them, abort nothing"),
        store_only,
    )
    _add(
        cli,
        "gc",
        cmd_gc,
        "remove what no version needs (crashed or failed logs, stale uploads), after a grace period",
        """
lorry gc --dry-run
lorry gc --older-than 6h --store s3://bucket/team
""",
        _grace("objects written", "list what would go, remove nothing"),
        store_only,
    )

    _add(
        cli,
        "config",
        cmd_config,
        "show the effective settings and where each came from (secrets redacted)",
        """
lorry config
lorry config --store s3://bucket/team --json
""",
        [],
        common,
    )

    _add(
        cli,
        "bench",
        cmd_bench,
        "measure logging and downloading on a store (MB/s, files/s, CPU, memory); removes what it wrote",
        """
lorry bench                                    # the configured store
lorry bench s3://bucket/scratch --runs 3
lorry bench /mnt/nfs/store --small 10000 --medium 0 --large 2G --json
""",
        [
            _arg("url", "URL", required=False),
            _opt(
                "--small", type=Parsed(_count), default=1000, metavar="N", help="small files (default 1000)"
            ),
            _opt(
                "--small-size",
                type=Parsed(parse_size),
                default=4 << 10,
                metavar="SIZE",
                help="of each (default 4K)",
            ),
            _opt("--medium", type=Parsed(_count), default=64, metavar="N", help="medium files (default 64)"),
            _opt(
                "--medium-size",
                type=Parsed(parse_size),
                default=4 << 20,
                metavar="SIZE",
                help="of each (default 4M)",
            ),
            _opt(
                "--large",
                type=Parsed(parse_size),
                default=512 << 20,
                metavar="SIZE",
                help="one file (default 512M; 0 skips)",
            ),
            _opt(
                "--runs", type=Parsed(_positive_int), default=1, metavar="N", help="runs of each (default 1)"
            ),
            _opt(
                "--workdir",
                metavar="DIR",
                help="where to generate the datasets (default: the temporary folder)",
            ),
        ],
        _shared_options(store=False, project=False),
    )

    _add(
        cli,
        "ui",
        cmd_ui,
        "browse the store's artifacts, metadata and lineage in a web browser (read-only)",
        """
lorry ui                              # then open the URL it prints
lorry ui --store s3://bucket/team --port 9000
lorry ui --host 0.0.0.0               # reachable from other machines: the URL carries a token
""",
        [
            _opt("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"),
            _opt("--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)"),
        ],
        _shared_options(project=False, entity=False, json_output=False),
    )
    return cli


def _grace(what: str, dry_run: str) -> list[click.Parameter]:
    """--older-than and --dry-run, for commands that remove what others may still be writing."""
    return [
        _opt(
            "--older-than",
            type=Parsed(_duration),
            default=timedelta(hours=24),
            metavar="AGE",
            help=f"only {what} longer ago than this (default 24h; spares work still in progress elsewhere)",
        ),
        _flag("--dry-run", help=dry_run),
    ]


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"lorry {lorry.__version__}")
        ctx.exit(0)


def _configure_logging(debug: bool) -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("lorry: %(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.WARNING)
    log.propagate = False


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, lorry.LorryError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return one_line(exc)  # one line, whatever the message holds


def main(argv: Sequence[str] | None = None) -> int:
    state = _State()
    style = Style(sys.stderr)
    try:  # click itself ends quietly with 1 when the reader goes away (``lorry ls | head``)
        code = build_cli().main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="lorry",
            standalone_mode=False,
            obj=state,
        )
        return code if isinstance(code, int) else 0
    except click.UsageError as exc:
        if exc.ctx is not None:
            print(exc.ctx.get_usage(), file=sys.stderr)
        print(f"lorry: {style.red('error')}: {exc.format_message()}", file=sys.stderr)
        return 2
    except (lorry.LorryError, OSError) as exc:
        if state.debug:
            traceback.print_exc()
        print(f"lorry: {style.red('error')}: {_error_text(exc)}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, click.Abort):
        print("lorry: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
