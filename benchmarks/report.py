"""Formatting of benchmark rows: ``{name, value, reference, ratio, target}`` dicts as a Markdown table."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable


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


def collect_rows(main: Callable[[list[str]], None], argv: list[str]) -> list[dict]:
    """The rows a benchmark's ``main(argv)`` prints with :func:`print_table`, returned instead of printed.

    Its other output (settings lines) still goes to stdout; a module that imported ``print_table`` by name is
    redirected too.
    """
    rows: list[dict] = []
    module = sys.modules[main.__module__]
    saved = {target: getattr(target, "print_table", None) for target in (sys.modules[__name__], module)}
    try:
        for target in saved:
            target.print_table = lambda given: rows.extend(given)  # type: ignore[attr-defined]
        main(argv)
    finally:
        for target, original in saved.items():
            if original is not None:
                target.print_table = original  # type: ignore[attr-defined]
    return rows


def machine_description() -> dict[str, str]:
    """What the numbers were measured on: processor (or GPU), cores, threads, torch, Python, date."""
    import datetime
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    described = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if torch.cuda.is_available():
        described["gpu"] = torch.cuda.get_device_name(0)
    return described
