"""timm ``VisionTransformer`` weights in and out of vitlab's ViT (no timm import at run time).

timm's names are vitlab's names except ``pos_embed`` (vitlab: ``pos_embed.weight``) and the final norm after
pooling: timm has two slots, ``norm`` (on every token) and ``fc_norm`` (after pooling), exactly one of them a
LayerNorm; vitlab names them ``norm`` and ``pooled_norm`` (its constructor flag ``fc_norm`` says which one is
the LayerNorm). The names carry the placement both ways, so both average-pool layouts (timm's default
``fc_norm=True`` and the ``vit_base_patch16_gap_224`` layout ``fc_norm=False``) convert exactly, and a dict
of one layout fails a strict load into a model of the other. What a state dict does not record
(the number of heads for a non-standard width, LayerNorm eps, the MLP activation, whether a model with a
class token pooled it or averaged, and the image size: a table of N position rows fits several grids) is
taken from arguments or a timm Hub ``config.json``, and the report says what was assumed (for the grid: a
square one, see :func:`square_reading`). Features vitlab's ViT lacks (register tokens, a pre-norm, q/k
norm, attention pooling, distillation tokens, ...) are refused by name.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from torch import Tensor, nn

from vitlab.models.convert.common import (
    ConvertError,
    check_keys,
    infer_num_heads,
    patch_from_conv,
)
from vitlab.models.deit import vit_from_config
from vitlab.models.vit import POOLED_NORM_KEYS, VisionTransformer, migrate_vit_state_dict

__all__ = [
    "convert_timm_state_dict",
    "convert_to_timm_state_dict",
    "square_reading",
    "timm_config_from_state_dict",
    "timm_kwargs",
    "vit_from_timm",
]

# timm key fragments of features vitlab's ViT does not have, with the feature's name for the message
_UNSUPPORTED = (
    ("reg_token", "register tokens (reg_tokens)"),
    ("norm_pre.", "a pre-norm after the embedding (pre_norm=True)"),
    ("attn_pool.", "attention pooling (global_pool='map')"),
    (".q_norm.", "q/k normalisation (qk_norm=True)"),
    (".k_norm.", "q/k normalisation (qk_norm=True)"),
    (".attn.norm.", "a norm inside attention (scale_attn_norm=True)"),
    (".mlp.norm.", "a norm inside the MLP (scale_mlp_norm=True)"),
    ("patch_embed.norm.", "a norm after the patch embedding"),
    ("patch_embed.backbone.", "a hybrid CNN stem"),
)
_SHARED_ROOTS = {"cls_token", "dist_token", "patch_embed", "blocks", "norm", "head", "head_dist", "pre_logits"}
_TIMM_POOLED, _VITLAB_POOLED = "fc_norm.", "pooled_norm."  # the norm after pooling in each library's names


def _refuse_unsupported(keys: list[str], source: str) -> None:
    for key in keys:
        for fragment, feature in _UNSUPPORTED:
            if fragment in key:
                raise ConvertError(f"{source}: timm key '{key}' belongs to {feature}, which vitlab's ViT does not have")


def convert_timm_state_dict(state_dict: dict[str, Tensor], source: str = "timm state dict") -> dict[str, Tensor]:
    """Map a timm ``VisionTransformer`` state dict to vitlab's names.

    ``pos_embed`` → ``pos_embed.weight``; ``fc_norm.*`` → ``pooled_norm.*`` (load it into a model built with
    ``fc_norm=True``); every other supported key keeps its name (``norm.*``, the norm on every token, too).

    Raises:
        ConvertError: a feature vitlab's ViT lacks, both ``norm`` and ``fc_norm`` weights, or an unknown key.
    """
    keys = list(state_dict)
    _refuse_unsupported(keys, source)
    if any(k.startswith("fc_norm.") for k in keys) and any(k.startswith("norm.") for k in keys):
        raise ConvertError(f"{source}: has both norm.* and fc_norm.* weights (two final norms); vitlab's ViT has one")
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "pos_embed":
            converted["pos_embed.weight"] = value
        elif key.startswith(_TIMM_POOLED):
            converted[_VITLAB_POOLED + key[len(_TIMM_POOLED) :]] = value
        elif key.split(".")[0] in _SHARED_ROOTS:
            converted[key] = value
        else:
            raise ConvertError(f"{source}: timm key '{key}' has no counterpart in vitlab's VisionTransformer")
    return converted


def convert_to_timm_state_dict(
    state_dict: dict[str, Tensor], global_pool: str = "token", fc_norm: bool | None = None
) -> dict[str, Tensor]:
    """Inverse of :func:`convert_timm_state_dict`: vitlab names → timm names (``pooled_norm.*`` → ``fc_norm.*``).

    Args:
        state_dict: a vitlab ViT state dict; today's names say where the final norm acts.
        global_pool: the model's pooling (used for the default of ``fc_norm``).
        fc_norm: where the final norm acts (the model's ``fc_norm``); ``None``: ``global_pool == "avg"``. Read
            only for a dict written before ``pooled_norm`` existed (its ``norm.*`` then acted after pooling, see
            :func:`~vitlab.models.vit.migrate_vit_state_dict`).
    """
    if any(key.startswith("patch_embed.stem.") for key in state_dict):
        raise ConvertError("this vitlab ViT has a convolutional stem (stem='conv'), which timm's VisionTransformer "
                           "cannot express; export a model built with stem='linear'")
    after_pool = (global_pool == "avg") if fc_norm is None else fc_norm
    if after_pool:
        state_dict = migrate_vit_state_dict(state_dict, POOLED_NORM_KEYS)
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "pos_embed.weight":
            converted["pos_embed"] = value
        elif key.startswith(_VITLAB_POOLED):
            converted[_TIMM_POOLED + key[len(_VITLAB_POOLED) :]] = value
        else:
            converted[key] = value
    return converted


def _depth(keys: list[str], prefix: str, source: str) -> int:
    indices = {int(k[len(prefix) :].split(".")[0]) for k in keys if k.startswith(prefix)}
    if not indices:
        raise ConvertError(f"{source}: no transformer blocks ({prefix}N.*) found; is this a ViT checkpoint?")
    if indices != set(range(len(indices))):
        raise ConvertError(f"{source}: block indices {sorted(indices)} are not 0..{len(indices) - 1}; "
                           "the checkpoint is incomplete")
    return len(indices)


def mlp_ratio_for(hidden: int, dim: int) -> float:
    """A ratio r with int(dim · r) == hidden, as :class:`~vitlab.nn.blocks.Mlp` computes its width."""
    ratio = hidden / dim
    return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def square_reading(rows: int, prefix: int, source: str) -> tuple[tuple[int, int], bool]:
    """The square grid a position embedding of ``rows`` rows is read as when the image size is not known.

    A table of N rows fits several grids (any H·W = N or N − 1), so without the checkpoint's image size the
    reading is a rule, not a fact: every released timm / Hugging Face / torchvision ViT is square, so the square
    reading wins. First a class-token row plus an n×n grid (rows − prefix = n², the usual layout), then, for a
    model with a class token, an n×n grid without a class row (rows = n², DeiT-III's ``no_embed_class``). A
    non-square checkpoint whose table also fits one of these (e.g. 4×6 patches + class row = 25 = 5²) is misread
    unless its size is passed: the caller notes the assumption.

    Args:
        rows: the position embedding's rows.
        prefix: 1 with a class token, else 0.
        source: how messages name the checkpoint.

    Returns:
        ((n, n), no_embed_class).

    Raises:
        ConvertError: neither reading is a square grid (pass the checkpoint's image size).
    """
    side = math.isqrt(max(rows - prefix, 0))
    if side and side * side == rows - prefix:
        return (side, side), False
    side = math.isqrt(rows)
    if prefix and side * side == rows:
        return (side, side), True
    raise ConvertError(f"{source}: {rows} position-embedding rows are not a square grid"
                       f"{' (with or without a class-token row)' if prefix else ''}; pass source_img_size=(H, W), the "
                       "image size the checkpoint was trained on")


def _read_sizes(state_dict: dict[str, Tensor], keys: list[str], source: str) -> tuple[int, int, int, int, float]:
    """Width, input channels, patch size, depth and MLP ratio, read from the tensors' shapes."""
    conv = state_dict.get("patch_embed.proj.weight")
    if conv is None:
        raise ConvertError(f"{source}: no patch_embed.proj.weight; this is not a timm/vitlab ViT checkpoint")
    dim = int(conv.shape[0])
    in_chans, patch = patch_from_conv(conv, source)
    depth = _depth(keys, "blocks.", source)
    fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    if fc1 is None or fc1.dim() != 2:
        raise ConvertError(f"{source}: no 2-D blocks.0.mlp.fc1.weight; this is not a timm/vitlab ViT checkpoint")
    return dim, in_chans, patch, depth, mlp_ratio_for(int(fc1.shape[0]), dim)


def _checkpoint_img_size(
    img_size: int | tuple[int, int] | None, hub_config: dict[str, Any], model_args: dict[str, Any]
) -> Any:
    """The checkpoint's image size: the argument, else the Hub config's input size, else its ``model_args``."""
    if img_size is None and hub_config.get("pretrained_cfg", {}).get("input_size"):
        img_size = tuple(int(v) for v in hub_config["pretrained_cfg"]["input_size"][1:])
    if img_size is None and model_args.get("img_size") is not None:
        img_size = model_args["img_size"]
    return img_size


def _grid_of_image(rows: int, img_size: Any, patch: int, prefix: int, source: str) -> tuple[tuple[int, int], bool]:
    """The patch grid of a known image size, and whether the position table lacks the class-token row."""
    height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if height % patch or width % patch:
        raise ConvertError(f"{source}: image size {height}x{width} is not a multiple of the patch size {patch}")
    count = (height // patch) * (width // patch)
    if rows == count + prefix:
        no_embed_class = False
    elif rows == count and prefix:
        no_embed_class = True
    else:
        raise ConvertError(f"{source}: pos_embed has {rows} rows, but a {height}x{width} image in {patch}x{patch} "
                           f"patches has {count} (+{prefix} class token); pass source_img_size=(H, W), the "
                           "image size the checkpoint was trained on")
    return (height // patch, width // patch), no_embed_class


def _read_grid(
    pos: Tensor | None, img_size: Any, patch: int, prefix: int, no_embed_class: bool, source: str, notes: list[str]
) -> tuple[tuple[int, int], bool, str]:
    """The patch grid, ``no_embed_class`` and the position-embedding kind (``"learn"`` or ``"none"``)."""
    if pos is None:
        if img_size is None:
            raise ConvertError(f"{source}: no position embedding, so the grid is unknown; pass source_img_size=(H, W)")
        height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        notes.append("no position embedding in the weights: pos_embed='none'")
        return (height // patch, width // patch), no_embed_class, "none"
    rows = int(pos.shape[-2])
    if img_size is not None:
        grid, no_embed_class = _grid_of_image(rows, img_size, patch, prefix, source)
        return grid, no_embed_class, "learn"
    grid, no_embed_class = square_reading(rows, prefix, source)
    where = ("patches only (no_embed_class)" if no_embed_class
             else "class row + patches" if prefix else "patches")
    notes.append(f"square {grid[0]}x{grid[1]} patch grid assumed ({rows} position rows: {where}); pass "
                 f"source_img_size=(H, W) if the checkpoint was trained on a non-square image")
    return grid, no_embed_class, "learn"


def _read_global_pool(
    keys: list[str], pooled: str, class_token: bool, global_pool: str | None, hub_config: dict[str, Any],
    model_args: dict[str, Any], source: str, notes: list[str],
) -> tuple[str, bool]:
    """The pooling (``"token"`` or ``"avg"``), and whether the weights hold a norm after pooling (``pooled``*)."""
    has_fc = any(k.startswith(pooled) for k in keys)
    has_norm = any(k.startswith("norm.") for k in keys)
    if not has_fc and not has_norm:
        raise ConvertError(f"{source}: no final norm (norm.* or {pooled}*) found; vitlab's ViT needs one "
                           "(final_norm=False models are not supported)")
    if global_pool is None:
        global_pool = hub_config.get("global_pool") or model_args.get("global_pool")
    if global_pool is None:
        if not class_token:
            global_pool = "avg"
        elif has_fc:
            global_pool = "avg"
            notes.append(f"global_pool='avg' assumed ({pooled[:-1]} weights, a norm after pooling: the default for "
                         "average pooling); pass global_pool='token' if the source pooled the class token")
        else:
            global_pool = "token"
            notes.append("global_pool='token' assumed (the weights have a class token); pass global_pool='avg' "
                         "if the source model averaged the patch tokens")
    if global_pool not in ("token", "avg"):
        raise ConvertError(f"{source}: global_pool='{global_pool}' is not supported; vitlab pools 'token' or 'avg'")
    if model_args.get("pool_include_prefix"):
        raise ConvertError(f"{source}: pool_include_prefix=True (the class token in the average) is not supported")
    return global_pool, has_fc


def _read_fc_norm(
    names: str, has_fc: bool, fc_norm: bool | None, global_pool: str, source: str, notes: list[str]
) -> bool | None:
    """Whether the final norm acts after pooling: timm names tell; vitlab names tell unless only ``norm.*``."""
    if names == "timm":
        return has_fc
    if has_fc:
        if fc_norm is False:
            raise ConvertError(f"{source}: has pooled_norm.* weights (a norm after pooling) but fc_norm=False was "
                               "passed; drop fc_norm=False")
        return True
    if fc_norm is None:  # norm.*: today's name of the norm on every token
        fc_norm = False
        if global_pool == "avg":
            notes.append("fc_norm=False read from the weights (norm.*: LayerNorm on every token, then the mean); "
                         "vitlab weights saved before pooled_norm existed kept a norm after pooling under norm.*: "
                         "pass fc_norm=True for those")
    return fc_norm


def _read_eps_and_act(
    norm_eps: float | None, act: str | None, model_args: dict[str, Any], source: str, notes: list[str]
) -> tuple[Any, str]:
    """LayerNorm eps and MLP activation (a state dict records neither): argument, Hub ``model_args``, timm default."""
    eps = model_args.get("norm_eps") if norm_eps is None else norm_eps
    if eps is None:
        eps = 1e-6
        notes.append("LayerNorm eps 1e-6 assumed (timm's default; a state dict does not record it)")
    if act is None:
        act = str(model_args.get("act_layer") or "gelu")
        if "act_layer" not in model_args:
            notes.append("MLP activation 'gelu' (erf) assumed (timm's default; a state dict does not record it)")
    act = {"gelu_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu",
           "mish": "mish"}.get(act, act)
    if act not in ("gelu", "gelu_tanh", "relu", "silu", "mish"):
        raise ConvertError(f"{source}: MLP activation '{act}' is not supported (gelu, gelu_tanh, relu, silu, mish)")
    return eps, act


def timm_config_from_state_dict(
    state_dict: dict[str, Tensor],
    source: str = "timm state dict",
    *,
    names: str = "timm",
    img_size: int | tuple[int, int] | None = None,
    num_heads: int | None = None,
    global_pool: str | None = None,
    fc_norm: bool | None = None,
    norm_eps: float | None = None,
    act: str | None = None,
    hub_config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Read the :class:`VisionTransformer` keyword arguments from a timm (or vitlab) state dict.

    Sizes come from the tensors: width, channels and patch size from ``patch_embed.proj.weight`` (D, C, P, P),
    depth from the block indices, MLP width from ``fc1``, classes from ``head``, the grid from ``pos_embed``
    and ``img_size`` (or the Hub config's input size); without either, the square reading of
    :func:`square_reading`, with a note saying so. LayerScale / qkv bias / class token come from the keys present.

    Args:
        state_dict: timm names (``names="timm"``) or vitlab names (``names="vitlab"``).
        source: how messages name the checkpoint.
        img_size: the checkpoint's (H, W) (``load_pretrained``'s ``source_img_size``), needed for a non-square
            grid or no position embedding; without it a square grid is assumed and noted.
        num_heads: needed unless ``hub_config`` records it (``model_args``) or names a plain timm ViT
            (``vit_base_patch16_224``...); a state dict does not record it.
        global_pool: ``"token"`` or ``"avg"``; default from ``hub_config``, else ``"avg"`` without a class
            token or with weights of a norm after pooling (timm ``fc_norm``, vitlab ``pooled_norm``), else
            ``"token"`` (noted).
        fc_norm: vitlab names only, for weights saved before ``pooled_norm`` existed, whose ``norm.*`` may have
            acted after pooling (``True``; they are then migrated by the caller, see
            :func:`~vitlab.models.vit.migrate_vit_state_dict`); otherwise the names tell (``pooled_norm.*``: after
            pooling, ``norm.*``: on every token).
        norm_eps: LayerNorm eps (default 1e-6, timm's; noted).
        act: MLP activation (default ``"gelu"``, the erf form; noted).
        hub_config: a timm Hub ``config.json`` (``architecture``, ``global_pool``, ``pretrained_cfg``,
            ``model_args``) whose values take precedence over guesses.

    Returns:
        (keyword arguments, notes on what was assumed).
    """
    notes: list[str] = []
    hub_config = hub_config or {}
    model_args = dict(hub_config.get("model_args") or {})
    keys = list(state_dict)
    _refuse_unsupported(keys, source)
    dim, in_chans, patch, depth, mlp_ratio = _read_sizes(state_dict, keys, source)
    class_token = "cls_token" in state_dict
    distilled = "dist_token" in state_dict  # DeiT: a second prefix token with its own head
    pos = state_dict.get("pos_embed" if names == "timm" else "pos_embed.weight")
    grid, no_embed_class, pos_embed = _read_grid(
        pos, _checkpoint_img_size(img_size, hub_config, model_args), patch, int(class_token) + int(distilled),
        bool(model_args.get("no_embed_class", False)), source, notes)
    pooled = _TIMM_POOLED if names == "timm" else _VITLAB_POOLED
    global_pool, has_fc = _read_global_pool(keys, pooled, class_token, global_pool, hub_config, model_args, source,
                                            notes)
    fc_norm = _read_fc_norm(names, has_fc, fc_norm, global_pool, source, notes)
    eps, act = _read_eps_and_act(norm_eps, act, model_args, source, notes)
    heads = infer_num_heads(dim, num_heads if num_heads is not None else model_args.get("num_heads"), source, notes,
                            architecture=hub_config.get("architecture"))
    head = state_dict.get("head.weight")
    representation = state_dict.get("pre_logits.fc.weight")
    kwargs: dict[str, Any] = dict(
        img_size=(grid[0] * patch, grid[1] * patch), patch_size=patch, in_chans=in_chans,
        num_classes=0 if head is None else int(head.shape[0]),
        embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=mlp_ratio,
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict, class_token=class_token,
        global_pool=global_pool, pos_embed=pos_embed, act=act,
        layer_scale_init=1.0 if "blocks.0.ls1.gamma" in state_dict else None,
        fc_norm=fc_norm, no_embed_class=no_embed_class, norm_eps=float(eps),
        representation_size=None if representation is None else int(representation.shape[0]),
    )
    if distilled:
        kwargs["distilled"] = True
    return kwargs, notes


def vit_from_timm(timm_model: nn.Module) -> VisionTransformer:
    """Build a vitlab ViT with the configuration and weights of a timm ``VisionTransformer`` module.

    Every setting is read from the modules (eps from the LayerNorms, the activation's type, where the final
    norm sits, LayerScale, ...); a feature vitlab's ViT lacks is refused by name.

    Raises:
        ConvertError: the timm model uses a feature vitlab's ViT does not have.
    """
    source = f"timm {type(timm_model).__name__}"
    norms = _check_timm_layout(timm_model, source)
    pool = timm_model.global_pool
    first = timm_model.blocks[0]
    act = _timm_activation(first.mlp.act, source)
    patch = timm_model.patch_embed
    if patch.patch_size[0] != patch.patch_size[1]:
        raise ConvertError(f"{source}: non-square patches {tuple(patch.patch_size)} are not supported")
    layer_scale = getattr(first.ls1, "gamma", None)
    embed_dim = timm_model.embed_dim
    distilled = getattr(timm_model, "dist_token", None) is not None  # timm's VisionTransformerDistilled
    model = vit_from_config(dict(
        img_size=tuple(patch.img_size),
        patch_size=patch.patch_size[0],
        in_chans=patch.proj.in_channels,
        num_classes=timm_model.num_classes,
        embed_dim=embed_dim,
        depth=len(timm_model.blocks),
        num_heads=first.attn.num_heads,
        mlp_ratio=mlp_ratio_for(first.mlp.fc1.out_features, embed_dim),
        qkv_bias=first.attn.qkv.bias is not None,
        class_token=timm_model.cls_token is not None,
        global_pool=pool,
        pos_embed="learn" if timm_model.pos_embed is not None else "none",
        act=act,
        layer_scale_init=None if layer_scale is None else 1.0,
        fc_norm=isinstance(timm_model.fc_norm, nn.LayerNorm),
        no_embed_class=bool(getattr(timm_model, "no_embed_class", False)),
        norm_eps=float(norms[0].eps),
        **({"distilled": True} if distilled else {}),
    ))
    for sub in timm_model.modules():
        if isinstance(sub, nn.LayerNorm) and sub.eps != norms[0].eps:
            raise ConvertError(
                f"{source}: LayerNorms with different eps ({sub.eps} vs {norms[0].eps}) are not supported"
            )
    converted = convert_timm_state_dict(timm_model.state_dict(), source)
    check_keys(model.state_dict(), converted, source)
    model.load_state_dict(converted, strict=True)
    return model




def _check_timm_layout(timm_model: nn.Module, source: str) -> list[nn.LayerNorm]:
    """Refuse, by name, a timm ViT feature vitlab's ViT lacks; return the one final LayerNorm (in a list)."""
    if getattr(timm_model, "num_reg_tokens", 0):
        raise ConvertError(f"{source}: register tokens (reg_tokens) are not supported by vitlab's ViT")
    for name in ("norm_pre", "fc_norm", "norm"):
        if not hasattr(timm_model, name):
            raise ConvertError(f"{source}: has no '{name}' attribute; is this a timm VisionTransformer?")
    if not isinstance(timm_model.norm_pre, nn.Identity):
        raise ConvertError(f"{source}: a pre-norm after the embedding (pre_norm=True) is not supported")
    if getattr(timm_model, "attn_pool", None) is not None:
        raise ConvertError(f"{source}: attention pooling (global_pool='map') is not supported")
    if getattr(timm_model, "pool_include_prefix", False):
        raise ConvertError(f"{source}: pool_include_prefix=True is not supported")
    pool = timm_model.global_pool
    if pool not in ("token", "avg"):
        raise ConvertError(f"{source}: global_pool='{pool}' is not supported; vitlab pools 'token' or 'avg'")
    norms = [m for m in (timm_model.norm, timm_model.fc_norm) if isinstance(m, nn.LayerNorm)]
    if len(norms) != 1 or any(
        not isinstance(m, (nn.LayerNorm, nn.Identity)) for m in (timm_model.norm, timm_model.fc_norm)
    ):
        raise ConvertError(f"{source}: needs exactly one final LayerNorm (norm or fc_norm); vitlab's ViT has one")
    first = timm_model.blocks[0]
    for block in timm_model.blocks:
        kinds = (type(block).__name__, type(block.attn).__name__, type(block.mlp).__name__)
        if kinds != ("Block", "Attention", "Mlp"):
            raise ConvertError(f"{source}: block/attention/MLP types {'/'.join(kinds)} are not supported; vitlab's ViT "
                               "has timm's pre-norm Block with Attention and Mlp")
    for part, what in ((first.attn.q_norm, "q/k normalisation"), (getattr(first.attn, "norm", nn.Identity()),
                       "a norm inside attention"), (getattr(first.mlp, "norm", nn.Identity()), "a norm inside the MLP"),
                       (getattr(timm_model.patch_embed, "norm", nn.Identity()), "a norm after the patch embedding")):
        if not isinstance(part, nn.Identity):
            raise ConvertError(f"{source}: {what} is not supported by vitlab's ViT")
    if not isinstance(first.norm1, nn.LayerNorm) or first.attn.proj.bias is None:
        raise ConvertError(f"{source}: blocks need LayerNorm and a biased attention projection")
    return norms


def _timm_activation(act_module: nn.Module, source: str) -> str:
    """vitlab's name of a timm MLP activation module (GELU erf or tanh, ReLU, SiLU, Mish)."""
    if type(act_module) is nn.GELU:
        return "gelu_tanh" if act_module.approximate == "tanh" else "gelu"
    act = {nn.ReLU: "relu", nn.SiLU: "silu", nn.Mish: "mish"}.get(type(act_module), "")
    if not act:
        raise ConvertError(f"{source}: MLP activation {type(act_module).__name__} is not supported")
    return act


def timm_kwargs(model: VisionTransformer) -> dict[str, Any]:
    """Keyword arguments for ``timm.models.vision_transformer.VisionTransformer`` that build ``model``'s layout.

    Raises:
        ConvertError: ``model`` uses something timm's ViT cannot express here (sin-cos position embedding,
            a pre-logits layer).
    """
    if model.pos_embed_type == "sincos":
        raise ConvertError(
            "a sin-cos position embedding is not stored in the weights; timm export needs 'learn' or 'none'"
        )
    if not isinstance(model.pre_logits, nn.Identity):
        raise ConvertError("timm's VisionTransformer has no pre-logits layer (representation_size); export to "
                           "torchvision or Hugging Face instead")
    first = model.blocks[0]
    act_names = {"GELU": "gelu", "ReLU": "relu", "SiLU": "silu", "Swish": "silu", "Mish": "mish"}
    act = act_names.get(type(first.mlp.act).__name__, "gelu")
    if act == "gelu" and getattr(first.mlp.act, "approximate", "none") == "tanh":
        act = "gelu_tanh"
    ls = getattr(first.ls1, "gamma", None)
    return dict(
        img_size=model.img_size,
        patch_size=model.patch_embed.patch_size,
        in_chans=model.patch_embed.in_chans,
        num_classes=model.num_classes,
        global_pool=model.global_pool,
        embed_dim=model.embed_dim,
        depth=len(model.blocks),
        num_heads=first.attn.num_heads,
        mlp_ratio=first.mlp.fc1.out_features / model.embed_dim,
        qkv_bias=first.attn.qkv.bias is not None,
        init_values=None if ls is None else 1.0,
        class_token=model.cls_token is not None,
        pos_embed="learn" if model.pos_embed_type == "learn" else "none",
        no_embed_class=model.no_embed_class,
        fc_norm=model.fc_norm,
        act_layer=act,
        norm_layer=functools.partial(nn.LayerNorm, eps=model.norm_eps),
    )
