"""pytest plugin of binance-pmpro (registered through the ``pytest11`` entry point).

The fixtures arrive with :class:`~binance_pmpro.testing.FakeExchange`.
"""
