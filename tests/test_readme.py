"""The README's two set-up commands are the ones CI and newcomers run: keep them in step."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text, flags=re.DOTALL)


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    assert all(command.startswith("python3 -m venv .venv && ") for command in commands)


def test_readme_demo_command_runs_the_cli_demo() -> None:
    demo = _readme_commands()[0]
    assert demo.endswith("binance-pmpro account --demo")


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _readme_commands()[1]
    runner = test_command.rsplit(" && ", 1)[-1]
    install = test_command.split(" && ")[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert runner == ".venv/bin/python -m pytest"
    assert re.search(rf"^{re.escape(runner)}\b", ci, flags=re.MULTILINE)
    extras = re.search(r"-e '(\.\[[a-z,]+\])'", install)
    assert extras is not None
    assert f"-e '{extras.group(1)}'" in ci
