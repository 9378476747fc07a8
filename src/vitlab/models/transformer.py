"""The encoder-decoder Transformer and its decoding (Vaswani et al. 2017, "Attention Is All You Need").

Architecture (Sec. 3.1, Fig. 1), with N encoder and N' decoder layers of width d_model:

    x_0   = Dropout(√d_model · Embed(src) + PE)                                     (Sec. 3.4, 3.5)
    x_l   = LayerNorm(x + Sublayer(x))     for Sublayer = self-attention, then FFN   (post-norm, Sec. 3.1)
    y_l   = LayerNorm(y + Sublayer(y))     for masked self-attention, encoder-decoder attention, FFN
    FFN(x) = max(0, x W_1 + b_1) W_2 + b_2                                          (eq. 2)
    logits = y_N' W_embᵀ  (tied with the target embedding, Sec. 3.4) or a separate Linear

Dropout is applied to each sub-layer's output before the residual add (Sec. 5.4). ``norm_first=True``
gives the pre-norm variant x + Sublayer(LayerNorm(x)) (Wang et al. 2019, "Learning Deep Transformer
Models"), which then needs a final LayerNorm after the last encoder and decoder layers; the post-norm
default has none, as in the paper.

Masks: source padding (the keys of encoder self-attention and of encoder-decoder attention), target
padding and the causal mask of decoder self-attention (Sec. 3.2.3), all boolean "True = attend" masks
given to SDPA (see :mod:`vitlab.nn.attention`).

Decoding (Sec. 6.1: "beam search with a beam size of 4 and length penalty α = 0.6"): :func:`greedy_decode`
and :func:`beam_search`, both incremental with a key/value cache (:class:`vitlab.nn.attention.KVCache`), both
batched over sources. The length penalty is GNMT's (Wu et al. 2016, eq. 14): lp(Y) = ((5 + |Y|) / 6)^α and a
hypothesis is scored log P(Y | X) / lp(Y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.errors import ConfigError
from vitlab.nn.attention import KVCache, MultiHeadAttention, causal_mask, padding_mask
from vitlab.nn.posenc import SinusoidalPositionalEncoding

__all__ = [
    "DecoderLayer",
    "DecodeState",
    "EncoderLayer",
    "Transformer",
    "beam_search",
    "greedy_decode",
    "length_penalty",
    "transformer_lr",
]


class FeedForward(nn.Module):
    """Position-wise feed-forward network, eq. 2: max(0, x W_1 + b_1) W_2 + b_2 (inner dropout as in torch)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, N, D) -> (B, N, D)."""
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """One encoder layer: self-attention and FFN sub-layers, each with residual, dropout and LayerNorm.

    Args:
        dim: d_model.
        num_heads: h.
        dim_ff: inner width of the FFN (d_ff).
        dropout: P_drop on sub-layer outputs, attention weights and the FFN's hidden layer.
        norm_first: pre-norm (True) or the paper's post-norm (False).
    """

    def __init__(self, dim: int, num_heads: int, dim_ff: int, dropout: float = 0.1, norm_first: bool = False) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(dim, num_heads, attn_drop=dropout)
        self.ff = FeedForward(dim, dim_ff, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x: (B, S, D); attn_mask: boolean, True = attend, broadcastable to (B, h, S, S). Returns (B, S, D)."""
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout1(self.self_attn(h, attn_mask=attn_mask))
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, attn_mask=attn_mask)))
        return self.norm2(x + self.dropout2(self.ff(x)))


class DecoderLayer(nn.Module):
    """One decoder layer: masked self-attention, encoder-decoder attention, FFN (Sec. 3.1).

    Args: as :class:`EncoderLayer`.
    """

    def __init__(self, dim: int, num_heads: int, dim_ff: int, dropout: float = 0.1, norm_first: bool = False) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(dim, num_heads, attn_drop=dropout)
        self.cross_attn = MultiHeadAttention(dim, num_heads, attn_drop=dropout)
        self.ff = FeedForward(dim, dim_ff, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        y: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        self_cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
    ) -> Tensor:
        """Decode.

        Args:
            y: (B, T, D) target positions (only the new ones when decoding with a cache).
            memory: (B, S, D) encoder output.
            self_mask: boolean (True = attend) broadcastable to (B, h, T, T_cached + T).
            memory_mask: boolean broadcastable to (B, h, T, S).
            self_cache: keys/values of earlier target positions (appended to).
            cross_cache: static keys/values of ``memory`` (computed on first use).

        Returns:
            (B, T, D).
        """
        if self.norm_first:
            h = self.norm1(y)
            y = y + self.dropout1(self.self_attn(h, attn_mask=self_mask, cache=self_cache))
            h = self.norm2(y)
            y = y + self.dropout2(self.cross_attn(h, memory, attn_mask=memory_mask, cache=cross_cache))
            return y + self.dropout3(self.ff(self.norm3(y)))
        y = self.norm1(y + self.dropout1(self.self_attn(y, attn_mask=self_mask, cache=self_cache)))
        y = self.norm2(y + self.dropout2(self.cross_attn(y, memory, attn_mask=memory_mask, cache=cross_cache)))
        return self.norm3(y + self.dropout3(self.ff(y)))


@dataclass
class DecodeState:
    """What incremental decoding keeps between steps.

    Attributes:
        memory: (B, S, D) encoder output.
        memory_mask: (B, 1, 1, S) boolean attend-mask of the source (None if no padding).
        self_caches: one self-attention :class:`KVCache` per decoder layer.
        cross_caches: one static :class:`KVCache` per decoder layer.
        length: number of target positions decoded so far.
    """

    memory: Tensor
    memory_mask: Tensor | None
    self_caches: list[KVCache]
    cross_caches: list[KVCache]
    length: int = 0

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` of the batch (beam search parents); the memory rows move with them."""
        self.memory = self.memory.index_select(0, index)
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask.index_select(0, index)
        for cache in self.self_caches + self.cross_caches:
            cache.reorder(index)


class Transformer(nn.Module):
    """Encoder-decoder Transformer (Vaswani et al. 2017), post-norm by default.

    Args:
        src_vocab: source vocabulary size.
        tgt_vocab: target vocabulary size.
        d_model: width (512 in the base model).
        num_heads: h (8).
        num_encoder_layers: N (6).
        num_decoder_layers: N (6).
        dim_ff: d_ff (2048).
        dropout: P_drop (0.1).
        norm_first: pre-norm variant (adds a final LayerNorm to encoder and decoder).
        share_embeddings: one embedding matrix for source and target (needs ``src_vocab == tgt_vocab``).
        tie_output: the pre-softmax projection is the target embedding matrix (Sec. 3.4).
        pad_idx: padding token id (its embedding row starts at zero).
        max_len: longest source or target sequence the position encoding covers.
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d_model: int = 512,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_ff: int = 2048,
        dropout: float = 0.1,
        norm_first: bool = False,
        share_embeddings: bool = False,
        tie_output: bool = False,
        pad_idx: int = 0,
        max_len: int = 1024,
    ) -> None:
        super().__init__()
        if share_embeddings and src_vocab != tgt_vocab:
            raise ConfigError(
                f"share_embeddings needs src_vocab == tgt_vocab, got {src_vocab} and {tgt_vocab}; "
                "use one joint vocabulary or share_embeddings: false"
            )
        if d_model % num_heads != 0:
            raise ConfigError(
                f"d_model {d_model} is not divisible by num_heads {num_heads}; choose num_heads dividing it"
            )
        self.d_model = d_model
        self.pad_idx = pad_idx
        self.norm_first = norm_first
        self.tie_output = tie_output
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model, padding_idx=pad_idx)
        # With shared embeddings there is no second table (and no duplicate tensor in the state dict).
        self.src_embed = None if share_embeddings else nn.Embedding(src_vocab, d_model, padding_idx=pad_idx)
        self.pos_enc = SinusoidalPositionalEncoding(d_model, max_len=max_len, dropout=dropout)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, dim_ff, dropout, norm_first) for _ in range(num_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, dim_ff, dropout, norm_first) for _ in range(num_decoder_layers)
        )
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.generator = None if tie_output else nn.Linear(d_model, tgt_vocab)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform matrices (as ``torch.nn.Transformer``), N(0, d^-1/2) embeddings so that √d·E has unit
        variance, zero biases and the padding row at zero."""
        for name, p in self.named_parameters():
            if "embed" in name:
                nn.init.normal_(p, std=self.d_model**-0.5)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)
        with torch.no_grad():
            for table in (self.src_embed, self.tgt_embed):
                if table is not None:
                    table.weight[self.pad_idx].zero_()

    # -- pieces ---------------------------------------------------------------------------------
    def embed_src(self, src: Tensor) -> Tensor:
        """(B, S) ids -> (B, S, D): Dropout(√d · E[src] + PE)."""
        table = self.src_embed if self.src_embed is not None else self.tgt_embed
        return self.pos_enc(table(src) * math.sqrt(self.d_model))

    def embed_tgt(self, tgt: Tensor, offset: int = 0) -> Tensor:
        """(B, T) ids at positions offset .. offset+T-1 -> (B, T, D)."""
        return self.pos_enc(self.tgt_embed(tgt) * math.sqrt(self.d_model), offset=offset)

    def project(self, y: Tensor) -> Tensor:
        """(B, T, D) decoder output -> (B, T, V) logits."""
        if self.generator is None:
            return F.linear(y, self.tgt_embed.weight)
        return self.generator(y)

    def source_mask(self, src: Tensor) -> Tensor | None:
        """(B, 1, 1, S) attend-mask of the non-padding source tokens, or None when there is no padding."""
        pad = src == self.pad_idx
        return padding_mask(pad) if bool(pad.any()) else None

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Encoder. src: (B, S) ids; src_mask: (B, 1, 1, S) from :meth:`source_mask`. Returns (B, S, D)."""
        x = self.embed_src(src)
        for layer in self.encoder_layers:
            x = layer(x, attn_mask=src_mask)
        return self.encoder_norm(x)

    def decode(self, tgt: Tensor, memory: Tensor, memory_mask: Tensor | None = None) -> Tensor:
        """Decoder over a whole (teacher-forced) target. tgt: (B, T) ids; memory: (B, S, D). Returns (B, T, V).

        Query t attends to target keys 0..t that are not padding, and to the non-padding source keys.
        """
        steps = tgt.shape[1]
        self_mask = causal_mask(steps, device=tgt.device)  # (T, T)
        tgt_pad = tgt == self.pad_idx
        if bool(tgt_pad.any()):
            self_mask = self_mask & padding_mask(tgt_pad)  # (B, 1, T, T)
        y = self.embed_tgt(tgt)
        for layer in self.decoder_layers:
            y = layer(y, memory, self_mask=self_mask, memory_mask=memory_mask)
        return self.project(self.decoder_norm(y))

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Teacher-forced logits. src: (B, S) ids; tgt: (B, T) ids (starting with BOS). Returns (B, T, V)."""
        src_mask = self.source_mask(src)
        return self.decode(tgt, self.encode(src, src_mask), src_mask)

    # -- incremental decoding -------------------------------------------------------------------
    def start_decoding(self, src: Tensor) -> DecodeState:
        """Encode ``src`` (B, S) and return an empty decoding state."""
        src_mask = self.source_mask(src)
        memory = self.encode(src, src_mask)
        layers = len(self.decoder_layers)
        self_caches = [KVCache() for _ in range(layers)]
        cross_caches = [KVCache(static=True) for _ in range(layers)]
        return DecodeState(memory, src_mask, self_caches, cross_caches)

    def decode_step(self, tokens: Tensor, state: DecodeState) -> Tensor:
        """Feed the next target tokens with the key/value cache.

        Args:
            tokens: (B, T_new) ids at positions state.length .. state.length + T_new − 1 (usually T_new = 1).
            state: from :meth:`start_decoding`; its caches and length are advanced.

        Returns:
            (B, T_new, V) logits of the tokens that follow each fed position.
        """
        new = tokens.shape[1]
        y = self.embed_tgt(tokens, offset=state.length)
        total = state.length + new
        self_mask = None if new == 1 else causal_mask(new, total, device=tokens.device)  # one query sees all
        for layer, sc, cc in zip(self.decoder_layers, state.self_caches, state.cross_caches):
            y = layer(y, state.memory, self_mask, state.memory_mask, self_cache=sc, cross_cache=cc)
        state.length = total
        return self.project(self.decoder_norm(y))


# -------------------------------------------------------------------------------------------------
# Decoding


def _next_logprobs(
    model: Transformer,
    prefix: Tensor,
    state: DecodeState | None,
    memory: Tensor,
    memory_mask: Tensor | None,
    use_cache: bool,
) -> Tensor:
    """Log-probabilities (B, V) of the token after ``prefix`` (B, t), with or without the cache.

    Padding is never generated by a live sequence: its log-probability is set to −∞ after the softmax.
    """
    if use_cache and state is not None:
        logits = model.decode_step(prefix[:, -1:], state)[:, -1]
    else:
        logits = model.decode(prefix, memory, memory_mask)[:, -1]
    logp = logits.float().log_softmax(dim=-1)
    logp[:, model.pad_idx] = float("-inf")
    return logp


@torch.no_grad()
def greedy_decode(
    model: Transformer,
    src: Tensor,
    bos: int,
    eos: int | None,
    max_len: int,
    use_cache: bool = True,
) -> Tensor:
    """Greedy decoding: y_t = argmax_y P(y | y_<t, x), batched over sources.

    Args:
        model: the Transformer (put it in eval mode).
        src: (B, S) source ids, padded with ``model.pad_idx``.
        bos: start token fed first.
        eos: end token; after it a sequence emits padding. None: always decode ``max_len`` tokens.
        max_len: most tokens generated (EOS included).
        use_cache: incremental decoding with the key/value cache (False: recompute the prefix each step).

    Returns:
        (B, L) generated ids, L ≤ max_len, without the BOS; finished rows padded with ``model.pad_idx``.
    """
    batch = src.shape[0]
    state = model.start_decoding(src)
    prefix = torch.full((batch, 1), bos, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        logp = _next_logprobs(model, prefix, state, state.memory, state.memory_mask, use_cache)
        token = logp.argmax(dim=-1)
        token = torch.where(finished, torch.full_like(token, model.pad_idx), token)
        prefix = torch.cat([prefix, token[:, None]], dim=1)
        if eos is not None:
            finished |= token == eos
            if bool(finished.all()):
                break
    return prefix[:, 1:]


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^α (Wu et al. 2016, eq. 14)."""
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: Transformer,
    src: Tensor,
    bos: int,
    eos: int | None,
    max_len: int,
    beam_size: int = 4,
    alpha: float = 0.6,
    use_cache: bool = True,
) -> tuple[Tensor, Tensor]:
    """Beam search with the GNMT length penalty, batched over sources.

    Each source keeps ``beam_size`` hypotheses. At every step each unfinished hypothesis is extended by
    every token; a finished one (it emitted EOS) is extended only by padding, at no cost, so it keeps its
    score and its length. The beam keeps the ``beam_size`` candidates with the best normalised score
    log P(Y | X) / lp(|Y|), where |Y| counts the generated tokens up to and including EOS. Decoding stops
    when every hypothesis of every source has finished, or after ``max_len`` tokens. With ``beam_size=1``
    this is :func:`greedy_decode`.

    Args:
        model: the Transformer (eval mode).
        src: (B, S) source ids.
        bos: start token.
        eos: end token, or None to always decode ``max_len`` tokens.
        max_len: most tokens generated.
        beam_size: K.
        alpha: α of the length penalty (0.6 in the paper; 0 turns it off).
        use_cache: incremental decoding with the key/value cache.

    Returns:
        (tokens (B, L) of the best hypothesis, without BOS, padded after EOS; scores (B,) its normalised
        log-probability).
    """
    if beam_size < 1:
        raise ConfigError(f"beam_size must be >= 1, got {beam_size}")
    batch, device = src.shape[0], src.device
    k = beam_size
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (B·K,) source of each hypothesis
    state = model.start_decoding(src)
    state.reorder(rows)
    prefix = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)
    # Only the first hypothesis of each source is live at the start (the others would duplicate it).
    score = torch.full((batch, k), float("-inf"), device=device)
    score[:, 0] = 0.0
    score = score.view(-1)  # (B·K,) sum of log-probabilities
    length = torch.zeros(batch * k, dtype=torch.long, device=device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    for step in range(1, max_len + 1):
        logp = _next_logprobs(model, prefix, state, state.memory, state.memory_mask, use_cache)  # (B·K, V)
        vocab = logp.shape[-1]
        # A finished hypothesis continues with padding only, at zero cost.
        pad_only = torch.full_like(logp, float("-inf"))
        pad_only[:, model.pad_idx] = 0.0
        logp = torch.where(finished[:, None], pad_only, logp)
        cand_score = score[:, None] + logp  # (B·K, V)
        cand_len = torch.where(finished, length, torch.full_like(length, step))[:, None].expand(-1, vocab)
        normalised = cand_score / length_penalty(cand_len, alpha)
        _, flat = normalised.view(batch, k * vocab).topk(k, dim=-1)  # (B, K)
        parent = flat // vocab + torch.arange(batch, device=device)[:, None] * k  # (B, K) rows of B·K
        token = (flat % vocab).view(-1)
        parent = parent.view(-1)
        score = cand_score.view(-1)[parent * vocab + token]
        length = cand_len.reshape(-1)[parent * vocab + token]
        was_finished = finished[parent]
        finished = was_finished | ((token == eos) if eos is not None else torch.zeros_like(was_finished))
        prefix = torch.cat([prefix.index_select(0, parent), token[:, None]], dim=1)
        if use_cache:
            state.reorder(parent)
        if bool(finished.all()):
            break
    normalised = (score / length_penalty(length, alpha)).view(batch, k)
    top = normalised.argmax(dim=-1)  # (B,)
    pick = torch.arange(batch, device=device) * k + top
    return prefix[pick, 1:], normalised[torch.arange(batch, device=device), top]


# -------------------------------------------------------------------------------------------------
# Training schedule


def transformer_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """The paper's learning rate (Sec. 5.3, eq. 3): factor · d^−0.5 · min(step^−0.5, step · warmup^−1.5).

    Linear warm-up for ``warmup`` steps, then decay with the inverse square root of the step. ``step``
    counts from 1 (step 0 is treated as step 1).
    """
    step = max(int(step), 1)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
