"""End to end: the real PortfolioMarginProClient against FakeExchange, in-process and over
loopback HTTP, on asyncio and trio, for every signer type; and every injected fault seen
through the client as its documented exception.

Fault tests count the requests the exchange saw (``fake.requests``), so a change of the
client's retry policy shows up as a one-number change in ``FAULTS`` below.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import anyio
import pytest
import trio.testing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from binance_pmpro import (
    AccountInfo,
    AccountStatus,
    AccountType,
    AuthenticationError,
    BinanceError,
    ConnectionLostError,
    DecodeError,
    InvalidSignatureError,
    IPBannedError,
    NotPortfolioMarginError,
    PortfolioMarginProClient,
    RateLimitedError,
    RateLimitTimeoutError,
    ReadTimeoutError,
    ServerError,
    TimestampError,
)
from binance_pmpro.decoding import decode_account_info
from binance_pmpro.endpoints import ACCOUNT_INFO, SERVER_TIME
from binance_pmpro.retry import RetryPolicy
from binance_pmpro.testing import DEFAULT_ACCOUNT, FakeExchange, FaultKind

pytestmark = pytest.mark.anyio

ACCOUNT = ACCOUNT_INFO.path
TIME = SERVER_TIME.path
RETRIES = RetryPolicy(base_delay=0.0, max_delay=0.0)  # the default attempts, no real sleeping
ATTEMPTS = RETRIES.max_attempts
MODES = ["in_process", "loopback"]
SIGNERS = ["hmac", "rsa", "ed25519"]


# --- keys and clients --------------------------------------------------------------------


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> tuple[bytes, bytes]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture(scope="module")
def rsa_pems() -> tuple[bytes, bytes]:
    """A throwaway RSA-2048 key pair (private PEM, public PEM)."""
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ed25519_pems() -> tuple[bytes, bytes]:
    """A throwaway Ed25519 key pair (private PEM, public PEM)."""
    return _pem(ed25519.Ed25519PrivateKey.generate())


@pytest.fixture
def fake() -> FakeExchange:
    return FakeExchange()


def credentials(
    fake: FakeExchange, kind: str, rsa_pems: tuple[bytes, bytes], ed_pems: tuple[bytes, bytes]
) -> dict[str, Any]:
    """Register a key of ``kind`` on ``fake``; the client's credential arguments for it."""
    if kind == "hmac":
        return {"api_key": fake.demo_api_key, "api_secret": fake.demo_api_secret}
    if kind == "rsa":
        fake.add_rsa_key("rsaKeyE2E", rsa_pems[1])
        return {"api_key": "rsaKeyE2E", "private_key": rsa_pems[0]}
    fake.add_ed25519_key("edKeyE2E", ed_pems[1])
    return {"api_key": "edKeyE2E", "private_key": ed_pems[0]}


@contextlib.asynccontextmanager
async def bound_client(
    fake: FakeExchange, mode: str, **options: Any
) -> AsyncIterator[PortfolioMarginProClient]:
    """A client talking to ``fake`` in-process or over loopback HTTP (the default
    transport choice), closed afterwards."""
    options.setdefault("api_key", fake.demo_api_key)
    if "private_key" not in options:
        options.setdefault("api_secret", fake.demo_api_secret)
    if mode == "in_process":
        async with (
            fake.http_client() as http,
            PortfolioMarginProClient(base_url=fake.base_url, http_client=http, **options) as c,
        ):
            yield c
    else:
        async with (
            fake.serve() as server,
            PortfolioMarginProClient(base_url=server.base_url, **options) as client,
        ):
            yield client


def seen(fake: FakeExchange, path: str = ACCOUNT) -> list[int | None]:
    """Statuses of the requests to ``path`` the exchange saw, in order."""
    return [record.status for record in fake.requests if record.path == path]


EXPECTED = decode_account_info(
    b'{"uniMMR":"5167.92171923","accountEquity":"122607.35137903",'
    b'"actualEquity":"142607.35137903","accountMaintMargin":"23.72469206",'
    b'"accountInitialMargin":"47.44938412","totalAvailableBalance":"122,559.90199491",'
    b'"accountStatus":"NORMAL","accountType":"PM_1"}'
)


# --- the main job --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SIGNERS)
async def test_account_info_each_signer_and_mode_returns_exact_account(
    fake: FakeExchange,
    mode: str,
    kind: str,
    rsa_pems: tuple[bytes, bytes],
    ed25519_pems: tuple[bytes, bytes],
) -> None:
    creds = credentials(fake, kind, rsa_pems, ed25519_pems)
    async with bound_client(fake, mode, **creds) as client:
        info = await client.account_info()
        assert client.signing_algorithm == {"hmac": "HMAC_SHA256", "rsa": "RSA"}.get(
            kind, "ED25519"
        )
    assert info == EXPECTED
    assert info.uni_mmr == Decimal("5167.92171923")
    assert info.total_available_balance == Decimal("122559.90199491")
    assert (info.account_status, info.account_type) == (AccountStatus.NORMAL, AccountType.PM_1)
    [record] = [r for r in fake.requests if r.path == ACCOUNT]
    assert (record.status, record.weight, record.api_key) == (200, 5, creds["api_key"])
    assert fake.used_weight() == 5


@pytest.mark.parametrize("mode", MODES)
async def test_account_state_set_on_the_fake_reaches_the_client(
    fake: FakeExchange, mode: str
) -> None:
    fake.set_account(uni_mmr=Decimal("1.07"), account_status="REDUCE_ONLY", account_type="PM_9")
    async with bound_client(fake, mode) as client:
        info = await client.account_info()
        server_time = await client.server_time()
    assert info.uni_mmr == Decimal("1.07")
    assert info.account_status is AccountStatus.REDUCE_ONLY
    assert (info.account_type, info.account_type_raw) == (AccountType.UNKNOWN, "PM_9")
    assert abs(server_time - time.time() * 1000) < 60_000


@pytest.mark.parametrize("mode", MODES)
async def test_concurrent_calls_all_succeed_and_are_all_counted(
    fake: FakeExchange, mode: str
) -> None:
    results: list[AccountInfo] = []

    async def one(client: PortfolioMarginProClient) -> None:
        results.append(await client.account_info())

    async with bound_client(fake, mode) as client:
        await client.sync_time()
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(one, client)
    assert results == [EXPECTED] * 20
    assert seen(fake) == [200] * 20
    assert sum(usage.weight for usage in fake.ledger if usage.key.endpoint == ACCOUNT) == 100


async def test_plugin_fixtures_give_a_bound_client(
    fake_exchange: FakeExchange, fake_client: PortfolioMarginProClient
) -> None:
    fake_exchange.set_account(account_status="MARGIN_CALL")
    info = await fake_client.account_info()
    assert info.account_status is AccountStatus.MARGIN_CALL
    assert seen(fake_exchange) == [200]


# --- every fault through the client ------------------------------------------------------

FAULTS: list[tuple[FaultKind, dict[str, Any], type[BinanceError], int]] = [
    # kind, options, exception the caller gets, account requests the exchange sees
    (FaultKind.SERVER_ERROR_JSON, {}, ServerError, ATTEMPTS),
    (FaultKind.SERVER_ERROR_EMPTY, {}, ServerError, ATTEMPTS),
    (FaultKind.HTML_ERROR_PAGE, {}, ServerError, ATTEMPTS),
    (FaultKind.TRUNCATED_JSON, {}, DecodeError, 1),
    (FaultKind.MALFORMED_JSON, {}, DecodeError, 1),
    (FaultKind.SLOW_RESPONSE, {"delay": 5.0}, ReadTimeoutError, ATTEMPTS),
    (FaultKind.DROP_CONNECTION, {}, ConnectionLostError, ATTEMPTS),
    (FaultKind.RESET_MID_BODY, {}, ConnectionLostError, ATTEMPTS),
    (FaultKind.RATE_LIMITED, {"retry_after": 60}, RateLimitedError, 1),
    (FaultKind.IP_BANNED, {}, IPBannedError, 1),
    (
        FaultKind.ERROR,
        {"code": -21001, "msg": "invalid request: request ID is not a Portfolio Margin Account"},
        NotPortfolioMarginError,
        1,
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kind", "options", "expected", "requests"), FAULTS, ids=[f[0].value for f in FAULTS]
)
async def test_fault_reaches_caller_as_documented_exception(
    fake: FakeExchange,
    mode: str,
    kind: FaultKind,
    options: dict[str, Any],
    expected: type[BinanceError],
    requests: int,
) -> None:
    # No time sync: every attempt then starts on a fresh connection, so the count does not
    # depend on whether the transport resends a GET once on a reused keep-alive connection.
    async with bound_client(fake, mode, retry=RETRIES, timeout=0.2, time_sync=False) as client:
        rule = fake.inject(kind, times=ATTEMPTS + 5, path=ACCOUNT, **options)
        with pytest.raises(expected) as caught:
            await client.account_info()
        assert type(caught.value) is expected
        assert rule.hits == requests
        assert len(seen(fake)) == requests
        # A 429 pauses the client's budget and a ban outlives its fault, both by design.
        if kind not in (FaultKind.RATE_LIMITED, FaultKind.IP_BANNED):
            fake.clear_faults()
            assert await client.account_info() == EXPECTED


@pytest.mark.parametrize("mode", MODES)
async def test_html_error_page_error_carries_an_excerpt(fake: FakeExchange, mode: str) -> None:
    fake.inject(FaultKind.HTML_ERROR_PAGE, times=ATTEMPTS, path=ACCOUNT)
    async with bound_client(fake, mode, retry=RETRIES) as client:
        with pytest.raises(ServerError) as caught:
            await client.account_info()
    assert caught.value.status == 502
    assert caught.value.code is None
    assert "502 Bad Gateway" in caught.value.msg


async def test_truncated_json_error_names_the_problem(fake: FakeExchange) -> None:
    fake.inject(FaultKind.TRUNCATED_JSON, path=ACCOUNT)
    async with bound_client(fake, "in_process") as client:
        with pytest.raises(DecodeError, match="malformed or truncated JSON") as caught:
            await client.account_info()
    assert caught.value.status == 200
    assert caught.value.excerpt.startswith('{"uniMMR"')


async def test_ip_ban_reports_when_it_ends(fake: FakeExchange) -> None:
    fake.inject(FaultKind.IP_BANNED, seconds=600, path=ACCOUNT)
    async with bound_client(fake, "in_process") as client:
        with pytest.raises(IPBannedError) as caught:
            await client.account_info()
    until = fake.banned_until_ms()
    assert until is not None
    assert caught.value.banned_until == until / 1000
    assert caught.value.retry_after == 600


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [FaultKind.TIMESTAMP_ERROR, FaultKind.CLOCK_SKEW])
async def test_one_off_1021_is_resynced_and_retried_once(
    fake: FakeExchange, kind: FaultKind
) -> None:
    options = {"offset_ms": -30_000} if kind is FaultKind.CLOCK_SKEW else {}
    async with bound_client(fake, "in_process") as client:
        fake.inject(kind, path=ACCOUNT, **options)
        assert await client.account_info() == EXPECTED
    assert seen(fake) == [400, 200]
    assert len(seen(fake, TIME)) == 2  # first use, then the resync after -1021


@pytest.mark.parametrize("mode", MODES)
async def test_server_clock_far_off_is_measured_by_time_sync(fake: FakeExchange, mode: str) -> None:
    fake.clock_offset_ms = 90_000
    async with bound_client(fake, mode) as client:
        assert await client.account_info() == EXPECTED
        assert 85_000 < client.clock.offset_ms < 95_000
    assert seen(fake) == [200]


async def test_server_clock_far_off_without_time_sync_raises_timestamp_error(
    fake: FakeExchange,
) -> None:
    fake.clock_offset_ms = -90_000
    async with bound_client(fake, "in_process", time_sync=False) as client:
        with pytest.raises(TimestampError) as caught:
            await client.account_info()
    assert (caught.value.status, caught.value.code) == (400, -1021)
    assert seen(fake) == [400, 400]  # -1021 is retried once
    assert seen(fake, TIME) == []


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_key_raises_authentication_error(fake: FakeExchange, mode: str) -> None:
    async with bound_client(fake, mode, api_key="NotRegistered123", api_secret="x") as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.account_info()
    assert (caught.value.status, caught.value.code) == (401, -2015)
    assert seen(fake) == [401]


@pytest.mark.parametrize("kind", SIGNERS)
async def test_wrong_secret_or_key_raises_invalid_signature(
    fake: FakeExchange,
    kind: str,
    rsa_pems: tuple[bytes, bytes],
    ed25519_pems: tuple[bytes, bytes],
) -> None:
    creds = credentials(fake, kind, rsa_pems, ed25519_pems)
    if kind == "hmac":
        creds["api_secret"] = "not-the-secret"
    else:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        creds["private_key"] = _pem(
            other if kind == "rsa" else ed25519.Ed25519PrivateKey.generate()
        )[0]
    async with bound_client(fake, "in_process", **creds) as client:
        with pytest.raises(InvalidSignatureError) as caught:
            await client.account_info()
    assert (caught.value.status, caught.value.code) == (400, -1022)
    assert seen(fake) == [400]


# --- rate limits ---------------------------------------------------------------------------


def _clock_at_minute_start() -> Callable[[], float]:
    """A server clock that runs with the wall clock but starts 1 s into a minute, so a
    short test never sees the window roll over."""
    started = time.time() * 1000
    anchor = started - started % 60_000 + 1000
    return lambda: anchor + (time.time() * 1000 - started)


async def test_client_hammering_past_429_is_banned_with_418() -> None:
    fake = FakeExchange(uid_limit=10, ban_after=1, clock=_clock_at_minute_start())
    async with bound_client(fake, "in_process", rate_limiter=None, max_wait=0) as client:
        for _ in range(2):
            assert await client.account_info() == EXPECTED
        with pytest.raises(RateLimitedError) as limited:
            await client.account_info()
        assert type(limited.value) is RateLimitedError
        assert limited.value.retry_after is not None
        assert 1 <= limited.value.retry_after <= 59
        for _ in range(2):
            with pytest.raises(IPBannedError) as banned:
                await client.account_info()
            assert banned.value.retry_after == 120
    assert seen(fake) == [200, 200, 429, 418, 418]


async def test_client_with_limiter_never_gets_429_from_the_exchange() -> None:
    fake = FakeExchange(uid_limit=20, clock=_clock_at_minute_start())
    refused = 0
    async with bound_client(fake, "in_process", uid_limit=20, max_wait=0) as client:
        for _ in range(8):
            try:
                await client.account_info()
            except RateLimitTimeoutError:
                refused += 1
    assert refused > 0
    assert 429 not in seen(fake)
    assert fake.windows_over_limit() == []


# --- virtual time --------------------------------------------------------------------------


def test_slow_exchange_on_virtual_clock_times_out_without_real_waiting() -> None:
    """trio's MockClock drives the fake's server clock and the slow answer alike: the
    client's default 10 s read timeout expires in virtual time."""

    async def main() -> tuple[type[BaseException], float, list[int | None]]:
        fake = FakeExchange(clock=lambda: anyio.current_time() * 1000 + 1_700_000_000_000)
        fake.inject(FaultKind.SLOW_RESPONSE, delay=600, times=ATTEMPTS, path=ACCOUNT)
        started = anyio.current_time()
        # recvWindow 60 s: the client stamps with the wall clock while virtual time runs on.
        async with bound_client(
            fake,
            "in_process",
            retry=RetryPolicy(base_delay=0.0, max_delay=0.0, deadline=None),
            time_sync=False,
            recv_window=60_000,
        ) as client:
            client.clock.offset_ms = fake.now_ms() - time.time() * 1000
            try:
                await client.account_info()
            except ReadTimeoutError as exc:
                return type(exc), anyio.current_time() - started, seen(fake)
        raise AssertionError("no timeout")

    clock = trio.testing.MockClock(autojump_threshold=0)
    kind, virtual, statuses = anyio.run(main, backend="trio", backend_options={"clock": clock})
    assert kind is ReadTimeoutError
    assert virtual >= 10.0 * ATTEMPTS
    assert statuses == [200] * ATTEMPTS  # answered, but too late


def test_default_account_decodes_to_the_documented_values() -> None:
    assert dict(DEFAULT_ACCOUNT)["totalAvailableBalance"] == "122,559.90199491"
    assert EXPECTED.total_available_balance == Decimal("122559.90199491")
