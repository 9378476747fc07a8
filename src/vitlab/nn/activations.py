"""Activation functions selectable by name.

``get_activation("mish")`` returns a fresh ``nn.Module``; every model takes its activation as a name so
that it is a config choice (``act: mish``).

* ReLU: max(0, x).
* GELU (Hendrycks & Gimpel 2016): x·Φ(x), Φ the standard normal CDF (exact erf form, as in ViT).
* SiLU / Swish (Ramachandran et al. 2017, β = 1): x·σ(x).
* Mish (Misra 2019): x·tanh(softplus(x)).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vitlab.errors import ConfigError, unknown_name_message

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
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
