"""PortfolioMarginProClient: composes limiter, signer, transport and decoder.

The path of one call: wait for weight (FIFO, cancellable) -> stamp and sign (after the
wait, so the timestamp is fresh) -> send -> tell the limiter what the server said ->
decode or raise the typed error.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import os
import ssl
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import anyio

from .clock import ClockSample, ServerClock
from .decoding import ResponseDecoder, decoder_for, raise_for_error
from .endpoints import ACCOUNT_INFO, SERVER_TIME, Budget, Endpoint
from .errors import (
    BinanceError,
    ClientClosedError,
    ConfigurationError,
    DeadlineExceededError,
    RateLimitedError,
    TimestampError,
    TransportError,
)
from .events import Hook, RequestEvent
from .models import AccountInfo, ServerTime
from .monitor import WatchMixin
from .portfolio import PortfolioEndpointsMixin
from .ratelimit import (
    BudgetKey,
    BudgetSnapshot,
    Limiter,
    LimiterPermit,
    Priority,
    RateLimiter,
    loop_time,
    shared_limiter,
)
from .requests import PreparedRequest, build_request, check_recv_window, redact_query
from .retry import RetryPolicy
from .signing import Ed25519Signer, HmacSigner, PrivateKeySource, RsaSigner, load_signer
from .transport import Response, Timeouts, Transport
from .transport.websocket import WebSocketConnector
from .user_stream import UserStreamMixin

if TYPE_CHECKING:
    # httpx costs ~100 ms to import; only the httpx transport (loaded on first use) needs it.
    import httpx

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_FUTURES_BASE_URL",
    "DEFAULT_STREAM_URL",
    "PortfolioMarginProClient",
]

logger = logging.getLogger("binance_pmpro")

DEFAULT_BASE_URL = "https://api.binance.com"
DEFAULT_FUTURES_BASE_URL = "https://fapi.binance.com"
DEFAULT_STREAM_URL = "wss://fstream.binance.com/pm-classic"
DEFAULT_RECV_WINDOW = 5000
DEFAULT_MAX_WAIT = 10.0

T = TypeVar("T")


class PortfolioMarginProClient(PortfolioEndpointsMixin, WatchMixin, UserStreamMixin):
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
    - ``futures_base_url``: the USDⓈ-M futures REST root, where the user data stream's
      listen key is created and kept alive (default ``https://fapi.binance.com`` with
      Binance's own ``base_url``; with a custom ``base_url``, that same URL).
    - ``stream_url``: the user data stream's WebSocket root, ``<stream_url>/ws/<listenKey>``
      (default ``wss://fstream.binance.com/pm-classic`` with Binance's own ``base_url``;
      with a custom ``base_url``, none: :meth:`user_stream` then needs it given).
    - ``stream_connector``: how the stream opens WebSockets
      (a :class:`~binance_pmpro.transport.websocket.WebSocketConnector`; default: wsproto
      over anyio sockets, TLS verified with ``ssl_context`` or the system's CAs).
    - ``recv_window``: ms a signed request stays valid, 1..60,000 (default 5,000).
    - ``timeout``: seconds for every phase, or a :class:`~binance_pmpro.transport.Timeouts`.
    - ``http_client``: your own ``httpx.AsyncClient`` (proxies, custom TLS, mocks); the
      client uses it and never closes it.
    - ``rate_limiter``: by default (``"shared"``) every client of the process on the same
      event loop and limits uses one limiter (:func:`~binance_pmpro.ratelimit.shared_limiter`),
      so they share the IP budgets of the egress address and the UID budgets of a common
      account, as Binance counts them; ``"per-client"`` gives the client its own; a
      :class:`~binance_pmpro.ratelimit.RateLimiter` or
      :class:`~binance_pmpro.redis_budget.RedisRateLimiter` (any
      :class:`~binance_pmpro.ratelimit.Limiter`) is used as given; ``None`` switches
      local rate limiting off. ``uid_limit``/``ip_limit`` are weight per minute.
    - ``redis_url``: share the budgets with every process using the same Redis (a
      :class:`~binance_pmpro.redis_budget.RedisRateLimiter` the client creates with
      ``uid_limit``/``ip_limit`` and closes in :meth:`aclose`; needs the ``redis`` extra).
      Default: the ``BINANCE_PMPRO_REDIS_URL`` environment variable, when
      ``rate_limiter`` is left at ``"shared"``.
    - ``account_id``: the account's identity for budgets (default: a digest of the API key,
      never the key itself).
    - ``ip_total``: count every IP-limited ``/sapi`` endpoint on one budget of ``ip_limit``
      per minute instead of one budget per endpoint (stricter than Binance; for an egress
      address shared with other tools, or to match a fake exchange counting that way).
    - ``max_wait``: the longest a call waits for rate-limit weight, a 429 pause included,
      before raising (seconds; default 10).
    - ``retry``: the :class:`~binance_pmpro.retry.RetryPolicy` (default: up to 3 attempts
      for reads; ``NO_RETRY`` switches retries off).
    - ``call_timeout``: default overall deadline of a call in seconds (retries and waits
      included; None: only the per-phase ``timeout`` applies).
    - ``time_sync``: sync with Binance's clock at first use and every
      ``time_sync_interval`` seconds (default on, unless ``time_offset_ms`` is given).
    - ``time_offset_ms``: a fixed offset (ms) to add to the local clock when stamping
      requests, for hosts with their own time discipline; switches ``time_sync`` off.
    - ``transport``: ``"auto"`` (the fast transport on asyncio when httptools is installed,
      no ``http_client`` is given and no proxy is configured; httpx otherwise), ``"httpx"``,
      ``"fast"``, or a :class:`~binance_pmpro.transport.Transport` object. Such an object
      gets every request, :meth:`user_stream`'s listen key calls included: those have paths
      under ``/fapi/`` and belong on ``futures_base_url``, so it routes them by path.
    - ``max_connections``, ``idle_timeout``: the connection pool's size and how long (s)
      an idle keep-alive connection is kept (httpx keeps its own 30 s).
    - ``ssl_context``: TLS settings (a private CA, client certificates); certificate and
      hostname verification stay on by default.
    - ``http2``: negotiate HTTP/2 (httpx transport, ``http2`` extra). It lowers client CPU
      per call at high concurrency on httpx and costs a little when calls are sequential;
      with ``transport="auto"`` it selects httpx.
    - ``hooks``: callables receiving a :class:`~binance_pmpro.events.RequestEvent` at the
      start and end of every HTTP attempt (metrics, tracing).
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        private_key: PrivateKeySource | None = None,
        private_key_password: str | bytes | None = None,
        base_url: str = DEFAULT_BASE_URL,
        futures_base_url: str | None = None,
        stream_url: str | None = None,
        stream_connector: WebSocketConnector | None = None,
        recv_window: int = DEFAULT_RECV_WINDOW,
        timeout: float | Timeouts | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: Literal["auto", "httpx", "fast"] | Transport = "auto",
        max_connections: int = 100,
        idle_timeout: float | None = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        http2: bool = False,
        rate_limiter: Limiter | Literal["shared", "per-client"] | None = "shared",
        redis_url: str | None = None,
        uid_limit: int = 180_000,
        ip_limit: int = 12_000,
        account_id: str | None = None,
        ip_group: str = "default",
        ip_total: bool = False,
        max_wait: float = DEFAULT_MAX_WAIT,
        retry: RetryPolicy | None = None,
        call_timeout: float | None = None,
        time_sync: bool | None = None,
        time_sync_interval: float = 300.0,
        time_offset_ms: float | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self._api_key, self._signer = _credentials(
            api_key, api_secret, private_key, private_key_password
        )
        self.base_url = _check_base_url(base_url)
        default_host = self.base_url == DEFAULT_BASE_URL
        if futures_base_url is None:
            futures_base_url = DEFAULT_FUTURES_BASE_URL if default_host else self.base_url
        self.futures_base_url = _check_base_url(futures_base_url)
        if stream_url is None and default_host:
            stream_url = DEFAULT_STREAM_URL
        self.stream_url = _check_stream_url(stream_url) if stream_url is not None else None
        self._stream_connector = stream_connector
        self.recv_window = check_recv_window(recv_window)
        self.timeouts = Timeouts.coerce(timeout) if timeout is not None else Timeouts()
        if max_wait < 0:
            raise ConfigurationError("max_wait must be >= 0 seconds")
        self.max_wait = max_wait
        # "shared": the process's limiter of the event loop, looked up at first use (the
        # client binds to a loop lazily); None: no local limiting.
        self._shared_limits: tuple[int, int] | None = None
        self._owned_limiter: Limiter | None = None
        if redis_url is None and rate_limiter == "shared":
            redis_url = os.environ.get("BINANCE_PMPRO_REDIS_URL") or None
        if redis_url is not None:
            if rate_limiter != "shared":
                raise ConfigurationError("give either redis_url or rate_limiter, not both")
            from .redis_budget import RedisRateLimiter

            rate_limiter = self._owned_limiter = RedisRateLimiter(
                redis_url, uid_limit=uid_limit, ip_limit=ip_limit
            )
        if rate_limiter == "per-client":
            rate_limiter = RateLimiter(uid_limit=uid_limit, ip_limit=ip_limit)
        elif rate_limiter == "shared":
            self._shared_limits = (uid_limit, ip_limit)
            rate_limiter = None
        self._limiter: Limiter | None = rate_limiter
        self._account = account_id or (
            "key:" + hashlib.sha256(self._api_key.encode()).hexdigest()[:16]
            if self._api_key
            else "anonymous"
        )
        self._ip_group = ip_group
        self._ip_total = ip_total
        self.retry = retry if retry is not None else RetryPolicy()
        if call_timeout is not None and call_timeout <= 0:
            raise ConfigurationError("call_timeout must be a positive number of seconds")
        self.call_timeout = call_timeout
        self.clock = ServerClock(time_offset_ms or 0.0)
        self.time_sync = time_offset_ms is None if time_sync is None else time_sync
        self.time_sync_interval = time_sync_interval
        self._synced_at = -math.inf
        self._sync_lock: anyio.Lock | None = None
        self._hooks = tuple(hooks)
        self._http_client = http_client
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._ssl_context = ssl_context
        self._http2 = http2
        self._transport: Transport | None = None
        self._futures_transport: Transport | None = None
        self._transport_choice: str = "custom"
        if isinstance(transport, str):
            if transport not in ("auto", "httpx", "fast"):
                raise ConfigurationError(f"unknown transport {transport!r}")
            if transport == "fast" and http_client is not None:
                raise ConfigurationError("transport='fast' cannot use an httpx http_client")
            if transport == "fast" and http2:
                raise ConfigurationError("transport='fast' speaks HTTP/1.1 only; drop http2=True")
            self._transport_choice = transport
        else:
            self._transport = transport
        self._closed = False
        # endpoint name -> what a call of it needs, worked out at its first call.
        self._plans: dict[str, _Plan] = {}

    # --- public API ----------------------------------------------------------------------

    async def account_info(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> AccountInfo:
        """``GET /sapi/v1/portfolio/account`` (weight 5 on the account's UID budget).

        Returns the account's risk summary with exact ``Decimal`` amounts. Per call:
        ``recv_window`` (ms), ``max_wait`` (s to wait for rate-limit weight) and
        ``call_timeout`` (s for the whole call, retries included) override the client's
        defaults.
        """
        info: AccountInfo = await self._call(
            ACCOUNT_INFO, {}, recv_window=recv_window, max_wait=max_wait, call_timeout=call_timeout
        )
        return info

    async def account_info_raw(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> bytes:
        """The undecoded response body of :meth:`account_info` (errors still raise)."""
        response = await self._send(
            ACCOUNT_INFO,
            {},
            recv_window=recv_window,
            max_wait=max_wait,
            call_timeout=call_timeout,
        )
        return response.body

    async def server_time(self) -> int:
        """Binance's clock (``GET /api/v3/time``), milliseconds since the epoch."""
        result: ServerTime = await self._call(SERVER_TIME, {})
        return result.server_time

    async def sync_time(self) -> float:
        """Measure the offset to Binance's clock and stamp requests with it from now on.

        Returns the offset in ms (positive: Binance's clock is ahead of ours).
        """
        loop_sent = anyio.current_time()
        sent = ServerClock.local_ms()
        server = await self.server_time()
        received = ServerClock.local_ms()
        loop_received = anyio.current_time()
        self.clock.update(ClockSample(sent, received, server))
        self._synced_at = loop_received
        if self._bind_limiter() is not None:
            assert self._limiter is not None
            # The limiter runs on the event loop's clock: give it the server's offset from
            # that clock directly, bounded by the same round trip.
            low = server * 1_000_000 - loop_received * 1e9
            high = (server + 1) * 1_000_000 - loop_sent * 1e9
            self._limiter.set_server_offset(round((low + high) / 2), round((high - low) / 2))
        logger.debug(
            "clock offset to Binance %+.1f ms (+/- %.1f ms)",
            self.clock.offset_ms,
            self.clock.error_ms or 0.0,
        )
        return self.clock.offset_ms

    @property
    def rate_limit(self) -> list[BudgetSnapshot]:
        """The state of this client's rate-limit budgets: its account's UID budgets and its
        IP group's budgets (empty when limiting is off or before the first call)."""
        if self._limiter is None:
            return []
        return [
            b
            for b in self._limiter.snapshot()
            if b.key.owner == (self._account if b.key.kind is Budget.SAPI_UID else self._ip_group)
        ]

    def _bind_limiter(self) -> Limiter | None:
        """The limiter, binding the shared one of the running event loop at first use."""
        if self._limiter is None and self._shared_limits is not None:
            uid_limit, ip_limit = self._shared_limits
            self._limiter = shared_limiter(uid_limit=uid_limit, ip_limit=ip_limit)
        return self._limiter

    @property
    def signing_algorithm(self) -> str | None:
        """``"HMAC_SHA256"``, ``"RSA"``, ``"ED25519"``, or None without a secret."""
        return self._signer.algorithm if self._signer is not None else None

    async def aclose(self) -> None:
        """Close the connection pool (a caller's ``http_client`` is left open). Idempotent."""
        self._closed = True
        if self._futures_transport is not None:
            await self._futures_transport.aclose()
        if self._transport is not None:
            await self._transport.aclose()
        if self._owned_limiter is not None:
            await self._owned_limiter.aclose()

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

    def _get_transport(self, futures: bool = False) -> Transport:
        if self._closed:
            raise ClientClosedError("the client is closed; create a new one")
        if self._transport is None:
            self._transport = self._make_transport(self.base_url)
        if futures and self.futures_base_url != self.base_url:
            # A transport given as an object routes every host itself.
            if self._transport_choice == "custom":
                return self._transport
            if self._futures_transport is None:
                self._futures_transport = self._make_transport(self.futures_base_url)
            return self._futures_transport
        return self._transport

    def _make_transport(self, base_url: str) -> Transport:
        """Decision 6: the fast transport only on asyncio, with httptools installed, no
        user ``http_client`` and no proxy configured; httpx otherwise."""
        choice = self._transport_choice
        if choice == "fast" or (choice == "auto" and not self._http2):
            reason = _fast_unavailable(self._http_client)
            if reason is None:
                from .transport.fast import FastTransport

                return FastTransport(
                    base_url,
                    timeouts=self.timeouts,
                    max_connections=self._max_connections,
                    idle_timeout=self._idle_timeout,
                    ssl_context=self._ssl_context,
                )
            if choice == "fast":
                raise ConfigurationError(f"transport='fast' is not available: {reason}")
        from .transport.httpx import HttpxTransport

        return HttpxTransport(
            base_url,
            client=self._http_client,
            timeouts=self.timeouts,
            max_connections=self._max_connections,
            ssl_context=self._ssl_context,
            http2=self._http2,
        )

    @property
    def transport_name(self) -> str | None:
        """The transport in use (``"fast"``, ``"httpx"``, or a custom one's class name);
        None before the first call chose it."""
        if self._transport is None:
            return None
        return {"FastTransport": "fast", "HttpxTransport": "httpx"}.get(
            type(self._transport).__name__, type(self._transport).__name__
        )

    def _budget_key(self, endpoint: Endpoint) -> BudgetKey:
        if endpoint.budget is Budget.SAPI_UID:
            # The UID budget is the account's, but a 418 bans the IP it is spent from.
            return BudgetKey(Budget.SAPI_UID, self._account, endpoint.path, ip_group=self._ip_group)
        if endpoint.budget is Budget.SAPI_IP:
            # Binance counts IP weight per endpoint; ip_total pools them (stricter, safe).
            path = "" if self._ip_total else endpoint.path
            return BudgetKey(Budget.SAPI_IP, self._ip_group, path)
        if endpoint.budget is Budget.FAPI_IP:
            return BudgetKey(Budget.FAPI_IP, self._ip_group, "")
        return BudgetKey(Budget.API_IP, self._ip_group, "")

    def _call(
        self,
        endpoint: Endpoint,
        params: Mapping[str, Any],
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Coroutine[Any, Any, Any]:
        """The decoded answer of one call (await it): attempts, retries and pauses, within
        the call's deadline.

        A plain function returning the coroutine that does the work: without a deadline
        that is :meth:`_attempts` itself, one coroutine frame less on every call.
        """
        if call_timeout is None and self.call_timeout is None:
            window = self.recv_window if recv_window is None else check_recv_window(recv_window)
            return self._attempts(
                endpoint,
                params,
                window,
                self.max_wait if max_wait is None else max_wait,
                priority,
                True,
            )
        return self._within_deadline(
            endpoint, params, recv_window, max_wait, call_timeout, priority, True
        )

    def _send(
        self,
        endpoint: Endpoint,
        params: Mapping[str, Any],
        *,
        recv_window: int | None,
        max_wait: float | None,
        call_timeout: float | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Coroutine[Any, Any, Response]:
        """As :meth:`_call`, for the undecoded response (errors still raise)."""
        return self._within_deadline(
            endpoint, params, recv_window, max_wait, call_timeout, priority, False
        )

    async def _within_deadline(
        self,
        endpoint: Endpoint,
        params: Mapping[str, Any],
        recv_window: int | None,
        max_wait: float | None,
        call_timeout: float | None,
        priority: Priority,
        decode: bool,
    ) -> Any:
        window = self.recv_window if recv_window is None else check_recv_window(recv_window)
        budget_wait = self.max_wait if max_wait is None else max_wait
        limit = self.call_timeout if call_timeout is None else call_timeout
        if limit is None:
            return await self._attempts(endpoint, params, window, budget_wait, priority, decode)
        with anyio.move_on_after(limit):
            return await self._attempts(endpoint, params, window, budget_wait, priority, decode)
        raise DeadlineExceededError(
            f"{endpoint.method} {endpoint.path}: no answer within the call's {limit} s deadline",
            method=endpoint.method,
            path=endpoint.path,
        )

    async def _attempts(
        self,
        endpoint: Endpoint,
        params: Mapping[str, Any],
        window: int,
        max_wait: float,
        priority: Priority,
        decode: bool,
    ) -> Any:
        """Attempts until success or a failure the policy does not retry; the decoded
        answer when ``decode``, else the response.

        A 429 was not executed by Binance: the limiter pauses every caller of the budget
        until ``Retry-After`` and the call is sent again if that fits ``max_wait``. A -1021
        resynchronises the clock and is retried once. Every attempt re-acquires weight and
        is signed afresh (sign after waiting: the timestamp is never stale). The attempt
        itself is written out here rather than in a method of its own: this is the path of
        every call, and each coroutine frame on it costs.
        """
        # The loop's clock, read once per call (anyio's own read asks sniffio each time).
        started = loop_time()
        if endpoint.security.signed:
            if self._signer is None:  # before the clock sync: a doomed call sends nothing
                raise ConfigurationError(
                    f"{endpoint.path} is a SIGNED endpoint: give api_secret or private_key"
                )
            if self.time_sync and not (
                self.clock.synced and started - self._synced_at < self.time_sync_interval
            ):
                await self._ensure_clock(started)
        plan = self._plans.get(endpoint.name)
        if plan is None or plan.endpoint is not endpoint:
            plan = self._plans[endpoint.name] = _Plan(endpoint, self._budget_key(endpoint))
        weight = plan.weight if plan.weight is not None else endpoint.weight_for(params)
        failures: list[str] | None = None
        attempt = 0
        timestamp_retried = False
        while True:
            attempt += 1
            try:
                # --- one attempt: weight, fresh timestamp and signature, send, observe ---
                transport = self._transport
                if transport is None or self._closed or plan.futures:
                    transport = self._get_transport(plan.futures)
                limiter = self._limiter or self._bind_limiter()
                permit: LimiterPermit | None = None
                if limiter is not None:
                    rate_wait = (
                        max_wait if attempt == 1 else started + max_wait - anyio.current_time()
                    )
                    permit = await limiter.acquire(
                        plan.key,
                        weight,
                        max_wait=rate_wait if rate_wait > 0.0 else 0.0,
                        priority=priority,
                    )
                try:
                    request = build_request(
                        endpoint,
                        params,
                        api_key=self._api_key,
                        signer=self._signer,
                        timestamp_ms=self.clock.now_ms(),  # taken after the wait: never stale
                        recv_window=window,
                    )
                    watched = bool(self._hooks) or logger.isEnabledFor(logging.DEBUG)
                    sent_at = 0.0
                    if watched:
                        self._emit_start(endpoint, attempt, weight)
                        sent_at = time.perf_counter()
                    if permit is not None:
                        permit.mark_sent()
                    try:
                        response = await transport.send(request)
                    except TransportError as exc:
                        if watched:
                            self._report_failure(endpoint, attempt, weight, exc, sent_at)
                        raise
                    if permit is not None:
                        permit.observe(response.status, response.headers)
                except BaseException as exc:
                    if permit is not None:
                        await permit.__aexit__(type(exc), exc, exc.__traceback__)
                    raise
                if permit is not None:
                    await permit.__aexit__(None, None, None)
                if watched:
                    self._report(endpoint, request, response, attempt, weight, sent_at)
                # --- end of the attempt ---
                status = response.status
                if not 200 <= status < 300:
                    raise_for_error(status, response.headers, response.body)
                if not decode:
                    return response
                return plan.decoder.decode(response.body, status)
            except RateLimitedError as exc:
                failures = _failed(failures, exc)
                pause = exc.retry_after if exc.retry_after is not None else 60.0
                resend = (
                    exc.status == 429
                    and self._bind_limiter() is not None
                    and anyio.current_time() + pause <= started + max_wait
                )
                if not resend:
                    exc.attempts = tuple(failures)
                    raise
            except TimestampError as exc:
                failures = _failed(failures, exc)
                if timestamp_retried:
                    exc.offset_ms = self.clock.offset_ms if self.clock.synced else None
                    exc.attempts = tuple(failures)
                    raise
                timestamp_retried = True
                if self.time_sync:
                    await self._resync_quietly()
            except BinanceError as exc:
                failures = _failed(failures, exc)
                policy = self.retry
                if not policy.should_retry(exc, attempt=attempt, idempotent=endpoint.idempotent):
                    exc.attempts = tuple(failures)
                    raise
                delay = policy.backoff(attempt)
                if policy.deadline is not None and (
                    anyio.current_time() + delay - started >= policy.deadline
                ):
                    exc.attempts = tuple(failures)
                    raise
                await anyio.sleep(delay)

    def _emit_start(self, endpoint: Endpoint, attempt: int, weight: int) -> None:
        if self._hooks:
            self._emit(
                RequestEvent(
                    "start", endpoint.name, endpoint.method, endpoint.path, attempt, weight
                )
            )

    def _report_failure(
        self, endpoint: Endpoint, attempt: int, weight: int, exc: TransportError, sent_at: float
    ) -> None:
        if self._hooks:
            self._emit(
                RequestEvent(
                    "end",
                    endpoint.name,
                    endpoint.method,
                    endpoint.path,
                    attempt,
                    weight,
                    error=exc,
                    elapsed=time.perf_counter() - sent_at,
                )
            )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s attempt %d failed: %s", endpoint.method, endpoint.path, attempt, exc
            )

    def _report(
        self,
        endpoint: Endpoint,
        request: PreparedRequest,
        response: Response,
        attempt: int,
        weight: int,
        sent_at: float,
    ) -> None:
        elapsed = time.perf_counter() - sent_at
        used = response.headers.get(endpoint.header_name)
        if self._hooks:
            self._emit(
                RequestEvent(
                    "end",
                    endpoint.name,
                    endpoint.method,
                    endpoint.path,
                    attempt,
                    weight,
                    status=response.status,
                    elapsed=elapsed,
                    used_weight=int(used) if used and used.isdigit() else None,
                )
            )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %s in %.1f ms, attempt %d, weight %d, used %s weight %s",
                request.method,
                redact_query(request.target),
                response.status,
                elapsed * 1000,
                attempt,
                weight,
                endpoint.budget.value,
                used,
            )

    def _emit(self, event: RequestEvent) -> None:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                logger.warning("request hook %r raised; ignored", hook, exc_info=True)

    async def _ensure_clock(self, now: float) -> None:
        """Sync with Binance's clock at first use and every ``time_sync_interval`` seconds."""
        if self.clock.synced and now - self._synced_at < self.time_sync_interval:
            return
        if self._sync_lock is None:
            self._sync_lock = anyio.Lock()
        if self.clock.synced and self._sync_lock.locked():
            return  # someone is refreshing; the current offset is still good meanwhile
        async with self._sync_lock:
            if anyio.current_time() - self._synced_at >= self.time_sync_interval or not (
                self.clock.synced
            ):
                await self._resync_quietly()

    async def _resync_quietly(self) -> None:
        try:
            await self.sync_time()
        except BinanceError as exc:
            # Stamping with the local clock still works when it is right; a -1021 will say
            # when it is not. Try again soon rather than at the next full interval.
            self._synced_at = anyio.current_time() - self.time_sync_interval + 5.0
            logger.warning("could not sync with Binance's clock: %s", exc)


class _Plan:
    """What the client works out once per endpoint: its budget key (compared by identity
    in the limiter), its weight when fixed, where it is sent and its decoder."""

    __slots__ = ("decoder", "endpoint", "futures", "key", "weight")

    def __init__(self, endpoint: Endpoint, key: BudgetKey) -> None:
        self.endpoint = endpoint
        self.key = key
        self.weight = endpoint.weight if isinstance(endpoint.weight, int) else None
        self.futures = endpoint.futures
        self.decoder: ResponseDecoder[Any] = decoder_for(endpoint.response)


def _failed(failures: list[str] | None, exc: BinanceError) -> list[str]:
    """``failures`` (created on the first failure) with ``exc`` described at its end."""
    if failures is None:
        failures = []
    failures.append(_describe(exc))
    return failures


def _describe(exc: BinanceError) -> str:
    return f"{type(exc).__name__}: {Exception.__str__(exc)}"


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
    password_from_env = password is None
    if password_from_env:
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
    return api_key, load_signer(
        api_secret=api_secret,
        private_key=private_key,
        password=password,
        # A password from the environment applies to encrypted keys only, so one shell
        # setting does not break a client that is handed a plain key.
        password_optional=password_from_env,
    )


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def _fast_unavailable(http_client: httpx.AsyncClient | None) -> str | None:
    """Why the fast transport cannot be used here, or None when it can."""
    if http_client is not None:
        return "an httpx http_client was given"
    if any(name.lower() in _PROXY_VARIABLES and value for name, value in os.environ.items()):
        return "an HTTP proxy is configured (the fast transport does not do proxies)"
    try:
        import sniffio

        if sniffio.current_async_library() != "asyncio":
            return "the event loop is not asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return "no event loop is running"
    import importlib.util

    if importlib.util.find_spec("httptools") is None:
        return "httptools is not installed (pip install 'binance-pmpro[fast]')"
    if importlib.util.find_spec("binance_pmpro.transport.fast") is None:
        return "this build has no fast transport"
    return None


def _check_base_url(base_url: str) -> str:
    return _check_url(base_url, "base_url", "http", "API keys and signed requests")


def _check_stream_url(url: str) -> str:
    return _check_url(url, "stream_url", "ws", "the listen key")


def _check_url(url: str, option: str, plain: str, secret: str) -> str:
    """``url`` without a trailing slash, if it is ``<plain>s://`` or ``<plain>://`` to loopback."""
    parts = urlsplit(url)
    if parts.scheme not in (plain, plain + "s") or not parts.hostname:
        raise ConfigurationError(f"{option} must be a {plain}s:// or {plain}:// URL, not {url!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{option} must not carry a query or fragment")
    if parts.scheme == plain and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain {plain}:// to {parts.hostname}: {secret} must not travel in "
            f"clear text ({plain}:// is allowed for loopback hosts only)"
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
