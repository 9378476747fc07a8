"""Model registry: named model sizes built by ``create_model(name, **overrides)``.

A registered function takes keyword overrides and returns a model; ``create_model`` looks the name up and
raises a :class:`~vitlab.errors.ConfigError` that suggests the nearest name when it is unknown.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from vitlab.errors import ConfigError, unknown_name_message

ModelFactory = TypeVar("ModelFactory", bound=Callable[..., nn.Module])

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: ModelFactory) -> ModelFactory:
    """Decorator: register ``fn`` under its ``__name__``."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model '{name}' is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching the shell-style ``pattern``, sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name``; ``overrides`` replace its default arguments.

    Raises:
        ConfigError: ``name`` is not registered, or an override is not an argument of that model.
    """
    if name not in _MODELS:
        raise ConfigError(unknown_name_message("model", name, _MODELS))
    try:
        return _MODELS[name](**overrides)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise ConfigError(f"model '{name}': {error}") from None
        raise
