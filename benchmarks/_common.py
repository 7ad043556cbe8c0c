"""What the stand-in server and the benchmark clients agree on: credentials, the response
body, the expected decoded value, and the loopback TLS material.

The credentials are made up for the benchmark and only ever travel over loopback.
"""

from __future__ import annotations

import json
import subprocess
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


VERSIONED = (
    "binance-pmpro",
    "httpx",
    "httptools",
    "aiohttp",
    "uvloop",
    "trio",
    "python-binance",
    "ccxt",
    "binance-sdk-derivatives-trading-portfolio-margin-pro",
    "msgspec",
    "cryptography",
)


def versions() -> dict[str, str]:
    """Installed version of every library in the comparison."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def source_state() -> str:
    """The commit measured, and which files under src/ differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, cwd=ROOT
        ).stdout.splitlines()
    except OSError:
        return "unknown (no git)"
    if not head:
        return "unknown (not a git checkout)"
    if not dirty:
        return f"commit {head}"
    changed = ", ".join(line[3:].removeprefix("src/binance_pmpro/") for line in dirty)
    return f"commit {head} with uncommitted changes in src/ ({changed})"
