"""Mixed precision: which autocast dtype a run uses (``amp: auto|off|bf16|fp16``), decided by measurement.

* ``auto`` (the default) **measures**: where the device computes bf16 natively (CUDA devices with
  ``torch.cuda.is_bf16_supported()``; CPUs whose ``/proc/cpuinfo`` flags include ``avx512_bf16`` or
  ``amx_bf16``) the engine times a few training steps of the run's own model at its own micro-batch shape
  in float32 and in bf16 (:func:`time_training_steps`, on synthetic input and on a copy of the model and
  optimizer, with every RNG state put back), and picks bf16 only where its step is at least
  :data:`BF16_MIN_SPEEDUP` times faster. A native instruction says bf16 exists, not that it pays: for a
  small model the casts around every matrix product can cost more than the bf16 product saves (the default
  recipe's 92 k-parameter ViT trains 2.4× *slower* in bf16 on such a CPU, while ViT-Ti/4 trains 1.6× faster).
  Without native bf16 (where PyTorch emulates it, always slower) ``auto`` is float32 with no probe.
* ``off``: float32. ``bf16``: bf16 autocast on any device. ``fp16``: float16 autocast with a gradient
  scaler (Micikevicius et al. 2018, loss scaling), CUDA only. Explicit settings never probe.
* The booleans of older recipes still load: ``true`` is ``bf16``, ``false`` is ``off``.

The decision is part of the run: it is written to run.json and summary.json (``amp`` and ``amp_choice``:
the setting, the reason, the probe's step times), a resumed run reuses it, every DDP rank uses rank 0's,
and ``vitlab eval`` / ``predict`` evaluate in it. Two fresh runs near the threshold can decide differently,
so pin ``amp`` wherever results must be comparable across machines. Within one process a decision is
cached for an identical (device, threads, model, input shape).

Everything else that depends on the precision follows a fixed rule of (device, precision), so that ``auto``
choosing X is bit-identical to ``amp: X``: :func:`attention_backends` picks the scaled-dot-product
attention kernels. Weights, optimizer state and the loss stay float32 in every mode; autocast only changes
the dtype of the matrix products inside the forward pass.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from vitlab.errors import ConfigError, unknown_name_message

AMP_MODES = ("auto", "off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# auto picks bf16 only where float32's step time / bf16's is at least this (so a wrong "off" costs < 5 %)
BF16_MIN_SPEEDUP = 1.05
PROBE_ROUNDS = 5  # timed steps per precision, taken in turns
PROBE_MAX_SECONDS = 3.0  # the timed rounds stop early once they have taken this long


def normalize_amp(value: str | bool) -> str:
    """The ``amp`` setting as one of :data:`AMP_MODES` (``True`` -> ``bf16``, ``False`` -> ``off``)."""
    if isinstance(value, bool):
        return "bf16" if value else "off"
    if value not in AMP_MODES:
        raise ConfigError("amp: " + unknown_name_message("precision", str(value), AMP_MODES))
    return value


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bf16 instructions: ATen's CPU capability is ``AVX512`` and the CPU's flags
    (``/proc/cpuinfo``) list ``avx512_bf16`` or ``amx_bf16``; False where the flags are unreadable.

    ``torch.backends.cpu.get_cpu_capability()`` answers the first half without reading a file: both bf16
    instruction sets come only on CPUs with the AVX-512 F/BW/DQ/VL that ATen's ``AVX512`` level needs, so any
    other level (``AVX2``, ``DEFAULT``, ``SVE256``, ...; or one capped by ``ATEN_CPU_CAPABILITY``) means no.
    It names the vector width, not the bf16 instructions (``AVX512`` with or without avx512_bf16 or AMX), so
    the flags are read for the second half.
    """
    if torch.backends.cpu.get_cpu_capability() != "AVX512":  # necessary, not sufficient: cannot see bf16 or AMX
        return False
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA: ``torch.cuda.is_bf16_supported()``; CPU: its flags)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def check_amp(setting: str | bool, device: torch.device) -> str:
    """``setting`` normalised and checked for ``device`` (``auto`` is returned as is).

    Raises:
        ConfigError: an unknown setting, or ``fp16`` on a device other than CUDA.
    """
    setting = normalize_amp(setting)
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError(f"amp: fp16 needs a CUDA device, got {device}; use amp: bf16 or auto")
    return setting


@dataclasses.dataclass
class AmpChoice:
    """The precision a run uses and why (written to run.json and summary.json as ``amp_choice``).

    Attributes:
        amp: ``off``, ``bf16`` or ``fp16``: the resolved precision.
        setting: what the recipe asked for (``auto``, ``off``, ``bf16``, ``fp16``).
        reason: one sentence: why this precision.
        step_seconds: the probe's median step time per candidate precision (empty without a probe).
        probe_seconds: wall time the probe took (0 without a probe, or when the decision came from the cache).
    """

    amp: str
    setting: str
    reason: str
    step_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    probe_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def line(self) -> str:
        """The one line the engine prints before the first step."""
        return f"precision {describe(self.amp)} (amp: {self.setting}): {self.reason}"


def describe(mode: str) -> str:
    """``float32`` for ``off``, else the mode's name."""
    return "float32" if mode == "off" else mode


_CACHE: dict[tuple, AmpChoice] = {}


def choose_amp(
    setting: str | bool,
    device: torch.device,
    time_steps: Callable[[Sequence[str]], dict[str, float]] | None = None,
    cache_key: tuple | None = None,
) -> AmpChoice:
    """The precision for ``setting`` on ``device``; for ``auto`` on a native-bf16 device, measured.

    Args:
        setting: the recipe's ``amp``.
        device: the run's device.
        time_steps: ``modes -> {mode: seconds per training step}`` (see :func:`time_training_steps`);
            without it ``auto`` falls back to float32.
        cache_key: identifies (model, input shape, ...) for the within-process cache; ``None``: no caching.

    Raises:
        ConfigError: an unknown setting, or ``fp16`` off CUDA.
    """
    setting = check_amp(setting, device)
    if setting != "auto":
        return AmpChoice(setting, setting, "set explicitly; no probe")
    if not native_bf16(device):
        where = (
            "this CPU lists neither avx512_bf16 nor amx_bf16"
            if device.type == "cpu"
            else f"{device} has no native bf16"
        )
        return AmpChoice("off", setting, f"{where}, so bf16 would be emulated (slower); no probe")
    if time_steps is None:
        return AmpChoice("off", setting, "no probe could run for this task; float32")
    key = None if cache_key is None else (str(device), torch.get_num_threads(), *cache_key)
    if key is not None and key in _CACHE:
        cached = _CACHE[key]
        return dataclasses.replace(
            cached, reason=cached.reason + " (decision cached in this process)", probe_seconds=0.0
        )
    start = time.perf_counter()
    seconds = time_steps(("off", "bf16"))
    speedup = seconds["off"] / seconds["bf16"]
    amp = "bf16" if speedup >= BF16_MIN_SPEEDUP else "off"
    verdict = "faster" if amp == "bf16" else f"not >= {BF16_MIN_SPEEDUP}x faster"
    reason = (f"probe: float32 step {seconds['off'] * 1e3:.1f} ms, bf16 {seconds['bf16'] * 1e3:.1f} ms "
              f"(bf16 {speedup:.2f}x, {verdict})")
    choice = AmpChoice(amp, setting, reason, seconds, time.perf_counter() - start)
    if key is not None:
        _CACHE[key] = choice
    return choice


def time_training_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_of: Callable[[nn.Module], Tensor],
    device: torch.device,
    modes: Sequence[str],
    rounds: int = PROBE_ROUNDS,
    max_seconds: float = PROBE_MAX_SECONDS,
) -> dict[str, float]:
    """Median seconds of one forward + backward + optimizer step in each of ``modes``, on copies of the model.

    Each mode gets its own deep copy of the model and optimizer (copied together, so the copied optimizer
    updates the copied parameters) and one untimed warm-up step; then the modes take turns, one timed step
    each per round (the order reversed every other round), so that a change in machine load hits all alike.
    Rounds stop early once the timed steps have taken ``max_seconds`` (at least one round runs). The global
    CPU/CUDA RNG states are put back afterwards: nothing of the caller's run changes, no parameter,
    optimizer state or random stream.

    Args:
        model, optimizer: the run's, left untouched.
        loss_of: ``model -> scalar loss`` on a synthetic batch of the run's micro-batch shape.
        device: where to time (CUDA is synchronised around each step).
        modes: precisions to time (``off``, ``bf16``, ``fp16``).
    """
    copies = {mode: copy.deepcopy((model, optimizer)) for mode in modes}
    times: dict[str, list[float]] = {mode: [] for mode in modes}

    def step(mode: str) -> float:
        probe_model, probe_optimizer = copies[mode]
        _sync(device)
        start = time.perf_counter()
        with autocast(device, mode):
            loss = loss_of(probe_model)
        loss.backward()
        probe_optimizer.step()
        probe_optimizer.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - start

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for probe_model, _ in copies.values():
            probe_model.train()
        for mode in modes:
            step(mode)  # warm-up: first-call costs (allocations, kernel selection)
        spent = 0.0
        for r in range(rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                times[mode].append(step(mode))
                spent += times[mode][-1]
            if spent > max_seconds:
                break
    return {mode: statistics.median(values) for mode, values in times.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluation_amp(recorded: str | bool, device: torch.device) -> tuple[str, str | None]:
    """The precision to evaluate a run in that trained in ``recorded`` (run.json's ``amp``), on ``device``.

    Returns ``(mode, note)``: the recorded precision where ``device`` can run it, with ``note`` None; else
    float32 and a one-line note that the metrics may differ from the run's own summary.
    """
    mode = normalize_amp(recorded)
    if mode == "auto":  # run folders store the resolved precision; "auto" there predates the probe
        mode = "bf16" if native_bf16(device) else "off"
    if mode == "fp16" and device.type != "cuda":
        return "off", (
            f"this run trained in fp16 (CUDA only); evaluating in float32 on {device}, "
            "so metrics may differ slightly from its summary"
        )
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "off", (
            f"this run trained in bf16, which {device} lacks; evaluating in float32, "
            "so metrics may differ slightly from its summary"
        )
    return mode, None


def attention_backends(device: torch.device, mode: str) -> list[SDPBackend] | None:
    """The scaled-dot-product attention kernels for (device, precision): a fixed rule, justified by
    ``benchmarks/bench_vit.py`` (ViT-Ti/4 step, batch 128, 2 threads, CPU with native bf16):

    * CPU, bf16: the math kernel. PyTorch's default picks the fused flash kernel, whose bf16 backward is
      slow on the CPU: ViT-Ti/4 96 against 68 images/s, the default recipe's ViT 1,026 against 524.
    * CPU, float32 and CUDA: ``None``, PyTorch's own choice. Forcing flash in float32 moved ViT-Ti/4 by
      +5 % and the default recipe's ViT by −5 %, within the noise of one run, so float32 numerics stay
      exactly what they were.
    """
    return [SDPBackend.MATH] if device.type == "cpu" and mode == "bf16" else None


def autocast(device: torch.device, mode: str) -> contextlib.AbstractContextManager:
    """The region a forward pass runs in for ``mode``: ``torch.autocast`` for ``bf16``/``fp16`` (nothing
    for ``off``), with the attention kernels of :func:`attention_backends`."""
    stack = contextlib.ExitStack()
    backends = attention_backends(device, mode)
    if backends is not None:
        stack.enter_context(sdpa_kernel(backends))
    if mode != "off":
        stack.enter_context(torch.autocast(device.type, dtype=_DTYPES[mode]))
    return stack


def grad_scaler(device: torch.device, mode: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for ``fp16`` (whose small gradients underflow without one), else ``None``."""
    return torch.amp.GradScaler(device.type) if mode == "fp16" else None
