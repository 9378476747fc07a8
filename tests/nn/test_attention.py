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


# --- MultiHeadAttention (separate q / k / v projections), masks and the key/value cache -----------------
# Reference: torch.nn.MultiheadAttention with the same weights.

from torch import nn  # noqa: E402

from vitlab.nn.attention import KVCache, MultiHeadAttention, causal_mask, padding_mask  # noqa: E402


def mha_pair(dim=16, heads=4, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    mine = MultiHeadAttention(dim, heads).eval()
    wq, wk, wv = ref.in_proj_weight.detach().chunk(3)
    bq, bk, bv = ref.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for lin, w, b in ((mine.q_proj, wq, bq), (mine.k_proj, wk, bk), (mine.v_proj, wv, bv)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        mine.out_proj.load_state_dict(ref.out_proj.state_dict())
    return mine, ref


def test_cross_attention_with_key_padding_matches_torch_multihead_attention():
    mine, ref = mha_pair()
    g = torch.Generator().manual_seed(0)
    query, memory = torch.randn(3, 5, 16, generator=g), torch.randn(3, 7, 16, generator=g)
    pad = torch.arange(7)[None, :] >= torch.tensor([7, 2, 4])[:, None]  # True = padding
    expected, expected_w = ref(query, memory, memory, key_padding_mask=pad, average_attn_weights=False)
    got = mine(query, memory, attn_mask=padding_mask(pad))
    got_manual, weights = mine(query, memory, attn_mask=padding_mask(pad), need_weights=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_manual, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights, expected_w, rtol=1e-5, atol=1e-6)


def test_causal_self_attention_matches_torch_with_a_causal_mask():
    mine, ref = mha_pair(seed=1)
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(1))
    torch_mask = torch.ones(6, 6, dtype=torch.bool).triu(1)  # torch: True = may not attend
    expected, _ = ref(x, x, x, attn_mask=torch_mask)
    torch.testing.assert_close(mine(x, attn_mask=causal_mask(6)), expected, rtol=1e-5, atol=1e-5)


def test_causal_mask_is_aligned_to_the_last_queries():
    full = torch.tril(torch.ones(5, 5, dtype=torch.bool))
    assert torch.equal(causal_mask(5), full)
    assert torch.equal(causal_mask(2, 5), full[3:])  # 3 positions cached, 2 new queries
    assert causal_mask(1, 4).all()


def test_kv_cache_step_by_step_equals_full_causal_attention():
    mine, _ = mha_pair(seed=2)
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(2))
    full = mine(x, attn_mask=causal_mask(6))
    cache = KVCache()
    steps = [mine(x[:, t : t + 1], cache=cache) for t in range(6)]
    assert len(cache) == 6
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-6)


def test_static_cache_computes_memory_keys_once_and_reorder_selects_rows():
    mine, _ = mha_pair(seed=3)
    g = torch.Generator().manual_seed(3)
    query, memory = torch.randn(3, 1, 16, generator=g), torch.randn(3, 4, 16, generator=g)
    cache = KVCache(static=True)
    first = mine(query, memory, cache=cache)
    again = mine(query, torch.zeros_like(memory), cache=cache)  # memory not re-read: cached keys/values used
    torch.testing.assert_close(again, first)
    assert len(cache) == 4
    cache.reorder(torch.tensor([2, 2, 0]))
    torch.testing.assert_close(mine(query[[2, 2, 0]], None, cache=cache), first[[2, 2, 0]], rtol=1e-6, atol=1e-6)


def test_multihead_attention_heads_must_divide_dim():
    with pytest.raises(ValueError, match="not divisible by num_heads 5"):
        MultiHeadAttention(12, 5)
