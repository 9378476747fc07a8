"""Image-classification training, by its historical import path.

The loop itself is the engine (:mod:`vitlab.train.engine`); the image task's pieces are in
:mod:`vitlab.train.tasks.image`; the run folder's files in :mod:`vitlab.train.runs`. This module re-exports
the names callers used, so ``from vitlab.train.loop import train, load_run`` keeps working.
"""

from __future__ import annotations

from vitlab.train.engine import NonFiniteLossError, _test_die_at_step, train
from vitlab.train.runs import CONFIG_FILE, METRICS_FILE, RUN_INFO_FILE, SUMMARY_FILE, WEIGHTS_FILE, prepare_run_dir
from vitlab.train.tasks.image import (
    Evaluation,
    build_model,
    build_optimizer,
    evaluate,
    format_summary,
    load_run,
    parameter_groups,
    run_transform,
)

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "RUN_INFO_FILE", "SUMMARY_FILE", "WEIGHTS_FILE", "Evaluation", "NonFiniteLossError",
    "build_model", "build_optimizer", "evaluate", "format_summary", "load_run", "parameter_groups", "prepare_run_dir",
    "run_transform", "train", "_test_die_at_step",
]
