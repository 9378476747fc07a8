"""The identity of a reproduction run: its config normalised, then hashed (issue 29, "no duplicate runs").

Two recipes often ask for the same training run: the cutmix recipe's baseline is the label-smoothing recipe's
``no_smoothing`` arm, and a config that writes a key at its default value (``train_per_class: 0``, a ResNet's
``act: relu``) is the config that leaves it out. :func:`run_key` gives such runs one key, and
:func:`vitlab.reproduce.runner.plan` trains each key once and shares the result.

The normalised config (:func:`normalised_config`):

1. every key has its value: the config resolved through its task's config class
   (:class:`~vitlab.train.tasks.image_config.ImageConfig`, :class:`~vitlab.train.tasks.seq2seq.Seq2SeqConfig`,
   the signature of :func:`~vitlab.autograd.fit_legendre_p3`), defaults filled in and values converted (an int
   lr is a float, ``amp: false`` is ``off``); an image run's ``model_args`` are filled in from the arguments the
   named model is built with (a ViT's or ResNet's ``config``), except the data's ``img_size``, ``in_chans`` and
   ``num_classes``. A config the class refuses is kept as written (the run then fails, as before, and is
   recorded as failed);
2. minus the keys that cannot change a result (:data:`DROPPED_KEYS`);
3. ``init`` naming a run of the same plan (a recipe's shared pre-training) is replaced by that run's key, so a
   fine-tuning run is keyed by *what* it starts from, not by the folder the pre-training happens to live in; so is
   ``distill.teacher`` naming a run of the plan (a teacher arm's run of the same seed), after ``distill`` is filled
   in with :class:`~vitlab.train.tasks.teacher.DistillSettings`' defaults: a student is keyed by its teacher's key.

The key is the SHA-256 of the canonical JSON (sorted keys, floats as Python's ``repr``) of
``{"kind", "seed", "config"}``.

In the v2 recipes (full run, default seeds) the rule merged 20 of the 149 runs into others: cutmix's
``baseline`` = label_smoothing's ``no_smoothing`` (both families), mish's ``cnn/relu`` = data_size's
``cnn/frac100``, data_size's ``vit/frac100`` = posenc's ``learned``, 5 seeds each. In the full run committed
before sharing (the v2 run of 2026-11-29) every such pair had bit-identical metrics, and together they took
21.5 CPU-minutes. The v3 protocol (``recipes/reproduce/PROTOCOL.md``) lists the runs its recipes share.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch

from vitlab.autograd import fit_legendre_p3
from vitlab.errors import VitlabError
from vitlab.io import sha256_bytes
from vitlab.models import create_model  # the package: every model family registered
from vitlab.train.tasks.image_config import config_from_dict
from vitlab.train.tasks.seq2seq import Seq2SeqConfig
from vitlab.train.tasks.teacher import DistillSettings

__all__ = ["DATA_MODEL_ARGS", "DROPPED_KEYS", "canonical_json", "normalised_config", "run_key"]

# Keys that cannot change a run's result (its metrics), left out of the key. Kept, when in doubt: ``threads``
# (the CPU's reduction order depends on it), ``device``, ``compile``, ``workers``, ``data_mode``,
# ``memory_limit_mb``, ``download``.
_ENGINE_DROPPED = frozenset({
    "checkpoint_every",  # when checkpoints are saved: saving reads the RNG states (get_state) and never draws, and
    "checkpoint_steps",  # a run resumed from any checkpoint continues bit-identically (vitlab.train.engine)
    "log_every",  # how often the running loss is read back and the non-finite check runs; a non-finite step is
    # recorded where it happens, so the run fails either way (only its message's checkpoint name differs)
})
DROPPED_KEYS: dict[str, frozenset[str]] = {
    # eval_every: an image evaluation runs under no_grad in eval mode (BatchNorm statistics untouched, dropout
    # off) with the evaluation transform (no generator), restores train mode, and draws no random numbers (the
    # streaming loaders seed their workers from their own generator); the reported numbers are those of the
    # final model. It changes only metrics.csv's rows.
    "image": _ENGINE_DROPPED | {"eval_every"},
    # eval_every kept: in seq2seq it is the engine's epoch, and with it the run's reported final training loss.
    "seq2seq": _ENGINE_DROPPED,
    "legendre": frozenset({"log_every", "verbose"}),  # what the fit prints and keeps in its history
}
DATA_MODEL_ARGS = ("img_size", "in_chans", "num_classes")  # an image model's arguments that its data decides


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces (floats as Python's shortest round-trip ``repr``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def normalised_config(
    kind: str, config: Mapping[str, Any], run_keys: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The config of a run of ``kind`` resolved, without the keys that cannot change its result (module docstring).

    Args:
        kind: the recipe kind (``image``, ``seq2seq`` or ``legendre``).
        config: the run's config as the recipe merges it.
        run_keys: run folder -> key of the runs of the same plan that another run may name (``init``,
            ``distill.teacher``).
    """
    if kind == "image":
        data = _by_key(_image_config(config), run_keys or {})
    elif kind == "seq2seq":
        try:
            data = Seq2SeqConfig.from_dict(dict(config)).to_dict()
        except VitlabError:  # refused: kept as written
            data = copy.deepcopy(dict(config))
    else:
        defaults = {name: p.default for name, p in inspect.signature(fit_legendre_p3).parameters.items()}
        data = {**defaults, **copy.deepcopy(dict(config))}
    dropped = DROPPED_KEYS.get(kind, frozenset())
    return {key: value for key, value in data.items() if key not in dropped}


def run_key(kind: str, seed: int, config: Mapping[str, Any], run_keys: Mapping[str, str] | None = None) -> str:
    """Hex SHA-256 of the canonical JSON of the run's kind, seed and :func:`normalised_config`."""
    payload = {"kind": kind, "seed": seed, "config": normalised_config(kind, config, run_keys)}
    return sha256_bytes(canonical_json(payload).encode("utf-8"))


def _by_key(data: dict[str, Any], run_keys: Mapping[str, str]) -> dict[str, Any]:
    """An image config whose ``init`` or ``distill.teacher`` names a run of the plan (a folder of ``run_keys``): that
    run's key in its place, ``{"run": KEY}`` (modified in place and returned)."""
    init, distill = data.get("init"), data.get("distill")
    if isinstance(init, str) and init in run_keys:
        data["init"] = {"run": run_keys[init]}
    if isinstance(distill, dict) and isinstance(distill.get("teacher"), str) and distill["teacher"] in run_keys:
        data["distill"] = {**distill, "teacher": {"run": run_keys[distill["teacher"]]}}
    return data


def _image_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """An image run's config with every ImageConfig key, and (without ``init``) every model argument."""
    try:
        cfg = config_from_dict(dict(config))
    except VitlabError:  # refused: kept as written
        return copy.deepcopy(dict(config))
    data = cfg.to_dict()
    if cfg.distill is not None:  # kind, alpha, tau filled in (and numbers as floats) as the task reads them
        data["distill"] = asdict(DistillSettings.from_dict(dict(cfg.distill)))
    if cfg.init is None:  # with init the checkpoint decides the architecture; model_args are kept as given
        data["model_args"] = {**_model_arguments(cfg.model, canonical_json(cfg.model_args)), **data["model_args"]}
    return data


@functools.lru_cache(maxsize=256)
def _model_arguments(name: str, model_args: str) -> dict[str, Any]:
    """The arguments the registered model ``name`` is built with from ``model_args`` (JSON), defaults included,
    less :data:`DATA_MODEL_ARGS`; ``{}`` when the model cannot be built or does not record them (``config``).

    The model is built on the CPU (a few milliseconds for the recipes' models) inside ``fork_rng``: its
    initialisation must not move the caller's random stream.
    """
    try:
        with torch.random.fork_rng(devices=[]):
            model = create_model(name, **json.loads(model_args))
        built = json.loads(canonical_json(getattr(model, "config", None)))
    except (VitlabError, TypeError, ValueError, RuntimeError):  # unbuildable, or a config that is not JSON
        return {}
    if not isinstance(built, dict):
        return {}
    return {key: value for key, value in built.items() if key not in DATA_MODEL_ARGS}
