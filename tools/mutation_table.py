"""Print the per-module table of a finished ``mutmut run`` (``make mutate``), for docs/reliability.md.

Reads ``mutants/**/*.py.meta`` (mutmut 3's result files: one exit code per mutant) and classifies each exit
code with mutmut's own ``status_by_exit_code``. A surviving mutant is a change to the code that no test of the
module noticed: each is a place to look, ``mutmut show NAME`` prints it.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code


def module_counts(root: Path) -> dict[str, Counter]:
    """``{module path: Counter(status -> mutants)}`` for every mutated file under ``root``."""
    table: dict[str, Counter] = {}
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        module = str(meta.relative_to(root).with_suffix(""))  # src/vitlab/losses.py
        table[module] = Counter(status_by_exit_code[code] for code in codes.values())
    return table


def main(root: str = "mutants") -> int:
    table = module_counts(Path(root))
    if not table:
        print(f"no mutmut results under {root}/; run `make mutate` first", file=sys.stderr)
        return 2
    print("| module | mutants | killed | survived | timeout | no tests | not checked |")
    print("|---|---|---|---|---|---|---|")
    for module, counts in table.items():
        total = sum(counts.values())
        print(f"| `{module}` | {total} | {counts['killed']} | **{counts['survived']}** | {counts['timeout']} | "
              f"{counts['no tests']} | {counts['not checked']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
