"""Tests of vitlab.nn.attention against the formula softmax(QKᵀ/√d_k)V written out here and against
PyTorch's fused ``F.scaled_dot_product_attention``."""

import math

import pytest
import torch

from vitlab.nn.attention import Attention, attention_weights


def reference_attention(x, module, mask=None):
    """Eq. 1 of Vaswani et al. 2017 written out with explicit loops over heads (the independent reference)."""
    batch, tokens, dim = x.shape
    heads = module.num_heads
    head_dim = dim // heads
    qkv = x @ module.qkv.weight.T + (module.qkv.bias if module.qkv.bias is not None else 0)
    q_all, k_all, v_all = qkv.split(dim, dim=-1)
    outs, weights = [], []
    for h in range(heads):
        sl = slice(h * head_dim, (h + 1) * head_dim)
        scores = q_all[..., sl] @ k_all[..., sl].transpose(-2, -1) / math.sqrt(head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores, dim=-1)
        weights.append(w)
        outs.append(w @ v_all[..., sl])
    out = torch.cat(outs, dim=-1) @ module.proj.weight.T + module.proj.bias
    return out, torch.stack(weights, dim=1)


@pytest.mark.parametrize("qkv_bias", [True, False])
@pytest.mark.parametrize("heads", [1, 3, 4])
def test_fused_and_manual_paths_match_written_out_formula(qkv_bias, heads):
    torch.manual_seed(0)
    module = Attention(12, heads, qkv_bias=qkv_bias).double().eval()
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    fused = module(x)
    manual, weights = module(x, need_weights=True)
    expected, expected_weights = reference_attention(x, module)
    torch.testing.assert_close(fused, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(manual, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-10, atol=1e-10)


def test_fused_and_manual_paths_agree_in_float32_with_a_boolean_mask():
    """The scale bug class of timm #2385: both paths must use the same 1/√d_k and mask semantics."""
    torch.manual_seed(1)
    module = Attention(32, 4).eval()
    x = torch.randn(3, 9, 32)
    mask = torch.rand(3, 1, 9, 9) > 0.3
    mask |= torch.eye(9, dtype=torch.bool)  # every query sees at least itself
    fused = module(x, attn_mask=mask)
    manual, weights = module(x, attn_mask=mask, need_weights=True)
    torch.testing.assert_close(fused, manual, rtol=1e-5, atol=1e-6)
    assert torch.all(weights.masked_select(~mask.expand_as(weights)) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 9))


def test_additive_float_mask_equals_boolean_mask():
    torch.manual_seed(2)
    q, k = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    mask = torch.tril(torch.ones(5, 5, dtype=torch.bool))
    additive = torch.zeros(5, 5).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(attention_weights(q, k, mask), attention_weights(q, k, additive))


def test_heads_must_divide_dim():
    with pytest.raises(ValueError, match="not divisible by num_heads 5"):
        Attention(12, 5)
