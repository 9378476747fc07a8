"""Activation functions selectable by name, and memory-lean autograd Functions for Mish and Swish.

``get_activation("mish")`` returns a fresh ``nn.Module``; every model takes its activation as a name so
that it is a config choice (``act: mish``).

* ReLU: max(0, x).
* GELU (Hendrycks & Gimpel 2016, "Gaussian Error Linear Units"): x·Φ(x), Φ the standard normal CDF
  (exact erf form, as in ViT; ``gelu_tanh`` is the tanh approximation).
* Swish / SiLU (Ramachandran, Zoph & Le 2017, "Searching for Activation Functions", eq. for β = 1;
  Elfwing et al. 2018 call it SiLU):

      swish(x)  = x·σ(x)
      swish'(x) = σ(x) + x·σ(x)·(1 − σ(x)) = σ(x)·(1 + x·(1 − σ(x)))

* Mish (Misra 2019, "Mish: A Self Regularized Non-Monotonic Activation Function", eq. 1 and its
  derivative, eq. 2 written with Δ):

      mish(x)  = x·tanh(sp),                       sp = softplus(x) = ln(1 + eˣ)
      mish'(x) = tanh(sp) + x·σ(x)·(1 − tanh²(sp))  (chain rule: d sp/dx = σ(x), d tanh(u)/du = 1 − tanh²u)

  With w = eˣ and δ = w² + 2w + 2: tanh(sp) = w(w+2)/δ and 1 − tanh²(sp) = 4(w+1)²/δ², so
  mish'(x) = eˣ·ω/δ², ω = 4(x+1) + 4e^{2x} + e^{3x} + eˣ(4x+6) (eq. 2): only exp is needed.

  Its global minimum is at the root of mish'(x) = 0, x* ≈ −1.19237, where mish(x*) ≈ −0.30884.

Memory. A naive autograd composition ``x * tanh(softplus(x))`` keeps softplus's input, tanh's output
and both factors of the product for backward. :class:`MishFunction` and :class:`SwishFunction` save only
their input x and recompute everything else in backward (they trade a few flops for memory).

Numerics. softplus uses PyTorch's thresholded form (sp = x for x > 20, where ln(1 + eˣ) = x in float32),
σ and tanh saturate without overflow (the exp-only CPU form clamps x at 20 inside eˣ, beyond which
tanh(sp) rounds to 1), so mish(±100) and its gradient are finite. Inputs in float16 or
bfloat16 are upcast to float32 inside the Functions and the results cast back to the input dtype; the
internal math runs with autocast disabled, so under ``torch.autocast`` the output dtype equals the
input dtype and forward and backward are computed the same way on every device.

Speed (measured by ``python -m benchmarks.bench_activations``; see docs/mish.md): on a single-threaded
CPU, MishFunction evaluates the exp-only form of the formulas (eq. 2 above) chunk by chunk, because
PyTorch's CPU mish kernels are not vectorised; otherwise (several threads, other devices) it calls PyTorch's
fused ``aten.mish`` / ``aten.mish_backward`` kernels, which compute the tanh/σ formulas above from the saved input.
SwishFunction calls ``aten.silu`` / ``aten.silu_backward`` (vectorised everywhere). When a graph of the
backward itself is requested (``create_graph=True``, e.g. for ``gradgradcheck``), backward evaluates the
explicit, differentiable tanh/σ formulas instead. Under ``torch.compile`` the fused aten ops are traced.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.errors import ConfigError, unknown_name_message

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16/bfloat16 inputs, the input dtype otherwise."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def mish_derivative(x: torch.Tensor) -> torch.Tensor:
    """d mish / dx = tanh(sp) + x·σ(x)·(1 − tanh²(sp)), sp = softplus(x), elementwise.

    Differentiable (plain tensor ops), so it also serves double backward.

    Args:
        x: input of any shape.

    Returns:
        Tensor of the same shape and dtype.
    """
    t = torch.tanh(F.softplus(x))
    return t + x * torch.sigmoid(x) * (1 - t * t)


def swish_derivative(x: torch.Tensor) -> torch.Tensor:
    """d swish / dx = σ(x)·(1 + x·(1 − σ(x))), elementwise. Differentiable.

    Args:
        x: input of any shape.

    Returns:
        Tensor of the same shape and dtype.
    """
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


# On CPU, PyTorch's mish kernels evaluate log1p and tanh element by element (not vectorised), and are ~7x slower
# than GELU's. The same function written with one exp (paper eq. 2, w = eˣ) needs only vectorised ops:
#     tanh(softplus(x)) = w(w+2)/δ,   x·σ(x)·(1 − tanh²(softplus(x))) = 4x·w(w+1)/δ²,   δ = w² + 2w + 2.
# x is clamped at 20 inside w: beyond it tanh(sp) rounds to 1 and the 4x(w+1)/δ² term to 0 in float32 and float64.
# Evaluating chunk by chunk keeps each chunk's intermediates in cache, so the several passes cost about one.
_CPU_CHUNK = 1 << 17
_W_CLAMP = 20.0


def _mish_forward_chunk(x: torch.Tensor, out: torch.Tensor) -> None:
    w = torch.clamp(x, max=_W_CLAMP).exp_()
    n = w.add(2.0).mul_(w)  # w(w+2)
    torch.div(n, n.add(2.0), out=out).mul_(x)  # x·tanh(softplus(x))


def _mish_backward_chunk(x: torch.Tensor, grad: torch.Tensor, out: torch.Tensor) -> None:
    w = torch.clamp(x, max=_W_CLAMP).exp_()
    n = w.add(2.0).mul_(w)  # w(w+2)
    delta = n.add(2.0)  # w² + 2w + 2
    tanh_sp = n.div_(delta)  # tanh(softplus(x)), exactly 1.0 for large x
    rest = w.add(1.0).mul_(w).mul_(x).div_(delta).div_(delta)  # x·σ(x)·(1 − tanh²(sp)) / 4 = x·w(w+1)/δ²
    torch.mul(tanh_sp.add_(rest, alpha=4.0), grad, out=out)


def _chunked(kernel: Callable[..., None], *tensors: torch.Tensor) -> torch.Tensor:
    """Apply an elementwise ``kernel(*chunks, out_chunk)`` over flat, contiguous chunks of ``tensors``."""
    flat = [t.contiguous().view(-1) for t in tensors]
    out = torch.empty_like(tensors[0], memory_format=torch.contiguous_format)
    out_flat = out.view(-1)
    for start in range(0, out_flat.numel(), _CPU_CHUNK):
        stop = start + _CPU_CHUNK
        kernel(*(t[start:stop] for t in flat), out_flat[start:stop])
    return out


def _use_cpu_kernels(x: torch.Tensor) -> bool:
    """Whether the chunked exp-only CPU path is the faster one: CPU, single-threaded, eager.

    Measured (benchmarks/bench_activations.py): with 1 intra-op thread it runs fwd+bwd ~1.3-1.8x faster than
    ``F.mish``; with several threads each of its many small ops opens a parallel region, and on a loaded
    machine that was up to 17x slower than the fused kernels' two regions, so there the fused kernels win.
    """
    return not torch.compiler.is_compiling() and x.device.type == "cpu" and torch.get_num_threads() == 1


class MishFunction(torch.autograd.Function):
    """mish(x) = x·tanh(softplus(x)) that saves only its input and recomputes in backward.

    ``MishFunction.apply(x)``; x: any shape, floating dtype. Output: same shape and dtype.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - ctx is autograd's
        ctx.save_for_backward(x)
        compute = _compute_dtype(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xc = x.to(compute)
            y = _chunked(_mish_forward_chunk, xc) if _use_cpu_kernels(xc) else torch.ops.aten.mish(xc)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        compute = _compute_dtype(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xc, gc = x.to(compute), grad_output.to(compute)
            if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
                grad = gc * mish_derivative(xc)
            elif _use_cpu_kernels(xc):  # the same derivative in its exp-only form (paper eq. 2), by chunks
                grad = _chunked(_mish_backward_chunk, xc, gc)
            else:  # the fused kernel evaluates the tanh/σ formula from x in one pass
                grad = torch.ops.aten.mish_backward(gc, xc)
        return grad.to(x.dtype)


class SwishFunction(torch.autograd.Function):
    """swish(x) = x·σ(x) that saves only its input and recomputes σ(x) in backward.

    ``SwishFunction.apply(x)``; x: any shape, floating dtype. Output: same shape and dtype.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x)
        compute = _compute_dtype(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return torch.ops.aten.silu(x.to(compute)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        compute = _compute_dtype(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xc, gc = x.to(compute), grad_output.to(compute)
            if torch.is_grad_enabled():
                grad = gc * swish_derivative(xc)
            else:
                grad = torch.ops.aten.silu_backward(gc, xc)
        return grad.to(x.dtype)


def mish(x: torch.Tensor, memory_efficient: bool = False) -> torch.Tensor:
    """Mish of ``x`` (any shape) by the fastest measured path (see :class:`Mish`).

    :class:`MishFunction` if ``memory_efficient`` or on a single-threaded CPU; ``F.mish`` (fused kernels) otherwise.
    """
    return MishFunction.apply(x) if memory_efficient or _use_cpu_kernels(x) else F.mish(x)


def swish(x: torch.Tensor, memory_efficient: bool = False) -> torch.Tensor:
    """Swish/SiLU of ``x`` (any shape): ``F.silu`` by default, :class:`SwishFunction` if ``memory_efficient``."""
    return SwishFunction.apply(x) if memory_efficient else F.silu(x)


class Mish(nn.Module):
    """Mish activation, x·tanh(softplus(x)) (Misra 2019, eq. 1).

    Default path, decided by measurement (``python -m benchmarks.bench_activations``, docs/mish.md): on a CPU
    with one intra-op thread, :class:`MishFunction`, whose exp-only, chunked evaluation ran fwd+bwd about
    1.3-1.8x faster than ``F.mish`` (PyTorch's CPU mish kernels evaluate log1p/tanh without vectorisation);
    otherwise ``F.mish``, one fused kernel per pass (with several threads on a loaded CPU the chunked path's
    many small parallel regions were far slower; GPUs not measured here). Both save only the input and are
    finite at ±100 in float32, float16 and bfloat16 (tested). ``memory_efficient=True`` selects
    :class:`MishFunction` everywhere (input-only saving, float32 internals for half precision, double backward
    through the explicit formula).

    Args:
        memory_efficient: always use :class:`MishFunction`.

    Shapes: x: (*) -> (*).
    """

    def __init__(self, memory_efficient: bool = False) -> None:
        super().__init__()
        self.memory_efficient = memory_efficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x, self.memory_efficient)

    def extra_repr(self) -> str:
        return f"memory_efficient={self.memory_efficient}"


class Swish(nn.Module):
    """Swish / SiLU activation with β = 1, x·σ(x) (Ramachandran et al. 2017).

    Default path: ``F.silu`` (fused, saves only x); ``memory_efficient=True`` selects :class:`SwishFunction`.

    Args:
        memory_efficient: use :class:`SwishFunction`.

    Shapes: x: (*) -> (*).
    """

    def __init__(self, memory_efficient: bool = False) -> None:
        super().__init__()
        self.memory_efficient = memory_efficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x, self.memory_efficient)

    def extra_repr(self) -> str:
        return f"memory_efficient={self.memory_efficient}"


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": Swish,
    "swish": Swish,
    "swish_memory_efficient": lambda: Swish(memory_efficient=True),
    "mish": Mish,
    "mish_memory_efficient": lambda: Mish(memory_efficient=True),
}


def list_activations() -> list[str]:
    """Names accepted by :func:`get_activation`, sorted."""
    return sorted(_ACTIVATIONS)


def get_activation(name: str) -> nn.Module:
    """A new activation module for ``name`` (case-insensitive).

    Raises:
        ConfigError: ``name`` is not one of :func:`list_activations`.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _ACTIVATIONS:
        raise ConfigError(unknown_name_message("activation", str(name), _ACTIVATIONS))
    return _ACTIVATIONS[key]()
