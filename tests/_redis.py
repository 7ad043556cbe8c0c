"""A real redis-server on 127.0.0.1 for the shared-budget tests.

Fixtures (tests/conftest.py imports them for every test module):

- ``redis_url`` (per test): the URL of a Redis flushed for this test. It is
  ``$BINANCE_PMPRO_REDIS_TEST_URL`` when set, else a ``redis-server`` this module starts
  once per session on a free port (no persistence, a temporary directory).
- ``killable_redis`` (per test): a private :class:`RedisServer` the test may stop (SIGKILL,
  like a crash) and start again on the same port.

Where no Redis can be had, the tests skip with a loud reason, unless
``BINANCE_PMPRO_REQUIRE_REDIS=1``: then they fail (CI sets it, so Redis tests never
silently vanish).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

TEST_URL_ENV = "BINANCE_PMPRO_REDIS_TEST_URL"
REQUIRE_ENV = "BINANCE_PMPRO_REQUIRE_REDIS"


def redis_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def no_redis(reason: str) -> None:
    """Skip loudly, or fail when Redis is required."""
    message = f"NO REDIS, shared-budget test not run: {reason}"
    if redis_required():
        pytest.fail(f"{message} ({REQUIRE_ENV} is set)")
    pytest.skip(message)


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in (
        "/usr/bin/redis-server",
        "/usr/sbin/redis-server",
        "/usr/local/bin/redis-server",
    ):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(host: str, port: int, *words: str, timeout: float = 5.0) -> bytes:
    """One RESP command over a plain socket (no client library, no event loop)."""
    payload = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(65536)


class RedisServer:
    """A redis-server of our own on 127.0.0.1: ``start``, ``stop`` (SIGKILL, like a crash)
    and ``start`` again on the same port."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="bpm-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if _command("127.0.0.1", self.port, "PING", timeout=1.0).startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flush(self) -> None:
        _command("127.0.0.1", self.port, "FLUSHALL")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def flush(url: str) -> None:
    parts = urlsplit(url)
    _command(parts.hostname or "127.0.0.1", parts.port or 6379, "FLUSHALL")


@pytest.fixture(scope="session")
def redis_session_url() -> Iterator[str | None]:
    """The session's Redis URL, or None (the reason is reported by ``redis_url``)."""
    url = os.environ.get(TEST_URL_ENV)
    if url:
        yield url
        return
    binary = redis_server_binary()
    if binary is None:
        yield None
        return
    server = RedisServer(binary)
    try:
        server.start()
    except (RuntimeError, OSError):
        server.close()
        yield None
        return
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_session_url: str | None) -> str:
    """A Redis URL, flushed for this test."""
    if redis_session_url is None:
        no_redis(f"no redis-server on the PATH could be started, and {TEST_URL_ENV} is not set")
    assert redis_session_url is not None
    try:
        flush(redis_session_url)
    except OSError as exc:
        no_redis(f"{redis_session_url} does not answer: {exc}")
    return redis_session_url


@pytest.fixture
def killable_redis() -> Iterator[RedisServer]:
    """A private redis-server the test may kill and restart (same port)."""
    binary = redis_server_binary()
    if binary is None:
        no_redis("the Redis-down tests need a redis-server binary to kill and restart")
    assert binary is not None
    server = RedisServer(binary)
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.close()
        no_redis(f"could not start redis-server: {exc}")
    with contextlib.ExitStack() as stack:
        stack.callback(server.close)
        yield server
