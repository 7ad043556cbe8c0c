"""The events of the Portfolio Margin Pro user data stream, typed and exact.

Binance's ``pm-classic`` stream documents two events: ``PM_PRO_ACCOUNT_UPDATE`` (the
account's risk numbers, every 5 seconds) and ``riskLevelChange`` (the account entered a risk
level). The USDⓈ-M ``listenKeyExpired`` event is handled too, and any other event type comes
through as :class:`UnknownEvent` with its raw bytes, never as a crash. The SDK adds
:class:`StreamReconnected` whenever it had to reconnect.

Amounts are ``Decimal``, decoded like the REST answers (thousands separators and ``""``
tolerated, NaN refused). :func:`decode_stream_event` is pure: bytes (or text) in, one event
out, or a :class:`~binance_pmpro.errors.StreamDecodeError` for a frame that is not a readable
event.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, TypeAlias

import msgspec

from .decoding import _normalise, _plain_decoder
from .errors import DecodeError, StreamDecodeError
from .models import UNKNOWN_VALUES_SEEN, AccountInfo, _OpenEnum, ms_to_datetime

__all__ = [
    "AccountUpdate",
    "ListenKey",
    "ListenKeyExpired",
    "RiskLevel",
    "RiskLevelChange",
    "StreamEvent",
    "StreamReconnected",
    "UnknownEvent",
    "decode_stream_event",
]


class RiskLevel(_OpenEnum):
    """``s`` of a ``riskLevelChange`` event: the risk level the account entered.

    ``MARGIN_CALL``, ``REDUCE_ONLY`` and ``FORCE_LIQUIDATION`` are documented; ``NORMAL``
    appears in Binance's own SDK only. ``UNKNOWN`` stands for a value this release does not
    know; the raw string is in :attr:`RiskLevelChange.risk_level_raw`.
    """

    MARGIN_CALL = "MARGIN_CALL"
    REDUCE_ONLY = "REDUCE_ONLY"
    FORCE_LIQUIDATION = "FORCE_LIQUIDATION"
    NORMAL = "NORMAL"
    UNKNOWN = "UNKNOWN"


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="e"):
    """Common to Binance's events: the event time."""

    event_time: int = msgspec.field(name="E")
    """Event time, ms since the epoch (Binance's ``E``)."""

    @property
    def time(self) -> datetime:
        """:attr:`event_time` as an aware UTC ``datetime``."""
        return ms_to_datetime(self.event_time)


class AccountUpdate(_Event, frozen=True, kw_only=True, tag="PM_PRO_ACCOUNT_UPDATE"):
    """``PM_PRO_ACCOUNT_UPDATE``: the account's risk numbers, pushed every 5 seconds.

    All amounts are in USD; ``None`` means Binance sent an empty string.
    """

    type: ClassVar[Literal["account_update"]] = "account_update"
    uni_mmr: Decimal | None = msgspec.field(name="u")
    """Unified maintenance-margin ratio (uniMMR)."""
    equity: Decimal | None = msgspec.field(name="eq")
    """Account equity after collateral rates."""
    actual_equity: Decimal | None = msgspec.field(name="ae")
    """Account equity ignoring collateral rates."""
    maintenance_margin: Decimal | None = msgspec.field(name="mm")
    """Total maintenance margin."""
    initial_margin: Decimal | None = msgspec.field(default=None, name="im")
    """Total initial margin."""
    available_balance: Decimal | None = msgspec.field(default=None, name="avb")
    """Total available balance."""
    virtual_max_withdraw: Decimal | None = msgspec.field(default=None, name="vmw")
    """Virtual maximum withdrawable amount."""


class RiskLevelChange(_Event, frozen=True, kw_only=True, tag="riskLevelChange"):
    """``riskLevelChange`` (also spelled ``RISK_LEVEL_CHANGE``): the account entered a risk
    level. Guidance only: in a fast market it may arrive after a liquidation happened.

    Amounts are in USD; ``None`` means Binance sent an empty string.
    """

    type: ClassVar[Literal["risk_level_change"]] = "risk_level_change"
    uni_mmr: Decimal | None = msgspec.field(name="u")
    """Unified maintenance-margin ratio (uniMMR)."""
    risk_level: RiskLevel = msgspec.field(name="s")
    """The level entered (see :class:`RiskLevel`)."""
    equity: Decimal | None = msgspec.field(name="eq")
    """Account equity after collateral rates."""
    actual_equity: Decimal | None = msgspec.field(name="ae")
    """Account equity ignoring collateral rates."""
    maintenance_margin: Decimal | None = msgspec.field(name="m")
    """Total maintenance margin (``m`` here, ``mm`` in the account update)."""
    risk_level_raw: str | None = msgspec.field(default=None, name="s.raw")
    """The string Binance sent when ``risk_level`` is ``UNKNOWN``; None otherwise."""


class ListenKeyExpired(_Event, frozen=True, kw_only=True, tag="listenKeyExpired"):
    """``listenKeyExpired``: the stream's listen key expired; no further events come on it.
    The stream creates a new key and reconnects by itself. The key itself is not kept (it
    is a credential)."""

    type: ClassVar[Literal["listen_key_expired"]] = "listen_key_expired"


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event type this release does not know, passed through untouched."""

    type: ClassVar[Literal["unknown"]] = "unknown"
    event_type: str
    """Binance's ``e``."""
    raw: bytes
    """The frame as received (UTF-8 JSON)."""


class StreamReconnected(msgspec.Struct, frozen=True, kw_only=True):
    """The SDK reconnected the stream: events may have been missed in between.

    ``snapshot`` is the account fetched over REST after the gap (None when that failed),
    so the state is current again before the next pushed update.
    """

    type: ClassVar[Literal["reconnected"]] = "reconnected"
    reason: str
    """Why: ``"dropped"``, ``"stalled"``, ``"scheduled"``, ``"listen_key_expired"`` or
    ``"closed_by_server"``."""
    attempt: int
    """Connection attempts it took (1: the first try succeeded)."""
    snapshot: AccountInfo | None = None
    """``GET /sapi/v1/portfolio/account`` fetched after the gap, if it succeeded."""


StreamEvent: TypeAlias = (
    AccountUpdate | RiskLevelChange | ListenKeyExpired | UnknownEvent | StreamReconnected
)
"""What a :class:`~binance_pmpro.user_stream.UserStream` yields."""


class ListenKey(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of the listen key endpoints: ``{"listenKey": ...}`` (``{}`` for a close,
    and for a keep-alive before 2024-04-25). The key is a credential: its repr hides it."""

    listen_key: str | None = msgspec.field(default=None, name="listenKey")

    def __repr__(self) -> str:
        return "ListenKey(<redacted>)" if self.listen_key else "ListenKey(None)"


_KNOWN: dict[str, type[_Event]] = {
    "pmproaccountupdate": AccountUpdate,
    "risklevelchange": RiskLevelChange,
    "listenkeyexpired": ListenKeyExpired,
}
_TAG_OF: dict[type[_Event], str] = {
    AccountUpdate: "PM_PRO_ACCOUNT_UPDATE",
    RiskLevelChange: "riskLevelChange",
    ListenKeyExpired: "listenKeyExpired",
}
# strict=False: the Options page prints ``E`` as a numeric string; accept both.
_fast = msgspec.json.Decoder(AccountUpdate | RiskLevelChange | ListenKeyExpired, strict=False)
_LITERAL_UNKNOWN = b'"UNKNOWN"'
# One C-level fetch of every amount per event type: checking them one by one with
# Decimal.is_finite costs a third of summing them, which matters at a frame every few ms.
_AMOUNTS: dict[type[Any], Callable[[Any], tuple[Decimal | None, ...]]] = {
    cls: operator.attrgetter(
        *(f.name for f in msgspec.structs.fields(cls) if "Decimal" in str(f.type))
    )
    for cls in (AccountUpdate, RiskLevelChange)
}
_is_finite = Decimal.is_finite


def _finite(event: Any) -> bool:
    """Whether every amount is a finite number (Decimal also reads NaN and Infinity)."""
    amounts = _AMOUNTS.get(type(event))
    # filter(None) drops None (Binance's "") and zeros, both fine; NaNs are truthy.
    return amounts is None or all(map(_is_finite, filter(None, amounts(event))))


def _canonical(event_type: str) -> type[_Event] | None:
    """Binance's own SDK matches event names case-insensitively without underscores, which
    makes ``riskLevelChange`` and ``RISK_LEVEL_CHANGE`` the same event."""
    return _KNOWN.get(event_type.replace("_", "").lower())


def decode_stream_event(
    frame: bytes | str,
) -> AccountUpdate | RiskLevelChange | ListenKeyExpired | UnknownEvent:
    """Decode one stream frame (a JSON object with an ``e`` field) into its event.

    Known events become their typed Struct, other event types an :class:`UnknownEvent`
    with the raw bytes. A combined-stream wrapper (``{"stream": ..., "data": {...}}``) is
    unwrapped. Raises :class:`~binance_pmpro.errors.StreamDecodeError` for a frame that is
    not JSON, has no ``e``, or holds a known event with an unreadable field.
    """
    data = frame.encode() if isinstance(frame, str) else bytes(frame)
    if _LITERAL_UNKNOWN not in data:
        seen = UNKNOWN_VALUES_SEEN[0]
        try:
            event: AccountUpdate | RiskLevelChange | ListenKeyExpired = _fast.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        else:
            if UNKNOWN_VALUES_SEEN[0] == seen and _finite(event):
                return event
    return _slow(data)


def _slow(data: bytes) -> AccountUpdate | RiskLevelChange | ListenKeyExpired | UnknownEvent:
    """The careful path: the other spelling of a name, quirky amounts, unknown enum values
    and unknown events, with an error naming the field when a value is wrong."""
    try:
        plain: Any = _plain_decoder.decode(data)
    except msgspec.DecodeError:
        raise StreamDecodeError("stream frame is not valid JSON", frame=data) from None
    if isinstance(plain, dict) and isinstance(plain.get("data"), dict) and "stream" in plain:
        plain = plain["data"]
    if not isinstance(plain, dict):
        raise StreamDecodeError("stream frame is not a JSON object", frame=data)
    event_type = plain.get("e")
    if not isinstance(event_type, str):
        raise StreamDecodeError("stream frame has no event type (e)", frame=data, field="$.e")
    cls = _canonical(event_type)
    if cls is None:
        return UnknownEvent(event_type=event_type, raw=data)
    plain["e"] = _TAG_OF[cls]
    try:
        normalised = _normalise(plain, cls, "$")
        event = msgspec.convert(normalised, cls, strict=False)
    except DecodeError as exc:
        raise StreamDecodeError(f"{event_type}: {exc}", frame=data, field=exc.field) from None
    except msgspec.ValidationError as exc:
        raise StreamDecodeError(f"{event_type}: unexpected shape: {exc}", frame=data) from None
    if isinstance(event.event_time, bool):
        raise StreamDecodeError(f"{event_type}: E is not a time", frame=data, field="$.E")
    result: AccountUpdate | RiskLevelChange | ListenKeyExpired = event  # type: ignore[assignment]
    return result
