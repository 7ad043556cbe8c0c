"""The command line's pure parts: option parsing, the table, the JSON document, exit codes."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from binance_pmpro import cli
from binance_pmpro.decoding import decode_account_info
from binance_pmpro.errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    DecodeError,
    InvalidRequestError,
    InvalidSignatureError,
    IPBannedError,
    RateLimitedError,
    RateLimitTimeoutError,
    ReadTimeoutError,
    ServerError,
    WAFBlockedError,
)

DOC_EXAMPLE = (
    b'{"uniMMR": "5167.92171923", "accountEquity": "122607.35137903", '
    b'"actualEquity": "142607.35137903", "accountMaintMargin": "23.72469206", '
    b'"accountInitialMargin": "47.44938412", "totalAvailableBalance": "122,559.90199491", '
    b'"accountStatus": "NORMAL", "accountType": "PM_1"}'
)


def _doc(body: bytes) -> dict[str, object]:
    return cli.account_document(decode_account_info(body), body)


def test_json_document_doc_example_exact_snake_case_strings() -> None:
    doc = json.loads(cli.render_json(_doc(DOC_EXAMPLE)))

    assert doc == {
        "uni_mmr": "5167.92171923",
        "account_equity": "122607.35137903",
        "actual_equity": "142607.35137903",
        "account_maint_margin": "23.72469206",
        "account_initial_margin": "47.44938412",
        "total_available_balance": "122559.90199491",
        "account_status": "NORMAL",
        "account_type": "PM_1",
    }
    assert list(doc) == [cli._snake(k) for k in json.loads(DOC_EXAMPLE)]  # Binance's order


def test_json_document_unknown_enum_values_keeps_wire_strings() -> None:
    body = DOC_EXAMPLE.replace(b'"NORMAL"', b'"SOMETHING_NEW"').replace(b'"PM_1"', b'"PM_9"')

    doc = _doc(body)

    assert doc["account_status"] == "SOMETHING_NEW"
    assert doc["account_type"] == "PM_9"


def test_json_document_unknown_fields_passes_them_through_exactly() -> None:
    body = DOC_EXAMPLE[:-1] + b', "newRatioMM": 0.10000000000000000001, "someText": "x"}'

    line = cli.render_json(_doc(body))

    assert '"new_ratio_mm":0.10000000000000000001' in line
    assert json.loads(line)["some_text"] == "x"


def test_json_document_empty_amount_null_and_absent_field_left_out() -> None:
    body = (
        b'{"uniMMR": "", "accountEquity": "1", "actualEquity": "2", '
        b'"accountMaintMargin": "3", "accountStatus": "NORMAL", "accountType": "PM_1"}'
    )

    doc = _doc(body)

    assert doc["uni_mmr"] is None
    assert "account_initial_margin" not in doc
    assert "total_available_balance" not in doc


def test_table_doc_example_prints_every_amount_in_full() -> None:
    table = cli.render_table(decode_account_info(DOC_EXAMPLE), DOC_EXAMPLE)

    for amount in (
        "5167.92171923",
        "122607.35137903",
        "142607.35137903",
        "23.72469206",
        "47.44938412",
        "122559.90199491",
    ):
        assert f" {amount} " in table or table.rstrip().endswith(amount)
    assert "122,559" not in table
    assert "NORMAL" in table
    assert "PM_1" in table


def test_table_ignored_fields_marked_ignored() -> None:
    table = cli.render_table(decode_account_info(DOC_EXAMPLE), DOC_EXAMPLE)
    lines = {line.split()[0]: line for line in table.splitlines()}

    assert "ignored for PM PRO" in lines["account_initial_margin"]
    assert "ignored for PM PRO" in lines["total_available_balance"]
    assert "ignored" not in lines["uni_mmr"]
    assert "ignored" not in lines["account_equity"]


def test_table_long_amount_never_cut_or_rounded() -> None:
    long_amount = "123456789012345678901234567890.123456789012345678901234567890"
    body = DOC_EXAMPLE.replace(b"122607.35137903", long_amount.encode())

    table = cli.render_table(decode_account_info(body), body)

    assert long_amount in table
    assert all(not line.endswith(" ") for line in table.splitlines())


def test_table_absent_empty_and_unknown_values_labelled() -> None:
    body = (
        b'{"uniMMR": "", "accountEquity": "1", "actualEquity": "2", '
        b'"accountMaintMargin": "3", "accountStatus": "HALTED", "accountType": "PM_1", '
        b'"brandNewField": "7"}'
    )

    table = cli.render_table(decode_account_info(body), body)
    lines = {line.split()[0]: line for line in table.splitlines()}

    assert "(empty)" in lines["uni_mmr"]
    assert "(not sent)" in lines["account_initial_margin"]
    assert "HALTED" in lines["account_status"]
    assert "does not know" in lines["account_status"]
    assert "does not know" in lines["brand_new_field"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5167.92171923", "5167.92171923"),
        ("0.00000001", "0.00000001"),
        ("1E-8", "0.00000001"),
        ("1.10", "1.10"),
        ("-0.5", "-0.5"),
    ],
)
def test_amount_text_any_decimal_plain_notation_exact(text: str, expected: str) -> None:
    assert cli.amount_text(Decimal(text)) == expected


@pytest.mark.parametrize(
    ("wire", "snake"),
    [
        ("uniMMR", "uni_mmr"),
        ("accountMaintMargin", "account_maint_margin"),
        ("riskUnitMMList", "risk_unit_mm_list"),
        ("asset", "asset"),
    ],
)
def test_snake_case_binance_names_converted(wire: str, snake: str) -> None:
    assert cli._snake(wire) == snake


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (AuthenticationError(401, -2015, "Invalid API-key"), cli.EXIT_AUTH),
        (InvalidSignatureError(400, -1022, "bad sig"), cli.EXIT_AUTH),
        (ConfigurationError("no API key"), cli.EXIT_AUTH),
        (RateLimitedError(429, -1003, "too many", retry_after=12.0), cli.EXIT_RATE_LIMITED),
        (IPBannedError(418, -1003, "banned", retry_after=120.0), cli.EXIT_RATE_LIMITED),
        (WAFBlockedError(403, None, "waf"), cli.EXIT_RATE_LIMITED),
        (RateLimitTimeoutError("no weight", wait=3.0), cli.EXIT_RATE_LIMITED),
        (ConnectError("refused"), cli.EXIT_NETWORK),
        (ConnectionLostError("dropped"), cli.EXIT_NETWORK),
        (ReadTimeoutError("slow"), cli.EXIT_NETWORK),
        (ServerError(503, None, "unavailable"), cli.EXIT_SERVER),
        (ServerError(200, -1006, "unknown status"), cli.EXIT_SERVER),
        (
            DecodeError("response is an HTML page", status=200, body=b"<html>"),
            cli.EXIT_BAD_RESPONSE,
        ),
        (InvalidRequestError(400, -1102, "param missing"), cli.EXIT_API_ERROR),
        (APIError(400, -21001, "not PM"), cli.EXIT_API_ERROR),
        (RuntimeError("bug"), cli.EXIT_INTERNAL),
    ],
)
def test_classify_each_error_kind_distinct_exit_code(exc: BaseException, code: int) -> None:
    got, message = cli.classify(exc)

    assert got == code
    assert message


def test_classify_api_error_message_has_binance_code_and_msg() -> None:
    _, message = cli.classify(AuthenticationError(401, -2015, "Invalid API-key, IP."))

    assert "-2015" in message
    assert "Invalid API-key, IP." in message


def test_classify_rate_limited_message_says_when_to_retry() -> None:
    _, message = cli.classify(RateLimitedError(429, -1003, "Too much", retry_after=42.0))

    assert "retry after 42 s" in message


def test_exit_codes_all_distinct_and_documented_in_help() -> None:
    codes = [
        cli.EXIT_OK,
        cli.EXIT_API_ERROR,
        cli.EXIT_USAGE,
        cli.EXIT_AUTH,
        cli.EXIT_RATE_LIMITED,
        cli.EXIT_NETWORK,
        cli.EXIT_SERVER,
        cli.EXIT_BAD_RESPONSE,
        cli.EXIT_INTERNAL,
        cli.EXIT_INTERRUPTED,
    ]
    help_text = cli.build_parser().format_help()

    assert len(set(codes)) == len(codes)
    for code in codes:
        assert f"\n  {code} " in help_text


@pytest.mark.parametrize(
    "argv",
    [
        ["account", "--recv-window", "0"],
        ["account", "--recv-window", "60001"],
        ["account", "--timeout", "0"],
        ["account", "--timeout", "nan"],
        ["account", "--max-wait", "-1"],
        ["account", "--base-url", "http://example.com"],
        ["account", "--base-url", "ftp://127.0.0.1"],
        ["account", "--api-secret-file", "a", "--private-key", "b"],
        ["account", "--api-secret-fil", "abbreviations-are-off"],
        ["fake-exchange", "--port", "70000"],
        [],
    ],
)
def test_parser_bad_options_usage_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)

    assert info.value.code == cli.EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_parser_options_after_subcommand_accepted() -> None:
    args = cli.build_parser().parse_args(
        [
            "account",
            "--json",
            "--base-url",
            "http://127.0.0.1:1",
            "--recv-window",
            "60000",
            "--timeout",
            "2.5",
            "--max-wait",
            "0",
            "-v",
        ]
    )

    assert args.json
    assert args.verbose
    assert (args.recv_window, args.timeout, args.max_wait) == (60000, 2.5, 0.0)


def test_help_explains_why_no_secret_argument() -> None:
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices["account"]  # type: ignore[union-attr]
    text = " ".join(sub.format_help().split())

    assert "shell history" in text
    assert "--api-secret-file" in text


@pytest.mark.parametrize("option", ["--api-secret", "--secret"])
def test_parser_secret_as_argument_refused_without_repeating_it(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["account", option, "s3cr3t-value-do-not-echo"])

    err = capsys.readouterr().err
    assert info.value.code == cli.EXIT_USAGE
    assert "shell history" in err
    assert "s3cr3t-value-do-not-echo" not in err


def test_table_unknown_numeric_field_printed_exactly() -> None:
    body = DOC_EXAMPLE[:-1] + b', "newNumber": 1.10000000000000000001}'

    table = cli.render_table(decode_account_info(body), body)
    lines = {line.split()[0]: line for line in table.splitlines()}

    assert lines["new_number"].split()[1] == "1.10000000000000000001"


def test_classify_retried_call_attempts_summarised_once() -> None:
    exc = ServerError(503, -1000, "unknown error")
    exc.attempts = ("ServerError: a", "ServerError: a", "ServerError: a")

    _, message = cli.classify(exc)

    assert message.count("unknown error") == 1
    assert message.endswith("(after 3 attempts)")
    assert len(exc.attempts) == 3  # the exception itself is left as it was


def test_classify_retried_call_different_failures_listed() -> None:
    exc = ConnectionLostError("GET /x: reset")
    exc.attempts = ("ServerError: 503", "ConnectionLostError: reset")

    _, message = cli.classify(exc)

    assert "(after 2 attempts: ServerError: 503; ConnectionLostError: reset)" in message


def test_classify_ip_banned_says_until_when_in_utc() -> None:
    exc = IPBannedError(418, -1003, "banned", retry_after=120.0)
    exc.banned_until = 1_800_000_000.0

    code, message = cli.classify(exc)

    assert code == cli.EXIT_RATE_LIMITED
    assert "banned until 2027-01-15 08:00:00 UTC" in message
    assert "retry after 120 s" in message
