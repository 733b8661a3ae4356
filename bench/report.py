"""From the runs' records to figures: medians with min and max, ratios to the best peer, the targets,
and the markdown table (the same one the README shows).

A record is one measured client process (see ``harness.py``); a figure is the median of a client's
records for one scenario, dataset and direction.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MB = 1_000_000
MiB = 1 << 20
RSS_LIMIT = 300 * MiB
LOCAL_FACTOR = {"S": 3.0}
"""How many times faster than the best peer lorry's local store must log each dataset (1.0 where not
named: for large files the kernel's copy bounds every tool)."""
REFLINK_AGAIN_SECONDS = 0.05
LATENCY_LIMIT = 0.005
SLOWDOWN_LIMIT = 0.05

Record = dict[str, Any]


@dataclass(frozen=True)
class Figure:
    """One client's figures for one (scenario, dataset, direction)."""

    client: str
    runs: int
    failures: int
    rate: float  # files/s for S, MB/s otherwise: the median run's
    rate_min: float
    rate_max: float
    unit: str
    seconds: float
    cpu: float  # median CPU seconds of the whole process tree
    peak_rss: int  # the largest of the runs
    server_cpu: float
    other_cpu: float
    op_seconds: float | None

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.runs > 0


def rate_of(record: Record) -> float:
    """files/s for many small files (S and its like), MB/s for the rest."""
    if record["unit"] == "files/s":
        return float(record["files"]) / float(record["wall"])
    return float(record["bytes"]) / MB / float(record["wall"])


def figure(client: str, records: Sequence[Record]) -> Figure:
    good = [r for r in records if r["check"] == "ok"]
    failures = len(records) - len(good)
    unit = records[0]["unit"] if records else "MB/s"
    if not good:
        return Figure(
            client, len(records), failures, 0.0, 0.0, 0.0, unit, math.nan, math.nan, 0, 0.0, 0.0, None
        )
    rates = sorted(rate_of(r) for r in good)
    ops = [float(r["op_seconds"]) for r in good if r.get("op_seconds") is not None]
    return Figure(
        client=client,
        runs=len(records),
        failures=failures,
        rate=statistics.median(rates),
        rate_min=rates[0],
        rate_max=rates[-1],
        unit=unit,
        seconds=statistics.median(float(r["wall"]) for r in good),
        cpu=statistics.median(float(r["cpu"]) for r in good),
        peak_rss=max(int(r["peak_rss"]) for r in good),
        server_cpu=statistics.median(float(r["server_cpu"]) for r in good),
        other_cpu=statistics.median(float(r["other_cpu"]) for r in good),
        op_seconds=statistics.median(ops) if ops else None,
    )


def group(records: Iterable[Record], scenario: str) -> dict[tuple[str, str], dict[str, list[Record]]]:
    """(dataset, direction) -> client -> records, in the order first met."""
    grouped: dict[tuple[str, str], dict[str, list[Record]]] = {}
    for record in records:
        if record["scenario"] != scenario:
            continue
        key = (record["dataset"], record["direction"])
        grouped.setdefault(key, {}).setdefault(record["client"], []).append(record)
    return grouped


def best_peer(figures: Sequence[Figure], *, lower_is_better: bool = False) -> Figure | None:
    peers = [f for f in figures if not f.client.startswith("lorry") and f.ok]  # its variants are no peers
    if not peers:
        return None
    if lower_is_better:
        return min(peers, key=lambda f: f.seconds)
    return max(peers, key=lambda f: f.rate)


# -- the targets ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run


def s3_checks(records: Sequence[Record]) -> list[Check]:
    checks = []
    for (dataset, direction), by_client in group(records, "s3").items():
        figures = [figure(c, rs) for c, rs in by_client.items()]
        mine = next((f for f in figures if f.client == "lorry"), None)
        best = best_peer(figures)
        if mine is None or best is None:
            continue
        what = f"{dataset} {direction}"
        ratio = mine.rate / best.rate if best.rate else math.nan
        checks.append(
            Check(
                f"{what}: throughput >= 1.0x the best peer ({best.client})",
                f"{ratio:.2f}x ({_rate(mine)} vs {_rate(best)})",
                mine.ok and ratio >= 1.0,
            )
        )
        checks.append(
            Check(
                f"{what}: client CPU <= {best.client}'s",
                f"{mine.cpu:.1f} s vs {best.cpu:.1f} s ({mine.cpu / best.cpu:.2f}x)",
                mine.ok and mine.cpu <= best.cpu,
            )
        )
        if dataset == "L":
            checks.append(
                Check(
                    f"{what}: peak RSS <= 300 MiB",
                    f"{mine.peak_rss / MiB:.0f} MiB",
                    mine.ok and mine.peak_rss <= RSS_LIMIT,
                )
            )
    return checks


def local_checks(records: Sequence[Record]) -> list[Check]:
    checks = []
    for (dataset, _), by_client in group(records, "local").items():
        figures = [figure(c, rs) for c, rs in by_client.items()]
        mine = next((f for f in figures if f.client == "lorry"), None)
        best = best_peer(figures, lower_is_better=True)
        if mine is None or best is None:
            continue
        factor = best.seconds / mine.seconds if mine.seconds else math.nan
        wanted = LOCAL_FACTOR.get(dataset, 1.0)
        checks.append(
            Check(
                f"local {dataset}: >= {wanted:g}x the speed of the best of wandb, DVC, MLflow "
                f"({best.client})",
                f"{factor:.2f}x ({mine.seconds:.2f} s vs {best.seconds:.2f} s)",
                mine.ok and factor >= wanted,
            )
        )
    return checks


def reflink_checks(records: Sequence[Record]) -> list[Check]:
    checks = []
    for (dataset, direction), by_client in group(records, "reflink").items():
        mine = figure("lorry", by_client["lorry"]) if "lorry" in by_client else None
        if direction != "log again" or mine is None or mine.op_seconds is None:
            continue
        checks.append(
            Check(
                f"reflink {dataset}: lorry logs the unchanged file again in < "
                f"{REFLINK_AGAIN_SECONDS * 1e3:.0f} ms (the logging call)",
                f"{mine.op_seconds * 1e3:.1f} ms ({mine.seconds:.2f} s from spawn to exit)",
                mine.ok and mine.op_seconds < REFLINK_AGAIN_SECONDS,
            )
        )
    return checks


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True)
class Background:
    store: str
    kind: str
    runs: int
    failures: int
    base_loop: float
    loop: float
    loop_min: float
    loop_max: float
    p50: float
    p99: float
    worst: float
    calls: int
    add_p50: float
    finish: float
    cpu: float
    peak_rss: int

    @property
    def slowdown(self) -> float:
        return self.loop / self.base_loop - 1 if self.base_loop else math.nan


def background(records: Sequence[Record]) -> list[Background]:
    found = []
    rows = [r for r in records if r["scenario"] == "background"]
    for store in dict.fromkeys(r["store"] for r in rows):
        base = [
            float(r["loop_seconds"])
            for r in rows
            if r["store"] == store and r["kind"] == "none" and r["check"] == "ok"
        ]
        if not base:
            continue
        base_loop = statistics.median(base)
        for kind in dict.fromkeys(r["kind"] for r in rows if r["store"] == store and r["kind"] != "none"):
            mine = [r for r in rows if r["store"] == store and r["kind"] == kind]
            good = [r for r in mine if r["check"] == "ok"]
            if not good:
                continue
            loops = sorted(float(r["loop_seconds"]) for r in good)
            calls = [float(x) for r in good for x in r["log_seconds"]]
            adds = [float(x) for r in good for x in r["add_seconds"]]
            found.append(
                Background(
                    store=store,
                    kind=kind,
                    runs=len(mine),
                    failures=len(mine) - len(good),
                    base_loop=base_loop,
                    loop=statistics.median(loops),
                    loop_min=loops[0],
                    loop_max=loops[-1],
                    p50=percentile(calls, 0.50),
                    p99=percentile(calls, 0.99),
                    worst=max(calls),
                    calls=len(calls),
                    add_p50=percentile(adds, 0.50),
                    finish=statistics.median(float(r["finish_seconds"]) for r in good),
                    cpu=statistics.median(float(r["cpu"]) for r in good),
                    peak_rss=max(int(r["peak_rss"]) for r in good),
                )
            )
    return found


def background_checks(rows: Sequence[Background], labels: dict[str, str]) -> list[Check]:
    checks = []
    for row in rows:
        what = f"background, {row.store} store, {labels.get(row.kind, row.kind)}"
        checks.append(
            Check(
                f"{what}: log_artifact p99 <= 5 ms",
                f"{row.p99 * 1e3:.2f} ms (n={row.calls})",
                row.p99 <= LATENCY_LIMIT,
            )
        )
        checks.append(
            Check(
                f"{what}: loop slowdown <= 5%", f"{row.slowdown * 100:+.1f}%", row.slowdown <= SLOWDOWN_LIMIT
            )
        )
    return checks


# -- markdown -------------------------------------------------------------------------------------------


def _rate(f: Figure) -> str:
    if not f.ok and f.rate == 0:
        return "failed"
    number = f"{f.rate:,.0f}" if f.rate >= 100 else f"{f.rate:,.1f}"
    return f"{number} {f.unit}"


def _spread(f: Figure) -> str:
    if not f.ok and f.rate == 0:
        return "failed"
    fmt = "{:,.0f}" if f.rate >= 100 else "{:,.1f}"
    text = f"{fmt.format(f.rate)} [{fmt.format(f.rate_min)}-{fmt.format(f.rate_max)}]"
    return text + (f" ({f.failures} failed)" if f.failures else "")


def _mib(size: int) -> str:
    return f"{size / MiB:,.0f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def s3_tables(records: Sequence[Record], datasets: dict[str, str]) -> list[str]:
    lines: list[str] = []
    grouped = group(records, "s3")
    for dataset in dict.fromkeys(d for d, _ in grouped):
        lines += ["", f"**{dataset}: {datasets.get(dataset, '')}**", ""]
        directions = [d for (ds, d) in grouped if ds == dataset]
        clients = list(dict.fromkeys(c for (ds, _), by in grouped.items() if ds == dataset for c in by))
        figures = {d: {c: figure(c, rs) for c, rs in grouped[(dataset, d)].items()} for d in directions}
        bests = {d: best_peer(list(figures[d].values())) for d in directions}
        unit = next(iter(figures[directions[0]].values())).unit
        headers = ["client"]
        for d in directions:
            word = "upload" if d == "up" else "download"
            headers += [f"{word} {unit}", "CPU s", "peak RSS MiB", "vs best peer"]
        rows = []
        order = sorted(clients, key=lambda c: (c != "lorry", -figures[directions[0]].get(c, _none(c)).rate))
        for client in order:
            row = [f"**{client}**" if client == "lorry" else client]
            for d in directions:
                f = figures[d].get(client)
                best = bests[d]
                if f is None:
                    row += ["-", "-", "-", "-"]
                    continue
                ratio = f"{f.rate / best.rate:.2f}x" if best is not None and best.rate and f.ok else "-"
                row += [_spread(f), f"{f.cpu:.1f}", _mib(f.peak_rss), ratio]
            rows.append(row)
        lines += table(headers, rows)
    return lines


def _none(client: str) -> Figure:
    return Figure(client, 0, 0, 0.0, 0.0, 0.0, "", math.nan, math.nan, 0, 0.0, 0.0, None)


def local_tables(records: Sequence[Record], datasets: dict[str, str]) -> list[str]:
    grouped = group(records, "local")
    if not grouped:
        return []
    clients = list(dict.fromkeys(c for by in grouped.values() for c in by))
    headers = ["client"] + [f"{ds} ({datasets.get(ds, '')})" for ds, _ in grouped]
    rows = []
    for client in clients:
        row = [f"**{client}**" if client == "lorry" else client]
        for key in grouped:
            records_ = grouped[key].get(client)
            if not records_:
                row.append("-")
                continue
            f = figure(client, records_)
            figures = [figure(c, rs) for c, rs in grouped[key].items()]
            best = best_peer(figures, lower_is_better=True)
            if not f.ok:
                row.append("failed")
                continue
            rel = ""
            if client == "lorry" and best is not None:
                rel = f", {best.seconds / f.seconds:.2f}x the speed of {best.client}"
            row.append(f"{f.seconds:.2f} s [{_spread(f)}], {f.cpu:.1f} CPU s, {_mib(f.peak_rss)} MiB{rel}")
        rows.append(row)
    return table(headers, rows)


def reflink_table(records: Sequence[Record], datasets: dict[str, str]) -> list[str]:
    grouped = group(records, "reflink")
    if not grouped:
        return []
    rows = []
    for (dataset, direction), by_client in grouped.items():
        figures = [figure(c, rs) for c, rs in by_client.items()]
        best = best_peer(figures, lower_is_better=True)
        for f in figures:
            name = f"**{f.client}**" if f.client == "lorry" else f.client
            if direction != "log":
                name += f" ({direction})"
            if not f.ok:
                rows.append([name, datasets.get(dataset, dataset), "failed", "-", "-", "-", "-"])
                continue
            op = "-" if f.op_seconds is None else f"{f.op_seconds:.3f} s"
            rel = "-"
            if f.client == "lorry" and direction == "log" and best is not None:
                rel = f"{best.seconds / f.seconds:.2f}x ({best.client})"
            rows.append(
                [
                    name, datasets.get(dataset, dataset), f"{f.seconds:.2f} s [{_spread(f)}]", op,
                    f"{f.cpu:.1f}", _mib(f.peak_rss), rel,
                ]
            )  # fmt: skip
    headers = ["client", "dataset", "spawn to exit", "logging call", "CPU s", "peak RSS MiB", "vs best peer"]
    return table(headers, rows)


def background_table(rows: Sequence[Background], labels: dict[str, str]) -> list[str]:
    if not rows:
        return []
    return table(
        [
            "store", "checkpoint", "loop without logging", "loop with logging", "slowdown",
            "log_artifact p50", "p99", "max", "calls", "add p50", "finish waited",
        ],
        [
            [
                r.store, labels.get(r.kind, r.kind), f"{r.base_loop:.2f} s",
                f"{r.loop:.2f} s [{r.loop_min:.2f}-{r.loop_max:.2f}]", f"{r.slowdown * 100:+.1f}%",
                f"{r.p50 * 1e3:.2f} ms", f"{r.p99 * 1e3:.2f} ms", f"{r.worst * 1e3:.2f} ms",
                str(r.calls), f"{r.add_p50 * 1e3:.1f} ms", f"{r.finish:.1f} s",
            ]
            for r in rows
        ],
    )  # fmt: skip


def checks_table(checks: Sequence[Check]) -> list[str]:
    if not checks:
        return []
    mark = {True: "met", False: "**missed**", None: "-"}
    return table(["target", "measured", ""], [[c.target, c.measured, mark[c.met]] for c in checks])
