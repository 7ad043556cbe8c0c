"""The clients the benchmark compares, each behind the same three coroutines.

``open(base_url, ca)`` builds the client the way its users would and points it at the
stand-in (trusting the benchmark's CA through the client's own TLS option where it has one),
``call()`` makes one signed ``GET /sapi/v1/portfolio/account`` and returns whatever the
client returns for it (decoded), and ``uni_mmr(result)`` reads the ratio back out so the
harness can check the answer. ``close()`` releases connections.

Floors are hand-written with nothing but the HTTP library and ``json.loads``: raw aiohttp,
raw httpx and a raw asyncio ``Protocol`` with the httptools (llhttp) parser. Every library is
imported lazily, inside ``open``, so a worker process only pays for the client it runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from benchmarks._common import ACCOUNT_PATH, API_KEY, API_SECRET

ASYNCIO_LOOPS = frozenset({"asyncio", "uvloop"})
ALL_LOOPS = frozenset({"asyncio", "uvloop", "trio"})
RECV_WINDOW = 5000
_SECRET = API_SECRET.encode()


class Skip(Exception):
    """This client cannot run in this configuration (the reason is reported, not an error)."""


def _tls_context(ca: str | None) -> ssl.SSLContext | None:
    # Verification stays on (hostname and chain), as in production: only the CA differs.
    return ssl.create_default_context(cafile=ca) if ca else None


def _signed_query(secret: bytes = _SECRET) -> str:
    query = f"recvWindow={RECV_WINDOW}&timestamp={int(time.time() * 1000)}"
    signature = hmac.new(secret, query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


class Client:
    """The interface every benchmarked client implements."""

    notes: list[str]

    def __init__(self) -> None:
        self.notes = []

    async def open(self, base_url: str, ca: str | None) -> None:
        """Build the client and point it at ``base_url``."""
        raise NotImplementedError

    async def call(self) -> Any:
        """One signed account request, decoded as the client decodes it."""
        raise NotImplementedError

    async def first_call(self) -> Any:
        """The first call; raises :class:`Skip` when the client finds out only now that it
        cannot run here."""
        return await self.call()

    def uni_mmr(self, result: Any) -> str:
        """The ``uniMMR`` value read from ``result``, as text."""
        return str(result["uniMMR"])

    async def close(self) -> None:
        """Release the client's connections."""


# --- floors ------------------------------------------------------------------------------


class RawAiohttp(Client):
    """Hand-written: aiohttp ``ClientSession.get`` + HMAC + ``json.loads``."""

    async def open(self, base_url: str, ca: str | None) -> None:
        import aiohttp

        context = _tls_context(ca)
        connector = aiohttp.TCPConnector(ssl=context) if context else aiohttp.TCPConnector()
        self._session = aiohttp.ClientSession(connector=connector)
        self._url = base_url + ACCOUNT_PATH
        self._headers = {"X-MBX-APIKEY": API_KEY}

    async def call(self) -> Any:
        async with self._session.get(
            f"{self._url}?{_signed_query()}", headers=self._headers
        ) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)

    async def close(self) -> None:
        await self._session.close()


class RawHttpx(Client):
    """Hand-written: httpx ``AsyncClient.get`` + HMAC + ``json.loads``.

    The pool keeps up to 100 idle connections, as binance_pmpro's httpx transport does
    (httpx's default keeps 20, which would reconnect at 32 in flight)."""

    async def open(self, base_url: str, ca: str | None) -> None:
        import httpx

        context = _tls_context(ca)
        self._client = httpx.AsyncClient(
            verify=context if context else True,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )
        self._url = base_url + ACCOUNT_PATH
        self._headers = {"X-MBX-APIKEY": API_KEY}

    async def call(self) -> Any:
        response = await self._client.get(f"{self._url}?{_signed_query()}", headers=self._headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.content[:200]!r}")
        return json.loads(response.content)

    async def close(self) -> None:
        await self._client.aclose()


class RawProtocol(Client):
    """Hand-written: an ``asyncio.Protocol`` per connection, httptools' llhttp response
    parser, a keep-alive pool (a list of idle connections) and request bytes assembled from
    precomputed parts. The least a Python client can do for this call."""

    async def open(self, base_url: str, ca: str | None) -> None:
        import asyncio

        import httptools

        parts = urlsplit(base_url)
        self._asyncio = asyncio
        self._httptools = httptools
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = _tls_context(ca) if parts.scheme == "https" else None
        self._head = f"GET {ACCOUNT_PATH}?".encode()
        self._tail = (
            f" HTTP/1.1\r\nHost: {parts.netloc}\r\nX-MBX-APIKEY: {API_KEY}\r\n\r\n"
        ).encode()
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self._sign = _signed_query

    async def _connect(self) -> Any:
        loop = self._asyncio.get_running_loop()
        httptools = self._httptools

        class Conn(self._asyncio.Protocol):  # type: ignore[name-defined,misc]
            def __init__(self) -> None:
                self.parser = httptools.HttpResponseParser(self)
                self.transport: Any = None
                self.waiter: Any = None
                self.body: list[bytes] = []
                self.keep_alive = True
                self.open = True

            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserError as exc:
                    self._fail(exc)

            def on_body(self, body: bytes) -> None:
                self.body.append(body)

            def on_headers_complete(self) -> None:
                self.keep_alive = self.parser.should_keep_alive()

            def on_message_complete(self) -> None:
                waiter, self.waiter = self.waiter, None
                body, self.body = b"".join(self.body), []
                if waiter is not None and not waiter.done():
                    waiter.set_result((self.parser.get_status_code(), body))

            def connection_lost(self, exc: Exception | None) -> None:
                self.open = False
                self._fail(exc or ConnectionError("connection closed"))

            def _fail(self, exc: BaseException) -> None:
                waiter, self.waiter = self.waiter, None
                if waiter is not None and not waiter.done():
                    waiter.set_exception(exc)

        server_hostname = self._host if self._ssl else None
        _, conn = await loop.create_connection(
            Conn, self._host, self._port, ssl=self._ssl, server_hostname=server_hostname
        )
        self._all.append(conn)
        return conn

    async def call(self) -> Any:
        conn = self._idle.pop() if self._idle else await self._connect()
        waiter = conn.waiter = self._asyncio.get_running_loop().create_future()
        conn.transport.write(b"".join((self._head, self._sign().encode(), self._tail)))
        status, body = await waiter
        if conn.keep_alive and conn.open:
            self._idle.append(conn)
        else:
            conn.transport.close()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    async def close(self) -> None:
        for conn in self._all:
            conn.transport.close()
        self._idle.clear()


class MisSigned(RawProtocol):
    """The protocol floor signing with the wrong secret: the harness runs it first to prove
    that the stand-in refuses a bad signature and that the refusal fails the row."""

    async def open(self, base_url: str, ca: str | None) -> None:
        await super().open(base_url, ca)
        self._sign = lambda: _signed_query(b"not-the-secret")


# --- binance_pmpro -----------------------------------------------------------------------


class Pmpro(Client):
    """``binance_pmpro.PortfolioMarginProClient.account_info()`` on one transport, with the
    per-client limiter on (generous ``uid_limit``) or off (``rate_limiter=None``)."""

    def __init__(self, transport: str, limiter: bool) -> None:
        super().__init__()
        self._transport_name = transport
        self._limiter = limiter

    async def open(self, base_url: str, ca: str | None) -> None:
        import inspect

        from binance_pmpro import ConfigurationError, PortfolioMarginProClient

        kwargs: dict[str, Any] = {"base_url": base_url, "transport": self._transport_name}
        if self._limiter:
            kwargs["uid_limit"] = 10**9
        else:
            kwargs["rate_limiter"] = None
        if ca:
            params = inspect.signature(PortfolioMarginProClient).parameters
            option = next((p for p in ("ssl_context", "verify", "ssl") if p in params), None)
            if option is not None:
                kwargs[option] = _tls_context(ca)
            else:
                # No TLS option on the client (yet): both of its transports build their
                # context from the standard default paths, which honour SSL_CERT_FILE.
                os.environ["SSL_CERT_FILE"] = ca
                self.notes.append("binance_pmpro trusts the CA through SSL_CERT_FILE")
        try:
            self._client = PortfolioMarginProClient(API_KEY, API_SECRET, **kwargs)
        except ConfigurationError as exc:
            raise Skip(f"transport={self._transport_name!r} not accepted: {exc}") from None

    async def call(self) -> Any:
        return await self._client.account_info()

    async def first_call(self) -> Any:
        from binance_pmpro import ConfigurationError

        try:
            return await self._client.account_info()
        except ConfigurationError as exc:
            # The transport is chosen lazily, on first use (construction works anywhere).
            raise Skip(str(exc)) from None

    def uni_mmr(self, result: Any) -> str:
        return str(result.uni_mmr)

    async def close(self) -> None:
        await self._client.aclose()


# --- the competition ---------------------------------------------------------------------


class PythonBinance(Client):
    """python-binance's ``AsyncClient`` (aiohttp). It has no public method for the v1
    account endpoint (only v2), so the call goes through its own signed request helper,
    ``_request_margin_api("get", "portfolio/account", signed=True)``, which its public
    methods use too.
    """

    async def open(self, base_url: str, ca: str | None) -> None:
        import aiohttp
        from binance import AsyncClient

        context = _tls_context(ca)
        session_params = {"connector": aiohttp.TCPConnector(ssl=context)} if context else {}
        self._client = AsyncClient(API_KEY, API_SECRET, session_params=session_params)
        # The URL templates are class attributes; an instance attribute points this client
        # at the stand-in (there is no base URL option).
        self._client.API_URL = base_url + "/api"
        self._client.MARGIN_API_URL = base_url + "/sapi"

    async def call(self) -> Any:
        return await self._client._request_margin_api(
            "get", "portfolio/account", signed=True, data={}
        )

    async def close(self) -> None:
        await self._client.close_connection()


class Ccxt(Client):
    """ccxt's async ``binance`` exchange (aiohttp): the implicit method
    ``sapiGetPortfolioAccount``, with ``urls`` overridden to the stand-in. ccxt's own
    throttle is switched off (``enableRateLimit=False``): at its default pace (50 ms per
    unit of cost) it would measure the throttle, not the client."""

    async def open(self, base_url: str, ca: str | None) -> None:
        import ccxt.async_support as ccxt_async

        config: dict[str, Any] = {
            "apiKey": API_KEY,
            "secret": API_SECRET,
            "enableRateLimit": False,
            "urls": {"api": {"sapi": base_url + "/sapi/v1"}},
        }
        if ca:
            config["cafile"] = ca
        self._exchange = ccxt_async.binance(config)

    async def call(self) -> Any:
        return await self._exchange.sapiGetPortfolioAccount()

    async def close(self) -> None:
        await self._exchange.close()


class OfficialSdk(Client):
    """Binance's official ``binance-sdk-derivatives-trading-portfolio-margin-pro``: a
    synchronous ``requests`` client, awaited through a worker thread (one per call in flight,
    as an async application would have to), result read with ``.data()``.

    TLS: its ``https_agent=`` option mounts a fresh connection pool on every call (a TLS
    handshake per call), which production users with the system trust store never hit, so the
    CA is given through ``REQUESTS_CA_BUNDLE`` instead, keeping its keep-alive pool."""

    def __init__(self, concurrency: int) -> None:
        super().__init__()
        self._concurrency = concurrency

    async def open(self, base_url: str, ca: str | None) -> None:
        import anyio
        from binance_common.configuration import ConfigurationRestAPI
        from binance_sdk_derivatives_trading_portfolio_margin_pro import (
            DerivativesTradingPortfolioMarginPro,
        )

        if ca:
            os.environ["REQUESTS_CA_BUNDLE"] = ca
        # requests' pool keeps 10 connections per host; past that urllib3 warns on every
        # surplus connection it drops. The reconnects are real and counted; the log is noise.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        config = ConfigurationRestAPI(
            api_key=API_KEY, api_secret=API_SECRET, base_path=base_url, timeout=10_000
        )
        self._api = DerivativesTradingPortfolioMarginPro(config_rest_api=config).rest_api
        self._limiter = anyio.CapacityLimiter(max(1, self._concurrency))
        self._to_thread = anyio.to_thread.run_sync

    def _fetch(self) -> Any:
        return self._api.get_portfolio_margin_pro_account_info().data()

    async def call(self) -> Any:
        return await self._to_thread(self._fetch, limiter=self._limiter)

    def uni_mmr(self, result: Any) -> str:
        return str(result.uni_mmr)

    async def close(self) -> None:
        self._api._session.close()


@dataclass(frozen=True)
class Spec:
    """A benchmarked client: its label in the tables and the loops it runs on."""

    label: str
    make: Callable[[int], Client]
    loops: frozenset[str] = ASYNCIO_LOOPS
    floor: bool = False


CLIENTS: dict[str, Spec] = {
    "raw-protocol": Spec(
        "raw asyncio Protocol + httptools (floor)", lambda c: RawProtocol(), floor=True
    ),
    "raw-aiohttp": Spec("raw aiohttp (floor)", lambda c: RawAiohttp(), floor=True),
    "raw-httpx": Spec("raw httpx (floor)", lambda c: RawHttpx(), ALL_LOOPS, floor=True),
    "pmpro-fast": Spec("binance_pmpro fast, limiter on", lambda c: Pmpro("fast", True)),
    "pmpro-fast-nolimit": Spec("binance_pmpro fast, limiter off", lambda c: Pmpro("fast", False)),
    "pmpro-httpx": Spec(
        "binance_pmpro httpx, limiter on", lambda c: Pmpro("httpx", True), ALL_LOOPS
    ),
    "pmpro-httpx-nolimit": Spec(
        "binance_pmpro httpx, limiter off", lambda c: Pmpro("httpx", False), ALL_LOOPS
    ),
    "python-binance": Spec("python-binance AsyncClient", lambda c: PythonBinance()),
    "ccxt": Spec("ccxt async binance", lambda c: Ccxt()),
    "official-sdk": Spec("official SDK (requests, via thread)", lambda c: OfficialSdk(c)),
}
"""Every client by its short name, in table order."""

SELF_CHECKS: dict[str, Spec] = {
    "mis-signed": Spec("raw Protocol signing with a wrong secret", lambda c: MisSigned()),
}
"""Clients that must fail: run before the measurements to prove the checks work."""
