"""Markdown tables whose cells cannot break them: every `|` inside a cell is escaped.

A header such as `max|Δ dL/dz0| / atol`, an engine label or an error message can contain `|`;
unescaped, it splits its cell in two and shifts every later column under the wrong heading.
"""

from __future__ import annotations


def escape(value) -> str:
    """`value` as the text of one table cell: `|` escaped, line breaks made spaces."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text.replace("\\|", "|").replace("|", "\\|")


def row(*cells) -> str:
    """One table row (header or body) from its cells, each escaped."""
    return "| " + " | ".join(escape(c) for c in cells) + " |"


def header(*names) -> list[str]:
    """A table's header row and its delimiter row."""
    return [row(*names), "|" + "---|" * len(names)]
