"""The ``vitlab`` command.

Each subcommand is a function ``cmd_<name>(args) -> int`` and a parser built in :func:`build_parser`.
Errors a person can cause are raised as :class:`vitlab.errors.VitlabError` (or ``ValueError``,
``FileNotFoundError``, ...); :func:`main` prints them as one line on stderr and returns exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def cmd_models(args: argparse.Namespace) -> int:
    """Print the registered model names, one per line, with their parameter counts."""
    from vitlab.models import create_model, list_models
    from vitlab.models.vit import count_parameters

    for name in list_models(args.pattern):
        model = create_model(name)
        print(f"{name:28s} {count_parameters(model) / 1e6:8.2f}M params")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vitlab",
        description="Vision Transformers and the techniques that train image classifiers, from the papers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    models = sub.add_parser("models", help="list the registered models")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vit_tiny*'")
    models.set_defaults(func=cmd_models)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("vitlab: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"vitlab: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
