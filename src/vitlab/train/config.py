"""The training recipe: one dataclass, loaded from YAML with ``yaml.safe_load``, overridable from the CLI.

Every key is a field of :class:`TrainConfig`. A YAML file may hold any subset of the keys; ``--set
key=value`` overrides a key afterwards (the value is parsed as YAML, so ``--set lr=3e-4``,
``--set hflip=true`` and ``--set model_args.act=mish`` give a float, a bool and a nested key).
Unknown keys and values of the wrong type or range raise :class:`~vitlab.errors.ConfigError` naming the
key, the bad value and the fix (for an unknown key, the nearest valid one).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vitlab.errors import ConfigError, unknown_name_message

NONFINITE_POLICIES = ("stop", "skip")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    """An image-classification training recipe (the defaults train the embedded digits).

    Data:
        dataset: registered dataset name (``vitlab.data.registry.list_datasets()``).
        data_root: folder of the dataset files (not needed for the embedded digits).
        download: fetch missing dataset files (users who are online).
        val_fraction: share of the training files held out for validation where a dataset has no
            validation split of its own.
        crop_padding: random-crop padding in pixels (0 = off).
        hflip: random horizontal flips (off for digits: a flipped digit is another symbol).
        normalize: subtract the training set's per-channel mean and divide by its std.
    Model:
        model: registered model name; ``img_size``, ``in_chans`` and ``num_classes`` come from the data.
        model_args: constructor overrides, e.g. ``{act: mish, pos_embed: sincos, drop_path_rate: 0.1}``.
    Fine-tuning (:mod:`vitlab.train.pretrained`, docs/finetune.md):
        init: a pretrained ViT to start from (a timm / Hugging Face / torchvision / vitlab weights file or
            model folder, or a vitlab run folder); the architecture then comes from the checkpoint, not from
            ``model``, and is adapted to the data (new zero-initialised head, position embeddings resampled
            to the new grid, channels). Of ``model_args`` only ``patch_size`` (PI-resize of the patch kernel)
            and the regularisers ``drop_rate``, ``attn_drop_rate``, ``drop_path_rate`` apply.
        init_args: what the checkpoint does not record, passed to :func:`vitlab.load_pretrained`:
            ``num_heads``, ``global_pool``, ``fc_norm``, ``norm_eps``, ``act``, ``source_img_size``.
        layer_decay: layer-wise lr decay in (0, 1] (BEiT / MAE; 1 = off): layer i of L gets
            ``lr · layer_decay^(L + 1 − i)``, the warm-up/cosine schedule scaling every group alike.
        linear_probe: train the head only (everything else frozen).
        train_per_class: keep a seeded stratified subset of N training images per class (0 = all; the
            subset's seed is ``seed``; validation and test splits unchanged).
    Optimisation:
        epochs, batch_size (global, over all processes), lr (peak), min_lr (end of the cosine),
        weight_decay (AdamW, not applied to ``no_weight_decay()`` parameters, biases and norms),
        warmup_epochs (linear warm-up from 0), grad_clip (max global L2 norm, 0 = off), accum_steps
        (micro-batches per optimizer step), label_smoothing, and the mixing keys of
        :func:`vitlab.mixing.build_mixing` (mixup_alpha, cutmix_alpha, cutout_size, mix_prob, switch_prob,
        mix_mode: batch, pair or elem), ema_decay (0 = off), amp (``auto``: bf16 autocast where the
        device computes bf16 natively, else float32; ``off``, ``bf16``, ``fp16``; see
        :mod:`vitlab.train.precision`), compile (``torch.compile``), nonfinite (``stop``: end the run naming the step, keeping the last good
        checkpoint; ``skip``: drop that step's update and go on).
    Run:
        seed, device (``auto`` picks CUDA when present), eval_every (epochs), checkpoint_every (epochs),
        checkpoint_steps (also every N optimizer steps; 0 = off), log_every (steps between progress
        updates; each costs one host sync), threads (CPU intra-op threads; 0 = PyTorch's default; the
        default 1 suits the tiny digits ViT, whose epoch took 0.35 s with one thread and 1.1 s with two on
        a 2-core machine shared with one other job).
    """

    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    val_fraction: float = 0.1
    crop_padding: int = 1
    hflip: bool = False
    normalize: bool = True

    model: str = "vit_digits_patch2_8"
    model_args: dict[str, Any] = field(default_factory=lambda: {"global_pool": "avg", "drop_path_rate": 0.1})

    init: str | None = None
    init_args: dict[str, Any] = field(default_factory=dict)
    layer_decay: float = 1.0
    linear_probe: bool = False
    train_per_class: int = 0

    epochs: int = 150
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 3.0
    grad_clip: float = 1.0
    accum_steps: int = 1
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    cutout_size: int = 0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    mix_mode: str = "batch"
    ema_decay: float = 0.0
    amp: str | bool = "auto"
    compile: bool = False
    nonfinite: str = "stop"

    seed: int = 0
    device: str = "auto"
    eval_every: int = 1
    checkpoint_every: int = 1
    checkpoint_steps: int = 0
    log_every: int = 20
    threads: int = 1

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """:func:`config_from_dict` (the constructor every task's config offers)."""
        return config_from_dict(data, source)

    def validate(self) -> None:
        """Check every value's range; raise :class:`ConfigError` naming the key and the fix."""
        from vitlab.train.precision import normalize_amp

        self.amp = normalize_amp(self.amp)
        positive_int = ("epochs", "batch_size", "accum_steps", "eval_every", "checkpoint_every", "log_every")
        for key in positive_int:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)}; e.g. --set {key}=1")
        for key in ("crop_padding", "cutout_size", "checkpoint_steps", "threads", "seed", "train_per_class"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        for key in ("lr",):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{key} must be a positive finite number, got {value}; e.g. --set {key}=1e-3")
        for key in ("min_lr", "weight_decay", "warmup_epochs", "grad_clip", "mixup_alpha", "cutmix_alpha"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{key} must be a finite number >= 0, got {value}")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr {self.min_lr} is larger than lr {self.lr}; lower min_lr")
        for key in ("val_fraction", "label_smoothing"):
            value = getattr(self, key)
            if not (0.0 <= value < 1.0):
                raise ConfigError(f"{key} must be in [0, 1), got {value}")
        for key in ("mix_prob", "switch_prob"):
            value = getattr(self, key)
            if not (0.0 <= value <= 1.0):
                raise ConfigError(f"{key} must be in [0, 1], got {value}")
        if not (math.isfinite(self.layer_decay) and 0.0 < self.layer_decay <= 1.0):
            raise ConfigError(f"layer_decay must be in (0, 1] (1 = off), got {self.layer_decay}; MAE uses 0.65 for ViT-B")
        if self.init is not None and not str(self.init).strip():
            raise ConfigError("init is empty; pass the path of a pretrained checkpoint or run folder, or leave init out")
        from vitlab.train.pretrained import check_init_args

        check_init_args(self.init_args)
        if not (0.0 <= self.ema_decay < 1.0):
            raise ConfigError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}; e.g. 0.999")
        if self.nonfinite not in NONFINITE_POLICIES:
            raise ConfigError(unknown_name_message("nonfinite policy", self.nonfinite, NONFINITE_POLICIES))
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(unknown_name_message("device", self.device, DEVICES))
        if self.batch_size % self.accum_steps:
            raise ConfigError(
                f"batch_size {self.batch_size} is not divisible by accum_steps {self.accum_steps}; "
                "make accum_steps divide batch_size"
            )

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-safe data."""
        return dataclasses.asdict(self)


def config_keys() -> list[str]:
    """The valid top-level keys."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _type_ok(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits ``annotation`` (after int -> float widening); returns (ok, value)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            ok, converted = _type_ok(value, option)
            if ok:
                return True, converted
        return False, value
    if annotation is type(None):
        return value is None, value
    if origin is dict or annotation is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value), value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if annotation is str:
        return isinstance(value, str), value
    return True, value


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def dataclass_from_dict(cls: type, data: dict[str, Any], source: str = "config", kind: str = "config key") -> Any:
    """Build the dataclass ``cls`` from a dict, checking every key and the type of every value.

    Types come from the fields' annotations (int, float, bool, str, dict, optional); an int is widened to
    float, and a float written as YAML 1.1 reads it without a dot ("3e-4") is accepted. Range checks are
    the dataclass's own (``__post_init__``).

    Raises:
        ConfigError: ``data`` is not a mapping, a key is unknown (naming the nearest valid one, as a
            ``kind``), or a value has the wrong type.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of keys to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(f"{source}: " + unknown_name_message(kind, str(key), hints))
        ok, converted = _type_ok(value, hints[key])
        if not ok:
            raise ConfigError(
                f"{source}: {key} must be {_type_name(hints[key])}, got {value!r} ({type(value).__name__})"
            )
        values[key] = converted
    return cls(**values)


def config_from_dict(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig` from a dict, checking every key and type (:func:`dataclass_from_dict`).

    Raises:
        ConfigError: an unknown key (naming the nearest valid one), a value of the wrong type, or a
            value out of range.
    """
    return dataclass_from_dict(TrainConfig, data, source)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load`` (no Python objects). Empty file -> ``{}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; pass a YAML file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def apply_overrides(
    data: dict[str, Any], overrides: list[str], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Apply ``key=value`` overrides (values parsed as YAML; dotted keys reach into nested mappings).

    A dotted key changes that one entry and keeps its siblings. When ``data`` has no mapping at the
    dotted key's first part, the one in ``defaults`` (the task's default recipe) is the starting point,
    so ``--set model_args.act=mish`` without ``--config`` keeps the default ``model_args``; it is not
    used when the overrides choose another ``model`` than the default's (its arguments may not fit).
    """
    result = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    defaults = defaults or {}
    final_model = data.get("model", defaults.get("model"))
    for key, _, raw in (o.partition("=") for o in overrides):
        if key.strip() == "model":
            final_model = raw.strip()
    same_model = final_model == defaults.get("model")
    for item in overrides:
        head = item.partition("=")[0].strip().split(".")[0]
        if "." in item.partition("=")[0] and head not in result and isinstance(defaults.get(head), dict) and same_model:
            result[head] = dict(defaults[head])
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}; e.g. --set lr=1e-3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key!r}: cannot parse value {raw!r}") from None
        parts = key.split(".")
        target = result
        for part in parts[:-1]:
            nested = target.get(part)
            if nested is None:
                nested = target[part] = {}
            elif not isinstance(nested, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a mapping")
            target = nested
        target[parts[-1]] = value
    return result


def resolve_config(config_file: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """The raw config mapping: the YAML file (if any) with the overrides applied.

    Dotted overrides keep the sibling keys of the file's mapping, or of the task's default recipe when
    the file does not give that mapping (see :func:`apply_overrides`).
    """
    data = load_yaml(config_file) if config_file is not None else {}
    task = apply_overrides(data, [o for o in overrides if o.partition("=")[0].strip() == "task"]).get("task", "image")
    try:
        from vitlab.train.tasks import config_class

        defaults = dataclasses.asdict(config_class(str(task))())
    except ConfigError:  # an unknown task: reported when the config is built
        defaults = {}
    return apply_overrides(data, overrides, defaults)


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML text of a config mapping, keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
