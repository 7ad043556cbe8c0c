"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s typecheck`, `nox -s bench`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
SOURCES = ["src", "tests", "benchmarks", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, on asyncio and trio."""
    session.install("-e", ".[test,fast]")
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
