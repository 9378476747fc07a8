"""Every benchmark in one table, written with the machine it ran on.

    python -m benchmarks [--quick] [--only vit,mixing,...] [--out docs/results/benchmarks.md]

Runs the suites below in order, prints one Markdown table (``benchmarks.report``: name, vitlab's value, the
reference measured in the same run, their ratio, the target) and writes it, under a description of the
machine (processor, cores, threads, torch, date), to ``--out``. A full run writes
``docs/results/benchmarks.md`` by default; ``--quick`` (fewer rounds, smaller sizes, no ``torch.compile``
and no training run: a smoke test, noisier numbers) writes only when ``--out`` is given. The file keeps one
section per kind of machine (``cpu``, or the GPU's name when CUDA is present), and a run rewrites only its
own section, so a CPU and a GPU table can sit side by side.

Suites (each module also runs alone as ``python -m benchmarks.bench_<name>``):

* ``vit``: ViT-Ti/4 32×32 training step, vitlab against timm's ``VisionTransformer`` with the same weights
  (eager and compiled), and model FLOPs utilisation against the fp32 matmul peak measured in the same run.
* ``activations``: Mish/Swish Functions against ``F.mish``/``F.silu``, saved bytes, Mish-vs-GELU ViT step.
* ``mixing``: Mixup/CutMix/Cutout against timm's ``Mixup``; mixing's cost per training step.
* ``scatter``: segment reductions against bare ``scatter_reduce``; segment softmax against a loop.
* ``decoding``: beam search with the key/value cache against recomputing the prefix.
* ``reverse``: the shipped Transformer reverse recipe's accuracy and wall time (full runs only).
* ``deploy``: eager PyTorch against onnxruntime float32 / int8, and ``vitlab predict``'s memory and speed over
  1,000 and 10,000 files (needs ``make demo``'s run under ``runs/`` and the export extra).

A suite that fails prints its error on stderr and adds a row saying so; the others still run.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.report import collect_rows, machine_description, markdown_table

DEFAULT_OUT = Path("docs/results/benchmarks.md")


def _vit(quick: bool) -> list[dict]:
    from benchmarks import bench_vit

    if quick:
        return bench_vit.run(batch=32, rounds=2, steps_per_round=1)
    return bench_vit.run(batch=128, rounds=5, steps_per_round=2) + bench_vit.run(
        batch=128, rounds=5, steps_per_round=2, compile_models=True
    )


def _activations(quick: bool) -> list[dict]:
    from benchmarks import bench_activations

    argv = ["--numel", "1000000", "--rounds", "3"] if quick else []
    return collect_rows(bench_activations.main, argv)


def _mixing(quick: bool) -> list[dict]:
    from benchmarks import bench_mixing

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if quick:
        return bench_mixing.run(batch=64, rounds=3, calls_per_round=3, device=device, train_steps=1)
    return bench_mixing.run(device=device)


def _scatter(quick: bool) -> list[dict]:
    from benchmarks import bench_scatter

    argv = ["--n", "200000", "--segments", "2000", "--rounds", "3"] if quick else []
    return collect_rows(bench_scatter.main, argv)


def _decoding(quick: bool) -> list[dict]:
    from benchmarks import bench_decoding

    argv = ["--tokens", "16", "--rounds", "1"] if quick else []
    return collect_rows(bench_decoding.main, argv)


def _reverse(quick: bool) -> list[dict]:
    if quick:
        return []  # a whole training run: full runs only
    from benchmarks import bench_transformer_reverse

    return collect_rows(bench_transformer_reverse.main, ["--quiet"])


def _deploy(quick: bool) -> list[dict]:
    """Needs a finished default-recipe run: the newest ``runs/mnist5k-vit_mnist_conv4_28-*`` (``make demo``)."""
    runs = sorted(Path("runs").glob("mnist5k-vit_mnist_conv4_28-*/summary.json"))
    if not runs:
        return [dict(name="deploy: skipped, no finished default run under runs/ (run `make demo` first)", value="",
                     reference="", ratio="", target="")]
    from benchmarks import bench_deploy

    return collect_rows(bench_deploy.main, ["--run", str(runs[-1].parent), *(["--quick"] if quick else [])])


SUITES: dict[str, Callable[[bool], list[dict]]] = {
    "vit": _vit,
    "activations": _activations,
    "mixing": _mixing,
    "scatter": _scatter,
    "decoding": _decoding,
    "reverse": _reverse,
    "deploy": _deploy,
}


def run_suites(names: list[str], quick: bool) -> list[dict]:
    """The rows of the named suites, in order; a failing suite gives one row naming its error."""
    rows: list[dict] = []
    threads = torch.get_num_threads()
    for name in names:
        start = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            rows += SUITES[name](quick)
        except Exception as error:  # one broken suite must not lose the others' numbers
            traceback.print_exc()
            rows.append(dict(name=f"{name}: FAILED ({type(error).__name__}: {error})", value="", reference="", ratio=""))
        finally:
            torch.set_num_threads(threads)  # some suites pin one thread for stable ratios
        print(f"== {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def section_key() -> str:
    """One section of the results file per kind of machine."""
    return f"gpu: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def render_section(rows: list[dict], command: str) -> str:
    machine = machine_description()
    described = "\n".join(f"- {key}: {value}" for key, value in machine.items())
    title = f"GPU ({machine['gpu']})" if "gpu" in machine else "CPU"
    return f"## {title}\n\n`{command}` on:\n\n{described}\n\n{markdown_table(rows)}\n"


def write_results(path: Path, key: str, section: str) -> None:
    """Replace (or add) the section between ``<!-- benchmarks:KEY -->`` markers of ``path``, keeping the rest."""
    begin, end = f"<!-- benchmarks:{key} -->", f"<!-- /benchmarks:{key} -->"
    block = f"{begin}\n{section}{end}\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else (
        "# Benchmark results\n\nWritten by `python -m benchmarks` (see `benchmarks/__main__.py`): ratios are measured "
        "in one run on one machine, so they hold while the machine's load changes; absolute numbers do not.\n\n"
    )
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds: a smoke test")
    parser.add_argument("--only", default=None, help=f"comma-separated suites, from {', '.join(SUITES)}")
    parser.add_argument("--out", default=None, help=f"Markdown file to write (default: {DEFAULT_OUT}; none with --quick)")
    args = parser.parse_args(argv)
    names = list(SUITES) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        from vitlab.errors import unknown_name_message

        parser.error(unknown_name_message("benchmark suite", unknown[0], list(SUITES)))
    rows = run_suites(names, args.quick)
    command = "python -m benchmarks" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    section = render_section(rows, command)
    print(section)
    out = Path(args.out) if args.out else (None if args.quick else DEFAULT_OUT)
    if out is not None:
        write_results(out, section_key(), section)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
