"""Account bodies for the decoding tests: ``GET /sapi/v1/portfolio/account`` answers built
field by field."""

from __future__ import annotations

import json
from typing import Any

AMOUNT_FIELDS = [
    "uniMMR",
    "accountEquity",
    "actualEquity",
    "accountMaintMargin",
    "accountInitialMargin",
    "totalAvailableBalance",
]
"""The account's amount fields, by their wire names."""


def account_body(extra_first: dict[str, Any] | None = None, **amounts: str) -> bytes:
    """A compact account body: ``extra_first`` members first, every amount "1.5" unless
    given in ``amounts`` (by wire name), status NORMAL and type PM_1."""
    doc: dict[str, Any] = dict(extra_first or {})
    doc |= dict.fromkeys(AMOUNT_FIELDS, "1.5")
    doc |= {"accountStatus": "NORMAL", "accountType": "PM_1"} | amounts
    return json.dumps(doc, separators=(",", ":")).encode()
