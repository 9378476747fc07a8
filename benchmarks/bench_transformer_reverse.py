"""Train the shipped reverse recipe and report its test accuracy and wall time.

    python -m benchmarks.bench_transformer_reverse [--config transformer_reverse|FILE.yaml] [--out DIR]

Trains the shipped recipe ``transformer_reverse`` (reverse, lengths 1..20; ``src/vitlab/recipes/``) with
:func:`vitlab.train.engine.train` into a temporary folder (or ``--out``), then prints the exact-match
sequence accuracy of greedy decoding on the fixed 1,000-sequence test split and the wall time of the whole
run (data generation, training, evaluations, writing the run folder). Targets: accuracy ≥ 0.99 within 300 s
on 2 CPU cores. The time depends on the machine's load; the reference column is the target itself.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.report import print_table
from vitlab.recipes import load_recipe
from vitlab.train.engine import train
from vitlab.train.tasks.seq2seq import Seq2SeqConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="transformer_reverse", help="shipped recipe name or YAML file")
    parser.add_argument("--out", default=None, help="run folder to keep (default: a temporary folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config = load_recipe(args.config)
    config.pop("task", None)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.out) if args.out else Path(tmp) / "reverse"
        start = time.perf_counter()
        result = train(Seq2SeqConfig.from_dict(config), run_dir, quiet=args.quiet)
        wall = time.perf_counter() - start
    accuracy = result["test_accuracy"]
    print(f"{args.config}: {int(result['steps'])} steps, training loop {result['train_seconds']:.1f} s")
    print_table(
        [
            {"name": "reverse test exact-match accuracy", "value": accuracy, "reference": 0.99,
             "ratio": accuracy / 0.99, "target": "ratio >= 1"},
            {"name": "wall time of the run (s)", "value": wall, "reference": 300.0,
             "ratio": wall / 300.0, "target": "ratio <= 1"},
        ]
    )


if __name__ == "__main__":
    main()
