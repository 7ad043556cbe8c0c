"""First call: fetch the Portfolio Margin Pro account's risk summary and print it.

Run it with your keys in the environment:

    BINANCE_API_KEY=... BINANCE_API_SECRET=... python examples/quickstart.py
"""

from __future__ import annotations

# --8<-- [start:first-call]
import anyio

from binance_pmpro import AccountStatus, PortfolioMarginProClient


async def main() -> None:
    # No arguments: the key and secret come from BINANCE_API_KEY and BINANCE_API_SECRET
    # (or BINANCE_PRIVATE_KEY_PATH for an RSA or Ed25519 key).
    async with PortfolioMarginProClient() as client:
        info = await client.account_info()  # GET /sapi/v1/portfolio/account, weight 5

    print(f"uniMMR          {info.uni_mmr}")  # Decimal, every digit Binance sent
    print(f"account equity  {info.account_equity} USD")
    print(f"status          {info.account_status}")
    if info.account_status is not AccountStatus.NORMAL:
        print("the account is not in NORMAL standing: look at it now")


if __name__ == "__main__":
    anyio.run(main)  # or anyio.run(main, backend="trio")
# --8<-- [end:first-call]
