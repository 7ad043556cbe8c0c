"""FakeExchange's pure core (``FakeExchange.handle``): it must reject what Binance rejects,
count weight in server minutes like Binance, and misbehave exactly as told.

Every test here drives ``handle`` directly with an explicit server time: no sockets, no
event loop, no real clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from binance_pmpro.endpoints import ACCOUNT_INFO, ENDPOINTS, SERVER_TIME, Budget, Endpoint, Security
from binance_pmpro.models import AccountInfo
from binance_pmpro.requests import build_request
from binance_pmpro.signing import Ed25519Signer, HmacSigner, RsaSigner, Signer
from binance_pmpro.testing import (
    DEFAULT_ACCOUNT,
    ExchangeError,
    FakeExchange,
    FakeRequest,
    FaultKind,
    Reply,
    ReplyAction,
    WeightKey,
)

NOW = 1_700_000_010_000  # 30 s into a server minute
MINUTE_START = NOW - NOW % 60_000
ACCOUNT = ACCOUNT_INFO.path
TIME = SERVER_TIME.path

# Binance's published example key pair (reference section 2.7).
BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


# --- helpers ---------------------------------------------------------------------------


def _public_pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


class Keys:
    """One API key per signer type, all registered on the exchange under test."""

    def __init__(
        self, fake: FakeExchange, rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey
    ) -> None:
        fake.add_hmac_key("hmacKey1", "hmac-secret-1")
        fake.add_rsa_key("rsaKey1", _public_pem(rsa_key))
        fake.add_ed25519_key("edKey1", _public_pem(ed_key))
        self.signers: dict[str, tuple[str, Signer]] = {
            "hmac": ("hmacKey1", HmacSigner("hmac-secret-1")),
            "rsa": ("rsaKey1", RsaSigner(rsa_key)),
            "ed25519": ("edKey1", Ed25519Signer(ed_key)),
        }
        # Same kinds of key, not registered: they sign validly but for someone else.
        self.strangers: dict[str, Signer] = {
            "hmac": HmacSigner("another-secret"),
            "rsa": RsaSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "ed25519": Ed25519Signer(ed25519.Ed25519PrivateKey.generate()),
        }


@pytest.fixture
def fake() -> FakeExchange:
    return FakeExchange(clock=lambda: NOW)


@pytest.fixture
def keys(
    fake: FakeExchange, rsa_key: rsa.RSAPrivateKey, ed25519_key: ed25519.Ed25519PrivateKey
) -> Keys:
    return Keys(fake, rsa_key, ed25519_key)


def signed_target(
    signer: Signer,
    *,
    timestamp: int = NOW,
    recv_window: int = 5000,
    endpoint: Endpoint = ACCOUNT_INFO,
    params: Mapping[str, Any] | None = None,
) -> str:
    """The request target the real client would send."""
    return build_request(
        endpoint,
        params or {},
        api_key="unused",
        signer=signer,
        timestamp_ms=timestamp,
        recv_window=recv_window,
    ).target


def get(
    fake: FakeExchange,
    target: str,
    api_key: str | None,
    *,
    now: int = NOW,
    ip: str = "127.0.0.1",
    method: str = "GET",
    body: bytes = b"",
) -> Reply:
    headers = [("X-MBX-APIKEY", api_key)] if api_key is not None else []
    return fake.handle(method, target, headers, body, client_ip=ip, now_ms=now)


def account_call(fake: FakeExchange, *, now: int = NOW, ip: str = "127.0.0.1") -> Reply:
    """A valid signed account request with the demo key, stamped at ``now``."""
    target = signed_target(HmacSigner(fake.demo_api_secret), timestamp=now)
    return get(fake, target, fake.demo_api_key, now=now, ip=ip)


def error(reply: Reply) -> tuple[int, int]:
    assert reply.header("content-type") == "application/json"
    body = json.loads(reply.body)
    assert set(body) == {"code", "msg"}
    return reply.status, body["code"]


def used(reply: Reply, header: str = "X-SAPI-USED-UID-WEIGHT-1M") -> int:
    value = reply.header(header)
    assert value is not None, f"no {header} in {reply.headers}"
    return int(value)


# --- accepted requests -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hmac", "rsa", "ed25519"])
def test_account_valid_signature_each_key_type_answers_documented_example(
    fake: FakeExchange, keys: Keys, kind: str
) -> None:
    api_key, signer = keys.signers[kind]
    reply = get(fake, signed_target(signer), api_key)
    assert reply.status == 200
    assert reply.header("content-type") == "application/json"
    assert json.loads(reply.body) == dict(DEFAULT_ACCOUNT)
    assert b'"totalAvailableBalance":"122,559.90199491"' in reply.body  # the comma stays
    assert used(reply) == 5


def test_hmac_signature_in_upper_case_is_accepted(fake: FakeExchange) -> None:
    target = signed_target(HmacSigner(fake.demo_api_secret))
    head, _, signature = target.partition("&signature=")
    reply = get(fake, f"{head}&signature={signature.upper()}", fake.demo_api_key)
    assert reply.status == 200


def test_binance_vector_h1_query_only_is_accepted(order_endpoint: Endpoint) -> None:
    fake = _with_order_endpoint()
    target = (
        "/api/v3/order?symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559"
        "&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )
    reply = get(fake, target, BINANCE_KEY, now=1499827319559, method="POST")
    assert reply.status == 200, reply.body


def test_binance_vector_h3_query_plus_body_is_signed_without_separator(
    order_endpoint: Endpoint,
) -> None:
    fake = _with_order_endpoint()
    body = (
        b"quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
        b"&signature=0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
    )
    target = "/api/v3/order?symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    reply = get(fake, target, BINANCE_KEY, now=1499827319559, method="POST", body=body)
    assert reply.status == 200, reply.body


@pytest.fixture
def order_endpoint(monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    """A TRADE endpoint added to the shared table for the length of one test."""
    endpoint = Endpoint(
        name="test_order",
        method="POST",
        path="/api/v3/order",
        security=Security.TRADE,
        budget=Budget.API_IP,
        weight=1,
        response=AccountInfo,
        idempotent=False,
    )
    monkeypatch.setitem(ENDPOINTS, (endpoint.method, endpoint.path), endpoint)
    return endpoint


def _with_order_endpoint() -> FakeExchange:
    fake = FakeExchange()
    fake.add_hmac_key(BINANCE_KEY, BINANCE_SECRET)
    fake.set_handler(
        "test_order",
        lambda exchange, request: {"orderId": 1, "price": request.params["price"]},
        params=("symbol", "side", "type", "timeInForce", "quantity", "price"),
    )
    return fake


# --- rejected requests -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hmac", "rsa", "ed25519"])
def test_signature_of_another_key_is_rejected_with_1022(
    fake: FakeExchange, keys: Keys, kind: str
) -> None:
    api_key, _ = keys.signers[kind]
    reply = get(fake, signed_target(keys.strangers[kind]), api_key)
    assert error(reply) == (400, -1022)


@pytest.mark.parametrize("kind", ["hmac", "rsa", "ed25519"])
def test_signature_over_other_bytes_is_rejected_with_1022(
    fake: FakeExchange, keys: Keys, kind: str
) -> None:
    api_key, signer = keys.signers[kind]
    target = signed_target(signer, recv_window=5000).replace("recvWindow=5000", "recvWindow=6000")
    assert error(get(fake, target, api_key)) == (400, -1022)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_base64_signature_not_percent_encoded_is_rejected(
    fake: FakeExchange, keys: Keys, kind: str
) -> None:
    # A raw "+" in a query string means a space; Binance decodes it so and the check fails.
    api_key, signer = keys.signers[kind]
    for timestamp in range(NOW - 200, NOW):
        target = signed_target(signer, timestamp=timestamp)
        if "%2B" in target:
            break
    else:  # pragma: no cover - 200 signatures without a "+" would be astonishing
        pytest.skip("no signature with a '+' found")
    reply = get(fake, target.replace("%2B", "+"), api_key)
    assert error(reply) == (400, -1022)


def test_signature_not_last_is_rejected(fake: FakeExchange) -> None:
    target = signed_target(HmacSigner(fake.demo_api_secret))
    path, _, query = target.partition("?")
    head, _, signature = query.partition("&signature=")
    moved = f"{path}?signature={signature}&{head}"
    assert error(get(fake, moved, fake.demo_api_key)) == (400, -1022)


def test_garbage_signature_is_rejected(fake: FakeExchange, keys: Keys) -> None:
    for kind in ("hmac", "rsa", "ed25519"):
        api_key, signer = keys.signers[kind]
        head = signed_target(signer).partition("&signature=")[0]
        for garbage in ("", "zz", "%FF%FE", "AAAA", "not base64!"):
            reply = get(fake, f"{head}&signature={garbage}", api_key)
            assert reply.status == 400, (kind, garbage)
            assert error(reply)[1] in (-1022, -1102), (kind, garbage)


@pytest.mark.parametrize(
    ("api_key", "code"),
    [
        (None, -2014),
        ("", -2014),
        ("bad key!", -2014),
        ("UnknownButWellFormedKey0123456789", -2015),
    ],
)
def test_missing_malformed_or_unknown_api_key_is_rejected_with_401(
    fake: FakeExchange, api_key: str | None, code: int
) -> None:
    target = signed_target(HmacSigner(fake.demo_api_secret))
    assert error(get(fake, target, api_key)) == (401, code)


def test_removed_key_is_rejected_with_2015(fake: FakeExchange) -> None:
    fake.remove_key(fake.demo_api_key)
    assert error(account_call(fake)) == (401, -2015)


@pytest.mark.parametrize(
    ("timestamp", "recv_window", "accepted"),
    [
        (NOW - 5000, 5000, True),  # exactly recvWindow old: still inside
        (NOW - 5001, 5000, False),
        (NOW - 60_000, 60_000, True),
        (NOW + 999, 5000, True),
        (NOW + 1000, 5000, False),  # 1000 ms ahead of the server
        (NOW - 1, 1, True),
        (NOW - 2, 1, False),
    ],
)
def test_timestamp_window_boundaries_follow_binance_rule(
    fake: FakeExchange, timestamp: int, recv_window: int, accepted: bool
) -> None:
    target = signed_target(
        HmacSigner(fake.demo_api_secret), timestamp=timestamp, recv_window=recv_window
    )
    reply = get(fake, target, fake.demo_api_key)
    if accepted:
        assert reply.status == 200
    else:
        assert error(reply) == (400, -1021)


def test_timestamp_ahead_and_behind_have_binance_messages(fake: FakeExchange) -> None:
    signer = HmacSigner(fake.demo_api_secret)
    ahead = json.loads(
        get(fake, signed_target(signer, timestamp=NOW + 5000), fake.demo_api_key).body
    )
    late = json.loads(
        get(fake, signed_target(signer, timestamp=NOW - 9000), fake.demo_api_key).body
    )
    assert "ahead of the server's time" in ahead["msg"]
    assert "outside of the recvWindow" in late["msg"]


def _resign(fake: FakeExchange, query: str) -> str:
    """Sign an arbitrary query string with the demo secret, as a sloppy client would."""
    signature = HmacSigner(fake.demo_api_secret).sign(query.encode())
    return f"{ACCOUNT}?{query}&signature={signature}"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (f"recvWindow=60000&timestamp={NOW}", None),
        (f"recvWindow=60001&timestamp={NOW}", -1131),
        (f"recvWindow=0&timestamp={NOW}", -1131),
        (f"recvWindow=abc&timestamp={NOW}", -1100),
        (f"recvWindow=5000.5&timestamp={NOW}", -1100),
        ("recvWindow=5000", -1102),
        ("recvWindow=5000&timestamp=", -1102),
        ("recvWindow=5000&timestamp=soon", -1100),
        (f"timestamp={NOW}&timestamp={NOW}", -1101),
        (f"timestamp={NOW}&asset=BTC", -1104),
        (f"timestamp={NOW}", None),  # recvWindow is optional (5000 by default)
    ],
)
def test_parameter_checks_answer_binance_codes(
    fake: FakeExchange, query: str, code: int | None
) -> None:
    reply = get(fake, _resign(fake, query), fake.demo_api_key)
    if code is None:
        assert reply.status == 200
    else:
        assert error(reply) == (400, code)


def test_missing_signature_is_rejected_with_1102(fake: FakeExchange) -> None:
    reply = get(fake, f"{ACCOUNT}?recvWindow=5000&timestamp={NOW}", fake.demo_api_key)
    assert error(reply) == (400, -1102)
    assert "signature" in json.loads(reply.body)["msg"]


def test_unknown_path_answers_404_with_binance_body(fake: FakeExchange) -> None:
    reply = get(fake, "/sapi/v1/portfolio/nothing-here?x=1", fake.demo_api_key)
    status, code = error(reply)
    assert status == 404
    assert code < 0


def test_wrong_method_on_known_path_answers_404(fake: FakeExchange) -> None:
    reply = get(
        fake, signed_target(HmacSigner(fake.demo_api_secret)), fake.demo_api_key, method="DELETE"
    )
    assert error(reply)[0] == 404


def test_server_time_needs_no_key_and_reports_server_clock(fake: FakeExchange) -> None:
    reply = get(fake, TIME, None)
    assert reply.status == 200
    assert json.loads(reply.body) == {"serverTime": NOW}
    assert used(reply, "X-MBX-USED-WEIGHT-1M") == 1


def test_clock_offset_set_at_runtime_moves_server_time() -> None:
    fake = FakeExchange(clock=lambda: NOW)
    fake.clock_offset_ms = -2500
    assert fake.now_ms() == NOW - 2500
    assert json.loads(fake.handle("GET", TIME, []).body) == {"serverTime": NOW - 2500}
    # A request stamped with the unskewed time is now 2.5 s in the server's future.
    assert account_call(fake, now=fake.now_ms()).status == 200
    target = signed_target(HmacSigner(fake.demo_api_secret), timestamp=NOW)
    assert error(fake.handle("GET", target, [("X-MBX-APIKEY", fake.demo_api_key)])) == (400, -1021)


# --- account state ---------------------------------------------------------------------


def test_set_account_snake_case_fields_change_the_answer(fake: FakeExchange) -> None:
    fake.set_account(
        uni_mmr=Decimal("1.08000000"), account_status="MARGIN_CALL", account_type="PM_3"
    )
    body = json.loads(account_call(fake).body)
    assert body["uniMMR"] == "1.08000000"
    assert body["accountStatus"] == "MARGIN_CALL"
    assert body["accountType"] == "PM_3"
    assert body["accountEquity"] == DEFAULT_ACCOUNT["accountEquity"]


def test_set_account_none_removes_field_and_state_is_live(fake: FakeExchange) -> None:
    fake.set_account(account_initial_margin=None)
    fake.account_state()["accountEquity"] = "1,234.5"
    body = json.loads(account_call(fake).body)
    assert "accountInitialMargin" not in body
    assert body["accountEquity"] == "1,234.5"


def test_set_account_rejects_unknown_fields_and_floats(fake: FakeExchange) -> None:
    with pytest.raises(TypeError, match="unknown account field"):
        fake.set_account(margin_level="2")
    with pytest.raises(TypeError, match="never float"):
        fake.set_account(uni_mmr=1.5)


def test_accounts_are_separate_and_keyed_by_their_api_keys(fake: FakeExchange) -> None:
    fake.add_hmac_key("otherKey", "other-secret", account="other")
    fake.set_account("other", uni_mmr="1.5")
    target = signed_target(HmacSigner("other-secret"))
    other = json.loads(get(fake, target, "otherKey").body)
    main = json.loads(account_call(fake).body)
    assert (other["uniMMR"], main["uniMMR"]) == ("1.5", DEFAULT_ACCOUNT["uniMMR"])
    assert fake.requests[-2].account == "other"


def test_non_portfolio_margin_account_gets_21001(fake: FakeExchange) -> None:
    fake.set_portfolio_margin(False)
    assert error(account_call(fake)) == (400, -21001)
    fake.set_portfolio_margin(True)
    assert account_call(fake).status == 200


def test_key_registration_refuses_private_and_mismatched_keys(
    fake: FakeExchange, rsa_key: rsa.RSAPrivateKey, ed25519_key: ed25519.Ed25519PrivateKey
) -> None:
    private = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="public"):
        fake.add_rsa_key("k1", private)
    with pytest.raises(ValueError, match="not an RSA"):
        fake.add_rsa_key("k1", _public_pem(ed25519_key))
    with pytest.raises(ValueError, match="not an Ed25519"):
        fake.add_ed25519_key("k1", _public_pem(rsa_key).decode())
    with pytest.raises(ValueError, match="whitespace"):
        fake.add_hmac_key(" k1", "secret")


# --- handlers and the endpoint table ---------------------------------------------------


def test_endpoint_added_to_table_is_routed_to_its_handler(
    fake: FakeExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = Endpoint(
        name="test_prices",
        method="GET",
        path="/sapi/v1/portfolio/asset-index-price",
        security=Security.MARKET_DATA,
        budget=Budget.SAPI_IP,
        weight=lambda params: 1 if params.get("asset") else 50,
        response=AccountInfo,
    )
    monkeypatch.setitem(ENDPOINTS, (endpoint.method, endpoint.path), endpoint)

    def prices(exchange: FakeExchange, request: FakeRequest) -> Any:
        if request.params.get("asset") == "NOPE":
            raise ExchangeError(400, -1121, "Invalid symbol.")
        return [{"asset": request.params.get("asset", "BTC"), "assetIndexPrice": "1"}]

    fake.set_handler("test_prices", prices, params=("asset",))
    one = get(fake, endpoint.path + "?asset=BTC", fake.demo_api_key)
    assert (one.status, used(one, "X-SAPI-USED-IP-WEIGHT-1M")) == (200, 1)
    every = get(fake, endpoint.path, fake.demo_api_key)
    assert used(every, "X-SAPI-USED-IP-WEIGHT-1M") == 51  # mixed weights on one budget
    assert error(get(fake, endpoint.path + "?asset=NOPE", fake.demo_api_key)) == (400, -1121)
    assert error(get(fake, endpoint.path + "?size=3", fake.demo_api_key)) == (400, -1104)
    assert error(get(fake, endpoint.path, "UnknownKey")) == (401, -2015)  # MARKET_DATA: key only


def test_endpoint_in_table_without_handler_answers_501(
    fake: FakeExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = Endpoint(
        "test_nothing", "GET", "/api/v3/ping", Security.NONE, Budget.API_IP, 1, AccountInfo
    )
    monkeypatch.setitem(ENDPOINTS, (endpoint.method, endpoint.path), endpoint)
    assert error(get(fake, endpoint.path, None)) == (501, -1020)


# --- weight accounting -----------------------------------------------------------------


def test_uid_weight_header_accumulates_within_a_minute_and_resets_at_next(
    fake: FakeExchange,
) -> None:
    assert [used(account_call(fake, now=NOW + i)) for i in range(3)] == [5, 10, 15]
    next_minute = MINUTE_START + 60_000
    assert used(account_call(fake, now=next_minute)) == 5
    assert fake.used_weight(at_ms=NOW) == 15
    assert fake.used_weight(at_ms=next_minute + 59_999) == 5
    windows = [(u.window_start_ms, u.weight, u.requests) for u in fake.ledger]
    assert windows == [(MINUTE_START, 15, 3), (next_minute, 5, 1)]


def test_uid_budget_is_per_account_and_api_budget_per_ip(fake: FakeExchange) -> None:
    fake.add_hmac_key("otherKey", "other-secret", account="other")
    account_call(fake)
    other = get(fake, signed_target(HmacSigner("other-secret")), "otherKey")
    assert used(other) == 5  # not 10: another account's budget
    assert used(get(fake, TIME, None, ip="10.0.0.1"), "X-MBX-USED-WEIGHT-1M") == 1
    assert used(get(fake, TIME, None, ip="10.0.0.1"), "X-MBX-USED-WEIGHT-1M") == 2
    assert used(get(fake, TIME, None, ip="10.0.0.2"), "X-MBX-USED-WEIGHT-1M") == 1
    assert fake.weight_key(TIME, ip="10.0.0.1") == WeightKey(Budget.API_IP, "10.0.0.1", "")
    assert fake.weight_key(ACCOUNT, account="other") == WeightKey(Budget.SAPI_UID, "other", ACCOUNT)


def test_unknown_key_is_not_charged_to_any_uid_budget(fake: FakeExchange) -> None:
    reply = get(fake, signed_target(HmacSigner("x")), "UnknownKey")
    assert error(reply) == (401, -2015)
    assert fake.ledger == []
    assert fake.requests[-1].weight == 0


def test_rejected_signed_request_still_costs_weight(fake: FakeExchange) -> None:
    reply = get(fake, signed_target(HmacSigner("wrong")), fake.demo_api_key)
    assert error(reply) == (400, -1022)
    assert used(reply) == 5


def test_ip_total_counts_all_ip_limited_sapi_endpoints_on_one_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = ("/sapi/v1/portfolio/balance", "/sapi/v1/portfolio/collateralRate")
    for number, path in enumerate(paths):
        endpoint = Endpoint(
            f"test_ip_{number}", "GET", path, Security.MARKET_DATA, Budget.SAPI_IP, 20, AccountInfo
        )
        monkeypatch.setitem(ENDPOINTS, ("GET", path), endpoint)
    for ip_total, expected in ((False, [20, 20]), (True, [20, 40])):
        fake = FakeExchange(clock=lambda: NOW, ip_total=ip_total)
        for number in range(2):
            fake.set_handler(f"test_ip_{number}", lambda exchange, request: [])
        got = [
            used(get(fake, path, fake.demo_api_key), "X-SAPI-USED-IP-WEIGHT-1M") for path in paths
        ]
        assert got == expected, ip_total


@pytest.mark.parametrize("charge", [True, False])
def test_over_limit_answers_429_with_retry_after_to_minute_end(charge: bool) -> None:
    fake = FakeExchange(clock=lambda: NOW, uid_limit=20, charge_rate_limited=charge)
    assert [account_call(fake).status for _ in range(4)] == [200] * 4
    reply = account_call(fake)
    status, code = error(reply)
    assert (status, code) == (429, -1003)
    assert reply.header("Retry-After") == "30"  # NOW is 30 s into its minute
    msg = json.loads(reply.body)["msg"]
    assert msg.startswith(
        "Too much request weight used; current limit is 20 request weight per 1 MINUTE"
    )
    assert used(reply) == (25 if charge else 20)
    [window] = fake.ledger
    assert (window.accepted_weight, window.attempted_weight, window.rate_limited) == (20, 25, 1)
    assert window.over_limit
    assert fake.windows_over_limit() == [window]
    # The next minute starts from zero.
    assert account_call(fake, now=MINUTE_START + 60_000).status == 200


def test_short_window_counts_and_resets_per_window() -> None:
    fake = FakeExchange(uid_limit=10, window_ms=10_000)
    start = MINUTE_START + 20_000  # a 10 s window starts here
    assert [account_call(fake, now=start + i).status for i in range(3)] == [200, 200, 429]
    assert account_call(fake, now=start + 2000).header("Retry-After") == "8"
    assert used(account_call(fake, now=start + 10_000)) == 5
    assert [u.window_start_ms for u in fake.ledger] == [start, start + 10_000]
    with pytest.raises(ValueError, match="window_ms"):
        FakeExchange(window_ms=0)


def test_retry_after_is_rounded_up_to_whole_seconds() -> None:
    fake = FakeExchange(uid_limit=5)
    now = MINUTE_START + 58_500
    account_call(fake, now=now)
    assert account_call(fake, now=now).header("Retry-After") == "2"


def test_client_ignoring_429s_gets_banned_with_doubling_length() -> None:
    fake = FakeExchange(uid_limit=5, ban_after=2)
    now = MINUTE_START + 1000
    assert account_call(fake, now=now).status == 200
    assert [account_call(fake, now=now + i).status for i in range(2)] == [429, 429]
    ban = account_call(fake, now=now + 10)
    assert error(ban) == (418, -1003)
    until = now + 10 + 120_000
    assert json.loads(ban.body)["msg"].startswith(
        f"Way too much request weight used; IP banned until {until}."
    )
    assert ban.header("Retry-After") == "120"
    assert fake.banned_until_ms() is None  # the wall clock is far past that
    # During the ban every endpoint of the IP is refused, even the free time call.
    assert get(fake, TIME, None, now=now + 60_000).status == 418
    assert get(fake, TIME, None, now=now + 60_000, ip="10.9.9.9").status == 200
    # After it, a fresh minute works; offend again and the ban doubles.
    later = until + 60_000
    later -= later % 60_000
    assert account_call(fake, now=later).status == 200
    statuses = [account_call(fake, now=later + i).status for i in range(3)]
    assert statuses == [429, 429, 418]
    assert get(fake, TIME, None, now=later + 2 + 239_999).status == 418
    assert get(fake, TIME, None, now=later + 2 + 240_000).status == 200


def test_ban_after_none_never_bans() -> None:
    fake = FakeExchange(uid_limit=5, ban_after=None)
    statuses = {account_call(fake, now=NOW + i).status for i in range(50)}
    assert statuses == {200, 429}


def test_429_strikes_reset_each_minute() -> None:
    fake = FakeExchange(uid_limit=5, ban_after=2)
    for minute in range(3):
        start = MINUTE_START + minute * 60_000
        statuses = [account_call(fake, now=start + i).status for i in range(3)]
        assert statuses == [200, 429, 429], minute


def test_clear_bans_lifts_a_ban() -> None:
    fake = FakeExchange(clock=lambda: NOW, uid_limit=5, ban_after=0)
    account_call(fake)
    assert account_call(fake).status == 418
    assert fake.banned_until_ms() == NOW + 120_000
    fake.clear_bans()
    assert fake.banned_until_ms() is None
    assert get(fake, TIME, None).status == 200


# --- faults ----------------------------------------------------------------------------


def test_inject_spoils_exactly_times_matching_requests(fake: FakeExchange) -> None:
    rule = fake.inject(FaultKind.SERVER_ERROR_JSON, times=2, path=ACCOUNT)
    assert get(fake, TIME, None).status == 200  # another path: untouched
    statuses = [account_call(fake).status for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert rule.hits == 2
    assert [r.fault for r in fake.requests] == [
        None,
        FaultKind.SERVER_ERROR_JSON,
        FaultKind.SERVER_ERROR_JSON,
        None,
    ]


def test_scripted_faults_fire_in_injection_order(fake: FakeExchange) -> None:
    fake.inject("server_error_empty")
    fake.inject(FaultKind.HTML_ERROR_PAGE, status=503)
    assert [get(fake, TIME, None).status for _ in range(3)] == [503, 503, 200]
    assert [r.fault for r in fake.requests][:2] == [
        FaultKind.SERVER_ERROR_EMPTY,
        FaultKind.HTML_ERROR_PAGE,
    ]


def test_inject_randomly_is_reproducible_with_a_seed() -> None:
    def pattern(seed: int) -> list[int]:
        fake = FakeExchange(clock=lambda: NOW, seed=seed)
        fake.inject_randomly(FaultKind.SERVER_ERROR_EMPTY, 0.3)
        return [get(fake, TIME, None).status for _ in range(200)]

    first = pattern(7)
    assert first == pattern(7)
    assert first != pattern(8)
    assert 30 < first.count(503) < 90


def test_inject_randomly_probability_bounds_and_clear(fake: FakeExchange) -> None:
    fake.inject_randomly(FaultKind.SERVER_ERROR_EMPTY, 0.0)
    assert {get(fake, TIME, None).status for _ in range(20)} == {200}
    fake.inject_randomly(FaultKind.ERROR, 1.0, path=TIME, code=-1121, msg="Invalid symbol.")
    assert {error(get(fake, TIME, None)) for _ in range(5)} == {(400, -1121)}
    fake.clear_faults()
    assert get(fake, TIME, None).status == 200


def test_fault_options_are_validated(fake: FakeExchange) -> None:
    with pytest.raises(TypeError, match="unknown option"):
        fake.inject(FaultKind.SLOW_RESPONSE, seconds=3)
    with pytest.raises(ValueError, match="5xx"):
        fake.inject(FaultKind.SERVER_ERROR_JSON, status=404)
    with pytest.raises(ValueError, match="times"):
        fake.inject(FaultKind.DROP_CONNECTION, times=0)
    with pytest.raises(ValueError, match="probability"):
        fake.inject_randomly(FaultKind.DROP_CONNECTION, 1.5)
    with pytest.raises(ValueError, match="no-such-fault"):
        fake.inject("no-such-fault")


def test_replacing_faults_are_not_charged_or_executed(fake: FakeExchange) -> None:
    for kind in FaultKind:
        if kind.replaces_answer:
            fake.inject(kind)
            account_call(fake)
    assert all(record.weight == 0 for record in fake.requests)
    assert fake.ledger == []


def test_fault_server_error_json_has_binance_body(fake: FakeExchange) -> None:
    fake.inject(FaultKind.SERVER_ERROR_JSON, status=503, code=-1001, msg="Internal error.")
    reply = account_call(fake)
    assert error(reply) == (503, -1001)


def test_fault_server_error_empty_has_no_body(fake: FakeExchange) -> None:
    fake.inject(FaultKind.SERVER_ERROR_EMPTY)
    reply = account_call(fake)
    assert (reply.status, reply.body, reply.header("content-type")) == (503, b"", None)


def test_fault_html_error_page_is_html(fake: FakeExchange) -> None:
    fake.inject(FaultKind.HTML_ERROR_PAGE)
    reply = account_call(fake)
    assert reply.status == 502
    assert reply.header("content-type") == "text/html"
    assert reply.body.startswith(b"<html>")
    assert b"502 Bad Gateway" in reply.body


def test_fault_truncated_json_is_a_prefix_of_the_real_answer(fake: FakeExchange) -> None:
    whole = account_call(fake).body
    fake.inject(FaultKind.TRUNCATED_JSON)
    reply = account_call(fake)
    assert reply.status == 200
    assert whole.startswith(reply.body)
    assert 0 < len(reply.body) < len(whole)
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.body)
    fake.inject(FaultKind.TRUNCATED_JSON, keep=10)
    assert account_call(fake).body == whole[:10]
    assert fake.requests[-1].weight == 5  # mangling faults: the exchange did the work


def test_fault_malformed_json_is_not_json(fake: FakeExchange) -> None:
    for path_call in (lambda: account_call(fake), lambda: get(fake, TIME, None)):
        fake.inject(FaultKind.MALFORMED_JSON)
        reply = path_call()
        assert reply.status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(reply.body)
    fake.inject(FaultKind.MALFORMED_JSON, body=b"{oops")
    assert account_call(fake).body == b"{oops"


def test_fault_slow_response_asks_the_shell_to_wait(fake: FakeExchange) -> None:
    fake.inject(FaultKind.SLOW_RESPONSE, delay=12.5)
    reply = account_call(fake)
    assert (reply.status, reply.delay, reply.action) == (200, 12.5, ReplyAction.RESPOND)


def test_fault_drop_connection_records_no_status(fake: FakeExchange) -> None:
    fake.inject(FaultKind.DROP_CONNECTION)
    reply = account_call(fake)
    assert reply.action is ReplyAction.DROP
    assert fake.requests[-1].status is None


def test_fault_reset_mid_body_sends_part_of_the_body(fake: FakeExchange) -> None:
    fake.inject(FaultKind.RESET_MID_BODY, keep=7)
    reply = account_call(fake)
    assert reply.action is ReplyAction.RESET
    assert reply.send_bytes == 7
    assert len(reply.body) > 7


def test_fault_timestamp_error_is_one_off(fake: FakeExchange) -> None:
    fake.inject(FaultKind.TIMESTAMP_ERROR)
    assert error(account_call(fake)) == (400, -1021)
    assert account_call(fake).status == 200


def test_fault_clock_skew_shifts_one_request(fake: FakeExchange) -> None:
    fake.inject(FaultKind.CLOCK_SKEW, offset_ms=-3000, path=TIME)
    assert json.loads(get(fake, TIME, None).body) == {"serverTime": NOW - 3000}
    fake.inject(FaultKind.CLOCK_SKEW, offset_ms=10_000)
    assert error(account_call(fake)) == (400, -1021)
    assert fake.requests[-1].server_time_ms == NOW + 10_000
    assert account_call(fake).status == 200


def test_fault_rate_limited_and_ip_banned(fake: FakeExchange) -> None:
    fake.inject(FaultKind.RATE_LIMITED, retry_after=7)
    reply = account_call(fake)
    assert error(reply) == (429, -1003)
    assert reply.header("Retry-After") == "7"
    fake.inject(FaultKind.IP_BANNED, seconds=300)
    assert error(account_call(fake)) == (418, -1003)
    assert fake.banned_until_ms() == NOW + 300_000
    assert get(fake, TIME, None).status == 418  # the ban outlives the fault


# --- the record ------------------------------------------------------------------------


def test_request_log_records_what_happened_without_the_signature(fake: FakeExchange) -> None:
    target = signed_target(HmacSigner(fake.demo_api_secret))
    signature = target.rpartition("=")[2]
    get(fake, target, fake.demo_api_key)
    get(fake, signed_target(HmacSigner("wrong")), fake.demo_api_key)
    first, second = fake.requests
    assert (first.method, first.path, first.status, first.code, first.weight) == (
        "GET",
        ACCOUNT,
        200,
        None,
        5,
    )
    assert dict(first.params) == {"recvWindow": "5000", "timestamp": str(NOW)}
    assert (first.account, first.client_ip, first.server_time_ms) == ("main", "127.0.0.1", NOW)
    assert (second.status, second.code) == (400, -1022)
    assert signature not in repr(fake.requests)
    assert fake.demo_api_secret not in repr(fake)
    fake.clear_requests()
    assert fake.requests == []


def test_request_log_is_trimmed_past_max_records() -> None:
    fake = FakeExchange(clock=lambda: NOW, max_records=10, api_limit=10**9)
    for _ in range(25):
        get(fake, TIME, None)
    assert 10 <= len(fake.requests) <= 20
