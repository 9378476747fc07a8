"""Multi-head scaled dot-product attention (Vaswani et al. 2017, Sec. 3.2).

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V                                         (eq. 1)
    MultiHead(X) = Concat(head_1, ..., head_h) W_O,  head_i = Attention(X W_Qi, X W_Ki, X W_Vi)

The three input projections are one fused ``Linear(dim, 3·dim)`` (``qkv``), as in ViT. The default path
calls :func:`torch.nn.functional.scaled_dot_product_attention`, which picks a fused kernel (flash or
memory-efficient) when one applies. The manual path computes eq. 1 step by step so that it can return
the attention weights (for attention maps and rollout); both paths use the same scale 1/√d_k, and a test
checks that they agree.

Masks follow ``scaled_dot_product_attention``: a boolean mask is True where a query may attend to a key;
a float mask is added to the scores. Either broadcasts to (B, heads, N_q, N_k).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attention_weights(q: Tensor, k: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """softmax(q kᵀ / √d_k) with an optional mask, the weights of eq. 1.

    Args:
        q: (B, H, N_q, d_k) queries.
        k: (B, H, N_k, d_k) keys.
        attn_mask: boolean (True = attend) or additive float mask broadcastable to (B, H, N_q, N_k).

    Returns:
        (B, H, N_q, N_k) weights; each row sums to 1 (rows with every key masked are NaN, as in SDPA).
    """
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return scores.softmax(dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection.

    Args:
        dim: model width D; must be divisible by ``num_heads``.
        num_heads: number of heads h; each head has width D / h.
        qkv_bias: whether the qkv projection has a bias (ViT: yes).
        attn_drop: dropout on the attention weights.
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(
                f"embed dim {dim} is not divisible by num_heads {num_heads}; choose num_heads dividing {dim}"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Project ``x: (B, N, D)`` to q, k, v, each (B, h, N, D/h)."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Self-attention over the tokens of ``x``.

        Args:
            x: (B, N, D) tokens.
            attn_mask: optional mask broadcastable to (B, h, N, N) (see module docstring).
            need_weights: take the manual path and also return the (B, h, N, N) attention weights.

        Returns:
            (B, N, D), or ((B, N, D), (B, h, N, N)) when ``need_weights``.
        """
        batch, tokens, dim = x.shape
        q, k, v = self.split_heads(x)
        dropout_p = self.attn_drop if self.training else 0.0
        weights = None
        if need_weights:
            weights = attention_weights(q, k, attn_mask)
            out = F.dropout(weights, dropout_p, training=self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        out = out.transpose(1, 2).reshape(batch, tokens, dim)
        out = self.proj_drop(self.proj(out))
        return (out, weights) if need_weights else out
