"""The image-classification training loop: data, model, AdamW + warm-up/cosine, mixing, EMA, checkpoints.

One call, :func:`train`, runs a recipe (:class:`~vitlab.train.config.TrainConfig`) into a run folder::

    RUN/config.yaml          the resolved recipe
    RUN/run.json             what the data gave (classes, image shape, normalisation), world size, versions
    RUN/checkpoints/         resumable checkpoints (see vitlab.train.checkpoint); ``latest`` names the newest
    RUN/metrics.csv          one row per epoch: lr, train loss/accuracy, validation loss/top-1/top-5/ECE, time
    RUN/model.safetensors    the final weights (the EMA weights when ema_decay > 0)
    RUN/summary.json         test metrics, ECE before/after temperature scaling, throughput
    RUN/curves.png, RUN/confusion.png, RUN/reliability.png
    RUN/tb/                  TensorBoard events, when the ``tensorboard`` package is installed

Determinism: the model is initialised from ``seed``; the epoch-``e`` sample order is
``DistributedSampler``'s permutation seeded with ``seed + e``; augmentation and mixing draw from one
``torch.Generator`` per rank. Every one of these states is in the checkpoint, so a resumed run (even one
killed in the middle of an epoch) continues the same sequence of updates as an uninterrupted one, and on
the CPU ends with bit-identical weights.

Host syncs: the loop keeps running sums on the device and reads them (one sync) only every ``log_every``
steps, at the end of an epoch and before a checkpoint; ``nonfinite: skip`` needs one sync per step.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import platform
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from vitlab.data.base import ImageDataset
from vitlab.errors import CheckpointError, ConfigError, DataError, VitlabError
from vitlab.train.checkpoint import (
    atomic_write_text,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)
from vitlab.train.config import TrainConfig, config_from_dict, dump_yaml, load_yaml
from vitlab.train.distributed import DistContext, init_distributed, shutdown_distributed
from vitlab.train.ema import WeightEma
from vitlab.train.schedule import WarmupCosine

CONFIG_FILE = "config.yaml"
RUN_INFO_FILE = "run.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
WEIGHTS_FILE = "model.safetensors"


class NonFiniteLossError(VitlabError):
    """The training loss became NaN or infinite."""


# ------------------------------------------------------------------------------------------ pieces
def build_model(cfg: TrainConfig, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """``create_model(cfg.model)`` with ``img_size``, ``in_chans`` and ``num_classes`` taken from the data."""
    from vitlab.models import create_model

    channels, height, width = image_shape
    args = {"img_size": (height, width), "in_chans": channels, "num_classes": num_classes}
    for key, value in cfg.model_args.items():
        from_data = args.get(key)
        given = (value, value) if key == "img_size" and isinstance(value, int) else value
        given = tuple(given) if key == "img_size" and isinstance(given, list) else given
        if from_data is not None and given != from_data:  # the data decides image size, channels, classes
            raise ConfigError(
                f"model_args.{key}={value!r} but the data gives {key}={from_data!r}; remove model_args.{key} "
                "(it is taken from the data)"
            )
    args.update(cfg.model_args)
    try:
        return create_model(cfg.model, **args)
    except TypeError as error:  # an unknown constructor argument in model_args
        raise ConfigError(f"model_args for '{cfg.model}' are not accepted: {error}; check the argument names") from None


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay for weight matrices; none for biases, norms and ``model.no_weight_decay()``."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019) over :func:`parameter_groups`; PyTorch's fused kernel on CUDA and the CPU.

    The fused kernel makes one pass over each parameter's memory; on the CPU the ``foreach`` path falls back to
    one kernel per operation and parameter, several times slower on ViT-Ti (benchmarks/bench_vit.py).
    """
    fast = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999), **fast)


@dataclass
class Evaluation:
    """Metrics of a model on a dataset (every rank holds the full result)."""

    loss: float
    acc1: float
    acc5: float
    ece: float
    logits: Tensor  # (N, K) float32 on the CPU
    labels: Tensor  # (N,) int64 on the CPU

    def confusion(self) -> Tensor:
        from vitlab.metrics import confusion_matrix

        return confusion_matrix(self.logits.argmax(1), self.labels, self.logits.shape[1])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageDataset,
    transform: Any,
    ctx: DistContext,
    batch_size: int = 256,
    amp: bool = False,
) -> Evaluation:
    """Exact evaluation: each rank scores its contiguous shard, the logits are gathered in order."""
    from vitlab.metrics import expected_calibration_error, topk_correct

    was_training = model.training
    model.eval()
    start, end = ctx.shard_range(len(data))
    chunks = []
    for i in range(start, end, batch_size):
        images = data.images[i : min(i + batch_size, end)].to(ctx.device, non_blocking=True)
        images = transform(images, None, train=False)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=amp):
            chunks.append(model(images).float())
    num_classes = data.num_classes
    local = torch.cat(chunks) if chunks else torch.zeros(0, num_classes, device=ctx.device)
    logits = ctx.gather_rows(local, len(data)).cpu()
    model.train(was_training)
    labels = data.labels.cpu()
    counts = topk_correct(logits, labels, (1, 5))
    return Evaluation(
        loss=float(F.cross_entropy(logits, labels)),
        acc1=float(counts[1]) / len(data),
        acc5=float(counts[5]) / len(data),
        ece=float(expected_calibration_error(logits.softmax(1), labels)),
        logits=logits,
        labels=labels,
    )


def _rng_snapshot(aug_generator: torch.Generator) -> dict[str, Any]:
    snapshot = {"cpu": torch.get_rng_state(), "aug": aug_generator.get_state()}
    if torch.cuda.is_available():
        snapshot["cuda"] = torch.cuda.get_rng_state_all()
    return snapshot


def _rng_restore(snapshot: dict[str, Any], aug_generator: torch.Generator) -> None:
    torch.set_rng_state(snapshot["cpu"])
    aug_generator.set_state(snapshot["aug"])
    if "cuda" in snapshot and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snapshot["cuda"])


def _write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
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


class _TensorBoard:
    """TensorBoard scalars when the ``tensorboard`` package is installed; a no-op otherwise."""

    def __init__(self, folder: Path | None) -> None:
        self.writer = None
        if folder is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional
            return
        self.writer = SummaryWriter(str(folder))

    def log(self, row: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _load_data(cfg: TrainConfig) -> dict[str, ImageDataset]:
    from vitlab.data.registry import load_splits

    splits = load_splits(cfg.dataset, cfg.data_root, val_fraction=cfg.val_fraction, seed=0, download=cfg.download)
    shapes = {name: ds.image_shape for name, ds in splits.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"the splits of '{cfg.dataset}' have different image shapes {shapes}; use one image size")
    return splits


def _make_transform(
    cfg: TrainConfig, train_set: ImageDataset, info: dict[str, Any] | None = None
) -> tuple[Any, list[float] | None, list[float] | None]:
    """The batch transform (crop, flip, normalisation by the training set's statistics) and its mean/std."""
    from vitlab.data.transforms import BatchTransform, channel_stats

    if info is not None:
        mean, std = info["mean"], info["std"]
    elif cfg.normalize:
        mean_t, std_t = channel_stats(train_set.images)
        mean, std = [float(v) for v in mean_t], [max(float(v), 1e-6) for v in std_t]
    else:
        mean, std = None, None
    return BatchTransform(crop_padding=cfg.crop_padding, hflip=cfg.hflip, mean=mean, std=std), mean, std


# ------------------------------------------------------------------------------------------ the loop
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
        raise ConfigError(f"run folder {run_dir} already exists; pass --resume {run_dir} to continue it or choose another --out")


def train(
    cfg: TrainConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    ctx: DistContext | None = None,
    auto_resume: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (or continue the run there when ``resume``); returns the summary.

    ``auto_resume`` serves restarts (``torchrun --max-restarts`` runs the same command line again): continue
    from the folder's last checkpoint when it has one (``cfg`` must equal the saved recipe), start over in it
    when it is a run folder killed before its first checkpoint, return the saved summary when it has
    finished, and otherwise start a new run.

    Raises:
        ConfigError, DataError, CheckpointError: bad recipe, data or run folder (nothing is left behind
            for a new run that fails before its first checkpoint).
        NonFiniteLossError: the loss became NaN/inf (``nonfinite: stop``); the last good checkpoint is kept.
    """
    run_dir = Path(run_dir)
    start_over = False
    if auto_resume and not resume:
        if (run_dir / SUMMARY_FILE).is_file() and (run_dir / WEIGHTS_FILE).is_file():
            if not quiet and int(os.environ.get("RANK", "0")) == 0:
                print(f"vitlab: {run_dir} has already finished; nothing to do")
            return json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        if (run_dir / CONFIG_FILE).is_file():
            resume = latest_checkpoint(run_dir) is not None
            start_over = not resume  # killed before its first checkpoint: begin again in the same folder
            if resume and cfg is not None:
                _check_same_recipe(cfg, run_dir)
    if not start_over:
        prepare_run_dir(run_dir, resume)
    if resume:
        cfg = config_from_dict(load_yaml(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))
    if cfg is None:
        raise ConfigError("no config given; pass a TrainConfig (or resume=True with a run folder)")
    owns_ctx = ctx is None
    ctx = ctx or init_distributed(cfg.device)
    ctx.barrier()  # every rank has looked at the run folder before rank 0 writes into it
    created = False
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if not resume and ctx.is_main:
            created = not run_dir.exists()
        summary = _train(cfg, run_dir, resume, quiet, ctx)
        if owns_ctx:
            shutdown_distributed()
        return summary
    except BaseException:  # bad input, a full disk, an interrupt: never leave a half-made run folder behind
        if created and ctx.is_main and run_dir.is_dir() and _no_checkpoint(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _no_checkpoint(run_dir: Path) -> bool:
    try:
        return latest_checkpoint(run_dir) is None
    except VitlabError:  # a damaged pointer in a folder this call created: nothing worth keeping
        return True


def _check_same_recipe(cfg: TrainConfig, run_dir: Path) -> None:
    """Refuse to continue a run folder with a recipe other than the one it was started with."""
    saved = config_from_dict(load_yaml(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE)).to_dict()
    given = cfg.to_dict()
    changed = sorted(key for key in given if given[key] != saved.get(key))
    if changed:
        shown = ", ".join(f"{key}: {saved.get(key)!r} -> {given[key]!r}" for key in changed)
        raise ConfigError(
            f"--auto-resume found a checkpoint in {run_dir} made with another recipe ({shown}); "
            "pass the same --config/--set or choose another --out"
        )


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, quiet: bool, ctx: DistContext) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from vitlab.metrics import expected_calibration_error, fit_temperature
    from vitlab.mixing import build_mixing

    t_start = time.perf_counter()
    device = ctx.device
    splits = _load_data(cfg)
    train_set, val_set, test_set = splits["train"], splits["val"], splits["test"]
    info = json.loads((run_dir / RUN_INFO_FILE).read_text()) if resume else None
    transform, mean, std = _make_transform(cfg, train_set, info)

    world, micro = ctx.world_size, cfg.batch_size // (ctx.world_size * cfg.accum_steps)
    if cfg.batch_size % (world * cfg.accum_steps):
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be divisible by processes × accum_steps = {world * cfg.accum_steps}"
        )
    steps_per_epoch = len(train_set) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is larger than the training set ({len(train_set)} images); lower batch_size"
        )
    total_steps = steps_per_epoch * cfg.epochs

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg, train_set.image_shape, train_set.num_classes).to(device)
    num_params = sum(p.numel() for p in model.parameters())
    torch.manual_seed(cfg.seed + 1_000_003 * (ctx.rank + 1))  # dropout / drop-path differ between ranks
    aug_generator = torch.Generator(device=device).manual_seed(cfg.seed + 7919 * (ctx.rank + 1))

    optimizer = build_optimizer(model, cfg, device)
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, cfg.lr, cfg.min_lr))
    mixer, loss_fn = build_mixing(
        train_set.num_classes,
        mixup_alpha=cfg.mixup_alpha,
        cutmix_alpha=cfg.cutmix_alpha,
        cutout_size=cfg.cutout_size,
        mix_prob=cfg.mix_prob,
        switch_prob=cfg.switch_prob,
        mix_mode=cfg.mix_mode,
        label_smoothing=cfg.label_smoothing,
        generator=aug_generator,
    )
    ema = WeightEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    eval_model = copy.deepcopy(model) if ema is not None else model

    epoch, batch_start, step, history = 0, 0, 0, []
    # loss·n and correct over the epoch so far, on the device; the sample count is known on the host:
    # (batches done in the epoch) × local_batch on each rank, steps_per_epoch × batch_size in all.
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    elapsed_before = 0.0
    skipped = 0
    if resume:
        folder = latest_checkpoint(run_dir)
        weights, state = load_checkpoint(folder)
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epoch, batch_start, step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        history = list(state["history"])
        elapsed_before = float(state["elapsed"])
        skipped = int(state.get("skipped", 0))
        if ema is not None:
            ema.load_state_dict(state["ema"])
        per_rank = state["ranks"]
        if len(per_rank) == world:
            _rng_restore(per_rank[ctx.rank]["rng"], aug_generator)
            sums.copy_(per_rank[ctx.rank]["sums"].to(device))
        elif ctx.is_main:
            print(f"vitlab: resuming with {world} processes instead of {len(per_rank)}: random streams restart")

    if ctx.is_main and not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(cfg.to_dict()))
        info = {
            "dataset": cfg.dataset,
            "classes": train_set.classes,
            "image_shape": list(train_set.image_shape),
            "mean": mean,
            "std": std,
            "num_params": num_params,
            "splits": {name: len(ds) for name, ds in splits.items()},
            "world_size": world,
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
        atomic_write_text(run_dir / RUN_INFO_FILE, json.dumps(info, indent=2))
    ctx.barrier()

    train_model: nn.Module = model
    if cfg.compile:
        train_model = torch.compile(model)
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = DistributedSampler(
        range(len(train_set)), num_replicas=world, rank=ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    train_images = train_set.images.to(device)
    train_labels = train_set.labels.to(device)
    tensorboard = _TensorBoard(run_dir / "tb" if ctx.is_main else None)
    bad_step = torch.full((), -1, dtype=torch.long, device=device)
    local_batch = cfg.batch_size // world
    final_val: Evaluation | None = None
    die_at_step = _test_die_at_step(ctx)
    epoch_seconds: list[float] = []

    def checkpoint(next_epoch: int, next_batch: int) -> None:
        _raise_if_nonfinite(bad_step, run_dir, ctx)
        state_rank = {"rng": _rng_snapshot(aug_generator), "sums": sums.detach().cpu().clone()}
        ranks = ctx.all_gather_object(state_rank)
        if ctx.is_main:
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": next_epoch,
                "batch": next_batch,
                "step": step,
                "history": history,
                "elapsed": elapsed_before + time.perf_counter() - t_start,
                "skipped": skipped,
                "ema": ema.state_dict() if ema is not None else {},
                "ranks": ranks,
            }
            save_checkpoint(run_dir, step, model.state_dict(), state)
        ctx.barrier()

    model.train()
    for epoch in range(epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        t_epoch = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            initial=batch_start,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=quiet or not ctx.is_main,
            leave=False,
            dynamic_ncols=True,
        )
        for batch in range(batch_start, steps_per_epoch):
            index = order[batch * local_batch : (batch + 1) * local_batch].to(device, non_blocking=True)
            step_loss = torch.zeros((), device=device)
            for micro_step in range(cfg.accum_steps):
                part = index[micro_step * micro : (micro_step + 1) * micro]
                images = transform(train_images[part], aug_generator, train=True)
                labels = train_labels[part]
                targets = labels
                if mixer is not None:
                    images, targets = mixer(images, labels)
                sync_now = micro_step == cfg.accum_steps - 1 or not ctx.distributed
                context = train_model.no_sync() if not sync_now else contextlib.nullcontext()
                with context:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                        logits = train_model(images)
                        loss = loss_fn(logits.float(), targets)
                    (loss / cfg.accum_steps).backward()
                detached = loss.detach()
                step_loss += detached / cfg.accum_steps
                sums += torch.stack(
                    [detached.double() * part.numel(), (logits.detach().argmax(1) == labels).sum().double()]
                )
            grad_norm = (
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
                if cfg.grad_clip > 0
                else None
            )
            finite = torch.isfinite(step_loss)
            if grad_norm is not None:
                finite = finite & torch.isfinite(grad_norm)
            if cfg.nonfinite == "skip":
                flag = ctx.all_reduce_sum((~finite).to(torch.float32))
                if float(flag) > 0:  # one host sync per step in this mode
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    skipped += 1
                    step += 1
                    bar.update(1)
                    continue
            else:
                bad_step = torch.where((bad_step < 0) & ~finite, torch.full_like(bad_step, step), bad_step)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model)
            step += 1
            bar.update(1)
            if die_at_step == step:
                os.kill(os.getpid(), signal.SIGKILL)  # test-only: see _test_die_at_step
            if step % cfg.log_every == 0:
                _raise_if_nonfinite(bad_step, run_dir, ctx)
                if ctx.is_main and not quiet:
                    loss_sum, _ = sums.tolist()
                    bar.set_postfix(loss=f"{loss_sum / ((batch + 1) * local_batch):.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0 and batch + 1 < steps_per_epoch:
                checkpoint(epoch, batch + 1)
        bar.close()
        batch_start = 0
        _raise_if_nonfinite(bad_step, run_dir, ctx)
        totals = ctx.all_reduce_sum(sums.clone()).tolist()
        sums.zero_()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_seconds.append(time.perf_counter() - t_epoch)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "lr": scheduler.get_last_lr()[0],
            "train_loss": totals[0] / (steps_per_epoch * cfg.batch_size),
            "train_acc": totals[1] / (steps_per_epoch * cfg.batch_size),
        }
        last = epoch + 1 == cfg.epochs
        if (epoch + 1) % cfg.eval_every == 0 or last:
            if ema is not None:
                eval_model.load_state_dict(ema.state_dict())
            result = evaluate(eval_model, val_set, transform, ctx, amp=cfg.amp)
            final_val = result if last else None
            row.update(val_loss=result.loss, val_acc1=result.acc1, val_acc5=result.acc5, val_ece=result.ece)
        row["epoch_seconds"] = epoch_seconds[-1]
        row["images_per_s"] = steps_per_epoch * cfg.batch_size / max(epoch_seconds[-1], 1e-9)
        history.append(row)
        if ctx.is_main:
            _write_metrics_csv(run_dir / METRICS_FILE, history)
            tensorboard.log(row, step)
            if quiet:
                shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
                print(shown, flush=True)
            else:
                acc = f" val_acc1={row['val_acc1']:.4f}" if "val_acc1" in row else ""
                tqdm.write(f"epoch {epoch + 1}/{cfg.epochs} train_loss={row['train_loss']:.4f}{acc}")
        if (epoch + 1) % cfg.checkpoint_every == 0 or last:
            checkpoint(epoch + 1, 0)
    tensorboard.close()

    # ---------------------------------------------------------------------------------- final report
    if ema is not None:
        eval_model.load_state_dict(ema.state_dict())
    final_weights = eval_model.state_dict()
    # The last epoch has just scored these weights on the validation split, unless this call resumed a run
    # whose epochs were all done.
    val = final_val if final_val is not None else evaluate(eval_model, val_set, transform, ctx, amp=cfg.amp)
    test = evaluate(eval_model, test_set, transform, ctx, amp=cfg.amp)
    temperature = fit_temperature(val.logits, val.labels)
    ece_scaled = float(expected_calibration_error((test.logits / temperature).softmax(1), test.labels))
    steady = epoch_seconds[1:] or epoch_seconds
    summary = {
        "test_acc1": test.acc1,
        "test_acc5": test.acc5,
        "test_loss": test.loss,
        "test_ece": test.ece,
        "temperature": temperature,
        "test_ece_temperature_scaled": ece_scaled,
        "val_acc1": val.acc1,
        "train_images_per_s": (len(steady) * steps_per_epoch * cfg.batch_size / sum(steady)) if steady else float("nan"),
        "epochs": cfg.epochs,
        "steps": step,
        "skipped_steps": skipped,
        "num_params": num_params,
        "train_seconds": elapsed_before + sum(epoch_seconds),
        "total_seconds": elapsed_before + time.perf_counter() - t_start,
        "world_size": world,
        "device": str(device),
    }
    if ctx.is_main:
        save_weights(final_weights, run_dir / WEIGHTS_FILE, metadata={"model": cfg.model})
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
        _write_plots(run_dir, history, test, temperature, train_set.classes)
        if not quiet:
            print(format_summary(summary))
    ctx.barrier()
    return summary


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


def _raise_if_nonfinite(bad_step: Tensor, run_dir: Path, ctx: DistContext) -> None:
    # Every rank reaches this at the same step; agreeing on the first bad step makes them all stop together
    # (a rank that stopped alone would leave the others waiting in their next collective).
    step = int(ctx.all_reduce_max(bad_step.clone()))
    if step >= 0:
        last = latest_checkpoint(run_dir) if run_dir.exists() else None
        kept = f"the last good checkpoint is {last}" if last is not None else "no checkpoint had been written yet"
        raise NonFiniteLossError(
            f"the loss became NaN or infinite at step {step + 1}; {kept}; lower lr, keep grad_clip on, "
            "or pass --set nonfinite=skip to drop such steps"
        )


def _write_plots(run_dir: Path, history: list[dict[str, Any]], test: Evaluation, temperature: float, classes: list[str]) -> None:
    from vitlab import viz

    viz.plot_learning_curves(history, run_dir / "curves.png")
    viz.plot_confusion_matrix(test.confusion(), classes, run_dir / "confusion.png")
    # Reliability diagram of the test split before (left) and after (right) temperature scaling with the
    # temperature fitted on the validation split.
    viz.plot_temperature_scaling(test.logits, test.labels, temperature, run_dir / "reliability.png")


def format_summary(summary: dict[str, Any]) -> str:
    """The final summary as an aligned two-column table."""
    rows = [
        ("test top-1 accuracy", f"{summary['test_acc1']:.4f}"),
        ("test top-5 accuracy", f"{summary['test_acc5']:.4f}"),
        ("test loss (NLL)", f"{summary['test_loss']:.4f}"),
        ("test ECE (15 bins)", f"{summary['test_ece']:.4f}"),
        ("test ECE after temperature scaling", f"{summary['test_ece_temperature_scaled']:.4f} (T={summary['temperature']:.3f})"),
        ("validation top-1 accuracy", f"{summary['val_acc1']:.4f}"),
        ("training throughput", f"{summary['train_images_per_s']:.0f} images/s"),
        ("optimizer steps", f"{summary['steps']} ({summary['skipped_steps']} skipped)"),
        ("training time", f"{summary['train_seconds']:.1f} s"),
        ("parameters", f"{summary['num_params']:,}"),
    ]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 30)
    return "\n".join([line, *(f"{k:<{width}}  {v}" for k, v in rows), line])


# ------------------------------------------------------------------------------------------ using a run
def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """The trained model of a run folder (in eval mode), its config and run info.

    Raises:
        CheckpointError: the folder has no finished model or its files are damaged.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / RUN_INFO_FILE).is_file():
        raise CheckpointError(f"{run_dir} is not a vitlab run folder (no {CONFIG_FILE}/{RUN_INFO_FILE}); pass a folder that `vitlab train` wrote")
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{run_dir} has no {WEIGHTS_FILE}: the run has not finished; resume it with `vitlab train --resume {run_dir}`")
    cfg = config_from_dict(load_yaml(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))
    try:
        info = json.loads((run_dir / RUN_INFO_FILE).read_text(encoding="utf-8"))
    except ValueError:
        raise CheckpointError(f"{run_dir / RUN_INFO_FILE} is damaged (not JSON)") from None
    model = build_model(cfg, tuple(info["image_shape"]), len(info["classes"]))
    try:
        model.load_state_dict(load_weights(run_dir / WEIGHTS_FILE))
    except RuntimeError as error:
        raise CheckpointError(f"{run_dir / WEIGHTS_FILE} does not match the model in {CONFIG_FILE}: {str(error).splitlines()[0]}") from None
    return model.to(device).eval(), cfg, info


def run_transform(cfg: TrainConfig, info: dict[str, Any]) -> Any:
    """The evaluation transform of a run (its normalisation)."""
    from vitlab.data.transforms import BatchTransform

    return BatchTransform(crop_padding=0, hflip=False, mean=info["mean"], std=info["std"])

