"""What the client's mixins may use of the client they are mixed into.

The endpoint methods, the watcher and the user stream live in their own modules and reach
the call path through ``self``. This base declares that shared surface once, for type
checkers only; at run time it is an empty class.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

    from .clock import ServerClock
    from .endpoints import Endpoint
    from .ratelimit import Priority
    from .transport import Response
    from .transport.websocket import WebSocketConnector


class ClientHost:
    """Base of :class:`~binance_pmpro.PortfolioMarginProClient`'s mixins."""

    if TYPE_CHECKING:
        _account: str
        clock: ServerClock
        max_wait: float
        call_timeout: float | None
        stream_url: str | None
        _stream_connector: WebSocketConnector | None
        _ssl_context: ssl.SSLContext | None

        def _call(
            self,
            endpoint: Endpoint,
            params: Mapping[str, Any],
            *,
            recv_window: int | None = None,
            max_wait: float | None = None,
            call_timeout: float | None = None,
            priority: Priority = Priority.NORMAL,
        ) -> Coroutine[Any, Any, Any]: ...

        def _send(
            self,
            endpoint: Endpoint,
            params: Mapping[str, Any],
            *,
            recv_window: int | None,
            max_wait: float | None,
            call_timeout: float | None = None,
            priority: Priority = Priority.NORMAL,
        ) -> Coroutine[Any, Any, Response]: ...
