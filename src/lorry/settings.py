"""One frozen ``Settings`` value: where the store and cache are, who logs, and the engine's limits.

Each field comes from an explicit argument, else its environment variable, else a default; ``sources``
records which, so ``lorry config`` can say where every value came from.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lorry.errors import ValidationError
from lorry.model.names import validate_segment

MiB = 1 << 20


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


def _default_entity() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = "user"
    cleaned = "".join(c if c.isalnum() or c in "_-." else "-" for c in user).strip(".") or "user"
    return cleaned[:128]


@dataclass(frozen=True)
class Settings:
    """Everything lorry can be configured with. Build one with ``Settings.load(...)``."""

    store: str
    cache_dir: Path
    entity: str
    project: str
    max_requests: int = 64
    """Requests (or file operations on a local store) in flight at once."""
    max_memory: int = 512 * MiB
    """Bytes of file content held in memory by transfers at once."""
    max_open_files: int = 128
    progress: bool | None = None
    """Progress bars: None shows them when stderr is a terminal."""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    _ENV = {  # noqa: RUF012 - a class-level table, never mutated
        "store": "LORRY_STORE",
        "cache_dir": "LORRY_CACHE_DIR",
        "entity": "LORRY_ENTITY",
        "project": "LORRY_PROJECT",
        "max_requests": "LORRY_MAX_REQUESTS",
        "max_memory": "LORRY_MAX_MEMORY",
        "max_open_files": "LORRY_MAX_OPEN_FILES",
        "progress": "LORRY_PROGRESS",
    }

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Settings from ``overrides`` (None means "not given"), then ``$LORRY_*``, then defaults."""
        unknown = set(overrides) - set(cls._ENV)
        if unknown:
            raise ValidationError(f"unknown settings: {', '.join(sorted(unknown))}")
        defaults: dict[str, Any] = {
            "store": str(_xdg("XDG_DATA_HOME", ".local/share") / "lorry" / "store"),
            "cache_dir": _xdg("XDG_CACHE_HOME", ".cache") / "lorry",
            "entity": _default_entity(),
            "project": "uncategorized",
        }
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, env in cls._ENV.items():
            if overrides.get(name) is not None:
                values[name], sources[name] = overrides[name], "argument"
            elif os.environ.get(env):
                values[name], sources[name] = _parse(name, os.environ[env]), f"${env}"
            elif name in defaults:
                values[name], sources[name] = defaults[name], "default"
            else:
                sources[name] = "default"
        values["cache_dir"] = Path(values["cache_dir"]).expanduser()
        values["store"] = str(values["store"])
        settings = cls(**values, sources=sources)
        settings.check()
        return settings

    def check(self) -> None:
        validate_segment(self.entity, "entity")
        validate_segment(self.project, "project")
        for name in ("max_requests", "max_memory", "max_open_files"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValidationError(f"setting {name} must be a positive integer, not {value!r}")
        if self.max_memory < 8 * MiB:
            raise ValidationError("setting max_memory must be at least 8 MiB")

    def with_(self, **changes: Any) -> Settings:
        updated = replace(self, **changes)
        updated.check()
        return updated

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, value, source) for each setting, for ``lorry config``."""
        return [
            (f.name, str(getattr(self, f.name)), self.sources.get(f.name, "default"))
            for f in fields(self)
            if f.name != "sources"
        ]


def _parse(name: str, raw: str) -> Any:
    if name in ("max_requests", "max_memory", "max_open_files"):
        try:
            return int(raw)
        except ValueError:
            raise ValidationError(f"${Settings._ENV[name]} must be an integer, not {raw!r}") from None
    if name == "progress":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return None
    return raw
