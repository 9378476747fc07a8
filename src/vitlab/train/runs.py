"""The run folder every task writes, and the checks made before reading or writing one.

A run folder (``vitlab train --out RUN``) holds, for every task::

    RUN/config.yaml          the resolved recipe (``task: seq2seq`` for sequence runs; image runs have no task key)
    RUN/run.json             what the data gave, world size, precision, versions
    RUN/checkpoints/         resumable checkpoints (vitlab.train.checkpoint); ``latest`` names the newest
    RUN/metrics.csv          one row per epoch (for seq2seq: per ``eval_every`` steps)
    RUN/model.safetensors    the final weights (the EMA weights when ema_decay > 0)
    RUN/summary.json         the final metrics, throughput, times
    RUN/curves.png           learning curves (image runs add confusion.png and reliability.png)
    RUN/tb/                  TensorBoard events, when the ``tensorboard`` package is installed

This module reads a folder's task (:func:`run_task`) so that every command can say which command fits a
run of another task, and writes the metrics table and TensorBoard scalars.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from vitlab.errors import CheckpointError, ConfigError, VitlabError
from vitlab.io import atomic_write_text, load_yaml
from vitlab.train.checkpoint import latest_checkpoint

CONFIG_FILE = "config.yaml"
RUN_INFO_FILE = "run.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
WEIGHTS_FILE = "model.safetensors"

# What a person does with a finished run of each task.
USES = {
    "image": "`vitlab eval RUN` or `vitlab predict RUN IMAGE...`",
    "seq2seq": "`vitlab translate RUN \"3 1 2\"`",
}


def run_task(run_dir: str | Path) -> str:
    """The task of a run folder (``image`` or ``seq2seq``), read from its config.yaml.

    Raises:
        CheckpointError: the folder has no config.yaml (it is not a vitlab run folder).
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} is not a vitlab run folder (no {CONFIG_FILE}); pass a folder that `vitlab train` wrote"
        )
    try:
        task = load_yaml(path).get("task", "image")
    except ConfigError as error:
        raise CheckpointError(f"{path} is damaged: {error}") from None
    return str(task)


def require_task(run_dir: str | Path, task: str, command: str) -> None:
    """Refuse a run folder of another task, naming the command that fits it.

    Raises:
        CheckpointError: e.g. ``runs/rev was trained with task: seq2seq; use `vitlab translate runs/rev "3 1 2"`
            (`vitlab eval` is for task: image runs)``.
    """
    found = run_task(run_dir)
    if found != task:
        use = USES.get(found, "the command of its task").replace("RUN", str(run_dir))
        raise CheckpointError(
            f"{run_dir} was trained with task: {found}; use {use} (`vitlab {command}` is for task: {task} runs)"
        )


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a finished or running folder, and to resume one without a checkpoint."""
    if resume:
        if not run_dir.is_dir():
            raise CheckpointError(f"cannot resume: run folder {run_dir} does not exist")
        if not (run_dir / CONFIG_FILE).is_file():
            raise CheckpointError(f"cannot resume: {run_dir} has no {CONFIG_FILE}; it is not a vitlab run folder")
        if latest_checkpoint(run_dir) is None:
            raise CheckpointError(
                f"cannot resume: {run_dir} has no checkpoint yet; start a new run (remove the folder or choose --out)"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"run folder {run_dir} already exists; pass --resume {run_dir} to continue it or choose another --out"
        )


def no_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds no checkpoint (a damaged pointer counts as none)."""
    try:
        return latest_checkpoint(run_dir) is None
    except VitlabError:  # a damaged pointer in a folder this call created: nothing worth keeping
        return True


def check_same_recipe(given: dict[str, Any], saved: dict[str, Any], run_dir: Path) -> None:
    """Refuse to continue a run folder with a recipe other than the one it was started with."""
    changed = sorted(key for key in given if given[key] != saved.get(key))
    if changed:
        shown = ", ".join(f"{key}: {saved.get(key)!r} -> {given[key]!r}" for key in changed)
        raise ConfigError(
            f"--auto-resume found a checkpoint in {run_dir} made with another recipe ({shown}); "
            "pass the same --config/--set or choose another --out"
        )


def write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """The per-epoch rows as CSV (columns in order of first appearance; floats with 6 significant digits)."""
    if not history:
        return
    fields = list(history[0])
    for row in history[1:]:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


class TensorBoard:
    """TensorBoard scalars when the ``tensorboard`` package is installed; a no-op otherwise."""

    def __init__(self, folder: Path | None) -> None:
        self.writer = None
        if folder is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency: tensorboard
        except Exception:  # tensorboard is optional
            return
        self.writer = SummaryWriter(str(folder))

    def log(self, row: dict[str, Any], step: int) -> None:
        """Every numeric entry of ``row`` except the counters, at ``step``."""
        if self.writer is None:
            return
        for key, value in row.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
