"""Griffe extension for the API reference: our docstrings use reStructuredText habits
(``:class:`~binance_pmpro.x.Y``` roles, a class tree drawn with indentation), and the
reference renders them as Markdown. This turns the roles into cross-references that
mkdocs-autorefs resolves (or leaves as plain code when the target is not documented), and
the indented tree into a text block, so the docstrings stay readable in both worlds.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|exc|mod|obj|const):`(~?)([^`]+)`")
# A line of a class tree: optional indentation, a name in double backquotes, then a column
# gap (two spaces or more), a closing parenthesis, a comma or the end of the line.
_TREE_LINE = re.compile(r"^\s*\(?``\w+``(\s{2,}|\)|,|$)")


class ReSTInMarkdown(griffe.Extension):
    """Rewrite every docstring of the package once it is fully loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _tree_blocks(_roles(obj, obj.docstring.value))


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if member.is_alias:
            continue  # documented where it is defined
        found.extend(_walk(member))  # type: ignore[arg-type]
    return found


def _resolve(obj: griffe.Object, target: str) -> str:
    if target.startswith("binance_pmpro"):
        return target
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            path = scope.resolve(head)
        except Exception:  # griffe raises several kinds: try the parent scope
            scope = scope.parent
            continue
        return f"{path}.{rest}" if rest else path
    return target


def _roles(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2).lstrip(".")
        title = target.rsplit(".", 1)[-1] if short else target
        identifier = _resolve(obj, target)
        return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

    return _ROLE.sub(replace, text)


def _tree_blocks(text: str) -> str:
    """Put runs of three or more class-tree lines into a ``text`` code block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and _TREE_LINE.match(lines[j]):
            j += 1
        # A tree has indented children; a paragraph of sentences starting with names has not.
        if j - i >= 3 and sum(line[:1].isspace() for line in lines[i:j]) >= 2:
            out.append("```text")
            out.extend(line.replace("``", "") for line in lines[i:j])
            out.append("```")
            i = j
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)
