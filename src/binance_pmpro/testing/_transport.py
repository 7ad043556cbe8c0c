"""The in-process shell: an httpx transport that hands each request to FakeExchange.

No sockets and no threads: waits use ``anyio.sleep``, so trio's MockClock and other
virtual clocks drive slow answers. Failures look like what httpx raises for a real socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import httpx

from ._exchange import Reply, ReplyAction

if TYPE_CHECKING:
    from ._exchange import FakeExchange

__all__ = ["FakeTransport"]


class FakeTransport(httpx.AsyncBaseTransport):
    """Answers httpx requests from a :class:`~binance_pmpro.testing.FakeExchange`.

    ``client_ip`` is the address the exchange sees the requests coming from. The request's
    read timeout (``request.extensions["timeout"]["read"]``) is honoured for slow answers:
    httpx's own timeouts live in its network layer, which this transport replaces.
    """

    def __init__(self, exchange: FakeExchange, *, client_ip: str = "127.0.0.1") -> None:
        self.exchange = exchange
        self.client_ip = client_ip

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """One exchange with the fake; raises httpx transport errors for injected faults."""
        body = await request.aread()
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
        ]
        reply = self.exchange.handle(
            request.method,
            request.url.raw_path.decode("ascii"),
            headers,
            body,
            client_ip=self.client_ip,
        )
        if reply.delay > 0:
            timeout = request.extensions.get("timeout", {}).get("read")
            if timeout is not None and reply.delay > timeout:
                await anyio.sleep(timeout)
                raise httpx.ReadTimeout("timed out", request=request)
            await anyio.sleep(reply.delay)
        else:
            # A real exchange is never answered without yielding to the event loop.
            await anyio.lowlevel.checkpoint()
        if reply.action is ReplyAction.DROP:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        response_headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
        if reply.action is ReplyAction.RESET:
            return httpx.Response(
                reply.status,
                headers=response_headers,
                stream=_ResetStream(reply, request),
                request=request,
            )
        return httpx.Response(
            reply.status, headers=response_headers, content=reply.body, request=request
        )


class _ResetStream(httpx.AsyncByteStream):
    """A response body that breaks off: part of it, then a connection reset."""

    def __init__(self, reply: Reply, request: httpx.Request) -> None:
        self._chunk = reply.body[: reply.send_bytes or 0]
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._chunk:
            yield self._chunk
        await anyio.lowlevel.checkpoint()
        raise httpx.ReadError("[Errno 104] Connection reset by peer", request=self._request)
