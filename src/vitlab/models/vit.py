"""Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words").

    z_0 = [x_class; x_p¹E; ...; x_pᴺE] + E_pos,   E ∈ R^{(P²·C)×D}, E_pos ∈ R^{(N+1)×D}   (eq. 1)
    z'_ℓ = MSA(LN(z_{ℓ−1})) + z_{ℓ−1},             ℓ = 1 .. L                             (eq. 2)
    z_ℓ = MLP(LN(z'_ℓ)) + z'_ℓ,                    ℓ = 1 .. L                             (eq. 3)
    y = LN(z_L⁰)                                                                           (eq. 4)

``global_pool="token"`` classifies from the class token as in eq. 4; ``"avg"`` averages the patch tokens
(the paper's appendix D.3 finds both work with the right learning rate). Where the final LayerNorm sits is
``fc_norm``: ``False`` normalises every token, then pools (eq. 4; with ``"avg"`` this is timm's
``vit_base_patch16_gap_224`` layout); ``True`` pools, then normalises the pooled vector (timm's default for
``"avg"``). The two differ for the mean (LN of a mean is not the mean of LNs) and agree for the class token.
The placement is in the parameter names, so that a strict load of the other layout fails: the norm on every
token is ``norm.*``, the norm after pooling ``pooled_norm.*`` (the unused slot is an ``nn.Identity``).
Weights written before this naming (``norm.*`` for both) are read through :func:`migrate_vit_state_dict`.
Options found in published checkpoints: LayerScale (``layer_scale_init``, CaiT), position embeddings on the
patches only (``no_embed_class``, the class token gets none), no qkv bias, a non-square input, the LayerNorm
``norm_eps`` (timm and torchvision 1e-6, Hugging Face 1e-12) and a ``representation_size`` pre-logits layer
(Linear + tanh before the head, the ViT paper's pre-training head; Hugging Face's ``ViTModel`` pooler).
``pos_embed`` is ``"learn"`` (eq. 1), ``"sincos"`` (fixed 2D sine-cosine, Beyer et al. 2022) or ``"none"``.

The model API is uniform: ``forward_features(x)`` gives the tokens, ``forward_head(tokens)`` the logits,
``forward(x)`` both. Weights of timm, Hugging Face and torchvision ViTs convert both ways in
:mod:`vitlab.models.convert` (tests check equal logits against each library).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.errors import ConfigError
from vitlab.models.registry import register_model
from vitlab.nn.attention import Attention
from vitlab.nn.blocks import Block, DropPath, LayerScale, Mlp, PatchEmbed
from vitlab.nn.posenc import LearnedPositionEmbedding, resample_pos_embed, sincos_2d

GLOBAL_POOLS = ("token", "avg")
POS_EMBEDS = ("learn", "sincos", "none")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _check_arguments(global_pool: str, pos_embed: str, class_token: bool, num_classes: int, norm_eps: float,
                     representation_size: int | None, **positive: int) -> None:
    """Raise :class:`ConfigError` naming the first argument of a ViT that cannot be built, and the fix."""
    if global_pool not in GLOBAL_POOLS:
        raise ConfigError(f"unknown global_pool '{global_pool}'; choose one of {GLOBAL_POOLS}")
    if pos_embed not in POS_EMBEDS:
        raise ConfigError(f"unknown pos_embed '{pos_embed}'; choose one of {POS_EMBEDS}")
    if global_pool == "token" and not class_token:
        raise ConfigError("global_pool='token' needs class_token=True; set global_pool='avg' or class_token=True")
    for name, value in positive.items():
        if int(value) <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    if num_classes < 0:
        raise ConfigError(f"num_classes must be >= 0, got {num_classes}")
    if not norm_eps > 0:
        raise ConfigError(f"norm_eps must be > 0, got {norm_eps}")
    if representation_size is not None and int(representation_size) <= 0:
        raise ConfigError(f"representation_size must be a positive integer or None, got {representation_size}")


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
            as in the paper's hybrid; see :func:`vitlab.nn.blocks.conv_stem`). timm, Hugging Face and
            torchvision have no such stem: conversions refuse it by name.
        fc_norm: ``True``: the final LayerNorm acts on the pooled vector (parameters ``pooled_norm.*``);
            ``False``: on every token before pooling (``norm.*``); ``None``: ``True`` for ``"avg"``, ``False`` for
            ``"token"`` (as timm).
        no_embed_class: the position embedding covers the patches only (N rows); the class token gets none.
        norm_eps: epsilon of every LayerNorm.
        representation_size: if given, a pre-logits layer Linear(D, this) + tanh before the head.

    Attributes:
        class_token_shortcut: ``False`` (default); set ``True`` to run the last block for the class token alone
            when pooling by the class token (:meth:`forward`).
    """

    num_extra_tokens: int = 0  # tokens a subclass adds after the class token (DeiT's distillation token: 1)

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
        fc_norm: bool | None = None,
        no_embed_class: bool = False,
        norm_eps: float = 1e-6,
        representation_size: int | None = None,
        stem: str = "linear",
    ) -> None:
        super().__init__()
        _check_arguments(global_pool, pos_embed, class_token, num_classes, norm_eps, representation_size,
                         in_chans=in_chans, embed_dim=embed_dim, depth=depth, num_heads=num_heads)
        fc_norm = (global_pool == "avg") if fc_norm is None else bool(fc_norm)
        # the arguments this model was built with (adapt_pretrained and exports rebuild from them)
        self.config: dict[str, Any] = dict(
            img_size=_pair(img_size), patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            class_token=class_token, global_pool=global_pool, pos_embed=pos_embed,
            sincos_convention=sincos_convention, act=act, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate, layer_scale_init=layer_scale_init, fc_norm=fc_norm,
            no_embed_class=no_embed_class, norm_eps=norm_eps, representation_size=representation_size, stem=stem,
        )
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.global_pool = global_pool
        self.pos_embed_type = pos_embed
        self.sincos_convention = sincos_convention
        self.num_prefix_tokens = (1 if class_token else 0) + self.num_extra_tokens
        self.fc_norm = fc_norm
        self.no_embed_class = bool(no_embed_class)
        self.norm_eps = float(norm_eps)
        self.class_token_shortcut = False  # public switch, see forward(); an execution choice, not in config

        self._build_embedding(_pair(img_size), patch_size, in_chans, class_token, pos_embed, drop_rate, stem)
        drop_paths = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, act=act, drop=drop_rate,
                  attn_drop=attn_drop_rate, drop_path=drop_paths[i], layer_scale_init=layer_scale_init,
                  norm_eps=norm_eps)
            for i in range(depth)
        )
        self._build_head(representation_size, drop_rate)
        self.reset_parameters()

    def _build_embedding(self, img_size: tuple[int, int], patch_size: int, in_chans: int, class_token: bool,
                         pos_embed: str, drop_rate: float, stem: str) -> None:
        """Eq. 1's pieces: the patch embedding, the class token and the position embedding."""
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, self.embed_dim, stem=stem)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim)) if class_token else None
        num_positions = self.patch_embed.num_patches + self.pos_prefix_tokens
        self.pos_embed: nn.Module | None = None
        if pos_embed == "learn":
            self.pos_embed = LearnedPositionEmbedding(num_positions, self.embed_dim)
        elif pos_embed == "sincos":
            self.register_buffer("sincos_embed", self._build_sincos(), persistent=False)
        self.pos_drop = nn.Dropout(drop_rate)

    def _build_head(self, representation_size: int | None, drop_rate: float) -> None:
        """Eq. 4's final LayerNorm (before or after pooling), the optional pre-logits layer, and the head."""
        # One final LayerNorm, named for where it acts (the other slot is an identity); registered next to each
        # other so that the parameter order (which optimizer state is keyed by) is that of the one-norm layout.
        final_norm = nn.LayerNorm(self.embed_dim, eps=self.norm_eps)
        self.norm: nn.Module = nn.Identity() if self.fc_norm else final_norm  # on every token (B, T, D)
        self.pooled_norm: nn.Module = final_norm if self.fc_norm else nn.Identity()  # on the pooled vector (B, D)
        self.pre_logits: nn.Module = nn.Identity()
        head_in = self.embed_dim
        if representation_size is not None:
            head_in = int(representation_size)
            self.pre_logits = nn.Sequential(OrderedDict(fc=nn.Linear(self.embed_dim, head_in), act=nn.Tanh()))
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(head_in, self.num_classes) if self.num_classes > 0 else nn.Identity()

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
    def pos_prefix_tokens(self) -> int:
        """Prefix tokens (class token) that have a row in the position embedding (0 with ``no_embed_class``)."""
        return 0 if self.no_embed_class else self.num_prefix_tokens

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
        self.config["img_size"] = new.img_size
        if isinstance(self.pos_embed, LearnedPositionEmbedding):
            resampled = resample_pos_embed(self.pos_embed.weight.data, new.grid_size, old_grid, self.pos_prefix_tokens)
            self.pos_embed.weight = nn.Parameter(resampled)
        elif self.pos_embed_type == "sincos":
            self.sincos_embed = self._build_sincos().to(self.sincos_embed)

    # ---------------------------------------------------------------------------------------- forward
    def embed(self, x: Tensor) -> Tensor:
        """Eq. 1. x: (B, C, H, W) -> z_0: (B, prefix + N, D)."""
        tokens = self.patch_embed(x)
        if self.pos_embed_type == "sincos":
            tokens = tokens + self.sincos_embed.to(tokens.dtype)
        learned = isinstance(self.pos_embed, LearnedPositionEmbedding)
        if learned and self.no_embed_class:
            tokens = self.pos_embed(tokens)
        prefix = self.prefix_tokens(tokens.shape[0])
        if prefix:
            tokens = torch.cat([*prefix, tokens], dim=1)
        if learned and not self.no_embed_class:
            tokens = self.pos_embed(tokens)
        return self.pos_drop(tokens)

    def prefix_tokens(self, batch: int) -> list[Tensor]:
        """The learned tokens put before the patches, each (B, 1, D): the class token, if any."""
        return [self.cls_token.expand(batch, -1, -1)] if self.cls_token is not None else []

    def forward_features(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> tokens (B, prefix + N, D) after the last block, each token normalised by ``norm``
        (eq. 4; an identity with ``fc_norm``)."""
        tokens = self.embed(x)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def pool(self, tokens: Tensor) -> Tensor:
        """tokens (B, prefix + N, D) -> (B, D): the class token or the mean of the patches, then ``pooled_norm``
        (the final LayerNorm with ``fc_norm``, else an identity)."""
        pooled = tokens[:, 0] if self.global_pool == "token" else tokens[:, self.num_prefix_tokens :].mean(dim=1)
        return self.pooled_norm(pooled)

    def forward_head(self, tokens: Tensor, pre_logits: bool = False) -> Tensor:
        """tokens (B, prefix + N, D) -> logits (B, K), or the pooled features (B, D or representation_size)
        if ``pre_logits``."""
        pooled = self.head_drop(self.pre_logits(self.pool(tokens)))
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> logits (B, K): ``forward_head(forward_features(x))``.

        With :attr:`class_token_shortcut` set (and class-token pooling), only the class token of the last block
        reaches the head (eq. 4), so the last block is run for that one query (:func:`class_token_block`): the
        same logits and gradients up to float rounding, for about a sixth of a block's cost (ViT-Ti/4 training
        step: 7-8 % faster, docs/vit.md). Hooks on the last block or on ``norm`` then see the class token's row
        only.
        """
        if not (self.class_token_shortcut and self.global_pool == "token" and len(self.blocks) > 0):
            return self.forward_head(self.forward_features(x))
        tokens = self.embed(x)
        for block in self.blocks[:-1]:
            tokens = block(tokens)
        first = class_token_block(self.blocks[-1], tokens)
        return self.forward_head(self.norm(first))

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


# ------------------------------------------------------------------------ class-token shortcut
def _can_shortcut(block: nn.Module) -> bool:
    """Whether :func:`class_token_block` may compute ``block`` for the class token alone.

    It may when the block is vitlab's :class:`Block` with its :class:`Attention`, and every module that the shortcut
    calls on the class-token row alone (``attn.proj``, ``norm2``, ``mlp.fc1``/``fc2``, LayerScale, dropout,
    drop path) is a plain per-row module: an ``nn.Linear`` (or a subclass, e.g. a LoRA wrapper),
    ``nn.LayerNorm``, ... A dynamically quantized Linear is not per-row (its activation scale is computed
    from the whole input tensor), so a quantized block runs in full. ``norm1`` and ``attn.qkv`` are called
    on every token, exactly as the full block calls them, so they may be anything.
    """
    if type(block) is not Block or type(block.attn) is not Attention or type(block.mlp) is not Mlp:
        return False
    mlp = block.mlp
    linear_ok = all(isinstance(m, nn.Linear) for m in (block.attn.proj, mlp.fc1, mlp.fc2))
    norm_ok = isinstance(block.norm2, nn.LayerNorm)
    scale_ok = all(isinstance(m, (nn.Identity, LayerScale)) for m in (block.ls1, block.ls2))
    drop_ok = all(isinstance(m, (nn.Dropout, DropPath, nn.Identity)) for m in (block.attn.proj_drop, mlp.drop,
                                                                                block.drop_path1, block.drop_path2))
    return linear_ok and norm_ok and scale_ok and drop_ok and isinstance(mlp.act, nn.Module)


def class_token_block(block: nn.Module, tokens: Tensor) -> Tensor:
    """Output of ``block`` at the class token (position 0) alone: ``block(tokens)[:, :1]``, computed cheaply.

    Eqs. 2-3 at one position: the class token's query attends to the keys and values of all tokens, then the
    projection, the MLP and both residuals act on that one row. ``norm1`` and the qkv projection still run
    on every token (3D² per token), but attention has one query and the output projection and MLP (9D² per
    token) run for one token. Every step calls the block's own modules (so a LoRA-wrapped ``qkv`` or a
    replaced activation is used); when the shortcut cannot keep the full block's semantics (quantized or
    non-row-wise modules, a block that is not vitlab's :class:`Block`; see :func:`_can_shortcut`) the full
    block runs and its first row is returned.

    Args:
        block: a transformer block, normally a pre-norm :class:`~vitlab.nn.blocks.Block`.
        tokens: (B, N, D) input of the block.

    Returns:
        (B, 1, D).
    """
    if not _can_shortcut(block):
        return block(tokens)[:, :1]
    attn = block.attn
    batch, _, dim = tokens.shape
    q, k, v = attn.split_heads(block.norm1(tokens))  # each (B, h, N, D/h); calls attn.qkv on all tokens
    dropout_p = attn.attn_drop if attn.training else 0.0
    out = F.scaled_dot_product_attention(q[:, :, :1], k, v, dropout_p=dropout_p)
    out = out.transpose(1, 2).reshape(batch, 1, dim)
    x = tokens[:, :1] + block.drop_path1(block.ls1(attn.proj_drop(attn.proj(out))))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


# ------------------------------------------------------------------------ weights written before pooled_norm
POOLED_NORM_KEYS = ("pooled_norm.weight", "pooled_norm.bias")  # a bare ViT with its norm after pooling has these


def migrate_vit_state_dict(state_dict: Mapping[str, Tensor], expected: Iterable[str]) -> dict[str, Tensor]:
    """A vitlab state dict written before the after-pooling norm was named ``pooled_norm``, in today's names.

    Why: until issue 25 a vitlab ViT kept its one final LayerNorm under ``norm.*`` wherever it acted, and only
    the constructor's ``fc_norm`` said whether that was on every token (timm's ``norm`` slot) or on the pooled
    vector (timm's ``fc_norm`` slot). A timm ``*_gap_*`` checkpoint (norm before pooling) therefore loaded with
    "all keys matched" into a model that normalises after pooling, and its logits were wrong. Now the
    after-pooling norm is ``pooled_norm.*``, so that mistake fails a strict load; vitlab's own weights from
    before (run folders, checkpoints, EMA state, exports) use the old name and are renamed here.

    A ViT (at any prefix P) is migrated when the model expects ``P.pooled_norm.weight`` and no ``P.norm.weight``
    (its norm acts after pooling) and the dict has ``P.norm.*`` but no ``P.pooled_norm.*``: then ``P.norm.*``
    becomes ``P.pooled_norm.*``. Anything else is returned unchanged (as a new dict, in the same order), so the
    call is safe on today's dicts and on other models. Call it only on vitlab's own state dicts: a converted
    timm / Hugging Face / torchvision dict with ``norm.*`` holds a norm on every token, and renaming it would
    bring back the silent mismatch this naming exists to catch.

    Args:
        state_dict: name -> tensor, as a vitlab model saved it.
        expected: the names the model loading it has (``model.state_dict()``, or its keys).

    Returns:
        The state dict in today's names.
    """
    wanted = set(expected)
    renames: dict[str, str] = {}
    for key in wanted:
        if not key.endswith(POOLED_NORM_KEYS[0]):
            continue
        prefix = key[: -len(POOLED_NORM_KEYS[0])]
        if prefix and not prefix.endswith("."):
            continue
        old, new = prefix + "norm.", prefix + "pooled_norm."
        if old + "weight" in wanted or old + "weight" not in state_dict or new + "weight" in state_dict:
            continue
        renames.update({name: new + name[len(old) :] for name in state_dict if name.startswith(old)})
    return {renames.get(name, name): value for name, value in state_dict.items()}


# ------------------------------------------------------------------------------------- named sizes
def _vit(defaults: dict[str, Any], overrides: dict[str, Any]) -> VisionTransformer:
    return VisionTransformer(**{**defaults, **overrides})


@register_model
def vit_mnist_conv4_28(**overrides: Any) -> VisionTransformer:
    """The default recipe's ViT for 28×28 grayscale digits: a convolutional stem of two stride-2 3×3 convolutions
    (Xiao et al. 2021) to a 7×7 grid of 49 tokens, D=48, 4 blocks of 4 heads, MLP ratio 2, mean pooling (92 k
    parameters). Chosen by measurement on the embedded mnist5k set (docs/results/train_mnist5k.md)."""
    return _vit(
        dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=48, depth=4, num_heads=4, mlp_ratio=2.0,
             stem="conv", class_token=False, global_pool="avg"),
        overrides,
    )


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
    "count_parameters",
    "migrate_vit_state_dict",
]
