"""The session: what ``Run`` and ``Api`` share while they work on stores.

A session builds each store's stack once (the backend, then the request limit, then retries: the
``Engine`` in ``transfer.engine``; then the single-writer check, in the ``Registry``) and keeps one
``Registry`` per store, so what a registry learns once (whether the store honours conditional writes)
is learnt once. It holds the ``Assigner`` that orders a run's logs, and the engine whose limits and
thread pool every transfer shares.

A session lives on the bridge's event loop (``lorry._bridge``): one per loop, so one per process, made
by the first settings that ask (its limits are theirs) and forgotten with the loop after a fork.
"""

from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import Future
from typing import Any

from lorry import _bridge
from lorry.registry.assigner import Assigner
from lorry.registry.registry import Registry
from lorry.settings import Settings
from lorry.storage.base import Store
from lorry.storage.options import StoreOptions
from lorry.transfer import offload
from lorry.transfer.engine import Engine
from lorry.transfer.retry import RetryStats


class Session:
    """Stores, registries, the assigner and the transfer engine of one event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine(settings)
        self.assigner = Assigner()
        self._registries: dict[tuple[str, StoreOptions, bool], Registry] = {}

    def store(self, url: str, options: StoreOptions | None = None) -> Store:
        """The store at ``url``, built once with its limit and retries. (No default: the session's own
        settings are those of whoever asked first, and each caller names the store it means.)"""
        return self.engine.store(url, options)

    def registry(self, settings: Settings) -> Registry:
        """The records of the store ``settings`` name, one registry per store and mode: in single-writer
        mode the check wraps that store once."""
        key = (settings.store, settings.store_options, settings.single_writer)
        if key not in self._registries:
            store = self.store(settings.store, settings.store_options)
            self._registries[key] = Registry(store, single_writer=settings.single_writer)
        return self._registries[key]

    @property
    def retries(self) -> RetryStats:
        """What retrying has cost this session's stores so far."""
        return self.engine.retries

    async def close(self) -> None:
        """Close the stores (their connections); the session can be used again afterwards."""
        self._registries.clear()
        await self.engine.close()


_lock = threading.Lock()
_sessions: weakref.WeakKeyDictionary[_bridge.Bridge, Session] = weakref.WeakKeyDictionary()


def session(settings: Settings) -> Session:
    """The session of this process's loop, made from ``settings`` if there is none yet."""
    loop = _bridge.bridge()
    with _lock:
        found = _sessions.get(loop)
        if found is None:
            found = _sessions[loop] = Session(settings)
        return found


def close_session() -> None:
    """Close this process's session, if it was ever made (at interpreter exit)."""
    if not _bridge.started():
        return
    loop = _bridge.bridge()
    with _lock:
        current = _sessions.pop(loop, None)
    if current is not None:
        loop.run(current.close())


def serve_helper() -> None:
    """The main of the process that stores large artifacts, and writes large downloads of small
    files, off the caller's interpreter (``transfer.offload``): each job runs on this process's
    session."""

    def submit(kind: str, settings: Settings, payload: Any) -> Future[offload.Stored]:
        engine = session(settings).engine
        if kind == offload.FETCH:
            # Imported by the first download's job: a helper that only stores never loads the
            # download layer (and the HTTP client its references need).
            from lorry.transfer.download import fetch_small_part

            store_root, entries, root = payload
            return _bridge.bridge().submit(fetch_small_part(engine, store_root, entries, root))
        return _bridge.bridge().submit(offload.store_job(engine, settings, payload))

    offload.serve(submit)


def _forget_after_fork() -> None:
    # The sessions went with the parent's loop (their bridge); a lock held mid-call did not.
    global _lock  # noqa: PLW0603
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
