"""Formatting of benchmark rows: ``{name, value, reference, ratio, target}`` dicts as a Markdown table."""

from __future__ import annotations

from collections.abc import Iterable


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: Iterable[dict]) -> str:
    """A Markdown table with one line per row."""
    lines = ["| benchmark | vitlab | reference | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        cells = [row.get("name"), row.get("value"), row.get("reference"), row.get("ratio"), row.get("target", "")]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines)


def print_table(rows: Iterable[dict]) -> None:
    """Print the rows as a Markdown table."""
    print(markdown_table(rows))
