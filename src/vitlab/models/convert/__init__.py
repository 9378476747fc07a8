"""The per-library key maps of ViT checkpoints: timm (:mod:`.timm`), Hugging Face transformers
(:mod:`.huggingface`) and torchvision (:mod:`.torchvision`), with their shared pieces in :mod:`.common`.

Loading a file or folder whatever wrote it (:func:`~vitlab.models.pretrained.load_pretrained`) and exporting
(:func:`~vitlab.models.pretrained.export_pretrained`) sit one layer above, in :mod:`vitlab.models.pretrained`,
which also adapts a loaded model for fine-tuning (:mod:`vitlab.models.finetune`).

A conversion is exact or refused by name (:class:`ConvertError`, one line); none of timm, transformers or
torchvision is imported.
"""

from vitlab.models.convert.common import ConvertError, LoadReport, read_state_dict
from vitlab.models.convert.huggingface import convert_hf_state_dict, convert_to_hf_state_dict, hf_config
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
    "ConvertError",
    "LoadReport",
    "convert_hf_state_dict",
    "convert_timm_state_dict",
    "convert_to_hf_state_dict",
    "convert_to_timm_state_dict",
    "convert_to_torchvision_state_dict",
    "convert_torchvision_state_dict",
    "hf_config",
    "read_state_dict",
    "timm_kwargs",
    "torchvision_kwargs",
    "vit_from_timm",
]
