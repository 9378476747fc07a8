"""The default `vitlab train` run: test accuracy and wall time over several seeds (issue target: ≥ 97%
test accuracy, ≤ 3 minutes including start-up on 2 CPU cores).

    python -m benchmarks.bench_train_digits [--seeds 0 1 2] [--out docs/results/train_digits.md]

Each seed is a fresh process running exactly the README's main job (`vitlab train`, the default recipe)
with `--set seed=S`; the wall time includes interpreter start-up, imports, data loading, training, the final
evaluation and the plots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_seed(seed: int, workdir: Path) -> dict:
    out = workdir / f"seed{seed}"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "vitlab", "train", "--quiet", "--set", f"seed={seed}", "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    return {"seed": seed, "wall_s": wall, **summary}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="also write the table as Markdown here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_seed(seed, Path(tmp)) for seed in args.seeds]
    accs = [r["test_acc1"] for r in rows]
    walls = [r["wall_s"] for r in rows]
    spread = statistics.stdev if len(rows) > 1 else (lambda values: 0.0)
    lines = [
        "| seed | test top-1 | test ECE | ECE (temp. scaled) | images/s | wall time (s) |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['seed']} | {r['test_acc1']:.4f} | {r['test_ece']:.4f} | {r['test_ece_temperature_scaled']:.4f} "
            f"| {r['train_images_per_s']:.0f} | {r['wall_s']:.1f} |"
            for r in rows
        ),
        f"| mean ± sd | {statistics.mean(accs):.4f} ± {spread(accs):.4f} | | | | {statistics.mean(walls):.1f} ± {spread(walls):.1f} |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        text = (
            "# Default `vitlab train` on the embedded digits\n\n"
            f"Machine: {machine()}; date {time.strftime('%Y-%m-%d')}.\n"
            "Command: `python -m benchmarks.bench_train_digits` (each seed a fresh `vitlab train --set seed=S`; "
            "wall time includes start-up). Targets: test top-1 ≥ 0.97, wall time ≤ 180 s.\n\n" + table + "\n"
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
