"""Mish / Swish speed and memory against PyTorch's built-ins, and a ViT-tiny training step with Mish against
GELU, all measured in one run (ratios, so that the load of a shared machine cancels).

    python -m benchmarks.bench_activations [--numel 4000000] [--batch 8] [--rounds 7] [--vit-steps 1] [--threads N]

Rows:
* fwd+bwd time of 4M float32 elements: vitlab's MishFunction / SwishFunction against F.mish / F.silu
  (target ≤ 1.3×), plus, for information, an all-Python Function that evaluates the explicit formula
  in backward and the naive autograd composition x·tanh(softplus(x)).
* saved-activation bytes, as seen by ``torch.autograd.graph.saved_tensors_hooks`` (every packed tensor
  counted, as autograd stores one reference per saved input/output), MishFunction against the naive
  composition (target ≤ 1/3); and the same counting each distinct storage once, for information.
* ViT-tiny (vit_tiny_patch4_32) training step (forward + cross-entropy + backward + AdamW) with
  ``act='mish'`` (and ``'mish_memory_efficient'``) against ``act='gelu'``: throughput ratio (target ≥ 0.95).

Candidates are timed in alternating rounds; each figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import vitlab
from benchmarks.report import print_table
from vitlab.nn.activations import MishFunction, SwishFunction, mish_derivative, swish_derivative


class _MishExplicit(torch.autograd.Function):
    """Saves x; backward always evaluates tanh(sp) + x·σ(x)·(1 − tanh²(sp)) with separate PyTorch ops."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x)
        return x * torch.tanh(F.softplus(x))

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        return g * mish_derivative(x)


class _SwishExplicit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        return g * swish_derivative(x)


def time_alternating(candidates: dict[str, Callable[[], None]], rounds: int, repeats: int = 1) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in alternating rounds after one warm-up call each."""
    for fn in candidates.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            samples[name].append((time.perf_counter() - start) / repeats)
    return {name: statistics.median(v) for name, v in samples.items()}


def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        (grad,) = torch.autograd.grad(fn(x), x, g)
        del grad

    return run


def saved_bytes(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[int, int]:
    """(bytes of every tensor packed for backward, bytes of the distinct storages among them)."""
    total, storages = 0, {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total, sum(storages.values())


def elementwise_rows(numel: int, rounds: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(numel, generator=gen).requires_grad_(True)
    g = torch.randn(numel, generator=gen)
    naive_mish = lambda t: t * torch.tanh(F.softplus(t))  # noqa: E731
    times = time_alternating(
        {
            "F.mish": fwd_bwd(F.mish, x, g),
            "MishFunction": fwd_bwd(MishFunction.apply, x, g),
            "mish explicit": fwd_bwd(_MishExplicit.apply, x, g),
            "mish naive": fwd_bwd(naive_mish, x, g),
            "F.silu": fwd_bwd(F.silu, x, g),
            "SwishFunction": fwd_bwd(SwishFunction.apply, x, g),
            "swish explicit": fwd_bwd(_SwishExplicit.apply, x, g),
        },
        rounds,
    )
    ms = {k: v * 1e3 for k, v in times.items()}
    m = f"{numel / 1e6:g}M fp32"
    rows = [
        dict(name=f"MishFunction fwd+bwd {m} (ms)", value=ms["MishFunction"], reference=ms["F.mish"],
             ratio=ms["MishFunction"] / ms["F.mish"], target="<= 1.3"),
        dict(name=f"Mish explicit-formula Function fwd+bwd (ms)", value=ms["mish explicit"], reference=ms["F.mish"],
             ratio=ms["mish explicit"] / ms["F.mish"], target="info"),
        dict(name=f"x*tanh(softplus(x)) autograd fwd+bwd (ms)", value=ms["mish naive"], reference=ms["F.mish"],
             ratio=ms["mish naive"] / ms["F.mish"], target="info"),
        dict(name=f"SwishFunction fwd+bwd {m} (ms)", value=ms["SwishFunction"], reference=ms["F.silu"],
             ratio=ms["SwishFunction"] / ms["F.silu"], target="<= 1.3"),
        dict(name=f"Swish explicit-formula Function fwd+bwd (ms)", value=ms["swish explicit"], reference=ms["F.silu"],
             ratio=ms["swish explicit"] / ms["F.silu"], target="info"),
    ]
    ours_total, ours_distinct = saved_bytes(MishFunction.apply, x)
    naive_total, naive_distinct = saved_bytes(naive_mish, x)
    rows += [
        dict(name="saved bytes, MishFunction vs naive (MB, every packed tensor)", value=ours_total / 1e6,
             reference=naive_total / 1e6, ratio=ours_total / naive_total, target="<= 0.333"),
        dict(name="saved bytes, MishFunction vs naive (MB, distinct storages)", value=ours_distinct / 1e6,
             reference=naive_distinct / 1e6, ratio=ours_distinct / naive_distinct, target="info"),
    ]
    return rows


def vit_rows(batch: int, rounds: int, steps_per_round: int) -> list[dict]:
    images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(1))
    steps = {}
    for act in ("gelu", "mish", "mish_memory_efficient"):
        torch.manual_seed(0)
        model = vitlab.create_model("vit_tiny_patch4_32", act=act, num_classes=10)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer) -> None:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[act] = step
    times = time_alternating(steps, rounds, steps_per_round)
    throughput = {k: batch / v for k, v in times.items()}
    return [
        dict(name=f"ViT-tiny train step, act={act} (img/s, batch {batch})", value=throughput[act],
             reference=throughput["gelu"], ratio=throughput[act] / throughput["gelu"], target=">= 0.95")
        for act in ("mish", "mish_memory_efficient")
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=4_000_000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--vit-steps", type=int, default=1, help="training steps per timed round")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = elementwise_rows(args.numel, args.rounds)
    rows += vit_rows(args.batch, args.rounds, args.vit_steps)
    print_table(rows)


if __name__ == "__main__":
    main()
