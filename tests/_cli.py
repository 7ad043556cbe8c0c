"""Running the command line as a subprocess, for the CLI test modules."""

from __future__ import annotations

import os
import subprocess
import sys


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any Binance credentials or proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BINANCE_") and "proxy" not in k.lower()
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m binance_pmpro ARGS`` to completion, bounded by ``timeout`` seconds;
    stdout is a pipe (not a TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "binance_pmpro", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env if env is not None else clean_env(),
        timeout=timeout,
        check=False,
    )
