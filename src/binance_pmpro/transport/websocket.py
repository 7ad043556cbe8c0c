"""The WebSocket seam: what the user data stream needs from one connection.

The stream logic (listen keys, reconnects, stall detection, decoding) talks to this small
interface only, so it runs the same over a real socket and over FakeExchange's in-process
stream on a virtual clock. Pings are handed to the caller instead of being answered behind
its back: Binance counts every frame we send against a per-connection message limit, so the
stream decides when a pong goes out.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Ping", "WebSocket", "WebSocketClosed", "WebSocketConnector"]


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping frame from the server; answer it with :meth:`WebSocket.pong` and its payload."""

    payload: bytes


class WebSocketClosed(Exception):
    """The connection is closed: by the server (with its close code), or dropped (code None)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"WebSocket closed ({code if code is not None else 'no close frame'})")
        self.code = code
        self.reason = reason


@runtime_checkable
class WebSocket(Protocol):
    """One open WebSocket connection."""

    async def receive(self) -> str | bytes | Ping:
        """The next data message (text or binary) or ping; raises :class:`WebSocketClosed`."""
        ...

    async def pong(self, payload: bytes) -> None:
        """Answer a ping with its payload."""
        ...

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (idempotent; never raises for an already dead connection)."""
        ...


class WebSocketConnector(Protocol):
    """Opens a connection to a ``ws://`` or ``wss://`` URL within ``timeout`` seconds."""

    async def __call__(
        self, url: str, *, timeout: float | None, ssl_context: ssl.SSLContext | None
    ) -> WebSocket:
        """Connect, or raise a :class:`~binance_pmpro.errors.TransportError` subclass."""
        ...
