"""The three kinds of Binance API keys, and how the client takes each.

- HMAC: Binance generates the key *and* the secret; you keep the secret.
- Ed25519 and RSA: you generate a key pair, give Binance the *public* key, and Binance gives
  you an API key for it. The private key never leaves your machine.
"""

from __future__ import annotations

# --8<-- [start:generate-imports]
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

# --8<-- [end:generate-imports]
from binance_pmpro import PortfolioMarginProClient


# --8<-- [start:generate]
def generate_key_pair(
    directory: Path, *, kind: str = "ed25519", password: bytes | None = None
) -> Path:
    """Write ``private.pem`` (PKCS#8, encrypted when a password is given) and ``public.pem``
    (the text to paste into Binance) into ``directory``; return the public key's path."""
    private_key = (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "ed25519"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / "private.pem"
    # Created readable by its owner only, before any key byte is written.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(private_pem)
    public_path = directory / "public.pem"
    public_path.write_bytes(public_pem)
    return public_path


# --8<-- [end:generate]


# --8<-- [start:clients]
def hmac_client(api_key: str, api_secret: str) -> PortfolioMarginProClient:
    """A key Binance generated: the secret signs with HMAC-SHA256."""
    return PortfolioMarginProClient(api_key=api_key, api_secret=api_secret)


def private_key_client(api_key: str, key_file: Path) -> PortfolioMarginProClient:
    """A key pair you generated: the client reads the PEM file and detects RSA or Ed25519.
    An encrypted key is unlocked with ``BINANCE_PRIVATE_KEY_PASSWORD`` (or pass
    ``private_key_password=``)."""
    return PortfolioMarginProClient(api_key=api_key, private_key=key_file)


def client_from_environment() -> PortfolioMarginProClient:
    """Everything from the environment: BINANCE_API_KEY plus BINANCE_API_SECRET or
    BINANCE_PRIVATE_KEY_PATH (and BINANCE_PRIVATE_KEY_PASSWORD when the key is encrypted)."""
    return PortfolioMarginProClient()


# --8<-- [end:clients]
