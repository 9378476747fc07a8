"""Fine-tuning a pretrained ViT: adapt it to a new task, layer-wise learning-rate decay, linear probe.

* New head: "we remove the whole head (two linear layers) and replace it by a single, zero-initialized
  linear layer outputting the number of classes required by the target dataset" (ViT, Dosovitskiy et al.
  2021, Sec. 3.2 and App. B.1.1).
* New image size: the learned position embeddings are resampled to the new patch grid in 2-D, bicubically,
  the class token's row kept (ViT Sec. 3.2; :func:`vitlab.nn.resample_pos_embed`, non-square grids fine).
  Whether to resample is decided by the grid (rows, columns), not the token count: 4×8 → 8×4 is resampled.
* New patch size: the patch-embedding kernel is resized with FlexiViT's pseudo-inverse resize (Beyer et al.
  2023, "FlexiViT", Sec. 3.4). Resizing a p×p patch x to p*×p* is a linear map, resize(x) = B x with
  B ∈ R^{p*²×p²}. The kernel ŵ for the new size should give the same token, ⟨x, w⟩ = ⟨Bx, ŵ⟩, i.e.
  Bᵀŵ = w; the least-squares / minimum-norm solution is ŵ = (Bᵀ)⁺ w. When upsampling (p* ≥ p) B has full
  column rank and the equation holds exactly for every x; when downsampling it holds in the least-squares
  sense over x ~ N(0, I). Here B is bilinear resizing without antialiasing (``F.interpolate``,
  ``align_corners=False``), built column by column from the resized one-hot patches.
* New input channels: RGB → grayscale sums the kernel over the three channels (exact for a gray image
  repeated into RGB); grayscale → RGB repeats the kernel divided by 3 (exact for an RGB image whose
  channel mean is the gray image). The kernel is the one that reads the image: the patch projection, or
  with a convolutional stem (``stem="conv"``) the stem's first 3×3 convolution (its 1×1 projection keeps
  its shape). A conv stem's patch size is its number of stride-2 convolutions, so it cannot change.
* Layer-wise lr decay (BEiT, Bao et al. 2022; MAE, He et al. 2022, ``util/lr_decay.py``): layer ids are 0
  for the embeddings (``cls_token``, ``pos_embed``, ``patch_embed``), i + 1 for block i, L + 1 for the rest
  (the final norm, ``norm`` or ``pooled_norm``; pre-logits, head); a parameter of layer i gets
  lr · decay^(L + 1 − i). Biases, norm weights, LayerScale and the model's ``no_weight_decay()`` names take no
  weight decay.
* Linear probe: every parameter frozen except the head's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vitlab.models.convert.common import ConvertError, LoadReport
from vitlab.models.convert.timm import timm_config_from_state_dict
from vitlab.models.deit import vit_from_config
from vitlab.models.vit import VisionTransformer, migrate_vit_state_dict
from vitlab.nn.posenc import resample_pos_embed

__all__ = [
    "adapt_in_chans",
    "adapt_pretrained",
    "freeze_for_linear_probe",
    "layer_decay_groups",
    "layer_id",
    "resize_matrix",
    "resize_patch_embed",
    "resize_patches",
]

# the classifier: replaced (zero-initialised) for a new task; DeiT's distillation head is one too
_NEW_HEADS = ("head.", "head_dist.")
_HEADS = (*_NEW_HEADS, "pre_logits.")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_patches(x: Tensor, new_size: tuple[int, int]) -> Tensor:
    """The resize FlexiViT's operator B stands for: bilinear, ``align_corners=False``, no antialias.

    Args:
        x: (..., p_h, p_w).
        new_size: (p*_h, p*_w).

    Returns:
        (..., p*_h, p*_w).
    """
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-2], shape[-1])
    out = F.interpolate(flat, size=tuple(new_size), mode="bilinear", align_corners=False, antialias=False)
    return out.reshape(*shape[:-2], *new_size)


def resize_matrix(old_size: tuple[int, int], new_size: tuple[int, int]) -> Tensor:
    """B ∈ R^{(p*_h·p*_w)×(p_h·p_w)} with ``resize_patches(x).flatten() == B @ x.flatten()`` (float64)."""
    count = old_size[0] * old_size[1]
    basis = torch.eye(count, dtype=torch.float64).reshape(count, *old_size)
    return resize_patches(basis, new_size).reshape(count, -1).T


def resize_patch_embed(weight: Tensor, new_size: int | tuple[int, int]) -> Tensor:
    """FlexiViT's pseudo-inverse resize of a patch-embedding kernel: ŵ = (Bᵀ)⁺ w per (out, in) channel.

    Args:
        weight: (D, C, p_h, p_w) kernel of the patch-embedding convolution.
        new_size: p*, or (p*_h, p*_w).

    Returns:
        (D, C, p*_h, p*_w) kernel in ``weight``'s dtype (computed in float64). Upsampling: for every patch x,
        ``(resize_patches(x, p*) * ŵ).sum() == (x * w).sum()``.
    """
    new_size = _pair(new_size)
    old_size = (int(weight.shape[-2]), int(weight.shape[-1]))
    if old_size == new_size:
        return weight
    b = resize_matrix(old_size, new_size)  # (p*², p²)
    flat = weight.detach().to(torch.float64).reshape(-1, old_size[0] * old_size[1])  # rows are wᵀ
    resized = flat @ torch.linalg.pinv(b)  # ŵᵀ = wᵀ B⁺ = ((Bᵀ)⁺ w)ᵀ
    return resized.reshape(*weight.shape[:2], *new_size).to(weight.dtype)


def adapt_in_chans(weight: Tensor, in_chans: int, source: str = "patch embedding") -> Tensor:
    """Adapt a (D, C, k, k) kernel that reads the image (patch projection, or a conv stem's first
    convolution) to ``in_chans`` input channels.

    C → 1: sum over C (a gray image repeated into C channels gives the same tokens); 1 → C': the kernel
    repeated and divided by C' (an image whose channel mean is the gray image gives the same tokens).

    Raises:
        ConvertError: neither side has one channel (no exact mapping exists).
    """
    channels = int(weight.shape[1])
    if channels == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    if channels == 1:
        return weight.repeat(1, in_chans, 1, 1) / in_chans
    raise ConvertError(f"{source}: cannot map {channels} input channels to {in_chans}; only grayscale <-> "
                       "multi-channel is supported")


def _load_template(model: VisionTransformer | dict[str, Tensor], num_heads: int | None = None,
                   fc_norm: bool | None = None) -> tuple[VisionTransformer, list[str]]:
    """The model to adapt, and the notes on what was assumed in reading a state dict (e.g. a square grid).
    A vitlab state dict saved before ``pooled_norm`` existed is migrated (``fc_norm=True`` says its ``norm.*``
    acted after pooling)."""
    if isinstance(model, VisionTransformer):
        return model, []
    if isinstance(model, dict):
        kwargs, notes = timm_config_from_state_dict(model, "state dict", names="vitlab", num_heads=num_heads,
                                                    fc_norm=fc_norm)
        built = vit_from_config(kwargs)
        built.load_state_dict(migrate_vit_state_dict(model, built.state_dict()), strict=True)
        return built, notes
    raise TypeError(f"expected a VisionTransformer or a vitlab state dict, got {type(model).__name__}")


def _start_report(model: VisionTransformer, notes: list[str], report: LoadReport | None) -> LoadReport:
    """The report to extend (a new one if none is given), with the template's notes and its loaded names."""
    report = report if report is not None else LoadReport(source="pretrained model", format="vitlab",
                                                          config=dict(model.config))
    report.notes.extend(note for note in notes if note not in report.notes)
    if not report.loaded:
        report.loaded = list(model.state_dict())
    return report


def _adapted_config(
    model: VisionTransformer, overrides: dict[str, Any], num_classes: int | None,
    img_size: int | tuple[int, int] | None, patch_size: int | None, in_chans: int | None, source: str,
) -> tuple[dict[str, Any], int]:
    """The new model's configuration (the old one, the overrides, the new sizes and head), and the old patch size."""
    cfg = dict(model.config)
    cfg.update(overrides)
    old_patch = int(cfg["patch_size"])
    new_patch = old_patch if patch_size is None else int(patch_size)
    new_img = _pair(cfg["img_size"] if img_size is None else img_size)
    if new_img[0] % new_patch or new_img[1] % new_patch:
        raise ConvertError(f"{source}: image size {new_img[0]}x{new_img[1]} is not a multiple of the patch "
                           f"size {new_patch}; choose sizes that divide")
    cfg.update(img_size=new_img, patch_size=new_patch)
    if in_chans is not None:
        cfg["in_chans"] = int(in_chans)
    if num_classes is not None:
        cfg["num_classes"] = int(num_classes)
        cfg["representation_size"] = None
    return cfg, old_patch


def _move_final_norm(
    model: VisionTransformer, new_model: VisionTransformer, old_state: dict[str, Tensor], report: LoadReport
) -> dict[str, str]:
    """New name → old name of the final LayerNorm's weights when an ``fc_norm`` override moves it (noted)."""
    # an fc_norm override moves the final LayerNorm between norm (every token) and pooled_norm (after pooling)
    old_norm, new_norm = (("pooled_norm." if m.fc_norm else "norm.") for m in (model, new_model))
    moved = {new_norm + n[len(old_norm) :]: n for n in old_state if n.startswith(old_norm) and old_norm != new_norm}
    if moved:
        report.notes.append(f"final LayerNorm moved from {old_norm}* to {new_norm}* (fc_norm={new_model.fc_norm} "
                            f"given): it now acts {'after pooling' if new_model.fc_norm else 'on every token'}")
        report.loaded = [next((new for new, old in moved.items() if old == n), n) for n in report.loaded]
    return moved


def _transfer_weights(
    model: VisionTransformer, new_model: VisionTransformer, state: dict[str, Tensor], old_state: dict[str, Tensor],
    *, moved: dict[str, str], first_kernel: str, old_patch: int, new_patch: int, replace_head: bool, source: str,
) -> list[str]:
    """Copy the old weights into ``state``, the image-reading kernel and position table adapted; the adapted names."""
    resampled: list[str] = []
    for name, target in state.items():
        if name.startswith(_HEADS) and replace_head:
            continue
        value = old_state[moved.get(name, name)]
        if name == first_kernel:
            changed = value
            if new_patch != old_patch:
                changed = resize_patch_embed(changed, new_patch)
            changed = adapt_in_chans(changed, new_model.patch_embed.in_chans, f"{source}: patch embedding")
            if changed is not value:
                resampled.append(name)
            value = changed
        elif name == "pos_embed.weight" and new_model.patch_embed.grid_size != model.patch_embed.grid_size:
            # compare the grids, not the token counts: 4x8 -> 8x4 keeps the count but moves every position
            value = resample_pos_embed(value, new_model.patch_embed.grid_size, model.patch_embed.grid_size,
                                       model.pos_prefix_tokens)
            resampled.append(name)
        if tuple(value.shape) != tuple(target.shape):
            raise ConvertError(f"{source}: cannot map {name} of shape {tuple(value.shape)} to "
                               f"{tuple(target.shape)}")
        state[name] = value.to(target.dtype)
    return resampled


def _zero_new_head(state: dict[str, Tensor], old_state: dict[str, Tensor], report: LoadReport) -> list[str]:
    """Zero the new head in ``state`` (ViT App. B.1.1), list the old head as dropped; the new head's names."""
    new_head: list[str] = []
    for name in state:
        if name.startswith(_NEW_HEADS):
            state[name] = torch.zeros_like(state[name])
            new_head.append(name)
    dropped = [n for n in old_state if n.startswith(_HEADS)]
    report.dropped.extend(n for n in dropped if n not in report.dropped)
    return new_head


def _record_changes(
    report: LoadReport, new_model: VisionTransformer, old_state: dict[str, Tensor], resampled: list[str],
    new_head: list[str], replace_head: bool,
) -> None:
    """Move the adapted and replaced names from the report's ``loaded`` to ``resampled``/``new``."""
    changed = set(resampled) | set(new_head) | {n for n in old_state if n.startswith(_HEADS) and replace_head}
    report.loaded = [n for n in report.loaded if n not in changed]
    report.resampled.extend(n for n in resampled if n not in report.resampled)
    report.new.extend(n for n in new_head if n not in report.new)
    report.config = dict(new_model.config)


def adapt_pretrained(
    model_or_state: VisionTransformer | dict[str, Tensor],
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    patch_size: int | None = None,
    in_chans: int | None = None,
    report: LoadReport | None = None,
    **overrides: Any,
) -> tuple[VisionTransformer, LoadReport]:
    """A copy of a pretrained ViT made ready to fine-tune on a new task; the input is not modified.

    Args:
        model_or_state: a :class:`VisionTransformer`, or a state dict in vitlab's names (sizes read from it,
            a square grid assumed, the assumptions in the report's notes; pass ``num_heads`` for a width that is
            not a standard ViT width; for a non-square grid pass the model).
        num_classes: if given, the head (and any pre-logits layer) is replaced by a zero-initialised
            ``Linear(D, num_classes)`` (ViT App. B.1.1), even when the count is unchanged.
        img_size: new (H, W) or side; learned position embeddings are resampled bicubically to the new grid.
        patch_size: new patch side; the kernel is PI-resized (FlexiViT) and the grid follows (``stem="linear"``
            only: a convolutional stem's patch size is fixed by its depth).
        in_chans: new input channels (grayscale ↔ multi-channel, see :func:`adapt_in_chans`), applied to the
            patch kernel, or with ``stem="conv"`` to the stem's first convolution.
        report: a :class:`LoadReport` to extend (names are moved from ``loaded`` to ``resampled``/``new``).
        **overrides: other :class:`VisionTransformer` arguments for the new model (``drop_path_rate``, ...).

    Returns:
        (new model, report).

    Raises:
        ConvertError: the new image size is not a multiple of the patch size, the channels cannot map, or a
            new patch size for a convolutional stem.
    """
    model, notes = _load_template(model_or_state, overrides.get("num_heads"), overrides.get("fc_norm"))
    report = _start_report(model, notes, report)
    cfg, old_patch = _adapted_config(model, overrides, num_classes, img_size, patch_size, in_chans, report.source)
    new_patch = int(cfg["patch_size"])
    replace_head = num_classes is not None
    new_model = vit_from_config(cfg)
    old_state = {k: v.detach() for k, v in model.state_dict().items()}
    state = new_model.state_dict()
    conv_stem = cfg.get("stem", "linear") == "conv"
    if conv_stem and new_patch != old_patch:
        raise ConvertError(f"{report.source}: a convolutional stem's depth is set by its patch size {old_patch}, so it "
                           f"cannot become {new_patch}; keep patch_size={old_patch} (change img_size instead)")
    # the kernel that sees the image's channels: the patch projection, or the conv stem's first convolution
    # (the stem's 1x1 projection then keeps its shape)
    first_kernel = "patch_embed.stem.0.weight" if conv_stem else "patch_embed.proj.weight"
    moved = _move_final_norm(model, new_model, old_state, report)
    resampled = _transfer_weights(model, new_model, state, old_state, moved=moved, first_kernel=first_kernel,
                                  old_patch=old_patch, new_patch=new_patch, replace_head=replace_head,
                                  source=report.source)
    new_head = _zero_new_head(state, old_state, report) if replace_head else []
    new_model.load_state_dict(state, strict=True)
    _record_changes(report, new_model, old_state, resampled, new_head, replace_head)
    return new_model, report


def layer_id(name: str, depth: int) -> int:
    """MAE/BEiT layer id of a parameter name: embeddings 0, ``blocks.i`` i + 1, everything else L + 1."""
    if name.startswith(("cls_token", "pos_embed", "patch_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_decay_groups(
    model: VisionTransformer, lr: float, weight_decay: float, decay: float
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise lr decay (BEiT / MAE) and no decay on biases and norms.

    Args:
        model: a :class:`VisionTransformer` (``blocks`` gives L); frozen parameters are left out.
        lr: the base learning rate (the head's).
        weight_decay: applied to weight matrices, not to 1-D parameters (biases, norms, LayerScale) nor to
            ``model.no_weight_decay()``.
        decay: in (0, 1]; layer i gets ``lr · decay^(L + 1 − i)`` (MAE ViT-B: 0.65).

    Returns:
        A list of dicts for ``torch.optim`` (``params``, ``lr``, ``weight_decay``) that also carry
        ``lr_scale`` (decay^(L + 1 − i), for schedulers that set lr themselves), ``layer_id`` and
        ``param_names``.
    """
    if not 0.0 < decay <= 1.0:
        raise ConvertError(f"layer decay must be in (0, 1], got {decay}; MAE uses 0.65 (ViT-B) or 0.75 (ViT-L)")
    depth = len(model.blocks)
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = layer_id(name, depth)
        no_decay = param.ndim <= 1 or name in skip
        key = (layer, no_decay)
        if key not in groups:
            scale = decay ** (depth + 1 - layer)
            groups[key] = {
                "params": [],
                "param_names": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "layer_id": layer,
            }
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return [groups[key] for key in sorted(groups)]


def freeze_for_linear_probe(model: VisionTransformer) -> list[str]:
    """Freeze every parameter except the head's (``requires_grad=False``); returns the trainable names.

    Raises:
        ConvertError: the model has no trainable head (``num_classes=0``).
    """
    trainable = []
    for name, param in model.named_parameters():
        keep = name.startswith("head.")
        param.requires_grad_(keep)
        if keep:
            trainable.append(name)
    if not trainable:
        raise ConvertError("the model has no head to train (num_classes=0); build it with num_classes > 0")
    return trainable

