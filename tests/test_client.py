"""PortfolioMarginProClient over httpx, mocked with respx, on asyncio and trio."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio
import httpx
import pytest
import respx
import trio
import trio.testing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import binance_pmpro.clock
from binance_pmpro import (
    AccountInfo,
    AccountStatus,
    AccountType,
    APIError,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    DecodeError,
    InvalidSignatureError,
    PortfolioMarginProClient,
    RateLimiter,
    RateLimitTimeoutError,
    ReadTimeoutError,
    ServerError,
)
from binance_pmpro.retry import NO_RETRY
from binance_pmpro.signing import RsaSigner

BASE = "https://api.binance.com"
PATH = "/sapi/v1/portfolio/account"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DATA = Path(__file__).parent / "data"
PASSWORD = "correct-horse-battery"
ENV_VARS = (
    "BINANCE_API_KEY",
    "BINANCE_API_SECRET",
    "BINANCE_PRIVATE_KEY_PATH",
    "BINANCE_PRIVATE_KEY_PASSWORD",
)

DOC_EXAMPLE = (DATA / "pmpro-examples" / "GET-v1_portfolio_account.json").read_bytes()
EXPECTED = AccountInfo(
    uni_mmr=Decimal("5167.92171923"),
    account_equity=Decimal("122607.35137903"),
    actual_equity=Decimal("142607.35137903"),
    account_maint_margin=Decimal("23.72469206"),
    account_initial_margin=Decimal("47.44938412"),
    total_available_balance=Decimal("122559.90199491"),
    account_status=AccountStatus.NORMAL,
    account_type=AccountType.PM_1,
)

# 1499827319559 ms (the reference's timestamp); the extra half millisecond keeps the float
# product away from a truncation boundary.
FIXED_TIME = 1499827319.5595


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def account_route(router: respx.MockRouter) -> respx.Route:
    return router.get(PATH).mock(
        return_value=httpx.Response(
            200, content=DOC_EXAMPLE, headers={"X-SAPI-USED-UID-WEIGHT-1M": "5"}
        )
    )


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binance_pmpro.clock, "time", SimpleNamespace(time=lambda: FIXED_TIME))


def client(**kw: Any) -> PortfolioMarginProClient:
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "api_secret": SECRET,
        "transport": "httpx",
        "time_sync": False,
    }
    options.update(kw)
    if "private_key" in kw:
        options.pop("api_secret")
    return PortfolioMarginProClient(**options)


def query_of(request: httpx.Request) -> str:
    return request.url.query.decode()


def hmac_ok(query: str, secret: str = SECRET) -> bool:
    prefix, sep, signature = query.rpartition("&signature=")
    expected = hmac.new(secret.encode(), prefix.encode(), hashlib.sha256).hexdigest()
    return bool(sep) and signature == expected


def used_weight(c: PortfolioMarginProClient) -> int:
    return sum(snapshot.used for snapshot in c.rate_limit)


# --- credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "algorithm"),
    [
        ({"api_secret": SECRET}, "HMAC_SHA256"),
        ({"private_key": DATA / "rsa-2048.pem"}, "RSA"),
        ({"private_key": str(DATA / "ed25519.pem")}, "ED25519"),
        ({"private_key": (DATA / "ed25519.pem").read_text()}, "ED25519"),
        (
            {"private_key": DATA / "rsa-2048-encrypted.pem", "private_key_password": PASSWORD},
            "RSA",
        ),
    ],
    ids=["hmac", "rsa-path", "ed25519-str-path", "ed25519-pem", "rsa-encrypted"],
)
def test_client_credentials_from_arguments_pick_signer(kw: dict[str, Any], algorithm: str) -> None:
    c = client(**kw)
    assert c.signing_algorithm == algorithm


def test_client_credentials_from_env_hmac(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", SECRET)
    c = PortfolioMarginProClient(transport="httpx")
    assert c.signing_algorithm == "HMAC_SHA256"


def test_client_credentials_from_env_encrypted_private_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    monkeypatch.setenv("BINANCE_PRIVATE_KEY_PATH", str(DATA / "ed25519-encrypted.pem"))
    monkeypatch.setenv("BINANCE_PRIVATE_KEY_PASSWORD", PASSWORD)
    assert PortfolioMarginProClient().signing_algorithm == "ED25519"


def test_client_explicit_secret_wins_over_env_private_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_PRIVATE_KEY_PATH", str(DATA / "ed25519.pem"))
    assert client().signing_algorithm == "HMAC_SHA256"


def test_client_env_api_key_with_argument_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    assert PortfolioMarginProClient(api_secret=SECRET).signing_algorithm == "HMAC_SHA256"


@pytest.mark.parametrize(
    ("kw", "env", "match"),
    [
        (
            {"api_key": API_KEY, "api_secret": SECRET, "private_key": DATA / "ed25519.pem"},
            {},
            "not both",
        ),
        (
            {"api_key": API_KEY},
            {"BINANCE_API_SECRET": SECRET, "BINANCE_PRIVATE_KEY_PATH": str(DATA / "ed25519.pem")},
            "keep only one",
        ),
        ({"api_secret": SECRET}, {}, "no API key"),
        ({}, {}, "no API key"),
        ({"api_key": "", "api_secret": SECRET}, {}, "no API key"),
        ({"api_key": API_KEY + "\n", "api_secret": SECRET}, {}, "whitespace"),
        ({"api_key": API_KEY, "api_secret": ""}, {}, "empty"),
        (
            {"api_key": API_KEY, "private_key": DATA / "ed25519-encrypted.pem"},
            {},
            "encrypted",
        ),
        (
            {
                "api_key": API_KEY,
                "private_key": DATA / "ed25519-encrypted.pem",
                "private_key_password": "wrong",
            },
            {},
            "password",
        ),
        ({"api_key": API_KEY, "private_key": DATA / "missing.pem"}, {}, "missing.pem"),
    ],
    ids=[
        "secret-and-key",
        "env-secret-and-key",
        "secret-without-api-key",
        "nothing",
        "empty-api-key",
        "api-key-newline",
        "empty-secret",
        "encrypted-no-password",
        "wrong-password",
        "missing-key-file",
    ],
)
def test_client_bad_credentials_raise_configuration_error_at_construction(
    monkeypatch: pytest.MonkeyPatch, kw: dict[str, Any], env: dict[str, str], match: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=match):
        PortfolioMarginProClient(**kw)


@pytest.mark.anyio
async def test_client_key_only_signed_call_raises_before_any_request(
    account_route: respx.Route,
) -> None:
    c = PortfolioMarginProClient(api_key=API_KEY, transport="httpx", time_sync=False)
    assert c.signing_algorithm is None
    async with c:
        with pytest.raises(ConfigurationError, match="SIGNED"):
            await c.account_info()
        assert account_route.call_count == 0
        assert used_weight(c) == 0


@pytest.mark.anyio
async def test_client_key_only_signed_call_with_time_sync_sends_nothing(
    router: respx.MockRouter,
) -> None:
    time_route = router.get("/api/v3/time").mock(
        return_value=httpx.Response(200, json={"serverTime": 1499827319559})
    )
    account_route = router.get(PATH).mock(return_value=httpx.Response(200, content=DOC_EXAMPLE))
    async with PortfolioMarginProClient(api_key=API_KEY, transport="httpx") as c:
        with pytest.raises(ConfigurationError, match="SIGNED"):
            await c.account_info()
    assert account_route.call_count == 0
    assert time_route.call_count == 0


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://api.binance.com",
        "https://api1.binance.com/",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "http://localhost:8080",
    ],
)
def test_client_base_url_https_or_loopback_http_accepted(url: str) -> None:
    assert client(base_url=url).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://api.binance.com",
        "http://10.0.0.1:8080",
        "http://localhost.example.com",
        "ftp://127.0.0.1",
        "api.binance.com",
        "https://api.binance.com/?x=1",
    ],
)
def test_client_base_url_cleartext_or_malformed_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        client(base_url=url)


def test_client_recv_window_max_accepted_in_constructor() -> None:
    assert client(recv_window=60000).recv_window == 60000


@pytest.mark.parametrize("value", [60001, 0, -5, True, 5000.0])
def test_client_recv_window_out_of_bounds_refused_in_constructor(value: object) -> None:
    with pytest.raises(ConfigurationError, match="recv_window"):
        client(recv_window=value)


@pytest.mark.anyio
@pytest.mark.parametrize("value", [60001, 0, True])
async def test_client_recv_window_out_of_bounds_refused_per_call(
    account_route: respx.Route, value: object
) -> None:
    async with client() as c:
        with pytest.raises(ConfigurationError, match="recv_window"):
            await c.account_info(recv_window=value)  # type: ignore[arg-type]
    assert account_route.call_count == 0


@pytest.mark.anyio
async def test_client_recv_window_per_call_max_sent(account_route: respx.Route) -> None:
    async with client() as c:
        await c.account_info(recv_window=60000)
    query = query_of(account_route.calls.last.request)
    assert query.startswith("recvWindow=60000&timestamp=")
    assert hmac_ok(query)


# --- the request on the wire -----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("fixed_clock")
async def test_client_account_info_sends_signed_request_matching_derived_vector(
    account_route: respx.Route,
) -> None:
    async with client() as c:
        info = await c.account_info()
    assert info == EXPECTED
    request = account_route.calls.last.request
    assert request.method == "GET"
    assert request.url.path == PATH
    assert request.headers["X-MBX-APIKEY"] == API_KEY
    assert query_of(request) == (
        "recvWindow=5000&timestamp=1499827319559"
        "&signature=82f4e72e95e63d666b6da651e82a701722ad8a785a169318d91f36f279c55821"
    )
    assert request.content == b""


@pytest.mark.anyio
async def test_client_signature_last_and_valid_with_live_clock(account_route: respx.Route) -> None:
    async with client() as c:
        await c.account_info()
    query = query_of(account_route.calls.last.request)
    names = [name for name, _ in parse_qsl(query)]
    assert names == ["recvWindow", "timestamp", "signature"]
    assert hmac_ok(query)
    assert not hmac_ok(query, secret=SECRET[::-1])


@pytest.mark.anyio
@pytest.mark.usefixtures("fixed_clock")
async def test_client_rsa_key_sends_pinned_percent_encoded_signature(
    account_route: respx.Route,
) -> None:
    async with client(private_key=DATA / "rsa-2048.pem") as c:
        await c.account_info()
    query = query_of(account_route.calls.last.request)
    prefix, _, encoded = query.rpartition("&signature=")
    assert prefix == "recvWindow=5000&timestamp=1499827319559"
    expected = RsaSigner(DATA / "rsa-2048.pem").sign(prefix.encode())
    assert encoded == expected.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    assert "%2B" in encoded or "%2F" in encoded  # this key's signature does need escaping
    assert encoded.endswith("%3D%3D")


@pytest.mark.anyio
async def test_client_ed25519_signature_verifies_over_sent_prefix(
    account_route: respx.Route,
) -> None:
    async with client(private_key=DATA / "ed25519.pem") as c:
        await c.account_info()
    prefix, _, encoded = query_of(account_route.calls.last.request).rpartition("&signature=")
    public = serialization.load_pem_public_key((DATA / "ed25519.pub.pem").read_bytes())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(base64.b64decode(unquote(encoded)), prefix.encode())


# --- errors from Binance ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_client_auth_error_carries_status_code_msg_headers(router: respx.MockRouter) -> None:
    msg = "Invalid API-key, IP, or permissions for action."
    router.get(PATH).mock(
        return_value=httpx.Response(
            401, json={"code": -2015, "msg": msg}, headers={"X-SAPI-USED-UID-WEIGHT-1M": "10"}
        )
    )
    async with client() as c:
        with pytest.raises(AuthenticationError) as info:
            await c.account_info()
    err = info.value
    assert (err.status, err.code, err.msg) == (401, -2015, msg)
    assert err.headers["x-sapi-used-uid-weight-1m"] == "10"


@pytest.mark.anyio
async def test_client_invalid_signature_error(router: respx.MockRouter) -> None:
    router.get(PATH).mock(
        return_value=httpx.Response(
            400, json={"code": -1022, "msg": "Signature for this request is not valid."}
        )
    )
    async with client() as c:
        with pytest.raises(InvalidSignatureError):
            await c.account_info()


@pytest.mark.anyio
async def test_client_error_body_with_http_200_raises_api_error(router: respx.MockRouter) -> None:
    router.get(PATH).mock(
        return_value=httpx.Response(
            200, json={"code": -21001, "msg": "request ID is not a Portfolio Margin Account"}
        )
    )
    async with client() as c:
        with pytest.raises(APIError) as info:
            await c.account_info()
    assert info.value.code == -21001


@pytest.mark.anyio
async def test_client_html_5xx_raises_server_error_with_excerpt(router: respx.MockRouter) -> None:
    route = router.get(PATH).mock(
        return_value=httpx.Response(502, content=b"<html><h1>502 Bad Gateway</h1></html>")
    )
    async with client(retry=NO_RETRY) as c:
        with pytest.raises(ServerError, match="502 Bad Gateway") as info:
            await c.account_info()
    assert info.value.status == 502
    assert route.call_count == 1


@pytest.mark.anyio
async def test_client_html_200_raises_decode_error(router: respx.MockRouter) -> None:
    router.get(PATH).mock(return_value=httpx.Response(200, content=b"<html>maintenance</html>"))
    async with client() as c:
        with pytest.raises(DecodeError, match="maintenance"):
            await c.account_info()


# --- transport errors and refunds ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("side_effect", "error", "refunded"),
    [
        (httpx.ConnectError, ConnectError, True),
        (httpx.ReadTimeout, ReadTimeoutError, False),
        (httpx.RemoteProtocolError, ConnectionLostError, False),
    ],
    ids=["connect", "read-timeout", "protocol"],
)
async def test_client_transport_error_mapped_and_unsent_weight_refunded(
    router: respx.MockRouter, side_effect: type[Exception], error: type[Exception], refunded: bool
) -> None:
    route = router.get(PATH).mock(side_effect=side_effect("boom"))
    async with client(retry=NO_RETRY) as c:
        with pytest.raises(error) as info:
            await c.account_info()
        assert type(info.value) is error
        assert info.value.__cause__ is None
        assert route.call_count == 1
        assert used_weight(c) == (0 if refunded else 5)
        assert c.rate_limit[0].key.endpoint == PATH


@pytest.mark.anyio
async def test_client_connect_error_then_success_charges_one_weight(
    router: respx.MockRouter,
) -> None:
    route = router.get(PATH).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, content=DOC_EXAMPLE)]
    )
    async with client() as c:
        assert await c.account_info() == EXPECTED
        assert route.call_count == 2
        assert used_weight(c) == 5
    first, second = (query_of(call.request) for call in route.calls)
    assert hmac_ok(first)
    assert hmac_ok(second)


# --- lifecycle ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_client_user_http_client_not_closed_by_aclose(account_route: respx.Route) -> None:
    async with httpx.AsyncClient() as http:
        c = client(http_client=http)
        assert await c.account_info() == EXPECTED
        await c.aclose()
        assert not http.is_closed
        assert account_route.call_count == 1
        # still usable by its owner
        response = await http.get(BASE + PATH)
        assert response.status_code == 200


@pytest.mark.anyio
async def test_client_own_http_client_closed_by_aclose(account_route: respx.Route) -> None:
    c = client()
    await c.account_info()
    assert c.transport_name == "httpx"
    own = c._transport._client  # type: ignore[union-attr]
    assert isinstance(own, httpx.AsyncClient)
    assert not own.is_closed
    await c.aclose()
    assert own.is_closed
    await c.aclose()  # idempotent


@pytest.fixture
def sync_built_client() -> PortfolioMarginProClient:
    # Built in synchronous code, with no event loop running.
    return client()


@pytest.mark.anyio
async def test_client_constructed_outside_event_loop_works_inside(
    sync_built_client: PortfolioMarginProClient, account_route: respx.Route
) -> None:
    async with sync_built_client as c:
        assert await c.account_info() == EXPECTED


# --- concurrency and the limiter ------------------------------------------------------------------


@pytest.mark.anyio
async def test_client_fifty_concurrent_calls_all_succeed(account_route: respx.Route) -> None:
    results: list[AccountInfo] = []

    async def one(c: PortfolioMarginProClient) -> None:
        results.append(await c.account_info())

    async with client() as c:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one, c)
        assert used_weight(c) == 250
    assert results == [EXPECTED] * 50
    assert account_route.call_count == 50
    assert all(hmac_ok(query_of(call.request)) for call in account_route.calls)


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}), id="trio")],
)
@pytest.mark.anyio
async def test_client_timestamp_taken_after_limiter_wait(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter
) -> None:
    # The wall clock follows trio's virtual clock, so the limiter's wait moves both.
    epoch = 1_700_000_000.0
    monkeypatch.setattr(
        binance_pmpro.clock, "time", SimpleNamespace(time=lambda: epoch + trio.current_time())
    )
    sent: list[tuple[float, int, str]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        query = query_of(request)
        sent.append((trio.current_time(), int(dict(parse_qsl(query))["timestamp"]), query))
        return httpx.Response(200, content=DOC_EXAMPLE)

    router.get(PATH).mock(side_effect=respond)
    limiter = RateLimiter(uid_limit=10)  # room for one weight-5 call per window
    async with client(rate_limiter=limiter, max_wait=300) as c, anyio.create_task_group() as tg:
        tg.start_soon(c.account_info)
        tg.start_soon(c.account_info)
    (t1, stamp1, _), (t2, stamp2, _) = sent
    assert t2 - t1 >= 30.0  # the second call really waited for the window
    for at, stamp, query in sent:
        assert stamp == int((epoch + at) * 1000)  # stamped when sent, not when queued
        assert hmac_ok(query)
    assert stamp2 - stamp1 == pytest.approx((t2 - t1) * 1000, abs=2)


@pytest.mark.anyio
async def test_client_limiter_exhausted_with_no_wait_raises_without_sending(
    account_route: respx.Route,
) -> None:
    async with client(rate_limiter=RateLimiter(uid_limit=10), max_wait=0) as c:
        await c.account_info()
        with pytest.raises(RateLimitTimeoutError):
            await c.account_info()
    assert account_route.call_count == 1


@pytest.mark.anyio
async def test_client_rate_limiter_none_sends_without_limiting(account_route: respx.Route) -> None:
    async with client(rate_limiter=None, uid_limit=10, max_wait=0) as c:
        for _ in range(10):
            assert await c.account_info() == EXPECTED
        assert c.rate_limit == []
    assert account_route.call_count == 10


@pytest.mark.anyio
async def test_client_default_limiter_counts_weight_five_on_uid_budget(
    account_route: respx.Route,
) -> None:
    async with client() as c:
        await c.account_info()
        (snapshot,) = c.rate_limit
    assert snapshot.used == 5
    assert snapshot.limit == 180_000
    assert snapshot.key.kind.value == "uid"
    assert API_KEY not in snapshot.key.owner
    assert snapshot.server_used == 5
