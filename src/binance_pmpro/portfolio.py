"""The typed methods of the Portfolio Margin Pro family, as a mixin of the client.

Every method is a few lines: it names its endpoint in the table
(:mod:`binance_pmpro.endpoints`), passes its arguments by Binance's names, and delegates to
:meth:`PortfolioEndpointsMixin._invoke`, which checks the parameters locally
(:func:`~binance_pmpro.validation.prepare_params`), keeps the per-endpoint caps, and runs the
client's one call path (limiter, signing, retries, decoding).

Writes are not reads: a POST or DELETE that may have reached Binance is never sent again
automatically, and when its outcome is unknown (a timeout, a lost connection, a 5xx, an
answer that cannot be read) the caller gets :class:`WriteOutcomeUnknownError`, which says
what to look at before trying again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ._host import ClientHost
from .decoding import decoder_for
from .endpoints import (
    ACCOUNT_INFO,
    ASSET_COLLECTION,
    ASSET_INDEX_PRICE,
    AUTO_COLLECTION,
    AUTO_REPAY_STATUS,
    BALANCE,
    BANKRUPTCY_LOAN,
    BNB_TRANSFER,
    COLLATERAL_RATE,
    DELETE_MARGIN_CALL_LEVEL,
    DELTA_MODE,
    EARN_ASSET_BALANCE,
    EARN_ASSET_TRANSFER,
    INTEREST_HISTORY,
    MARGIN_ASSET_LEVERAGE,
    MARGIN_CALL_LEVEL,
    REPAY,
    REPAY_FUTURES_NEGATIVE_BALANCE,
    REPAY_HISTORY,
    SET_AUTO_REPAY,
    SET_DELTA_MODE,
    SET_MARGIN_CALL_LEVEL,
    SPAN_ACCOUNT_INFO,
    TIERED_COLLATERAL_RATE,
    Endpoint,
)
from .errors import BinanceError, DecodeError, OutcomeUnknownError, RateLimitedError
from .models import (
    AccountInfo,
    AssetIndexPrice,
    AssetLeverage,
    AutoRepayStatus,
    Balance,
    BankruptcyLoan,
    CollateralRate,
    DeltaModeStatus,
    EarnAsset,
    EarnAssetBalance,
    EarnTransferType,
    InterestRecord,
    MarginCallLevel,
    OperationResult,
    PortfolioSnapshot,
    RepayHistoryPage,
    RepayRecord,
    RepaySource,
    SpanAccountInfo,
    TieredCollateralRate,
    TransactionResult,
    TransferSide,
    datetime_to_ms,
)
from .validation import DAY_MS, CapLedger, EndpointCapError, ParameterError, prepare_params

if TYPE_CHECKING:
    pass

__all__ = ["PortfolioEndpointsMixin", "WriteOutcomeUnknownError", "decode_response"]

logger = logging.getLogger("binance_pmpro")

MAX_PAGE_SIZE = 100
"""Binance's largest ``size`` for the history endpoints."""


class WriteOutcomeUnknownError(OutcomeUnknownError):
    """A write (POST/DELETE) may or may not have been executed by Binance, and it was not
    sent again: a timeout or lost connection after sending, a 5xx or "execution status
    unknown" answer, or an answer that could not be read.

    Look at what :attr:`verify` names before sending the write again. ``__cause__`` is the
    underlying error; ``method``, ``path`` and ``endpoint`` (the client method's name) say
    which write it was.
    """

    def __init__(self, endpoint: Endpoint, cause: BinanceError) -> None:
        self.method = endpoint.method
        self.path = endpoint.path
        self.endpoint = endpoint.name
        self.verify = endpoint.verify
        self.cause = cause
        super().__init__(
            f"{endpoint.method} {endpoint.path}: outcome unknown, Binance may or may not have "
            f"executed it ({type(cause).__name__}: {cause}); it was not sent again. Before "
            f"trying again, check {endpoint.verify or 'the account'}"
        )


def decode_response(endpoint: Endpoint, body: bytes, status: int = 200) -> Any:
    """Decode a response body of ``endpoint`` into its typed result (``endpoint.response``).

    An array endpoint that answers with a bare object (Binance's ``/papi`` balance does
    when ``asset`` is sent) gives a one-item list.
    """
    if endpoint is BALANCE and body.lstrip()[:1] == b"{":
        return [decoder_for(Balance).decode(body, status)]
    return decoder_for(endpoint.response).decode(body, status)


class PortfolioEndpointsMixin(ClientHost):
    """The Portfolio Margin Pro endpoints as typed methods; mixed into
    :class:`~binance_pmpro.PortfolioMarginProClient`.

    Each method takes keyword arguments only, plus the per-call options of every call:
    ``recv_window`` (ms), ``max_wait`` (s to wait for rate-limit weight) and
    ``call_timeout`` (s for the whole call, retries included). Amounts are ``Decimal``
    (a float is refused), times aware ``datetime`` objects.
    """

    _portfolio_caps: CapLedger

    # --- the shared path ----------------------------------------------------------------

    def _cap_ledger(self) -> CapLedger:
        ledger: CapLedger | None = getattr(self, "_portfolio_caps", None)
        if ledger is None:
            ledger = self._portfolio_caps = CapLedger()
        return ledger

    async def _invoke(
        self,
        endpoint: Endpoint,
        values: Mapping[str, Any],
        recv_window: int | None,
        max_wait: float | None,
        call_timeout: float | None,
        *,
        raw: bool = False,
    ) -> Any:
        """Check, call, and apply the write and cap rules; the decoded result, or the body
        when ``raw``."""
        params = prepare_params(endpoint, values)
        ledger = self._cap_ledger() if endpoint.cap is not None else None
        if ledger is not None:
            ledger.check(endpoint, anyio.current_time())
        try:
            if raw or endpoint is BALANCE:
                response = await self._send(
                    endpoint,
                    params,
                    recv_window=recv_window,
                    max_wait=max_wait,
                    call_timeout=call_timeout,
                )
                result: Any = response.body if raw else decode_response(endpoint, response.body)
            else:
                result = await self._call(
                    endpoint,
                    params,
                    recv_window=recv_window,
                    max_wait=max_wait,
                    call_timeout=call_timeout,
                )
        except (OutcomeUnknownError, DecodeError) as exc:
            if endpoint.idempotent:
                raise
            if ledger is not None:
                ledger.record(endpoint, anyio.current_time())
            raise WriteOutcomeUnknownError(endpoint, exc) from exc
        except RateLimitedError as exc:
            cap = endpoint.cap
            if cap is None or exc.status in (418, 429):
                raise
            # Binance's refusal of a capped endpoint (other clients or processes used it up).
            raise EndpointCapError(
                f"{endpoint.method} {endpoint.path}: Binance refused the call: it allows "
                f"{cap.text} per account ({exc.msg})",
                endpoint=f"{endpoint.method} {endpoint.path}",
                cap=cap,
                local=False,
            ) from exc
        if ledger is not None:
            ledger.record(endpoint, anyio.current_time())
        return result

    async def call_raw(
        self,
        endpoint: Endpoint,
        params: Mapping[str, Any] | None = None,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> bytes:
        """The undecoded response body of one call of ``endpoint`` (an entry of
        :data:`~binance_pmpro.endpoints.PORTFOLIO_ENDPOINTS`), with ``params`` by Binance's
        names. The same checks, caps and write rules as the typed methods apply; errors
        still raise. Decode the body with :func:`decode_response`."""
        body: bytes = await self._invoke(
            endpoint, params or {}, recv_window, max_wait, call_timeout, raw=True
        )
        return body

    # --- reads ------------------------------------------------------------------------------

    async def span_account_info(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> SpanAccountInfo:
        """``GET /sapi/v2/portfolio/account`` (weight 5 on the IP budget): the summary of a
        Portfolio Margin Pro SPAN account with the maintenance margin per risk unit."""
        result: SpanAccountInfo = await self._invoke(
            SPAN_ACCOUNT_INFO, {}, recv_window, max_wait, call_timeout
        )
        return result

    async def balance(
        self,
        *,
        asset: str | None = None,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> list[Balance]:
        """``GET /sapi/v1/portfolio/balance`` (weight 20 on the IP budget): the wallet
        balances per asset, or of ``asset`` only. An empty amount (Binance's own example
        has ``"cmUnrealizedPNL": ""``) is None, not zero."""
        result: list[Balance] = await self._invoke(
            BALANCE, {"asset": asset}, recv_window, max_wait, call_timeout
        )
        return result

    async def collateral_rates(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> list[CollateralRate]:
        """``GET /sapi/v1/portfolio/collateralRate`` (MARKET_DATA, weight 50 on the IP
        budget; an API key without a secret is enough): the collateral rate per asset."""
        result: list[CollateralRate] = await self._invoke(
            COLLATERAL_RATE, {}, recv_window, max_wait, call_timeout
        )
        return result

    async def tiered_collateral_rates(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> list[TieredCollateralRate]:
        """``GET /sapi/v2/portfolio/collateralRate`` (weight 50 on the IP budget): the
        collateral rate tiers per asset."""
        result: list[TieredCollateralRate] = await self._invoke(
            TIERED_COLLATERAL_RATE, {}, recv_window, max_wait, call_timeout
        )
        return result

    async def asset_index_price(
        self,
        *,
        asset: str | None = None,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> list[AssetIndexPrice]:
        """``GET /sapi/v1/portfolio/asset-index-price`` (MARKET_DATA, IP budget): the USD
        index price of ``asset`` (weight 1) or of every asset (weight 50)."""
        result: list[AssetIndexPrice] = await self._invoke(
            ASSET_INDEX_PRICE, {"asset": asset}, recv_window, max_wait, call_timeout
        )
        return result

    async def margin_asset_leverage(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> list[AssetLeverage]:
        """``GET /sapi/v1/portfolio/margin-asset-leverage`` (weight 50 on the IP budget):
        the leverage per margin asset."""
        result: list[AssetLeverage] = await self._invoke(
            MARGIN_ASSET_LEVERAGE, {}, recv_window, max_wait, call_timeout
        )
        return result

    async def bankruptcy_loan(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> BankruptcyLoan:
        """``GET /sapi/v1/portfolio/pmLoan`` (weight 500 on the account's UID budget): the
        bankruptcy loan still owed (amount 0 when there is none)."""
        result: BankruptcyLoan = await self._invoke(
            BANKRUPTCY_LOAN, {}, recv_window, max_wait, call_timeout
        )
        return result

    async def repay_history(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        page: int | None = None,
        size: int | None = None,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> RepayHistoryPage:
        """``GET /sapi/v1/portfolio/pmloan-history`` (weight 500 on the IP budget): one page
        (``page`` from 1, ``size`` up to 100, Binance's default 10) of the bankruptcy-loan
        repayments between ``start`` and ``end``.

        Binance's range rules: no bound covers the last 30 days; only ``start`` the 30 days
        from it; only ``end`` the 30 days up to it; both at most 360 days apart (checked
        here). :meth:`iter_repay_history` walks every page of any range.
        """
        result: RepayHistoryPage = await self._invoke(
            REPAY_HISTORY,
            {"startTime": start, "endTime": end, "current": page, "size": size},
            recv_window,
            max_wait,
            call_timeout,
        )
        return result

    async def interest_history(
        self,
        *,
        asset: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        size: int | None = None,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> list[InterestRecord]:
        """``GET /sapi/v1/portfolio/interest-history`` (weight 50 on the IP budget): up to
        ``size`` (at most 100, Binance's default 10) negative-balance interest charges
        between ``start`` and ``end``. There is no page number: walk by time with
        :meth:`iter_interest_history`."""
        result: list[InterestRecord] = await self._invoke(
            INTEREST_HISTORY,
            {"asset": asset, "startTime": start, "endTime": end, "size": size},
            recv_window,
            max_wait,
            call_timeout,
        )
        return result

    async def auto_repay_status(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> bool:
        """``GET /sapi/v1/portfolio/repay-futures-switch`` (weight 30 on the IP budget):
        whether futures negative balances are repaid automatically."""
        result: AutoRepayStatus = await self._invoke(
            AUTO_REPAY_STATUS, {}, recv_window, max_wait, call_timeout
        )
        return result.auto_repay

    async def earn_asset_balance(
        self,
        *,
        asset: EarnAsset | str,
        transfer_type: EarnTransferType,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> EarnAssetBalance:
        """``GET /sapi/v1/portfolio/earn-asset-balance`` (weight 1500 on the IP budget): how
        much of ``asset`` (Binance documents ``LDUSDT`` only) can be transferred in the
        direction ``transfer_type``."""
        result: EarnAssetBalance = await self._invoke(
            EARN_ASSET_BALANCE,
            {"asset": asset, "transferType": transfer_type},
            recv_window,
            max_wait,
            call_timeout,
        )
        return result

    async def delta_mode(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> bool:
        """``GET /sapi/v1/portfolio/delta-mode`` (weight 1500 on the IP budget): whether
        delta mode is on."""
        result: DeltaModeStatus = await self._invoke(
            DELTA_MODE, {}, recv_window, max_wait, call_timeout
        )
        return result.delta_enabled

    async def margin_call_level(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> Decimal | None:
        """``GET /sapi/v1/portfolio/margin-call-level`` (weight 1500 on the IP budget): the
        uniMMR at which Binance sends a margin call, or None when none is set (Binance
        answers ``{}``)."""
        result: MarginCallLevel = await self._invoke(
            MARGIN_CALL_LEVEL, {}, recv_window, max_wait, call_timeout
        )
        return result.margin_call_level

    # --- writes -------------------------------------------------------------------------

    async def repay_bankruptcy_loan(
        self,
        *,
        source: RepaySource | None = None,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> int:
        """``POST /sapi/v1/portfolio/repay`` (weight 3000 on the account's UID budget):
        repay the bankruptcy loan from ``source`` (Binance's default ``SPOT``); returns the
        transaction id. The API key needs the Spot & Margin Trading permission.

        Never retried once it may have reached Binance: on an unknown outcome
        :class:`WriteOutcomeUnknownError` says to check the repay history and the loan.
        """
        result: TransactionResult = await self._invoke(
            REPAY, {"from": source}, recv_window, max_wait, call_timeout
        )
        return result.tran_id

    async def set_auto_repay(
        self,
        *,
        enabled: bool,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> OperationResult:
        """``POST /sapi/v1/portfolio/repay-futures-switch`` (weight 1500 on the IP budget):
        switch the automatic repayment of futures negative balances on or off. Binance
        allows 20 calls per day; this client refuses the 21st locally
        (:class:`~binance_pmpro.validation.EndpointCapError`)."""
        result: OperationResult = await self._invoke(
            SET_AUTO_REPAY, {"autoRepay": enabled}, recv_window, max_wait, call_timeout
        )
        return result

    async def repay_futures_negative_balance(
        self,
        *,
        source: RepaySource | None = None,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> OperationResult:
        """``POST /sapi/v1/portfolio/repay-futures-negative-balance`` (weight 1500 on the IP
        budget): repay futures negative balances from ``source`` (default ``SPOT``)."""
        result: OperationResult = await self._invoke(
            REPAY_FUTURES_NEGATIVE_BALANCE, {"from": source}, recv_window, max_wait, call_timeout
        )
        return result

    async def fund_auto_collection(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> OperationResult:
        """``POST /sapi/v1/portfolio/auto-collection`` (weight 1500 on the IP budget): move
        every asset from the futures wallets to the margin wallet (BNB is not collected
        from USDⓈ-M). Binance allows 500 calls per hour (rolling)."""
        result: OperationResult = await self._invoke(
            AUTO_COLLECTION, {}, recv_window, max_wait, call_timeout
        )
        return result

    async def fund_collection_by_asset(
        self,
        *,
        asset: str,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> OperationResult:
        """``POST /sapi/v1/portfolio/asset-collection`` (weight 60 on the IP budget): move
        one asset from the futures wallets to the margin wallet (BNB is not supported)."""
        result: OperationResult = await self._invoke(
            ASSET_COLLECTION, {"asset": asset}, recv_window, max_wait, call_timeout
        )
        return result

    async def bnb_transfer(
        self,
        *,
        amount: Decimal,
        side: TransferSide,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> int:
        """``POST /sapi/v1/portfolio/bnb-transfer`` (weight 1500 on the IP budget): move
        ``amount`` BNB between the margin and the USDⓈ-M wallets; returns the transaction
        id. Binance allows 2 calls per 10 minutes (rolling); this client refuses the third
        locally (:class:`~binance_pmpro.validation.EndpointCapError`)."""
        result: TransactionResult = await self._invoke(
            BNB_TRANSFER,
            {"amount": amount, "transferSide": side},
            recv_window,
            max_wait,
            call_timeout,
        )
        return result.tran_id

    async def earn_asset_transfer(
        self,
        *,
        asset: EarnAsset | str,
        transfer_type: EarnTransferType,
        amount: Decimal,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> OperationResult:
        """``POST /sapi/v1/portfolio/earn-asset-transfer`` (weight 1500 on the account's UID
        budget): move ``amount`` of an Earn asset (``LDUSDT`` or ``RWUSD``) between Binance
        Earn and the futures wallet."""
        result: OperationResult = await self._invoke(
            EARN_ASSET_TRANSFER,
            {"asset": asset, "transferType": transfer_type, "amount": amount},
            recv_window,
            max_wait,
            call_timeout,
        )
        return result

    async def set_delta_mode(
        self,
        *,
        enabled: bool,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> OperationResult:
        """``POST /sapi/v1/portfolio/delta-mode`` (weight 1500 on the IP budget): switch
        delta mode on or off."""
        result: OperationResult = await self._invoke(
            SET_DELTA_MODE, {"deltaEnabled": enabled}, recv_window, max_wait, call_timeout
        )
        return result

    async def set_margin_call_level(
        self,
        *,
        level: Decimal,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> Decimal | None:
        """``POST /sapi/v1/portfolio/margin-call-level`` (weight 1500 on the IP budget):
        ask Binance for an e-mail/SMS when uniMMR falls to ``level`` (within [1.1, 2.0],
        checked here); returns the level as Binance stored it."""
        result: MarginCallLevel = await self._invoke(
            SET_MARGIN_CALL_LEVEL, {"marginCallLevel": level}, recv_window, max_wait, call_timeout
        )
        return result.margin_call_level

    async def delete_margin_call_level(
        self,
        *,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> OperationResult:
        """``DELETE /sapi/v1/portfolio/margin-call-level`` (weight 1500 on the IP budget):
        remove the margin-call level."""
        result: OperationResult = await self._invoke(
            DELETE_MARGIN_CALL_LEVEL, {}, recv_window, max_wait, call_timeout
        )
        return result

    # --- conveniences -------------------------------------------------------------------

    async def portfolio(
        self,
        *,
        span: bool = False,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> PortfolioSnapshot:
        """The account (``GET /sapi/v1/portfolio/account``, UID weight 5) and its balances
        (``GET /sapi/v1/portfolio/balance``, IP weight 20) fetched concurrently, each on
        its own budget; with ``span=True`` the SPAN view (``GET /sapi/v2/portfolio/account``,
        IP weight 5) too. The first error of any of them is raised (the others are
        cancelled)."""
        results: dict[str, Any] = {}
        failures: list[BaseException] = []

        async def fetch(key: str, endpoint: Endpoint, group: TaskGroup) -> None:
            try:
                if endpoint is ACCOUNT_INFO:
                    results[key] = await self._call(
                        endpoint,
                        {},
                        recv_window=recv_window,
                        max_wait=max_wait,
                        call_timeout=call_timeout,
                    )
                else:
                    results[key] = await self._invoke(
                        endpoint, {}, recv_window, max_wait, call_timeout
                    )
            except Exception as exc:
                # Raised as itself below rather than wrapped in an exception group.
                failures.append(exc)
                group.cancel_scope.cancel()

        parts = [("account", ACCOUNT_INFO), ("balances", BALANCE)]
        if span:
            parts.append(("span", SPAN_ACCOUNT_INFO))
        async with anyio.create_task_group() as group:
            for key, endpoint in parts:
                group.start_soon(fetch, key, endpoint, group)
        if failures:
            raise failures[0]
        account: AccountInfo = results["account"]
        return PortfolioSnapshot(
            account=account, balances=results["balances"], span=results.get("span")
        )

    async def iter_repay_history(
        self,
        *,
        start: datetime,
        end: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> AsyncIterator[RepayRecord]:
        """Every bankruptcy-loan repayment between ``start`` and ``end`` (default: now),
        newest span first, rows in Binance's order within it.

        A range longer than Binance's 360 days is split into allowed spans, and each span's
        pages are walked; every request goes through the limiter (weight 500 each on the
        IP budget), so a long walk paces itself instead of failing."""
        rule = REPAY_HISTORY.date_range
        assert rule is not None
        low, high = self._range_ms(start, end)
        span_ms = rule.max_span_days * DAY_MS
        while high >= low:
            chunk_low = max(low, high - span_ms)
            page = 1
            while True:
                result: RepayHistoryPage = await self._invoke(
                    REPAY_HISTORY,
                    {
                        "startTime": chunk_low,
                        "endTime": high,
                        "current": page,
                        "size": page_size,
                    },
                    recv_window,
                    max_wait,
                    call_timeout,
                )
                for row in result.rows:
                    yield row
                if len(result.rows) < page_size or page * page_size >= result.total:
                    break
                page += 1
            high = chunk_low - 1

    async def iter_interest_history(
        self,
        *,
        start: datetime,
        end: datetime | None = None,
        asset: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        recv_window: int | None = None,
        max_wait: float | None = None,
        call_timeout: float | None = None,
    ) -> AsyncIterator[InterestRecord]:
        """Every negative-balance interest charge between ``start`` and ``end`` (default:
        now), of ``asset`` or of all assets, in Binance's order.

        The endpoint has no page number, so the walk moves the time bound past the rows it
        has seen (weight 50 per request on the IP budget, through the limiter). Rows are
        told apart by asset and time; should more than ``page_size`` rows share one time,
        the walk steps past that time and logs a warning."""
        low, high = self._range_ms(start, end)
        seen: set[tuple[str, int]] = set()
        while low <= high:
            rows: list[InterestRecord] = await self._invoke(
                INTEREST_HISTORY,
                {"asset": asset, "startTime": low, "endTime": high, "size": page_size},
                recv_window,
                max_wait,
                call_timeout,
            )
            fresh = 0
            for row in rows:
                key = (row.asset, row.interest_accrued_time_ms)
                if key not in seen:
                    seen.add(key)
                    fresh += 1
                    yield row
            if len(rows) < page_size:
                return
            times = [row.interest_accrued_time_ms for row in rows]
            newest_first = times[0] >= times[-1]
            # The page may stop in the middle of the rows of its last time: ask again from
            # that time, inclusive; the rows already seen are skipped above.
            edge = min(times) if newest_first else max(times)
            if fresh == 0:
                logger.warning(
                    "interest history: more than %d rows at %d ms; some may be missed",
                    page_size,
                    edge,
                )
                edge = edge - 1 if newest_first else edge + 1
            if newest_first:
                high = edge
            else:
                low = edge

    def _range_ms(self, start: datetime, end: datetime | None) -> tuple[int, int]:
        try:
            low = datetime_to_ms(start)
            high = datetime_to_ms(end) if end is not None else self.clock.now_ms()
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        if low > high:
            raise ParameterError("start is after end")
        return low, high
