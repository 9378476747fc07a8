"""Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words").

    z_0 = [x_class; x_p¹E; ...; x_pᴺE] + E_pos,   E ∈ R^{(P²·C)×D}, E_pos ∈ R^{(N+1)×D}   (eq. 1)
    z'_ℓ = MSA(LN(z_{ℓ−1})) + z_{ℓ−1},             ℓ = 1 .. L                             (eq. 2)
    z_ℓ = MLP(LN(z'_ℓ)) + z'_ℓ,                    ℓ = 1 .. L                             (eq. 3)
    y = LN(z_L⁰)                                                                           (eq. 4)

``global_pool="token"`` classifies from the class token as in eq. 4; ``"avg"`` averages the patch tokens
and normalises the average (the paper's appendix D.3 finds both work with the right learning rate).
``pos_embed`` is ``"learn"`` (eq. 1), ``"sincos"`` (fixed 2D sine-cosine, Beyer et al. 2022) or ``"none"``.

The model API is uniform: ``forward_features(x)`` gives the tokens, ``forward_head(tokens)`` the logits,
``forward(x)`` both. :func:`convert_timm_state_dict` and :func:`convert_to_timm_state_dict` map weights
to and from timm's ``VisionTransformer`` (tests check equal logits).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.errors import CheckpointError, ConfigError
from vitlab.models.registry import register_model
from vitlab.nn.blocks import Block, PatchEmbed
from vitlab.nn.posenc import LearnedPositionEmbedding, resample_pos_embed, sincos_2d

GLOBAL_POOLS = ("token", "avg")
POS_EMBEDS = ("learn", "sincos", "none")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class VisionTransformer(nn.Module):
    """ViT image classifier.

    Args:
        img_size: input (H, W), or one int for a square image.
        patch_size: P; must divide H and W.
        in_chans: input channels C.
        num_classes: classes K; 0 makes the head an identity (features only).
        embed_dim: token width D.
        depth: number of blocks L.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width over D.
        qkv_bias: bias in the qkv projections.
        class_token: prepend a learned class token.
        global_pool: ``"token"`` (needs ``class_token``) or ``"avg"``.
        pos_embed: ``"learn"``, ``"sincos"`` or ``"none"``.
        sincos_convention: layout of the sin-cos embedding (see :func:`vitlab.nn.sincos_2d`).
        act: MLP activation name.
        drop_rate: dropout in the blocks and before the head.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 in the first block to this in the last.
        layer_scale_init: LayerScale initial value, or ``None`` for none.
        stem: ``"linear"`` (eq. 1's patch projection) or ``"conv"`` (a convolutional stem, Xiao et al. 2021,
            as in the paper's hybrid; see :func:`vitlab.nn.blocks.conv_stem`).
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool = True,
        global_pool: str = "token",
        pos_embed: str = "learn",
        sincos_convention: str = "big_vision",
        act: str = "gelu",
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init: float | None = None,
        stem: str = "linear",
    ) -> None:
        super().__init__()
        if global_pool not in GLOBAL_POOLS:
            raise ConfigError(f"unknown global_pool '{global_pool}'; choose one of {GLOBAL_POOLS}")
        if pos_embed not in POS_EMBEDS:
            raise ConfigError(f"unknown pos_embed '{pos_embed}'; choose one of {POS_EMBEDS}")
        if global_pool == "token" and not class_token:
            raise ConfigError("global_pool='token' needs class_token=True; set global_pool='avg' or class_token=True")
        for name, value in (("in_chans", in_chans), ("embed_dim", embed_dim), ("depth", depth), ("num_heads", num_heads)):
            if int(value) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value}")
        if num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.global_pool = global_pool
        self.pos_embed_type = pos_embed
        self.sincos_convention = sincos_convention
        self.num_prefix_tokens = 1 if class_token else 0

        self.patch_embed = PatchEmbed(_pair(img_size), patch_size, in_chans, embed_dim, stem=stem)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        num_positions = self.patch_embed.num_patches + self.num_prefix_tokens
        self.pos_embed: nn.Module | None = None
        if pos_embed == "learn":
            self.pos_embed = LearnedPositionEmbedding(num_positions, embed_dim)
        elif pos_embed == "sincos":
            self.register_buffer("sincos_embed", self._build_sincos(), persistent=False)
        self.pos_drop = nn.Dropout(drop_rate)
        drop_paths = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                act=act,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=drop_paths[i],
                layer_scale_init=layer_scale_init,
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.reset_parameters()

    # ----------------------------------------------------------------------------------------- set-up
    def reset_parameters(self) -> None:
        """Initialise as ViT's reference code does: truncated normal (σ = 0.02) for linear layers and the
        position embedding, zero biases, and a near-zero class token (σ = 1e-6)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def _build_sincos(self) -> Tensor:
        grid = sincos_2d(self.patch_embed.grid_size, self.embed_dim, convention=self.sincos_convention)
        return grid.unsqueeze(0)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that take no weight decay (besides biases and norms, which the engine skips)."""
        names = {"cls_token"} if self.cls_token is not None else set()
        if isinstance(self.pos_embed, LearnedPositionEmbedding):
            names.add("pos_embed.weight")
        return names

    @property
    def img_size(self) -> tuple[int, int]:
        return self.patch_embed.img_size

    def set_img_size(self, img_size: int | tuple[int, int]) -> None:
        """Accept a new input size: the patch grid changes and the position embedding is resampled
        (learned: bicubic, antialiased; sin-cos: rebuilt for the new grid)."""
        old_grid = self.patch_embed.grid_size
        old = self.patch_embed
        new = PatchEmbed(_pair(img_size), old.patch_size, old.in_chans, self.embed_dim, stem=old.stem_type)
        new.stem, new.proj = old.stem, old.proj
        self.patch_embed = new
        if isinstance(self.pos_embed, LearnedPositionEmbedding):
            resampled = resample_pos_embed(self.pos_embed.weight.data, new.grid_size, old_grid, self.num_prefix_tokens)
            self.pos_embed.weight = nn.Parameter(resampled)
        elif self.pos_embed_type == "sincos":
            self.sincos_embed = self._build_sincos().to(self.sincos_embed)

    # ---------------------------------------------------------------------------------------- forward
    def embed(self, x: Tensor) -> Tensor:
        """Eq. 1. x: (B, C, H, W) -> z_0: (B, prefix + N, D)."""
        tokens = self.patch_embed(x)
        if self.pos_embed_type == "sincos":
            tokens = tokens + self.sincos_embed.to(tokens.dtype)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        if isinstance(self.pos_embed, LearnedPositionEmbedding):
            tokens = self.pos_embed(tokens)
        return self.pos_drop(tokens)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> tokens (B, prefix + N, D) after the last block (normalised if pooling
        the class token, eq. 4)."""
        tokens = self.embed(x)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens) if self.global_pool == "token" else tokens

    def pool(self, tokens: Tensor) -> Tensor:
        """tokens (B, prefix + N, D) -> (B, D): the class token, or the normalised mean of the patches."""
        if self.global_pool == "token":
            return tokens[:, 0]
        return self.norm(tokens[:, self.num_prefix_tokens :].mean(dim=1))

    def forward_head(self, tokens: Tensor, pre_logits: bool = False) -> Tensor:
        """tokens (B, prefix + N, D) -> logits (B, K), or the pooled (B, D) features if ``pre_logits``."""
        pooled = self.head_drop(self.pool(tokens))
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> logits (B, K): ``forward_head(forward_features(x))``.

        With class-token pooling only the class token of the last block reaches the head (eq. 4), so the last
        block is run for that one query (:func:`class_token_block`): the same logits and gradients up to
        float rounding, for about a sixth of a block's cost (on ViT-Ti: ~7% of the model's FLOPs).
        """
        if self.global_pool != "token" or len(self.blocks) == 0:
            return self.forward_head(self.forward_features(x))
        tokens = self.embed(x)
        for block in self.blocks[:-1]:
            tokens = block(tokens)
        return self.forward_head(self.norm(class_token_block(self.blocks[-1], tokens)))

    # ---------------------------------------------------------------------------- attention analysis
    @torch.no_grad()
    def get_attention_maps(self, x: Tensor) -> list[Tensor]:
        """Attention weights of every block, computed on the manual attention path.

        Args:
            x: (B, C, H, W).

        Returns:
            L tensors of shape (B, heads, T, T), T = prefix + N tokens; row i is where token i attends.

        The maps are those of the model in eval mode (no dropout, no drop path), whatever mode it is in:
        two calls on the same input give the same maps. The mode is restored afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            tokens = self.embed(x)
            maps = []
            for block in self.blocks:
                tokens, weights = block(tokens, need_weights=True)
                maps.append(weights)
        finally:
            self.train(was_training)
        return maps

    @torch.no_grad()
    def attention_rollout(self, x: Tensor, residual_weight: float = 0.5) -> Tensor:
        """Attention rollout (Abnar & Zuidema 2020), as used for ViT's Figure 6.

        Per block, heads are averaged and the residual connection is accounted for:
        Â_ℓ = w·I + (1 − w)·mean_heads(A_ℓ), rows renormalised; the rollout is Â_L ··· Â_1.
        The map is the class token's row (or, with no class token, the mean row) over the patches.

        Args:
            x: (B, C, H, W).
            residual_weight: w, the weight of the identity (0.5 in the paper).

        Returns:
            (B, H/P, W/P) relevance of each patch, each map summing to at most 1.
        """
        maps = self.get_attention_maps(x)
        tokens = maps[0].shape[-1]
        eye = torch.eye(tokens, device=x.device, dtype=maps[0].dtype)
        rollout = eye.expand(x.shape[0], tokens, tokens)
        for weights in maps:
            mixed = residual_weight * eye + (1 - residual_weight) * weights.mean(dim=1)
            mixed = mixed / mixed.sum(dim=-1, keepdim=True)
            rollout = mixed @ rollout
        rows = rollout[:, 0] if self.cls_token is not None else rollout.mean(dim=1)
        patches = rows[:, self.num_prefix_tokens :]
        return patches.reshape(x.shape[0], *self.patch_embed.grid_size)


# ------------------------------------------------------------------------------------ timm weights
_TIMM_SHARED_ROOTS = {"cls_token", "patch_embed", "blocks", "norm", "head"}
_TIMM_UNSUPPORTED = (".q_norm.", ".k_norm.", ".mlp.norm.", ".attn.norm.", "patch_embed.norm.")

def class_token_block(block: Block, tokens: Tensor) -> Tensor:
    """Output of ``block`` at the class token (position 0) alone: ``block(tokens)[:, :1]``, computed cheaply.

    Eqs. 2-3 at one position: the class token's query attends to the keys and values of all tokens, then the
    projection, the MLP and both residuals act on that one row. Keys and values still need every token (2D²
    per token) but the query, output projection and MLP (10D² per token) are computed for one token.

    Args:
        block: a pre-norm :class:`~vitlab.nn.blocks.Block`.
        tokens: (B, N, D) input of the block.

    Returns:
        (B, 1, D).
    """
    attn = block.attn
    batch, count, dim = tokens.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    normed = block.norm1(tokens)
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(normed[:, :1], weight[:dim], None if bias is None else bias[:dim])
    kv = F.linear(normed, weight[dim:], None if bias is None else bias[dim:]).view(batch, count, 2, heads, head_dim)
    k, v = (t.transpose(1, 2) for t in kv.unbind(2))
    q = q.view(batch, 1, heads, head_dim).transpose(1, 2)
    dropout_p = attn.attn_drop if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p).transpose(1, 2).reshape(batch, 1, dim)
    x = tokens[:, :1] + block.drop_path1(block.ls1(attn.proj_drop(attn.proj(out))))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def convert_timm_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a timm ``VisionTransformer`` state dict to vitlab's names.

    timm → vitlab: ``pos_embed`` → ``pos_embed.weight``; ``fc_norm.*`` (timm's norm after average
    pooling) → ``norm.*``; every other supported key keeps its name.

    Raises:
        CheckpointError: the state dict uses a timm feature vitlab's ViT does not have (register tokens,
            attention pooling, q/k norm, ...).
    """
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "pos_embed":
            converted["pos_embed.weight"] = value
        elif key.startswith("fc_norm."):
            converted["norm." + key[len("fc_norm.") :]] = value
        elif key.split(".")[0] in _TIMM_SHARED_ROOTS and not any(part in key for part in _TIMM_UNSUPPORTED):
            converted[key] = value
        else:
            raise CheckpointError(f"timm key '{key}' has no counterpart in vitlab's VisionTransformer")
    return converted


def convert_to_timm_state_dict(state_dict: dict[str, Tensor], global_pool: str = "token") -> dict[str, Tensor]:
    """Inverse of :func:`convert_timm_state_dict` for a model with the given ``global_pool``."""
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "pos_embed.weight":
            converted["pos_embed"] = value
        elif key.startswith("norm.") and global_pool == "avg":
            converted["fc_norm." + key[len("norm.") :]] = value
        else:
            converted[key] = value
    return converted


def vit_from_timm(timm_model: nn.Module) -> VisionTransformer:
    """Build a vitlab ViT with the configuration and weights of a timm ``VisionTransformer``."""
    patch = timm_model.patch_embed
    blocks = timm_model.blocks
    first = blocks[0]
    embed_dim = timm_model.embed_dim
    pool = timm_model.global_pool
    if pool not in GLOBAL_POOLS:
        raise ConfigError(f"timm model uses global_pool='{pool}'; vitlab supports {GLOBAL_POOLS}")
    act = type(first.mlp.act).__name__.lower()
    if first.mlp.act.__class__.__name__ == "GELU" and getattr(first.mlp.act, "approximate", "none") == "tanh":
        act = "gelu_tanh"
    layer_scale = getattr(first.ls1, "gamma", None)
    model = VisionTransformer(
        img_size=tuple(patch.img_size),
        patch_size=patch.patch_size[0],
        in_chans=patch.proj.in_channels,
        num_classes=timm_model.num_classes,
        embed_dim=embed_dim,
        depth=len(blocks),
        num_heads=first.attn.num_heads,
        mlp_ratio=first.mlp.fc1.out_features / embed_dim,
        qkv_bias=first.attn.qkv.bias is not None,
        class_token=timm_model.cls_token is not None,
        global_pool=pool,
        pos_embed="learn" if timm_model.pos_embed is not None else "none",
        act=act,
        layer_scale_init=None if layer_scale is None else 1.0,
    )
    model.load_state_dict(convert_timm_state_dict(timm_model.state_dict()), strict=True)
    return model


# ------------------------------------------------------------------------------------- named sizes
def _vit(defaults: dict[str, Any], overrides: dict[str, Any]) -> VisionTransformer:
    return VisionTransformer(**{**defaults, **overrides})


@register_model
def vit_digits_patch2_8(**overrides: Any) -> VisionTransformer:
    """ViT for 8×8 grayscale digits (the embedded dataset): 2×2 patches, 16 tokens, D=64, 4 blocks."""
    return _vit(
        dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0),
        overrides,
    )


@register_model
def vit_tiny_patch4_32(**overrides: Any) -> VisionTransformer:
    """ViT-Tiny (D=192, 12 blocks, 3 heads) on 32×32 images with 4×4 patches (64 tokens)."""
    return _vit(dict(img_size=32, patch_size=4, num_classes=10, embed_dim=192, depth=12, num_heads=3), overrides)


@register_model
def vit_small_patch4_32(**overrides: Any) -> VisionTransformer:
    """ViT-Small (D=384, 12 blocks, 6 heads) on 32×32 images with 4×4 patches (64 tokens)."""
    return _vit(dict(img_size=32, patch_size=4, num_classes=10, embed_dim=384, depth=12, num_heads=6), overrides)


@register_model
def vit_tiny_patch16_224(**overrides: Any) -> VisionTransformer:
    """ViT-Ti/16 (DeiT's tiny size): D=192, 12 blocks, 3 heads, 224×224 input."""
    return _vit(dict(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3), overrides)


@register_model
def vit_small_patch16_224(**overrides: Any) -> VisionTransformer:
    """ViT-S/16: D=384, 12 blocks, 6 heads, 224×224 input."""
    return _vit(dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6), overrides)


@register_model
def vit_base_patch16_224(**overrides: Any) -> VisionTransformer:
    """ViT-B/16 (the paper's Table 1): D=768, 12 blocks, 12 heads, MLP 3072, 224×224 input."""
    return _vit(dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12), overrides)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "VisionTransformer",
    "convert_timm_state_dict",
    "convert_to_timm_state_dict",
    "count_parameters",
    "vit_from_timm",
]
