"""Request signers for Binance's SIGNED endpoints (TRADE, MARGIN, USER_DATA).

A signer turns the exact payload bytes (the percent-encoded query string, plus the body for
requests that carry one) into the value of the ``signature`` parameter *before*
URL-encoding: lower-case hex for HMAC-SHA256, standard base64 for RSA (PKCS#1 v1.5, SHA-256)
and Ed25519. The request builder percent-encodes it and appends it last.

Signers never reveal their key: ``repr`` and ``str`` show only the algorithm.
"""

from __future__ import annotations

import base64
import hashlib
import os
import string
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from .errors import ConfigurationError

__all__ = ["Ed25519Signer", "HmacSigner", "RsaSigner", "Signer", "load_private_key", "load_signer"]

PrivateKeySource = str | bytes | os.PathLike[str]
"""PEM text, PEM or DER bytes, or the path of a key file."""


@runtime_checkable
class Signer(Protocol):
    """Anything that signs a payload for Binance."""

    algorithm: str
    """``"HMAC_SHA256"``, ``"RSA"`` or ``"ED25519"``."""

    def sign(self, payload: bytes) -> str:
        """Return the ``signature`` value for ``payload`` (before URL-encoding)."""
        ...


_SHA256_BLOCK = 64
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


class HmacSigner:
    """HMAC-SHA256 with an API secret; the signature is lower-case hex."""

    __slots__ = ("_inner", "_outer")
    algorithm = "HMAC_SHA256"

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ConfigurationError("the API secret is empty")
        # RFC 2104 with both keyed SHA-256 states computed once: a call copies two hash
        # states instead of re-keying, and stays in hashlib's C code (hmac.HMAC.copy() and
        # its update/hexdigest wrappers cost more than the hashing of a short query).
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def sign(self, payload: bytes) -> str:
        """Hex HMAC-SHA256 of ``payload``."""
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(secret=<redacted>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("signers hold secrets and cannot be pickled")


class RsaSigner:
    """RSASSA-PKCS1-v1_5 with SHA-256; the signature is base64. Binance accepts 2048- and
    4096-bit keys (PKCS#8 PEM)."""

    __slots__ = ("_key",)
    algorithm = "RSA"

    def __init__(
        self,
        private_key: PrivateKeySource | rsa.RSAPrivateKey,
        password: str | bytes | None = None,
    ) -> None:
        key = (
            private_key
            if isinstance(private_key, rsa.RSAPrivateKey)
            else load_private_key(private_key, password)
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError("the private key is not an RSA key")
        self._key = key

    def sign(self, payload: bytes) -> str:
        """Base64 of the RSA PKCS#1 v1.5 / SHA-256 signature of ``payload``."""
        raw = self._key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"RsaSigner(key_size={self._key.key_size}, private_key=<redacted>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("signers hold secrets and cannot be pickled")


class Ed25519Signer:
    """Pure Ed25519 (RFC 8032); the signature is 64 bytes, base64 (88 characters)."""

    __slots__ = ("_key",)
    algorithm = "ED25519"

    def __init__(
        self,
        private_key: PrivateKeySource | ed25519.Ed25519PrivateKey,
        password: str | bytes | None = None,
    ) -> None:
        key = (
            private_key
            if isinstance(private_key, ed25519.Ed25519PrivateKey)
            else load_private_key(private_key, password)
        )
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigurationError("the private key is not an Ed25519 key")
        self._key = key

    def sign(self, payload: bytes) -> str:
        """Base64 of the Ed25519 signature of ``payload``."""
        return base64.b64encode(self._key.sign(payload)).decode("ascii")

    def __repr__(self) -> str:
        return "Ed25519Signer(private_key=<redacted>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("signers hold secrets and cannot be pickled")


def _key_bytes(source: PrivateKeySource) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and "-----BEGIN" in source:
        return source.encode()
    path = Path(os.fspath(source)).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        # A path is not secret, but a string that is not PEM may still be key material (a
        # key without its BEGIN line, with a mangled one, or a bare base64 body): never
        # echo anything that could be.
        shown = "" if _may_be_key_material(source) else f" {str(path)!r}"
        raise ConfigurationError(
            f"cannot read the private key file{shown}: {exc.strerror}"
        ) from None


_BASE64_OR_SPACE = frozenset(string.ascii_letters + string.digits + "+/=" + string.whitespace)


def _may_be_key_material(source: PrivateKeySource) -> bool:
    if not isinstance(source, str):
        return False  # an os.PathLike is a path by construction
    return "\n" in source or "-----" in source or set(source) <= _BASE64_OR_SPACE


def load_private_key(
    source: PrivateKeySource,
    password: str | bytes | None = None,
    *,
    password_optional: bool = False,
) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """Load an RSA or Ed25519 private key from PEM text, PEM/DER bytes or a file path.

    ``password`` unlocks an encrypted key; with ``password_optional`` it is ignored for a key
    that is not encrypted instead of being an error. Raises :class:`ConfigurationError`
    (without any key material in its message) when the key cannot be read or is of another
    type.
    """
    data = _key_bytes(source)
    secret = password.encode() if isinstance(password, str) else password
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        try:
            key = loader(data, password=secret)
        except TypeError:
            if not (password_optional and secret is not None):
                raise
            key = loader(data, password=None)
    except TypeError as exc:
        # cryptography says "Password was not given but private key is encrypted" or the
        # reverse: both are safe to repeat.
        raise ConfigurationError(f"cannot load the private key: {exc}") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = " (wrong password?)" if secret is not None else ""
        raise ConfigurationError(
            f"cannot load the private key: not a valid PEM/DER private key{hint}"
        ) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ConfigurationError(
            f"unsupported private key type {type(key).__name__}: Binance accepts RSA and Ed25519"
        )
    return key


def load_signer(
    *,
    api_secret: str | bytes | None = None,
    private_key: PrivateKeySource | None = None,
    password: str | bytes | None = None,
    password_optional: bool = False,
) -> HmacSigner | RsaSigner | Ed25519Signer:
    """Pick the signer: HMAC for ``api_secret``, RSA or Ed25519 (detected from the key) for
    ``private_key``. Exactly one of the two must be given. ``password`` and
    ``password_optional`` are as in :func:`load_private_key`."""
    if (api_secret is None) == (private_key is None):
        raise ConfigurationError("give exactly one of api_secret (HMAC) and private_key")
    if api_secret is not None:
        return HmacSigner(api_secret)
    assert private_key is not None
    key = load_private_key(private_key, password, password_optional=password_optional)
    if isinstance(key, rsa.RSAPrivateKey):
        return RsaSigner(key)
    return Ed25519Signer(key)
