"""Prometheus metrics for a client and its risk watch (the ``[metrics]`` extra).

    metrics = ClientMetrics()
    client = PortfolioMarginProClient(..., hooks=[metrics.hook])
    metrics.track(client)            # rate-limit gauges from this client's limiter
    metrics.serve(9464)              # http://127.0.0.1:9464/metrics
    async for item in client.watch_account(every=5):
        metrics.observe(item)        # uniMMR, equity, maintenance margin, status

Requests are counted from the client's :class:`~binance_pmpro.events.RequestEvent` hooks;
the account gauges come from watch snapshots; the rate-limit gauges are refreshed on the
event loop at each request and snapshot (never read from the server's thread). Metrics
live in their own registry by default (``registry=``), so two instances never collide.
Values are floats, as Prometheus stores them; the exact ``Decimal`` stays in the snapshot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .errors import error_for
from .events import RequestEvent
from .models import AccountStatus
from .monitor import AccountSnapshot, WatchItem

if TYPE_CHECKING:
    from .client import PortfolioMarginProClient

__all__ = ["ClientMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ClientMetrics:
    """The metrics of one or more clients and watches, in ``registry``.

    Names (prefix ``namespace``, default ``binance_pmpro``): ``requests_total``
    {endpoint, status}; ``request_errors_total`` {endpoint, error} (the exception class,
    from the transport error or the HTTP status); ``rate_limited_total`` {endpoint} (429
    answers); ``retries_total`` {endpoint}; ``request_duration_seconds`` histogram
    {endpoint}; ``rate_limit_used_weight``, ``rate_limit_remaining_weight`` and
    ``rate_limit_limit_weight`` {budget, endpoint}; ``account_uni_mmr``,
    ``account_equity_usd``, ``account_actual_equity_usd``, ``account_maint_margin_usd``,
    ``account_status`` {status} (1 for the current status, 0 for the others),
    ``account_snapshot_timestamp_seconds``; ``watch_events_total`` {type}.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "binance_pmpro"
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        """Where the metrics are registered."""
        r, ns = self.registry, namespace
        self._requests = Counter(
            "requests", "HTTP attempts that ended, by status", ["endpoint", "status"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self._errors = Counter(
            "request_errors", "Failed HTTP attempts by error class", ["endpoint", "error"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self._rate_limited = Counter(
            "rate_limited", "HTTP 429 answers", ["endpoint"], namespace=ns, registry=r
        )
        self._retries = Counter(
            "retries", "Attempts after the first of a call", ["endpoint"], namespace=ns, registry=r
        )
        self._latency = Histogram(
            "request_duration_seconds", "Time from sending a request to its answer",
            ["endpoint"], buckets=_LATENCY_BUCKETS, namespace=ns, registry=r,
        )  # fmt: skip
        budget = ["budget", "endpoint"]
        self._used = Gauge(
            "rate_limit_used_weight", "Weight used in the current window", budget,
            namespace=ns, registry=r,
        )  # fmt: skip
        self._remaining = Gauge(
            "rate_limit_remaining_weight", "Weight the limiter still lets through this window",
            budget, namespace=ns, registry=r,
        )  # fmt: skip
        self._limit = Gauge(
            "rate_limit_limit_weight", "Weight Binance allows per window", budget,
            namespace=ns, registry=r,
        )  # fmt: skip
        self._uni_mmr = Gauge(
            "account_uni_mmr", "Unified maintenance-margin ratio", namespace=ns, registry=r
        )
        self._equity = Gauge(
            "account_equity_usd", "Account equity after collateral rates", namespace=ns,
            registry=r,
        )  # fmt: skip
        self._actual_equity = Gauge(
            "account_actual_equity_usd", "Account equity ignoring collateral rates",
            namespace=ns, registry=r,
        )  # fmt: skip
        self._maint = Gauge(
            "account_maint_margin_usd", "Maintenance margin required", namespace=ns, registry=r
        )
        self._status = Gauge(
            "account_status", "1 for the account's current status", ["status"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self._seen = Gauge(
            "account_snapshot_timestamp_seconds", "Unix time of the latest fresh snapshot",
            namespace=ns, registry=r,
        )  # fmt: skip
        self._events = Counter(
            "watch_events", "Watch events by type", ["type"], namespace=ns, registry=r
        )
        self._clients: list[PortfolioMarginProClient] = []
        self._server: Any = None

    # --- feeding ------------------------------------------------------------------------

    def hook(self, event: RequestEvent) -> None:
        """A client hook (``hooks=[metrics.hook]``): counts attempts, errors, 429s, retries
        and latency."""
        if event.phase == "start":
            if event.attempt > 1:
                self._retries.labels(event.endpoint).inc()
            return
        if event.elapsed is not None:
            self._latency.labels(event.endpoint).observe(event.elapsed)
        if event.error is not None:
            self._requests.labels(event.endpoint, "error").inc()
            self._errors.labels(event.endpoint, type(event.error).__name__).inc()
        elif event.status is not None:
            self._requests.labels(event.endpoint, str(event.status)).inc()
            if event.status == 429:
                self._rate_limited.labels(event.endpoint).inc()
            if event.status >= 400:
                kind = type(error_for(event.status, None, "", {})).__name__
                self._errors.labels(event.endpoint, kind).inc()
        self._refresh_budgets()

    def track(self, client: PortfolioMarginProClient) -> None:
        """Report ``client``'s rate-limit budgets, and count its requests (adds
        :meth:`hook` to its hooks unless it is there already)."""
        if client not in self._clients:
            self._clients.append(client)
        hooks = client._hooks
        if self.hook not in hooks:
            client._hooks = (*hooks, self.hook)

    def observe(self, item: WatchItem) -> None:
        """Feed one item of a watch: a snapshot sets the account gauges; every item counts
        in ``watch_events_total``."""
        self._events.labels(item.type).inc()
        if isinstance(item, AccountSnapshot):
            info = item.info
            for gauge, value in (
                (self._uni_mmr, info.uni_mmr),
                (self._equity, info.account_equity),
                (self._actual_equity, info.actual_equity),
                (self._maint, info.account_maint_margin),
            ):
                if value is not None:
                    gauge.set(float(value))
            for status in AccountStatus:
                self._status.labels(status.value).set(1.0 if status is info.account_status else 0.0)
            self._seen.set(item.time.timestamp())
        self._refresh_budgets()

    def _refresh_budgets(self) -> None:
        for client in self._clients:
            for budget in client.rate_limit:
                labels = (budget.key.kind.value, budget.key.endpoint)
                self._used.labels(*labels).set(budget.used)
                self._remaining.labels(*labels).set(budget.remaining)
                self._limit.labels(*labels).set(budget.limit)

    # --- serving ------------------------------------------------------------------------

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` over HTTP on ``host:port`` from a daemon thread; returns the
        port (useful with ``port=0``). Loopback by default: metrics are not for the
        internet."""
        if self._server is not None:
            raise RuntimeError("already serving")
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_address[1])

    def shutdown(self) -> None:
        """Stop serving (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
