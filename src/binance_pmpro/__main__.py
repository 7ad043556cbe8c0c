"""``python -m binance_pmpro``: the ``binance-pmpro`` command line."""

from .cli import run

if __name__ == "__main__":
    run()
