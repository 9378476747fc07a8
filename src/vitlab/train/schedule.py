"""Learning-rate schedules as multipliers of the peak rate, for ``torch.optim.lr_scheduler.LambdaLR``.

Linear warm-up then cosine decay (Loshchilov & Hutter 2017, SGDR eq. 5 without restarts; the ViT and DeiT
recipes), for optimizer step ``t`` (counted from 0), ``W`` warm-up steps and ``T`` steps in all:

    lr(t) = lr_peak · (t + 1) / W                                            for t < W
    lr(t) = lr_min + ½ (lr_peak − lr_min) (1 + cos(π (t − W) / (T − W)))      for W ≤ t < T

so the first step already uses a small non-zero rate and the last one ends near ``lr_min``.
"""

from __future__ import annotations

import math


class WarmupCosine:
    """``lr(t) / lr_peak`` of the schedule above (a picklable callable, so ``LambdaLR`` can save it)."""

    def __init__(self, total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if peak_lr <= 0:
            raise ValueError(f"peak_lr must be > 0, got {peak_lr}")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(min(max(warmup_steps, 0), total_steps))
        self.min_ratio = float(min_lr) / float(peak_lr)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_ratio + 0.5 * (1.0 - self.min_ratio) * (1.0 + math.cos(math.pi * progress))
