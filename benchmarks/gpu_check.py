"""``make gpu-check``: every check that needs a CUDA GPU, in one command and at most 8 minutes.

    python -m benchmarks.gpu_check [--budget 480] [--out docs/results/benchmarks.md]

Steps, in order, each in its own process with a time limit taken from what is left of the budget (a step
that no longer fits is reported as skipped, never silently dropped):

1. ``pytest -m gpu`` (tests/test_gpu.py: ViT forward/backward on CUDA vs CPU float64, fused AdamW, SDPA
   under bf16 autocast, pinned transfers).
2. The ViT-Ti/4 training step against timm (``benchmarks.bench_vit``, batch 128): fp32 and bf16 autocast
   eager, then bf16 compiled (a separate process, so a slow compilation cannot lose the eager rows), with
   MFU against the matmul peaks measured in the same run.
3. A 1-GPU ``torchrun --standalone --nproc_per_node=1 -m vitlab train --set device=cuda --set epochs=2``
   (the DDP path: vitlab joins an NCCL process group on CUDA).
4. The default recipe end to end on the GPU (``vitlab train --set device=cuda``).

It then writes a GPU section (between ``<!-- benchmarks:gpu-check: NAME -->`` markers, replacing an earlier
one of the same GPU) into ``docs/results/benchmarks.md`` and prints it. The exit status is 0 when every
step passed, 1 when one failed or was skipped, and 2 (with one line on stderr, nothing written) when no
CUDA GPU is visible to torch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "results" / "benchmarks.md"


def _env() -> dict[str, str]:
    """The environment of every step: this checkout's sources first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class Budget:
    """Seconds left of the whole check; each step gets ``min(its cap, what is left)``."""

    def __init__(self, total: float) -> None:
        self.deadline = time.monotonic() + total

    def left(self) -> float:
        return self.deadline - time.monotonic()


def run_step(name: str, cmd: list[str], cap: float, budget: Budget, min_needed: float, cwd: Path = ROOT) -> dict:
    """Run ``cmd`` with a timeout of ``min(cap, budget left)``; the step's status, wall time and output tail."""
    limit = min(cap, budget.left())
    if limit < min_needed:
        return dict(name=name, status=f"skipped (only {max(limit, 0):.0f} s of the budget left)", seconds=0.0, tail="")
    print(f"== {name} (limit {limit:.0f} s): {' '.join(cmd)}", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=limit)
        status = "passed" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as expired:
        status = f"FAILED (timed out after {limit:.0f} s)"
        output = "".join(
            part.decode(errors="replace") if isinstance(part, bytes) else part
            for part in (expired.stdout, expired.stderr)
            if part
        )
    seconds = time.monotonic() - start
    print(f"== {name}: {status}, {seconds:.0f} s", file=sys.stderr, flush=True)
    tail = "\n".join(output.strip().splitlines()[-15:])
    if not status.startswith("passed"):
        print(tail, file=sys.stderr)
    return dict(name=name, status=status, seconds=seconds, tail=tail, output=output)


def _summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _fmt(summary: dict, key: str, spec: str) -> str:
    value = summary.get(key)
    return format(value, spec) if isinstance(value, (int, float)) else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all steps together (default 480)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown file whose GPU section is written")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(
            f"gpu-check: no CUDA GPU visible to torch {torch.__version__} (torch.cuda.is_available() is False); "
            "nothing was run or written",
            file=sys.stderr,
        )
        return 2

    budget = Budget(args.budget)
    py = sys.executable
    steps: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="vitlab-gpu-check-") as tmp:
        tmp_dir = Path(tmp)
        tests = run_step("pytest -m gpu", [py, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"], 120, budget, 20)
        tests["result"] = tests["tail"].splitlines()[-1] if tests["tail"] else ""
        steps.append(tests)
        bench_rows: list[dict] = []
        # Eager and compiled in separate processes, so a slow compilation cannot lose the eager rows.
        for label, extra, cap, need in (
            ("ViT step vs timm, eager (fp32, bf16)", [], 120, 40),
            ("ViT step vs timm, compiled (bf16)", ["--compile", "bf16", "--compile-only"], 200, 90),
        ):
            out = tmp_dir / f"bench{len(steps)}.json"
            cmd = [py, "-m", "benchmarks.bench_vit", "--device", "cuda", "--amp", "both" if not extra else "bf16",
                   "--rounds", "5", "--steps", "10", "--json", str(out), *extra]
            step = run_step(label, cmd, cap, budget, need)
            rows = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else []
            bench_rows += rows
            step["result"] = f"{len(rows)} rows, below"
            steps.append(step)
        ddp_dir = tmp_dir / "ddp"
        step = run_step(
            "torchrun 1 GPU (nccl), 2 epochs",
            [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "vitlab", "train",
             "--set", "device=cuda", "--set", "epochs=2", "--quiet", "--out", str(ddp_dir)],
            120, budget, 30,
        )
        ddp = _summary(ddp_dir)
        step["result"] = f"world size {ddp.get('world_size', 'n/a')}, test top-1 {_fmt(ddp, 'test_acc1', '.4f')}"
        steps.append(step)
        default_dir = tmp_dir / "default"
        step = run_step(
            "default recipe end to end",
            [py, "-m", "vitlab", "train", "--set", "device=cuda", "--quiet", "--out", str(default_dir)],
            300, budget, 60,
        )
        default = _summary(default_dir)
        step["result"] = (
            f"test top-1 {_fmt(default, 'test_acc1', '.4f')}, ECE {_fmt(default, 'test_ece', '.4f')}, "
            f"training {_fmt(default, 'train_seconds', '.1f')} s, {_fmt(default, 'train_images_per_s', '.0f')} images/s"
        )
        steps.append(step)

    from benchmarks.__main__ import write_results
    from benchmarks.report import machine_description

    name = torch.cuda.get_device_name(0)
    machine = machine_description()
    machine["cuda"] = str(torch.version.cuda)
    machine["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    machine["bf16"] = "native" if torch.cuda.is_bf16_supported() else "not native"
    section = render_section(name, machine, steps, bench_rows, args.budget)
    print(section)
    write_results(Path(args.out), f"gpu-check: {name}", section)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(step["status"] == "passed" for step in steps) else 1


def render_section(name: str, machine: dict, steps: list[dict], bench_rows: list[dict], budget: float) -> str:
    """The Markdown GPU section: the machine, one table row per step, then the benchmark rows."""
    from benchmarks.report import markdown_table

    lines = [f"## GPU check ({name})", "", "`make gpu-check` (`python -m benchmarks.gpu_check`) on:", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += ["", "| step | status | wall (s) | result |", "| --- | --- | --- | --- |"]
    for step in steps:
        shown = step.get("result", "") if step["status"] == "passed" else ""
        lines.append(f"| {step['name']} | {step['status']} | {step['seconds']:.0f} | {shown} |")
    total = sum(step["seconds"] for step in steps)
    lines += ["", f"Total {total:.0f} s of the {budget:.0f} s budget.", ""]
    if bench_rows:
        lines += [markdown_table(bench_rows), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
