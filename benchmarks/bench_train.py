"""A training recipe end to end: test accuracy and wall time over several seeds, optionally beside a baseline.

    python -m benchmarks.bench_train [--config RECIPE] [--baseline RECIPE] [--teacher RECIPE] [--seeds 0 1 2]
                                     [--out FILE.md]

With no ``--config`` it runs the README's main job: ``vitlab train`` with no recipe (the default, a ViT on the
embedded 28×28 MNIST set; issue target ≥ 98 % test top-1 in ≤ 3 minutes on 2 CPU cores including
start-up). ``--baseline mnist5k_resnet`` adds the CNN baseline trained by the same engine on the same split,
each seed run right after the ViT's, so both are measured under the same machine load. ``--out`` writes a
Markdown page with the table and a learning-curve figure (validation accuracy against wall time).

``--teacher mnist5k_resnet`` (with a distilling recipe such as ``--config mnist5k_deit``) trains, for each seed S, the
teacher with seed S first and then the student taught by that very run (``--set distill.teacher=...``): one
teacher per seed, as DeiT's comparison needs. The teacher's wall time is its own row, not part of the student's.
With a baseline or a teacher the page adds the differences paired by seed (mean and a 95 % Student-t interval over
the seeds) and the ratio of wall times.

Each run is a fresh process (``python -m vitlab train --quiet --set seed=S``); its wall time includes
interpreter start-up, imports, data loading, training, the final evaluation and the plots. The digits
results (docs/results/train_digits.md) came from ``--config digits_vit``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_seed(recipe: str | None, seed: int, workdir: Path, teacher: Path | None = None) -> dict:
    out = workdir / f"{recipe or 'default'}-seed{seed}"
    command = [sys.executable, "-m", "vitlab", "train", "--quiet", "--set", f"seed={seed}", "--out", str(out)]
    if recipe:
        command += ["--config", recipe]
    if teacher is not None:
        command += ["--set", f"distill.teacher={teacher}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "metrics.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    return {"recipe": recipe or "default", "seed": seed, "wall_s": wall, "history": history, "out": out, **summary}


def machine() -> str:
    cpu, bf16 = platform.processor() or platform.machine(), "unknown"
    try:
        info = Path("/proc/cpuinfo").read_text()
        bf16 = "yes" if "avx512_bf16" in info else "no"
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} cores, native bf16 (avx512_bf16) {bf16}, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def table(rows: list[dict]) -> str:
    spread = statistics.stdev if len(rows) > 1 else (lambda values: 0.0)
    accs = [r["test_acc1"] for r in rows]
    walls = [r["wall_s"] for r in rows]
    lines = [
        "| recipe | seed | test top-1 | val top-1 | test ECE | ECE (temp. scaled) | precision | images/s | wall time (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['recipe']} | {r['seed']} | {r['test_acc1']:.4f} | {r['val_acc1']:.4f} | {r['test_ece']:.4f} | "
            f"{r['test_ece_temperature_scaled']:.4f} | {r.get('amp', 'off')} | {r['train_images_per_s']:.0f} | "
            f"{r['wall_s']:.1f} |"
            for r in rows
        ),
        f"| {rows[0]['recipe']} | mean ± sd | {statistics.mean(accs):.4f} ± {spread(accs):.4f} | | | | | | "
        f"{statistics.mean(walls):.1f} ± {spread(walls):.1f} |",
    ]
    return "\n".join(lines)


def paired(groups: dict[str, list[dict]], first: str) -> str:
    """``first`` minus each other recipe, paired by seed: test top-1 differences (pp) and wall-time ratios."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vitlab.reproduce.stats import paired_interval

    lines = ["| comparison | per seed (pp) | mean (pp) | 95 % interval (t, paired) | excludes 0 | wall-time ratio |",
             "| --- | --- | --- | --- | --- | --- |"]
    mine = {r["seed"]: r for r in groups[first]}
    for name, rows in groups.items():
        if name == first:
            continue
        pairs = [(mine[r["seed"]], r) for r in rows if r["seed"] in mine]
        diffs = [100 * (a["test_acc1"] - b["test_acc1"]) for a, b in pairs]
        ratios = [a["wall_s"] / b["wall_s"] for a, b in pairs]
        interval = paired_interval([100 * a["test_acc1"] for a, _ in pairs], [100 * b["test_acc1"] for _, b in pairs])
        mean, low, high = interval.mean, interval.low, interval.high
        excludes = "n/a" if low != low else ("yes" if low > 0 or high < 0 else "no")
        lines.append(
            f"| {first} − {name} | {', '.join(f'{d:+.1f}' for d in diffs)} | {mean:+.2f} | "
            f"[{low:+.2f}, {high:+.2f}] | {excludes} | "
            f"{statistics.mean(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}) |"
        )
    return "\n".join(lines)


def plot_curves(groups: dict[str, list[dict]], out: Path) -> None:
    """Validation top-1 against elapsed training time (cumulative epoch seconds), one line per run."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vitlab.viz.figure import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4))
    colours = ["tab:blue", "tab:orange", "tab:green"]
    for colour, (name, rows) in zip(colours, groups.items()):
        for i, run in enumerate(rows):
            elapsed, acc = 0.0, []
            for row in run["history"]:
                elapsed += float(row["epoch_seconds"])
                acc.append((elapsed, float(row["val_acc1"])))
            ax.plot(*zip(*acc), color=colour, alpha=0.8, label=name if i == 0 else None)
    ax.set_xlabel("training time (s, sum of epoch times)")
    ax.set_ylabel("validation top-1")
    ax.set_ylim(0.9, 1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="recipe name or YAML file (default: vitlab train's default)")
    parser.add_argument("--baseline", default=None, help="a second recipe run after each seed of the first")
    parser.add_argument("--teacher", default=None,
                        help="train this recipe with each seed first and distil --config from it (distill.teacher)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="also write the tables and curves as Markdown here")
    args = parser.parse_args()
    groups: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            teacher = run_seed(args.teacher, seed, Path(tmp)) if args.teacher else None
            rows = [] if teacher is None else [teacher]
            rows.append(run_seed(args.config, seed, Path(tmp), None if teacher is None else teacher["out"]))
            if args.baseline:
                rows.append(run_seed(args.baseline, seed, Path(tmp)))
            for row in rows:
                groups.setdefault(row["recipe"], []).append(row)
                print(f"{row['recipe']} seed {seed}: test top-1 {row['test_acc1']:.4f}, wall {row['wall_s']:.1f} s", flush=True)
    first = args.config or "default"
    text = "\n\n".join(table(rows) for rows in groups.values())
    if len(groups) > 1:
        text += "\n\nPaired by seed (test top-1, percentage points; wall-time ratio = first recipe / other):\n\n"
        text += paired(groups, first)
    print(text)
    if args.out:
        out = Path(args.out)
        figure = out.with_name(out.stem + "_curves.png")
        plot_curves(groups, figure)
        command = "python -m benchmarks.bench_train" + "".join(
            f" --{k} {v}" for k, v in (("config", args.config), ("teacher", args.teacher), ("baseline", args.baseline)) if v)
        page = (
            f"# `vitlab train`: {' vs '.join(groups)}\n\n"
            f"Machine: {machine()}; date {time.strftime('%Y-%m-%d')}.\n"
            f"Command: `{command} --seeds {' '.join(map(str, args.seeds))}` (each run a fresh `vitlab train --set seed=S`; "
            "wall time includes start-up).\n\n" + text + f"\n\n![validation accuracy against training time]({figure.name})\n"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page)


if __name__ == "__main__":
    main()
