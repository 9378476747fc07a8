"""One loader for pretrained ViT checkpoints, whatever library wrote them, and the matching exporter.

This module sits above :mod:`vitlab.models.convert` (the per-library key maps) and
:mod:`vitlab.models.finetune` (adapting a loaded model to a new task): it reads a file, converts it, and adapts it.

Detection: a folder with ``config.json`` is a Hugging Face folder (``model_type``) or a timm Hub folder
(``architecture``), its weights in ``model.safetensors`` or ``pytorch_model.bin``; a file is read (safetensors,
or a PyTorch pickle with ``weights_only=True``) and recognised by its keys: ``conv_proj`` / ``encoder.pos_embedding``
(torchvision), ``patch_embed.proj`` with ``pos_embed`` (timm) or ``pos_embed.weight`` / ``pooled_norm`` (vitlab),
``embeddings.*`` (Hugging Face, which needs its config.json). vitlab weights saved before the norm after pooling
was named ``pooled_norm`` are read through :func:`~vitlab.models.vit.migrate_vit_state_dict`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor

from vitlab.io import atomic_write_bytes, sha256_file, staging_dir
from vitlab.models.convert.common import (
    ConvertError,
    LoadReport,
    check_keys,
    read_state_dict,
    torch_dtype_check,
)
from vitlab.models.convert.huggingface import (
    HF_WEIGHT_FILES,
    convert_hf_state_dict,
    convert_to_hf_state_dict,
    hf_config,
    hf_kwargs_from_config,
    read_hf_config,
)
from vitlab.models.convert.timm import convert_timm_state_dict, convert_to_timm_state_dict, timm_config_from_state_dict
from vitlab.models.convert.timm import timm_kwargs as _timm_kwargs
from vitlab.models.convert.torchvision import (
    convert_to_torchvision_state_dict,
    convert_torchvision_state_dict,
    torchvision_config_from_state_dict,
    torchvision_kwargs,
)
from vitlab.models.deit import vit_from_config
from vitlab.models.finetune import adapt_pretrained
from vitlab.models.vit import VisionTransformer, migrate_vit_state_dict

__all__ = ["FORMATS", "detect_format", "export_pretrained", "load_pretrained"]

FORMATS = ("timm", "huggingface", "torchvision", "vitlab")


def _format_of_keys(keys: list[str], source: str) -> str:
    keyset = set(keys)
    if "conv_proj.weight" in keyset or "encoder.pos_embedding" in keyset:
        return "torchvision"
    if any(k.startswith(("vit.embeddings.", "embeddings.patch_embeddings.")) for k in keys):
        return "huggingface"
    if "patch_embed.proj.weight" in keyset:
        return "vitlab" if "pos_embed.weight" in keyset or "pooled_norm.weight" in keyset else "timm"
    shown = ", ".join(sorted(keys)[:3]) + (", ..." if len(keys) > 3 else "")
    raise ConvertError(f"{source}: not a ViT checkpoint of timm, Hugging Face, torchvision or vitlab "
                       f"(no patch-embedding weights; keys: {shown or 'none'})")


def _read(path: Path) -> tuple[str, dict[str, Tensor], dict[str, Any] | None, Path]:
    """(format, state dict, config.json or None, weights file)."""
    if path.is_dir():
        weights = next((path / name for name in HF_WEIGHT_FILES if (path / name).is_file()), None)
        config = read_hf_config(path)  # raises when config.json is missing
        if weights is None:
            raise ConvertError(f"{path}: no {' or '.join(HF_WEIGHT_FILES)} next to config.json; download the weights")
        state = read_state_dict(weights)
        if "model_type" in config:
            return "huggingface", state, config, weights
        if "architecture" in config:
            return "timm", state, config, weights
        raise ConvertError(f"{path / 'config.json'}: neither a Hugging Face config (model_type) nor a timm Hub "
                           "config (architecture)")
    if not path.exists():
        raise ConvertError(f"{path} does not exist; check the path")
    state = read_state_dict(path)
    vitlab_config = _vitlab_config(path)
    if vitlab_config is not None:
        return "vitlab", state, vitlab_config, path
    fmt = _format_of_keys(list(state), str(path))
    if fmt == "huggingface":
        config_path = path.parent / "config.json"
        if not config_path.is_file():
            raise ConvertError(f"{path}: Hugging Face weights need the config.json they were saved with; put it next "
                               "to the weights and pass the folder")
        return fmt, state, read_hf_config(path.parent), path
    return fmt, state, None, path


CONFIG_KEY = "vitlab.config"  # safetensors metadata: the VisionTransformer arguments, as JSON


def _vitlab_config(path: Path) -> dict[str, Any] | None:
    """The model arguments :func:`export_pretrained` stores in a vitlab safetensors file, or None."""
    if path.suffix.lower() != ".safetensors":
        return None

    with safe_open(str(path), framework="pt") as handle:  # the file was already read once: the header is sound
        text = (handle.metadata() or {}).get(CONFIG_KEY)
    if text is None:
        return None
    try:
        config = json.loads(text)
    except ValueError:
        raise ConvertError(f"{path}: its {CONFIG_KEY} metadata is not valid JSON; the file is damaged") from None
    if not isinstance(config, dict):
        raise ConvertError(f"{path}: its {CONFIG_KEY} metadata is not a JSON object; the file is damaged")
    if isinstance(config.get("img_size"), list):
        config["img_size"] = tuple(config["img_size"])
    return config


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"timm"``, ``"huggingface"``, ``"torchvision"`` or ``"vitlab"`` for a weights file or model folder.

    Raises:
        ConvertError: not a ViT checkpoint, unreadable or unsafe file, a Hugging Face folder without config.json.
    """
    return _read(Path(path))[0]


def load_pretrained(
    path: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    patch_size: int | None = None,
    in_chans: int | None = None,
    num_heads: int | None = None,
    global_pool: str | None = None,
    fc_norm: bool | None = None,
    norm_eps: float | None = None,
    act: str | None = None,
    source_img_size: int | tuple[int, int] | None = None,
    **overrides: Any,
) -> tuple[VisionTransformer, LoadReport]:
    """Load a pretrained ViT from timm, Hugging Face, torchvision or vitlab weights, ready to fine-tune.

    The architecture is read from the checkpoint (the weights' shapes and keys, plus ``config.json`` for a
    folder); the keyword arguments after ``in_chans`` are needed only where a checkpoint does not record
    something (the report's notes say what was assumed). With ``num_classes``, ``img_size``, ``patch_size``
    or ``in_chans`` the model is adapted for fine-tuning (:func:`vitlab.models.finetune.adapt_pretrained`:
    zero-initialised head, resampled position / patch embeddings, adapted channels).

    Args:
        path: a weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``) or a model folder with config.json.
        num_classes: classes of the new task; replaces the head with a zero-initialised one.
        img_size: fine-tuning image size (H, W) or side.
        patch_size: fine-tuning patch size (FlexiViT PI-resize of the kernel).
        in_chans: fine-tuning input channels (1 ↔ 3).
        num_heads: attention heads, when the width is not a standard ViT width.
        global_pool: ``"token"`` or ``"avg"``, when a timm/vitlab checkpoint with a class token averaged.
        fc_norm: for vitlab weights without a stored config saved before ``pooled_norm`` existed: ``True`` if
            their ``norm.*`` acted after pooling (today's weights say it by name).
        norm_eps: LayerNorm eps, when a timm/torchvision/vitlab checkpoint was not trained with 1e-6.
        act: MLP activation, when a timm/vitlab checkpoint did not use the erf GELU.
        source_img_size: the checkpoint's image size (H, W) or side, for timm/vitlab weights: without it the
            grid is read from the position embedding as a square one (noted in the report), so a non-square
            checkpoint needs it.
        **overrides: other :class:`VisionTransformer` arguments of the returned model (``drop_path_rate``, ...).

    Returns:
        (model, :class:`LoadReport`).

    Raises:
        ConvertError: unknown or damaged file, unsafe pickle, missing/extra keys, shapes that do not fit,
            a feature vitlab's ViT lacks.
    """
    path = Path(path)
    fmt, state, config, weights_file = _read(path)
    source = str(path)
    torch_dtype_check(state, source)
    stated = dict(num_heads=num_heads, global_pool=global_pool, fc_norm=fc_norm, norm_eps=norm_eps, act=act)
    converted, dropped, kwargs, notes = _convert(fmt, state, config, source, stated, source_img_size)
    model = _build_loaded(fmt, converted, kwargs, source)
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in state.values()})
    if dtypes != ["float32"]:
        notes.append(f"weights stored as {', '.join(dtypes)}, loaded into float32")
    report = LoadReport(source=source, format=fmt, sha256=sha256_file(weights_file), config=dict(model.config),
                        loaded=list(model.state_dict()), dropped=dropped, notes=notes)
    if any(v is not None for v in (num_classes, img_size, patch_size, in_chans)) or overrides:
        model, report = adapt_pretrained(model, num_classes=num_classes, img_size=img_size, patch_size=patch_size,
                                         in_chans=in_chans, report=report, **overrides)
    return model, report


def _convert(fmt: str, state: dict[str, Tensor], config: dict[str, Any] | None, source: str,
             stated: dict[str, Any], source_img_size: int | tuple[int, int] | None,
             ) -> tuple[dict[str, Tensor], list[str], dict[str, Any], list[str]]:
    """A checkpoint's state dict in vitlab's names, the names dropped, the ViT's arguments and the notes on what
    was assumed. ``stated`` holds what the caller said of the checkpoint (num_heads, global_pool, fc_norm,
    norm_eps, act; None where not said)."""
    if fmt == "huggingface":  # the config first: it names a model type vitlab cannot read before any key does
        kwargs = hf_kwargs_from_config(config or {}, state, source)
        converted, dropped = convert_hf_state_dict(state, source)
        return converted, dropped, kwargs, []
    if fmt == "torchvision":
        kwargs, notes = torchvision_config_from_state_dict(state, source, stated["num_heads"], stated["norm_eps"])
        return convert_torchvision_state_dict(state, source), [], kwargs, notes
    if fmt == "vitlab" and config is not None:  # a vitlab export: its arguments are stored with the weights
        return dict(state), [], {**config, **{k: v for k, v in stated.items() if v is not None}}, []
    converted = convert_timm_state_dict(state, source) if fmt == "timm" else dict(state)
    kwargs, notes = timm_config_from_state_dict(state, source, names="timm" if fmt == "timm" else "vitlab",
                                                img_size=source_img_size, hub_config=config, **stated)
    return converted, [], kwargs, notes


def _build_loaded(fmt: str, converted: dict[str, Tensor], kwargs: dict[str, Any], source: str) -> VisionTransformer:
    """The ViT the arguments describe, with the converted weights loaded strictly (every key, every shape)."""
    try:
        model = vit_from_config(kwargs)
    except ValueError as error:
        raise ConvertError(f"{source}: the sizes read from the checkpoint do not make a ViT ({error})") from None
    if fmt == "vitlab":  # vitlab's own weights may predate the pooled_norm name
        converted = migrate_vit_state_dict(converted, model.state_dict())
    check_keys(model.state_dict(), converted, source)
    model.load_state_dict(converted, strict=True)
    return model


def _tensor_bytes(state: dict[str, Tensor], suffix: str, metadata: dict[str, str] | None = None) -> bytes:
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    if suffix == ".safetensors":
        return save(tensors, metadata={"format": "pt", **(metadata or {})})

    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def export_pretrained(model: VisionTransformer, path: str | os.PathLike[str], format: str) -> Path:
    """Write ``model`` in a library's checkpoint format; nothing is written if it cannot be expressed.

    Args:
        model: a vitlab ViT.
        path: ``"timm"``/``"torchvision"``/``"vitlab"``: a file (``.safetensors``, or ``.pth``/``.pt``/``.bin``
            via ``torch.save``); ``"huggingface"``: a new folder that receives config.json + model.safetensors.
            A vitlab ``.safetensors`` file also stores ``model.config`` in its metadata (``vitlab.config``), so
            :func:`load_pretrained` rebuilds it exactly (heads, eps, norm placement, sin-cos embedding).
        format: one of :data:`FORMATS`.

    Returns:
        The file or folder written.

    Raises:
        ConvertError: unknown format or suffix, an existing Hugging Face folder, or a layout the library's
            ViT cannot express (e.g. average pooling for torchvision).
    """
    path = Path(path)
    if model.config.get("distilled") and format in ("huggingface", "torchvision"):
        raise ConvertError(f"this is a distilled ViT (DeiT's distillation token and head), which {format}'s ViT cannot "
                           "express; export it as format 'timm' (deit_*_distilled layout) or 'vitlab'")
    if model.config.get("stem", "linear") != "linear" and format != "vitlab":
        raise ConvertError(f"this ViT has a convolutional stem (stem='{model.config['stem']}'), which {format}'s ViT "
                           "cannot express; export it as format 'vitlab', or use a model built with stem='linear'")
    state = {k: v for k, v in model.state_dict().items()}
    if format == "huggingface":
        config = hf_config(model)
        tensors = convert_to_hf_state_dict(state, with_classifier=model.num_classes > 0)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConvertError(f"{path} already exists; choose a new folder for the Hugging Face export")
        data = _tensor_bytes(tensors, ".safetensors")
        with staging_dir(path) as staging:
            (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            (staging / "model.safetensors").write_bytes(data)
        return path
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        raise ConvertError(f"{path}: unknown weights file type '{path.suffix}'; use .safetensors, .pth, .pt or .bin")
    if format == "timm":
        _timm_kwargs(model)  # raises if timm cannot express the model
        tensors = convert_to_timm_state_dict(state, model.global_pool, fc_norm=model.fc_norm)
    elif format == "torchvision":
        torchvision_kwargs(model)
        tensors = convert_to_torchvision_state_dict(state)
    elif format == "vitlab":
        tensors = state
    else:
        raise ConvertError(f"unknown checkpoint format '{format}'; choose one of {', '.join(FORMATS)}")
    metadata = {CONFIG_KEY: json.dumps(model.config)} if format == "vitlab" else None
    data = _tensor_bytes(tensors, suffix, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path
