"""The fast transport: our own keep-alive HTTP/1.1 pool on ``asyncio.Protocol``.

**This module is the one place in binance-pmpro that does its I/O on asyncio directly.**
Everything else runs on anyio, so it works on trio too (the httpx transport and the Redis
limiter only start asyncio tasks, on asyncio, to guard against asyncio's native
cancellation); this transport trades portability for speed and is chosen only on asyncio
(uvloop included). On trio, with a proxy or with a user-supplied
``httpx.AsyncClient``, the client uses :class:`~binance_pmpro.transport.httpx.HttpxTransport`.

Shape (after uvicorn's httptools protocol, turned into a client):

- one ``asyncio.Protocol`` per TCP (or TLS) connection, opened with
  ``loop.create_connection``; responses are parsed by llhttp through ``httptools``
  callbacks (``on_header``, ``on_body``, ``on_message_complete``), never by hand;
- request bytes are joined from parts computed once (``Host`` line, static headers, the
  encoded header block of each distinct header tuple);
- timeouts are loop timers, one per connection, re-armed lazily: a call only moves a
  deadline (a float), so a sequential caller allocates no timer per request;
- a LIFO pool of idle connections (the warmest is reused first), a FIFO queue of callers
  waiting for a free slot, and one sweep timer that closes connections idle too long.

Correctness rules, since the requests carry money:

- a connection is reused only after a complete response that allows keep-alive; one with
  an unfinished exchange (error, timeout, cancellation at any await point) is aborted,
  never returned to the pool;
- a connection closed by the server while idle is dropped as soon as the loop notices; if
  a request still meets such a connection, it is sent again on a fresh connection only if
  nothing was written yet, or if it is a ``GET`` on a reused connection from which not one
  byte of response arrived (the server closed it as we sent);
- a body cut short (reset, or close before ``Content-Length`` bytes or the last chunk) is
  :class:`~binance_pmpro.errors.ConnectionLostError`, never a partial body.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httptools

from .. import __version__, errors
from ..errors import ConfigurationError
from ..requests import PreparedRequest
from . import HEADER_NAMES, Response, Timeouts, header_name

__all__ = ["FastTransport"]

_INF = float("inf")

# The methods we send, with the end of the head for an empty body: ``Content-Length: 0``
# where the method usually has a body. HEAD is left out on purpose: a response parser
# cannot tell that a HEAD answer has no body.
_METHODS: dict[str, str] = {
    "GET": "\r\n",
    "DELETE": "\r\n",
    "POST": "Content-Length: 0\r\n\r\n",
    "PUT": "Content-Length: 0\r\n\r\n",
    "PATCH": "Content-Length: 0\r\n\r\n",
}
_UNSAFE_TARGET = re.compile(r"[^\x21-\x7e]")  # anything but visible ASCII breaks the line
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Framing is ours to decide: a caller's header must not be able to smuggle a second request.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_HEADER_CACHE_SIZE = 64
_ACLOSE_GRACE = 1.0  # seconds aclose() waits for graceful closes before aborting the rest
# Response(...) runs the NamedTuple's Python-level __new__; this is the tuple constructor
# it calls, for the one place that builds a Response per exchange.
_new_response = tuple.__new__


def _clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """``loop.time``, or ``time.monotonic`` itself where that is all the loop's method does
    (the stock asyncio loops): the same clock without a Python call around it. Asked of the
    bound method, as the rate limiter does (its ``_clock_of``), so that a ``time`` replaced on
    the loop instance (a virtual test clock) is honoured."""
    if getattr(loop.time, "__func__", None) is asyncio.BaseEventLoop.time:
        return time.monotonic
    return loop.time


class _StaleConnection(Exception):
    """The connection was gone before any byte of the response arrived."""

    def __init__(self, written: bool) -> None:
        super().__init__()
        self.written = written


class _Connection(asyncio.Protocol):
    """One pooled HTTP/1.1 connection: at most one exchange in flight, no pipelining."""

    __slots__ = (
        "_body",
        "_closed",
        "_counted",
        "_deadline",
        "_exchanges",
        "_gone",
        "_got_bytes",
        "_headers",
        "_idle_since",
        "_in_idle",
        "_loop",
        "_lost",
        "_now",
        "_owner",
        "_parser",
        "_read_timeout",
        "_request",
        "_reusable",
        "_status",
        "_timer",
        "_timer_when",
        "_transport",
        "_waiter",
        "_write_paused",
        "_write_timeout",
    )

    def __init__(self, owner: FastTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self._loop = loop
        self._now = _clock(loop)
        self._body: list[bytes] = []
        # The parser looks its callbacks up once, here: body chunks go straight into the
        # (reused) list through its C append, without a Python call per chunk.
        self._parser = httptools.HttpResponseParser(
            SimpleNamespace(
                on_message_begin=self.on_message_begin,
                on_header=self.on_header,
                on_headers_complete=self.on_headers_complete,
                on_body=self._body.append,
                on_message_complete=self.on_message_complete,
            )
        )
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._gone = False  # connection_lost has run
        self._counted = False  # holds one of the pool's max_connections slots
        self._in_idle = False
        self._idle_since = 0.0
        self._exchanges = 0  # completed exchanges: >0 means "reused" for the resend rule
        self._waiter: asyncio.Future[Response] | None = None
        self._request: PreparedRequest | None = None
        self._status = 0  # of the final (not 1xx) response, once its headers are complete
        self._headers: dict[str, str] = {}
        self._got_bytes = False
        self._reusable = False
        self._write_paused = False
        self._read_timeout = owner._timeouts.read
        self._write_timeout = owner._timeouts.write
        self._deadline = _INF
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = _INF
        self._lost: asyncio.Future[None] | None = None

    # --- one exchange (FastTransport.send starts it) ------------------------------------

    def _arm(self, deadline: float) -> None:
        # The timer is left running when an exchange finishes early; when it fires it
        # re-arms itself for the current deadline. A busy connection thus costs one timer
        # per timeout period, not one per request.
        self._deadline = deadline
        if self._timer is None or self._timer_when > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_when = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = _INF
        if self._waiter is None or self._closed:
            return
        deadline = self._deadline
        if self._now() < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_when = deadline
            return
        if self._write_paused:
            what = f"the request could not be written within {self._write_timeout} s"
        else:
            what = f"no response data within {self._read_timeout} s (read timeout)"
        self._fail(errors.ReadTimeoutError, what)

    def _fail(self, cls: type[errors.TransportError], what: str) -> None:
        """End the exchange with ``cls`` and abort the connection."""
        fut = self._waiter
        self._waiter = None
        request = self._request
        if fut is not None and not fut.done() and request is not None:
            fut.set_exception(
                cls(
                    f"{request.method} {request.path}: {what}",
                    method=request.method,
                    path=request.path,
                )
            )
        self.close(abort=True)

    def close(self, *, abort: bool = False) -> None:
        """Close the socket (abort: drop unsent data and reset) and stop the timer."""
        self._closed = True
        self._reusable = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_when = _INF
        transport = self._transport
        if transport is None or self._gone:
            return
        if abort:
            transport.abort()  # also cuts short a graceful TLS close still waiting for the peer
        elif not transport.is_closing():
            transport.close()

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if self._closed:  # abandoned while connecting (timeout or cancellation)
            transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for (a late answer, a 408 before closing): the stream is
            # no longer in step with our requests.
            self.close(abort=True)
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(errors.ConnectionLostError, "the server switched protocols")
            return
        except httptools.HttpParserError as exc:
            self._fail(errors.ConnectionLostError, f"malformed HTTP response ({exc})")
            return
        # Bytes arrived: the read timeout starts over, unless they completed the exchange
        # (the usual case for a small answer, which then needs no clock read here).
        if self._waiter is not None and self._read_timeout is not None and not self._write_paused:
            self._deadline = self._now() + self._read_timeout

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost decides what it means

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._gone = True
        self._reusable = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        fut = self._waiter
        if fut is None:
            if self._in_idle:
                self._owner._drop_idle(self)
            return
        self._waiter = None
        if fut.done():
            return
        if not self._got_bytes:
            fut.set_exception(_StaleConnection(written=True))
            return
        headers = self._headers
        if (
            exc is None
            and self._status >= 200
            and self._status not in (204, 304)
            and "content-length" not in headers
            and "transfer-encoding" not in headers
        ):
            # No length and not chunked: HTTP/1.1 says the body ends with the connection.
            fut.set_result(Response(self._status, headers, b"".join(self._body)))
            return
        request = self._request
        assert request is not None
        reason = f" ({exc})" if exc is not None else ""
        fut.set_exception(
            errors.ConnectionLostError(
                f"{request.method} {request.path}: connection lost before the response "
                f"was complete{reason}",
                method=request.method,
                path=request.path,
            )
        )

    def pause_writing(self) -> None:
        # The request is handed to the transport whole; while its buffer is over the
        # high-water mark the write timeout runs instead of the read timeout.
        self._write_paused = True
        if self._waiter is not None and self._write_timeout is not None:
            self._arm(self._now() + self._write_timeout)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._waiter is not None and self._read_timeout is not None:
            self._arm(self._now() + self._read_timeout)

    # --- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second response right behind ours: out of step
            self._reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        # transport.add_header, written out: llhttp calls this once per header.
        key = HEADER_NAMES.get(name) or header_name(name)
        text = value.decode("latin-1")
        headers = self._headers
        previous = headers.get(key)
        headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status >= 200:  # not 100 Continue or 103 Early Hints: the real answer follows those
            self._status = status

    def on_message_complete(self) -> None:
        if not self._status:  # an interim response ended
            self._headers = {}
            return
        fut = self._waiter
        if fut is None:
            return
        self._waiter = None
        self._exchanges += 1
        if not self._closed:
            self._reusable = self._parser.should_keep_alive()
        body = self._body
        content = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        if not fut.done():
            fut.set_result(_new_response(Response, (self._status, self._headers, content)))


class FastTransport:
    """HTTP/1.1 transport on asyncio (and uvloop) with a keep-alive pool and llhttp parsing.

    Needs the ``httptools`` package (``pip install binance-pmpro[fast]``). Runs only on an
    asyncio event loop, and binds to the loop of its first request; use
    :class:`~binance_pmpro.transport.httpx.HttpxTransport` on trio or behind a proxy (this
    transport does not do proxies).

    Options:

    - ``base_url``: ``https://host[:port][/prefix]`` (or ``http://`` where the caller allows
      it). TLS verifies the certificate chain and the host name.
    - ``timeouts``: seconds per phase (:class:`~binance_pmpro.transport.Timeouts`).
      ``connect`` covers TCP connect and TLS handshake; ``read`` is the longest silence
      *between* bytes of the response (as in httpx), so a server that keeps trickling
      bytes is not cut off: bound the whole call with the client's deadline; ``write``
      applies while the request cannot be handed to the socket; ``pool`` is the longest
      wait for a free connection when ``max_connections`` are busy.
    - ``max_connections``: open connections at most (busy and idle); further callers queue
      in FIFO order.
    - ``idle_timeout``: seconds an idle keep-alive connection is kept before it is closed
      (``None``: until the server closes it). Keep it below the server's own keep-alive
      limit so that closes come from our side.
    - ``ssl_context``: the TLS settings for ``https://``; by default
      ``ssl.create_default_context()`` (system CAs, hostname check) with ALPN
      ``http/1.1``.

    Errors are the :class:`~binance_pmpro.errors.TransportError` subclasses: connect
    failures and TLS verification failures are ``ConnectError`` (``ConnectTimeoutError``,
    ``PoolTimeoutError``), all unsent; read and write timeouts are ``ReadTimeoutError``;
    a connection lost mid-exchange or a malformed response is ``ConnectionLostError``.
    Status codes are never errors here: 4xx and 5xx come back as a :class:`Response`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts | None = None,
        max_connections: int = 100,
        idle_timeout: float | None = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        from urllib.parse import urlsplit

        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ConfigurationError("idle_timeout must be a positive number of seconds")
        parts = urlsplit(base_url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"base_url must be an http(s) URL with a host: {base_url!r}")
        if parts.username is not None or parts.query or parts.fragment:
            raise ConfigurationError("base_url must not carry credentials, a query or a fragment")
        if scheme == "http" and ssl_context is not None:
            raise ConfigurationError("ssl_context given for a plain http:// base_url")
        try:
            explicit_port = parts.port
        except ValueError:
            raise ConfigurationError(f"base_url has an invalid port: {base_url!r}") from None
        host = parts.hostname
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        default_port = 443 if scheme == "https" else 80
        self.base_url = base_url.rstrip("/")
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._timeouts = timeouts or Timeouts()
        self._host = host
        self._port = explicit_port or default_port
        self._prefix = parts.path.rstrip("/")
        if _UNSAFE_TARGET.search(self._prefix):
            raise ConfigurationError(f"base_url path must be percent-encoded: {base_url!r}")
        self._ssl: ssl.SSLContext | None = None
        if scheme == "https":
            if ssl_context is None:
                ssl_context = ssl.create_default_context()
                ssl_context.set_alpn_protocols(["http/1.1"])
            self._ssl = ssl_context
        host_header = f"[{host}]" if ":" in host else host
        if explicit_port is not None and explicit_port != default_port:
            host_header = f"{host_header}:{explicit_port}"
        self._after_target = f" HTTP/1.1\r\nHost: {host_header}\r\n"
        # header tuple -> the head after the target: version, Host and those headers
        self._header_cache: dict[tuple[tuple[str, str], ...], str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: deque[_Connection] = deque()
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._conns: set[_Connection] = set()
        self._n_conns = 0  # slots taken: open connections plus those being opened
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"FastTransport({self.base_url!r}, open={self._n_conns}, idle={len(self._idle)}, "
            f"max_connections={self.max_connections})"
        )

    # --- the public seam -----------------------------------------------------------------------

    async def send(self, request: PreparedRequest) -> Response:
        """One HTTP exchange on a pooled connection; the whole body is read before returning."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "FastTransport runs on asyncio only; use HttpxTransport on other event loops"
            ) from None
        if loop is not self._loop:
            self._bind(loop)
        data = self._encode(request)
        idle = self._idle
        if idle and not idle[-1]._closed and not self._closed:
            conn = idle.pop()
            conn._in_idle = False
        else:
            conn = self._take_idle() or await self._acquire(request)
        resent = False
        while True:
            reused = conn._exchanges > 0
            # Start the exchange (inline: this is every call's path).
            fut: asyncio.Future[Response] = loop.create_future()
            transport = conn._transport
            if conn._closed or transport is None or transport.is_closing():
                fut.set_exception(_StaleConnection(written=False))
            else:
                conn._waiter = fut
                conn._request = request
                conn._status = 0
                conn._headers = {}
                if conn._body:
                    conn._body.clear()
                conn._got_bytes = False
                conn._reusable = False
                transport.write(data)
                timeout = conn._write_timeout if conn._write_paused else conn._read_timeout
                if timeout is not None:
                    deadline = conn._deadline = conn._now() + timeout
                    if conn._timer is None or conn._timer_when > deadline:
                        conn._arm(deadline)
            try:
                response = await fut
            except _StaleConnection as stale:
                if stale.written and (
                    resent or not reused or request.method != "GET" or self._closed
                ):
                    self._discard(conn)
                    raise errors.ConnectionLostError(
                        f"{request.method} {request.path}: the server closed the connection "
                        "without answering",
                        method=request.method,
                        path=request.path,
                    ) from None
                resent = resent or stale.written
                conn = await self._reopen(conn, request)
                continue
            except BaseException:
                # Error, timeout or cancellation with the exchange unfinished: the bytes
                # still on their way belong to this request, so the socket cannot be reused.
                self._discard(conn)
                raise
            if conn._reusable and not self._waiters and not self._closed and conn._counted:
                # _release's usual case, inline: back to the idle pool.
                conn._in_idle = True
                conn._idle_since = conn._now()
                idle.append(conn)
                if self._sweeper is None and self.idle_timeout is not None:
                    self._sweeper = loop.call_at(conn._idle_since + self.idle_timeout, self._sweep)
            elif conn._reusable:
                self._release(conn)
            else:
                self._discard(conn, abort=False)
            return response

    async def aclose(self) -> None:
        """Close every connection, idle or busy, and fail callers waiting for one.

        Busy exchanges end with ``ConnectionLostError``. Waits up to 1 s for graceful
        closes (TLS close_notify), then aborts what is left. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(errors.ConnectError("the transport was closed"))
        conns = list(self._conns)
        self._idle.clear()
        self._conns.clear()
        self._n_conns = 0
        loop = self._loop
        pending: list[asyncio.Future[None]] = []
        for conn in conns:
            conn._in_idle = False
            conn._counted = False
            if conn._transport is not None and not conn._closed and loop is not None:
                conn._lost = loop.create_future()
                pending.append(conn._lost)
            conn.close(abort=conn._waiter is not None)
        if pending and loop is asyncio.get_running_loop():
            await asyncio.wait(pending, timeout=_ACLOSE_GRACE)
        for conn in conns:
            conn.close(abort=True)

    # --- request bytes -------------------------------------------------------------------------

    def _encode(self, request: PreparedRequest) -> bytes:
        method = request.method
        end = _METHODS.get(method)
        if end is None:
            raise ValueError(f"method {method!r} is not supported")
        query = request.query
        target = (
            f"{self._prefix}{request.path}?{query}" if query else f"{self._prefix}{request.path}"
        )
        # Visible ASCII only; build_request's targets are by construction (the base_url
        # prefix was checked in __init__).
        if not request._safe_target and _UNSAFE_TARGET.search(target) is not None:
            raise ValueError("the request target must be percent-encoded ASCII without spaces")
        head = self._header_cache.get(request.headers)
        if head is None:
            head = self._header_block(request.headers)
        body = request.body
        if body:
            # One str, encoded once: every part is ASCII or a header value already known
            # to encode as latin-1.
            line = f"{method} {target}{head}Content-Length: {len(body)}\r\n\r\n"
            return line.encode("latin-1") + body
        return f"{method} {target}{head}{end}".encode("latin-1")

    def _header_block(self, headers: tuple[tuple[str, str], ...]) -> str:
        """Validate one header tuple and cache the head it makes: a dict hit next time."""
        lines = []
        has_agent = False
        for name, value in headers:
            if not _TOKEN.fullmatch(name) or _UNSAFE_VALUE.search(value):
                raise ValueError(f"invalid request header {name!r}")
            lowered = name.lower()
            if lowered in _RESERVED_HEADERS:
                raise ValueError(f"the transport sets {name!r} itself")
            has_agent = has_agent or lowered == "user-agent"
            lines.append(f"{name}: {value}\r\n")
        if not has_agent:
            lines.append(f"User-Agent: binance-pmpro/{__version__}\r\n")
        block = "".join(lines)
        block.encode("latin-1")  # refuse now what could not be sent
        head = self._after_target + block
        if len(self._header_cache) >= _HEADER_CACHE_SIZE:
            self._header_cache.clear()
        self._header_cache[headers] = head
        return head

    # --- the pool ------------------------------------------------------------------------------

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._closed:
            raise RuntimeError("the transport is closed")
        if self._loop is not None:
            raise RuntimeError("FastTransport is bound to another event loop")
        self._loop = loop

    def _take_idle(self) -> _Connection | None:
        if self._closed:
            raise RuntimeError("the transport is closed")
        idle = self._idle
        while idle:
            conn = idle.pop()
            conn._in_idle = False
            if not conn._closed:
                return conn
            self._discard(conn)
        return None

    async def _acquire(self, request: PreparedRequest) -> _Connection:
        """A connection for ``request``: open one in a free slot, or queue for one."""
        if self._n_conns < self.max_connections:
            self._n_conns += 1
            return await self._open(request)
        loop = self._loop
        assert loop is not None
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        timeout = self._timeouts.pool
        timer = (
            loop.call_later(timeout, self._pool_timeout, waiter, request)
            if timeout is not None
            else None
        )
        try:
            got = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection or a slot just as we were cancelled: pass it on.
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self._release(handed)
            else:
                self._forget_waiter(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if got is None:  # a slot, not a connection
            return await self._open(request)
        if got._closed:
            return await self._reopen(got, request)
        return got

    def _pool_timeout(
        self, waiter: asyncio.Future[_Connection | None], request: PreparedRequest
    ) -> None:
        if not waiter.done():
            self._forget_waiter(waiter)
            waiter.set_exception(
                errors.PoolTimeoutError(
                    f"{request.method} {request.path}: no free connection within "
                    f"{self._timeouts.pool} s ({self.max_connections} busy)",
                    method=request.method,
                    path=request.path,
                )
            )

    def _forget_waiter(self, waiter: asyncio.Future[_Connection | None]) -> None:
        with contextlib.suppress(ValueError):  # already taken off by a release
            self._waiters.remove(waiter)

    async def _reopen(self, conn: _Connection, request: PreparedRequest) -> _Connection:
        """Replace a dead connection with a fresh one in the same slot."""
        conn.close(abort=True)
        if self._closed or not conn._counted:  # aclose() took the slot away
            raise errors.ConnectError(
                "the transport was closed", method=request.method, path=request.path
            )
        conn._counted = False
        self._conns.discard(conn)
        return await self._open(request)

    async def _open(self, request: PreparedRequest) -> _Connection:
        """Connect in a slot the caller holds; the slot is released if this fails."""
        loop = self._loop
        assert loop is not None
        conn = _Connection(self, loop)
        try:
            await self._connect(loop, conn, request)
        except BaseException:
            self._free_slot()
            raise
        if self._closed:
            conn.close(abort=True)
            raise errors.ConnectError(
                "the transport was closed", method=request.method, path=request.path
            )
        conn._counted = True
        self._conns.add(conn)
        return conn

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, conn: _Connection, request: PreparedRequest
    ) -> None:
        # The connect runs as its own task and we wait on a plain future: a cancellation
        # or timeout then always interrupts us promptly (asyncio.wait_for before 3.12 can
        # swallow a cancellation that races with the result), and a socket that connects
        # after we gave up is closed by the task's done-callback.
        task = loop.create_task(
            loop.create_connection(
                lambda: conn,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
        )
        done: asyncio.Future[None] = loop.create_future()

        def wake(_: object = None) -> None:
            if not done.done():
                done.set_result(None)

        task.add_done_callback(wake)
        timeout = self._timeouts.connect
        timer = loop.call_later(timeout, wake) if timeout is not None else None
        try:
            await done
        except BaseException:
            _abandon(task, conn)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        what = f"{request.method} {request.path}: cannot connect to {self._host}:{self._port}"
        if not task.done():
            _abandon(task, conn)
            raise errors.ConnectTimeoutError(
                f"{what}: no connection within {timeout} s (connect timeout)",
                method=request.method,
                path=request.path,
            )
        if task.cancelled():
            raise errors.ConnectError(
                f"{what}: cancelled", method=request.method, path=request.path
            )
        exc = task.exception()
        if exc is None:
            return
        cls = errors.ConnectError
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            cls = errors.ConnectTimeoutError  # the loop's own TLS handshake timeout
        elif not isinstance(exc, OSError):
            raise exc
        raise cls(
            f"{what}: {type(exc).__name__}: {exc}", method=request.method, path=request.path
        ) from None

    def _release(self, conn: _Connection) -> None:
        """Return a healthy connection: to the first waiting caller, else to the idle pool."""
        if self._closed or conn._closed or not conn._counted:
            self._discard(conn)
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        loop = self._loop
        assert loop is not None
        conn._in_idle = True
        conn._idle_since = conn._now()
        self._idle.append(conn)
        if self._sweeper is None and self.idle_timeout is not None:
            self._sweeper = loop.call_at(conn._idle_since + self.idle_timeout, self._sweep)

    def _discard(self, conn: _Connection, *, abort: bool = True) -> None:
        """Close ``conn`` and give its slot back (once, however often this is called)."""
        conn.close(abort=abort)
        if conn._counted:
            conn._counted = False
            self._conns.discard(conn)
            self._free_slot()

    def _free_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the waiter opens a connection in this slot
                return
        self._n_conns -= 1

    def _drop_idle(self, conn: _Connection) -> None:
        """An idle connection was closed by the server."""
        conn._in_idle = False
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._discard(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        timeout = self.idle_timeout
        loop = self._loop
        if timeout is None or loop is None or self._closed:
            return
        idle = self._idle
        now = loop.time()
        while idle and now - idle[0]._idle_since >= timeout:
            conn = idle.popleft()  # the oldest: reuse is LIFO, so they gather on the left
            conn._in_idle = False
            self._discard(conn, abort=False)
        if idle:
            self._sweeper = loop.call_at(idle[0]._idle_since + timeout, self._sweep)


def _abandon(task: asyncio.Task[Any], conn: _Connection) -> None:
    """Give up on a connect attempt; whatever it produces later is closed."""
    conn.close(abort=True)
    task.cancel()

    def reap(done: asyncio.Task[Any]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved, so asyncio does not log it as forgotten
        conn.close(abort=True)

    task.add_done_callback(reap)
