"""Retention policies: which versions of a collection to keep, and why. Pure: no I/O.

A version is kept if any rule keeps it: it is among the newest ``keep_last``, it has a user alias
(``keep_aliased``), or it is among the best ``k`` by a metadata key. Every other version goes, and the
plan says why each one stays or goes, so ``--dry-run`` can show it.

>>> policy = RetentionPolicy(keep_last=1, keep_best=BestRule("loss", "min", 1))
>>> [(d.version, d.keep) for d in policy.plan([
...     Candidate(0, (), {"loss": 0.1}), Candidate(1, (), {"loss": 0.5}), Candidate(2, (), {"loss": 0.9})])]
[(0, True), (1, False), (2, True)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lorry.errors import ValidationError


@dataclass(frozen=True, slots=True)
class BestRule:
    """Keep the ``count`` versions with the lowest (``min``) or highest (``max``) ``key`` in their
    metadata; versions without a number under ``key`` are not among them."""

    key: str
    order: str
    count: int

    def __post_init__(self) -> None:
        if not self.key:
            raise ValidationError("a keep-best rule needs a metadata key")
        if self.order not in ("min", "max"):
            raise ValidationError(f"a keep-best rule's order is 'min' or 'max', not {self.order!r}")
        if not isinstance(self.count, int) or self.count < 1:
            raise ValidationError(f"a keep-best rule keeps at least 1 version, not {self.count!r}")

    @classmethod
    def parse(cls, text: str) -> BestRule:
        """``KEY:min:K`` or ``KEY:max:K``, as ``--keep-best loss:min:3``."""
        key, _, rest = text.rpartition(":")
        key, _, order = key.rpartition(":")
        try:
            count = int(rest)
        except ValueError:
            raise ValidationError(f"--keep-best takes KEY:min:K or KEY:max:K, not {text!r}") from None
        return cls(key, order, count)

    def __str__(self) -> str:
        return f"{self.key}:{self.order}:{self.count}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the policy looks at in one live version."""

    version: int
    aliases: Sequence[str]
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Decision:
    version: int
    keep: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_last: int | None = None
    keep_aliased: bool = True
    keep_best: BestRule | None = None

    def __post_init__(self) -> None:
        if self.keep_last is not None and (not isinstance(self.keep_last, int) or self.keep_last < 0):
            raise ValidationError(f"keep_last must be a whole number, not {self.keep_last!r}")
        if self.keep_last is None and self.keep_best is None:
            raise ValidationError("a retention policy needs --keep-last or --keep-best")

    def plan(self, versions: Sequence[Candidate]) -> list[Decision]:
        """One decision per version, oldest first."""
        ordered = sorted(versions, key=lambda c: c.version)
        newest = {c.version for c in ordered[len(ordered) - self.keep_last :]} if self.keep_last else set()
        best = self._best(ordered)
        decisions = []
        for c in ordered:
            why_keep = []
            if c.version in newest:
                why_keep.append(f"among the newest {self.keep_last}")
            if self.keep_aliased and c.aliases:
                why_keep.append(f"alias {', '.join(c.aliases)}")
            if c.version in best and self.keep_best is not None:
                why_keep.append(f"among the best {self.keep_best.count} by {self._metric(c)}")
            if why_keep:
                decisions.append(Decision(c.version, True, "; ".join(why_keep)))
                continue
            why_go = []
            if self.keep_last is not None:
                why_go.append(f"not among the newest {self.keep_last}")
            if self.keep_best is not None:
                why_go.append(f"not among the best {self.keep_best.count} by {self._metric(c)}")
            if not self.keep_aliased and c.aliases:
                why_go.append(f"aliases {', '.join(c.aliases)} not protected")
            elif self.keep_aliased:
                why_go.append("no alias")
            decisions.append(Decision(c.version, False, "; ".join(why_go)))
        return decisions

    def _best(self, ordered: Sequence[Candidate]) -> set[int]:
        rule = self.keep_best
        if rule is None:
            return set()
        values = ((_number(c.metadata.get(rule.key)), c.version) for c in ordered)
        scored = [(value, version) for value, version in values if value is not None]
        scored.sort(key=lambda pair: (pair[0] if rule.order == "min" else -pair[0], -pair[1]))
        return {version for _, version in scored[: rule.count]}

    def _metric(self, c: Candidate) -> str:
        assert self.keep_best is not None
        value = _number(c.metadata.get(self.keep_best.key))
        shown = "missing" if value is None else f"{value:g}"
        return f"{self.keep_best.key} ({self.keep_best.order}; this one {shown})"

    def to_json(self) -> dict[str, Any]:
        return {
            "keep_last": self.keep_last,
            "keep_aliased": self.keep_aliased,
            "keep_best": None if self.keep_best is None else str(self.keep_best),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RetentionPolicy:
        best = doc.get("keep_best")
        return cls(
            keep_last=doc.get("keep_last"),
            keep_aliased=bool(doc.get("keep_aliased", True)),
            keep_best=BestRule.parse(best) if isinstance(best, str) else None,
        )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
