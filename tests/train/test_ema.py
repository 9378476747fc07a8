"""Tests of vitlab.train.ema against the recurrence θ_ema ← d θ_ema + (1 − d) θ unrolled by hand."""

from __future__ import annotations

import torch
from torch import nn

from vitlab.train.ema import WeightEma


def test_ema_matches_the_unrolled_recurrence_and_copies_integer_buffers() -> None:
    torch.manual_seed(0)
    model = nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
    ema = WeightEma(model, decay=0.9)
    expected = model.weight.detach().clone()
    for step in range(1, 6):
        with torch.no_grad():
            model.weight.add_(1.0)
        model(torch.randn(4, 3))  # moves running stats and the integer num_batches_tracked
        ema.update(model)
        expected = 0.9 * expected + 0.1 * model.weight.detach()
        torch.testing.assert_close(ema.state_dict()["weight"], expected, rtol=0, atol=1e-6)
        assert int(ema.state_dict()["num_batches_tracked"]) == step


def test_ema_decay_out_of_range_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="EMA decay"):
        WeightEma(nn.Linear(2, 2), decay=1.0)
