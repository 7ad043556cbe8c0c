"""PortfolioMarginProClient: composes limiter, signer, transport and decoder.

The path of one call: wait for weight (FIFO, cancellable) -> stamp and sign (after the
wait, so the timestamp is fresh) -> send -> tell the limiter what the server said ->
decode or raise the typed error.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import httpx

from .clock import ClockSample, ServerClock
from .decoding import ResponseDecoder, raise_for_error
from .endpoints import ACCOUNT_INFO, SERVER_TIME, Budget, Endpoint
from .errors import ConfigurationError, RateLimitedError
from .models import AccountInfo, ServerTime
from .ratelimit import BudgetKey, BudgetSnapshot, Permit, RateLimiter
from .requests import build_request, check_recv_window, redact_query
from .signing import Ed25519Signer, HmacSigner, PrivateKeySource, RsaSigner, load_signer
from .transport import Response, Timeouts, Transport

__all__ = ["DEFAULT_BASE_URL", "PortfolioMarginProClient"]

logger = logging.getLogger("binance_pmpro")

DEFAULT_BASE_URL = "https://api.binance.com"
DEFAULT_RECV_WINDOW = 5000
DEFAULT_MAX_WAIT = 10.0

T = TypeVar("T")

_PER_CLIENT: Any = object()  # sentinel: "make a limiter of my own"


class PortfolioMarginProClient:
    """Async client for Binance's Portfolio Margin Pro API.

    One client is safe to share between any number of concurrent tasks, on asyncio or trio.
    Construct it anywhere (module level, sync code); it binds to the running event loop on
    first use. Close it with ``async with`` or :meth:`aclose`.

    Credentials: ``api_key`` plus either ``api_secret`` (HMAC-SHA256) or ``private_key``
    (PEM text, PEM/DER bytes or a path; RSA or Ed25519, detected) with an optional
    ``private_key_password``. Each falls back to an environment variable when not given:
    ``BINANCE_API_KEY``, ``BINANCE_API_SECRET``, ``BINANCE_PRIVATE_KEY_PATH``,
    ``BINANCE_PRIVATE_KEY_PASSWORD``. Without a secret or private key only the endpoints
    Binance authorises by API key alone (MARKET_DATA) can be called.

    Options:

    - ``base_url``: Binance's REST root. ``http://`` is refused except for loopback hosts.
    - ``recv_window``: ms a signed request stays valid, 1..60,000 (default 5,000).
    - ``timeout``: seconds for every phase, or a :class:`~binance_pmpro.transport.Timeouts`.
    - ``http_client``: your own ``httpx.AsyncClient`` (proxies, custom TLS, mocks); the
      client uses it and never closes it.
    - ``rate_limiter``: a :class:`~binance_pmpro.ratelimit.RateLimiter` to share between
      clients, ``None`` to switch local rate limiting off; by default each client has its
      own, with ``uid_limit``/``ip_limit`` weight per minute.
    - ``account_id``: the account's identity for budgets (default: a digest of the API key,
      never the key itself).
    - ``max_wait``: the longest a call waits for rate-limit weight, a 429 pause included,
      before raising (seconds; default 10).
    - ``time_offset_ms``: a fixed offset (ms) to add to the local clock when stamping
      requests, for hosts with their own time discipline.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        private_key: PrivateKeySource | None = None,
        private_key_password: str | bytes | None = None,
        base_url: str = DEFAULT_BASE_URL,
        recv_window: int = DEFAULT_RECV_WINDOW,
        timeout: float | Timeouts | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: Literal["auto", "httpx"] | Transport = "auto",
        rate_limiter: RateLimiter | None = _PER_CLIENT,
        uid_limit: int = 180_000,
        ip_limit: int = 12_000,
        account_id: str | None = None,
        ip_group: str = "default",
        max_wait: float = DEFAULT_MAX_WAIT,
        time_offset_ms: float = 0.0,
    ) -> None:
        self._api_key, self._signer = _credentials(
            api_key, api_secret, private_key, private_key_password
        )
        self.base_url = _check_base_url(base_url)
        self.recv_window = check_recv_window(recv_window)
        self.timeouts = Timeouts.coerce(timeout) if timeout is not None else Timeouts()
        if max_wait < 0:
            raise ConfigurationError("max_wait must be >= 0 seconds")
        self.max_wait = max_wait
        if rate_limiter is _PER_CLIENT:
            rate_limiter = RateLimiter(uid_limit=uid_limit, ip_limit=ip_limit)
        self._limiter: RateLimiter | None = rate_limiter
        self._account = account_id or (
            "key:" + hashlib.sha256(self._api_key.encode()).hexdigest()[:16]
            if self._api_key
            else "anonymous"
        )
        self._ip_group = ip_group
        self.clock = ServerClock(time_offset_ms)
        self._http_client = http_client
        if isinstance(transport, str):
            if transport not in ("auto", "httpx"):
                raise ConfigurationError(f"unknown transport {transport!r}")
            self._transport: Transport | None = None
        else:
            self._transport = transport
        self._closed = False

    # --- public API ----------------------------------------------------------------------

    async def account_info(
        self, *, recv_window: int | None = None, max_wait: float | None = None
    ) -> AccountInfo:
        """``GET /sapi/v1/portfolio/account`` (weight 5 on the account's UID budget).

        Returns the account's risk summary with exact ``Decimal`` amounts. ``recv_window``
        (ms) and ``max_wait`` (s) override the client's defaults for this call.
        """
        info: AccountInfo = await self._call(
            ACCOUNT_INFO, {}, recv_window=recv_window, max_wait=max_wait
        )
        return info

    async def account_info_raw(self, *, recv_window: int | None = None) -> bytes:
        """The undecoded response body of :meth:`account_info` (errors still raise)."""
        response = await self._send(ACCOUNT_INFO, {}, recv_window=recv_window, max_wait=None)
        return response.body

    async def server_time(self) -> int:
        """Binance's clock (``GET /api/v3/time``), milliseconds since the epoch."""
        result: ServerTime = await self._call(SERVER_TIME, {})
        return result.server_time

    async def sync_time(self) -> float:
        """Measure the offset to Binance's clock and stamp requests with it from now on.

        Returns the offset in ms (positive: Binance's clock is ahead of ours).
        """
        sent = ServerClock.local_ms()
        server = await self.server_time()
        self.clock.update(ClockSample(sent, ServerClock.local_ms(), server))
        return self.clock.offset_ms

    @property
    def rate_limit(self) -> list[BudgetSnapshot]:
        """The state of this client's rate-limit budgets (empty when limiting is off)."""
        return self._limiter.snapshot() if self._limiter is not None else []

    @property
    def signing_algorithm(self) -> str | None:
        """``"HMAC_SHA256"``, ``"RSA"``, ``"ED25519"``, or None without a secret."""
        return self._signer.algorithm if self._signer is not None else None

    async def aclose(self) -> None:
        """Close the connection pool (a caller's ``http_client`` is left open). Idempotent."""
        self._closed = True
        if self._transport is not None:
            await self._transport.aclose()

    async def __aenter__(self) -> PortfolioMarginProClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        signer = self.signing_algorithm or "none"
        return (
            f"PortfolioMarginProClient(base_url={self.base_url!r}, account={self._account!r}, "
            f"signing={signer})"
        )

    # --- the path of one call --------------------------------------------------------------

    def _get_transport(self) -> Transport:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._transport is None:
            from .transport.httpx import HttpxTransport

            self._transport = HttpxTransport(
                self.base_url, client=self._http_client, timeouts=self.timeouts
            )
        return self._transport

    def _budget_key(self, endpoint: Endpoint) -> BudgetKey:
        if endpoint.budget is Budget.SAPI_UID:
            return BudgetKey(Budget.SAPI_UID, self._account, endpoint.path)
        if endpoint.budget is Budget.SAPI_IP:
            return BudgetKey(Budget.SAPI_IP, self._ip_group, endpoint.path)
        return BudgetKey(Budget.API_IP, self._ip_group, "")

    async def _call(
        self,
        endpoint: Endpoint,
        params: Mapping[str, Any],
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
    ) -> Any:
        response = await self._send(endpoint, params, recv_window=recv_window, max_wait=max_wait)
        return _decoder(endpoint).decode(response.body, response.status)

    async def _send(
        self,
        endpoint: Endpoint,
        params: Mapping[str, Any],
        *,
        recv_window: int | None,
        max_wait: float | None,
    ) -> Response:
        """Acquire weight, sign, send, observe; raise for an error answer.

        A 429 is not executed by Binance: the call waits out ``Retry-After`` (every caller
        of the budget pauses with it) and sends again if that fits ``max_wait``.
        """
        window = self.recv_window if recv_window is None else check_recv_window(recv_window)
        budget_wait = self.max_wait if max_wait is None else max_wait
        deadline = anyio.current_time() + budget_wait
        transport = self._get_transport()
        weight = endpoint.weight_for(params)
        while True:
            permit = await self._acquire(endpoint, weight, deadline - anyio.current_time())
            async with permit:
                request = build_request(
                    endpoint,
                    params,
                    api_key=self._api_key,
                    signer=self._signer,
                    timestamp_ms=self.clock.now_ms(),  # taken after the wait: never stale
                    recv_window=window,
                )
                started = time.perf_counter()
                permit.mark_sent()
                response = await transport.send(request)
                permit.observe(response.status, response.headers)
            if logger.isEnabledFor(logging.DEBUG):
                _log_exchange(request.method, request.target, response, endpoint, started)
            try:
                raise_for_error(response.status, response.headers, response.body)
            except RateLimitedError as exc:
                pause = exc.retry_after if exc.retry_after is not None else 60.0
                if (
                    exc.status == 418
                    or self._limiter is None
                    or anyio.current_time() + pause > deadline
                ):
                    raise
                continue
            return response

    async def _acquire(self, endpoint: Endpoint, weight: int, max_wait: float) -> Permit:
        if self._limiter is None:
            return _UNLIMITED
        return await self._limiter.acquire(
            self._budget_key(endpoint), weight, max_wait=max(0.0, max_wait)
        )


class _NoPermit(Permit):
    """The permit used when rate limiting is off: accounts for nothing."""

    def __init__(self) -> None:
        super().__init__(cast(RateLimiter, None), None, None, 0)

    def mark_sent(self) -> None:
        pass


_UNLIMITED = _NoPermit()

_decoders: dict[type[Any], ResponseDecoder[Any]] = {}


def _decoder(endpoint: Endpoint) -> ResponseDecoder[Any]:
    decoder = _decoders.get(endpoint.response)
    if decoder is None:
        decoder = _decoders[endpoint.response] = ResponseDecoder(endpoint.response)
    return decoder


def _log_exchange(
    method: str, target: str, response: Response, endpoint: Endpoint, started: float
) -> None:
    logger.debug(
        "%s %s -> %s in %.1f ms (used weight %s: %s)",
        method,
        redact_query(target),
        response.status,
        (time.perf_counter() - started) * 1000,
        endpoint.budget.value,
        response.headers.get(endpoint.header_name),
    )


def _credentials(
    api_key: str | None,
    api_secret: str | None,
    private_key: PrivateKeySource | None,
    password: str | bytes | None,
) -> tuple[str | None, HmacSigner | RsaSigner | Ed25519Signer | None]:
    env = os.environ
    api_key = api_key if api_key is not None else env.get("BINANCE_API_KEY") or None
    if api_secret is not None and private_key is not None:
        raise ConfigurationError(
            "give either api_secret (HMAC) or private_key (RSA/Ed25519), not both"
        )
    if api_secret is None and private_key is None:
        # Environment fallback only when the caller passed neither kind of secret.
        env_secret = env.get("BINANCE_API_SECRET") or None
        env_key_path = env.get("BINANCE_PRIVATE_KEY_PATH") or None
        if env_secret and env_key_path:
            raise ConfigurationError(
                "both BINANCE_API_SECRET and BINANCE_PRIVATE_KEY_PATH are set: keep only one"
            )
        api_secret, private_key = env_secret, env_key_path
    if password is None:
        password = env.get("BINANCE_PRIVATE_KEY_PASSWORD") or None
    if not api_key:
        raise ConfigurationError(
            "no API key: pass api_key= or set BINANCE_API_KEY"
            + (" (a secret or private key was given)" if api_secret or private_key else "")
        )
    if api_key.strip() != api_key or any(ch in api_key for ch in "\r\n"):
        raise ConfigurationError("the API key contains whitespace; check how it was copied")
    if api_secret is None and private_key is None:
        return api_key, None
    return api_key, load_signer(api_secret=api_secret, private_key=private_key, password=password)


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL, not {base_url!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url must not carry a query or fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// to {parts.hostname}: API keys and signed requests must "
            "not travel in clear text (http:// is allowed for loopback hosts only)"
        )
    return base_url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
