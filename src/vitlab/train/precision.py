"""Mixed precision: which autocast dtype a run uses (``amp: auto|off|bf16|fp16``).

* ``auto`` (the default): bf16 autocast where the device computes bf16 natively — CUDA devices with
  ``torch.cuda.is_bf16_supported()``, and CPUs whose ``/proc/cpuinfo`` flags include ``avx512_bf16`` or
  ``amx_bf16`` — and float32 everywhere else (on a CPU without those instructions bf16 is emulated and
  slower than float32).
* ``off``: float32. ``bf16``: bf16 autocast on any device. ``fp16``: float16 autocast with a gradient
  scaler (Micikevicius et al. 2018, loss scaling), CUDA only.
* The booleans of older recipes still load: ``true`` is ``bf16``, ``false`` is ``off``.

Weights, optimizer state and the loss stay float32 in every mode; autocast only changes the dtype of the
matrix products inside the forward pass.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from vitlab.errors import ConfigError

AMP_MODES = ("auto", "off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def normalize_amp(value: str | bool) -> str:
    """The ``amp`` setting as one of :data:`AMP_MODES` (``True`` -> ``bf16``, ``False`` -> ``off``)."""
    if isinstance(value, bool):
        return "bf16" if value else "off"
    if value not in AMP_MODES:
        from vitlab.errors import unknown_name_message

        raise ConfigError("amp: " + unknown_name_message("precision", str(value), AMP_MODES))
    return value


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU's flags (``/proc/cpuinfo``) list ``avx512_bf16`` or ``amx_bf16``; False where unreadable."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def resolve_amp(setting: str, device: torch.device) -> str:
    """The precision a run on ``device`` uses for ``setting``: ``off``, ``bf16`` or ``fp16``.

    Raises:
        ConfigError: ``fp16`` on a device other than CUDA.
    """
    setting = normalize_amp(setting)
    if setting == "auto":
        if device.type == "cuda":
            native = torch.cuda.is_bf16_supported()
        else:
            native = device.type == "cpu" and cpu_has_native_bf16()
        return "bf16" if native else "off"
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError(f"amp: fp16 needs a CUDA device, got {device}; use amp: bf16 or auto")
    return setting


def autocast(device: torch.device, mode: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``mode`` (``bf16``/``fp16``), or a context that changes nothing for ``off``."""
    if mode == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[mode])


def grad_scaler(device: torch.device, mode: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for ``fp16`` (whose small gradients underflow without one), else ``None``."""
    return torch.amp.GradScaler(device.type) if mode == "fp16" else None
