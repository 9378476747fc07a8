"""The ``vitlab`` command.

Each subcommand is a function ``cmd_<name>(args) -> int`` and a parser built in :func:`build_parser`.
Errors a person can cause are raised as :class:`vitlab.errors.VitlabError` (or ``ValueError``,
``FileNotFoundError``, ...); :func:`main` prints them as one line on stderr and returns exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def cmd_translate(args: argparse.Namespace) -> int:
    """Decode a source sequence with a trained seq2seq run (greedy, or beam search with --beam N)."""
    from vitlab.train.seq2seq import translate

    print(translate(args.run_dir, args.text, beam=args.beam, max_len=args.max_len))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Print the registered model names, one per line, with their parameter counts."""
    from vitlab.models import create_model, list_models
    from vitlab.models.vit import count_parameters

    for name in list_models(args.pattern):
        model = create_model(name)
        print(f"{name:28s} {count_parameters(model) / 1e6:8.2f}M params")
    return 0


# `vitlab plot NAME --out PATH`: each entry is "module:function", the function taking the output PNG path
# and returning the path it wrote. Imported lazily so that `vitlab --help` stays fast.
PLOTS: dict[str, str] = {
    "activations": "vitlab.viz:plot_activations",
    "posenc": "vitlab.viz:plot_posenc",
    "mixing": "vitlab.viz:plot_mixing",
}

# `vitlab demo NAME --out DIR`: each entry is "module:function", the function taking the output folder and
# returning an exit code.
DEMOS: dict[str, str] = {
    "legendre": "vitlab.autograd:legendre_demo",
}


def _resolve(entry: str):  # noqa: ANN202 - returns a callable
    import importlib

    module, _, function = entry.partition(":")
    return getattr(importlib.import_module(module), function)


def cmd_plot(args: argparse.Namespace) -> int:
    """Write one of the technique plots as a PNG."""
    from pathlib import Path

    out = Path(args.out) if args.out else Path(f"{args.name}.png")
    written = _resolve(PLOTS[args.name])(out)
    print(f"wrote {written}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run one of the demos (e.g. the Legendre P3 fit of sin(x))."""
    from pathlib import Path

    return int(_resolve(DEMOS[args.name])(Path(args.out)) or 0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vitlab",
        description="Vision Transformers and the techniques that train image classifiers, from the papers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    trans = sub.add_parser("translate", help="decode a sequence with a trained seq2seq run")
    trans.add_argument("run_dir", help="run folder written by `vitlab train` with task: seq2seq")
    trans.add_argument("text", help='source symbols, e.g. "3 1 2"')
    trans.add_argument("--beam", type=int, default=1, help="beam size (1: greedy decoding)")
    trans.add_argument("--max-len", type=int, default=None, help="most output tokens (default: the task's longest + 1)")
    trans.set_defaults(func=cmd_translate)

    models = sub.add_parser("models", help="list the registered models")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vit_tiny*'")
    models.set_defaults(func=cmd_models)

    plot = sub.add_parser("plot", help="write a technique's plot as a PNG")
    plot.add_argument("name", choices=sorted(PLOTS), help="which plot")
    plot.add_argument("--out", default=None, help="output PNG path (default: NAME.png)")
    plot.set_defaults(func=cmd_plot)

    demo = sub.add_parser("demo", help="run a demo")
    demo.add_argument("name", choices=sorted(DEMOS), help="which demo")
    demo.add_argument("--out", default="demo", help="output folder for its plots (default: ./demo)")
    demo.set_defaults(func=cmd_demo)

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
