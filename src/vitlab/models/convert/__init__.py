"""Pretrained ViT checkpoints in and out of vitlab: timm, Hugging Face transformers and torchvision.

* :func:`load_pretrained` detects the format of a file or folder, builds the matching
  :class:`~vitlab.models.vit.VisionTransformer` with the sizes read from the weights (and ``config.json``),
  optionally adapts it for fine-tuning (new head, image size, patch size, channels; see
  :mod:`vitlab.models.finetune`) and returns a :class:`LoadReport` of what happened to each tensor.
* :func:`export_pretrained` writes a vitlab ViT in a library's format (tests load it back in that library
  and compare logits).
* The per-library key maps live in :mod:`.timm`, :mod:`.huggingface` and :mod:`.torchvision`.

A conversion is exact or refused by name (:class:`ConvertError`, one line); none of timm, transformers or
torchvision is imported.
"""

from vitlab.models.convert.common import ConvertError, LoadReport, read_state_dict
from vitlab.models.convert.huggingface import convert_hf_state_dict, convert_to_hf_state_dict, hf_config
from vitlab.models.convert.loader import FORMATS, detect_format, export_pretrained, load_pretrained
from vitlab.models.convert.timm import (
    convert_timm_state_dict,
    convert_to_timm_state_dict,
    timm_kwargs,
    vit_from_timm,
)
from vitlab.models.convert.torchvision import (
    convert_to_torchvision_state_dict,
    convert_torchvision_state_dict,
    torchvision_kwargs,
)

__all__ = [
    "FORMATS",
    "ConvertError",
    "LoadReport",
    "convert_hf_state_dict",
    "convert_timm_state_dict",
    "convert_to_hf_state_dict",
    "convert_to_timm_state_dict",
    "convert_to_torchvision_state_dict",
    "convert_torchvision_state_dict",
    "detect_format",
    "export_pretrained",
    "hf_config",
    "load_pretrained",
    "read_state_dict",
    "timm_kwargs",
    "torchvision_kwargs",
    "vit_from_timm",
]
