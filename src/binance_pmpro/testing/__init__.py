"""Test helpers for code that uses binance-pmpro (work in progress)."""
