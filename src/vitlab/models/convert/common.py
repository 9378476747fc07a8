"""What every ViT converter shares: the error, the report, reading weight files, and checking a state dict.

Reading never runs code from a file: ``.safetensors`` holds tensors only, and PyTorch pickles (``.pth``,
``.pt``, ``.bin``) are read with ``torch.load(weights_only=True)`` (:func:`vitlab.safeload.load_torch_file`),
which refuses a pickle that names code, in one line.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from vitlab.errors import CheckpointError
from vitlab.safeload import load_torch_file

__all__ = ["ConvertError", "LoadReport", "check_keys", "heads_from_timm_name", "infer_num_heads", "patch_from_conv",
           "read_state_dict", "square_grid", "torch_dtype_check"]

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")
SAFETENSORS_SUFFIXES = (".safetensors",)
_WRAPPER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module", "net", "params")

# A state dict does not record the number of attention heads (h heads of width D/h use the same tensors as
# h' heads of width D/h'), and guessing it from the width is wrong for real checkpoints: timm's
# vit_base_patch16_gap_224 is 768 wide with 16 heads, not ViT-B's 12. Heads are therefore read from a config
# (Hugging Face config.json, timm Hub model_args), from a timm architecture name of the plain ViT family, or
# for torchvision from its only published widths; otherwise the caller must pass num_heads.
TORCHVISION_HEADS = {768: 12, 1024: 16, 1280: 16}  # vit_b_16/b_32, vit_l_16/l_32, vit_h_14: all torchvision ships
TIMM_NAME_HEADS = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}  # ViT paper Table 1, DeiT
_TIMM_PLAIN_NAME = re.compile(r"^vit_(tiny|small|base|large|huge)_patch\d+_\d+(\.[\w-]+)?$")


class ConvertError(CheckpointError):
    """A pretrained checkpoint cannot be converted exactly (unknown format, unsupported feature, bad shape)."""


@dataclass
class LoadReport:
    """What :func:`vitlab.load_pretrained` did with each tensor of the source checkpoint.

    Attributes:
        source: the file or folder read.
        format: ``"timm"``, ``"huggingface"``, ``"torchvision"`` or ``"vitlab"``.
        sha256: SHA-256 of the weights file (for the run folder's record of where weights came from).
        config: the keyword arguments the :class:`~vitlab.models.vit.VisionTransformer` was built with.
        loaded: vitlab parameter names copied unchanged from the checkpoint.
        resampled: names whose tensor was resampled to a new shape (position or patch embedding, channels).
        dropped: source tensor names not used (a replaced head, a pooler, a mask token).
        new: vitlab parameter names newly initialised (e.g. the zero-initialised head).
        notes: assumptions and decisions, one sentence each (e.g. the number of heads read from the width).
    """

    source: str
    format: str
    sha256: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    loaded: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (config values made JSON-friendly)."""
        config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.config.items()}
        return {
            "source": self.source,
            "format": self.format,
            "sha256": self.sha256,
            "config": config,
            "loaded": list(self.loaded),
            "resampled": list(self.resampled),
            "dropped": list(self.dropped),
            "new": list(self.new),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """A few human-readable lines: counts per category, then the names that were not plainly loaded."""
        lines = [
            f"{self.source} ({self.format}): {len(self.loaded)} tensors loaded, {len(self.resampled)} resampled, "
            f"{len(self.dropped)} dropped, {len(self.new)} newly initialised"
        ]
        for label, names in (("resampled", self.resampled), ("dropped", self.dropped), ("new", self.new)):
            if names:
                lines.append(f"  {label}: {', '.join(names)}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """The state dict inside a loaded pickle: the dict itself, or under a usual wrapper key
    (``model`` for MAE/DeiT, ``state_dict`` for Lightning, ...); a ``module.`` prefix (DDP) is removed."""
    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values()):
            break
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None:
                obj = inner
                continue
        raise ConvertError(f"{path}: holds no state dict of tensors (top level: {type(obj).__name__}); "
                           "pass a file of model weights")
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ConvertError(f"{path}: holds no state dict of tensors; pass a file of model weights")
    if all(str(k).startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return {str(k): v for k, v in obj.items()}


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read model weights from ``.safetensors`` or a PyTorch pickle (``.pth``, ``.pt``, ``.bin``, ``.ckpt``).

    Raises:
        ConvertError: missing, truncated or foreign file; a pickle that holds code is refused (one line,
            nothing run); a file with no state dict in it.
    """
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path} does not exist; check the path")
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as error:  # safetensors raises its own error types for bad headers
            raise ConvertError(f"{path} is truncated or not a safetensors file ({type(error).__name__}); "
                               "download it again") from None
    if path.suffix.lower() in PICKLE_SUFFIXES:
        try:
            obj = load_torch_file(path, what="weights file")
        except CheckpointError as error:
            raise ConvertError(str(error)) from None
        return _unwrap(obj, path)
    raise ConvertError(f"{path}: unknown weights file type '{path.suffix}'; "
                       f"use .safetensors or one of {', '.join(PICKLE_SUFFIXES)}")


def check_keys(expected: dict[str, Tensor], got: dict[str, Tensor], source: str) -> None:
    """Raise :class:`ConvertError` (one line) unless ``got`` has exactly the keys and shapes of ``expected``."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise ConvertError(f"{source}: {len(missing)} tensors missing for this ViT ({shown}); "
                           "the checkpoint is incomplete or not this architecture")
    if extra:
        shown = ", ".join(extra[:4]) + (", ..." if len(extra) > 4 else "")
        raise ConvertError(f"{source}: {len(extra)} unexpected tensors ({shown}); "
                           "the checkpoint has parts vitlab's ViT does not")
    for name, tensor in expected.items():
        if tuple(got[name].shape) != tuple(tensor.shape):
            raise ConvertError(f"{source}: tensor {name} has shape {tuple(got[name].shape)}, the ViT built from "
                               f"its sizes needs {tuple(tensor.shape)}; widths or depths are inconsistent")


def heads_from_timm_name(architecture: str | None) -> int | None:
    """Heads of a timm architecture name of the plain ViT family (``vit_base_patch16_224[.tag]``), else None.

    Only the exact pattern ``vit_{tiny,small,base,large,huge}_patch{P}_{size}`` counts; variants with more
    words (``_gap_``, ``_clip_``, ``_reg4_``, ...) may change the head count and return None.
    """
    match = _TIMM_PLAIN_NAME.match(architecture or "")
    return TIMM_NAME_HEADS[match.group(1)] if match else None


def infer_num_heads(
    dim: int, num_heads: int | None, source: str, notes: list[str], widths: dict[int, int] | None = None,
    architecture: str | None = None,
) -> int:
    """The number of heads: ``num_heads`` if given, else from a timm ``architecture`` name or ``widths``.

    Raises:
        ConvertError: ``num_heads`` does not divide ``dim``, or nothing records the number of heads.
    """
    if num_heads is not None:
        if int(num_heads) <= 0 or dim % int(num_heads):
            raise ConvertError(f"{source}: num_heads={num_heads} does not divide the width {dim}")
        return int(num_heads)
    from_name = heads_from_timm_name(architecture)
    if from_name is not None and dim % from_name == 0:
        notes.append(f"num_heads={from_name} read from the architecture name '{architecture}'")
        return from_name
    if widths is not None and dim in widths:
        notes.append(f"num_heads={widths[dim]} read from the width {dim} (the published size)")
        return widths[dim]
    raise ConvertError(f"{source}: the weights do not record the number of attention heads (width {dim}); "
                       "pass num_heads= (e.g. 12 for timm's vit_base_patch16_224, 16 for vit_base_patch16_gap_224)")


def square_grid(count: int, source: str) -> tuple[int, int]:
    """(n, n) with n² = ``count`` patches; raises when ``count`` is not a square (pass img_size)."""
    side = math.isqrt(count)
    if side * side != count:
        raise ConvertError(f"{source}: {count} position-embedding rows are not a square grid; "
                           "pass img_size=(H, W) of the checkpoint")
    return side, side


def two_d_or_none(weight: Tensor | None, name: str, source: str) -> None:
    """Refuse a tensor that should be 4-D conv weights (a non-ViT checkpoint under a ViT name)."""
    if weight is not None and weight.dim() != 4:
        raise ConvertError(f"{source}: {name} has shape {tuple(weight.shape)}, not a patch-embedding convolution "
                           "(D, C, P, P); is this a ViT checkpoint?")


def patch_from_conv(weight: Tensor, source: str) -> tuple[int, int]:
    """(C, P) from a patch-embedding convolution weight (D, C, P, P); refuses non-square patches."""
    two_d_or_none(weight, "patch embedding", source)
    if weight.shape[2] != weight.shape[3]:
        raise ConvertError(f"{source}: non-square patches {weight.shape[2]}x{weight.shape[3]} are not supported "
                           "by vitlab's ViT; resample the patch embedding to a square patch first")
    return int(weight.shape[1]), int(weight.shape[2])


def torch_dtype_check(state: dict[str, Tensor], source: str) -> None:
    """Refuse integer or quantized tensors where float weights are expected (BatchNorm's integer step counter
    ``num_batches_tracked``, e.g. in a conv stem, is the one integer tensor a model may hold)."""
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked") and tensor.dtype == torch.int64 and tensor.ndim == 0:
            continue
        if not (tensor.is_floating_point() or tensor.is_complex()):
            raise ConvertError(f"{source}: tensor {name} has dtype {tensor.dtype}; expected float weights "
                               "(quantized or integer checkpoints are not supported)")

