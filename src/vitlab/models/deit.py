"""DeiT's distilled ViT (Touvron et al. 2021, "Training data-efficient image transformers & distillation through
attention", Sec. 4, Fig. 2).

A *distillation token* joins the class token: the input sequence is

    z_0 = [x_class; x_distill; x_p^1 E; ...; x_p^N E] + E_pos,    E_pos ∈ R^{(N+2)×D},

both tokens go through every block like the patches, and each has its own linear head on the last block's
output: the class head is trained on the true label, the distillation head on the teacher's output
(:mod:`vitlab.distillation`). At test time the paper *adds the two heads' softmax outputs*; timm and Hugging
Face return the *mean of the two heads' logits*. vitlab returns the mean of the logits too: its argmax is the
paper's "late fusion" in all but near-ties, it keeps the output a logit (so the loss, calibration and export code
serve it unchanged), and it is what timm's ``deit_*_distilled`` checkpoints produce, so conversions can be
checked against timm exactly.

Training (``distilled_training = True`` and ``model.train()``): ``forward`` returns ``(class_logits,
distillation_logits)``; otherwise the mean of the two. The class-token shortcut does not apply (two tokens
reach the heads); attention maps and rollout work on N + 2 tokens (the rollout reads the class token's row).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vitlab.errors import ConfigError
from vitlab.models.registry import register_model
from vitlab.models.vit import VisionTransformer

__all__ = ["DistilledVisionTransformer", "vit_from_config"]


class DistilledVisionTransformer(VisionTransformer):
    """A ViT with DeiT's distillation token and head (class-token pooling; see the module docstring).

    Args:
        **kwargs: the :class:`~vitlab.models.vit.VisionTransformer` arguments; ``class_token`` must be True,
            ``global_pool`` ``"token"``, ``fc_norm`` False, and ``no_embed_class`` / ``representation_size`` are
            not supported (DeiT has neither).
    """

    num_extra_tokens = 1

    def __init__(self, **kwargs: Any) -> None:
        for key, allowed in (("class_token", True), ("global_pool", "token"), ("no_embed_class", False),
                             ("representation_size", None)):
            if kwargs.get(key, allowed) != allowed:
                raise ConfigError(f"a distilled ViT needs {key}={allowed!r} (DeiT's layout), got {kwargs[key]!r}")
        if kwargs.get("fc_norm"):  # the norm after pooling would reach the class token only, not head_dist's
            raise ConfigError("a distilled ViT needs fc_norm=False (DeiT's layout: the final norm on every token, "
                              "so both heads read normalised tokens), got fc_norm=True")
        super().__init__(**kwargs)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.head_dist = nn.Linear(self.embed_dim, self.num_classes) if self.num_classes > 0 else nn.Identity()
        self.distilled_training = False  # forward returns both heads' logits while training (set by the task)
        self.config["distilled"] = True  # what vit_from_config rebuilds
        nn.init.trunc_normal_(self.dist_token, std=0.02)
        if isinstance(self.head_dist, nn.Linear):
            nn.init.trunc_normal_(self.head_dist.weight, std=0.02)
            nn.init.zeros_(self.head_dist.bias)

    def prefix_tokens(self, batch: int) -> list[Tensor]:
        """The class token, then the distillation token: each (B, 1, D)."""
        return [*super().prefix_tokens(batch), self.dist_token.expand(batch, -1, -1)]

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"dist_token"}

    def forward_head(self, tokens: Tensor, pre_logits: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """tokens (B, 2 + N, D) -> the class head's and the distillation head's logits (B, K): a pair while
        training with ``distilled_training``, else their mean; with ``pre_logits`` the class token's features."""
        if pre_logits:
            return super().forward_head(tokens, pre_logits=True)
        cls_logits = super().forward_head(tokens)
        dist_logits = self.head_dist(self.head_drop(tokens[:, 1]))
        if self.training and self.distilled_training:
            return cls_logits, dist_logits
        return (cls_logits + dist_logits) / 2

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """x: (B, C, H, W) -> ``forward_head(forward_features(x))`` (no class-token shortcut: two tokens are read)."""
        return self.forward_head(self.forward_features(x))


def vit_from_config(config: dict[str, Any]) -> VisionTransformer:
    """The ViT a ``model.config`` (or the keyword arguments a converter read) describes: a
    :class:`DistilledVisionTransformer` when it says ``distilled: True``, else a plain
    :class:`~vitlab.models.vit.VisionTransformer`."""
    kwargs = dict(config)
    if kwargs.pop("distilled", False):
        return DistilledVisionTransformer(**kwargs)
    return VisionTransformer(**kwargs)


# ------------------------------------------------------------------------------------- named sizes
def _deit(defaults: dict[str, Any], overrides: dict[str, Any]) -> DistilledVisionTransformer:
    return DistilledVisionTransformer(**{**defaults, **overrides})


@register_model
def deit_tiny_distilled_patch16_224(**overrides: Any) -> DistilledVisionTransformer:
    """DeiT-Ti⚗: D=192, 12 blocks, 3 heads, 224×224, 16×16 patches (Touvron et al. 2021, Table 1)."""
    return _deit(dict(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3), overrides)


@register_model
def deit_small_distilled_patch16_224(**overrides: Any) -> DistilledVisionTransformer:
    """DeiT-S⚗: D=384, 12 blocks, 6 heads, 224×224, 16×16 patches."""
    return _deit(dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6), overrides)


@register_model
def deit_base_distilled_patch16_224(**overrides: Any) -> DistilledVisionTransformer:
    """DeiT-B⚗: D=768, 12 blocks, 12 heads, 224×224, 16×16 patches."""
    return _deit(dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12), overrides)


@register_model
def deit_mnist_conv4_28(**overrides: Any) -> DistilledVisionTransformer:
    """The default recipe's ViT for 28×28 grayscale digits (convolutional stem to a 7×7 grid, D=48, 4 blocks of 4
    heads, MLP ratio 2) with DeiT's class and distillation tokens and two heads."""
    return _deit(dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=48, depth=4, num_heads=4,
                      mlp_ratio=2.0, stem="conv"), overrides)
