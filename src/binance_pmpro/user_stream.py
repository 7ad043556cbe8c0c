"""The Portfolio Margin Pro user data stream as a self-healing async iterator.

``async with client.user_stream() as stream: async for event in stream:`` yields the typed
events of :mod:`binance_pmpro.stream_events`. Behind the iterator:

- the listen key is created on entry (``POST /fapi/v1/listenKey`` on the futures host),
  kept alive every ``keepalive_interval`` seconds (``PUT``; Binance's keys last 60 minutes
  from the last keep-alive), and re-created when Binance says it no longer exists (``-1125``
  on a keep-alive, or a ``listenKeyExpired`` event). These calls take the client's normal
  path: rate limiter, retries, typed errors. By default the key is left to expire on exit:
  an account has one live key, shared with its USDⓈ-M streams, and closing it would cut
  those too; ``close_listen_key=True`` closes it (``DELETE``).
- a dropped connection is reopened with jittered exponential backoff; a connection that
  brings no ``PM_PRO_ACCOUNT_UPDATE`` for ``stall_after`` seconds is treated as dead and
  reopened; one that reaches ``max_connection_age`` (ahead of Binance's 24-hour cut) is
  replaced by a new one opened first, so the iterator goes on.
- every reopening is reported as a :class:`~binance_pmpro.stream_events.StreamReconnected`
  carrying a REST ``account_info()`` snapshot taken after the gap.
- the server's pings are answered with pongs echoing their payload, at most
  ``max_pongs_per_second`` of them (Binance counts every frame a client sends against a
  small per-connection limit; it pings every few minutes and waits 10 minutes for a pong,
  so a pong deferred by a second is harmless).
- a frame that is not a readable event is logged and skipped.

The timing logic reads only the event loop's clock, so it runs on a virtual clock in tests.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ._host import ClientHost
from .endpoints import (
    ACCOUNT_INFO,
    LISTEN_KEY_CLOSE,
    LISTEN_KEY_CREATE,
    LISTEN_KEY_KEEPALIVE,
)
from .errors import (
    AuthenticationError,
    BinanceError,
    ClientClosedError,
    ConfigurationError,
    IPBannedError,
    ListenKeyNotFoundError,
    StreamDecodeError,
)
from .models import AccountInfo
from .ratelimit import Priority
from .stream_events import (
    AccountUpdate,
    ListenKey,
    ListenKeyExpired,
    StreamEvent,
    StreamReconnected,
    decode_stream_event,
)
from .transport.websocket import Ping, WebSocket, WebSocketClosed, WebSocketConnector

if TYPE_CHECKING:
    from .client import PortfolioMarginProClient

__all__ = ["STREAM_FATAL_ERRORS", "UserStream", "UserStreamMixin"]

logger = logging.getLogger("binance_pmpro.stream")

STREAM_FATAL_ERRORS: tuple[type[BinanceError], ...] = (
    AuthenticationError,
    IPBannedError,
    ConfigurationError,
    ClientClosedError,
)
"""Errors of the listen key calls that end a stream (raised out of the iterator): waiting
would not fix them. Other failures are retried with backoff."""

_CLOSE_TIMEOUT = 10.0
_rng = random.Random()  # noqa: S311 - jitter, not cryptography


class UserStream:
    """The user data stream: an async context manager and an async iterator of
    :data:`~binance_pmpro.stream_events.StreamEvent`. Made by
    :meth:`UserStreamMixin.user_stream`; see the module documentation for what it does."""

    def __init__(
        self,
        client: PortfolioMarginProClient,
        *,
        stream_url: str,
        connector: WebSocketConnector,
        ssl_context: ssl.SSLContext | None,
        close_listen_key: bool,
        keepalive_interval: float,
        stall_after: float,
        max_connection_age: float,
        backoff_initial: float,
        backoff_max: float,
        connect_timeout: float | None,
        max_pongs_per_second: float,
        snapshot_after_reconnect: bool,
    ) -> None:
        self._client = client
        self._stream_url = stream_url
        self._connector = connector
        self._ssl_context = ssl_context
        self.close_listen_key = close_listen_key
        self.keepalive_interval = keepalive_interval
        self.stall_after = stall_after
        self.max_connection_age = max_connection_age
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self._pong_interval = 1.0 / max_pongs_per_second
        self.snapshot_after_reconnect = snapshot_after_reconnect
        self._key: str | None = None
        self._ws: WebSocket | None = None
        self._connected_at = -math.inf
        self._last_update_at: float | None = None
        self._pending: deque[StreamEvent] = deque()
        self._reconnect_reason: str | None = None
        self._receive_scope: anyio.CancelScope | None = None
        self._fatal: BinanceError | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._keepalive_scope: anyio.CancelScope | None = None
        self._last_pong = -math.inf
        self._carried_attempts = 0
        self._pending_pong: bytes | None = None
        self._closed = False
        self.reconnects = 0
        """How many times the stream reconnected so far."""
        self.pongs_sent = 0
        """Pongs sent so far (over every connection)."""
        self.frames_skipped = 0
        """Frames that were not readable events, logged and skipped."""

    def __repr__(self) -> str:
        state = "connected" if self._ws is not None else "disconnected"
        return f"UserStream({self._stream_url}/ws/<listen key>, {state})"

    # --- state for callers -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._ws is not None

    @property
    def last_update_at(self) -> float | None:
        """Loop clock (``anyio.current_time()``) of the latest account update, if any."""
        return self._last_update_at

    def is_fresh(self, within: float) -> bool:
        """Whether a connection is open and brought an account update (or opened) less
        than ``within`` seconds ago."""
        if self._ws is None:
            return False
        latest = max(self._last_update_at or -math.inf, self._connected_at)
        return anyio.current_time() - latest < within

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> UserStream:
        await self._create_key()
        try:
            self._ws = await self._open()
        except BaseException:
            await self.aclose()
            raise
        self._connected_at = anyio.current_time()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._keepalive_loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            # Its only child (the keep-alive) was cancelled by aclose(): this returns at once.
            await task_group.__aexit__(None, None, None)
        return None

    async def aclose(self) -> None:
        """Stop the keep-alive, close the connection and, with ``close_listen_key``, the
        listen key. Idempotent; the iterator ends."""
        if self._closed:
            return
        self._closed = True
        if self._keepalive_scope is not None:
            self._keepalive_scope.cancel()
        await self._drop_connection()
        if self.close_listen_key and self._key is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
                try:
                    await self._client._call(LISTEN_KEY_CLOSE, {})
                except BinanceError as exc:
                    logger.warning("could not close the listen key: %s", exc)
        self._key = None

    # --- iteration -----------------------------------------------------------------------

    def __aiter__(self) -> UserStream:
        return self

    async def __anext__(self) -> StreamEvent:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._fatal is not None:
                raise self._fatal
            if self._ws is None or self._reconnect_reason is not None:
                await self._reconnect(self._reconnect_reason or "dropped")
                continue
            event = await self._receive_one()
            if event is not None:
                return event

    async def _receive_one(self) -> StreamEvent | None:
        """Wait for one frame until the next deadline; None when there is nothing to yield
        (a ping, a skipped frame, a deadline that decided to reconnect)."""
        ws = self._ws
        assert ws is not None
        now = anyio.current_time()
        stall_at = (self._last_update_at or -math.inf, self._connected_at)
        stall_deadline = max(stall_at) + self.stall_after
        age_deadline = self._connected_at + self.max_connection_age
        pong_deadline = (
            self._last_pong + self._pong_interval if self._pending_pong is not None else math.inf
        )
        deadline = min(stall_deadline, age_deadline, pong_deadline)
        if now >= pong_deadline and self._pending_pong is not None:
            await self._pong(ws, self._pending_pong)
            return None
        if now >= stall_deadline:
            logger.warning("no account update for %.1f s: reconnecting", now - max(stall_at))
            self._reconnect_reason = "stalled"
            return None
        if now >= age_deadline:
            self._reconnect_reason = "scheduled"
            return None
        message: str | bytes | Ping | None = None
        with anyio.CancelScope(deadline=deadline) as scope:
            self._receive_scope = scope
            try:
                message = await ws.receive()
            except WebSocketClosed as exc:
                self._reconnect_reason = "dropped" if exc.code is None else "closed_by_server"
                logger.warning("stream connection closed (%s): reconnecting", exc)
                await self._drop_connection()
                return None
            finally:
                self._receive_scope = None
        if message is None:  # a deadline, or the keep-alive asked for a new connection
            return None
        if isinstance(message, Ping):
            await self._pong(ws, message.payload)
            return None
        try:
            event = decode_stream_event(message)
        except StreamDecodeError as exc:
            self.frames_skipped += 1
            logger.warning("skipped a stream frame: %s", exc)
            return None
        if isinstance(event, AccountUpdate):
            self._last_update_at = anyio.current_time()
        elif isinstance(event, ListenKeyExpired):
            logger.info("the listen key expired: creating a new one")
            self._key = None
            self._reconnect_reason = "listen_key_expired"
        return event

    async def _pong(self, ws: WebSocket, payload: bytes) -> None:
        now = anyio.current_time()
        if now < self._last_pong + self._pong_interval:
            # Over the rate: answer later, with the latest payload (pings only need *a*
            # pong in time; Binance waits minutes for it).
            self._pending_pong = payload
            return
        self._pending_pong = None
        self._last_pong = now
        try:
            await ws.pong(payload)
            self.pongs_sent += 1
        except WebSocketClosed:
            self._reconnect_reason = "dropped"

    # --- connections ---------------------------------------------------------------------

    def _url(self) -> str:
        assert self._key is not None
        return f"{self._stream_url}/ws/{self._key}"

    async def _open(self) -> WebSocket:
        return await self._connector(
            self._url(), timeout=self.connect_timeout, ssl_context=self._ssl_context
        )

    async def _drop_connection(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
                try:
                    await ws.aclose()
                except Exception as exc:  # closing a dead connection must not break healing
                    logger.debug("closing the stream connection: %s", exc)

    def _backoff(self, attempt: int) -> float:
        """Jittered exponential backoff before connection attempt ``attempt`` (1-based):
        a uniformly random share between half and all of ``initial * 2**(attempt-1)``,
        capped at ``backoff_max``, so many clients cut at once do not return at once."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        return ceiling * _rng.uniform(0.5, 1.0)

    async def _reconnect(self, reason: str) -> None:
        """Open a new connection (and a new or refreshed key) until one works; queue the
        :class:`StreamReconnected` event with a fresh snapshot."""
        old = self._ws
        planned = reason in ("scheduled", "listen_key_expired")
        if old is not None and reason != "scheduled":
            await self._drop_connection()
            old = None
        # A connection that went before bringing a single update does not reset the
        # backoff: a server that accepts and drops at once is not hammered once a second.
        carried = self._carried_attempts if self._last_update_at is None else 0
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1 or not planned:
                await anyio.sleep(self._backoff(carried + attempt))
            try:
                # POST returns the account's live key (extending it) or a new one: either
                # way the key we connect with is valid for the next 60 minutes.
                await self._create_key()
                ws = await self._open()
            except STREAM_FATAL_ERRORS:
                raise
            except BinanceError as exc:
                logger.warning("stream reconnect attempt %d failed: %s", attempt, exc)
                continue
            break
        if old is not None:  # a planned switch: the new connection is up before the old goes
            await self._drop_connection()
        self._ws = ws
        self._connected_at = anyio.current_time()
        self._last_update_at = None
        self._reconnect_reason = None
        self._pending_pong = None
        self.reconnects += 1
        self._carried_attempts = carried + attempt
        logger.info("stream reconnected (%s) after %d attempt(s)", reason, attempt)
        snapshot: AccountInfo | None = None
        try:
            if self.snapshot_after_reconnect:
                snapshot = await self._snapshot()
        finally:
            # Even when the caller is cancelled during the snapshot, the gap is reported.
            self._pending.append(
                StreamReconnected(reason=reason, attempt=attempt, snapshot=snapshot)
            )

    async def _snapshot(self) -> AccountInfo | None:
        try:
            info: AccountInfo = await self._client._call(ACCOUNT_INFO, {}, priority=Priority.HIGH)
        except STREAM_FATAL_ERRORS:
            raise
        except BinanceError as exc:
            logger.warning("no account snapshot after the reconnect: %s", exc)
            return None
        return info

    # --- the listen key ------------------------------------------------------------------

    async def _create_key(self) -> None:
        answer: ListenKey = await self._client._call(LISTEN_KEY_CREATE, {}, priority=Priority.HIGH)
        if not answer.listen_key:
            raise ConfigurationError("Binance answered the listen key request without a key")
        self._key = answer.listen_key

    async def _keepalive_loop(self) -> None:
        """PUT every ``keepalive_interval`` seconds; on -1125 create a new key and move the
        connection to it. Failures are retried at a shorter interval; fatal ones end the
        stream through the iterator."""
        with anyio.CancelScope() as scope:
            self._keepalive_scope = scope
            if self._closed:
                return
            await self._keep_alive()

    async def _keep_alive(self) -> None:
        delay = self.keepalive_interval
        while True:
            await anyio.sleep(delay)
            delay = self.keepalive_interval
            try:
                await self._client._call(LISTEN_KEY_KEEPALIVE, {}, priority=Priority.HIGH)
                logger.debug("listen key kept alive")
            except ListenKeyNotFoundError:
                logger.info("the listen key no longer exists: creating a new one")
                old = self._key
                try:
                    await self._create_key()
                except STREAM_FATAL_ERRORS as exc:
                    self._fail(exc)
                    return
                except BinanceError as exc:
                    logger.warning("could not create a new listen key: %s", exc)
                    delay = min(60.0, self.keepalive_interval)
                    continue
                if self._key != old:
                    self._request_reconnect("listen_key_expired")
            except STREAM_FATAL_ERRORS as exc:
                self._fail(exc)
                return
            except BinanceError as exc:
                logger.warning("listen key keep-alive failed: %s", exc)
                delay = min(60.0, self.keepalive_interval)

    def _request_reconnect(self, reason: str) -> None:
        self._reconnect_reason = reason
        if self._receive_scope is not None:
            self._receive_scope.cancel()

    def _fail(self, exc: BinanceError) -> None:
        self._fatal = exc
        if self._receive_scope is not None:
            self._receive_scope.cancel()


class UserStreamMixin(ClientHost):
    """:meth:`user_stream`, mixed into :class:`~binance_pmpro.PortfolioMarginProClient`."""

    def user_stream(
        self,
        *,
        close_listen_key: bool = False,
        keepalive_interval: float = 1800.0,
        stall_after: float = 15.0,
        max_connection_age: float = 23.5 * 3600,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        connect_timeout: float | None = 10.0,
        max_pongs_per_second: float = 1.0,
        snapshot_after_reconnect: bool = True,
    ) -> UserStream:
        """The Portfolio Margin Pro user data stream:
        ``async with client.user_stream() as stream: async for event in stream: ...``.

        - ``close_listen_key``: close the listen key on exit (default False: the account's
          one key is shared with its USDⓈ-M streams, so it is left to expire).
        - ``keepalive_interval``: seconds between keep-alives (default 1,800; Binance's
          keys last 60 minutes).
        - ``stall_after``: seconds without an account update before the connection counts
          as stalled and is replaced (default 15: three of Binance's 5-second periods).
        - ``max_connection_age``: seconds after which a connection is replaced, ahead of
          Binance's 24-hour cut (default 23.5 hours).
        - ``backoff_initial``, ``backoff_max``: the jittered exponential backoff between
          reconnect attempts (seconds).
        - ``connect_timeout``: seconds for opening one connection.
        - ``max_pongs_per_second``: the most pongs sent per second (default 1; Binance
          allows a client 5 messages a second).
        - ``snapshot_after_reconnect``: fetch ``account_info()`` after each reconnect and
          put it on the :class:`~binance_pmpro.stream_events.StreamReconnected` event.

        Raises :class:`~binance_pmpro.errors.ConfigurationError` when the client knows no
        stream URL (a custom ``base_url`` without ``stream_url``). Entering creates the
        listen key and opens the first connection; their errors raise from ``async with``.
        """
        if self.stream_url is None:
            raise ConfigurationError(
                "no user stream URL: pass stream_url= to the client (it has a default only "
                "with Binance's own base_url)"
            )
        for name, value in (
            ("keepalive_interval", keepalive_interval),
            ("stall_after", stall_after),
            ("max_connection_age", max_connection_age),
            ("backoff_max", backoff_max),
            ("max_pongs_per_second", max_pongs_per_second),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        if keepalive_interval >= 3600:
            raise ConfigurationError("keepalive_interval must be under 3,600 s (the key's life)")
        if backoff_initial < 0:
            raise ConfigurationError("backoff_initial must be >= 0 seconds")
        connector = self._stream_connector
        if connector is None:
            from .transport.wsproto import WsprotoConnector

            connector = WsprotoConnector()
        client: PortfolioMarginProClient = self  # type: ignore[assignment]
        return UserStream(
            client,
            stream_url=self.stream_url,
            connector=connector,
            ssl_context=self._ssl_context,
            close_listen_key=close_listen_key,
            keepalive_interval=keepalive_interval,
            stall_after=stall_after,
            max_connection_age=max_connection_age,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            connect_timeout=connect_timeout,
            max_pongs_per_second=max_pongs_per_second,
            snapshot_after_reconnect=snapshot_after_reconnect,
        )
