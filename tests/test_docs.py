"""The documentation site cannot drift from the code.

Python code blocks must be pieces of examples/ (which tests/test_examples.py runs), copied
program output must equal what the program prints now, and every public name, exception,
fault kind and environment variable must be documented. ``mkdocs build --strict`` (run by
``nox -s docs`` and CI) checks links, anchors and the API reference on top of this.

Copied output blocks can be refreshed with ``BINANCE_PMPRO_UPDATE_DOCS=1 pytest
tests/test_docs.py``; the tests then rewrite them instead of failing.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import binance_pmpro
from binance_pmpro import cli, errors
from binance_pmpro.decoding import decode_account_info
from binance_pmpro.testing import DEFAULT_ACCOUNT, FaultKind

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
UPDATE = os.environ.get("BINANCE_PMPRO_UPDATE_DOCS", "") not in ("", "0")

PAGES = sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```$", flags=re.DOTALL | re.MULTILINE)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$')
HELP_MARKER = re.compile(r"<!-- cli-help: (.+?) -->\n```text\n(.*?)```", flags=re.DOTALL)


def page(name: str) -> str:
    return (DOCS / name).read_text()


def _same_text(left: str, right: str) -> bool:
    # argparse wraps to the terminal and words its layout slightly differently across
    # Python versions; the words themselves must match.
    return left.split() == right.split()


def _check_block(path: Path, marker: str, actual: str, same: Callable[[str, str], bool]) -> None:
    """The ``text`` block right after ``marker`` in ``path`` must hold ``actual``."""
    text = path.read_text()
    start = text.index(marker)
    block = re.compile(r"```text\n(.*?)```", flags=re.DOTALL).search(text, start)
    assert block is not None, f"no text block after {marker!r} in {path.name}"
    if same(block.group(1), actual):
        return
    if UPDATE:
        path.write_text(text[: block.start(1)] + actual + text[block.end(1) :])
        return
    pytest.fail(
        f"{path.relative_to(ROOT)}: the block after {marker!r} is stale; run "
        "BINANCE_PMPRO_UPDATE_DOCS=1 pytest tests/test_docs.py to refresh it.\n"
        f"--- now ---\n{actual}"
    )


# --- copied program output -----------------------------------------------------------------


def _help_text(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(args)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


CLI_PAGE = DOCS / "reference" / "cli.md"


@pytest.mark.parametrize("args", [m.group(1) for m in HELP_MARKER.finditer(CLI_PAGE.read_text())])
def test_cli_page_help_block_matches_the_program(
    args: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    actual = _help_text(args.split(), capsys)
    _check_block(CLI_PAGE, f"<!-- cli-help: {args} -->", actual, _same_text)


def test_cli_page_covers_every_subcommand() -> None:
    text = CLI_PAGE.read_text()
    documented = {m.group(1) for m in HELP_MARKER.finditer(text)}
    assert {"--help", "account --help", "fake-exchange --help"} <= documented
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name in subparsers.choices:  # type: ignore[union-attr]
        # At least in the overview's list of commands.
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name


def test_quickstart_demo_output_matches_the_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command line configures the package logger for a process of its own: undo that
    # for the tests that run after this one.
    logger = logging.getLogger("binance_pmpro")
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "level", logger.level)
    assert cli.main(["account", "--demo"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    _check_block(DOCS / "quickstart.md", "<!-- demo-output", out, str.__eq__)


def test_account_fields_printout_matches_the_example() -> None:
    from test_examples import load

    body = json.dumps(dict(DEFAULT_ACCOUNT)).encode()
    lines = load("account_fields").summary(decode_account_info(body))
    actual = "\n".join(lines) + "\n"
    _check_block(DOCS / "guides" / "account-fields.md", "that prints:", actual, str.__eq__)


# --- code blocks come from examples/ ---------------------------------------------------------


def _blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text())]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_are_included_from_examples(path: Path) -> None:
    for language, body in _blocks(path):
        if language not in ("python", "py", "pycon"):
            continue
        lines = [line for line in body.splitlines() if line.strip()]
        assert lines, f"empty python block in {path.name}"
        for line in lines:
            match = SNIPPET.match(line)
            assert match is not None, f"{path.name}: python code outside examples/: {line!r}"
            assert match.group(1).startswith("examples/"), line


def _snippets() -> list[tuple[str, str]]:
    found = []
    for path in PAGES:
        for target in re.findall(r'^--8<-- "([^"]+)"$', path.read_text(), flags=re.MULTILINE):
            found.append((path.name, target))
    return found


@pytest.mark.parametrize(("page_name", "target"), _snippets())
def test_snippet_targets_exist_with_their_sections(page_name: str, target: str) -> None:
    file, _, section = target.partition(":")
    text = (ROOT / file).read_text()
    if section and not section[0].isdigit():  # a named section, not a line range
        assert f"# --8<-- [start:{section}]" in text, f"{page_name}: {target}"
        assert f"# --8<-- [end:{section}]" in text, f"{page_name}: {target}"


def test_every_example_appears_in_the_docs() -> None:
    included = {target.partition(":")[0] for _, target in _snippets()}
    for path in sorted((ROOT / "examples").glob("*.py")):
        assert f"examples/{path.name}" in included, path.name


# --- everything public is documented -------------------------------------------------------


def test_reference_root_page_lists_every_exported_name() -> None:
    text = page("reference/client.md")
    for name in binance_pmpro.__all__:
        assert f"`{name}`" in text, name


def test_errors_guide_and_reference_cover_every_exception() -> None:
    guide = page("guides/errors.md")
    reference = page("reference/errors.md")
    for name in errors.__all__:
        assert f"| `{name}` |" in guide or name in ("BinanceError", "OutcomeUnknownError"), name
        assert name in guide, name
        assert f"        - {name}\n" in reference, name


def test_testing_guide_lists_every_fault_kind() -> None:
    guide = page("guides/testing.md")
    for kind in FaultKind:
        assert f"| `{kind.name}` |" in guide, kind.name


REFERENCE_MODULES = [
    "client",
    "errors",
    "models",
    "retry",
    "events",
    "ratelimit",
    "signing",
    "transport",
    "testing",
    "monitor",
    "metrics",
]


@pytest.mark.parametrize("module", REFERENCE_MODULES)
def test_reference_has_a_generated_page_per_module(module: str) -> None:
    pages = {
        "client": "client.md",
        "errors": "errors.md",
        "models": "models.md",
        "retry": "retry.md",
        "events": "events.md",
        "ratelimit": "ratelimit.md",
        "signing": "signing.md",
        "transport": "transport.md",
        "testing": "testing.md",
        "monitor": "monitor.md",
        "metrics": "monitor.md",
    }
    assert f"::: binance_pmpro.{module}" in page(f"reference/{pages[module]}")


def _environment_variables_read_by_the_package() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src" / "binance_pmpro").rglob("*.py"):
        names.update(re.findall(r'"(BINANCE_[A-Z_]+)"', path.read_text()))
    return names


def test_configuration_page_documents_every_environment_variable() -> None:
    names = _environment_variables_read_by_the_package()
    assert "BINANCE_API_KEY" in names  # the scan itself works
    text = page("reference/configuration.md")
    for name in sorted(names):
        assert f"`{name}`" in text, name
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        assert f"`{proxy}`" in text, proxy


def test_configuration_page_documents_every_client_option() -> None:
    import inspect

    text = page("reference/configuration.md")
    for name in inspect.signature(binance_pmpro.PortfolioMarginProClient).parameters:
        assert f"`{name}`" in text, name


def test_changelog_has_the_current_version() -> None:
    assert f"## {binance_pmpro.__version__}" in page("changelog.md")


def test_every_page_is_in_the_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    for path in PAGES:
        assert str(path.relative_to(DOCS)) in config, path.name


def _committed(path: Path) -> bool:
    """Whether ``path`` is part of the checkout (tracked by git when this is a git clone;
    results a benchmark run just wrote are not, until someone commits them)."""
    import subprocess

    try:
        done = subprocess.run(
            ["git", "ls-files", "--error-unmatch", str(path.relative_to(ROOT))],
            cwd=ROOT,
            capture_output=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return path.exists()
    if done.returncode != 0 and b"not a git repository" in done.stderr:
        return path.exists()
    return done.returncode == 0


def test_performance_page_embeds_the_committed_results() -> None:
    text = page("performance.md")
    results = ROOT / "benchmarks" / "results"
    for name in ("clients.md", "pure.md"):
        if _committed(results / name):
            assert f'--8<-- "benchmarks/results/{name}' in text, name
