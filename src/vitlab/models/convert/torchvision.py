"""torchvision ``VisionTransformer`` weights in and out of vitlab's ViT (no torchvision import at run time).

torchvision's names: ``conv_proj`` (patch embedding), ``class_token``, ``encoder.pos_embedding``,
``encoder.layers.encoder_layer_i.{ln_1, self_attention.{in_proj_weight, in_proj_bias, out_proj}, ln_2,
mlp.0, mlp.3}`` (checkpoints before torchvision 0.13: ``mlp.linear_1`` / ``mlp.linear_2``), ``encoder.ln``,
``heads.head`` and, with ``representation_size``, ``heads.pre_logits`` (+ tanh). ``nn.MultiheadAttention``'s
``in_proj`` rows are [q; k; v] like vitlab's fused qkv, always with a bias. The layout is class-token
pooling with the final LayerNorm on every token (vitlab ``global_pool="token"``, ``fc_norm=False``),
erf GELU, square images. A state dict does not record the number of heads: it is read from the width for
the published sizes (ViT-B 12, ViT-L 16, ViT-H 16) or passed as ``num_heads``. Nor does it record the
LayerNorm eps (torchvision's default 1e-6; any other is built with ``norm_layer``): it is passed as
``norm_eps`` or assumed to be 1e-6, and noted. Exports pass the model's eps through to ``norm_layer``.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor, nn

from vitlab.models.convert.common import (
    TORCHVISION_HEADS,
    ConvertError,
    infer_num_heads,
    patch_from_conv,
    square_grid,
)
from vitlab.models.convert.timm import mlp_ratio_for
from vitlab.models.vit import VisionTransformer

__all__ = ["convert_torchvision_state_dict", "convert_to_torchvision_state_dict", "torchvision_kwargs",
           "torchvision_config_from_state_dict"]

_LAYER_PREFIX = "encoder.layers.encoder_layer_"
_PARTS = {
    "ln_1": "norm1",
    "self_attention.out_proj": "attn.proj",
    "ln_2": "norm2",
    "mlp.0": "mlp.fc1",
    "mlp.linear_1": "mlp.fc1",
    "mlp.3": "mlp.fc2",
    "mlp.linear_2": "mlp.fc2",
}


def convert_torchvision_state_dict(state_dict: dict[str, Tensor], source: str = "torchvision ViT") -> dict[str, Tensor]:
    """Map torchvision ``VisionTransformer`` weights to vitlab's names.

    Raises:
        ConvertError: a convolutional stem (``conv_stem_configs``) or any key with no vitlab counterpart.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("conv_proj.") and key.count(".") == 1:
            out["patch_embed.proj." + key.split(".")[1]] = value
        elif key.startswith("conv_proj."):
            raise ConvertError(f"{source}: key '{key}' belongs to a convolutional stem (conv_stem_configs), which "
                               "vitlab's ViT does not have")
        elif key == "class_token":
            out["cls_token"] = value
        elif key == "encoder.pos_embedding":
            out["pos_embed.weight"] = value
        elif key.startswith("encoder.ln."):
            out["norm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("heads.head."):
            out["head." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("heads.pre_logits."):
            out["pre_logits.fc." + key.rsplit(".", 1)[1]] = value
        elif key.startswith(_LAYER_PREFIX):
            index, rest = key[len(_LAYER_PREFIX) :].split(".", 1)
            if rest in ("self_attention.in_proj_weight", "self_attention.in_proj_bias"):
                out[f"blocks.{index}.attn.qkv.{rest.rsplit('_', 1)[1]}"] = value
                continue
            part, leaf = rest.rsplit(".", 1)
            if part not in _PARTS:
                raise ConvertError(f"{source}: key '{key}' has no counterpart in vitlab's ViT")
            out[f"blocks.{index}.{_PARTS[part]}.{leaf}"] = value
        else:
            raise ConvertError(f"{source}: key '{key}' has no counterpart in vitlab's ViT")
    return out


def torchvision_config_from_state_dict(
    state_dict: dict[str, Tensor],
    source: str = "torchvision ViT",
    num_heads: int | None = None,
    norm_eps: float | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """:class:`VisionTransformer` keyword arguments of a torchvision ViT state dict (torchvision names).

    Args:
        state_dict: torchvision names.
        source: how messages name the checkpoint.
        num_heads: needed unless the width is a published size's.
        norm_eps: LayerNorm eps of every norm (default 1e-6, torchvision's; noted).

    Returns:
        (keyword arguments, notes on what was assumed).
    """
    notes: list[str] = []
    conv = state_dict.get("conv_proj.weight")
    pos = state_dict.get("encoder.pos_embedding")
    if conv is None or pos is None:
        raise ConvertError(f"{source}: no conv_proj.weight or encoder.pos_embedding; not a torchvision ViT checkpoint")
    dim = int(conv.shape[0])
    in_chans, patch = patch_from_conv(conv, source)
    grid = square_grid(int(pos.shape[1]) - 1, source)
    indices = {int(k[len(_LAYER_PREFIX) :].split(".")[0]) for k in state_dict if k.startswith(_LAYER_PREFIX)}
    if not indices or indices != set(range(len(indices))):
        raise ConvertError(f"{source}: encoder layers {sorted(indices)} are not 0..N-1; the checkpoint is incomplete")
    fc1 = state_dict.get("encoder.layers.encoder_layer_0.mlp.0.weight",
                         state_dict.get("encoder.layers.encoder_layer_0.mlp.linear_1.weight"))
    if fc1 is None:
        raise ConvertError(f"{source}: no MLP weights in encoder_layer_0; the checkpoint is incomplete")
    head = state_dict.get("heads.head.weight")
    pre = state_dict.get("heads.pre_logits.weight")
    if norm_eps is None:
        norm_eps = 1e-6
        notes.append("LayerNorm eps 1e-6 assumed (torchvision's default; a state dict does not record it)")
    kwargs = dict(
        img_size=(grid[0] * patch, grid[1] * patch),
        patch_size=patch,
        in_chans=in_chans,
        num_classes=0 if head is None else int(head.shape[0]),
        embed_dim=dim,
        depth=len(indices),
        num_heads=infer_num_heads(dim, num_heads, source, notes, widths=TORCHVISION_HEADS),
        mlp_ratio=mlp_ratio_for(int(fc1.shape[0]), dim),
        qkv_bias=True,
        class_token=True,
        global_pool="token",
        pos_embed="learn",
        act="gelu",
        fc_norm=False,
        norm_eps=float(norm_eps),
        representation_size=None if pre is None else int(pre.shape[0]),
    )
    return kwargs, notes


def convert_to_torchvision_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """vitlab names → torchvision names (the inverse of :func:`convert_torchvision_state_dict`, new-style MLP)."""
    inverse = {"norm1": "ln_1", "attn.proj": "self_attention.out_proj", "norm2": "ln_2", "mlp.fc1": "mlp.0",
               "mlp.fc2": "mlp.3"}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("patch_embed.proj."):
            out["conv_proj." + key.rsplit(".", 1)[1]] = value
        elif key == "cls_token":
            out["class_token"] = value
        elif key == "pos_embed.weight":
            out["encoder.pos_embedding"] = value
        elif key.startswith("norm."):
            out["encoder.ln." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("head."):
            out["heads.head." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("pre_logits.fc."):
            out["heads.pre_logits." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            part, leaf = rest.rsplit(".", 1)
            layer = f"{_LAYER_PREFIX}{index}."
            if part == "attn.qkv":
                out[f"{layer}self_attention.in_proj_{leaf}"] = value
            else:
                out[f"{layer}{inverse[part]}.{leaf}"] = value
        else:
            raise ConvertError(f"vitlab key '{key}' has no torchvision ViT counterpart")
    return out


def torchvision_kwargs(model: VisionTransformer) -> dict[str, Any]:
    """Keyword arguments for ``torchvision.models.vision_transformer.VisionTransformer`` matching ``model``.

    The LayerNorm eps is passed through as ``norm_layer=partial(nn.LayerNorm, eps=model.norm_eps)`` (any eps:
    torchvision's 1e-6, Hugging Face's 1e-12, ...); load such weights back with ``norm_eps``.

    Raises:
        ConvertError: a layout torchvision's ViT cannot express (average pooling, no class token, non-square
            input, no qkv bias, LayerScale, an activation other than erf GELU, ...).
    """
    first = model.blocks[0]
    reasons = []
    if model.global_pool != "token" or model.fc_norm or model.cls_token is None:
        reasons.append("pooling other than the class token with a norm on every token")
    if model.pos_embed_type != "learn" or model.no_embed_class:
        reasons.append("a position embedding other than learned on every token")
    if model.img_size[0] != model.img_size[1]:
        reasons.append("non-square input")
    if first.attn.qkv.bias is None:
        reasons.append("qkv without bias")
    if not isinstance(first.ls1, nn.Identity):
        reasons.append("LayerScale")
    if type(first.mlp.act) is not nn.GELU or first.mlp.act.approximate != "none":
        act = model.config.get("act", type(first.mlp.act).__name__)
        reasons.append(f"MLP activation {act!r} (torchvision's blocks use the exact erf GELU)")
    if reasons:
        raise ConvertError(
            f"torchvision's ViT cannot express this model's {', '.join(reasons)}; export to timm instead"
        )
    return dict(
        image_size=model.img_size[0],
        patch_size=model.patch_embed.patch_size,
        num_layers=len(model.blocks),
        num_heads=first.attn.num_heads,
        hidden_dim=model.embed_dim,
        mlp_dim=first.mlp.fc1.out_features,
        num_classes=model.num_classes,
        representation_size=None if isinstance(model.pre_logits, nn.Identity) else model.pre_logits.fc.out_features,
        norm_layer=functools.partial(nn.LayerNorm, eps=model.norm_eps),
    )
