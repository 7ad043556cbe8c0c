"""Secrets stay secret: the API secret, private keys, their passwords and request signatures
never appear in a repr, a str, an exception (with its traceback) or a log record."""

from __future__ import annotations

import copy
import logging
import pickle
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from binance_pmpro import (
    AuthenticationError,
    BinanceError,
    ConfigurationError,
    DecodeError,
    PortfolioMarginProClient,
    ReadTimeoutError,
    ServerError,
)
from binance_pmpro.endpoints import ACCOUNT_INFO
from binance_pmpro.requests import build_request
from binance_pmpro.retry import NO_RETRY
from binance_pmpro.signing import Ed25519Signer, HmacSigner, RsaSigner, load_signer

BASE = "https://api.binance.com"
PATH = "/sapi/v1/portfolio/account"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DATA = Path(__file__).parent / "data"
PASSWORD = "correct-horse-battery"
DOC_EXAMPLE = (DATA / "pmpro-examples" / "GET-v1_portfolio_account.json").read_bytes()


def _pem_chunks(name: str) -> list[str]:
    lines = (DATA / name).read_text().splitlines()
    return [line[:24] for line in lines if line and not line.startswith("-----")]


# Every fragment here is secret: none may show up anywhere observable.
KEY_MATERIAL = [
    SECRET,
    SECRET[:20],
    PASSWORD,
    *_pem_chunks("rsa-2048.pem"),
    *_pem_chunks("ed25519.pem"),
    *_pem_chunks("rsa-2048-encrypted.pem"),
    *_pem_chunks("ed25519-encrypted.pem"),
]

CREDENTIALS = [
    pytest.param({"api_secret": SECRET}, id="hmac"),
    pytest.param({"private_key": (DATA / "rsa-2048.pem").read_text()}, id="rsa-pem"),
    pytest.param({"private_key": DATA / "ed25519.pem"}, id="ed25519-path"),
    pytest.param(
        {"private_key": DATA / "ed25519-encrypted.pem", "private_key_password": PASSWORD},
        id="ed25519-encrypted",
    ),
]


def assert_clean(text: str, signatures: list[str] = ()) -> None:  # type: ignore[assignment]
    for secret in [*KEY_MATERIAL, *signatures]:
        assert secret not in text


def signatures_of(route: respx.Route) -> list[str]:
    """The raw and decoded signature values the mock received."""
    out: list[str] = []
    for call in route.calls:
        query = call.request.url.query.decode()
        encoded = query.rpartition("&signature=")[2]
        out += [encoded, dict(parse_qsl(query))["signature"]]
    return [s for s in out if s]


def exception_text(exc: BaseException) -> str:
    """Everything a user could see of an exception: str, repr, args, the printed traceback
    (with its chained exceptions as Python prints them) and retry notes."""
    parts = [str(exc), repr(exc), *map(str, exc.args), *traceback.format_exception(exc)]
    parts += [str(note) for note in getattr(exc, "attempts", ())]
    return "\n".join(parts)


def log_text(records: list[logging.LogRecord]) -> str:
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(exception_text(record.exc_info[1]))
    return "\n".join(parts)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "BINANCE_API_KEY",
        "BINANCE_API_SECRET",
        "BINANCE_PRIVATE_KEY_PATH",
        "BINANCE_PRIVATE_KEY_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


def client(credentials: dict[str, Any], **kw: Any) -> PortfolioMarginProClient:
    return PortfolioMarginProClient(
        api_key=API_KEY, transport="httpx", time_sync=False, **credentials, **kw
    )


# --- repr / str -------------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_client_repr_and_str_hide_secrets(credentials: dict[str, Any]) -> None:
    c = client(credentials)
    assert_clean(repr(c))
    assert_clean(str(c))
    assert "PortfolioMarginProClient" in repr(c)


@pytest.mark.parametrize(
    "signer",
    [
        HmacSigner(SECRET),
        RsaSigner(DATA / "rsa-2048.pem"),
        Ed25519Signer(DATA / "ed25519.pem"),
        load_signer(private_key=DATA / "rsa-2048-encrypted.pem", password=PASSWORD),
    ],
    ids=["hmac", "rsa", "ed25519", "rsa-encrypted"],
)
def test_signer_repr_and_str_hide_key(signer: object) -> None:
    assert_clean(repr(signer))
    assert_clean(str(signer))
    assert "redacted" in repr(signer)


@pytest.mark.parametrize(
    "signer",
    [HmacSigner(SECRET), RsaSigner(DATA / "rsa-2048.pem"), Ed25519Signer(DATA / "ed25519.pem")],
    ids=["hmac", "rsa", "ed25519"],
)
def test_prepared_request_repr_and_str_hide_signature(signer: Any) -> None:
    request = build_request(
        ACCOUNT_INFO, {}, api_key=API_KEY, signer=signer, timestamp_ms=1, recv_window=5000
    )
    encoded = request.query.rpartition("&signature=")[2]
    raw = signer.sign(b"recvWindow=5000&timestamp=1")
    for text in (repr(request), str(request)):
        assert_clean(text, [encoded, raw])
        assert "<redacted>" in text


# --- pickling -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signer",
    [HmacSigner(SECRET), RsaSigner(DATA / "rsa-2048.pem"), Ed25519Signer(DATA / "ed25519.pem")],
    ids=["hmac", "rsa", "ed25519"],
)
def test_signer_pickle_and_copy_refused(signer: object) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(signer)
    with pytest.raises(TypeError):
        copy.deepcopy(signer)


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_client_pickle_refused(credentials: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(client(credentials))


# --- exceptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"private_key": DATA / "ed25519-encrypted.pem"},
        {"private_key": DATA / "rsa-2048-encrypted.pem", "private_key_password": "wrong"},
        {"private_key": (DATA / "ed25519.pem").read_text(), "private_key_password": PASSWORD},
        {"private_key": (DATA / "ed25519.pem").read_text().replace("BEGIN", "BOGUS")},
        {"private_key": "".join((DATA / "ed25519.pem").read_text().splitlines()[1:-1])},
        {"private_key": SECRET},  # an HMAC secret passed as a key
        {"api_secret": SECRET, "private_key": DATA / "ed25519.pem"},
    ],
    ids=[
        "no-password",
        "wrong-password",
        "password-for-plain-key",
        "mangled-header",
        "body-without-header",
        "secret-as-key",
        "both",
    ],
)
def test_configuration_errors_hide_key_material(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        PortfolioMarginProClient(api_key=API_KEY, **kw)
    assert_clean(exception_text(info.value))


@pytest.mark.anyio
@pytest.mark.parametrize("credentials", CREDENTIALS)
async def test_auth_error_message_hides_secret_and_signature(
    router: respx.MockRouter, credentials: dict[str, Any]
) -> None:
    route = router.get(PATH).mock(
        return_value=httpx.Response(
            401, json={"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        )
    )
    async with client(credentials) as c:
        with pytest.raises(AuthenticationError) as info:
            await c.account_info()
    assert_clean(exception_text(info.value), signatures_of(route))


def _echo_url(error: type[httpx.TransportError]) -> Any:
    # Real httpx errors can quote the URL; make these do so on purpose.
    def fail(request: httpx.Request) -> httpx.Response:
        raise error(f"failed talking to {request.url}", request=request)

    return fail


@pytest.mark.anyio
@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
async def test_transport_error_message_hides_signature(
    router: respx.MockRouter, credentials: dict[str, Any], error: type[httpx.TransportError]
) -> None:
    route = router.get(PATH).mock(side_effect=_echo_url(error))
    async with client(credentials, retry=NO_RETRY) as c:
        with pytest.raises(BinanceError) as info:
            await c.account_info()
    signatures = signatures_of(route)
    assert signatures
    assert_clean(exception_text(info.value), signatures)


@pytest.mark.anyio
async def test_transport_error_after_retries_hides_signatures(router: respx.MockRouter) -> None:
    route = router.get(PATH).mock(side_effect=_echo_url(httpx.ReadTimeout))
    async with client({"api_secret": SECRET}) as c:
        with pytest.raises(ReadTimeoutError) as info:
            await c.account_info()
    assert route.call_count > 1
    assert_clean(exception_text(info.value), signatures_of(route))


def _echo_page(status: int) -> Any:
    # A proxy's error page that repeats the request line, signature included.
    def page(request: httpx.Request) -> httpx.Response:
        body = f"<html><body>Bad request: GET {request.url}\n</body></html>".encode()
        return httpx.Response(status, content=body)

    return page


@pytest.mark.anyio
@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize(
    ("status", "error"), [(200, DecodeError), (502, ServerError), (403, BinanceError)]
)
async def test_error_page_echoing_url_hides_signature(
    router: respx.MockRouter,
    credentials: dict[str, Any],
    status: int,
    error: type[BinanceError],
) -> None:
    route = router.get(PATH).mock(side_effect=_echo_page(status))
    async with client(credentials, retry=NO_RETRY) as c:
        with pytest.raises(error) as info:
            await c.account_info()
    assert_clean(exception_text(info.value), signatures_of(route))


# --- logs ---------------------------------------------------------------------------------------


async def _logged_calls(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture, credentials: dict[str, Any]
) -> list[str]:
    """Four calls (success, API error, read timeout, HTML page) with DEBUG logging on
    everywhere; returns the signatures that went out."""
    route = router.get(PATH).mock(
        side_effect=[
            httpx.Response(200, content=DOC_EXAMPLE),
            httpx.Response(401, json={"code": -2015, "msg": "Invalid API-key"}),
            httpx.ReadTimeout("read timed out"),
            httpx.Response(200, content=b"<html>down</html>"),
        ]
    )
    caplog.set_level(logging.DEBUG)
    async with client(credentials, retry=NO_RETRY) as c:
        await c.account_info()
        for _ in range(3):
            with pytest.raises(BinanceError):
                await c.account_info()
    assert route.call_count == 4
    return signatures_of(route)


@pytest.mark.anyio
@pytest.mark.parametrize("credentials", CREDENTIALS)
async def test_sdk_debug_logs_hide_secrets_and_signatures(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture, credentials: dict[str, Any]
) -> None:
    signatures = await _logged_calls(router, caplog, credentials)
    own = [r for r in caplog.records if r.name.split(".")[0] == "binance_pmpro"]
    assert len(own) >= 4  # every call was logged at all
    assert_clean(log_text(own), signatures)


@pytest.mark.anyio
@pytest.mark.parametrize("credentials", CREDENTIALS[:1])
async def test_all_debug_logs_during_calls_hide_signatures(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture, credentials: dict[str, Any]
) -> None:
    signatures = await _logged_calls(router, caplog, credentials)
    assert_clean(log_text(caplog.records), signatures)
