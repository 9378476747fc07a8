"""The tasks the engine trains, by the name a recipe gives in ``task:`` (``image`` when absent).

========  ==========================================================  ===========================================
task      config dataclass                                            task object
========  ==========================================================  ===========================================
image     :class:`~vitlab.train.tasks.image_config.ImageConfig`       :func:`~.image_stream.image_task`
seq2seq   :class:`~vitlab.train.tasks.seq2seq.Seq2SeqConfig`          :class:`~.seq2seq.Seq2SeqTask`
========  ==========================================================  ===========================================

For ``image``, :func:`vitlab.train.tasks.image_stream.image_task` picks the in-memory
:class:`~vitlab.train.tasks.image.ImageTask` or, for a folder with ``img_size`` (photos of any size, tar
shards), :class:`~vitlab.train.tasks.image_stream.StreamImageTask`.

A third task is a module with a config dataclass (extending :class:`vitlab.train.config.EngineConfig`) and a
:class:`~vitlab.train.tasks.base.Task` subclass, plus a row in :data:`TASKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitlab.errors import ConfigError
from vitlab.io import load_yaml
from vitlab.train.config import EngineConfig, apply_overrides
from vitlab.train.runs import CONFIG_FILE
from vitlab.train.tasks.base import Task
from vitlab.train.tasks.image_config import ImageConfig
from vitlab.train.tasks.image_stream import image_task
from vitlab.train.tasks.seq2seq import Seq2SeqConfig, Seq2SeqTask

__all__ = ["TASKS", "TaskEntry", "config_class", "config_from_raw", "config_of_run", "resolve_config", "task_for",
           "task_name"]


@dataclass(frozen=True)
class TaskEntry:
    """One row of the registry: the task's config dataclass and what builds its :class:`Task` from a config."""

    config: type[EngineConfig]
    build: Callable[[Any], Task]


TASKS: dict[str, TaskEntry] = {
    "image": TaskEntry(ImageConfig, image_task),
    "seq2seq": TaskEntry(Seq2SeqConfig, Seq2SeqTask),
}


def config_class(task: str) -> type[EngineConfig]:
    """The config dataclass of ``task``.

    Raises:
        ConfigError: an unknown task name.
    """
    if task not in TASKS:
        others = " or ".join(f"task: {name}" for name in TASKS if name != "image")
        raise ConfigError(f"unknown task '{task}'; use task: image (default) or {others}")
    return TASKS[task].config


def config_from_raw(raw: dict[str, Any], source: str = "config") -> EngineConfig:
    """The checked config of a recipe mapping; its ``task`` key (default ``image``) picks the dataclass."""
    data = dict(raw)
    cls = config_class(str(data.pop("task", "image")))
    return cls.from_dict(data, source)


def config_of_run(run_dir: str | Path) -> EngineConfig:
    """The config a run folder was started with (its config.yaml)."""
    path = Path(run_dir) / CONFIG_FILE
    return config_from_raw(load_yaml(path), str(path))


def task_name(cfg: EngineConfig) -> str:
    """The task whose config dataclass ``cfg`` is."""
    for name, entry in TASKS.items():
        if type(cfg) is entry.config:
            return name
    raise ConfigError(f"{type(cfg).__name__} is not the config of a task; pass one of "
                      f"{', '.join(entry.config.__name__ for entry in TASKS.values())}")


def task_for(cfg: EngineConfig) -> Task:
    """The task object that trains ``cfg``."""
    return TASKS[task_name(cfg)].build(cfg)


def resolve_config(config_file: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """The raw config mapping: the YAML file (if any) with the overrides applied.

    Dotted overrides keep the sibling keys of the file's mapping, or of the task's default config when
    the file does not give that mapping (see :func:`vitlab.train.config.apply_overrides`).
    """
    data = load_yaml(config_file) if config_file is not None else {}
    task = apply_overrides(data, [o for o in overrides if o.partition("=")[0].strip() == "task"]).get("task", "image")
    try:
        defaults = config_class(str(task))().to_dict()
    except ConfigError:  # an unknown task: reported when the config is built
        defaults = {}
    return apply_overrides(data, overrides, defaults)
