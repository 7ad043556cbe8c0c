"""The httpx transport: runs on asyncio and trio, honours a user's ``httpx.AsyncClient``
(proxies, custom TLS, respx mocks, an in-process FakeExchange)."""

from __future__ import annotations

import httpx

from .. import errors
from ..requests import PreparedRequest
from . import Response, Timeouts

__all__ = ["HttpxTransport"]

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


class HttpxTransport:
    """Sends prepared requests with an ``httpx.AsyncClient``.

    Without ``client`` it makes its own (keep-alive pool of ``max_connections``) and closes
    it in :meth:`aclose`; a client passed in belongs to the caller and is never closed here.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        t = timeouts or Timeouts()
        self._timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=self._timeout,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,
            ),
            # Proxies from the environment work through httpx; the client never follows
            # redirects (Binance sends none; a redirect would be a misconfiguration).
            follow_redirects=False,
        )

    async def send(self, request: PreparedRequest) -> Response:
        """One HTTP exchange; httpx errors become our TransportError subclasses."""
        url = self.base_url + request.target
        try:
            response = await self._client.request(
                request.method,
                url,
                headers=request.headers,
                content=request.body or None,
                timeout=self._timeout,
            )
        except httpx.TransportError as exc:
            raise _map_error(exc, request) from None
        return Response(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        """Close the connection pool, unless the ``httpx.AsyncClient`` was the caller's."""
        if self._owns_client:
            await self._client.aclose()


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
