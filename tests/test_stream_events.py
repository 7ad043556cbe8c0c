"""The stream's events: every documented example decodes exactly, both spellings of the risk
event match, quirks and unknown values are tolerated, bad frames raise a typed error that
never shows a listen key; the listen key endpoints are in the table and go to the futures
host through the client's normal path."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from binance_pmpro import (
    AccountUpdate,
    ListenKeyExpired,
    ListenKeyNotFoundError,
    PortfolioMarginProClient,
    RiskLevel,
    RiskLevelChange,
    StreamDecodeError,
    UnknownEvent,
    decode_stream_event,
)
from binance_pmpro.endpoints import (
    ENDPOINTS,
    LISTEN_KEY_CLOSE,
    LISTEN_KEY_CREATE,
    LISTEN_KEY_KEEPALIVE,
    STREAM_ENDPOINTS,
    Budget,
    Security,
)
from binance_pmpro.ratelimit import DEFAULT_LIMITS
from binance_pmpro.stream_events import ListenKey

EXAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "pmpro-examples"
STREAM = EXAMPLES / "stream"
needs_examples = pytest.mark.skipif(not STREAM.is_dir(), reason=f"{STREAM} not found")


def example(name: str) -> bytes:
    return (STREAM / name).read_bytes()


@needs_examples
def test_documented_account_update_decodes_exactly() -> None:
    event = decode_stream_event(example("PM_PRO_ACCOUNT_UPDATE.json"))
    assert event == AccountUpdate(
        event_time=1564745798939,
        uni_mmr=Decimal("1.99999999"),
        equity=Decimal("30.23416728"),
        actual_equity=Decimal("30.23416728"),
        maintenance_margin=Decimal("15.11708371"),
        initial_margin=Decimal("20.6783833"),
        available_balance=Decimal("3.98972738"),
        virtual_max_withdraw=Decimal("3.98972738"),
    )
    assert str(event.initial_margin) == "20.6783833"  # type: ignore[union-attr]
    assert event.time == datetime(2019, 8, 2, 11, 36, 38, 939000, tzinfo=timezone.utc)


@needs_examples
def test_documented_risk_level_change_decodes_exactly() -> None:
    event = decode_stream_event(example("riskLevelChange.json"))
    assert event == RiskLevelChange(
        event_time=1587727187525,
        uni_mmr=Decimal("1.99999999"),
        risk_level=RiskLevel.MARGIN_CALL,
        equity=Decimal("30.23416728"),
        actual_equity=Decimal("30.23416728"),
        maintenance_margin=Decimal("15.11708371"),
    )


@needs_examples
def test_documented_listen_key_expired_decodes_without_keeping_the_key() -> None:
    raw = example("listenKeyExpired.json")
    event = decode_stream_event(raw)
    assert event == ListenKeyExpired(event_time=1736996475556)
    key = json.loads(raw)["listenKey"]
    assert key not in repr(event)


@needs_examples
@pytest.mark.parametrize("name", ["POST-fapi_v1_listenKey.json", "PUT-fapi_v1_listenKey.json"])
def test_documented_listen_key_answers_decode_with_a_hidden_repr(name: str) -> None:
    from binance_pmpro.decoding import ResponseDecoder

    raw = (STREAM / "listenKey" / name).read_bytes()
    answer = ResponseDecoder(ListenKey).decode(raw)
    assert answer.listen_key == json.loads(raw)["listenKey"]
    assert answer.listen_key not in repr(answer)
    assert ResponseDecoder(ListenKey).decode(b"{}").listen_key is None


@pytest.mark.parametrize("name", ["riskLevelChange", "RISK_LEVEL_CHANGE", "risk_level_change"])
def test_risk_event_name_matches_case_and_underscore_insensitively(name: str) -> None:
    frame = {"e": name, "E": 1, "u": "1.1", "s": "REDUCE_ONLY", "eq": "1", "ae": "1", "m": "1"}
    event = decode_stream_event(json.dumps(frame))
    assert isinstance(event, RiskLevelChange)
    assert event.risk_level is RiskLevel.REDUCE_ONLY


def test_unknown_risk_level_keeps_the_raw_string() -> None:
    frame = '{"e":"riskLevelChange","E":1,"u":"1.1","s":"NEW_LEVEL","eq":"1","ae":"1","m":"1"}'
    event = decode_stream_event(frame)
    assert isinstance(event, RiskLevelChange)
    assert event.risk_level is RiskLevel.UNKNOWN
    assert event.risk_level_raw == "NEW_LEVEL"


def test_amount_quirks_decode_like_the_rest_answers() -> None:
    frame = (
        b'{"e":"PM_PRO_ACCOUNT_UPDATE","E":"7","u":"1,234.5","eq":"","ae":2.50,'
        b'"mm":"1","im":"1","avb":"1","vmw":"1"}'
    )
    event = decode_stream_event(frame)
    assert isinstance(event, AccountUpdate)
    assert event.event_time == 7
    assert event.uni_mmr == Decimal("1234.5")
    assert event.equity is None
    assert event.actual_equity == Decimal("2.50")


def test_unknown_event_type_passes_through_with_its_bytes() -> None:
    frame = b'{"e":"ORDER_TRADE_UPDATE","E":1,"o":{"s":"BTCUSDT"}}'
    assert decode_stream_event(frame) == UnknownEvent(event_type="ORDER_TRADE_UPDATE", raw=frame)


def test_combined_stream_wrapper_is_unwrapped() -> None:
    frame = '{"stream":"SECRETKEY","data":{"e":"listenKeyExpired","E":5,"listenKey":"SECRETKEY"}}'
    assert decode_stream_event(frame) == ListenKeyExpired(event_time=5)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"E": 1}', "no event type"),
        (b'{"e":"PM_PRO_ACCOUNT_UPDATE","E":1,"u":"NaN","eq":"1","ae":"1","mm":"1"}', r"\$\.u"),
        (b'{"e":"PM_PRO_ACCOUNT_UPDATE","E":1,"u":"1","eq":"-Infinity","ae":"1","mm":"1"}', "eq"),
        (b'{"e":"riskLevelChange","E":1,"u":"1","s":"NORMAL","eq":"1","ae":"1","m":"sNaN"}', "m"),
        (b'{"e":"PM_PRO_ACCOUNT_UPDATE","E":1,"u":"1"}', "eq"),
        (b'{"e":"listenKeyExpired","E":true,"listenKey":"SECRETKEY"}', "E"),
        (b'{"e":"listenKeyExpired","E":"soon","listenKey":"SECRETKEY"', "not valid JSON"),
    ],
)
def test_malformed_frame_raises_a_typed_error_without_the_key(frame: bytes, match: str) -> None:
    with pytest.raises(StreamDecodeError, match=match) as caught:
        decode_stream_event(frame)
    assert "SECRETKEY" not in str(caught.value)


# --- the listen key endpoints ---------------------------------------------------------------


def test_listen_key_endpoints_are_user_stream_calls_on_the_futures_budget() -> None:
    assert {(e.method, e.path) for e in STREAM_ENDPOINTS} == {
        ("POST", "/fapi/v1/listenKey"),
        ("PUT", "/fapi/v1/listenKey"),
        ("DELETE", "/fapi/v1/listenKey"),
    }
    for endpoint in STREAM_ENDPOINTS:
        assert ENDPOINTS[(endpoint.method, endpoint.path)] is endpoint
        assert endpoint.security is Security.USER_STREAM
        assert not endpoint.security.signed
        assert endpoint.budget is Budget.FAPI_IP
        assert endpoint.weight == 1
        assert endpoint.futures
        assert endpoint.header_name == "x-mbx-used-weight-1m"
    assert DEFAULT_LIMITS[Budget.FAPI_IP] == 2400
    assert LISTEN_KEY_CREATE.idempotent


@pytest.mark.anyio
async def test_listen_key_calls_go_to_the_futures_host_through_the_limiter() -> None:
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.headers.get("x-mbx-apikey")))
        if request.method == "PUT":
            return httpx.Response(
                400, json={"code": -1125, "msg": "This listenKey does not exist."}
            )
        return httpx.Response(
            200, json={"listenKey": "K" * 60}, headers={"X-MBX-USED-WEIGHT-1M": "7"}
        )

    http_client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = PortfolioMarginProClient(
        "A" * 64,
        "s" * 64,
        http_client=http_client,
        transport="httpx",
        time_sync=False,
        rate_limiter="per-client",
    )
    async with client, http_client:
        key: Any = await client._call(LISTEN_KEY_CREATE, {})
        with pytest.raises(ListenKeyNotFoundError) as caught:
            await client._call(LISTEN_KEY_KEEPALIVE, {})
        await client._call(LISTEN_KEY_CLOSE, {})
        budgets = {b.key.kind: b for b in client.rate_limit}
    assert key.listen_key == "K" * 60
    assert caught.value.code == -1125
    assert seen == [
        ("POST", "https://fapi.binance.com/fapi/v1/listenKey", "A" * 64),
        ("PUT", "https://fapi.binance.com/fapi/v1/listenKey", "A" * 64),
        ("DELETE", "https://fapi.binance.com/fapi/v1/listenKey", "A" * 64),
    ]
    assert budgets[Budget.FAPI_IP].limit == 2400
    assert budgets[Budget.FAPI_IP].server_used == 7


def test_a_broken_listen_key_answer_never_shows_the_key() -> None:
    from binance_pmpro import DecodeError
    from binance_pmpro.decoding import ResponseDecoder

    with pytest.raises(DecodeError) as caught:
        ResponseDecoder(ListenKey).decode(b'{"listenKey":"SECRETKEY0123')  # truncated
    assert "SECRETKEY" not in str(caught.value)
    assert "<redacted>" in str(caught.value)
