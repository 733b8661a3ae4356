"""One frozen ``Settings`` value: where the store and cache are, who logs, and the engine's limits.

Each field comes from an explicit argument, else its environment variable, else a default; ``sources``
records which, so ``lorry config`` can say where every value came from. A secret (the SSE-C key) is
held as a ``Secret``: the settings' ``repr``, ``describe()`` and any message show ``***`` for it.
``store_options`` is what remote stores are opened with: TLS trust and server-side encryption.
"""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lorry.errors import ValidationError
from lorry.model.names import validate_segment
from lorry.model.secret import Secret
from lorry.storage.options import StoreOptions

MiB = 1 << 20
MIN_MEMORY = 8 * MiB
"""The least ``max_memory``: one part of a multipart upload."""
TRANSFER_PROCESS = ("auto", "always", "never")


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


@dataclass(frozen=True, kw_only=True)
class Settings(StoreOptions):
    """Everything lorry can be configured with. Build one with ``Settings.load(...)``.

    The options remote stores are opened with (TLS trust, server-side encryption, timeouts) are the
    fields of ``StoreOptions``, declared there once and checked there; these are the rest."""

    store: str
    cache_dir: Path
    entity: str
    project: str
    max_requests: int = 64
    """Requests (or file operations on a local store) in flight at once."""
    max_memory: int = 128 * MiB
    """Bytes of file content held in memory by transfers at once."""
    max_open_files: int = 128
    progress: bool | None = None
    """Progress bars: None shows them when stderr is a terminal."""
    single_writer: bool = False
    """Promise that one process at a time writes to the store: lets lorry assign versions on a server
    that ignores conditional writes (it checks them client-side instead, which is safe only then)."""
    transfer_process: str = "auto"
    """Where an artifact's files are hashed and stored: ``auto`` in a helper process for artifacts of
    at least 256 files or 64 MiB (so that a job logging in the background keeps its interpreter lock
    and its core), ``always``, or ``never`` (in the calling process)."""
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
        "single_writer": "LORRY_SINGLE_WRITER",
        "ca_bundle": "LORRY_CA_BUNDLE",
        "verify_tls": "LORRY_VERIFY_TLS",
        "s3_sse": "LORRY_S3_SSE",
        "s3_sse_kms_key_id": "LORRY_S3_SSE_KMS_KEY_ID",
        "s3_sse_c_key": "LORRY_S3_SSE_C_KEY",
        "gcs_kms_key": "LORRY_GCS_KMS_KEY",
        "request_timeout": "LORRY_REQUEST_TIMEOUT",
        "retry_deadline": "LORRY_RETRY_DEADLINE",
        "s3_body_check": "LORRY_S3_BODY_CHECK",
        "transfer_process": "LORRY_TRANSFER_PROCESS",
    }

    _FALLBACK_ENV = {"entity": "WANDB_ENTITY", "project": "WANDB_PROJECT"}  # noqa: RUF012
    """Read after lorry's own variables, so scripts written for the original API keep their project."""

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Settings from ``overrides``, then ``$LORRY_*``, then defaults. An empty string means "not
        given" in both places (``store=""`` as ``LORRY_STORE=``), never the current directory."""
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
            if overrides.get(name) not in (None, ""):
                values[name], sources[name] = overrides[name], "argument"
            elif os.environ.get(env):
                values[name], sources[name] = _parse(name, os.environ[env]), f"${env}"
            elif os.environ.get(fallback := cls._FALLBACK_ENV.get(name, "")):
                values[name], sources[name] = os.environ[fallback], f"${fallback}"
            elif name in defaults:
                values[name], sources[name] = defaults[name], "default"
            else:
                sources[name] = "default"
        values["cache_dir"] = Path(values["cache_dir"]).expanduser()
        values["store"] = str(values["store"])
        if values.get("ca_bundle") is not None:
            values["ca_bundle"] = str(Path(values["ca_bundle"]).expanduser())
        if isinstance(values.get("s3_sse_c_key"), str):
            values["s3_sse_c_key"] = Secret(values["s3_sse_c_key"])
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
        if self.max_memory < MIN_MEMORY:
            raise ValidationError(f"setting max_memory must be at least {MIN_MEMORY // MiB} MiB")
        for name in ("verify_tls", "s3_body_check"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(f"setting {name} must be True or False, not {getattr(self, name)!r}")
        if self.s3_sse_c_key is not None and not isinstance(self.s3_sse_c_key, Secret):
            raise ValidationError("setting s3_sse_c_key must be given as a string or a lorry Secret")
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise ValidationError(f"setting ca_bundle names no file: {self.ca_bundle}")
        if self.transfer_process not in TRANSFER_PROCESS:
            raise ValidationError(
                f"setting transfer_process must be one of {', '.join(TRANSFER_PROCESS)}, "
                f"not {self.transfer_process!r}"
            )
        self.store_options  # noqa: B018 - refuses contradictory or malformed encryption settings

    @functools.cached_property
    def store_options(self) -> StoreOptions:
        """What remote stores need from these settings: TLS trust, server-side encryption, timeouts
        (the settings of the same names). Built once: every store lookup keys on it."""
        return StoreOptions(**{f.name: getattr(self, f.name) for f in fields(StoreOptions)})

    def with_(self, **changes: Any) -> Settings:
        updated = replace(self, **changes)
        updated.check()
        return updated

    def describe(self) -> list[tuple[str, str | int | float | bool | None, str]]:
        """(name, value, source) for each setting, for ``lorry config``: values keep their JSON type
        (a path is a string, a secret ``***``)."""
        return [(name, _plain(getattr(self, name)), self.sources.get(name, "default")) for name in self._ENV]


def _plain(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # a Path, or a Secret (whose str is ***)


def _parse(name: str, raw: str) -> Any:
    if name in ("max_requests", "max_memory", "max_open_files"):
        try:
            return int(raw)
        except ValueError:
            raise ValidationError(f"${Settings._ENV[name]} must be an integer, not {raw!r}") from None
    if name in ("progress", "single_writer"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        if name == "single_writer":
            raise ValidationError(f"$LORRY_SINGLE_WRITER must be 1 or 0, not {raw!r}")
        return None
    if name in ("verify_tls", "s3_body_check"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return lowered in ("1", "true", "yes", "on")
        raise ValidationError(f"${Settings._ENV[name]} must be 1 or 0, not {raw!r}")
    if name == "s3_sse_c_key":
        return Secret(raw.strip())
    if name in ("request_timeout", "retry_deadline"):
        try:
            return float(raw)
        except ValueError:
            env = Settings._ENV[name]
            raise ValidationError(f"${env} must be a number of seconds, not {raw!r}") from None
    return raw
