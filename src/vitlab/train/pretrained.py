"""Starting an image run from pretrained weights (``init:``): load, adapt to the data, record, rebuild on resume.

The ViT paper's fine-tuning recipe (Dosovitskiy et al. 2021, Sec. 3.2, App. B.1.1): the pretrained body,
a new zero-initialised head for the new classes, position embeddings resampled in 2-D to the new patch grid.
vitlab adds FlexiViT's pseudo-inverse resize of the patch kernel when ``model_args.patch_size`` differs
(Beyer et al. 2023) and grayscale ↔ RGB channel mapping (:mod:`vitlab.models.finetune`).

``init`` may be

* a weights file or model folder of timm, Hugging Face, torchvision or vitlab, read by
  :func:`vitlab.load_pretrained` (``init_args`` supplies what a bare state dict does not record, e.g.
  ``num_heads``);
* a vitlab run folder, or its ``model.safetensors``: the model is rebuilt from the run's ``config.yaml`` and
  ``run.json``, so nothing needs to be passed (the image task reads the run back, :func:`run_folder` tells it
  apart, and :func:`adapt_init` adapts either source).

The run records the source (path as given, absolute path, SHA-256 of the weights file) and the
:class:`~vitlab.models.convert.common.LoadReport` in ``run.json`` under ``"init"``. Resuming (and ``vitlab eval``)
rebuilds the architecture from the recorded ``config`` and loads the run's own weights; the init file is
not read again (it may have moved or changed since).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from vitlab.errors import ConfigError, unknown_name_message
from vitlab.io import sha256_file
from vitlab.models.convert.common import ConvertError, LoadReport
from vitlab.models.deit import vit_from_config
from vitlab.models.finetune import adapt_pretrained
from vitlab.models.pretrained import load_pretrained
from vitlab.models.vit import VisionTransformer
from vitlab.train.runs import CONFIG_FILE, RUN_INFO_FILE, WEIGHTS_FILE

__all__ = ["INIT_ARGS", "TUNABLE_MODEL_ARGS", "adapt_init", "check_init_args", "init_path", "init_record",
           "load_init_checkpoint", "model_from_record", "run_folder", "run_report"]

# What a checkpoint may not record, passed through to vitlab.load_pretrained (its keyword arguments).
INIT_ARGS = ("num_heads", "global_pool", "fc_norm", "norm_eps", "act", "source_img_size")
# The model_args that still apply when the architecture comes from a checkpoint.
TUNABLE_MODEL_ARGS = ("patch_size", "drop_rate", "attn_drop_rate", "drop_path_rate")


def check_init_args(init_args: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for a key of ``init_args`` that :func:`vitlab.load_pretrained` does not take."""
    for key in init_args:
        if key not in INIT_ARGS:
            raise ConfigError("init_args: " + unknown_name_message("init argument", str(key), INIT_ARGS)
                              + " (other model arguments go to model_args)")


def init_path(init: str) -> Path:
    """The file or folder a recipe's ``init`` names (``~`` expanded)."""
    return Path(str(init)).expanduser()


def run_folder(path: Path) -> Path | None:
    """The vitlab run folder ``path`` is, or whose ``model.safetensors`` it is; else ``None``."""
    folder = path.parent if path.is_file() and path.name == WEIGHTS_FILE else path
    if folder.is_dir() and (folder / CONFIG_FILE).is_file() and (folder / RUN_INFO_FILE).is_file():
        return folder
    return None


def run_report(model: nn.Module, run: Path, path: Path) -> LoadReport:
    """The :class:`LoadReport` of a ViT read back from the run folder ``run`` (``path``: as the user gave it).

    Raises:
        ConvertError: the run trained another model than a ViT.
    """
    if not isinstance(model, VisionTransformer):
        raise ConvertError(
            f"{path}: its run trained a {type(model).__name__}, not a ViT; fine-tuning starts from a ViT"
        )
    return LoadReport(source=str(path), format="vitlab run", sha256=sha256_file(run / WEIGHTS_FILE),
                      config=dict(model.config), loaded=list(model.state_dict()))


def load_init_checkpoint(init: str, init_args: dict[str, Any]) -> tuple[VisionTransformer, LoadReport]:
    """The ViT of the weights file or model folder ``init`` names, as stored (:func:`vitlab.load_pretrained`
    with the recipe's ``init_args``)."""
    return load_pretrained(init_path(init), **init_args)


def _check_patch(image_hw: tuple[int, int], patch: int, source: str) -> None:
    if image_hw[0] % patch or image_hw[1] % patch:
        fits = max(p for p in range(1, min(patch, *image_hw) + 1) if image_hw[0] % p == 0 and image_hw[1] % p == 0)
        raise ConvertError(f"{source}: the data's {image_hw[0]}x{image_hw[1]} images do not split into {patch}x{patch} "
                           f"patches; choose a patch size that divides them, e.g. --set model_args.patch_size={fits}")


def adapt_init(init: str, model_args: dict[str, Any], source: VisionTransformer, report: LoadReport,
               image_shape: tuple[int, int, int],
               num_classes: int) -> tuple[nn.Module, LoadReport, list[str]]:
    """The pretrained ``source`` adapted to images of ``image_shape`` (C, H, W) and ``num_classes`` (a new
    zero-initialised head, position embeddings resampled to the grid, channels; ``model_args.patch_size`` for a
    PI-resized patch kernel, and the regularisers of :data:`TUNABLE_MODEL_ARGS`).

    Returns:
        (model, report, notes): ``notes`` are one-line warnings for ``model_args`` entries that differ from the
        checkpoint and are therefore not used.

    Raises:
        ConvertError: the data's images do not split into the patches, or the model cannot be adapted.
    """
    path = init_path(init)
    channels, height, width = image_shape
    tunable = {k: v for k, v in model_args.items() if k in TUNABLE_MODEL_ARGS}
    patch = tunable.pop("patch_size", None)
    _check_patch((height, width), int(patch or source.config["patch_size"]), str(path))
    model, report = adapt_pretrained(source, num_classes=num_classes, img_size=(height, width), patch_size=patch,
                                     in_chans=channels, report=report, **tunable)
    return model, report, _unused_model_args(model_args, report.config, path)


def _unused_model_args(model_args: dict[str, Any], config: dict[str, Any], path: Path) -> list[str]:
    """One note per ``model_args`` entry that the checkpoint's architecture overrides."""
    notes = []
    for key, value in model_args.items():
        if key in TUNABLE_MODEL_ARGS:
            continue
        if key not in config:
            notes.append(f"model_args.{key} is not used with init: the architecture comes from {path}")
            continue
        have = config[key]
        have = list(have) if isinstance(have, tuple) else have
        if have != value:
            notes.append(f"model_args.{key}={value!r} is not used: init {path} has {key}={have!r} (with init only "
                         f"model_args {', '.join(TUNABLE_MODEL_ARGS)} apply)")
    return notes


def init_record(init: str, report: LoadReport) -> dict[str, Any]:
    """What run.json keeps about the initial weights: path as given, absolute path, SHA-256, the full report."""
    return {"path": str(init), "resolved": str(init_path(init).resolve()), "sha256": report.sha256,
            "format": report.format, "report": report.to_dict()}


def model_from_record(record: dict[str, Any]) -> nn.Module:
    """The (untrained) architecture a fine-tuning run used, from its run.json ``"init"`` record."""
    config = dict(record["report"]["config"])
    if isinstance(config.get("img_size"), list):
        config["img_size"] = tuple(config["img_size"])
    return vit_from_config(config)
