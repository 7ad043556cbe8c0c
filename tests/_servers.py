"""Misbehaving HTTP/1.1 servers on 127.0.0.1 for the transport conformance suite.

They run in the test's own event loop (anyio, so asyncio and trio alike) and are told how
to misbehave by the request itself: the path picks the behaviour, the query tunes it.
Requests are split by hand here, which is fine for a test server that only ever sees the
requests our transports send; the transports themselves never parse HTTP by hand.

Paths (``id`` is echoed back in the body so that a test can check that an answer belongs
to its own request):

- ``/echo``: ``{"id": ...}`` with Content-Length. ``pad=N`` adds N bytes, ``status=``
  and ``kind=json|html`` shape an error answer, ``chunked=1`` sends it in chunks,
  ``close=1`` adds ``Connection: close`` and closes (with ``linger=1`` it keeps the socket
  open and poisons any further answer on it), ``then=close|drop|partial|stray`` closes the
  idle connection now, or on the next request without an answer or after a few bytes of
  one, or sends half of an unasked-for answer on the idle connection.
- ``/eof``: a body with neither Content-Length nor chunking, ended by closing.
- ``/big?n=N``: N deterministic bytes (``chunked=1`` for chunks).
- ``/reset``, ``/truncate``, ``/truncate-chunked``: part of a body, then a reset, a clean
  close before Content-Length bytes, or a close before the last chunk.
- ``/stall?gate=G``: answer only once gate G opens (``part=1``: headers and half the body
  first). Late answers still go out, so a connection wrongly reused would deliver them.
- ``/trickle?pieces=N&gap=S``: the body a byte group at a time, S seconds apart.
- ``/sleep?s=S``: answer after S seconds.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSListener

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    418: "I'm a teapot",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_GONE = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
    ssl.SSLError,
)
_LIMIT = 10.0  # no handler waits longer than this, whatever a test forgot to release

POISON = b'{"id":"POISON"}'


def big_body(n: int) -> bytes:
    """The deterministic body of ``/big?n=N``."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def echo_body(ident: str, pad: int = 0) -> bytes:
    """The body of ``/echo?id=ident&pad=N``."""
    return b'{"id":"%s","pad":"%s"}' % (ident.encode(), b"x" * pad)


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    conn: int


@dataclass
class _Conn:
    ident: int
    stream: anyio.abc.ByteStream
    buffer: bytearray = field(default_factory=bytearray)
    next_action: str = ""
    poisoned: bool = False


class TestServer:
    """An HTTP/1.1 server whose misbehaviour each request chooses."""

    __test__ = False  # not a pytest test class

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.requests: list[Seen] = []
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.closed = 0
        self.late_answers = 0
        self.partials_sent = 0
        self._gates: dict[str, anyio.Event] = {}
        self.port = 0

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def gate(self, name: str) -> anyio.Event:
        """The event a ``/stall?gate=name`` request waits for."""
        if name not in self._gates:
            self._gates[name] = anyio.Event()
        return self._gates[name]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll ``condition`` until it holds (fails the test after ``timeout`` seconds)."""
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.002)

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        conn = _Conn(self.accepted, stream)
        try:
            with anyio.move_on_after(_LIMIT):
                while await self._one(conn):
                    pass
        except _GONE:
            pass
        finally:
            self.open -= 1
            self.closed += 1
            with contextlib.suppress(*_GONE), anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_request(self, conn: _Conn) -> Seen | None:
        buf = conn.buffer
        while b"\r\n\r\n" not in buf:
            try:
                buf += await conn.stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError, ssl.SSLError):
                return None
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += await conn.stream.receive(65536)
        conn.buffer = bytearray(rest[length:])
        return Seen(method, target, headers, rest[:length], conn.ident)

    async def _one(self, conn: _Conn) -> bool:
        """Serve one request; False when the connection is done."""
        seen = await self._read_request(conn)
        if seen is None:
            return False
        self.requests.append(seen)
        send = conn.stream.send
        if conn.poisoned:
            await send(_head(200, len(POISON)) + POISON)
            return True
        action, conn.next_action = conn.next_action, ""
        if action == "drop":
            return False
        if action == "partial":
            await send(b"HTTP/1.1 200 OK\r\nContent-Le")
            await anyio.sleep(0.02)
            return False
        url = urlsplit(seen.target)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path == "/echo":
            return await self._echo(conn, q)
        if path == "/big":
            body = big_body(int(q["n"]))
            if q.get("chunked"):
                await send(_head(200, None) + _chunks(body, 65536))
            else:
                await send(_head(200, len(body)) + body)
            return True
        if path in ("/reset", "/truncate"):
            await send(_head(200, 1000) + b"x" * 100)
            await anyio.sleep(0.02)  # let the partial body reach the client first
            if path == "/reset":
                _linger_zero(conn.stream)
            return False
        if path == "/eof":
            body = echo_body(q.get("id", ""), int(q.get("pad", "0")))
            await send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
            return False
        if path == "/truncate-chunked":
            await send(_head(200, None) + b"64\r\n" + b"x" * 100 + b"\r\n")
            await anyio.sleep(0.02)
            return False
        if path == "/stall":
            body = echo_body(q.get("id", ""), int(q.get("pad", "0")))
            wire = _head(200, len(body)) + body
            split = len(wire) - len(body) // 2 if q.get("part") else 0
            if split:
                await send(wire[:split])
                self.partials_sent += 1
            with anyio.move_on_after(_LIMIT):
                await self.gate(q["gate"]).wait()
            try:
                await send(wire[split:])
            finally:
                # Counted also when the client has gone: it was answered as far as it could be.
                self.late_answers += 1
            return True
        if path == "/trickle":
            pieces, gap = int(q["pieces"]), float(q["gap"])
            body = echo_body(q.get("id", ""), pieces * 10)
            step = -(-len(body) // pieces)
            await send(_head(200, len(body)))
            for i in range(0, len(body), step):
                await anyio.sleep(gap)
                await send(body[i : i + step])
            return True
        if path == "/sleep":
            await anyio.sleep(float(q["s"]))
            body = echo_body(q.get("id", ""))
            await send(_head(200, len(body)) + body)
            return True
        await send(_head(404, 9) + b"not found")
        return True

    async def _echo(self, conn: _Conn, q: dict[str, str]) -> bool:
        status = int(q.get("status", "200"))
        if status >= 400 and q.get("kind") == "html":
            body = b"<html><body><h1>%d</h1>\n\n</body></html>" % status
        elif status >= 400:
            body = b'{"code":-1121,"msg":"Invalid symbol.","id":"%s"}' % q.get("id", "").encode()
        else:
            body = echo_body(q.get("id", ""), int(q.get("pad", "0")))
        extra = [("X-MBX-USED-WEIGHT-1M", "5"), ("Content-Type", "application/json")]
        if status in (418, 429):
            extra.append(("Retry-After", "7"))
        close = bool(q.get("close"))
        if close:
            extra.append(("Connection", "close"))
        if q.get("chunked"):
            wire = _head(status, None, extra) + _chunks(body, max(1, len(body) // 5))
        else:
            wire = _head(status, len(body), extra) + body
        await conn.stream.send(wire)
        then = q.get("then", "")
        if close and q.get("linger"):
            conn.poisoned = True
            return True
        if close or then == "close":
            return False
        if then == "stray":
            # Half of an answer nobody asked for, on the idle connection: whoever reads it
            # next would take the next real answer's bytes as the rest of its body.
            await anyio.sleep(0.01)
            await conn.stream.send(_head(200, 100) + POISON)
            return True
        conn.next_action = then
        return True


class StallServer:
    """Accepts TCP connections and never says a word: a TLS handshake against it hangs."""

    __test__ = False

    def __init__(self) -> None:
        self.accepted = 0
        self.closed = 0
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        self.accepted += 1
        try:
            with anyio.move_on_after(_LIMIT):
                while True:
                    await stream.receive()  # swallow the ClientHello; wait for the close
        except _GONE:
            pass
        finally:
            self.closed += 1
            with contextlib.suppress(*_GONE):
                await stream.aclose()

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll ``condition`` until it holds (fails the test after ``timeout`` seconds)."""
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.002)


@contextlib.asynccontextmanager
async def serving(server: TestServer | StallServer) -> AsyncIterator[None]:
    """Run ``server`` on 127.0.0.1 (a free port) until the block ends."""
    listener: anyio.abc.Listener[anyio.abc.ByteStream]
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server.port = tcp.listeners[0].extra(anyio.abc.SocketAttribute.local_port)
    listener = tcp
    tls = getattr(server, "tls", None)
    if tls is not None:
        listener = TLSListener(tcp, tls, standard_compatible=False, handshake_timeout=_LIMIT)
    async with tcp, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _head(status: int, length: int | None, extra: list[tuple[str, str]] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Whatever')}"]
    lines += [f"{name}: {value}" for name, value in extra or ()]
    lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunks(body: bytes, size: int) -> bytes:
    out = bytearray()
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return bytes(out + b"0\r\n\r\n")


def _linger_zero(stream: anyio.abc.ByteStream) -> None:
    """Make the coming close send a TCP reset instead of a clean FIN."""
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
