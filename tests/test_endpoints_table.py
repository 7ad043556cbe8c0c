"""The endpoint table against section 7 of the reference, row by row, and the invariants
every reader of the table (client, fake exchange, CLI, docs) relies on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from _portfolio import REFERENCE, Client
from binance_pmpro.endpoints import (
    ACCOUNT_INFO,
    ASSET_INDEX_PRICE,
    ENDPOINTS,
    ENDPOINTS_BY_NAME,
    PORTFOLIO_ENDPOINTS,
    REMOVED_ENDPOINTS,
    Budget,
    Endpoint,
    ParamType,
    Security,
)
from binance_pmpro.testing import FakeExchange

# --- parsing section 7 ----------------------------------------------------------------------


@dataclass
class DocParam:
    name: str
    type: str
    mandatory: bool
    values: tuple[str, ...]
    default: str | None
    minimum: Decimal | None
    maximum: Decimal | None


@dataclass
class DocRow:
    method: str
    path: str
    title: str
    security: str
    budget: str
    weights: tuple[int, ...]
    """One weight, or (with asset, without) for the asset index price."""
    signed_params: bool
    params: list[DocParam]
    fields: set[str]


_PARAM_RE = re.compile(r"`(\w+)` (STRING|LONG|DECIMAL)")
_CHOICES_RE = re.compile(r'`"?(\w+)"?`(?:\s*\\?\|\s*`"?(\w+)"?`)+')
_ONLY_RE = re.compile(r'\(`"?(\w+)"?` only\)')
_DEFAULT_RE = re.compile(r'default `?"?(\w+)"?`?')
_WITHIN_RE = re.compile(r"within \[([\d.]+), ([\d.]+)\]")
_MAX_RE = re.compile(r"max (\d+)")
_FROM_RE = re.compile(r"from (\d+)")
_FIELD_RE = re.compile(r"`([a-z][A-Za-z0-9]*)`")


def _cells(line: str) -> list[str]:
    # Split on the table's pipes, not on the escaped ones inside cells.
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [part.strip() for part in parts]


def _params(text: str) -> list[DocParam]:
    matches = list(_PARAM_RE.finditer(text))
    all_optional = "all opt" in text
    params = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        segment = text[match.end() : end]
        values: list[str] = []
        choices = _CHOICES_RE.search(segment)
        if choices:
            values = re.findall(r'`"?(\w+)"?`', choices.group(0))
        only = _ONLY_RE.search(segment)
        if only:
            values = [only.group(1)]
        default = _DEFAULT_RE.search(segment)
        within = _WITHIN_RE.search(segment)
        maximum = _MAX_RE.search(segment)
        minimum = _FROM_RE.search(segment)
        params.append(
            DocParam(
                name=match.group(1),
                type=match.group(2),
                mandatory="mand" in segment and not all_optional,
                values=tuple(values),
                default=default.group(1) if default else None,
                minimum=Decimal(within.group(1))
                if within
                else (Decimal(minimum.group(1)) if minimum else None),
                maximum=Decimal(within.group(2))
                if within
                else (Decimal(maximum.group(1)) if maximum else None),
            )
        )
    return params


def _section7() -> list[DocRow]:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not found: the shared reference lives beside the repository")
    text = REFERENCE.read_text(encoding="utf-8")
    section = text.split("## 7.", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| GET") and not re.match(r"\| (POST|DELETE|PUT) ", line):
            continue
        method, path, name, weight, params, response = _cells(line)
        security = re.search(r"\((USER_DATA|TRADE|MARKET_DATA|USER_STREAM|NONE)\)", name)
        assert security is not None, line
        plain_weight = weight.replace("*", "")
        budget = re.match(r"(UID|IP) ", plain_weight)
        assert budget is not None, line
        rows.append(
            DocRow(
                method=method,
                path=path.strip("`"),
                title=name[: security.start()].strip(),
                security=security.group(1),
                budget=budget.group(1),
                weights=tuple(int(w) for w in re.findall(r"\d+", plain_weight)),
                signed_params="no timestamp" not in params,
                params=_params(params),
                # Notes on the range rules name request parameters: not response fields.
                fields=set(_FIELD_RE.findall(response))
                - {name for name, _ in _PARAM_RE.findall(params)},
            )
        )
    return rows


def _wire_names(tp: Any) -> set[str]:
    """Every wire field name of a response type, nested ones included."""
    info = msgspec.inspect.type_info(tp)
    names: set[str] = set()

    def walk(t: msgspec.inspect.Type) -> None:
        if isinstance(t, msgspec.inspect.ListType):
            walk(t.item_type)
        elif isinstance(t, msgspec.inspect.UnionType):
            for member in t.types:
                walk(member)
        elif isinstance(t, msgspec.inspect.StructType):
            for f in t.fields:
                if not f.encode_name.endswith(".raw"):
                    names.add(f.encode_name)
                    walk(f.type)

    walk(info)
    return names


ROWS = _section7() if REFERENCE.is_file() else []


def _endpoint(row: DocRow) -> Endpoint:
    endpoint = ENDPOINTS.get((row.method, row.path))
    assert endpoint is not None, f"{row.method} {row.path} is missing from the table"
    return endpoint


# --- row by row -----------------------------------------------------------------------------


def test_section7_has_24_rows_one_table_entry_each() -> None:
    rows = _section7()
    assert len(rows) == 24
    assert [(r.method, r.path) for r in rows] == [(e.method, e.path) for e in PORTFOLIO_ENDPOINTS]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.method} {r.path}" for r in ROWS])
def test_entry_matches_reference_row(row: DocRow) -> None:
    endpoint = _endpoint(row)
    assert endpoint.security is Security(row.security)
    assert endpoint.budget is {"UID": Budget.SAPI_UID, "IP": Budget.SAPI_IP}[row.budget]
    if endpoint is ASSET_INDEX_PRICE:
        assert row.weights == (1, 50)
        assert endpoint.weight_for({"asset": "BTC"}) == 1
        assert endpoint.weight_for({}) == 50
    else:
        assert row.weights == (endpoint.weight_for({}),)
    assert endpoint.security.signed == row.signed_params
    if endpoint is not ACCOUNT_INFO:  # kept as the first issue made it
        assert endpoint.title == row.title
    assert endpoint.idempotent == (row.method == "GET")


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.method} {r.path}" for r in ROWS])
def test_entry_parameters_match_reference_row(row: DocRow) -> None:
    endpoint = _endpoint(row)
    assert [p.name for p in endpoint.params] == [p.name for p in row.params]
    for doc, param in zip(row.params, endpoint.params, strict=True):
        assert param.type is ParamType(doc.type), doc.name
        assert param.mandatory == doc.mandatory, doc.name
        # Closed choices are checked locally; asset names are documented but left to
        # Binance (Decision 12).
        assert set(param.choices) | set(param.known) == set(doc.values), doc.name
        if doc.name == "asset":
            assert param.choices == ()
        assert param.default == doc.default, doc.name
        assert param.maximum == doc.maximum, doc.name
        if doc.minimum is not None:
            assert param.minimum == doc.minimum, doc.name


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.method} {r.path}" for r in ROWS])
def test_entry_response_type_has_every_documented_field(row: DocRow) -> None:
    endpoint = _endpoint(row)
    assert row.fields <= _wire_names(endpoint.response)


def test_documented_date_range_rules_are_in_the_table() -> None:
    rule = ENDPOINTS_BY_NAME["repay_history"].date_range
    assert rule is not None
    assert (rule.default_days, rule.max_span_days) == (30, 360)


def test_documented_caps_are_in_the_table() -> None:
    caps = {e.name: (e.cap.calls, e.cap.period_s) for e in PORTFOLIO_ENDPOINTS if e.cap}
    assert caps == {
        "set_auto_repay": (20, 86_400),
        "fund_auto_collection": (500, 3_600),
        "bnb_transfer": (2, 600),
    }


def test_removed_mint_and_redeem_are_not_callable_entries() -> None:
    assert set(REMOVED_ENDPOINTS) == {
        ("POST", "/sapi/v1/portfolio/mint"),
        ("POST", "/sapi/v1/portfolio/redeem"),
    }
    assert not set(REMOVED_ENDPOINTS) & set(ENDPOINTS)


# --- invariants of the table ----------------------------------------------------------------


def test_names_and_cli_commands_are_unique() -> None:
    names = [e.name for e in ENDPOINTS.values()]
    assert len(names) == len(set(names))
    commands = [e.cli for e in PORTFOLIO_ENDPOINTS if e.cli is not None]
    assert len(commands) == len(set(commands)) == len(PORTFOLIO_ENDPOINTS) - 1


@pytest.mark.parametrize("endpoint", PORTFOLIO_ENDPOINTS, ids=lambda e: e.name)
def test_every_entry_has_a_client_method_and_a_fake_handler(endpoint: Endpoint) -> None:
    assert callable(getattr(Client, endpoint.name))
    assert getattr(Client, endpoint.name).__doc__
    assert endpoint.name in FakeExchange()._handlers


@pytest.mark.parametrize(
    "endpoint", [e for e in PORTFOLIO_ENDPOINTS if e.is_write], ids=lambda e: e.name
)
def test_every_write_is_not_idempotent_and_says_what_to_verify(endpoint: Endpoint) -> None:
    assert endpoint.idempotent is False
    assert endpoint.verify


def test_every_method_docstring_states_weight_and_budget() -> None:
    for endpoint in PORTFOLIO_ENDPOINTS[1:]:
        doc = " ".join(getattr(Client, endpoint.name).__doc__.split())
        budget = "UID" if endpoint.budget is Budget.SAPI_UID else "IP"
        assert f"{budget} budget" in doc, endpoint.name
        weight = "1" if endpoint is ASSET_INDEX_PRICE else str(endpoint.weight_for({}))
        assert f"weight {weight}" in doc, endpoint.name
