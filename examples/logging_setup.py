"""Logging without leaking: what binance-pmpro logs, and the one logger to quieten."""

from __future__ import annotations

# --8<-- [start:logging]
import logging


def configure_logging(debug_binance: bool = False) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # binance-pmpro's own lines never hold a secret or a signature; at DEBUG they show one
    # line per request (method, path, redacted query, status, time, weight).
    logging.getLogger("binance_pmpro").setLevel(logging.DEBUG if debug_binance else logging.INFO)
    # httpx logs one INFO line per request; binance-pmpro redacts the signature in those
    # lines, but most services keep httpx at WARNING to spare the noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# --8<-- [end:logging]
