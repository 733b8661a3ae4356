"""``lorry ui``: artifacts, their metadata and their lineage in a browser (read-only).

>>> serve(Settings.load(), "127.0.0.1", 8765, print)       # doctest: +SKIP
lorry ui: serving /home/me/.local/share/lorry/store at http://127.0.0.1:8765/
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from aiohttp import web

from lorry.model.secret import redact_setting
from lorry.settings import Settings
from lorry.ui.server import Access, make_app, url_host

__all__ = ["serve"]


def serve(settings: Settings, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve the store of ``settings`` on ``host:port`` (0: any free port) until interrupted or
    terminated; ``announce`` receives the line with the URL to open once the server listens."""
    asyncio.run(_serve(settings, host, port, announce))


async def _serve(settings: Settings, host: str, port: int, announce: Callable[[str], None]) -> None:
    access = Access.for_host(host)
    runner = web.AppRunner(make_app(settings, access), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        url = f"http://{url_host(host)}:{bound}/" + (f"?token={access.token}" if access.token else "")
        announce(f"lorry ui: serving {redact_setting('store', settings.store)} at {url}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):  # no signal handlers on some platforms
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
