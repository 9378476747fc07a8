"""The training engine: one loop for every task (image classification, seq2seq, ...).

:func:`train` runs a recipe into a run folder (layout in :mod:`vitlab.train.runs`). The task
(:mod:`vitlab.train.tasks`) supplies the data, the model, the optimizer and schedule, the loss of a batch,
the evaluation and the final report; :class:`Engine` does the rest, in stages that read top to bottom::

    set_up      devices, data, model (seeded), optimizer + LambdaLR schedule, precision (``auto``: timed on a copy), EMA
    restore     (resume) weights, optimizer, schedule, counters, metric sums and every RNG state
    start       config.yaml + run.json (rank 0), DDP wrap, then torch.compile (PyTorch's order)
    epoch       the sample order of the epoch, then one ``step`` per batch
    step        micro-batches (no_sync but the last) under autocast, clipping, the non-finite policy,
                optimizer + schedule, EMA
    end_epoch   the metrics row (train sums of the kept steps, evaluation when due), checkpoint
    finish      final evaluation by the task, model.safetensors, summary.json, plots

Determinism: the model is initialised from ``seed``; augmentation draws from one ``torch.Generator`` per
rank, dropout from the global generator reseeded per rank; every one of these states is in the
checkpoint, and each task's sample order is a function of (seed, epoch), so a resumed run (even one killed
mid-epoch) continues the same sequence of updates and on the CPU ends with bit-identical weights. The
caller's global RNG state and thread count are restored when :func:`train` returns.

Host syncs: running sums stay on the device and are read every ``log_every`` steps, at the end of an
epoch and before a checkpoint; ``nonfinite: skip`` needs one sync per step.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from vitlab.errors import ConfigError, VitlabError
from vitlab.io import atomic_write_text
from vitlab.models.vit import migrate_vit_state_dict
from vitlab.train import precision
from vitlab.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_weights
from vitlab.train.config import EngineConfig, dump_yaml
from vitlab.train.distributed import DistContext, init_distributed, shutdown_distributed
from vitlab.train.ema import WeightEma
from vitlab.train.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    RUN_INFO_FILE,
    SUMMARY_FILE,
    WEIGHTS_FILE,
    TensorBoard,
    check_same_recipe,
    no_checkpoint,
    prepare_run_dir,
    write_metrics_csv,
)
from vitlab.train.tasks import config_of_run, task_for
from vitlab.train.tasks.base import Task


class NonFiniteLossError(VitlabError):
    """The training loss became NaN or infinite."""


# ------------------------------------------------------------------------------------------ entry point
def train(
    cfg: EngineConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    ctx: DistContext | None = None,
    auto_resume: bool = False,
    plots: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` (a ImageConfig or Seq2SeqConfig) into ``run_dir``, or continue the run there; returns the summary.

    ``auto_resume`` serves restarts (``torchrun --max-restarts`` runs the same command line again): continue
    from the folder's last checkpoint when it has one (``cfg`` must equal the saved recipe), start over in it
    when it is a run folder killed before its first checkpoint, return the saved summary when it has
    finished, and otherwise start a new run. ``plots=False`` skips the task's figures (curves, confusion,
    reliability, ViT views): callers that only want the numbers, such as ``vitlab reproduce``.

    Raises:
        ConfigError, DataError, CheckpointError: bad recipe, data or run folder (nothing is left behind
            for a new run that fails before its first checkpoint).
        NonFiniteLossError: the loss became NaN/inf (``nonfinite: stop``); the last good checkpoint is kept.
    """
    run_dir = Path(run_dir)
    start_over = False
    if auto_resume and not resume:
        finished = _finished_summary(run_dir, quiet)
        if finished is not None:
            return finished
        if (run_dir / CONFIG_FILE).is_file():
            resume = latest_checkpoint(run_dir) is not None
            start_over = not resume  # killed before its first checkpoint: begin again in the same folder
            if resume and cfg is not None:
                check_same_recipe(cfg.to_dict(), config_of_run(run_dir).to_dict(), run_dir)
    if not start_over:
        prepare_run_dir(run_dir, resume)
    if resume:
        cfg = config_of_run(run_dir)
    if cfg is None:
        raise ConfigError("no config given; pass a ImageConfig or Seq2SeqConfig (or resume=True with a run folder)")
    task = task_for(cfg)
    owns_ctx = ctx is None
    ctx = ctx or init_distributed(cfg.device)
    ctx.barrier()  # every rank has looked at the run folder before rank 0 writes into it
    created = not resume and ctx.is_main and not run_dir.exists()
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
            if cfg.threads:
                torch.set_num_threads(cfg.threads)
            summary = Engine(task, run_dir, ctx, resume=resume, quiet=quiet, plots=plots).run()
        if owns_ctx:
            shutdown_distributed()
        return summary
    except BaseException:  # bad input, a full disk, an interrupt: never leave a half-made run folder behind
        if created and run_dir.is_dir() and no_checkpoint(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)


def _finished_summary(run_dir: Path, quiet: bool) -> dict[str, Any] | None:
    """The saved summary of a finished run folder (for --auto-resume), else ``None``."""
    if not ((run_dir / SUMMARY_FILE).is_file() and (run_dir / WEIGHTS_FILE).is_file()):
        return None
    if not quiet and int(os.environ.get("RANK", "0")) == 0:
        print(f"vitlab: {run_dir} has already finished; nothing to do")
    return json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------ the engine
class Engine:
    """One training run of ``task`` into ``run_dir``; :meth:`run` goes through the stages in order."""

    def __init__(self, task: Task, run_dir: Path, ctx: DistContext, *, resume: bool, quiet: bool,
                 plots: bool = True) -> None:
        self.task, self.cfg, self.run_dir, self.ctx = task, task.cfg, run_dir, ctx
        self.resume, self.quiet, self.plots = resume, quiet, plots
        self.device = ctx.device
        self.t_start = time.perf_counter()

    def run(self) -> dict[str, Any]:
        """set-up, resume, then epoch by epoch (steps, evaluation, checkpoint), then finish."""
        self.set_up()
        if self.resume:
            self.restore()
        self.start()
        for epoch in range(self.epoch, self.epochs):
            self.run_epoch(epoch)
            self.end_epoch(epoch)
        return self.finish()

    # ---------------------------------------------------------------------------------- set-up
    def set_up(self) -> None:
        """Precision, data, the seeded model, optimizer and schedule, EMA, counters."""
        cfg, ctx, task = self.cfg, self.ctx, self.task
        precision.check_amp(cfg.amp, self.device)  # a bad setting fails before any data is read
        info = json.loads((self.run_dir / RUN_INFO_FILE).read_text()) if self.resume else None
        task.load_data(info)
        world, accum = ctx.world_size, cfg.accum_steps
        if cfg.batch_size % (world * accum):
            raise ConfigError(
                f"batch_size {cfg.batch_size} must be divisible by processes × accum_steps = {world * accum}"
            )
        self.epochs, self.steps_per_epoch, self.total_steps = task.schedule(world)
        self.local_batch = cfg.batch_size // world
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model = task.build_model().to(self.device)
        self.num_params = sum(p.numel() for p in self.model.parameters())
        torch.manual_seed(cfg.seed + 1_000_003 * (ctx.rank + 1))  # dropout / drop-path differ between ranks
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 7919 * (ctx.rank + 1))
        self.optimizer, lr_lambda = task.build_optimizer(self.model, self.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)
        task.setup_training(ctx, self.generator)
        self.amp_choice = self.choose_precision(info)
        self.amp = self.amp_choice.amp
        self.scaler = precision.grad_scaler(self.device, self.amp)
        self.ema = WeightEma(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.eval_model = copy.deepcopy(self.model) if self.ema is not None else self.model
        self.epoch, self.batch_start, self.step, self.history = 0, 0, 0, []
        # The epoch's summed batch statistics of its kept steps, on the device (read at sync points only).
        self.sums = torch.zeros(task.num_stats, dtype=torch.float64, device=self.device)
        self.kept, self.skipped, self.elapsed_before = 0, 0, 0.0
        self.last_lr = self.scheduler.get_last_lr()[0]
        self.bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self.epoch_seconds: list[float] = []
        self.fresh_eval = False  # whether this call evaluated the last epoch (finish can reuse it)

    def choose_precision(self, info: dict[str, Any] | None) -> precision.AmpChoice:
        """The run's precision: a resumed run's recorded one, else :func:`precision.choose_amp` on rank 0 (for
        ``auto``, timed on a copy of the model and optimizer at this rank's micro-batch shape), shared by all ranks."""
        cfg, ctx = self.cfg, self.ctx
        if info is not None:  # the precision is part of the run: a new probe could flip it and break bit-exact resume
            recorded = info.get("amp_choice") or {"amp": info["amp"], "setting": precision.normalize_amp(cfg.amp)}
            return precision.AmpChoice(recorded["amp"], recorded["setting"], "recorded in the run folder's run.json")
        choice = None
        if ctx.is_main:
            time_steps, cache_key = None, None
            batch = self.task.synthetic_batch(self.local_batch // cfg.accum_steps, self.device)
            if batch is not None:
                inputs, targets = batch

                def loss_of(model: nn.Module) -> Tensor:
                    return self.task.probe_loss(model, inputs, targets)

                def time_steps(modes: Sequence[str]) -> dict[str, float]:
                    return precision.time_training_steps(self.model, self.optimizer, loss_of, self.device, modes)

                cache_key = (self.task.name, repr(self.model), repr(self.optimizer), *(tuple(t.shape) for t in inputs))
            choice = precision.choose_amp(cfg.amp, self.device, time_steps, cache_key)
        if ctx.distributed:
            choice = ctx.broadcast_object(choice)
        assert isinstance(choice, precision.AmpChoice)
        return choice

    # ---------------------------------------------------------------------------------- resume
    def restore(self) -> None:
        """Continue from ``checkpoints/latest``: weights, optimizer, schedule, counters, sums, RNG states."""
        weights, state = load_checkpoint(latest_checkpoint(self.run_dir))
        self.model.load_state_dict(migrate_vit_state_dict(weights, self.model.state_dict()))  # older runs' names
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.batch_start, self.step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        self.history = list(state["history"])
        self.elapsed_before = float(state["elapsed"])
        self.skipped = int(state.get("skipped", 0))
        self.kept = int(state.get("kept", self.batch_start))
        self.last_lr = float(state.get("lr", self.last_lr))
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        per_rank = state["ranks"]
        if len(per_rank) == self.ctx.world_size:
            _rng_restore(per_rank[self.ctx.rank]["rng"], self.generator)
            self.sums.copy_(per_rank[self.ctx.rank]["sums"].to(self.device))
            self.task.load_rank_state(per_rank[self.ctx.rank].get("task", {}))
        elif self.ctx.is_main:
            print(f"vitlab: resuming with {self.ctx.world_size} processes instead of {len(per_rank)}: "
                  "random streams restart")

    # ---------------------------------------------------------------------------------- start
    def start(self) -> None:
        """Write config.yaml and run.json (a new run), wrap for DDP then compile, print the recipe's warnings."""
        ctx, cfg = self.ctx, self.cfg
        if ctx.is_main and not self.resume:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / CONFIG_FILE, dump_yaml(self.task.config_dict()))
            info = {**self.task.run_info(), "num_params": self.num_params, "world_size": ctx.world_size,
                    "amp": self.amp, "amp_choice": self.amp_choice.to_dict(), "torch": torch.__version__,
                    "python": platform.python_version()}
            atomic_write_text(self.run_dir / RUN_INFO_FILE, json.dumps(info, indent=2))
        ctx.barrier()
        self.train_model: nn.Module = self.model
        self.ddp = None
        if ctx.distributed:  # wrap first, then compile: PyTorch's guidance for DDP with torch.compile

            ids = [self.device.index] if self.device.type == "cuda" else None
            match_grad_strides(self.model)
            self.ddp = self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.tensorboard = TensorBoard(self.run_dir / "tb" if ctx.is_main else None)
        self.die_at_step = _test_die_at_step(ctx)
        self.warnings = self.task.warnings()
        if ctx.is_main and not self.quiet:  # once the run folder exists: a run that fails before prints no choice
            print(f"vitlab: {self.amp_choice.line}", flush=True)
        if ctx.is_main:
            for line in self.warnings:
                print(f"vitlab: warning: {line}", file=sys.stderr)
        self.model.train()

    # ---------------------------------------------------------------------------------- epoch
    def steps_in(self, epoch: int) -> int:
        """Optimizer steps of ``epoch`` (the last one may be shorter when total steps are not a multiple)."""
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    def run_epoch(self, epoch: int) -> None:
        """One epoch: this rank's sample order, then a step per batch with progress, hooks and checkpoints."""
        steps = self.steps_in(epoch)
        items = self.task.epoch_batches(epoch, self.batch_start, self.ctx)  # a streaming task's batches
        if items is None:  # index batches of the in-memory sample order
            order = self.task.epoch_indices(epoch, self.ctx)
            lb = self.local_batch
            items = (order[b * lb : (b + 1) * lb].to(self.device, non_blocking=True)
                     for b in range(self.batch_start, steps))
        self.t_epoch = time.perf_counter()
        bar = tqdm(total=steps, initial=self.batch_start, desc=f"epoch {epoch + 1}/{self.epochs}",
                   disable=self.quiet or not self.ctx.is_main, leave=False, dynamic_ncols=True)
        for batch, item in zip(range(self.batch_start, steps), items):
            self.train_step(item)
            bar.update(1)
            if self.die_at_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)  # test-only: see _test_die_at_step
            if self.step % self.cfg.log_every == 0:
                self.raise_if_nonfinite()
                if self.ctx.is_main and not self.quiet:
                    shown = self.task.train_row([v * self.ctx.world_size for v in self.sums.tolist()],
                                                max(self.kept, 1))
                    bar.set_postfix(loss=f"{shown['train_loss']:.4f}", lr=f"{self.last_lr:.2e}")
            if self.cfg.checkpoint_steps and self.step % self.cfg.checkpoint_steps == 0 and batch + 1 < steps:
                self.checkpoint(epoch, batch + 1)
        bar.close()
        self.batch_start = 0

    # ---------------------------------------------------------------------------------- step
    def train_step(self, index: Any) -> None:
        """One optimizer step over this rank's ``index`` (or a streaming task's batch), accumulated over
        micro-batches."""
        accum = self.cfg.accum_steps
        step_loss = torch.zeros((), device=self.device)
        step_stats = torch.zeros_like(self.sums)
        batches = self.task.micro_batches(index, accum, self.ctx)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or self.ddp is None else self.ddp.no_sync()
            with sync:
                with precision.autocast(self.device, self.amp):
                    loss, stats = self.task.batch_loss(self.train_model, batch)
                scaled = loss / accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            step_loss += loss.detach() / accum
            step_stats += stats
        if not self.apply_update(step_loss):
            return  # a skipped step (nonfinite: skip): its statistics stay out of the epoch's means
        self.sums += step_stats
        self.kept += 1

    def apply_update(self, step_loss: Tensor) -> bool:
        """Clip, apply the non-finite policy, then optimizer + schedule + EMA; False when the step was skipped."""
        cfg = self.cfg
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip, foreach=True)
        finite = torch.isfinite(step_loss)
        if grad_norm is not None and self.scaler is None:  # with a scaler, inf gradients are its business
            finite = finite & torch.isfinite(grad_norm)
        self.last_lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
        if cfg.nonfinite == "skip":
            flag = self.ctx.all_reduce_sum((~finite).to(torch.float32))
            if float(flag) > 0:  # one host sync per step in this mode
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.skipped += 1
                self.step += 1
                return False
        else:
            self.bad_step = torch.where((self.bad_step < 0) & ~finite, torch.full_like(self.bad_step, self.step),
                                        self.bad_step)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return True

    # ---------------------------------------------------------------------------------- evaluate, checkpoint
    def end_epoch(self, epoch: int) -> None:
        """The epoch's metrics row (evaluation when due), metrics.csv / TensorBoard / a line, the checkpoint."""
        self.raise_if_nonfinite()
        totals = self.ctx.all_reduce_sum(self.sums.clone()).tolist()
        self.sums.zero_()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.epoch_seconds.append(time.perf_counter() - self.t_epoch)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": self.step, "lr": self.last_lr,
                               **self.task.train_row(totals, self.kept)}
        self.kept = 0
        last = epoch + 1 == self.epochs
        if self.task.eval_due(epoch + 1, last):
            if self.ema is not None:
                self.eval_model.load_state_dict(self.ema.state_dict())
            row.update(self.task.evaluate(self.eval_model, self.ctx, self.amp))
            self.fresh_eval = last
        row["epoch_seconds"] = self.epoch_seconds[-1]
        row[f"{self.task.unit}_per_s"] = self.steps_in(epoch) * self.cfg.batch_size / max(self.epoch_seconds[-1], 1e-9)
        self.history.append(row)
        if self.ctx.is_main:
            write_metrics_csv(self.run_dir / METRICS_FILE, self.history)
            self.tensorboard.log(row, self.step)
            self.print_row(row)
        if (epoch + 1) % self.cfg.checkpoint_every == 0 or last:
            self.checkpoint(epoch + 1, 0)

    def print_row(self, row: dict[str, Any]) -> None:
        """One line per epoch: every entry with --quiet, else the loss and the task's headline metric."""
        if self.quiet:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            return
        key = self.task.headline
        shown = f" {key}={row[key]:.4f}" if key in row else ""
        tqdm.write(f"epoch {row['epoch']}/{self.epochs} train_loss={row['train_loss']:.4f}{shown}")

    def checkpoint(self, next_epoch: int, next_batch: int) -> None:
        """Save everything a resumed run needs (rank 0 writes; every rank's RNG states and sums are gathered)."""
        self.raise_if_nonfinite()
        state_rank = {"rng": _rng_snapshot(self.generator), "sums": self.sums.detach().cpu().clone(),
                      "task": self.task.rank_state()}
        ranks = self.ctx.all_gather_object(state_rank)
        if self.ctx.is_main:
            state = {
                "task": self.task.name,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": next_epoch,
                "batch": next_batch,
                "step": self.step,
                "kept": self.kept,
                "lr": self.last_lr,
                "history": self.history,
                "elapsed": self.elapsed_before + time.perf_counter() - self.t_start,
                "skipped": self.skipped,
                "ema": self.ema.state_dict() if self.ema is not None else {},
                "ranks": ranks,
            }
            save_checkpoint(self.run_dir, self.step, self.model.state_dict(), state)
        self.ctx.barrier()

    def raise_if_nonfinite(self) -> None:
        """Stop every rank together at the first non-finite step (``nonfinite: stop``)."""
        # A rank that stopped alone would leave the others waiting in their next collective.
        step = int(self.ctx.all_reduce_max(self.bad_step.clone()))
        if step >= 0:
            last = latest_checkpoint(self.run_dir) if self.run_dir.exists() else None
            kept = f"the last good checkpoint is {last}" if last is not None else "no checkpoint had been written yet"
            raise NonFiniteLossError(
                f"the loss became NaN or infinite at step {step + 1}; {kept}; lower the learning rate, keep "
                "grad_clip on, or pass --set nonfinite=skip to drop such steps"
            )

    # ---------------------------------------------------------------------------------- finish
    def finish(self) -> dict[str, Any]:
        """The task's final evaluation, model.safetensors, summary.json, plots and the printed summary."""
        self.tensorboard.close()
        if self.ema is not None:
            self.eval_model.load_state_dict(self.ema.state_dict())
        final_weights = self.eval_model.state_dict()
        summary = self.task.finish(self.eval_model, self.ctx, self.amp, self.history, self.fresh_eval)
        steady = self.epoch_seconds[1:] or self.epoch_seconds
        steady_steps = self.steps_per_epoch * len(steady)
        summary.update({
            f"train_{self.task.unit}_per_s": (
                steady_steps * self.cfg.batch_size / sum(steady) if steady else float("nan")
            ),
            "epochs": self.epochs,
            "steps": self.step,
            "skipped_steps": self.skipped,
            "num_params": self.num_params,
            "train_seconds": self.elapsed_before + sum(self.epoch_seconds),
            "total_seconds": self.elapsed_before + time.perf_counter() - self.t_start,
            "world_size": self.ctx.world_size,
            "device": str(self.device),
            "amp": self.amp,
            "amp_choice": self.amp_choice.to_dict(),
            "warnings": self.warnings,
        })
        if self.ctx.is_main:
            save_weights(final_weights, self.run_dir / WEIGHTS_FILE, metadata=self.task.weights_metadata())
            atomic_write_text(self.run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
            if self.plots:
                self.task.write_report(self.run_dir, self.history, summary)
            if not self.quiet:
                print(self.task.format_summary(summary))
        self.ctx.barrier()
        return summary


# ------------------------------------------------------------------------------------------ helpers
def match_grad_strides(model: nn.Module) -> None:
    """Give the gradients of parameters with a size-1 dimension their parameter's strides (for DDP).

    A (1, 1, D) class token reached through ``expand`` and ``cat`` gets, with one sample per micro-batch,
    a gradient that is a view into the concatenated gradient (strides (N·D, D, 1)); autograd keeps it as
    ``.grad`` (size-1 dimensions make any stride "contiguous"), and DDP, whose bucket view has the
    parameter's strides (D, D, 1), warns "Grad strides do not match bucket view strides" and copies on
    every step. A hook that clones such a gradient into the standard layout removes both.
    """

    def standard(grad: Tensor) -> Tensor:
        return (grad if grad.stride() == grad.new_empty(grad.shape).stride()
                else grad.clone(memory_format=torch.contiguous_format))

    for param in model.parameters():
        if param.requires_grad and param.ndim > 1 and 1 in param.shape:
            param.register_hook(standard)


def _rng_snapshot(generator: torch.Generator) -> dict[str, Any]:
    snapshot = {"cpu": torch.get_rng_state(), "aug": generator.get_state()}
    if torch.cuda.is_available():
        snapshot["cuda"] = torch.cuda.get_rng_state_all()
    return snapshot


def _rng_restore(snapshot: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(snapshot["cpu"])
    generator.set_state(snapshot["aug"])
    if "cuda" in snapshot and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snapshot["cuda"])


def _test_die_at_step(ctx: DistContext) -> int | None:
    """Test-only fault injection: the step after which this process kills itself with SIGKILL, or ``None``.

    ``VITLAB_TEST_DIE_AT_STEP=N`` and ``VITLAB_TEST_DIE_RANK=R`` (default 0) make rank R die right after
    optimizer step N, on the first attempt only (``TORCHELASTIC_RESTART_COUNT`` unset or 0), so that a run
    under ``torchrun --max-restarts`` with ``--auto-resume`` can be shown to recover. Not for users.
    """
    raw = os.environ.get("VITLAB_TEST_DIE_AT_STEP")
    if not raw or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        return None
    return int(raw) if ctx.rank == int(os.environ.get("VITLAB_TEST_DIE_RANK", "0")) else None
