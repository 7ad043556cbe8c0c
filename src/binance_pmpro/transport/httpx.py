"""The httpx transport: runs on asyncio and trio, honours a user's ``httpx.AsyncClient``
(proxies, custom TLS, respx mocks, an in-process FakeExchange)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import re
import select
import ssl
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import anyio
import httpcore
import httpx
import sniffio

from .. import errors
from ..requests import PreparedRequest
from . import Response, Timeouts, add_header

__all__ = ["HttpxTransport"]


class _RedactSignatures(logging.Filter):
    """httpx logs every request URL at INFO: keep request signatures out of those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "signature=" in message:
            record.msg = errors.redact(message)
            record.args = None
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _RedactSignatures) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactSignatures())

# Order matters: the timeout classes are subclasses of the broader ones below them.
_ERRORS: tuple[tuple[type[Exception], type[errors.TransportError]], ...] = (
    (httpx.ConnectTimeout, errors.ConnectTimeoutError),
    (httpx.PoolTimeout, errors.PoolTimeoutError),
    (httpx.ConnectError, errors.ConnectError),
    (httpx.ReadTimeout, errors.ReadTimeoutError),
    (httpx.WriteTimeout, errors.ReadTimeoutError),
    (httpx.RemoteProtocolError, errors.ConnectionLostError),
    (httpx.ReadError, errors.ConnectionLostError),
    (httpx.WriteError, errors.ConnectionLostError),
    (httpx.CloseError, errors.ConnectionLostError),
)


# A request target httpx passes through unchanged: percent-encoded unreserved characters
# and the query's separators (requests.py encodes every parameter that way).
_PLAIN_TARGET = re.compile(r"/(?:[A-Za-z0-9\-_~/?=&]|\.(?!\.?(?:/|\?|$))|%[0-9A-Fa-f]{2})*")
# httpx's own translation of httpcore's errors (the direct path is off without it).
_map_httpcore_exceptions: Callable[[], AbstractContextManager[None]] | None = getattr(
    importlib.import_module("httpx._transports.default"), "map_httpcore_exceptions", None
)
_LENGTH_METHODS = frozenset({"POST", "PUT", "PATCH"})
_COMPUTED_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
_HEADER_CACHE_SIZE = 64
# (the list without a body, the list of a POST/PUT/PATCH without a body)
_HeaderLists = tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]


class _Direct:
    """The parts of the base URL and the timeout extension, worked out once."""

    def __init__(self, base_url: str, timeout: httpx.Timeout) -> None:
        self.url = httpx.URL(base_url)
        self.scheme = self.url.raw_scheme
        self.host = self.url.raw_host
        self.port = self.url.port
        self.netloc = self.url.netloc
        prefix = self.url.raw_path
        # A base URL with a query or an odd path keeps httpx's whole path.
        plain = self.url.query == b"" and _PLAIN_TARGET.fullmatch(prefix.decode("ascii"))
        self.prefix: bytes | None = prefix.rstrip(b"/") if plain else None
        self.extensions = {"timeout": timeout.as_dict()}


class HttpxTransport:
    """Sends prepared requests with an ``httpx.AsyncClient``.

    ``http2=True`` negotiates HTTP/2 over TLS (needs the ``http2`` extra). Measured on
    loopback TLS against an HTTP/2 server, client CPU per call: 1.24x HTTP/1.1's when calls
    are sequential, 0.59x at 32 in flight (one multiplexed connection instead of a pool);
    the fast transport's HTTP/1.1 stays several times cheaper than either.

    Without ``client`` it makes its own (keep-alive pool of ``max_connections``, TLS from
    ``ssl_context`` or httpx's default verification) and closes it in :meth:`aclose`; a
    client passed in belongs to the caller and is never closed here.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        http2: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if http2 and client is None and importlib.util.find_spec("h2") is None:
            raise errors.ConfigurationError(
                "http2=True needs the h2 package: pip install 'binance-pmpro[http2]'"
            )
        t = timeouts or Timeouts()
        self._timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)
        self._owns_client = client is None
        self._on_asyncio: bool | None = None  # learnt at the first send
        self._client = client or httpx.AsyncClient(
            timeout=self._timeout,
            verify=ssl_context if ssl_context is not None else True,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,
            ),
            # Proxies from the environment work through httpx; the client never follows
            # redirects (Binance sends none; a redirect would be a misconfiguration).
            follow_redirects=False,
            http2=http2,
        )
        if self._owns_client:
            _wrap_network_backend(self._client)
        # The direct path (see _send_direct), set up at its first use.
        self._direct: _Direct | None = None
        self._header_cache: dict[tuple[tuple[str, str], ...], _HeaderLists | None] = {}

    async def send(self, request: PreparedRequest) -> Response:
        """One HTTP exchange; httpx errors become our TransportError subclasses."""
        if self._on_asyncio is None:
            self._on_asyncio = sniffio.current_async_library() == "asyncio"
        if not self._on_asyncio:
            return await self._send(request)
        # httpcore cleans up after an exchange inside anyio shielded scopes, and anyio
        # cannot shield against asyncio's own Task.cancel() (also used by wait_for and
        # asyncio.timeout): a cancel landing there left the connection "active" in the
        # pool for good, one slot lost per cancel. So the exchange runs in a child task
        # that only we cancel, through an anyio scope (which httpcore's shields hold off
        # until the connection is released). A bare task and a future cost about half of
        # what an anyio task group does per call.
        loop = asyncio.get_running_loop()
        scope = anyio.CancelScope()
        child = loop.create_task(self._send_scoped(request, scope))
        woken = loop.create_future()
        child.add_done_callback(partial(_wake, woken))
        try:
            await woken
        except asyncio.CancelledError:
            # Native or anyio cancellation of the caller: cancel the exchange the way
            # httpcore can shield against, and wait for it to release its connection.
            scope.cancel()
            with anyio.CancelScope(shield=True):  # no busy re-delivery while we wait
                while not child.done():
                    woken = loop.create_future()
                    child.add_done_callback(partial(_wake, woken))
                    # Cancelled again: still waiting for the same cleanup.
                    with contextlib.suppress(asyncio.CancelledError):
                        await woken
            if not child.cancelled():
                child.exception()  # retrieved: the caller's cancellation wins
            raise
        response = child.result()
        assert response is not None  # only the except branch above cancels the scope
        return response

    async def _send_scoped(
        self, request: PreparedRequest, scope: anyio.CancelScope
    ) -> Response | None:
        with scope:
            return await self._send(request)
        return None  # the caller was cancelled

    async def _send(self, request: PreparedRequest) -> Response:
        if self._owns_client and not _httpx_logger.isEnabledFor(logging.INFO):
            response = await self._send_direct(request)
            if response is not None:
                return response
        url = self.base_url + request.target
        try:
            answer = await self._client.request(
                request.method,
                url,
                headers=request.headers,
                content=request.body or None,
                timeout=self._timeout,
            )
        except httpx.TransportError as exc:
            raise _map_error(exc, request) from None
        return Response(answer.status_code, answer.headers, answer.content)

    async def _send_direct(self, request: PreparedRequest) -> Response | None:
        """The exchange straight on the connection pool of our own client, or None when
        this request or client needs httpx's whole path.

        ``AsyncClient.request`` spends about as much CPU as the pool itself on work this
        transport never needs from its own client: parsing the URL we just built, merging
        default headers, cookies, auth and redirect flows, event hooks, and a response
        object model. Here the URL parts are parsed once, the header list of each distinct
        header tuple is merged once (in httpx's order, with httpx's defaults: the bytes on
        the wire are the same), and the pool's answer becomes our Response directly.
        httpx's request log line needs its whole path, so INFO logging on the ``httpx``
        logger turns this off; so does anything mounted in front of the pool other than
        httpx's own transport (respx's httpx-level mock, custom mounts). A respx mock at
        the httpcore level (its default) patches the pool and still sees every request.
        """
        client = self._client
        if client.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        direct = self._direct
        if direct is None:
            direct = self._direct = _Direct(self.base_url, self._timeout)
        pick = getattr(client, "_transport_for_url", None)  # httpx's mount (proxy) choice
        if pick is None or direct.prefix is None:
            return None
        transport = pick(direct.url)
        if type(transport) is not httpx.AsyncHTTPTransport:
            return None
        pool = getattr(transport, "_pool", None)
        if not isinstance(pool, httpcore.AsyncConnectionPool) or _map_httpcore_exceptions is None:
            return None
        target = request.target
        if _PLAIN_TARGET.fullmatch(target) is None:
            return None  # httpx would normalise it: let it
        lists = self._header_cache.get(request.headers)
        if lists is None:
            if request.headers in self._header_cache:
                return None
            lists = self._header_lists(request.headers)
            if lists is None:
                return None
        method = request.method.upper()  # as httpx.Request does
        body = request.body
        if body:
            headers = [*lists[0], (b"Content-Length", b"%d" % len(body))]
        elif method in _LENGTH_METHODS:
            headers = lists[1]
        else:
            headers = lists[0]
        core_request = httpcore.Request(
            method,
            httpcore.URL(
                scheme=direct.scheme,
                host=direct.host,
                port=direct.port,
                target=direct.prefix + target.encode("ascii"),
            ),
            headers=headers,
            content=body or None,
            extensions=direct.extensions,
        )
        try:
            try:
                pooled = await pool.handle_async_request(core_request)
                try:
                    content = await pooled.aread()
                finally:
                    await pooled.aclose()
            except Exception:
                with _map_httpcore_exceptions():  # as AsyncHTTPTransport would
                    raise
        except httpx.TransportError as exc:
            raise _map_error(exc, request) from None
        received: dict[str, str] = {}
        for raw_name, raw_value in pooled.headers:
            add_header(received, raw_name, raw_value)
        if "content-encoding" in received:  # gzip etc., decoded as httpx would
            content = httpx.Response(pooled.status, headers=pooled.headers, content=content).content
        return Response(pooled.status, received, content)

    def _header_lists(self, headers: tuple[tuple[str, str], ...]) -> _HeaderLists | None:
        """The request's header list as httpx builds it: ``Host``, the client's default
        headers updated by ``headers``, ``Content-Length: 0`` first for an empty POST.
        None (remembered) when ``headers`` sets what httpx would otherwise compute."""
        lists: _HeaderLists | None = None
        if not any(name.lower() in _COMPUTED_HEADERS for name, _ in headers):
            merged = httpx.Headers(self._client.headers)
            merged.update(headers)
            assert self._direct is not None
            host = (b"Host", self._direct.netloc)
            lists = ([host, *merged.raw], [host, (b"Content-Length", b"0"), *merged.raw])
        if len(self._header_cache) >= _HEADER_CACHE_SIZE:
            self._header_cache.clear()
        self._header_cache[headers] = lists
        return lists

    async def aclose(self) -> None:
        """Close the connection pool, unless the ``httpx.AsyncClient`` was the caller's."""
        if self._owns_client:
            await self._client.aclose()


def _wake(waiter: asyncio.Future[None], _: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _map_error(exc: httpx.TransportError, request: PreparedRequest) -> errors.TransportError:
    for source, target in _ERRORS:
        if isinstance(exc, source):
            cls = target
            break
    else:
        cls = errors.TransportError
    # httpx messages can quote the URL: never let the signature through.
    detail = str(exc) or type(exc).__name__
    return cls(
        f"{request.method} {request.path}: {type(exc).__name__}: {detail}",
        method=request.method,
        path=request.path,
    )


def _wrap_network_backend(client: httpx.AsyncClient) -> None:
    """Put our own client's connections behind the two fixes of :class:`_Stream`.

    Skipped if httpx's internals ever look different (httpx offers no public way to give
    its pool a network backend).
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = _Backend(backend)  # type: ignore[union-attr]


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _Stream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """One connection's stream, the same as httpcore's but for two things.

    - A TLS handshake cancelled by the caller closes its TCP socket. httpcore closes it when
      the handshake fails with an ``Exception`` but not when it is cancelled (a
      ``BaseException``), so a deadline during the handshake leaked one socket (on asyncio
      it stays registered with the loop for good).
    - ``is_readable`` polls the socket found once. httpcore asks it of every idle pooled
      connection each time a request arrives or an answer ends (a connection the server
      closed is readable), and anyio answers by building the stream's whole attribute
      table: with 16 connections at 32 calls in flight that was about a tenth of a call's
      CPU. Same poll, same answer.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream, sock: Any = None) -> None:
        self._inner = inner
        self._socket = sock

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        try:
            stream = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            # Closing a TCP socket does not wait for the peer, so shielding is bounded.
            with anyio.CancelScope(shield=True):
                await self._inner.aclose()
            raise
        return _Stream(stream, self._socket)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            sock = self._socket
            if sock is None:
                sock = self._socket = self._inner.get_extra_info("socket")
                if sock is None:
                    return self._inner.get_extra_info(info)
            return _is_readable(sock.fileno())
        return self._inner.get_extra_info(info)


def _is_readable(fd: int) -> bool:
    """Whether a read on ``fd`` would return at once (data, or the end of a closed one)."""
    if fd < 0:  # closed: the next read reports the end
        return True
    if _poll is None:  # pragma: no cover - Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = _poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


_poll = getattr(select, "poll", None)
