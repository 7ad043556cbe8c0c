"""binance-pmpro: an async, typed, exact and rate-limit-safe client for Binance's
Portfolio Margin Pro API.

    from binance_pmpro import PortfolioMarginProClient

    async with PortfolioMarginProClient(api_key=..., api_secret=...) as client:
        info = await client.account_info()
        info.uni_mmr          # Decimal('5167.92171923')
        info.account_status   # AccountStatus.NORMAL
"""

import logging as _logging

from .client import PortfolioMarginProClient
from .decoding import decode_account_info
from .errors import (
    APIError,
    AuthenticationError,
    BinanceError,
    ClientClosedError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    DeadlineExceededError,
    DecodeError,
    EndpointGoneError,
    InvalidRequestError,
    InvalidSignatureError,
    IPBannedError,
    ListenKeyNotFoundError,
    NotPortfolioMarginError,
    OutcomeUnknownError,
    PoolTimeoutError,
    RateLimitedError,
    RateLimitTimeoutError,
    ReadTimeoutError,
    RequestTimeoutError,
    ServerError,
    SharedBudgetUnavailableError,
    StreamDecodeError,
    TimestampError,
    TransportError,
    WAFBlockedError,
)
from .events import RequestEvent
from .models import (
    AccountInfo,
    AccountStatus,
    AccountType,
    AssetIndexPrice,
    AssetLeverage,
    Balance,
    BankruptcyLoan,
    CollateralRate,
    EarnAsset,
    EarnAssetBalance,
    EarnTransferType,
    InterestRecord,
    OperationResult,
    PortfolioSnapshot,
    RepayHistoryPage,
    RepayRecord,
    RepaySource,
    SpanAccountInfo,
    TieredCollateralRate,
    TransferSide,
)
from .monitor import (
    RISK_TIERS,
    AccountSnapshot,
    Breach,
    EquityDrop,
    Recovery,
    RiskEvent,
    RiskMonitor,
    RiskTier,
    Stale,
    StatusChange,
    UniMMRBelow,
)
from .portfolio import WriteOutcomeUnknownError
from .ratelimit import BudgetKey, BudgetSnapshot, Limiter, Priority, RateLimiter
from .retry import NO_RETRY, RetryPolicy
from .stream_events import (
    AccountUpdate,
    ListenKeyExpired,
    RiskLevel,
    RiskLevelChange,
    StreamEvent,
    StreamReconnected,
    UnknownEvent,
    decode_stream_event,
)
from .transport import Timeouts
from .user_stream import UserStream
from .validation import EndpointCapError, ParameterError

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # RedisRateLimiter needs coredis (the "redis" extra): imported on first access only, so
    # `import binance_pmpro` works without Redis installed.
    if name == "RedisRateLimiter":
        from .redis_budget import RedisRateLimiter

        return RedisRateLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Library etiquette: our warnings reach the application's handlers, or nowhere.
_logging.getLogger("binance_pmpro").addHandler(_logging.NullHandler())

__all__ = [
    "NO_RETRY",
    "RISK_TIERS",
    "APIError",
    "AccountInfo",
    "AccountSnapshot",
    "AccountStatus",
    "AccountType",
    "AccountUpdate",
    "AssetIndexPrice",
    "AssetLeverage",
    "AuthenticationError",
    "Balance",
    "BankruptcyLoan",
    "BinanceError",
    "Breach",
    "BudgetKey",
    "BudgetSnapshot",
    "ClientClosedError",
    "CollateralRate",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "DeadlineExceededError",
    "DecodeError",
    "EarnAsset",
    "EarnAssetBalance",
    "EarnTransferType",
    "EndpointCapError",
    "EndpointGoneError",
    "EquityDrop",
    "IPBannedError",
    "InterestRecord",
    "InvalidRequestError",
    "InvalidSignatureError",
    "Limiter",
    "ListenKeyExpired",
    "ListenKeyNotFoundError",
    "NotPortfolioMarginError",
    "OperationResult",
    "OutcomeUnknownError",
    "ParameterError",
    "PoolTimeoutError",
    "PortfolioMarginProClient",
    "PortfolioSnapshot",
    "Priority",
    "RateLimitTimeoutError",
    "RateLimitedError",
    "RateLimiter",
    "ReadTimeoutError",
    "Recovery",
    "RepayHistoryPage",
    "RepayRecord",
    "RepaySource",
    "RequestEvent",
    "RequestTimeoutError",
    "RetryPolicy",
    "RiskEvent",
    "RiskLevel",
    "RiskLevelChange",
    "RiskMonitor",
    "RiskTier",
    "ServerError",
    "SharedBudgetUnavailableError",
    "SpanAccountInfo",
    "Stale",
    "StatusChange",
    "StreamDecodeError",
    "StreamEvent",
    "StreamReconnected",
    "TieredCollateralRate",
    "Timeouts",
    "TimestampError",
    "TransferSide",
    "TransportError",
    "UniMMRBelow",
    "UnknownEvent",
    "UserStream",
    "WAFBlockedError",
    "WriteOutcomeUnknownError",
    "__version__",
    "decode_account_info",
    "decode_stream_event",
]
