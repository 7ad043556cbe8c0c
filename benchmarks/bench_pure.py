"""Micro-benchmarks of the pure parts of one call: signing, request building, decoding.

    python -m benchmarks.bench_pure [--repeat 7] [--min-time 0.2]

Each figure comes from ``timeit``: the loop count is calibrated once per case (``autorange``,
at least ``--min-time`` seconds per repeat), then ``--repeat`` rounds, each timing every case
once (interleaved). The table shows the best and the median time per call in µs: best is the
usual micro-benchmark figure (least disturbed by other processes), the median shows how noisy
the machine was. Ratios between two cases are medians of per-round ratios. Written to
``benchmarks/results/pure.md``.

Decoding is measured twice: on Binance's documented example, whose ``totalAvailableBalance``
(``"122,559.90199491"``) carries a thousands separator (found by one scan and removed in the
bytes before the one msgspec decode), and on the same body without the separator (one msgspec
decode into the Struct, after the same scan finds nothing). Both are compared with
``json.loads`` of the same bytes, which gives only dicts and strings, no Decimals.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    ACCOUNT_BODY,
    ACCOUNT_EXAMPLE,
    API_KEY,
    API_SECRET,
    RESULTS,
    source_state,
    versions,
)

PAYLOAD = b"recvWindow=5000&timestamp=1700000000000"


class _ConstantSigner:
    """Signs nothing: isolates the cost of building the request from the cost of HMAC."""

    algorithm = "HMAC_SHA256"

    def sign(self, payload: bytes) -> str:
        return "0" * 64


def cases() -> list[tuple[str, str, Callable[[], Any]]]:
    """(group, name, zero-argument callable) for every measured operation."""
    import msgspec
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from binance_pmpro import decode_account_info
    from binance_pmpro.decoding import raise_for_error
    from binance_pmpro.endpoints import ACCOUNT_INFO
    from binance_pmpro.requests import build_request
    from binance_pmpro.signing import Ed25519Signer, HmacSigner, RsaSigner

    hmac_signer = HmacSigner(API_SECRET)
    rsa_signer = RsaSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ed_signer = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
    constant = _ConstantSigner()
    clean = dict(ACCOUNT_EXAMPLE, totalAvailableBalance="122559.90199491")
    clean_body = json.dumps(clean, separators=(",", ":")).encode()
    doc_body = ACCOUNT_BODY
    headers = {"content-type": "application/json", "x-sapi-used-uid-weight-1m": "5"}
    # Both bodies must decode to the same amounts, or the comparison means nothing.
    assert decode_account_info(doc_body) == decode_account_info(clean_body)

    def build(signer: Any) -> Callable[[], Any]:
        return lambda: build_request(
            ACCOUNT_INFO,
            {},
            api_key=API_KEY,
            signer=signer,
            timestamp_ms=1_700_000_000_000,
            recv_window=5000,
        )

    return [
        ("signing", "HmacSigner.sign (HMAC-SHA256, hex)", lambda: hmac_signer.sign(PAYLOAD)),
        ("signing", "RsaSigner.sign (RSA-2048 PKCS#1 v1.5)", lambda: rsa_signer.sign(PAYLOAD)),
        ("signing", "Ed25519Signer.sign", lambda: ed_signer.sign(PAYLOAD)),
        ("request", "build_request(ACCOUNT_INFO), HMAC", build(hmac_signer)),
        ("request", "build_request(ACCOUNT_INFO), signing left out", build(constant)),
        (
            "request",
            "raise_for_error(200, ...) (the per-call status check)",
            lambda: raise_for_error(200, headers, clean_body),
        ),
        (
            "decode-doc",
            "decode_account_info, documented example",
            lambda: decode_account_info(doc_body),
        ),
        ("decode-doc", "json.loads, documented example", lambda: json.loads(doc_body)),
        (
            "decode-clean",
            "decode_account_info, no thousands separator",
            lambda: decode_account_info(clean_body),
        ),
        ("decode-clean", "json.loads, no thousands separator", lambda: json.loads(clean_body)),
        (
            "decode-clean",
            "msgspec.json.decode, untyped (reference)",
            lambda: msgspec.json.decode(clean_body),
        ),
    ]


def calibrate(func: Callable[[], Any], min_time: float) -> int:
    """Loop count that makes one timed repeat last at least ``min_time`` seconds."""
    timer = timeit.Timer(func)
    number, elapsed = timer.autorange()
    while elapsed < min_time and number < 10_000_000:
        number *= 2
        elapsed = timer.timeit(number)
    return number


def measure_all(
    named: list[tuple[str, Callable[[], Any]]], repeat: int, min_time: float
) -> dict[str, list[float]]:
    """µs per call of every case, ``repeat`` times each. The repeats are interleaved (one of
    each case, then the next round), so a burst of load elsewhere on the machine hits every
    case alike instead of spoiling one of them."""
    timers = {name: (timeit.Timer(func), calibrate(func, min_time)) for name, func in named}
    runs: dict[str, list[float]] = {name: [] for name, _ in named}
    for _ in range(repeat):
        for name, (timer, number) in timers.items():
            runs[name].append(timer.timeit(number) / number * 1e6)
    return runs


def markdown(results: list[dict[str, Any]], repeat: int) -> str:
    """The results as a markdown table plus the decoding verdict."""
    by_name = {r["name"]: r for r in results}
    out = [
        "# Pure parts: micro-benchmarks",
        "",
        f"Generated by `python -m benchmarks.bench_pure` on {time.strftime('%Y-%m-%d %H:%M')}, "
        f"Python {platform.python_version()}, {platform.machine()}; `timeit`, best and median "
        f"of {repeat} repeats, µs per call. binance_pmpro at {source_state()}; "
        f"msgspec {versions().get('msgspec', '?')}, "
        f"cryptography {versions().get('cryptography', '?')}.",
        "",
        "| operation | best µs | median µs |",
        "|---|---:|---:|",
    ]
    out += [f"| {r['name']} | {r['best_us']:.2f} | {r['median_us']:.2f} |" for r in results]
    out.append("")
    for label, ours, theirs in (
        (
            "documented example (thousands separator removed before the decode)",
            "decode_account_info, documented example",
            "json.loads, documented example",
        ),
        (
            "body without a thousands separator",
            "decode_account_info, no thousands separator",
            "json.loads, no thousands separator",
        ),
    ):
        if ours in by_name and theirs in by_name:
            # Per repeat (the two ran back to back), then the median of those ratios.
            ratio = statistics.median(
                a / b for a, b in zip(by_name[ours]["runs"], by_name[theirs]["runs"], strict=True)
            )
            verdict = "cheaper than" if ratio < 1 else "costlier than"
            out.append(
                f"- Decoding the {label}: {ratio:.2f}× `json.loads` of the same bytes "
                f"({verdict} it; the target is below 1×)."
            )
    out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every case and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats per case (7)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repeat (0.2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    named = [(name, func) for _, name, func in cases()]
    runs = measure_all(named, max(1, args.repeat), args.min_time)
    results = []
    for name, times in runs.items():
        figures = {"best_us": min(times), "median_us": statistics.median(times), "runs": times}
        results.append({"name": name, **figures})
        print(f"{name:58} {figures['best_us']:9.2f} µs best {figures['median_us']:9.2f} median")
    text = markdown(results, args.repeat)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pure.md").write_text(text, encoding="utf-8")
    print()
    print(text)
    print(f"written: {args.out / 'pure.md'}")


if __name__ == "__main__":
    main()
