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

  Its global minimum is at the root of mish'(x) = 0, x* ≈ −1.19237, where mish(x*) ≈ −0.30884.

Memory. A naive autograd composition ``x * tanh(softplus(x))`` keeps softplus's input, tanh's output
and both factors of the product for backward. :class:`MishFunction` and :class:`SwishFunction` save only
their input x and recompute everything else in backward (they trade a few flops for memory).

Numerics. softplus uses PyTorch's thresholded form (sp = x for x > 20, where ln(1 + eˣ) = x in float32),
σ and tanh saturate without overflow, so mish(±100) and its gradient are finite. Inputs in float16 or
bfloat16 are upcast to float32 inside the Functions and the results cast back to the input dtype; the
internal math runs with autocast disabled, so under ``torch.autocast`` the output dtype equals the
input dtype and forward and backward are computed the same way on every device.

Speed (measured by ``python -m benchmarks.bench_activations``; see docs/mish.md): the Functions call
PyTorch's fused ``aten.mish`` / ``aten.mish_backward`` (``aten.silu`` / ``aten.silu_backward``) kernels,
which compute exactly the formulas above from the saved input, so they run at F.mish speed. When a
graph of the backward itself is requested (``create_graph=True``, e.g. for ``gradgradcheck``), the
backward is evaluated with the explicit, differentiable formulas above instead.
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


class MishFunction(torch.autograd.Function):
    """mish(x) = x·tanh(softplus(x)) that saves only its input and recomputes in backward.

    ``MishFunction.apply(x)``; x: any shape, floating dtype. Output: same shape and dtype.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - ctx is autograd's
        ctx.save_for_backward(x)
        compute = _compute_dtype(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return torch.ops.aten.mish(x.to(compute)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        compute = _compute_dtype(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xc, gc = x.to(compute), grad_output.to(compute)
            if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
                grad = gc * mish_derivative(xc)
            else:  # the fused kernel evaluates the same formula from x in one pass
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
    """Mish of ``x`` (any shape): ``F.mish`` by default, :class:`MishFunction` if ``memory_efficient``."""
    return MishFunction.apply(x) if memory_efficient else F.mish(x)


def swish(x: torch.Tensor, memory_efficient: bool = False) -> torch.Tensor:
    """Swish/SiLU of ``x`` (any shape): ``F.silu`` by default, :class:`SwishFunction` if ``memory_efficient``."""
    return SwishFunction.apply(x) if memory_efficient else F.silu(x)


class Mish(nn.Module):
    """Mish activation, x·tanh(softplus(x)) (Misra 2019, eq. 1).

    Default path: ``F.mish``. Measured (benchmarks/bench_activations.py, CPU, 4M float32 elements,
    forward + backward) it is as fast as :class:`MishFunction` (ratio ≈ 1.0) and saves the same single
    input tensor, and it skips the Python overhead of a custom Function. It is finite at ±100 in float32,
    float16 and bfloat16 (tested). ``memory_efficient=True`` selects :class:`MishFunction`, which in
    addition computes float16/bfloat16 in float32 and supports ``create_graph`` through its explicit formula.

    Args:
        memory_efficient: use :class:`MishFunction`.

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
