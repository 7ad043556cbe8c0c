"""Signers and key loading: Binance's published HMAC vectors, RFC 8032, pinned RSA/Ed25519
signatures from the committed throwaway keys, and an independent check with openssl."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from binance_pmpro.endpoints import ACCOUNT_INFO
from binance_pmpro.errors import ConfigurationError
from binance_pmpro.requests import build_request
from binance_pmpro.signing import (
    Ed25519Signer,
    HmacSigner,
    RsaSigner,
    Signer,
    load_private_key,
    load_signer,
)

DATA = Path(__file__).parent / "data"
RSA_PEM = DATA / "rsa-2048.pem"
RSA_PUB = DATA / "rsa-2048.pub.pem"
RSA_ENCRYPTED = DATA / "rsa-2048-encrypted.pem"
ED_PEM = DATA / "ed25519.pem"
ED_PUB = DATA / "ed25519.pub.pem"
ED_ENCRYPTED = DATA / "ed25519-encrypted.pem"
PASSWORD = "correct-horse-battery"

# Binance's example secret (reference section 2.7); illustrative, not a live key.
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"

PUBLISHED_HMAC_VECTORS = [
    pytest.param(
        b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        b"&recvWindow=5000&timestamp=1499827319559",
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
        id="H1-query",
    ),
    pytest.param(
        b"symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
        b"&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
        "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3",
        id="H2-percent-encoded",
    ),
    pytest.param(
        b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTCquantity=1&price=0.1"
        b"&recvWindow=5000&timestamp=1499827319559",
        "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
        id="H3-query-plus-body",
    ),
    pytest.param(
        b"timestamp=1578963600000",
        "d84e6641b1e328e7b418fff030caed655c266299c9355e36ce801ed14631eed4",
        id="H4-timestamp-only",
    ),
]

DERIVED_HMAC_VECTORS = [
    pytest.param(
        b"recvWindow=5000&timestamp=1499827319559",
        "82f4e72e95e63d666b6da651e82a701722ad8a785a169318d91f36f279c55821",
        id="D1-recvWindow-timestamp",
    ),
    pytest.param(
        b"timestamp=1499827319559",
        "2222d49722f6af5da13f6da6bfc0d7de19ca2815ebc98bbc49e4942268472f3f",
        id="D2-timestamp",
    ),
]

# RFC 8032 section 7.1, TEST 1.
RFC8032_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701"
    "cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

# Pinned when the keys in tests/data were made (signed with `openssl dgst -sha256 -sign` and
# `openssl pkeyutl -sign -rawin`); both schemes are deterministic.
PINNED_PAYLOAD = b"recvWindow=5000&timestamp=1499827319559"
PINNED_RSA = (
    "EoHlVEPTQXAsOLXkGBilp3sqMpCOqcK9i/4tKB3nUkm9shaO4lddqaWTtfbwmcI6XyO3JBWYM1hRgGKnajgXTe6EOWr5"
    "6bDs90s4LpdiQF75mkJAuq6dUv82ku2ONmq3jKEAvaP4Gm+4RJTgrzgPWzqGcQdwcdqhXCGeJCX7Qel6KOSorTTqx2m6"
    "bY5SYjfr3o2Vmbqqwqw7sHr/m7WeCYxKCE323+567i8WvImQmjtENk9sVuZ5/B63Fc42FSVCipgz2NFtrf826pkK+n6Q"
    "bqnhOlVbNvu8ryeJmjOcahb1XMp79/AGy+Fp+gqMvO9DDeENhiYku+yBTaGpuXXFlA=="
)
PINNED_ED25519 = (
    "qiHgUxpV7fgxMYpNhgKW4AAxoYlm8P0saU+9jU0upR/1+jnIRynda5WLVcjLmAkosAk2nnqjyhGcmO5ADgFsDA=="
)

# Binance's RSA example (reference section 2.7): the key is unpublished, so only the
# base64 -> percent-encoding step can be checked.
PUBLISHED_RSA_BASE64 = [
    (
        "HZ8HOjiJ1s/igS9JA+n7+7Ti/ihtkRF5BIWcPIEluJP6tlbFM/Bf44LfZka/iemtahZAZzcO9TnI5uaXh3++lrqtNonC"
        "wp6/245UFWkiW1elpgtVAmJPbogcAv6rSlokztAfWk296ZJXzRDYAtzGH0gq7CgSJKfH+XxaCmR0WcvlKjNQnp12/eKX"
        "JYO4tDap8UCBLuyxDnR7oJKLHQHJLP0r0EAVOOSIbrFang/1WOq+Jaq4Efc4XpnTgnwlBbWTmhWDR1pvS9iVEzcSYLHT"
        "/fNnMRxFc7u+j3qI//5yuGuu14KR0MuQKKCSpViieD+fIti46sxPTsjSemoUKp0oXA==",
        "HZ8HOjiJ1s%2FigS9JA%2Bn7%2B7Ti%2FihtkRF5BIWcPIEluJP6tlbFM%2FBf44LfZka%2FiemtahZAZzcO9TnI5uaX"
        "h3%2B%2BlrqtNonCwp6%2F245UFWkiW1elpgtVAmJPbogcAv6rSlokztAfWk296ZJXzRDYAtzGH0gq7CgSJKfH%2BXxa"
        "CmR0WcvlKjNQnp12%2FeKXJYO4tDap8UCBLuyxDnR7oJKLHQHJLP0r0EAVOOSIbrFang%2F1WOq%2BJaq4Efc4XpnTgn"
        "wlBbWTmhWDR1pvS9iVEzcSYLHT%2FfNnMRxFc7u%2Bj3qI%2F%2F5yuGuu14KR0MuQKKCSpViieD%2BfIti46sxPTsjSe"
        "moUKp0oXA%3D%3D",
    ),
    (
        "qJtv66wyp/1mZE+mIFAAMUoTe8xkmLN7/eAZjuC9x1ocxovItHLl/sNK7Wq8QjgiHqGn0bb8P7yVvGBEd1gFe71NQ8aM"
        "0M+JNIMz5UFxfeA53rXjFlvsyH1Sig+OuO9Nz5nhCaJ6bEfj2iuv7w27pB3L8MVqmoCi6D9C/QMiLxtPaR70CxtnvoOl"
        "IgPmpv2bQy029A31NEK19ieVLkoyp1EUkXRaX3v0mohx8yMnUG1dhX9nUg3Oy8TYZ03DQy7kHDGkMKisNX7rt/GuGx1H"
        "IgjFclDGLsbAFIodvSLjm9FbseasMELoxlAJDlwRnW8zo5sQmL0Fz7ao935QBynrng==",
        "qJtv66wyp%2F1mZE%2BmIFAAMUoTe8xkmLN7%2FeAZjuC9x1ocxovItHLl%2FsNK7Wq8QjgiHqGn0bb8P7yVvGBEd1gF"
        "e71NQ8aM0M%2BJNIMz5UFxfeA53rXjFlvsyH1Sig%2BOuO9Nz5nhCaJ6bEfj2iuv7w27pB3L8MVqmoCi6D9C%2FQMiLx"
        "tPaR70CxtnvoOlIgPmpv2bQy029A31NEK19ieVLkoyp1EUkXRaX3v0mohx8yMnUG1dhX9nUg3Oy8TYZ03DQy7kHDGkMK"
        "isNX7rt%2FGuGx1HIgjFclDGLsbAFIodvSLjm9FbseasMELoxlAJDlwRnW8zo5sQmL0Fz7ao935QBynrng%3D%3D",
    ),
]


def _pem_body_chunks(path: Path) -> list[str]:
    """The base64 lines of a PEM file: key material that must never leak into a message."""
    return [
        line
        for line in path.read_text().splitlines()
        if line and not line.startswith("-----") and len(line) >= 16
    ]


def _assert_no_key_material(message: str, *paths: Path) -> None:
    assert "BEGIN" not in message
    for path in paths:
        for chunk in _pem_body_chunks(path):
            assert chunk not in message
            assert chunk[:16] not in message


def _der(path: Path) -> bytes:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --- HMAC ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "expected"), PUBLISHED_HMAC_VECTORS)
def test_hmac_sign_published_vector_matches_binance(payload: bytes, expected: str) -> None:
    assert HmacSigner(SECRET).sign(payload) == expected


@pytest.mark.parametrize(("payload", "expected"), DERIVED_HMAC_VECTORS)
def test_hmac_sign_derived_vector_matches_reference(payload: bytes, expected: str) -> None:
    assert HmacSigner(SECRET).sign(payload) == expected


def test_hmac_sign_bytes_secret_same_as_str_secret() -> None:
    payload = b"timestamp=1578963600000"
    assert HmacSigner(SECRET.encode()).sign(payload) == HmacSigner(SECRET).sign(payload)


def test_hmac_sign_repeated_calls_do_not_share_state() -> None:
    # The signer copies a pre-keyed MAC: interleaved calls must not leak into each other.
    signer = HmacSigner(SECRET)
    first = signer.sign(b"timestamp=1578963600000")
    signer.sign(b"recvWindow=5000&timestamp=1499827319559")
    assert signer.sign(b"timestamp=1578963600000") == first
    assert first == "d84e6641b1e328e7b418fff030caed655c266299c9355e36ce801ed14631eed4"


@pytest.mark.parametrize("key_length", [1, 32, 63, 64, 65, 100, 128, 129, 1000])
def test_hmac_sign_any_key_length_matches_stdlib_hmac(key_length: int) -> None:
    # The signer keys SHA-256 itself (RFC 2104); keys longer than the 64-byte block are
    # hashed first, shorter ones padded: check both sides of the boundary against hmac.
    key = bytes((7 * i + 3) % 256 for i in range(key_length))
    for payload in (b"", b"timestamp=1578963600000", b"x" * 300):
        expected = hmac.new(key, payload, hashlib.sha256).hexdigest()
        assert HmacSigner(key).sign(payload) == expected


def test_hmac_sign_output_is_lowercase_hex_of_64_chars() -> None:
    signature = HmacSigner(SECRET).sign(b"anything")
    assert re.fullmatch(r"[0-9a-f]{64}", signature)


@pytest.mark.parametrize("secret", ["", b""])
def test_hmac_signer_empty_secret_raises_configuration_error(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        HmacSigner(secret)


# --- Ed25519: RFC 8032 -------------------------------------------------------------------------


def test_ed25519_sign_rfc8032_test1_matches_published_signature() -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SECRET))
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert public.hex() == RFC8032_PUBLIC
    signature = Ed25519Signer(key).sign(b"")
    assert len(signature) == 88
    assert base64.b64decode(signature, validate=True).hex() == RFC8032_SIGNATURE


# --- pinned signatures of the committed keys ---------------------------------------------------


def test_rsa_sign_committed_key_matches_pinned_signature() -> None:
    assert RsaSigner(RSA_PEM.read_text()).sign(PINNED_PAYLOAD) == PINNED_RSA


def test_ed25519_sign_committed_key_matches_pinned_signature() -> None:
    assert Ed25519Signer(ED_PEM.read_text()).sign(PINNED_PAYLOAD) == PINNED_ED25519


@pytest.mark.parametrize(
    ("path", "pinned"), [(RSA_ENCRYPTED, PINNED_RSA), (ED_ENCRYPTED, PINNED_ED25519)]
)
@pytest.mark.parametrize("password", [PASSWORD, PASSWORD.encode()], ids=["str", "bytes"])
def test_load_signer_encrypted_key_with_password_matches_pinned_signature(
    path: Path, pinned: str, password: str | bytes
) -> None:
    signer = load_signer(private_key=path, password=password)
    assert signer.sign(PINNED_PAYLOAD) == pinned


def test_rsa_sign_output_is_standard_base64_of_256_bytes() -> None:
    signature = RsaSigner(RSA_PEM).sign(b"symbol=BTCUSDT&timestamp=1")
    assert "\n" not in signature
    assert len(base64.b64decode(signature, validate=True)) == 256


# --- independent verification with the openssl command line -------------------------------


def _openssl() -> str:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("the openssl command line is not installed: no independent verifier")
    return exe


def _openssl_run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([_openssl(), *args], capture_output=True, timeout=30, check=False)


def _openssl_supports_rawin() -> bool:
    help_text = _openssl_run("pkeyutl", "-help")
    return b"-rawin" in help_text.stdout + help_text.stderr


VERIFY_PAYLOADS = [
    pytest.param(PINNED_PAYLOAD, id="pinned"),
    pytest.param(
        b"symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=SELL&type=LIMIT"
        b"&timeInForce=GTC&quantity=1&price=0.2&timestamp=1668481559918&recvWindow=5000",
        id="percent-encoded",
    ),
]


def _openssl_verify_rsa(tmp_path: Path, payload: bytes, signature_b64: str) -> bool:
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig").write_bytes(base64.b64decode(signature_b64))
    result = _openssl_run(
        "dgst",
        "-sha256",
        "-verify",
        str(RSA_PUB),
        "-signature",
        str(tmp_path / "sig"),
        str(tmp_path / "payload"),
    )
    return result.returncode == 0 and b"Verified OK" in result.stdout


def _openssl_verify_ed25519(tmp_path: Path, payload: bytes, signature_b64: str) -> bool:
    if not _openssl_supports_rawin():
        pytest.skip("this openssl's pkeyutl has no -rawin: cannot verify pure Ed25519")
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig").write_bytes(base64.b64decode(signature_b64))
    result = _openssl_run(
        "pkeyutl",
        "-verify",
        "-rawin",
        "-pubin",
        "-inkey",
        str(ED_PUB),
        "-in",
        str(tmp_path / "payload"),
        "-sigfile",
        str(tmp_path / "sig"),
    )
    return result.returncode == 0 and b"Signature Verified Successfully" in result.stdout


@pytest.mark.parametrize("payload", VERIFY_PAYLOADS)
def test_rsa_signature_verified_by_openssl(tmp_path: Path, payload: bytes) -> None:
    signature = RsaSigner(RSA_PEM).sign(payload)
    assert _openssl_verify_rsa(tmp_path, payload, signature)


@pytest.mark.parametrize("payload", VERIFY_PAYLOADS)
def test_ed25519_signature_verified_by_openssl(tmp_path: Path, payload: bytes) -> None:
    signature = Ed25519Signer(ED_PEM).sign(payload)
    assert _openssl_verify_ed25519(tmp_path, payload, signature)


def test_openssl_verifier_tampered_payload_rejected(tmp_path: Path) -> None:
    # Proves the two verifications above can fail.
    assert not _openssl_verify_rsa(tmp_path, PINNED_PAYLOAD + b"0", PINNED_RSA)
    assert not _openssl_verify_ed25519(tmp_path, PINNED_PAYLOAD + b"0", PINNED_ED25519)


# --- key loading and type detection ---------------------------------------------------------


def _sources(path: Path) -> list[object]:
    return [
        path.read_text(),  # PEM text
        path.read_bytes(),  # PEM bytes
        str(path),  # path as str
        path,  # pathlib.Path
        _der(path),  # DER bytes
    ]


SOURCE_IDS = ["pem-text", "pem-bytes", "path-str", "path", "der-bytes"]


@pytest.mark.parametrize("index", range(5), ids=SOURCE_IDS)
@pytest.mark.parametrize(
    ("path", "key_type", "signer_type", "pinned"),
    [
        pytest.param(RSA_PEM, rsa.RSAPrivateKey, RsaSigner, PINNED_RSA, id="rsa"),
        pytest.param(ED_PEM, ed25519.Ed25519PrivateKey, Ed25519Signer, PINNED_ED25519, id="ed"),
    ],
)
def test_load_signer_any_source_detects_key_type(
    index: int, path: Path, key_type: type, signer_type: type, pinned: str
) -> None:
    source = _sources(path)[index]
    assert isinstance(load_private_key(source), key_type)  # type: ignore[arg-type]
    signer = load_signer(private_key=source)  # type: ignore[arg-type]
    assert type(signer) is signer_type
    assert signer.sign(PINNED_PAYLOAD) == pinned


def test_load_signer_api_secret_gives_hmac_signer() -> None:
    signer = load_signer(api_secret=SECRET)
    assert isinstance(signer, HmacSigner)
    assert signer.sign(b"timestamp=1578963600000") == (
        "d84e6641b1e328e7b418fff030caed655c266299c9355e36ce801ed14631eed4"
    )


@pytest.mark.parametrize(
    ("signer", "algorithm"),
    [
        (HmacSigner(SECRET), "HMAC_SHA256"),
        (RsaSigner(RSA_PEM), "RSA"),
        (Ed25519Signer(ED_PEM), "ED25519"),
    ],
    ids=["hmac", "rsa", "ed25519"],
)
def test_signer_algorithm_names_scheme_and_satisfies_protocol(
    signer: Signer, algorithm: str
) -> None:
    assert signer.algorithm == algorithm
    assert isinstance(signer, Signer)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"api_secret": SECRET, "private_key": RSA_PEM}],
    ids=["neither", "both"],
)
def test_load_signer_neither_or_both_raises_configuration_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        load_signer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", [RSA_ENCRYPTED, ED_ENCRYPTED], ids=["rsa", "ed25519"])
def test_load_private_key_encrypted_without_password_raises_clean_error(path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_private_key(path)
    _assert_no_key_material(str(info.value), path, RSA_PEM, ED_PEM)
    assert "encrypted" in str(info.value)


@pytest.mark.parametrize("path", [RSA_ENCRYPTED, ED_ENCRYPTED], ids=["rsa", "ed25519"])
@pytest.mark.parametrize("source_kind", ["path", "text"])
def test_load_private_key_encrypted_wrong_password_raises_clean_error(
    path: Path, source_kind: str
) -> None:
    source = path if source_kind == "path" else path.read_text()
    with pytest.raises(ConfigurationError) as info:
        load_private_key(source, "not-the-password")
    message = str(info.value)
    _assert_no_key_material(message, path, RSA_PEM, ED_PEM)
    assert "not-the-password" not in message
    assert "password" in message


def test_load_private_key_password_for_plain_key_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_private_key(ED_PEM, PASSWORD)
    _assert_no_key_material(str(info.value), ED_PEM)
    assert PASSWORD not in str(info.value)


def test_load_private_key_corrupt_pem_raises_clean_error() -> None:
    text = ED_PEM.read_text()
    lines = text.splitlines()
    corrupt = "\n".join([lines[0], lines[1][8:], *lines[2:]])  # ASN.1 header cut off
    with pytest.raises(ConfigurationError) as info:
        load_private_key(corrupt)
    _assert_no_key_material(str(info.value), ED_PEM)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda text: "".join(_pem_body_chunks(ED_PEM)),
        lambda text: "\n".join(_pem_body_chunks(ED_PEM)),
        lambda text: text.replace("BEGIN", "BOGUS"),
        lambda text: text.replace("-----BEGIN PRIVATE KEY-----\n", ""),
    ],
    ids=["body-one-line", "body-lines", "mangled-begin", "no-begin-line"],
)
def test_load_private_key_not_pem_not_a_file_raises_without_echoing_it(
    mangle: Callable[[str], str],
) -> None:
    # Key text without a proper BEGIN line is taken for a file name; the error must not
    # repeat it.
    source = mangle(ED_PEM.read_text())
    with pytest.raises(ConfigurationError) as info:
        load_private_key(source)
    _assert_no_key_material(str(info.value), ED_PEM)
    assert source not in str(info.value)


@pytest.mark.parametrize("as_str", [False, True], ids=["path", "str"])
def test_load_private_key_missing_file_names_path(tmp_path: Path, as_str: bool) -> None:
    missing = tmp_path / "no-such-key.pem"
    with pytest.raises(ConfigurationError, match=re.escape("no-such-key.pem")):
        load_private_key(str(missing) if as_str else missing)


def test_load_private_key_garbage_bytes_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a valid"):
        load_private_key(b"\x00\x01 definitely not a key")


def test_load_private_key_ec_key_raises_unsupported_type() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigurationError, match="unsupported private key type") as info:
        load_signer(private_key=pem)
    assert "BEGIN" not in str(info.value)


def test_rsa_signer_given_ed25519_key_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not an RSA key"):
        RsaSigner(ED_PEM)


def test_ed25519_signer_given_rsa_key_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not an Ed25519 key"):
        Ed25519Signer(RSA_PEM)


# --- percent-encoding of base64 signatures in the final query ---------------------------------


class _FixedSigner:
    """Returns a canned signature: isolates the query's encoding step from the key."""

    algorithm = "RSA"

    def __init__(self, signature: str) -> None:
        self.signature = signature
        self.payloads: list[bytes] = []

    def sign(self, payload: bytes) -> str:
        self.payloads.append(payload)
        return self.signature


@pytest.mark.parametrize(("b64", "encoded"), PUBLISHED_RSA_BASE64, ids=["ascii", "non-ascii"])
def test_build_request_rsa_base64_signature_percent_encoded_as_published(
    b64: str, encoded: str
) -> None:
    assert quote(b64, safe="") == encoded  # the reference's own check
    signer = _FixedSigner(b64)
    request = build_request(
        ACCOUNT_INFO,
        {},
        api_key="k",
        signer=signer,
        timestamp_ms=1668481559918,
        recv_window=5000,
    )
    assert request.query == f"recvWindow=5000&timestamp=1668481559918&signature={encoded}"
    assert signer.payloads == [b"recvWindow=5000&timestamp=1668481559918"]
    for char in "+/=":
        assert char not in request.query.rpartition("&signature=")[2]


@pytest.mark.parametrize(
    ("signer", "pub"),
    [(RsaSigner(RSA_PEM), RSA_PUB), (Ed25519Signer(ED_PEM), ED_PUB)],
    ids=["rsa", "ed25519"],
)
def test_build_request_asymmetric_signature_verifies_after_unquoting(
    signer: RsaSigner | Ed25519Signer, pub: Path
) -> None:
    request = build_request(
        ACCOUNT_INFO,
        {},
        api_key="k",
        signer=signer,
        timestamp_ms=1499827319559,
        recv_window=5000,
    )
    prefix, _, encoded = request.query.rpartition("&signature=")
    assert prefix == PINNED_PAYLOAD.decode()
    assert re.fullmatch(r"[A-Za-z0-9%]+", encoded)
    raw = base64.b64decode(unquote(encoded), validate=True)
    public = serialization.load_pem_public_key(pub.read_bytes())
    if isinstance(public, rsa.RSAPublicKey):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        public.verify(raw, prefix.encode(), padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(raw, prefix.encode())
