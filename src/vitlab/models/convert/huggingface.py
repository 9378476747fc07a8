"""Hugging Face transformers ViT folders in and out of vitlab's ViT (no transformers import at run time).

A folder saved by ``save_pretrained`` (and served by the Hub) holds ``config.json`` and ``model.safetensors``
(or ``pytorch_model.bin``). ``ViTForImageClassification`` names its weights ``vit.embeddings.*``,
``vit.encoder.layer.i.*``, ``vit.layernorm.*`` and ``classifier.*``; a bare ``ViTModel`` drops the ``vit.``
prefix and may carry ``pooler.dense`` (Linear + tanh on the normalised class token). transformers 5 names
its modules ``layers.i.attention.{q,k,v,o}_proj`` and ``layers.i.mlp.fc{1,2}`` in memory (a ``state_dict()``
saved by hand) but ``save_pretrained`` still writes the Hub names; both are read. The attention has
separate ``query``/``key``/``value`` layers, which concatenate (in that order) into vitlab's fused ``qkv``
rows [q; k; v]. The final LayerNorm acts on every token and the classifier reads the class token, so the
layout is vitlab's ``global_pool="token"``, ``fc_norm=False``; the pooler becomes vitlab's pre-logits layer
(``representation_size``). ``layer_norm_eps`` (default 1e-12) and ``hidden_act`` come from the config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vitlab.models.convert.common import ConvertError, patch_from_conv
from vitlab.models.convert.timm import mlp_ratio_for
from vitlab.models.vit import VisionTransformer

__all__ = [
    "HF_WEIGHT_FILES",
    "convert_hf_state_dict",
    "convert_to_hf_state_dict",
    "hf_config",
    "hf_kwargs_from_config",
    "read_hf_config",
]

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# transformers' ACT2FN names -> vitlab activation names (the tanh forms are the same formula)
_ACTS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_accurate": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "mish": "mish",
}
_LAYER = {
    "layernorm_before": "norm1",
    "attention.output.dense": "attn.proj",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}


# transformers >= 5 module names (``model.state_dict()``; ``save_pretrained`` still writes the Hub names above)
_MODULE_NAMES = {
    "attention.q_proj": "attention.attention.query",
    "attention.k_proj": "attention.attention.key",
    "attention.v_proj": "attention.attention.value",
    "attention.o_proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def read_hf_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse ``folder/config.json`` as JSON.

    Raises:
        ConvertError: no config.json (a Hugging Face folder needs it), or it is not a JSON object.
    """
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConvertError(f"{folder}: no config.json; a Hugging Face model folder needs the config.json it was "
                           "saved with (download it next to the weights), or pass the weights file itself")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConvertError(f"{path} is not valid JSON ({type(error).__name__}); download it again") from None
    if not isinstance(config, dict):
        raise ConvertError(f"{path} is not a JSON object; download it again")
    return config


def _pair(value: Any, name: str, source: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise ConvertError(f"{source}: config {name}={value!r} is not an int or a pair of ints")


def hf_kwargs_from_config(config: dict[str, Any], state_dict: dict[str, Tensor], source: str) -> dict[str, Any]:
    """:class:`VisionTransformer` keyword arguments of a Hugging Face ViT config (and its weights' head).

    Raises:
        ConvertError: not a plain ViT (``model_type`` other than ``"vit"``), an unsupported activation, a
            non-square patch, or a pooler activation other than tanh.
    """
    model_type = config.get("model_type")
    if model_type != "vit":
        raise ConvertError(f"{source}: config.json has model_type={model_type!r}; only Hugging Face 'vit' models "
                           "convert (DeiT, DINOv2, BEiT, ... have other layouts)")
    get = lambda key, default: config.get(key, default)  # noqa: E731  (ViTConfig's defaults)
    dim = int(get("hidden_size", 768))
    act_name = str(get("hidden_act", "gelu"))
    if act_name not in _ACTS:
        raise ConvertError(f"{source}: hidden_act={act_name!r} is not supported (choices: {', '.join(_ACTS)})")
    patch_h, patch_w = _pair(get("patch_size", 16), "patch_size", source)
    if patch_h != patch_w:
        raise ConvertError(f"{source}: non-square patches {patch_h}x{patch_w} are not supported by vitlab's ViT")
    image = _pair(get("image_size", 224), "image_size", source)
    has_classifier = "classifier.weight" in state_dict
    if not has_classifier and "ViTForImageClassification" in (config.get("architectures") or []):
        raise ConvertError(f"{source}: config.json names ViTForImageClassification but the weights have no "
                           "classifier.weight; the download is incomplete")
    representation = None
    if not has_classifier and "pooler.dense.weight" in state_dict:
        if str(get("pooler_act", "tanh")) != "tanh":
            raise ConvertError(f"{source}: pooler_act={get('pooler_act', 'tanh')!r} is not supported (tanh only)")
        representation = int(state_dict["pooler.dense.weight"].shape[0])
    return dict(
        img_size=(image[0] // patch_h * patch_h, image[1] // patch_w * patch_w),
        patch_size=patch_h,
        in_chans=int(get("num_channels", 3)),
        num_classes=int(state_dict["classifier.weight"].shape[0]) if has_classifier else 0,
        embed_dim=dim,
        depth=int(get("num_hidden_layers", 12)),
        num_heads=int(get("num_attention_heads", 12)),
        mlp_ratio=mlp_ratio_for(int(get("intermediate_size", 3072)), dim),
        qkv_bias=bool(get("qkv_bias", True)),
        class_token=True,
        global_pool="token",
        pos_embed="learn",
        act=_ACTS[act_name],
        fc_norm=False,
        norm_eps=float(get("layer_norm_eps", 1e-12)),
        representation_size=representation,
    )


def convert_hf_state_dict(
    state_dict: dict[str, Tensor], source: str = "Hugging Face ViT"
) -> tuple[dict[str, Tensor], list[str]]:
    """Map Hugging Face ViT weights to vitlab's names.

    Returns:
        (vitlab state dict, source names dropped: ``pooler.*`` when a classifier is present, ``mask_token``).

    Raises:
        ConvertError: a key with no vitlab counterpart, or q/k/v of one layer incomplete.
    """
    has_classifier = "classifier.weight" in state_dict
    converted: dict[str, Tensor] = {}
    dropped: list[str] = []
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        name = key[len("vit.") :] if key.startswith("vit.") else key
        if name == "embeddings.cls_token":
            converted["cls_token"] = value
        elif name == "embeddings.position_embeddings":
            converted["pos_embed.weight"] = value
        elif name.startswith("embeddings.patch_embeddings.projection."):
            converted["patch_embed.proj." + name.rsplit(".", 1)[1]] = value
        elif name == "embeddings.mask_token" or (name.startswith("pooler.") and has_classifier):
            dropped.append(key)
        elif name.startswith("pooler.dense."):
            converted["pre_logits.fc." + name.rsplit(".", 1)[1]] = value
        elif name.startswith("layernorm."):
            converted["norm." + name.rsplit(".", 1)[1]] = value
        elif name.startswith("classifier."):
            converted["head." + name.rsplit(".", 1)[1]] = value
        elif name.startswith(("encoder.layer.", "layers.")):
            layer_prefix = "encoder.layer." if name.startswith("encoder.layer.") else "layers."
            index_text, rest = name[len(layer_prefix) :].split(".", 1)
            index = int(index_text)
            part, leaf = rest.rsplit(".", 1)
            part = _MODULE_NAMES.get(part, part) if layer_prefix == "layers." else part
            if part.startswith("attention.attention.") and part.split(".")[-1] in ("query", "key", "value"):
                qkv.setdefault((index, leaf), {})[part.split(".")[-1]] = value
            elif part in _LAYER:
                converted[f"blocks.{index}.{_LAYER[part]}.{leaf}"] = value
            else:
                raise ConvertError(f"{source}: key '{key}' has no counterpart in vitlab's ViT")
        else:
            raise ConvertError(f"{source}: key '{key}' has no counterpart in vitlab's ViT")
    for (index, leaf), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise ConvertError(f"{source}: layer {index} has only {sorted(parts)} {leaf}s of query/key/value")
        converted[f"blocks.{index}.attn.qkv.{leaf}"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
    if "patch_embed.proj.weight" in converted:
        patch_from_conv(converted["patch_embed.proj.weight"], source)
    return converted, dropped


def convert_to_hf_state_dict(state_dict: dict[str, Tensor], with_classifier: bool = True) -> dict[str, Tensor]:
    """vitlab names → Hugging Face names (``vit.`` prefix and ``classifier`` when ``with_classifier``, else a
    bare ``ViTModel``, whose ``pooler.dense`` is vitlab's pre-logits layer if the model has one)."""
    prefix = "vit." if with_classifier else ""
    inverse = {v: k for k, v in _LAYER.items()}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "cls_token":
            out[prefix + "embeddings.cls_token"] = value
        elif key == "pos_embed.weight":
            out[prefix + "embeddings.position_embeddings"] = value
        elif key.startswith("patch_embed.proj."):
            out[prefix + "embeddings.patch_embeddings.projection." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("norm."):
            out[prefix + "layernorm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("head."):
            out["classifier." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("pre_logits.fc."):
            out["pooler.dense." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            part, leaf = rest.rsplit(".", 1)
            layer = f"{prefix}encoder.layer.{index}."
            if part == "attn.qkv":
                for name, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    out[f"{layer}attention.attention.{name}.{leaf}"] = chunk.clone()
            else:
                out[f"{layer}{inverse[part]}.{leaf}"] = value
        else:
            raise ConvertError(f"vitlab key '{key}' has no Hugging Face ViT counterpart")
    return out


def hf_config(model: VisionTransformer) -> dict[str, Any]:
    """A Hugging Face ``config.json`` (``ViTConfig`` fields) describing ``model``.

    Raises:
        ConvertError: a layout Hugging Face's ViT cannot express (average pooling, no class token,
            LayerScale, a position embedding other than learned, ``no_embed_class``, an activation it lacks).
    """
    reasons = []
    if model.global_pool != "token" or model.fc_norm:
        reasons.append("average pooling or a norm after pooling")
    if model.cls_token is None or model.no_embed_class or model.pos_embed_type != "learn":
        reasons.append("no class token or a position embedding other than learned on every token")
    first = model.blocks[0]
    if not isinstance(first.ls1, nn.Identity):
        reasons.append("LayerScale")
    act_type = type(first.mlp.act).__name__
    act = {"GELU": "gelu", "ReLU": "relu", "Swish": "silu", "SiLU": "silu", "Mish": "mish"}.get(act_type)
    if act == "gelu" and getattr(first.mlp.act, "approximate", "none") == "tanh":
        act = "gelu_pytorch_tanh"
    if act is None:
        reasons.append(f"the activation {act_type}")
    if model.num_classes and not isinstance(model.pre_logits, nn.Identity):
        reasons.append("pre-logits layer before a classifier")
    if reasons:
        raise ConvertError(
            f"Hugging Face's ViT cannot express this model's {', '.join(reasons)}; export to timm instead"
        )
    config: dict[str, Any] = {
        "architectures": ["ViTForImageClassification" if model.num_classes else "ViTModel"],
        "model_type": "vit",
        "hidden_size": model.embed_dim,
        "num_hidden_layers": len(model.blocks),
        "num_attention_heads": first.attn.num_heads,
        "intermediate_size": first.mlp.fc1.out_features,
        "hidden_act": act,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": model.norm_eps,
        "image_size": list(model.img_size) if model.img_size[0] != model.img_size[1] else model.img_size[0],
        "patch_size": model.patch_embed.patch_size,
        "num_channels": model.patch_embed.in_chans,
        "qkv_bias": first.attn.qkv.bias is not None,
        "encoder_stride": model.patch_embed.patch_size,
    }
    if not isinstance(model.pre_logits, nn.Identity):
        config["pooler_output_size"] = model.pre_logits.fc.out_features
        config["pooler_act"] = "tanh"
    if model.num_classes:
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_classes)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(model.num_classes)}
    return config
