"""Mish / Swish speed and memory against PyTorch's built-ins, and a ViT-tiny training step with Mish against
GELU, all measured in one run (ratios, so that the load of a shared machine cancels).

    python -m benchmarks.bench_activations [--numel 4000000] [--batch 4] [--rounds 11] [--vit-steps 1] [--threads N]

Rows:
* fwd+bwd time of 4M float32 elements: vitlab's MishFunction / SwishFunction against F.mish / F.silu
  (target ≤ 1.3×), plus, for information, an all-Python Function that evaluates the explicit formula
  in backward and the naive autograd composition x·tanh(softplus(x)).
* saved-activation bytes, as seen by ``torch.autograd.graph.saved_tensors_hooks`` (every packed tensor
  counted, as autograd stores one reference per saved input/output), MishFunction against the naive
  composition (target ≤ 1/3); and the same counting each distinct storage once, for information.
* ViT-tiny (vit_tiny_patch4_32) training step (forward + cross-entropy + backward + AdamW) with
  ``act='mish'`` (and ``'mish_memory_efficient'``) against ``act='gelu'``: throughput ratio (target ≥ 0.95).

Candidates are timed in alternating rounds (order reversed every other round); times are medians over
rounds, ratios the median of the per-round ratios to the reference (robust to load drifting between rounds).
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
from vitlab.nn import get_activation
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


def time_alternating(
    candidates: dict[str, Callable[[], None]], rounds: int, repeats: int = 1
) -> tuple[dict[str, float], dict[str, float]]:
    """Time each candidate in alternating rounds (order reversed every other round), after one warm-up call.

    Returns:
        (median seconds per call of each candidate, median over rounds of each candidate's time divided by
        the first candidate's time in the same round). The per-round ratio cancels load that drifts
        between rounds on a shared machine.
    """
    for fn in candidates.values():
        fn()
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            for _ in range(repeats):
                candidates[name]()
            samples[name].append((time.perf_counter() - start) / repeats)
    first = samples[names[0]]
    medians = {name: statistics.median(v) for name, v in samples.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(v, first)) for name, v in samples.items()}
    return medians, ratios


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
    m = f"{numel / 1e6:g}M fp32"
    rows = []
    groups = {
        "mish": {
            "F.mish": F.mish,
            f"MishFunction fwd+bwd {m} (ms)": MishFunction.apply,
            "Mish explicit-formula Function fwd+bwd (ms)": _MishExplicit.apply,
            "x*tanh(softplus(x)) autograd fwd+bwd (ms)": naive_mish,
        },
        "swish": {
            "F.silu": F.silu,
            f"SwishFunction fwd+bwd {m} (ms)": SwishFunction.apply,
            "Swish explicit-formula Function fwd+bwd (ms)": _SwishExplicit.apply,
        },
    }
    for group in groups.values():
        medians, ratios = time_alternating({k: fwd_bwd(f, x, g) for k, f in group.items()}, rounds)
        reference = next(iter(group))
        for name in list(group)[1:]:
            target = "<= 1.3" if name.startswith(("MishFunction", "SwishFunction")) else "info"
            rows.append(dict(name=name, value=medians[name] * 1e3, reference=medians[reference] * 1e3,
                             ratio=ratios[name], target=target))
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
    rows = []
    # the activation alone, at the shape it has in ViT-tiny's MLP: (B·N, 4·192) with N = 8·8 + 1 tokens
    h = torch.randn(batch * 65, 768, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    gh = torch.randn(batch * 65, 768, generator=torch.Generator().manual_seed(3))
    acts = {name: get_activation(name) for name in ("gelu", "mish", "mish_memory_efficient")}
    medians, ratios = time_alternating({k: fwd_bwd(a, h, gh) for k, a in acts.items()}, rounds, repeats=20)
    for act in ("mish", "mish_memory_efficient"):
        rows.append(dict(name=f"MLP activation fwd+bwd at ViT-tiny shape, act={act} (ms)", value=medians[act] * 1e3,
                         reference=medians["gelu"] * 1e3, ratio=ratios[act], target="info"))
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
    medians, ratios = time_alternating(steps, rounds, steps_per_round)
    for act in ("mish", "mish_memory_efficient"):
        # throughput ratio = (gelu time) / (act time), taken per round
        rows.append(dict(name=f"ViT-tiny train step, act={act} (img/s, batch {batch})", value=batch / medians[act],
                         reference=batch / medians["gelu"], ratio=1 / ratios[act], target=">= 0.95"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=4_000_000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=11)
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
