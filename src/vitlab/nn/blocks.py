"""Transformer building blocks for ViT (Dosovitskiy et al. 2020, Sec. 3.1).

    z_0 = [x_class; x_p¹E; ...; x_pᴺE] + E_pos                     (eq. 1, PatchEmbed + position)
    z'_ℓ = MSA(LN(z_{ℓ−1})) + z_{ℓ−1}                               (eq. 2, Block, pre-norm)
    z_ℓ = MLP(LN(z'_ℓ)) + z'_ℓ                                      (eq. 3)

The linear projection E of flattened P×P patches equals a convolution with kernel = stride = P, which is
how :class:`PatchEmbed` computes it. Optional extras from later papers: stochastic depth (Huang et al.
2016) as :class:`DropPath`, and LayerScale (Touvron et al. 2021, CaiT) as :class:`LayerScale`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vitlab.nn.activations import get_activation
from vitlab.nn.attention import Attention


def conv_stem(in_chans: int, patch_size: int, width: int) -> tuple[nn.Sequential, int]:
    """The convolutional stem of Xiao et al. 2021 ("Early convolutions help transformers see better"): log2(P)
    3×3 convolutions of stride 2, each followed by BatchNorm and ReLU, the channels doubling up to ``width``.

    It replaces the single P×P "patchify" convolution, the paper's ViT_C; a 1×1 projection to D follows (the
    ``proj`` of :class:`PatchEmbed`). The ViT paper's own hybrid (Sec. 3.1) likewise feeds a CNN feature map to
    the Transformer with 1×1 patches.

    Returns:
        the stem, (B, C, H, W) -> (B, width, H/P, W/P), and its output channels.
    """
    steps = patch_size.bit_length() - 1
    if patch_size < 2 or 1 << steps != patch_size:
        raise ValueError(f"a convolutional stem needs a patch size that is a power of 2, got {patch_size}; "
                         "use 2, 4, 8 or 16, or stem='linear'")
    layers: list[nn.Module] = []
    channels = in_chans
    for step in range(steps):
        out = max(1, width >> (steps - 1 - step))
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        channels = out
    return nn.Sequential(*layers), channels


class PatchEmbed(nn.Module):
    """Split an image into P×P patches and project each to D channels.

    Args:
        img_size: (H, W) of the input image.
        patch_size: P; must divide H and W.
        in_chans: C, input channels.
        embed_dim: D.
        stem: ``"linear"`` (the ViT paper's eq. 1: one P×P convolution of stride P) or ``"conv"`` (the
            convolutional stem of :func:`conv_stem`, then a 1×1 projection; same token grid).
    """

    def __init__(
        self, img_size: tuple[int, int], patch_size: int, in_chans: int, embed_dim: int, stem: str = "linear"
    ) -> None:
        super().__init__()
        if stem not in ("linear", "conv"):
            raise ValueError(f"unknown stem '{stem}'; choose 'linear' or 'conv'")
        height, width = img_size
        if patch_size <= 0 or height % patch_size or width % patch_size:
            raise ValueError(
                f"patch size {patch_size} does not divide image size {height}x{width}; "
                f"choose a patch size that divides both"
            )
        self.img_size = (height, width)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.grid_size = (height // patch_size, width // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.stem_type = stem
        if stem == "conv":
            self.stem, channels = conv_stem(in_chans, patch_size, embed_dim)
            self.proj = nn.Conv2d(channels, embed_dim, kernel_size=1)
        else:
            self.stem = nn.Identity()
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, N, D), N = (H/P)·(W/P), patches in row-major order."""
        if x.dim() != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got shape {tuple(x.shape)}")
        _, channels, height, width = x.shape
        if channels != self.in_chans:
            raise ValueError(f"expected {self.in_chans} input channels, got {channels} (input shape {tuple(x.shape)})")
        if (height, width) != self.img_size:
            raise ValueError(
                f"expected images of size {self.img_size[0]}x{self.img_size[1]}, got {height}x{width}; "
                f"resize the input or build the model with img_size=({height}, {width})"
            )
        return self.proj(self.stem(x)).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """Two-layer MLP of a transformer block: fc2(drop(act(fc1(x)))).

    Args:
        dim: input and output width D.
        hidden_dim: hidden width (ViT: 4·D).
        act: activation name (see :func:`vitlab.nn.get_activation`).
        drop: dropout after the activation and after fc2.
    """

    def __init__(self, dim: int, hidden_dim: int, act: str = "gelu", drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = get_activation(act)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., D) -> (..., D)."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LayerScale(nn.Module):
    """Per-channel scale γ ⊙ x with γ initialised to a small constant (CaiT, Touvron et al. 2021)."""

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., D) -> γ ⊙ x."""
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch per sample with probability p and scale the
    kept ones by 1/(1−p) (Huang et al. 2016). Identity in eval mode or when p = 0.

    Like ``nn.Dropout`` it draws from the default generator, which the training engine seeds and saves.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, ...) -> x with whole samples zeroed."""
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Block(nn.Module):
    """Pre-norm transformer encoder block (ViT eqs. 2–3).

    Args:
        dim: D.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP over D.
        qkv_bias: bias in the qkv projection.
        act: MLP activation name.
        drop: dropout in the MLP and after the attention projection.
        attn_drop: dropout on attention weights.
        drop_path: stochastic-depth probability of both residual branches.
        layer_scale_init: if given, LayerScale with this initial value on both branches.
        norm_eps: LayerNorm epsilon (1e-6 as in ViT's reference code and timm).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        act: str = "gelu",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init: float | None = None,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act=act, drop=drop)
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init is not None else nn.Identity()
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """x: (B, N, D) -> (B, N, D); with ``need_weights`` also the (B, h, N, N) attention weights."""
        if need_weights:
            attn_out, weights = self.attn(self.norm1(x), need_weights=True)
        else:
            attn_out, weights = self.attn(self.norm1(x)), None
        x = x + self.drop_path1(self.ls1(attn_out))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return (x, weights) if need_weights else x
