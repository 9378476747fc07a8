"""Position embeddings for Vision Transformers.

ViT (Dosovitskiy et al. 2020, eq. 1) adds a position embedding E_pos to the patch tokens:
z_0 = [x_class; x_p¹E; ...; x_pᴺE] + E_pos. Its appendix D.4 finds learned 1D, learned 2D and relative
embeddings about equal, and none clearly worse.

* :class:`LearnedPositionEmbedding`: E_pos is a parameter, initialised with a truncated normal (σ = 0.02).
* :func:`sincos_2d`: a fixed 2D sine-cosine embedding. A quarter of the channels encodes sin(x·ω_i), a
  quarter cos(x·ω_i), a quarter sin(y·ω_i) and a quarter cos(y·ω_i), for the column x and the row y of
  the patch, with ω_i = 1 / T^(i / den), i = 0 .. D/4 − 1. Two published conventions differ in ``den``
  and in the order of the four quarters; each is named here:

  ===============  ============  =====================================================
  convention       den           channel layout
  ===============  ============  =====================================================
  ``big_vision``   D/4 − 1       [sin x, cos x, sin y, cos y]  (big_vision, Simple ViT)
  ``mae``          D/4           [sin x, cos x, sin y, cos y]  (MAE ``get_2d_sincos_pos_embed``)
  ``timm``         D/4           [sin y, sin x, cos y, cos x]  (timm ``build_sincos2d_pos_embed``)
  ===============  ============  =====================================================

  ``big_vision`` (Beyer et al. 2022, "Better plain ViT baselines") is vitlab's default.
* :func:`resample_pos_embed`: bicubic, antialiased resampling of a grid of embeddings to a new grid, for
  fine-tuning at another image size (ViT Sec. 3.2: "2D interpolation of the pre-trained position
  embeddings, according to their location in the original image").
* :func:`sinusoidal_1d` and :class:`SinusoidalPositionalEncoding`: the fixed 1D encoding of Vaswani et al.
  2017 ("Attention Is All You Need"), Sec. 3.5: PE(pos, 2i) = sin(pos / base^(2i/d)),
  PE(pos, 2i+1) = cos(pos / base^(2i/d)), in the paper's interleaved layout or the concatenated
  [sin ..., cos ...] layout (tensor2tensor), named explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.errors import ConfigError, DataError, unknown_name_message

SINCOS_CONVENTIONS = ("big_vision", "mae", "timm")


def sincos_2d(
    grid_size: tuple[int, int],
    dim: int,
    temperature: float = 10000.0,
    convention: str = "big_vision",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Fixed 2D sine-cosine embedding of a (rows, cols) grid, flattened row-major.

    Args:
        grid_size: (H, W) patches.
        dim: embedding width D, divisible by 4.
        temperature: T in ω_i = 1 / T^(i / den).
        convention: ``"big_vision"``, ``"mae"`` or ``"timm"`` (see the module docstring).
        dtype: dtype of the result (computed in float64).

    Returns:
        (H·W, D); row r·W + c embeds the patch in row r, column c.
    """
    if dim % 4 != 0:
        raise ValueError(f"sin-cos 2D embedding needs a dim divisible by 4, got {dim}")
    if convention not in SINCOS_CONVENTIONS:
        raise ValueError(f"unknown sin-cos convention '{convention}'; choose one of {SINCOS_CONVENTIONS}")
    quarter = dim // 4
    denominator = (quarter - 1 if convention == "big_vision" else quarter) or 1
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / denominator)
    rows, cols = torch.meshgrid(
        torch.arange(grid_size[0], dtype=torch.float64),
        torch.arange(grid_size[1], dtype=torch.float64),
        indexing="ij",
    )
    y = rows.reshape(-1, 1) * omega  # (H·W, D/4)
    x = cols.reshape(-1, 1) * omega
    if convention == "timm":
        quarters = [y.sin(), x.sin(), y.cos(), x.cos()]
    else:
        quarters = [x.sin(), x.cos(), y.sin(), y.cos()]
    return torch.cat(quarters, dim=1).to(dtype)


class LearnedPositionEmbedding(nn.Module):
    """A learned absolute embedding E_pos of shape (1, N, D), added to the tokens.

    Args:
        num_tokens: N, the number of positions (patches plus prefix tokens that get a position).
        dim: D.
    """

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, num_tokens, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, N, D) -> x + E_pos."""
        return x + self.weight


def resample_pos_embed(
    posemb: Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int],
    num_prefix_tokens: int = 0,
    antialias: bool = True,
) -> Tensor:
    """Resample a grid of position embeddings to a new grid, bicubically.

    The first ``num_prefix_tokens`` embeddings (class token, registers) are kept as they are; the rest are
    read as an (old_H, old_W) image with D channels and interpolated to (new_H, new_W). Antialiasing
    matters when the grid shrinks. The old grid is required: N alone cannot tell 4×8 from 8×4.

    Args:
        posemb: (1, P + old_H·old_W, D) or (P + old_H·old_W, D).
        new_grid: (new_H, new_W).
        old_grid: (old_H, old_W).
        num_prefix_tokens: P.
        antialias: antialias when downsampling (as ``F.interpolate``).

    Returns:
        (1, P + new_H·new_W, D), or 2-D if the input was 2-D; same dtype as the input.
    """
    squeeze = posemb.dim() == 2
    if squeeze:
        posemb = posemb.unsqueeze(0)
    if posemb.dim() != 3:
        raise ValueError(f"posemb must be (1, N, D) or (N, D), got shape {tuple(posemb.shape)}")
    old_h, old_w = old_grid
    expected = num_prefix_tokens + old_h * old_w
    if posemb.shape[1] != expected:
        raise ValueError(
            f"posemb has {posemb.shape[1]} tokens but old_grid {tuple(old_grid)} with {num_prefix_tokens} "
            f"prefix tokens needs {expected}; pass the grid the embedding was trained on"
        )
    if tuple(new_grid) != tuple(old_grid):
        prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
        dim = grid.shape[-1]
        image = grid.float().reshape(posemb.shape[0], old_h, old_w, dim).permute(0, 3, 1, 2)
        image = F.interpolate(image, size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=antialias)
        grid = image.permute(0, 2, 3, 1).reshape(posemb.shape[0], -1, dim).to(posemb.dtype)
        posemb = torch.cat([prefix, grid], dim=1)
    return posemb.squeeze(0) if squeeze else posemb


# ---------------------------------------------------------------------------------------------
# 1D sinusoidal encoding (Vaswani et al. 2017, "Attention Is All You Need", Sec. 3.5)

SINUSOIDAL_LAYOUTS = ("interleaved", "concatenated")


def sinusoidal_1d(
    length: int,
    dim: int,
    base: float = 10000.0,
    layout: str = "interleaved",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The fixed sinusoidal position encoding of Vaswani et al. 2017, Sec. 3.5.

    With ω_i = 1 / base^(2i/d), i = 0 .. d/2 − 1:

        PE(pos, 2i) = sin(pos · ω_i),    PE(pos, 2i + 1) = cos(pos · ω_i)      (``"interleaved"``, the paper)

    ``"concatenated"`` puts the same numbers as [sin(pos·ω_0) .. sin(pos·ω_{d/2−1}), cos(pos·ω_0) ..
    cos(pos·ω_{d/2−1})] (tensor2tensor's ``get_timing_signal_1d`` layout, with the paper's frequencies):
    a fixed permutation of the channels of the interleaved one. Because each (sin, cos) pair at
    frequency ω_i is a point on the unit circle, PE(pos + k) is PE(pos) with every pair rotated by the
    angle k·ω_i, a linear map that depends on k only (see docs/positional_encoding.md).

    Computed in float64 on the CPU, then cast to ``dtype`` and moved to ``device``.

    Args:
        length: number of positions L (positions 0 .. L − 1).
        dim: encoding width d, even.
        base: the constant 10000 of the paper.
        layout: ``"interleaved"`` (sin, cos alternate; the paper) or ``"concatenated"`` (all sines, then
            all cosines).
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        (L, d) tensor; row ``pos`` is PE(pos).
    """
    if int(length) != length or length < 0:
        raise ConfigError(f"length must be a non-negative integer, got {length}")
    if int(dim) != dim or dim <= 0 or dim % 2 != 0:
        raise ConfigError(
            f"sinusoidal encoding needs an even dim (one sin and one cos per frequency), got {dim}; "
            "use an even model width"
        )
    if not base > 0:
        raise ConfigError(f"base must be > 0, got {base}; the paper uses 10000")
    if layout not in SINUSOIDAL_LAYOUTS:
        raise ConfigError(unknown_name_message("sinusoidal layout", str(layout), SINUSOIDAL_LAYOUTS))
    half = dim // 2
    omega = torch.pow(float(base), -torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (d/2,) base^(-2i/d)
    angle = torch.arange(int(length), dtype=torch.float64).unsqueeze(1) * omega  # (L, d/2)
    if layout == "interleaved":
        table = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(int(length), 2 * half)
    else:
        table = torch.cat([angle.sin(), angle.cos()], dim=-1)
    return table.to(dtype=dtype, device=device)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal encoding to a sequence of embeddings, then dropout (Vaswani et al. Sec. 3.5, 5.4).

    ``forward(x) = dropout(x + PE[offset : offset + N])``. The paper applies dropout (P_drop = 0.1 for the
    base model) "to the sums of the embeddings and the positional encodings"; the scaling of the token
    embeddings by √d (Sec. 3.4) is the embedding layer's job, not this module's.

    The table is a non-persistent buffer: it follows ``.to()`` / ``.cuda()`` but is not written to
    checkpoints (it is a function of ``max_len``, ``dim``, ``base`` and ``layout``).

    Args:
        dim: model width d, even.
        max_len: the longest sequence (plus ``offset``) this module accepts.
        dropout: dropout probability on the sum (0 turns it off).
        base: the constant 10000 of the paper.
        layout: ``"interleaved"`` (the paper) or ``"concatenated"`` (see :func:`sinusoidal_1d`).
    """

    pe: Tensor

    def __init__(
        self,
        dim: int,
        max_len: int = 5000,
        dropout: float = 0.0,
        base: float = 10000.0,
        layout: str = "interleaved",
    ) -> None:
        super().__init__()
        if int(max_len) != max_len or max_len < 1:
            raise ConfigError(f"max_len must be a positive integer, got {max_len}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.dim = int(dim)
        self.max_len = int(max_len)
        self.layout = layout
        self.register_buffer("pe", sinusoidal_1d(max_len, dim, base, layout), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Add PE to ``x``.

        Args:
            x: (B, N, d) embeddings.
            offset: position of the first token (e.g. the number of tokens already decoded with a
                key-value cache).

        Returns:
            (B, N, d), ``dropout(x + PE[offset : offset + N])`` in ``x``'s dtype.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise DataError(f"expected input (B, N, {self.dim}), got shape {tuple(x.shape)}; check the model width")
        n = x.shape[1]
        if offset < 0 or offset + n > self.max_len:
            raise DataError(
                f"positions {offset}..{offset + n - 1} exceed max_len={self.max_len}; "
                f"build SinusoidalPositionalEncoding with max_len >= {offset + n}"
            )
        return self.dropout(x + self.pe[offset : offset + n].to(x.dtype))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}, layout='{self.layout}'"
