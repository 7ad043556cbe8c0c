"""The declarative endpoint table: one entry per Binance endpoint this SDK calls.

Each entry is data read by the request builder (method, path, signing), the limiter (budget
kind and weight) and the fake exchange (routing, weight accounting). Weights and budgets
come from Binance's documentation (reference section 7); never hard-code them elsewhere.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .models import AccountInfo, ServerTime

__all__ = [
    "ACCOUNT_INFO",
    "ENDPOINTS",
    "SERVER_TIME",
    "USED_WEIGHT_HEADERS",
    "Budget",
    "Endpoint",
    "Security",
]


class Security(enum.Enum):
    """Binance's security type of an endpoint."""

    NONE = "NONE"
    MARKET_DATA = "MARKET_DATA"
    USER_STREAM = "USER_STREAM"
    USER_DATA = "USER_DATA"
    TRADE = "TRADE"
    MARGIN = "MARGIN"

    @property
    def signed(self) -> bool:
        """Whether requests need ``timestamp`` and a ``signature``."""
        return self in (Security.USER_DATA, Security.TRADE, Security.MARGIN)

    @property
    def needs_api_key(self) -> bool:
        """Whether requests carry ``X-MBX-APIKEY``."""
        return self is not Security.NONE


class Budget(enum.Enum):
    """Which of Binance's weight budgets an endpoint draws on."""

    SAPI_UID = "uid"
    """Per account (UID) and endpoint: 180,000 weight per minute."""
    SAPI_IP = "ip"
    """Per egress IP and endpoint: 12,000 weight per minute."""
    API_IP = "api"
    """The spot ``/api`` budget, shared by all ``/api`` endpoints of an IP: 6,000 per minute."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One Binance endpoint, as data."""

    name: str
    """Python-side name (the client's method name)."""
    method: str
    path: str
    security: Security
    budget: Budget
    weight: int | Callable[[Mapping[str, Any]], int]
    """Request weight, or a function of the request parameters when it depends on them."""
    response: type[Any]
    """The type the response body decodes into."""
    idempotent: bool = True
    """Safe to send again when the outcome of an attempt is unknown."""

    def weight_for(self, params: Mapping[str, Any]) -> int:
        """The weight of one call with these parameters."""
        weight = self.weight
        return weight if isinstance(weight, int) else weight(params)

    @property
    def header_name(self) -> str:
        """The lower-case response header carrying the used weight of this endpoint's budget."""
        return USED_WEIGHT_HEADERS[self.budget]


USED_WEIGHT_HEADERS: Mapping[Budget, str] = {
    Budget.SAPI_UID: "x-sapi-used-uid-weight-1m",
    Budget.SAPI_IP: "x-sapi-used-ip-weight-1m",
    Budget.API_IP: "x-mbx-used-weight-1m",
}
"""The lower-case response header reporting the used weight of each budget kind."""


ACCOUNT_INFO = Endpoint(
    name="account_info",
    method="GET",
    path="/sapi/v1/portfolio/account",
    security=Security.USER_DATA,
    budget=Budget.SAPI_UID,
    weight=5,
    response=AccountInfo,
)

SERVER_TIME = Endpoint(
    name="server_time",
    method="GET",
    path="/api/v3/time",
    security=Security.NONE,
    budget=Budget.API_IP,
    weight=1,
    response=ServerTime,
)

ENDPOINTS: Mapping[tuple[str, str], Endpoint] = {
    (e.method, e.path): e for e in (ACCOUNT_INFO, SERVER_TIME)
}
"""Every endpoint by ``(method, path)``."""
