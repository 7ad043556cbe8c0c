"""What the stand-in server and the benchmark clients agree on: credentials, the response
body, the expected decoded value, and the loopback TLS material.

The credentials are made up for the benchmark and only ever travel over loopback.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

API_KEY = "pmpro-bench-key-7f3a9c"
API_SECRET = "pmpro-bench-secret-4e21d8b0c6a95f17"

ACCOUNT_PATH = "/sapi/v1/portfolio/account"
TIME_PATH = "/api/v3/time"
STATS_PATH = "/__stats"

# Binance's documented example for GET /sapi/v1/portfolio/account, byte for byte as the
# stand-in sends it (compact JSON). Its totalAvailableBalance carries a thousands separator.
ACCOUNT_EXAMPLE = {
    "uniMMR": "5167.92171923",
    "accountEquity": "122607.35137903",
    "actualEquity": "142607.35137903",
    "accountMaintMargin": "23.72469206",
    "accountInitialMargin": "47.44938412",
    "totalAvailableBalance": "122,559.90199491",
    "accountStatus": "NORMAL",
    "accountType": "PM_1",
}
ACCOUNT_BODY = json.dumps(ACCOUNT_EXAMPLE, separators=(",", ":")).encode()
EXPECTED_UNI_MMR = "5167.92171923"


def make_tls_material(directory: Path) -> dict[str, str]:
    """Write a throw-away CA and a server certificate for 127.0.0.1 / localhost.

    Returns the paths: ``ca`` (PEM the clients trust), ``cert`` (server chain PEM) and
    ``key`` (server private key PEM).
    """
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "server-chain.pem",
        "key": directory / "server-key.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    with paths["cert"].open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    return {name: str(path) for name, path in paths.items()}
