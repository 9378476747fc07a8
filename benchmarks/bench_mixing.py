"""Mixup / CutMix / Cutout speed: vitlab's vectorised modes against timm's ``Mixup``, and mixing's cost as a
fraction of a ViT-tiny training step, all measured in one run.

    python -m benchmarks.bench_mixing [--batch 256] [--rounds 15] [--device cpu|cuda] [--train-steps 2] [--threads N]

Setting: a (B, 3, 32, 32) float32 batch, 10 classes, Mixup alpha 0.8, CutMix alpha 1.0, switch_prob 0.5,
prob 1.0, label smoothing 0.1 (timm's DeiT recipe), in both libraries. timm's ``elem`` and ``pair`` modes
loop over the samples in Python; vitlab's compute a per-pixel weight map for the whole batch and one
``lerp``. The candidates are timed in alternating rounds (so a change in machine load hits all alike);
each figure is the median over rounds of the mean time per call (images and soft targets, including
vitlab's argument checks). timm mixes its input in place, vitlab never does; timm is given the same
tensor every call (the values drift, the work does not).

The training step is forward + cross-entropy on soft targets + backward + AdamW on
``vitlab.create_model('vit_tiny_patch4_32')`` at the same batch; its median over a few steps is the
denominator of the "cost as a fraction of a step" rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import vitlab
from vitlab.losses import SoftTargetCrossEntropy
from vitlab.mixing import Mixer

NUM_CLASSES = 10
SETTINGS = dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0, label_smoothing=0.1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_alternating(
    calls: dict[str, Callable[[], object]], rounds: int, calls_per_round: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each named function, timed in alternating rounds after a warm-up."""
    for call in calls.values():
        for _ in range(3):
            call()
    _sync(device)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        order = list(calls.items())
        if r % 2:  # alternate the order too, so neither always runs right after the other
            order.reverse()
        for name, call in order:
            _sync(device)
            start = time.perf_counter()
            for _ in range(calls_per_round):
                call()
            _sync(device)
            samples[name].append((time.perf_counter() - start) / calls_per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def mixing_calls(images: torch.Tensor, labels: torch.Tensor) -> dict[str, Callable[[], object]]:
    """vitlab and timm mixers for each mode, as zero-argument calls on the fixed batch."""
    from timm.data import Mixup

    device = images.device
    calls: dict[str, Callable[[], object]] = {}
    for mode in ("elem", "pair", "batch"):
        generator = torch.Generator(device=device).manual_seed(0)
        ours = Mixer(NUM_CLASSES, mode=mode, generator=generator, **SETTINGS)
        theirs = Mixup(
            mixup_alpha=SETTINGS["mixup_alpha"],
            cutmix_alpha=SETTINGS["cutmix_alpha"],
            switch_prob=SETTINGS["switch_prob"],
            prob=SETTINGS["prob"],
            label_smoothing=SETTINGS["label_smoothing"],
            mode=mode,
            num_classes=NUM_CLASSES,
        )
        timm_input = images.clone()
        calls[f"vitlab {mode}"] = lambda m=ours: m(images, labels)
        calls[f"timm {mode}"] = lambda m=theirs, x=timm_input: m(x, labels)
    cutout = Mixer(NUM_CLASSES, mode="elem", cutout_size=8, generator=torch.Generator(device=device).manual_seed(1),
                   **SETTINGS)
    calls["vitlab elem + cutout"] = lambda: cutout(images, labels)
    return calls


def train_step_seconds(images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """Median seconds of a ViT-tiny training step (forward, soft-target CE, backward, AdamW) on the batch."""
    torch.manual_seed(0)
    model = vitlab.create_model("vit_tiny_patch4_32", num_classes=NUM_CLASSES).to(images.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = SoftTargetCrossEntropy()
    mixer = Mixer(NUM_CLASSES, mode="elem", generator=torch.Generator(device=images.device).manual_seed(2), **SETTINGS)
    mixed, soft = mixer(images, labels)

    def step() -> None:
        loss = loss_fn(model(mixed), soft)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return time_alternating({"step": step}, rounds=steps, calls_per_round=1, device=images.device)["step"]


def run(batch: int = 256, rounds: int = 15, calls_per_round: int = 10, device: str = "cpu", train_steps: int = 2) -> list[dict]:
    """Rows: elem/pair/batch speed-ups over timm (ratio = timm time / vitlab time) and cost per training step."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, 32, 32, generator=g).to(dev)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(dev)
    times = time_alternating(mixing_calls(images, labels), rounds, calls_per_round, dev)
    rows = []
    for mode in ("elem", "pair", "batch"):
        ours, theirs = times[f"vitlab {mode}"], times[f"timm {mode}"]
        rows.append(
            dict(
                name=f"{mode} mode, batch {batch}, 3x32x32, {dev.type} (ms per call)",
                value=ours * 1e3,
                reference=theirs * 1e3,
                ratio=theirs / ours,
                target="vitlab >= 20x faster than timm" if mode == "elem" else "report",
            )
        )
    if train_steps > 0:
        step = train_step_seconds(images, labels, train_steps)
        for name in ("vitlab elem", "vitlab pair", "vitlab batch", "vitlab elem + cutout"):
            rows.append(
                dict(
                    name=f"{name[7:]} cost / ViT-Ti/4 train step, batch {batch}, {dev.type} (ms)",
                    value=times[name] * 1e3,
                    reference=step * 1e3,
                    ratio=times[name] / step,
                    target="< 0.02",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10, help="calls per round")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-steps", type=int, default=2, help="timed ViT steps (0 skips the step rows)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 keeps PyTorch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = run(args.batch, args.rounds, args.calls, args.device, args.train_steps)
    from benchmarks.report import print_table

    print_table(rows)


if __name__ == "__main__":
    main()
