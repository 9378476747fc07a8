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


def head_width(dim: int, num_heads: int) -> int:
    """D / h, the width of one head; raises ``ValueError`` when ``num_heads`` does not divide ``dim``."""
    if dim % num_heads != 0:
        raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}; choose num_heads dividing {dim}")
    return dim // num_heads


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
        self.num_heads = num_heads
        self.head_dim = head_width(dim, num_heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Project ``x: (B, N, D)`` to q, k, v, each (B, h, N, D/h)."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.num_heads, self.head_dim)
        # unbind along the "3" axis, then swap N and h: the same strided views as permute(2, 0, 3, 1, 4), but
        # the backward of unbind(2) stacks the three gradients straight into the (B, N, 3, h, D/h) layout of
        # the qkv output, where permute's backward needed one more copy of it per block (CPU: ~9% off the
        # attention layer's forward + backward at ViT-Ti shapes; benchmarks/bench_vit.py).
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
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


# ---------------------------------------------------------------------------------------------
# Attention with separate query and key/value inputs (the Transformer's encoder-decoder attention,
# Sec. 3.2.3), padding and causal masks, and a key/value cache for incremental decoding.


def padding_mask(key_padding: Tensor) -> Tensor:
    """Boolean attend-mask (True = attend) from a key padding mask (True = padding).

    Args:
        key_padding: (B, N_k) boolean, True where the key is a padding token.

    Returns:
        (B, 1, 1, N_k) boolean mask, broadcastable to (B, h, N_q, N_k).
    """
    return (~key_padding)[:, None, None, :]


def causal_mask(num_queries: int, num_keys: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Boolean attend-mask that lets query i see keys 0 .. i + (N_k − N_q) (Sec. 3.2.3, "masking out").

    The queries are the last ``num_queries`` positions of a sequence of ``num_keys`` positions, so with a
    key/value cache holding the earlier positions the mask stays aligned to the bottom-right corner
    (``is_causal=True`` of SDPA aligns it to the top-left, which is only right when N_q = N_k).

    Returns:
        (N_q, N_k) boolean, broadcastable to (B, h, N_q, N_k).
    """
    num_keys = num_queries if num_keys is None else num_keys
    q_pos = torch.arange(num_keys - num_queries, num_keys, device=device)
    k_pos = torch.arange(num_keys, device=device)
    return k_pos[None, :] <= q_pos[:, None]


class KVCache:
    """Keys and values of the positions already decoded, per layer, for incremental decoding.

    Self-attention appends one step's keys/values (``append``); encoder-decoder attention computes the
    memory's keys/values once (``static=True``: the first ``append`` stores them, later calls reuse them).
    Beam search reorders the cached hypotheses with :meth:`reorder`.

    Attributes:
        k, v: (B, h, T, d_k) cached keys and values, or None while empty.
    """

    def __init__(self, static: bool = False) -> None:
        self.static = static
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else int(self.k.shape[2])

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add (B, h, T_new, d_k) keys/values along the time axis; returns all cached keys/values."""
        if self.k is None or self.v is None:
            self.k, self.v = k, v
        elif not self.static:
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` (B',) of the batch (beam search: each new hypothesis's parent)."""
        if self.k is not None and self.v is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key and value projections (Vaswani et al. Sec. 3.2.2).

        MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W_O,  head_i = Attention(Q W_Qi, K W_Ki, V W_Vi)

    Used as self-attention (``key_value=None``) and as encoder-decoder attention (queries from the
    decoder, keys and values from the encoder output). Weights are ``q_proj``, ``k_proj``, ``v_proj``
    and ``out_proj``, each ``Linear(D, D)`` with bias.

    Args:
        dim: model width D; must be divisible by ``num_heads``.
        num_heads: h.
        attn_drop: dropout on the attention weights.
        bias: whether the projections have biases.
    """

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_width(dim, num_heads)
        self.attn_drop = attn_drop
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _heads(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, h, N, D/h)."""
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key_value: Tensor | None = None,
        attn_mask: Tensor | None = None,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from ``query`` to ``key_value`` (or to ``query`` itself).

        Args:
            query: (B, N_q, D).
            key_value: (B, N_k, D) keys/values source; None for self-attention. With a static cache that
                is already filled it is not read.
            attn_mask: boolean (True = attend) or additive float mask broadcastable to (B, h, N_q, N_k),
                where N_k counts cached positions too (see :func:`padding_mask`, :func:`causal_mask`).
            cache: optional :class:`KVCache`; this call's keys/values are appended to it and attention
                runs over everything cached.
            need_weights: take the manual path and also return the (B, h, N_q, N_k) weights.

        Returns:
            (B, N_q, D), or ((B, N_q, D), (B, h, N_q, N_k)) when ``need_weights``.
        """
        batch, tokens, dim = query.shape
        q = self._heads(self.q_proj(query))
        if cache is not None and cache.static and cache.k is not None and cache.v is not None:
            k, v = cache.k, cache.v
        else:
            source = query if key_value is None else key_value
            k, v = self._heads(self.k_proj(source)), self._heads(self.v_proj(source))
            if cache is not None:
                k, v = cache.append(k, v)
        dropout_p = self.attn_drop if self.training else 0.0
        weights = None
        if need_weights:
            weights = attention_weights(q, k, attn_mask)
            out = F.dropout(weights, dropout_p, training=self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, tokens, dim))
        return (out, weights) if need_weights else out
