"""Tests of the CNN baseline (vitlab.models.resnet).

References: a functional re-implementation of the paper's basic block with ``F.conv2d`` /
``F.batch_norm`` written in the test (float64), and the parameter count of the 6n+2-layer network
computed by hand from He et al. 2016 §4.2 (option B projections where the shape changes).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitlab.errors import ConfigError
from vitlab.models import create_model, list_models
from vitlab.models.resnet import ResNet


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)


def _reference_forward(model: ResNet, x: torch.Tensor) -> torch.Tensor:
    stem_conv, stem_bn = model.stem[0], model.stem[1]
    h = F.relu(_bn(F.conv2d(x, stem_conv.weight, padding=1), stem_bn))
    for stage in model.stages:
        for block in stage:
            stride = block.conv1.stride[0]
            y = F.relu(_bn(F.conv2d(h, block.conv1.weight, stride=stride, padding=1), block.bn1))
            y = _bn(F.conv2d(y, block.conv2.weight, padding=1), block.bn2)
            short = h if isinstance(block.shortcut, torch.nn.Identity) else _bn(F.conv2d(h, block.shortcut[0].weight, stride=stride), block.shortcut[1])
            h = F.relu(y + short)
    return h.mean(dim=(2, 3)) @ model.head.weight.T + model.head.bias


@pytest.mark.parametrize("name,size,chans", [("resnet8", 28, 1), ("resnet20", 32, 3), ("resnet8", (20, 36), 3)])
def test_forward_matches_a_functional_reference_in_float64(name, size, chans) -> None:
    torch.manual_seed(0)
    model = create_model(name, img_size=size, in_chans=chans, num_classes=7).double()
    # Random BN statistics and scales so that every term (including the zero-initialised bn2) matters.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(3, chans, h, w, dtype=torch.float64)
    torch.testing.assert_close(model(x), _reference_forward(model, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)), rtol=0, atol=0)


def test_parameter_count_is_the_papers_6n_plus_2_network_with_projection_shortcuts() -> None:
    def conv(cin, cout, k):
        return cin * cout * k * k

    def bn(c):
        return 2 * c

    n, widths, chans, classes = 3, (16, 32, 64), 3, 10
    total = conv(chans, 16, 3) + bn(16)
    cin = 16
    for stage, cout in enumerate(widths):
        for i in range(n):
            total += conv(cin if i == 0 else cout, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout)
            if i == 0 and stage > 0:
                total += conv(cin, cout, 1) + bn(cout)
        cin = cout
    total += 64 * classes + classes
    model = create_model("resnet20", img_size=32, in_chans=3, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == total
    assert 0.26e6 < total < 0.28e6  # "0.27M" in the paper's Table 6 (ResNet-20)


def test_uniform_api_features_pre_logits_and_headless_model() -> None:
    model = create_model("resnet8", img_size=28, in_chans=1, num_classes=10).eval()
    x = torch.randn(2, 1, 28, 28)
    features = model.forward_features(x)
    assert features.shape == (2, 64, 7, 7)
    assert model.forward_head(features, pre_logits=True).shape == (2, 64)
    assert model(x).shape == (2, 10)
    headless = create_model("resnet8", img_size=28, in_chans=1, num_classes=0).eval()
    assert headless(x).shape == (2, 64)
    assert model.no_weight_decay() == set()


def test_each_residual_block_starts_as_the_identity_branch() -> None:
    # bn2 starts at zero (Goyal et al. 2017): a block's output is act(shortcut(x)) at initialisation.
    model = create_model("resnet8", img_size=16, in_chans=3, num_classes=10).eval()
    block = model.stages[0][0]
    x = torch.randn(2, 16, 16, 16)
    torch.testing.assert_close(block(x), F.relu(x))


def test_the_last_bn_of_each_residual_branch_starts_at_zero_and_its_convolutions_train_after_one_step() -> None:
    # Goyal et al. 2017 (§5.1, "zero γ"): the LAST BatchNorm of each residual branch starts with γ = 0, every other
    # BN with γ = 1. The identity-at-init test above holds whichever BN of the branch is zeroed, so this test
    # checks the placement and its consequence, derived by hand with the chain rule:
    # * last BN zero: at step 1 the branch's output is γ2·x̂ + β2 with γ2 = 0, so both convolutions get exactly zero
    #   gradient while γ2 gets a non-zero one (∂L/∂γ2 = Σ ∂L/∂y·x̂); after one optimizer step γ2 ≠ 0 and at step 2
    #   both convolutions receive non-zero gradients: the branch trains.
    # * first BN zero instead: bn1 outputs β1 = 0, ReLU(0) = 0 with ReLU'(0) = 0, so conv2 sees zeros, bn2
    #   normalises a constant to 0 (γ2 gets zero gradient) and neither conv, nor γ1, β1, γ2, ever gets a gradient:
    #   the branch stays dead after any number of steps.
    # Fails if _init_weights zeroes bn1 instead of bn2 (placement asserts, and the step-2 gradients are zero).
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("resnet8", img_size=8, in_chans=3, num_classes=4).train()
        x, y = torch.randn(8, 3, 8, 8), torch.arange(8) % 4
    blocks = [block for stage in model.stages for block in stage]
    assert len(blocks) == 3
    for block in blocks:
        assert torch.equal(block.bn2.weight, torch.zeros_like(block.bn2.weight))
        assert torch.equal(block.bn1.weight, torch.ones_like(block.bn1.weight))
        if not isinstance(block.shortcut, torch.nn.Identity):
            assert torch.equal(block.shortcut[1].weight, torch.ones_like(block.shortcut[1].weight))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    F.cross_entropy(model(x), y).backward()
    for block in blocks:  # step 1: only the last BN's scale of the branch learns
        assert not block.conv1.weight.grad.any() and not block.conv2.weight.grad.any()
        assert block.bn2.weight.grad.abs().sum() > 0
    optimizer.step()
    optimizer.zero_grad()

    F.cross_entropy(model(x), y).backward()
    for block in blocks:  # step 2: the residual branch's convolutions train
        assert block.conv1.weight.grad.abs().sum() > 0 and block.conv2.weight.grad.abs().sum() > 0


def test_registered_beside_the_vits_and_accepts_an_activation() -> None:
    assert {"resnet8", "resnet20"} <= set(list_models("resnet*"))
    model = create_model("resnet8", img_size=28, in_chans=1, num_classes=10, act="mish")
    assert any(type(m).__name__ == "Mish" for m in model.modules())


@pytest.mark.parametrize("kwargs,match", [
    ({"img_size": 2}, "at least 4"),
    ({"blocks_per_stage": 0}, "blocks_per_stage"),
    ({"act": "nope"}, "activation"),
])
def test_bad_settings_are_one_line_config_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        create_model("resnet8", **kwargs)
    assert "\n" not in str(info.value)


def test_wrong_input_rank_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\)"):
        create_model("resnet8")(torch.randn(3, 32, 32))
