"""Tests of vitlab.train.schedule against the warm-up + cosine formula written out here."""

from __future__ import annotations

import math

import pytest
import torch

from vitlab.train.schedule import WarmupCosine


def _formula(t: int, total: int, warmup: int, peak: float, low: float) -> float:
    if t < warmup:
        return peak * (t + 1) / warmup
    return low + 0.5 * (peak - low) * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))


@pytest.mark.parametrize(("total", "warmup"), [(100, 10), (50, 0), (7, 3)])
def test_lambda_lr_follows_the_formula_step_by_step(total: int, warmup: int) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total, warmup, 0.5, 0.01))
    for t in range(total):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(_formula(t, total, warmup, 0.5, 0.01), rel=1e-12)
        optimizer.step()
        scheduler.step()


def test_schedule_state_survives_a_checkpoint_roundtrip() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(20, 5, 1.0))
    for _ in range(8):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    other_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    other = torch.optim.lr_scheduler.LambdaLR(other_opt, WarmupCosine(20, 5, 1.0))
    other.load_state_dict(state)
    optimizer.step()
    scheduler.step()
    other_opt.step()
    other.step()
    assert other.get_last_lr() == scheduler.get_last_lr()
