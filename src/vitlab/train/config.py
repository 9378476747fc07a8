"""Configuration: the engine's keys declared once (:class:`EngineConfig`), read from YAML and checked.

Each task's config extends :class:`EngineConfig` with its own keys and lives beside its task
(:class:`vitlab.train.tasks.image_config.ImageConfig`, :class:`vitlab.train.tasks.seq2seq.Seq2SeqConfig`).
A YAML file (``yaml.safe_load``) may hold any subset of the keys; ``--set key=value`` overrides a key
afterwards (the value is parsed as YAML, so ``--set lr=3e-4``, ``--set hflip=true`` and
``--set model_args.act=mish`` give a float, a bool and a nested key). Unknown keys and values of the wrong
type or range raise :class:`~vitlab.errors.ConfigError` naming the key, the bad value and the fix (for an
unknown key, the nearest valid one).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

import yaml

from vitlab.errors import ConfigError, unknown_name_message
from vitlab.train.precision import normalize_amp

NONFINITE_POLICIES = ("stop", "skip")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class EngineConfig:
    """The keys the engine (:mod:`vitlab.train.engine`) reads, declared once; every task's config extends it.

    Optimisation:
        batch_size: global batch over all processes (micro-batch × ``accum_steps`` × processes).
        accum_steps: micro-batches per optimizer step (``batch_size`` must be divisible by it).
        grad_clip: max global L2 norm of the gradients (0 = off; the seq2seq recipes set 0: the paper clips nothing).
        ema_decay: exponential moving average of the weights (0 = off), evaluated and saved beside them.
        amp: ``auto`` (bf16 autocast where the device computes bf16 natively and a measured probe finds it
            faster, else float32), ``off``, ``bf16`` or ``fp16`` (:mod:`vitlab.train.precision`).
        compile: ``torch.compile`` the model.
        nonfinite: ``stop`` (end the run naming the step, keeping the last good checkpoint) or ``skip``
            (drop that step's update and go on).
    Run:
        seed: seeds the model's initialisation, the sample order and augmentation.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        threads: CPU intra-op threads (0 = PyTorch's default, all cores; the default 1 suits the small models
            of the tests and tutorials, whose steps are too short to share between cores).
        checkpoint_every: epochs between checkpoints; checkpoint_steps: also every N optimizer steps (0 = off).
        log_every: optimizer steps between progress updates (each costs one host sync).
    """

    batch_size: int = 64
    accum_steps: int = 1
    grad_clip: float = 1.0
    ema_decay: float = 0.0
    amp: str | bool = "auto"
    compile: bool = False
    nonfinite: str = "stop"
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    checkpoint_every: int = 1
    checkpoint_steps: int = 0
    log_every: int = 20

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the engine keys' ranges; a task's config extends this with its own keys (calling it first)."""
        self.amp = normalize_amp(self.amp)
        for key in ("batch_size", "accum_steps", "checkpoint_every", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)}; e.g. --set {key}=1")
        for key in ("checkpoint_steps", "threads", "seed"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ConfigError(f"grad_clip must be a finite number >= 0 (0 = off), got {self.grad_clip}")
        if not (0.0 <= self.ema_decay < 1.0):
            raise ConfigError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}; e.g. 0.999")
        if self.nonfinite not in NONFINITE_POLICIES:
            raise ConfigError(unknown_name_message("nonfinite policy", self.nonfinite, NONFINITE_POLICIES))
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(unknown_name_message("device", self.device, DEVICES))
        if self.batch_size % self.accum_steps:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by accum_steps {self.accum_steps}; "
                              "make accum_steps divide batch_size")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Any:
        """The config from a recipe mapping, every key and type checked (:func:`dataclass_from_dict`)."""
        return dataclass_from_dict(cls, data, source)

    @classmethod
    def keys(cls) -> list[str]:
        """The valid keys, in the order :meth:`to_dict` writes them."""
        return _ordered_names(cls)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-safe data: the task's own keys first, then the engine's."""
        values = dataclasses.asdict(self)
        return {name: values[name] for name in _ordered_names(type(self))}


def _ordered_names(cls: type) -> list[str]:
    """A task config's field names: its own first, then :class:`EngineConfig`'s."""
    engine = [f.name for f in dataclasses.fields(EngineConfig)]
    return [f.name for f in dataclasses.fields(cls) if f.name not in engine] + engine


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


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML text of a config mapping, keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
