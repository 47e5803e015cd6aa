"""A small HTTP/1.1 server on its own asyncio event loop, in a daemon thread.

Why hand-written: :mod:`http.server` handles a few hundred requests per second and would become the
bottleneck of any benchmark run against it; this server parses just what OAuth clients send
(request line, headers, ``Content-Length`` or chunked bodies, keep-alive, ``Expect: 100-continue``)
and nothing more. It knows nothing about OAuth: it hands every :class:`Request` to an async
handler, which returns a :class:`Response`, or ``None`` to drop the connection without answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

__all__ = ["HttpServer", "Request", "Response", "Handler"]

_log = logging.getLogger("freshtoken.testing")
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


@dataclass(slots=True)
class Request:
    """One parsed HTTP request; header names are lower-cased, repeated headers comma-joined."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes = b""
    path: str = field(init=False)
    query: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = parts.path or "/"
        self.query = parse_qs(parts.query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``None``."""
        return self.headers.get(name.lower())


@dataclass(slots=True)
class Response:
    """What the handler answers: a status, headers and a complete body."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    drip: float = 0.0  # seconds between the bytes sent (a dripping endpoint); 0: all at once

    def set_header(self, name: str, value: str) -> None:
        """Replace every header called ``name`` by one with ``value``."""
        lower = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lower]
        self.headers.append((name, value))

    def get_header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)


Handler = Callable[[Request], Awaitable[Response | None]]


class _BadRequest(Exception):
    """The bytes on the wire are not an HTTP/1.x request we understand."""

    def __init__(self, status: int = 400) -> None:
        super().__init__(status)
        self.status = status


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _serialize(response: Response, *, keep_alive: bool, method: str = "GET") -> bytes:
    lines = [f"HTTP/1.1 {response.status} {_reason(response.status)}"]
    lines.extend(f"{k}: {v}" for k, v in response.headers)
    body = response.body
    if response.status in (204, 304) or response.status < 200:
        body = b""  # RFC 9110 §6.4.1: these responses have no content, nor Content-Length
    else:
        lines.append(f"Content-Length: {len(body)}")
        if method == "HEAD":
            body = b""
    if not keep_alive:
        lines.append("Connection: close")
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
    return head + body


async def _write(writer: asyncio.StreamWriter, data: bytes, drip: float) -> None:
    """Send ``data``: at once, or the head at once and then the body one byte every ``drip``
    seconds (a slow-but-steady body, which no per-read timeout ever cuts off)."""
    split = data.index(b"\r\n\r\n") + 4 if drip > 0 else len(data)
    writer.write(data[:split])
    await writer.drain()
    for index in range(split, len(data)):
        await asyncio.sleep(drip)
        writer.write(data[index : index + 1])
        await writer.drain()


def _parse_head(head: bytes) -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise _BadRequest from exc
    request_line, *header_lines = text[:-4].split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Request(method=parts[0], target=parts[1], version=parts[2], headers=headers)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _BadRequest from exc
        if size == 0:
            # Trailer section: header lines until an empty one.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        if len(body) + size > _MAX_BODY:
            raise _BadRequest(413)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise _BadRequest


async def _read_body(
    request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bytes:
    encoding = request.header("transfer-encoding")
    length = request.header("content-length")
    if encoding is None and length is None:
        return b""
    if (request.header("expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if encoding is not None:
        if encoding.lower() != "chunked":
            raise _BadRequest(501)
        return await _read_chunked(reader)
    assert length is not None
    if not length.isdigit():
        raise _BadRequest
    if int(length) > _MAX_BODY:
        raise _BadRequest(413)
    return await reader.readexactly(int(length))


def _wants_keep_alive(request: Request) -> bool:
    connection = (request.header("connection") or "").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


class HttpServer:
    """Serve ``handler`` on ``host:port`` from an event loop running in a daemon thread.

    :meth:`start` returns once the socket listens (so :attr:`port` is known); :meth:`stop` closes
    the listening socket and every open connection, then joins the thread.
    """

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    # -- lifecycle, called from the owning thread ------------------------------------------

    def start(self) -> None:
        """Bind, listen and serve in a new daemon thread; raise if binding failed."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(
            target=self._run, name=f"freshtoken-testing-http-{id(self):x}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error

    def stop(self) -> None:
        """Close every socket, stop the loop and join the thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        thread.join(timeout=10)
        self._thread = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (for scheduling work on it)."""
        assert self._loop is not None, "server not started"
        return self._loop

    # -- inside the server thread ----------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                self._server = loop.run_until_complete(self._listen())
            except OSError as exc:
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> asyncio.Server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._requested_port))
        except OSError:
            sock.close()
            raise
        server = await asyncio.start_server(
            self._on_connection, sock=sock, limit=_MAX_HEAD, backlog=1024
        )
        self.port = int(sock.getsockname()[1])
        return server

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                writer.write(_serialize(Response(431), keep_alive=False))
                await writer.drain()
                return
            try:
                request = _parse_head(head)
                request.body = await _read_body(request, reader, writer)
            except (_BadRequest, asyncio.LimitOverrunError) as exc:
                status = exc.status if isinstance(exc, _BadRequest) else 400
                writer.write(_serialize(Response(status), keep_alive=False))
                await writer.drain()
                return
            try:
                response = await self._handler(request)
            except Exception:  # answer 500 rather than hang the client
                _log.exception("unhandled error serving %s %s", request.method, request.path)
                response = Response(500, b"internal error", [("Content-Type", "text/plain")])
            if response is None:  # the handler asked us to drop the connection
                return
            keep_alive = _wants_keep_alive(request)
            await _write(
                writer,
                _serialize(response, keep_alive=keep_alive, method=request.method),
                response.drip,
            )
            if not keep_alive:
                return
