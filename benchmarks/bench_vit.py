"""ViT training-step throughput: vitlab against timm's ``VisionTransformer`` with the same configuration,
and model FLOPs utilisation (MFU) against this machine's fp32 matmul peak, all measured in one run.

    python -m benchmarks.bench_vit [--batch 128] [--steps 5] [--compile]

A step is forward + cross-entropy + backward + AdamW update, each library's as its training code makes it:
vitlab's model with the engine's optimizer (:func:`vitlab.train.tasks.image.build_optimizer`: AdamW, decay/no-decay
groups, PyTorch's fused kernel), timm's model with timm's own ``create_optimizer_v2(model, 'adamw')`` (the
same groups; PyTorch's default AdamW implementation, which on the CPU is the per-parameter loop). A second
row gives the model alone: both models with the same fused AdamW, so it isolates forward + backward.
Candidates are timed in alternating rounds (order reversed every other round) so that a change in machine
load hits all alike; each figure is the median over rounds.
MFU = (FLOPs of one step, counted by ``torch.utils.flop_counter.FlopCounterMode``) / step time / peak,
with the peak measured as the best of several large ``torch.matmul`` calls in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import vitlab

CONFIG = dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, num_classes=10)


def matmul_peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """Best achieved FLOP/s of an fp32 (size × size) @ (size × size) matmul: 2·size³ per call."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One training step on a fixed batch."""

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def step_flops(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """FLOPs of forward + backward, counted by PyTorch's FlopCounterMode (matmuls, convs, attention)."""
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(images), labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_rounds(steps: dict[str, Callable[[], None]], rounds: int, steps_per_round: int) -> dict[str, float]:
    """Median seconds per step of each named step function, timed in alternating rounds."""
    for step in steps.values():  # warm-up (allocator, autotuning, compilation)
        step()
        step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(rounds):
        order = list(steps.items())
        for name, step in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            samples[name].append((time.perf_counter() - start) / steps_per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def build_steps(batch: int, compile_models: bool) -> tuple[dict[str, Callable[[], None]], int]:
    """Step functions: ``vitlab``/``timm`` (each library's optimizer) and ``vitlab model``/``timm model``
    (the same fused AdamW), all on copies of the same initial weights; and the FLOPs of one step."""
    from timm.models.vision_transformer import VisionTransformer as TimmViT
    from timm.optim import create_optimizer_v2

    from vitlab.train.config import TrainConfig
    from vitlab.train.tasks.image import build_optimizer

    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        template = vitlab.create_model("vit_tiny_patch4_32")
    timm_weights = vitlab.models.vit.convert_to_timm_state_dict(template.state_dict())
    cfg = TrainConfig(lr=1e-4, min_lr=0.0, weight_decay=0.05)
    steps = {}
    # compiled: the two training steps only (each compilation costs minutes on a small CPU)
    for name in ("vitlab", "timm") if compile_models else ("vitlab", "timm", "vitlab model", "timm model"):
        if name.startswith("vitlab"):
            model = vitlab.create_model("vit_tiny_patch4_32")
            model.load_state_dict(template.state_dict())
        else:
            model = TimmViT(**CONFIG)
            model.load_state_dict(timm_weights)
        model.train()
        if name == "vitlab":
            optimizer = build_optimizer(model, cfg, images.device)
        elif name == "timm":
            optimizer = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=0.05)
        else:
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)
        runnable = torch.compile(model) if compile_models else model
        steps[name] = make_step(runnable, optimizer, images, labels)
    return steps, step_flops(template, images, labels)


def run(batch: int = 128, rounds: int = 3, steps_per_round: int = 2, compile_models: bool = False) -> list[dict]:
    """Rows: vitlab vs timm step time (ratio = timm time / vitlab time, > 1 means vitlab is faster), MFU."""
    steps, flops = build_steps(batch, compile_models)
    times = time_rounds(steps, rounds, steps_per_round)
    peak = matmul_peak_flops()
    mode = "compiled" if compile_models else "eager"
    ours, reference = times["vitlab"], times["timm"]
    rows = [
        dict(
            name=f"ViT-Ti/4 32x32 train step, batch {batch}, {mode}, each library's AdamW (images/s)",
            value=batch / ours,
            reference=batch / reference,
            ratio=reference / ours,
            target="vitlab >= 1.1x timm",
        ),
    ]
    if "vitlab model" in times:
        rows.append(dict(
            name=f"ViT-Ti/4 32x32 model fwd+bwd, batch {batch}, {mode}, same fused AdamW (images/s)",
            value=batch / times["vitlab model"],
            reference=batch / times["timm model"],
            ratio=times["timm model"] / times["vitlab model"],
            target="info (>= 1: no slower than timm)",
        ))
    rows += [
        dict(
            name=f"ViT-Ti/4 train step MFU, {mode} (achieved / fp32 matmul peak)",
            value=flops / ours / 1e9,
            reference=peak / 1e9,
            ratio=flops / ours / peak,
            target="report (GFLOP/s)",
        ),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="steps per round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    args = parser.parse_args()
    rows = run(args.batch, args.rounds, args.steps, compile_models=False)
    if args.compile:
        rows += run(args.batch, args.rounds, args.steps, compile_models=True)
    from benchmarks.report import print_table

    print_table(rows)


if __name__ == "__main__":
    main()
