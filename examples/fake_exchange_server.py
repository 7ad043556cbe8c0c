"""FakeExchange over real HTTP on 127.0.0.1: for tests that need sockets, other processes
or programs in other languages. Nothing here talks to Binance."""

from __future__ import annotations

# --8<-- [start:serve]
import anyio

from binance_pmpro import PortfolioMarginProClient
from binance_pmpro.testing import FakeExchange


async def main() -> None:
    fake = FakeExchange()
    fake.set_account(uni_mmr="1.31", account_status="MARGIN_CALL")
    async with fake.serve(host="127.0.0.1", port=0) as server:  # port 0: any free port
        print(f"serving on {server.base_url}")  # http://127.0.0.1:PORT
        async with PortfolioMarginProClient(
            fake.demo_api_key,  # a key pair the fake accepts (new for every FakeExchange)
            fake.demo_api_secret,
            base_url=server.base_url,  # plain http:// is allowed for loopback hosts only
        ) as client:
            info = await client.account_info()
    print(info.account_status, info.uni_mmr)  # MARGIN_CALL 1.31


if __name__ == "__main__":
    anyio.run(main)
# --8<-- [end:serve]
