"""The tasks the engine trains, by the name a recipe gives in ``task:`` (``image`` when absent).

========  ==========================================  ================================================
task      config dataclass                            module
========  ==========================================  ================================================
image     :class:`vitlab.train.config.TrainConfig`    :mod:`vitlab.train.tasks.image`
seq2seq   :class:`~.seq2seq.Seq2SeqConfig`            :mod:`vitlab.train.tasks.seq2seq`
========  ==========================================  ================================================

For ``image``, :func:`vitlab.train.tasks.image_stream.image_task` picks the in-memory
:class:`~vitlab.train.tasks.image.ImageTask` or, for a folder with ``img_size`` (photos of any size, tar
shards), :class:`~vitlab.train.tasks.image_stream.StreamImageTask`.

A third task is a module with a config dataclass (holding the engine keys listed in
:mod:`vitlab.train.tasks.base`) and a :class:`~vitlab.train.tasks.base.Task` subclass, plus a row here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from vitlab.errors import ConfigError
from vitlab.train.tasks.base import Task

# name -> (module, config class, task class)
TASKS: dict[str, tuple[str, str, str]] = {
    "image": ("vitlab.train.config", "TrainConfig", "vitlab.train.tasks.image_stream:image_task"),
    "seq2seq": ("vitlab.train.tasks.seq2seq", "Seq2SeqConfig", "vitlab.train.tasks.seq2seq:Seq2SeqTask"),
}


def config_class(task: str) -> type:
    """The config dataclass of ``task``.

    Raises:
        ConfigError: an unknown task name.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}'; use task: image (default) or task: seq2seq")
    module, name, _ = TASKS[task]
    return getattr(importlib.import_module(module), name)


def config_from_raw(raw: dict[str, Any], source: str = "config") -> Any:
    """The checked config of a recipe mapping; its ``task`` key (default ``image``) picks the dataclass."""
    data = dict(raw)
    cls = config_class(str(data.pop("task", "image")))
    return cls.from_dict(data, source)


def config_of_run(run_dir: str | Path) -> Any:
    """The config a run folder was started with (its config.yaml)."""
    from vitlab.train.config import load_yaml
    from vitlab.train.runs import CONFIG_FILE

    path = Path(run_dir) / CONFIG_FILE
    return config_from_raw(load_yaml(path), str(path))


def task_name(cfg: Any) -> str:
    """The task whose config dataclass ``cfg`` is."""
    for name in TASKS:
        if isinstance(cfg, config_class(name)):
            return name
    raise ConfigError(f"{type(cfg).__name__} is not the config of a task; pass a TrainConfig or Seq2SeqConfig")


def task_for(cfg: Any) -> Task:
    """The task object that trains ``cfg``."""
    module, _, name = TASKS[task_name(cfg)][2].partition(":")
    return getattr(importlib.import_module(module), name)(cfg)
