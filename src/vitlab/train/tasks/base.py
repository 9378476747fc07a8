"""What a task gives the engine: its data, model, optimizer, the loss of a batch, evaluation and the report.

The engine (:mod:`vitlab.train.engine`) owns everything every task needs (devices, precision, compile,
DDP, accumulation, clipping, non-finite steps, EMA, checkpoints and resume, metrics files, progress). A
task subclasses :class:`Task` and fills in the methods marked abstract; a new kind of training (say masked
patch pre-training) is one new module in ``vitlab/train/tasks/`` plus one line in ``TASKS`` there.

Every task's config extends :class:`vitlab.train.config.EngineConfig`, which declares the engine's keys
once (``batch_size, accum_steps, grad_clip, ema_decay, amp, compile, nonfinite, seed, device, threads,
checkpoint_every, checkpoint_steps, log_every``).

Units: an *epoch* is the engine's unit of one metrics row, one evaluation slot and one checkpoint slot;
for images it is a pass over the training set, for seq2seq ``eval_every`` optimizer steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.train.config import EngineConfig
from vitlab.train.distributed import DistContext


class Task(ABC):
    """One kind of training. Subclasses set ``name``, ``unit`` (what a sample is called) and ``headline``."""

    name: str = "task"
    unit: str = "samples"  # "images", "sequences": names the throughput columns
    headline: str = ""  # the evaluation entry printed after each epoch, e.g. "val_acc1"
    num_stats: int = 2  # length of the per-batch statistics vector batch_loss returns

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg

    # ---------------------------------------------------------------------------------- configuration
    def config_dict(self) -> dict[str, Any]:
        """The recipe as written to config.yaml."""
        return self.cfg.to_dict()

    # ---------------------------------------------------------------------------------- set-up
    @abstractmethod
    def load_data(self, info: dict[str, Any] | None) -> None:
        """Read or generate the splits (``info``: the run.json of a resumed run, else ``None``)."""

    @abstractmethod
    def schedule(self, world_size: int) -> tuple[int, int, int]:
        """``(epochs, steps_per_epoch, total_steps)``; raises ConfigError when the data cannot fill a batch."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The model for the loaded data (where a pretrained initialisation would be applied)."""

    @abstractmethod
    def build_optimizer(self, model: nn.Module, device: torch.device) -> tuple[torch.optim.Optimizer, Any]:
        """``(optimizer, lr_lambda)``: the rate of step t (from 0) is ``base lr × lr_lambda(t)``."""

    @abstractmethod
    def run_info(self) -> dict[str, Any]:
        """What the data gave, for run.json (read back by :meth:`load_data` on resume)."""

    def warnings(self) -> list[str]:
        """One-line notes about the recipe (printed on stderr before the first step, kept in summary.json)."""
        return []

    def setup_training(self, ctx: DistContext, generator: torch.Generator) -> None:  # noqa: B027 optional hook
        """Move training data to the device and build the per-run pieces drawing from ``generator``."""

    def synthetic_batch(self, batch_size: int, device: torch.device) -> tuple[tuple[Tensor, ...], Tensor] | None:
        """``(inputs, targets)`` shaped like a training micro-batch of ``batch_size``, for the precision probe.

        The engine times steps of :meth:`probe_loss` on them (:mod:`vitlab.train.precision`). They are drawn from a
        private generator, never the run's. ``None`` (the default): no probe, so ``amp: auto`` means float32 for
        this task.
        """
        return None

    def probe_loss(self, model: nn.Module, inputs: tuple[Tensor, ...], targets: Tensor) -> Tensor:
        """The loss of one probe step on a :meth:`synthetic_batch`: the work of a training step, without touching
        the run's random streams. Default: ``cross_entropy(model(*inputs).flatten(0, -2), targets.flatten())``."""
        return F.cross_entropy(model(*inputs).float().flatten(0, -2), targets.flatten())

    # ---------------------------------------------------------------------------------- training
    @abstractmethod
    def epoch_indices(self, epoch: int, ctx: DistContext) -> Tensor:
        """This rank's training-sample indices of ``epoch``: (steps_per_epoch × batch_size / world,) long."""

    def epoch_batches(self, epoch: int, start_batch: int, ctx: DistContext) -> Iterator[Any] | None:
        """This rank's optimizer-step batches of ``epoch`` from ``start_batch`` on, for tasks that stream.

        ``None`` (the default): the engine slices :meth:`epoch_indices` into index batches instead. A
        streaming task returns an iterator of at least ``steps_per_epoch - start_batch`` items, each handed
        to :meth:`micro_batches`; batch ``b`` must be the same whether or not the run was resumed.
        """
        return None

    def rank_state(self) -> dict[str, Any]:
        """This rank's task state for the checkpoint (plain Python values), e.g. a loader's skip counts."""
        return {}

    def load_rank_state(self, state: dict[str, Any]) -> None:  # noqa: B027 optional hook, no-op by default
        """Restore what :meth:`rank_state` returned (resume with the same number of processes)."""

    def micro_batches(self, index: Tensor, accum_steps: int, ctx: DistContext) -> list[Any]:
        """Split one optimizer step's indices (this rank's share) into ``accum_steps`` micro-batches."""
        micro = index.numel() // accum_steps
        return [index[i * micro : (i + 1) * micro] for i in range(accum_steps)]

    @abstractmethod
    def batch_loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        """``(loss, stats)`` of one micro-batch, under the engine's autocast.

        ``loss`` is a scalar whose mean over the micro-batches and ranks of a step is the step's loss (the
        engine divides by ``accum_steps``; DDP averages over ranks). ``stats`` is a detached float64 vector
        of length :attr:`num_stats`, summed over the epoch's kept steps for :meth:`train_row`.
        """

    @abstractmethod
    def train_row(self, totals: list[float], kept_steps: int) -> dict[str, float]:
        """The epoch's training metrics from the summed ``stats`` of its ``kept_steps`` steps (all ranks)."""

    # ---------------------------------------------------------------------------------- evaluation, report
    @abstractmethod
    def eval_due(self, epoch: int, last: bool) -> bool:
        """Whether to evaluate after epoch ``epoch`` (counted from 1)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, ctx: DistContext, amp: str) -> dict[str, float]:
        """Score ``model`` on the held-out split; the entries join the epoch's metrics row."""

    @abstractmethod
    def finish(self, model: nn.Module, ctx: DistContext, amp: str, history: list[dict[str, Any]],
               fresh: bool) -> dict[str, Any]:
        """The task's final metrics for summary.json (every rank calls it: evaluation may be collective).

        ``fresh``: the last :meth:`evaluate` of this process scored this very ``model`` (a run trained to the
        end here), so its figures may be reused; else (a finished run resumed) evaluate again.
        """

    @abstractmethod
    def write_report(self, run_dir: Path, history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """Plots of the finished run (rank 0 only)."""

    @abstractmethod
    def format_summary(self, summary: dict[str, Any]) -> str:
        """The summary as printed at the end of a run."""

    def weights_metadata(self) -> dict[str, str]:
        """Extra strings for the final weights file's header."""
        return {}


def aligned_table(rows: list[tuple[str, str]]) -> str:
    """``rows`` as an aligned two-column table between rules."""
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 30)
    return "\n".join([line, *(f"{k:<{width}}  {v}" for k, v in rows), line])
