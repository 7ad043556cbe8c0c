"""Decision 6: which transport ``transport="auto"`` picks, and when "fast" is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from binance_pmpro import ConfigurationError, PortfolioMarginProClient
from binance_pmpro.testing import FakeExchange

pytestmark = pytest.mark.anyio


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async with FakeExchange().serve(port=0) as server:
        yield server.base_url


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)


async def _chosen(base_url: str, **options: object) -> str | None:
    async with PortfolioMarginProClient("k", "s", base_url=base_url, **options) as client:  # type: ignore[arg-type]
        assert client.transport_name is None  # nothing is chosen before the first call
        await client.server_time()
        return client.transport_name


async def test_auto_picks_fast_on_asyncio_and_httpx_on_trio(
    base_url: str, anyio_backend: str
) -> None:
    expected = "fast" if anyio_backend == "asyncio" else "httpx"
    assert await _chosen(base_url) == expected


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
async def test_auto_falls_back_to_httpx_when_a_proxy_is_configured(
    base_url: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the proxy is never really used here
    assert await _chosen(base_url) == "httpx"


async def test_explicit_httpx_is_honoured(base_url: str) -> None:
    assert await _chosen(base_url, transport="httpx") == "httpx"


async def test_fast_on_trio_is_refused_with_reason(base_url: str, anyio_backend: str) -> None:
    if anyio_backend != "trio":
        assert await _chosen(base_url, transport="fast") == "fast"
        return
    async with PortfolioMarginProClient("k", "s", base_url=base_url, transport="fast") as client:
        with pytest.raises(ConfigurationError, match="not asyncio"):
            await client.server_time()


def test_fast_with_an_httpx_client_is_refused_at_construction() -> None:
    import httpx

    with pytest.raises(ConfigurationError, match="http_client"):
        PortfolioMarginProClient("k", "s", transport="fast", http_client=httpx.AsyncClient())


def test_http2_with_the_fast_transport_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"HTTP/1\.1 only"):
        PortfolioMarginProClient("k", "s", transport="fast", http2=True)


async def test_http2_selects_httpx_and_needs_h2(base_url: str) -> None:
    import importlib.util

    async with PortfolioMarginProClient("k", "s", base_url=base_url, http2=True) as client:
        if importlib.util.find_spec("h2") is None:
            with pytest.raises(ConfigurationError, match="h2"):
                await client.server_time()
        else:
            await client.server_time()
            assert client.transport_name == "httpx"
