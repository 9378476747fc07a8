"""Tests of vitlab.train.ema against the recurrence θ_ema ← d θ_ema + (1 − d) θ unrolled by hand.

References: the paper formula (Polyak & Juditsky 1992) computed step by step in float64; and the hand-written
EMA vitlab used before it moved onto torch.optim.swa_utils.AveragedModel (one ``torch._foreach_lerp_`` over the
floating-point state-dict entries, integer buffers copied), reimplemented here, which the new one must match
bit for bit so that runs started before the change resume to the same weights.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from vitlab.train.ema import WeightEma


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))


def _train_step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    model(torch.randn(8, 5)).square().mean().backward()  # train mode: BatchNorm's running stats and counter move
    opt.step()
    opt.zero_grad(set_to_none=True)


class _HandWrittenEma:
    """vitlab's EMA before AveragedModel: the reference for bit-exact equality."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        state = model.state_dict()
        floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.shadow[k] for k in floats], [state[k].detach() for k in floats], 1.0 - self.decay)
        for key, value in self.shadow.items():
            if not value.is_floating_point():
                value.copy_(state[key])


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


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_ema_is_the_paper_formula_on_every_parameter_and_float_buffer(decay: float) -> None:
    """ema_0 = θ_0 (the weights at construction), ema_t = d · ema_{t−1} + (1 − d) · θ_t, in float64 by hand."""
    torch.manual_seed(1)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ema = WeightEma(model, decay=decay)
    expected = {k: v.detach().double().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    for _ in range(7):
        _train_step(model, opt)
        ema.update(model)
        state = model.state_dict()
        expected = {k: decay * v + (1.0 - decay) * state[k].double() for k, v in expected.items()}
    got = ema.state_dict()
    assert set(got) == set(model.state_dict())
    for key, value in expected.items():
        assert got[key].dtype == torch.float32
        torch.testing.assert_close(got[key].double(), value, rtol=1e-6, atol=1e-6, msg=key)
    assert torch.equal(got["1.num_batches_tracked"], model.state_dict()["1.num_batches_tracked"])
    assert int(got["1.num_batches_tracked"]) == 7


def test_ema_equals_the_former_hand_written_one_bit_for_bit() -> None:
    torch.manual_seed(2)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    ema, reference = WeightEma(model, decay=0.9), _HandWrittenEma(model, decay=0.9)
    for _ in range(6):
        _train_step(model, opt)
        ema.update(model)
        reference.update(model)
        got = ema.state_dict()
        assert list(got) == list(reference.shadow)
        for key, value in reference.shadow.items():
            assert torch.equal(got[key], value), key


def test_ema_does_not_follow_the_model_it_was_built_from() -> None:
    model = nn.Linear(2, 2)
    ema = WeightEma(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    assert all(torch.equal(ema.state_dict()[k], v) for k, v in before.items())


def test_ema_state_dict_saves_loads_and_resumes_to_the_same_weights(tmp_path) -> None:
    """The saved entry is a plain name -> tensor dict in the model's names (the checkpoint's ``ema`` format):
    it loads with weights_only=True, into the model itself, and into a fresh EMA that then continues exactly."""
    torch.manual_seed(3)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    ema = WeightEma(model, decay=0.8)
    for _ in range(3):
        _train_step(model, opt)
        ema.update(model)
    saved = ema.state_dict()
    assert type(saved) is dict and list(saved) == list(model.state_dict())
    assert all(isinstance(v, Tensor) for v in saved.values())
    torch.save({"ema": saved}, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)["ema"]

    torch.manual_seed(99)
    other = _model()  # different initial weights: everything must come from the file
    resumed = WeightEma(other, decay=0.8)
    resumed.load_state_dict(loaded)
    for key, value in saved.items():
        assert torch.equal(resumed.state_dict()[key], value), key
    evaluated = _model()
    evaluated.load_state_dict(loaded)  # strict: same keys and shapes as the model

    for _ in range(3):
        _train_step(model, opt)
        ema.update(model)
        resumed.update(model)
    for key, value in ema.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_ema_loads_a_state_dict_written_by_the_former_hand_written_ema() -> None:
    torch.manual_seed(4)
    model = _model()
    old = _HandWrittenEma(model, decay=0.9)
    _train_step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    old.update(model)
    ema = WeightEma(_model(), decay=0.9)
    ema.load_state_dict(old.shadow)
    assert all(torch.equal(ema.state_dict()[k], v) for k, v in old.shadow.items())


def test_ema_decay_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="EMA decay"):
        WeightEma(nn.Linear(2, 2), decay=1.0)
    with pytest.raises(ValueError, match="EMA decay"):
        WeightEma(nn.Linear(2, 2), decay=-0.1)
