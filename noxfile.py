"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s typecheck`, `nox -s docs`,
`nox -s bench`."""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
SOURCES = ["src", "tests", "benchmarks", "examples", "docs/_hooks", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, on asyncio and trio."""
    session.install("-e", ".[test,fast,examples]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/."""
    session.install("-e", ".[test,fast]", "mypy")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built with --strict: a broken link, anchor, snippet or API
    reference fails. Options after `--` go to `mkdocs build` (e.g. `-- --site-dir /tmp/site`).
    """
    session.install("-e", ".[docs]")
    # Material for MkDocs prints a banner about MkDocs 2.0 on every build; it is not a warning.
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against a loopback Binance stand-in; results in benchmarks/results/.

    The competition and the chart library are installed here only (benchmarks/requirements.txt),
    never as dependencies of the package. Options after `--` go to the client benchmark, e.g.
    `nox -s bench -- --n 500 --rounds 1 --loops asyncio`.
    """
    session.install("-e", ".[fast]", "-r", "benchmarks/requirements.txt")
    session.run("python", "-m", "benchmarks.bench_pure")
    if Path("benchmarks/bench_limiter.py").exists():
        session.run("python", "-m", "benchmarks.bench_limiter", "--out", "benchmarks/results")
    session.run("python", "-m", "benchmarks.bench_stream")
    if shutil.which("redis-server"):
        session.run("python", "-m", "benchmarks.bench_redis", "--out", "benchmarks/results")
    else:
        session.warn("no redis-server on the PATH: benchmarks.bench_redis left out")
    session.run("python", "-m", "benchmarks.bench_clients", *session.posargs)
