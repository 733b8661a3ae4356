"""A fault-injecting HTTP/1.1 proxy between lorry and a real S3 server, for the fault tests.

The client's endpoint is the proxy, and the proxy forwards the client's bytes unchanged (the ``Host``
header included, so SigV4 signatures still match). It parses just enough HTTP/1.1 to know where each
request and response starts and ends, and at chosen rates (from a seeded random source) it:

- ``reset_request``: cuts the connection (RST) in the middle of a request body; the server never
  receives the whole request;
- ``reset_response``: forwards the request, then cuts the connection before or in the middle of the
  response: the server acted on the request, the client does not learn the outcome;
- ``error_500``: answers ``500 InternalError`` itself (the request never reaches the server);
- ``slowdown``: answers ``503 SlowDown`` with ``Retry-After`` itself;
- ``stall``: stops answering for longer than the client waits, then closes: while the request body
  comes in (it stops reading), after it (without passing it on, or after the server acted on it), or in
  the middle of the response body;
- ``truncate``: sends the response with its full ``Content-Length`` but only part of the body, then
  closes (FIN, not RST);
- ``denied``: answers ``403 AccessDenied`` itself, a failure no retry cures;
- ``corrupt``: forwards the request with one byte of its body changed;
- adds latency: a uniform random delay before each request is forwarded.

``down()`` stops listening and cuts every open connection (the server "crashes"); ``up()`` listens
again on the same port. ``counts`` tallies connections, requests, each fault injected and the
server's answers by status.
``Faults.only`` and ``Faults.limit`` aim faults at chosen requests; ``down_when`` takes the server away
when a chosen request arrives.

It runs on its own event loop in a daemon thread, so the code under test (which has its own loop
thread) and the test's own thread both stay free.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

HEAD_LIMIT = 1 << 20
CHUNK = 64 << 10

REQUEST_FAULTS = ("error_500", "slowdown", "stall", "reset_request", "denied", "corrupt")
RESPONSE_FAULTS = ("reset_response", "truncate", "stall")
FAULT_KINDS = ("reset_request", "reset_response", "error_500", "slowdown", "stall", "truncate")
"""The faults of a flaky network and a busy server (the workload's); ``denied`` and ``corrupt`` are
aimed at single requests."""


@dataclass
class Faults:
    """Rates (probabilities per request) of each fault, and how they behave."""

    reset_request: float = 0.0
    reset_response: float = 0.0
    error_500: float = 0.0
    slowdown: float = 0.0
    stall: float = 0.0
    truncate: float = 0.0
    denied: float = 0.0
    """Answer ``403 AccessDenied`` in the server's place: a failure that does not pass."""
    corrupt: float = 0.0
    """Forward the request with one byte of its body changed: damage on the way."""
    latency: float = 0.0
    """Upper bound, in seconds, of the uniform delay added before each request is forwarded."""
    retry_after: int = 1
    """The ``Retry-After`` (seconds) that ``503 SlowDown`` asks for."""
    stall_seconds: float = 30.0
    """How long a stalled connection is held open (unless the client gives up first)."""
    stall_where: str = "anywhere"
    """Where a stall before the response happens: ``body`` (the proxy stops taking the request body
    halfway), ``answer`` (it takes the whole request and never answers) or ``anywhere`` (either, at
    random)."""
    only: Callable[[str], bool] | None = None
    """Break only the requests whose first line (``PUT /bucket/key?... HTTP/1.1``) this accepts."""
    limit: int | None = None
    """Break at most this many requests in all."""


@dataclass
class _Message:
    """One parsed request or response head."""

    raw: bytes
    start: list[str]
    headers: list[tuple[str, str]] = field(default_factory=list)
    aimed: bool = True
    """A request that faults may hit (``Faults.only`` is asked once per request)."""
    in_flight: bool = True
    """Counted in the proxy's ``in_flight`` (until its answer starts on its way)."""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.header("transfer-encoding") or "").lower()

    @property
    def line(self) -> str:
        return self.raw.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def status(self) -> int:
        return int(self.start[1])

    @property
    def length(self) -> int | None:
        value = self.header("content-length")
        return int(value) if value is not None else None


def _parse(raw: bytes) -> _Message:
    lines = raw.decode("latin-1").split("\r\n")
    message = _Message(raw=raw, start=lines[0].split(" ", 2))
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            message.headers.append((name.strip(), value.strip()))
    return message


class _Cut(Exception):
    """The proxy decided to end this connection."""


class FaultProxy:
    """``FaultProxy(("127.0.0.1", 7480), seed=1)``: start it with ``start()``, point the client at
    ``endpoint``, set ``faults``, read ``counts``; ``close()`` at the end."""

    def __init__(self, upstream: tuple[str, int], seed: int = 0, faults: Faults | None = None) -> None:
        self.upstream = upstream
        self.faults = faults or Faults()
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._sock: socket.socket | None = None
        self._address: tuple[str, int] = ("127.0.0.1", 0)
        self._open: set[asyncio.StreamWriter] = set()
        self._trip: Callable[[str], bool] | None = None
        self.tripped = threading.Event()
        self.abandoned: list[float] = []
        """Seconds each stall that reads on lasted until the client gave up (closed the connection);
        one the client sat out to the end is counted in ``counts["stalls waited out"]`` instead."""
        self.in_flight = 0
        self.peak_in_flight = 0
        """Requests between their first byte and the end of their answer, now and at most."""
        self.body_bytes_in_flight = 0
        self.peak_body_bytes = 0
        """The request bodies (by ``Content-Length``) of those requests, in bytes, now and at most."""
        self.expect_continue: list[str] = []
        """First lines of the requests that carried ``Expect: 100-continue``."""
        self.before: Callable[[str], None] | None = None
        """Called with each request's first line before the request is forwarded (on the proxy's
        thread): a test's way to change the server's state at a chosen moment."""

    # -- control, from the test's thread ------------------------------------------------------------

    def start(self, sock: socket.socket | None = None) -> FaultProxy:
        """Listen on 127.0.0.1 (a free port), or on ``sock``, a listening socket made by the caller."""
        self._thread.start()
        self._sock = sock
        self._call(self._listen())
        return self

    @property
    def endpoint(self) -> str:
        host, port = self._address
        return f"http://{host}:{port}"

    def down(self) -> None:
        """Stop listening (new connections are refused) and cut every open connection."""
        self._call(self._down())

    def up(self) -> None:
        """Listen again, on the same address."""
        self._call(self._listen())

    def down_when(self, matches: Callable[[str], bool]) -> None:
        """Go down, as ``down()`` does, when a request whose first line ``matches`` arrives (it is not
        forwarded); ``tripped`` is set then."""
        self.tripped.clear()
        self._trip = matches

    def quiet(self) -> None:
        """No more faults (latency included) from now on."""
        self.faults = Faults()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._call(self._end())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def faults_injected(self) -> int:
        return sum(self.counts[kind] for kind in (*FAULT_KINDS, "denied", "corrupt"))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # -- the server, on the proxy's loop --------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is not None:
            return
        if self._sock is not None:
            self._server = await asyncio.start_server(self._serve, sock=self._sock, limit=HEAD_LIMIT)
        else:
            self._server = await asyncio.start_server(
                self._serve, *self._address, limit=HEAD_LIMIT, reuse_address=True
            )
        self._address = self._server.sockets[0].getsockname()[:2]

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            self._sock = None
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()

    async def _end(self) -> None:
        await self._down()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        self._open.add(client_w)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                raw = await _read_head(client_r)
                if raw is None:
                    return
                request = _parse(raw)
                self.counts["requests"] += 1
                if self.before is not None:
                    self.before(request.line)
                request.aimed = self.faults.only is None or self.faults.only(request.line)
                if self._trip is not None and self._trip(request.line):
                    self._trip = None
                    await self._down()
                    self.tripped.set()
                    raise _Cut
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream, limit=HEAD_LIMIT)
                    self._open.add(upstream[1])
                self.in_flight += 1
                self.body_bytes_in_flight += request.length or 0
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                self.peak_body_bytes = max(self.peak_body_bytes, self.body_bytes_in_flight)
                try:
                    if not await self._exchange(request, client_r, client_w, *upstream):
                        return
                finally:
                    self._answered(request)
        except (_Cut, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return
        except asyncio.CancelledError:  # the proxy is closing: this connection ends with it
            return
        finally:
            for writer in (client_w, *(upstream[1:] if upstream else ())):
                self._open.discard(writer)
                _reset(writer)

    async def _exchange(
        self,
        request: _Message,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        server_r: asyncio.StreamReader,
        server_w: asyncio.StreamWriter,
    ) -> bool:
        """One request and its response; False when the connection must end afterwards."""
        if self.faults.latency:
            await asyncio.sleep(self._random.uniform(0, self.faults.latency))
        has_body = request.chunked or (request.length or 0) > 0
        # With "Expect: 100-continue" the client sends its body only after an interim "100 Continue".
        expect = has_body and (request.header("expect") or "").lower() == "100-continue"
        if (request.header("expect") or "").lower() == "100-continue":
            self.expect_continue.append(request.line)
        bodiless = set() if has_body else {"reset_request", "corrupt"}
        fault = self._pick(REQUEST_FAULTS, request, impossible=bodiless)
        if fault in ("error_500", "slowdown", "stall", "denied"):
            return await self._refuse(fault, request, client_r, client_w, expect=expect)
        server_w.write(request.raw)
        if expect:
            response, raw = await self._response_head(server_r, client_w, until_continue=True)
            client_w.write(raw)
            if response.status != 100:  # refused before the body: pass the answer on and close
                await _relay_body(response, server_r, client_w, until_eof=response.length is None)
                await _close(client_w)
                return False
        if fault == "reset_request":
            cut = self._random.randrange(0, max(1, request.length or CHUNK))
            await _relay_body(request, client_r, server_w, cut=cut)
            raise _Cut
        flip = self._random.randrange(0, request.length) if fault == "corrupt" and request.length else None
        await _relay_body(request, client_r, server_w, flip=flip)
        await server_w.drain()
        return await self._respond(request, client_r, client_w, server_r)

    async def _refuse(
        self,
        fault: str,
        request: _Message,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        *,
        expect: bool,
    ) -> bool:
        """Answer in the server's place: an error, or nothing at all (a stall)."""
        if fault == "stall":
            if expect:  # the client waits for "100 Continue", which never comes
                await self._stall(client_r, reading=False)
            elif request.length and self._stalls_in_body():  # stop taking the body halfway
                await _relay_body(request, client_r, None, cut=self._random.randrange(0, request.length))
                await self._stall(client_r, reading=False)
            else:  # take the whole request, never answer
                await _relay_body(request, client_r, None)
                await self._stall(client_r, reading=True)
            return False
        if expect:  # refused before the body was sent: the connection cannot be reused
            client_w.write(_error(request, fault, self.faults.retry_after, close=True))
            await client_w.drain()
            return False
        await _relay_body(request, client_r, None)  # the request is read whole, then refused
        client_w.write(_error(request, fault, self.faults.retry_after))
        await client_w.drain()
        return True

    async def _respond(
        self,
        request: _Message,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        server_r: asyncio.StreamReader,
    ) -> bool:
        """Pass the server's response on, or break it on the way."""
        response, raw = await self._response_head(server_r, client_w, until_continue=False)
        self.counts[f"status {response.status}"] += 1
        bodiless = request.start[0] == "HEAD" or response.status in (204, 304)
        length = 0 if bodiless else response.length
        has_body = response.chunked or length is None or length > 0
        fault = self._pick(RESPONSE_FAULTS, request, impossible=set() if has_body else {"truncate"})
        if fault in ("reset_response", "stall") and (not has_body or self._random.random() < 0.5):
            # The server has acted on the request; the client hears nothing of it.
            if fault == "stall":
                await self._stall(client_r, reading=True)
            raise _Cut
        self._answered(request)
        client_w.write(raw)
        if fault is None:
            if bodiless:
                await client_w.drain()
            else:
                await _relay_body(response, server_r, client_w, until_eof=length is None)
            closing = (response.header("connection") or "").lower() == "close"
            if closing or (length is None and not response.chunked):
                await _close(client_w)  # the server ends the connection here: so does the proxy
                return False
            return True
        await _relay_body(response, server_r, client_w, cut=self._random.randrange(0, length or CHUNK))
        await client_w.drain()
        if fault == "stall":
            await self._stall(client_r, reading=True)
        elif fault == "truncate":
            await _close(client_w)  # a clean FIN after too few bytes
        raise _Cut

    async def _response_head(
        self, server_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, *, until_continue: bool
    ) -> tuple[_Message, bytes]:
        """The server's next final answer (or its "100 Continue", if ``until_continue``); other
        interim answers go to the client as they are."""
        while True:
            raw = await _read_head(server_r)
            if raw is None:
                raise _Cut
            response = _parse(raw)
            if response.status >= 200 or (until_continue and response.status == 100):
                return response, raw
            client_w.write(raw)

    def _answered(self, request: _Message) -> None:
        """The request is no longer in flight: its answer is about to reach the client (which may
        send its next request at once), or its connection ended."""
        if request.in_flight:
            request.in_flight = False
            self.in_flight -= 1
            self.body_bytes_in_flight -= request.length or 0

    def _pick(self, kinds: tuple[str, ...], request: _Message, impossible: set[str]) -> str | None:
        """One of ``kinds``, drawn by the rates, or None; a draw that cannot apply here is no fault."""
        faults = self.faults
        if not request.aimed or (faults.limit is not None and self.faults_injected >= faults.limit):
            return None
        roll = self._random.random()
        for kind in kinds:
            # A stall can come before the response or during it: half of its rate each.
            rate: float = getattr(self.faults, kind) / (2 if kind == "stall" else 1)
            if roll < rate:
                if kind in impossible:
                    return None
                self.counts[kind] += 1
                return kind
            roll -= rate
        return None

    def _stalls_in_body(self) -> bool:
        where = self.faults.stall_where
        return where == "body" or (where == "anywhere" and self._random.random() < 0.5)

    async def _stall(self, client_r: asyncio.StreamReader, *, reading: bool) -> None:
        """Say nothing for ``stall_seconds``. ``reading``: keep taking (and dropping) what the client
        sends, and end early when it gives up; else take nothing more, as a server that hangs."""
        began = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self.faults.stall_seconds):
                if not reading:
                    await asyncio.sleep(self.faults.stall_seconds)
                while await client_r.read(CHUNK):
                    pass
        except TimeoutError:
            if reading:
                self.counts["stalls waited out"] += 1
            return
        except ConnectionError:
            pass
        self.abandoned.append(asyncio.get_running_loop().time() - began)


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The next message head, or None when the peer closed cleanly between messages."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise


async def _relay_body(
    message: _Message,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    *,
    cut: int | None = None,
    until_eof: bool = False,
    flip: int | None = None,
) -> None:
    """Copy ``message``'s body from ``reader`` to ``writer`` (None: discard it). With ``cut``, copy
    only that many bytes of it and stop; with ``flip``, change the byte at that offset."""
    budget = cut if cut is not None else -1
    offset = 0

    def send(data: bytes) -> bool:
        nonlocal budget, offset
        if flip is not None and offset <= flip < offset + len(data):
            data = data[: flip - offset] + bytes([data[flip - offset] ^ 0xFF]) + data[flip - offset + 1 :]
        offset += len(data)
        if budget >= 0:
            data = data[:budget]
            budget -= len(data)
        if writer is not None and data:
            writer.write(data)
        return budget != 0

    async def copy(count: int) -> bool:
        while count > 0:
            data = await reader.readexactly(min(CHUNK, count))
            count -= len(data)
            if not send(data):
                return False
            if writer is not None:
                await writer.drain()
        return True

    if message.chunked:
        while True:
            line = await reader.readuntil(b"\r\n")
            if not send(line):
                return
            size = int(line.split(b";")[0], 16)
            if not await copy(size + 2):
                return
            if size == 0:
                # Trailers (rare) end with an empty line; 'size + 2' already took an empty one.
                return
    elif until_eof:
        while data := await reader.read(CHUNK):
            if not send(data):
                return
            if writer is not None:
                await writer.drain()
    else:
        await copy(message.length or 0)


_ERRORS = {
    "error_500": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "denied": (403, "Forbidden", "AccessDenied", "Access Denied"),
}


def _error(request: _Message, kind: str, retry_after: int, *, close: bool = False) -> bytes:
    status, reason, code, text = _ERRORS[kind]
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{text}</Message>'
        f"<RequestId>faultproxy</RequestId></Error>"
    ).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
    ]
    if kind == "slowdown":
        head.append(f"Retry-After: {retry_after}")
    if close:
        head.append("Connection: close")
    raw = ("\r\n".join(head) + "\r\n\r\n").encode()
    return raw if request.start[0] == "HEAD" else raw + body


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close with a FIN once every byte written has gone out: the end of a whole answer after which the
    server closes (``Connection: close``). A RST here would drop the answer's tail still buffered on the
    way, which is a fault the proxy did not choose."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST, as a crashed peer or a dropped route does, not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
