"""The router's HTTP plumbing: an HTTP/1.1 server protocol and pooled upstream connections.

A generic ASGI stack (an app server, a framework and an HTTP client per request path)
costs more per request than the model server it fronts; this module parses with
``httptools`` (the parser uvicorn uses) and moves bytes between two keep-alive
connections, so the proxy hop costs a fraction of a millisecond.

- Requests are read whole, up to ``max_body`` bytes: a larger ``Content-Length`` is
  answered 413 before any of the body is read, and a chunked body that grows past the
  limit is cut off with 413, so the router never holds more than the limit per request.
- Upstream connections are kept per replica port and reused. A request is retried on
  another replica only when it was never sent (the connection could not be made, or a
  pooled connection was already closed): after a send it may have run, so it is not.
- The hot path runs on callbacks: when the handler's ``fast`` hook finds an idle pooled
  connection, the request is written to it from ``data_received`` and the answer written
  back from the upstream's own callback, with no task, future or extra turn of the loop
  (at concurrency 1 those cost about as much as the bytes' trip itself). Everything else
  (a new connection, a retry, admin paths) takes the ``async`` handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httptools

# A pooled connection idle longer than this is not reused: the model server (uvicorn)
# closes keep-alive connections after 5 s, and one closing as a request goes out would
# fail that request after it was sent.
IDLE_MAX = 4.0
HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host",
     b"proxy-connection", b"te", b"trailer", b"upgrade"}
)  # fmt: skip
REASONS = {200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found",
           409: b"Conflict", 413: b"Payload Too Large", 502: b"Bad Gateway",
           503: b"Service Unavailable", 504: b"Gateway Timeout"}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str  # path and query, as sent
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def encode(self, keep_alive: bool) -> bytes:
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, REASONS.get(self.status, b"OK"))]
        lines += [k + b": " + v + b"\r\n" for k, v in self.headers if k not in HOP_HEADERS]
        lines.append(b"content-length: %d\r\n" % len(self.body))
        lines.append(
            b"connection: keep-alive\r\n\r\n" if keep_alive else b"connection: close\r\n\r\n"
        )
        return b"".join(lines) + self.body


def json_response(status: int, body: bytes) -> Response:
    return Response(status, [(b"content-type", b"application/json")], body)


class NotSent(Exception):
    """The request never left the router: safe to try another replica."""


class SentButFailed(Exception):
    """The connection failed after the request was sent: it may have run."""


Handler = Callable[[Request], Awaitable[Response]]
Respond = Callable[[Response], None]
# ``fast(request, respond)``: True when it took the request and will call ``respond`` once.
Fast = Callable[[Request, Respond], bool]
Done = Callable[["Response | Exception"], None]


class ServerProtocol(asyncio.Protocol):
    """One client connection: parse requests, hand each to ``fast`` or ``handler``, write
    answers in order."""

    def __init__(self, handler: Handler, max_body: int, fast: Fast | None = None) -> None:
        self.handler = handler
        self.fast = fast
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.busy = False
        self._current: Request | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size = b"", [], [], 0
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        for k, v in self._headers:
            if k == b"content-length" and v.isdigit() and int(v) > self.max_body:
                self._refuse_large()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            self._refuse_large()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._too_large:
            return
        method = self.parser.get_method().decode()
        request = Request(method, self._url.decode("latin-1"), self._headers,
                          b"".join(self._body), self.parser.should_keep_alive())  # fmt: skip
        self.queue.append(request)

    # -- asyncio callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if not self._too_large:
                self._write(json_response(400, b'{"error": "malformed HTTP request"}'), False)
            return
        if self.queue and not self.busy:
            self._next()

    def _refuse_large(self) -> None:
        if self._too_large:
            return
        self._too_large = True
        body = b'{"error": "request body larger than %d bytes"}' % self.max_body
        self._write(json_response(413, body), False)

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(response.encode(keep_alive))
        if not keep_alive:
            self.transport.close()
            self.transport = None

    def _next(self) -> None:
        """Start the next queued request (one at a time: answers go out in order)."""
        if not self.queue or self.transport is None:
            self.busy = False
            self._current = None
            return
        self.busy = True
        request = self._current = self.queue.popleft()
        try:
            if self.fast is not None and self.fast(request, self.respond):
                return
        except Exception as e:  # the router must answer whatever went wrong
            self.respond(_router_error(e))
            return
        asyncio.get_running_loop().create_task(self._serve(request))

    async def _serve(self, request: Request) -> None:
        try:
            response = await self.handler(request)
        except Exception as e:  # the router must answer whatever went wrong
            response = _router_error(e)
        self.respond(response)

    def respond(self, response: Response) -> None:
        """Answer the current request, then go on with the next one."""
        request = self._current
        self._write(response, request.keep_alive if request is not None else False)
        self._next()


def _router_error(e: Exception) -> Response:
    return json_response(502, b'{"error": "router error: %s"}' % type(e).__name__.encode())


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to one replica, one request at a time: awaited
    (:meth:`send`) or with a callback (:meth:`send_then`)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.done: Done | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self.keep_alive = True

    def on_message_begin(self) -> None:
        self._headers, self._body = [], []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        response = Response(self.parser.get_status_code(), self._headers, b"".join(self._body))
        if self.done is not None:
            self._finish(response)
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self._fail(SentButFailed(str(exc or "connection closed")))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(SentButFailed(f"malformed response: {e}"))
            self.close()

    def _fail(self, error: Exception) -> None:
        if self.done is not None:
            self._finish(error)
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def _finish(self, outcome: Response | Exception) -> None:
        done, self.done = self.done, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if done is not None:
            done(outcome)

    def _timed_out(self) -> None:
        self._timer = None
        self.close()  # the answer may still come: this connection cannot be reused
        self._finish(TimeoutError("the replica did not answer in time"))

    def send_then(self, data: bytes, timeout: float, done: Done) -> None:
        """Write ``data`` now; ``done`` gets the response, or the exception, exactly once.
        The caller has checked that the connection is open (so the request is sent)."""
        assert self.transport is not None and not self.closed
        self.done = done
        self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def send(self, data: bytes, timeout: float) -> Response:
        if self.closed or self.transport is None:
            raise NotSent("pooled connection already closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await asyncio.wait_for(self.waiter, timeout)
        except TimeoutError:
            self.close()
            raise
        finally:
            self.waiter = None


class Pool:
    """Idle keep-alive connections per replica port."""

    def __init__(self, connect_timeout: float = 1.0, max_idle: int = 64) -> None:
        self.idle: dict[int, list[UpstreamConnection]] = {}
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle

    async def _connect(self, port: int) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(UpstreamConnection, "127.0.0.1", port),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as e:
            raise NotSent(f"cannot connect to 127.0.0.1:{port}: {e}") from e
        return conn

    async def request(self, port: int, request: Request, timeout: float) -> Response:
        data = encode_request(request, port)
        while (conn := self.take_idle(port)) is not None:
            try:
                response = await conn.send(data, timeout)
            except NotSent:
                continue
            self._release(port, conn)
            return response
        conn = await self._connect(port)
        response = await conn.send(data, timeout)
        self._release(port, conn)
        return response

    def take_idle(self, port: int) -> UpstreamConnection | None:
        """An open idle connection to ``port``, or None (then connect with :meth:`request`)."""
        idle = self.idle.get(port)
        while idle:
            conn = idle.pop()
            if self._usable(conn):
                return conn
        return None

    @staticmethod
    def _usable(conn: UpstreamConnection) -> bool:
        """Open, and not idle for so long that the server may be closing it right now."""
        if conn.closed or conn.transport is None:
            return False
        if time.monotonic() - conn.idle_since > IDLE_MAX:
            conn.close()
            return False
        return True

    def release(self, port: int, conn: UpstreamConnection) -> None:
        """Give back a connection whose exchange is over (closed ones are dropped)."""
        self._release(port, conn)

    def _release(self, port: int, conn: UpstreamConnection) -> None:
        if not conn.keep_alive or conn.closed:
            conn.close()
            return
        idle = self.idle.setdefault(port, [])
        if len(idle) < self.max_idle:
            conn.idle_since = time.monotonic()
            idle.append(conn)
        else:
            conn.close()

    def forget(self, port: int) -> None:
        for conn in self.idle.pop(port, []):
            conn.close()

    def close(self) -> None:
        for port in list(self.idle):
            self.forget(port)


def encode_request(request: Request, port: int) -> bytes:
    head = [f"{request.method} {request.path} HTTP/1.1\r\n".encode("latin-1"),
            b"host: 127.0.0.1:%d\r\n" % port]  # fmt: skip
    head += [k + b": " + v + b"\r\n" for k, v in request.headers if k not in HOP_HEADERS]
    head.append(b"content-length: %d\r\n\r\n" % len(request.body))
    return b"".join(head) + request.body


async def get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """A one-off GET on a fresh connection (health checks): status and body."""
    pool = Pool(connect_timeout=timeout)
    try:
        r = await pool.request(port, Request("GET", path, [], b"", False), timeout)
        return r.status, r.body
    finally:
        pool.close()


def close_quietly(server: asyncio.base_events.Server) -> None:
    with contextlib.suppress(Exception):
        server.close()
