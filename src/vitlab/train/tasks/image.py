"""Image classification as an engine task: data, ViT/CNN, AdamW + warm-up/cosine, mixing, evaluation, report.

* Optimizer: AdamW (Loshchilov & Hutter 2019), no decay on biases, norms and ``no_weight_decay()``.
* Schedule: linear warm-up then cosine to ``min_lr`` (:class:`vitlab.train.schedule.WarmupCosine`).
* Loss: label-smoothed cross-entropy, or soft-target cross-entropy after Mixup/CutMix (:mod:`vitlab.mixing`).
* Sample order of epoch e: ``DistributedSampler``'s permutation seeded with ``seed + e``.
* Report: test top-1 (and top-5 when there are more than 5 classes: with 5 or fewer it is always 1),
  NLL, ECE before and after temperature scaling (Guo et al. 2017), a confusion matrix and reliability plot.

Using a finished run: :func:`load_run`, :func:`run_transform`, :func:`evaluate`.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from vitlab import mixing  # a module attribute: tests replace mixing.build_mixing to inject a NaN loss
from vitlab.data.base import ImageDataset, take_per_class
from vitlab.data.registry import load_splits
from vitlab.data.transforms import BatchTransform, channel_stats
from vitlab.distillation import DistillationLoss
from vitlab.errors import CheckpointError, ConfigError, DataError
from vitlab.io import load_yaml
from vitlab.metrics import confusion_matrix, expected_calibration_error, fit_temperature, topk_correct
from vitlab.models import create_model
from vitlab.models.convert.common import LoadReport
from vitlab.models.deit import DistilledVisionTransformer
from vitlab.models.finetune import freeze_for_linear_probe, layer_decay_groups
from vitlab.models.pretrained import CONFIG_KEY
from vitlab.models.vit import VisionTransformer, migrate_vit_state_dict
from vitlab.train.checkpoint import load_weights
from vitlab.train.distributed import DistContext
from vitlab.train.precision import autocast, evaluation_amp, normalize_amp
from vitlab.train.pretrained import (
    adapt_init,
    init_path,
    init_record,
    load_init_checkpoint,
    model_from_record,
    run_folder,
    run_report,
)
from vitlab.train.runs import CONFIG_FILE, RUN_INFO_FILE, WEIGHTS_FILE, require_task
from vitlab.train.schedule import WarmupCosine
from vitlab.train.tasks.base import Task, aligned_table
from vitlab.train.tasks.image_config import ImageConfig, config_from_dict
from vitlab.train.tasks.teacher import DistillSettings, Teacher, load_teacher
from vitlab.viz.techniques import plot_temperature_scaling
from vitlab.viz.training import plot_confusion_matrix, plot_learning_curves
from vitlab.viz.vit import write_vit_figures

TOP5_MIN_CLASSES = 6  # top-5 accuracy is reported only when it can be below 1


# ------------------------------------------------------------------------------------------ pieces
def build_model(
    cfg: ImageConfig, image_shape: tuple[int, int, int], num_classes: int, info: dict[str, Any] | None = None
) -> nn.Module:
    """``create_model(cfg.model)`` with ``img_size``, ``in_chans`` and ``num_classes`` taken from the data, or the
    pretrained ``cfg.init`` adapted to the data (:func:`build_model_and_init` says which)."""
    return build_model_and_init(cfg, image_shape, num_classes, info)[0]


def build_model_and_init(
    cfg: ImageConfig, image_shape: tuple[int, int, int], num_classes: int, info: dict[str, Any] | None
) -> tuple[nn.Module, tuple[dict[str, Any], list[str]] | None]:
    """The run's model, and for a new fine-tuning run the ``(run.json "init" record, notes)`` of its checkpoint.

    The one place that decides where the weights come from: without ``cfg.init``, the named model; with it, the
    architecture recorded in ``info`` (a run's run.json: resume, eval; the init file is not read again), or else
    the checkpoint read and adapted to the data (:func:`build_init_model`). With ``cfg.linear_probe``
    everything but the head is frozen.
    """
    init = None
    if not cfg.has_init:
        model = _create_named_model(cfg, image_shape, num_classes)
    elif info is not None and "init" in info:
        model = model_from_record(info["init"])
    else:
        model, report, notes = build_init_model(cfg, image_shape, num_classes)
        init = (init_record(str(cfg.init), report), notes)
    return finish_model(cfg, model), init


def build_init_model(cfg: ImageConfig, image_shape: tuple[int, int, int],
                     num_classes: int) -> tuple[nn.Module, LoadReport, list[str]]:
    """The pretrained model ``cfg.init`` names (a checkpoint, or a vitlab run folder read with :func:`load_run`)
    adapted to the data (:func:`vitlab.train.pretrained.adapt_init`): ``(model, report, notes)``."""
    path = init_path(str(cfg.init))
    run = run_folder(path)
    if run is not None:
        source, _, _ = load_run(run, command="train --set init=")
        report = run_report(source, run, path)
        source.train()
    else:
        source, report = load_init_checkpoint(str(cfg.init), cfg.init_args)
    return adapt_init(str(cfg.init), cfg.model_args, source, report, image_shape, num_classes)


def finish_model(cfg: ImageConfig, model: nn.Module) -> nn.Module:
    """Check that ``layer_decay`` / ``linear_probe`` have a ViT to act on; freeze all but the head for a probe."""
    if (cfg.linear_probe or cfg.layer_decay < 1.0) and not isinstance(model, VisionTransformer):
        used = "linear_probe" if cfg.linear_probe else "layer_decay"
        raise ConfigError(f"{used} needs a ViT, but model '{cfg.model}' is a {type(model).__name__}; use a vit_* "
                          f"model or init, or drop {used}")
    if cfg.linear_probe:
        freeze_for_linear_probe(model)
    return model


def _create_named_model(cfg: ImageConfig, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """``create_model(cfg.model, **cfg.model_args)`` with image size, channels and classes from the data."""
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


def build_optimizer(model: nn.Module, cfg: ImageConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019) over :func:`parameter_groups`; PyTorch's fused kernel on CUDA and the CPU.

    With ``cfg.layer_decay < 1`` the groups are :func:`vitlab.models.finetune.layer_decay_groups` (BEiT / MAE),
    each with its own rate ``lr · lr_scale``; the schedule (a ``LambdaLR`` multiplier) scales every group alike.

    The fused kernel makes one pass over each parameter's memory; on the CPU the ``foreach`` path falls back to
    one kernel per operation and parameter, several times slower on ViT-Ti (benchmarks/bench_vit.py).
    """
    fast = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    if cfg.layer_decay < 1.0:
        # Head first: the engine logs the first group's rate, which is then the undecayed lr(t).
        groups = layer_decay_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay)[::-1]
    else:
        groups = parameter_groups(model, cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), **fast)


@dataclass
class Evaluation:
    """Metrics of a model on a dataset (every rank holds the full result). ``acc5`` is NaN below 6 classes."""

    loss: float
    acc1: float
    acc5: float
    ece: float
    logits: Tensor  # (N, K) float32 on the CPU
    labels: Tensor  # (N,) int64 on the CPU

    def confusion(self) -> Tensor:
        return confusion_matrix(self.logits.argmax(1), self.labels, self.logits.shape[1])

    def row(self, prefix: str) -> dict[str, float]:
        """``{prefix}_loss, _acc1, _acc5 (when defined), _ece``."""
        row = {f"{prefix}_loss": self.loss, f"{prefix}_acc1": self.acc1, f"{prefix}_acc5": self.acc5,
               f"{prefix}_ece": self.ece}
        return {k: v for k, v in row.items() if not math.isnan(v)}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageDataset,
    transform: Any,
    ctx: DistContext,
    batch_size: int = 256,
    amp: str | bool = "off",
) -> Evaluation:
    """Exact evaluation: each rank scores its contiguous shard, the logits are gathered in order.

    ``amp``: the resolved precision (``off``, ``bf16``, ``fp16``), for a run folder :func:`run_amp`.
    """
    mode = resolved_amp(amp)
    was_training = model.training
    model.eval()
    start, end = ctx.shard_range(len(data))
    chunks = []
    for i in range(start, end, batch_size):
        images = data.images[i : min(i + batch_size, end)].to(ctx.device, non_blocking=True)
        images = transform(images, None, train=False)
        with autocast(ctx.device, mode):
            chunks.append(model(images).float())
    num_classes = data.num_classes
    local = torch.cat(chunks) if chunks else torch.zeros(0, num_classes, device=ctx.device)
    logits = ctx.gather_rows(local, len(data)).cpu()
    model.train(was_training)
    labels = data.labels.cpu()
    ks = (1, 5) if num_classes >= TOP5_MIN_CLASSES else (1,)
    counts = topk_correct(logits, labels, ks)
    return Evaluation(
        loss=float(F.cross_entropy(logits, labels)),
        acc1=float(counts[1]) / len(data),
        acc5=float(counts[5]) / len(data) if 5 in counts else float("nan"),
        ece=float(expected_calibration_error(logits.softmax(1), labels)),
        logits=logits,
        labels=labels,
    )


def load_image_data(cfg: ImageConfig) -> dict[str, ImageDataset]:
    """The splits of ``cfg.dataset``; with ``train_per_class`` N, the training split cut to N images per class."""
    splits = load_splits(cfg.dataset, cfg.data_root, val_fraction=cfg.val_fraction, seed=0, download=cfg.download)
    if cfg.train_per_class:
        train = splits["train"]
        keep = take_per_class(train.labels, cfg.train_per_class, cfg.seed, f"{cfg.dataset} training split")
        splits["train"] = train.subset(keep, f"{train.name} ({cfg.train_per_class} per class, seed {cfg.seed})")
    shapes = {name: ds.image_shape for name, ds in splits.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"the splits of '{cfg.dataset}' have different image shapes {shapes}; use one image size")
    return splits


def _make_transform(cfg: ImageConfig, train_set: ImageDataset, info: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    """The batch transform (crop, flip, normalisation by the training set's statistics) and its mean/std."""
    if info is not None:
        mean, std = info["mean"], info["std"]
    elif cfg.normalize:
        mean_t, std_t = channel_stats(train_set.images)
        mean, std = [float(v) for v in mean_t], [max(float(v), 1e-6) for v in std_t]
    else:
        mean, std = None, None
    transform = BatchTransform(crop_padding=cfg.crop_padding, hflip=cfg.hflip, mean=mean, std=std, rotate=cfg.rotate,
                               scale=cfg.scale)
    return transform, mean, std


# ------------------------------------------------------------------------------------------ the task
class ImageTask(Task):
    """Image classification on a registered dataset (:class:`ImageConfig`)."""

    name = "image"
    unit = "images"
    headline = "val_acc1"

    cfg: ImageConfig
    teacher: Teacher | None = None  # with distill: the frozen teacher (set_up_teacher) and its run.json record
    teacher_record: dict[str, Any] | None = None

    def config_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def load_data(self, info: dict[str, Any] | None) -> None:
        self.info = info
        self.init_record, self.init_notes = (info or {}).get("init"), []
        self.splits = load_image_data(self.cfg)
        self.train_set, self.val_set, self.test_set = self.splits["train"], self.splits["val"], self.splits["test"]
        self.transform, self.mean, self.std = _make_transform(self.cfg, self.train_set, info)

    def schedule(self, world_size: int) -> tuple[int, int, int]:
        cfg, n = self.cfg, len(self.train_set)
        steps_per_epoch = n // cfg.batch_size
        if steps_per_epoch < 1:
            granule = world_size * cfg.accum_steps
            fits = n // granule * granule
            hint = f"--set batch_size={fits}" if fits else "add images"
            raise ConfigError(
                f"batch_size {cfg.batch_size} is larger than the training set ({n} images); lower batch_size, "
                f"at most {fits} here: {hint}"
            )
        return cfg.epochs, steps_per_epoch, steps_per_epoch * cfg.epochs

    def build_model(self) -> nn.Module:
        model, init = build_model_and_init(self.cfg, self.train_set.image_shape, self.train_set.num_classes, self.info)
        if init is not None:  # a new fine-tuning run: record the checkpoint it started from
            self.init_record, self.init_notes = init
        self.model_config = dict(model.config) if isinstance(model, VisionTransformer) else {}
        return model

    def build_optimizer(self, model: nn.Module, device: torch.device) -> tuple[torch.optim.Optimizer, Any]:
        cfg = self.cfg
        steps_per_epoch = len(self.train_set) // cfg.batch_size
        warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
        return (build_optimizer(model, cfg, device),
                WarmupCosine(steps_per_epoch * cfg.epochs, warmup_steps, cfg.lr, cfg.min_lr))

    def run_info(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "dataset": self.cfg.dataset,
            "classes": self.train_set.classes,
            "image_shape": list(self.train_set.image_shape),
            "mean": self.mean,
            "std": self.std,
            "splits": {name: len(ds) for name, ds in self.splits.items()},
            **({"train_per_class": self.cfg.train_per_class} if self.cfg.train_per_class else {}),
            **({"init": self.init_record} if self.init_record is not None else {}),
            **({"teacher": self.teacher_record} if self.teacher_record is not None else {}),
        }

    def warnings(self) -> list[str]:
        cfg = self.cfg
        notes = list(self.init_notes)
        if cfg.warmup_epochs >= cfg.epochs:
            return notes + [
                f"warmup_epochs {cfg.warmup_epochs:g} >= epochs {cfg.epochs}: the whole run is warm-up and ends at "
                f"the peak rate lr={cfg.lr:g} without decaying; lower warmup_epochs (e.g. --set warmup_epochs="
                f"{cfg.epochs / 10:g}) for a run that decays"
            ]
        return notes

    def setup_training(self, ctx: DistContext, generator: torch.Generator) -> None:
        cfg = self.cfg
        self.mixer, self.loss_fn = mixing.build_mixing(
            self.train_set.num_classes,
            mixup_alpha=cfg.mixup_alpha,
            cutmix_alpha=cfg.cutmix_alpha,
            cutout_size=cfg.cutout_size,
            mix_prob=cfg.mix_prob,
            switch_prob=cfg.switch_prob,
            mix_mode=cfg.mix_mode,
            label_smoothing=cfg.label_smoothing,
            generator=generator,
        )
        self.generator = generator
        self.sampler = DistributedSampler(
            range(len(self.train_set)), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed,
            drop_last=True,
        )
        self.train_images = self.train_set.images.to(ctx.device)
        self.train_labels = self.train_set.labels.to(ctx.device)
        self.set_up_teacher(ctx)

    def set_up_teacher(self, ctx: DistContext) -> None:
        """With ``distill``: load the frozen teacher, wrap the loss in DeiT's distillation loss, and ask a distilled
        ViT for both heads' logits while training (:mod:`vitlab.train.tasks.teacher`)."""
        if self.cfg.distill is None:
            return
        settings = DistillSettings.from_dict(self.cfg.distill)
        student = {"image_shape": list(self.train_set.image_shape), "mean": self.mean, "std": self.std,
                   "classes": self.train_set.classes}
        self.teacher, self.teacher_record = load_teacher(settings, student, ctx.device, load_run,
                                                         recorded=(self.info or {}).get("teacher"))
        self.loss_fn = DistillationLoss(self.loss_fn, settings.kind, settings.alpha, settings.tau)

    def synthetic_batch(self, batch_size: int, device: torch.device) -> tuple[tuple[Tensor, ...], Tensor]:
        generator = torch.Generator().manual_seed(0)
        images = torch.randn((batch_size, *self.train_set.image_shape), generator=generator)
        labels = torch.arange(batch_size) % self.train_set.num_classes
        return (images.to(device),), labels.to(device)

    # ---------------------------------------------------------------------------------- training
    def epoch_indices(self, epoch: int, ctx: DistContext) -> Tensor:
        self.sampler.set_epoch(epoch)
        return torch.tensor(list(iter(self.sampler)), dtype=torch.long)

    def batch_loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, Tensor]:
        images = self.transform(self.train_images[batch], self.generator, train=True)
        loss, correct = self.mixed_loss(model, images, self.train_labels[batch])
        return loss, torch.stack([loss.detach().double() * batch.numel(), correct])

    def probe_loss(self, model: nn.Module, inputs: tuple[Tensor, ...], targets: Tensor) -> Tensor:
        """The base probe step, plus the teacher's forward pass on the same batch where there is a teacher: the
        precision probe then times what a distilled step costs (a CNN teacher gains more from bf16 than a
        small ViT does)."""
        loss = super().probe_loss(model, inputs, targets)
        if self.teacher is not None:
            loss = loss + 0.0 * self.teacher(*inputs).sum()  # counted in the timed step, no gradient
        return loss

    def mixed_loss(self, model: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Mixup / CutMix (when configured), the forward pass and the loss in float32 on augmented ``images``;
        returns (loss, the float64 count of predictions equal to the unmixed ``labels``)."""
        targets = labels
        if self.mixer is not None:
            images, targets = self.mixer(images, labels)
        if self.teacher is None:
            logits = model(images)
            loss = self.loss_fn(logits.float(), targets)
            return loss, (logits.detach().argmax(1) == labels).sum().double()
        # Set here rather than when the model is built: the precision probe times the model before the first
        # step and expects one tensor out.
        _set_distilled_training(model, True)
        outputs = model(images)  # a distilled ViT: (class logits, distillation logits)
        pair = outputs if isinstance(outputs, tuple) else (outputs, outputs)
        loss = self.loss_fn((pair[0].float(), pair[1].float()), targets, self.teacher(images))  # the same mixed batch
        logits = (pair[0].detach() + pair[1].detach()) / 2
        return loss, (logits.argmax(1) == labels).sum().double()

    def train_row(self, totals: list[float], kept_steps: int) -> dict[str, float]:
        seen = max(kept_steps, 1) * self.cfg.batch_size
        return {"train_loss": totals[0] / seen, "train_acc": totals[1] / seen}

    # ---------------------------------------------------------------------------------- evaluation, report
    def eval_due(self, epoch: int, last: bool) -> bool:
        return epoch % self.cfg.eval_every == 0 or last

    def evaluate(self, model: nn.Module, ctx: DistContext, amp: str) -> dict[str, float]:
        self.val = self.score(model, "val", ctx, amp)
        return self.val.row("val")

    def score(self, model: nn.Module, split: str, ctx: DistContext, amp: str) -> Evaluation:
        """The evaluation of ``model`` on split ``"val"`` or ``"test"`` (the streaming task reads its loaders)."""
        return evaluate(model, self.splits[split], self.transform, ctx, amp=amp)

    def finish(
        self, model: nn.Module, ctx: DistContext, amp: str, history: list[dict[str, Any]], fresh: bool
    ) -> dict[str, Any]:
        # The last epoch has just scored these weights on the validation split, unless this call resumed a
        # run whose epochs were all done.
        self.final_model = getattr(model, "_orig_mod", model)  # for the report's ViT figures (unwrapped if compiled)
        val = self.val if fresh else self.score(model, "val", ctx, amp)
        self.test = self.score(model, "test", ctx, amp)
        self.temperature = fit_temperature(val.logits, val.labels)
        bound = _temperature_bound(self.temperature)
        ece_scaled = float(expected_calibration_error((self.test.logits / self.temperature).softmax(1),
                                                      self.test.labels))
        summary = {**self.test.row("test"), "temperature": self.temperature, "test_ece_temperature_scaled": ece_scaled,
                   "val_acc1": val.acc1}
        if bound is not None:
            summary["temperature_note"] = (
                f"the fitted temperature sits on its search bound T={bound:g} ({len(val.labels)} validation "
                "images): the optimum lies outside [0.05, 20]; treat the scaled ECE with care"
            )
        return summary

    def write_report(self, run_dir: Path, history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        plot_learning_curves(history, run_dir / "curves.png")
        plot_confusion_matrix(self.test.confusion(), self.train_set.classes, run_dir / "confusion.png")
        # Reliability diagram of the test split before (left) and after (right) temperature scaling with the
        # temperature fitted on the validation split.
        plot_temperature_scaling(self.test.logits, self.test.labels, self.temperature, run_dir / "reliability.png")
        self._write_vit_figures(run_dir)

    def _figure_samples(self, count: int) -> tuple[Tensor, list[int]]:
        """The first test image of each of up to ``count`` classes: images (k, C, H, W) as stored, their labels."""
        labels = self.test_set.labels
        picks = [int(torch.nonzero(labels == c)[0]) for c in range(self.test_set.num_classes)
                 if bool((labels == c).any())][:count]
        return self.test_set.images[picks], [int(labels[i]) for i in picks]

    def _write_vit_figures(self, run_dir: Path, count: int = 8) -> None:
        """ViT runs: the paper's Fig. 7 views (patch-filter PCs, position-embedding similarity) and the attention
        rollout of :meth:`_figure_samples` (:func:`vitlab.viz.vit.write_vit_figures`); nothing for CNNs."""
        samples, labels = self._figure_samples(count)
        if not labels:
            return
        model = self.final_model
        device = next(model.parameters()).device
        images = self.transform(samples.to(device), None, train=False)
        with torch.no_grad():
            predicted = model.eval()(images).argmax(1).tolist()
        classes = self.test_set.classes
        titles = [f"true {classes[c]} / pred {classes[p]}" for c, p in zip(labels, predicted)]
        write_vit_figures(model, images, run_dir, titles)

    def format_summary(self, summary: dict[str, Any]) -> str:
        return format_summary(summary)

    def weights_metadata(self) -> dict[str, str]:
        """The model name, and for a ViT its constructor arguments (``vitlab.load_pretrained`` reads them)."""
        meta = {"model": f"init:{self.cfg.init}" if self.cfg.has_init else self.cfg.model}
        config = getattr(self, "model_config", None)
        if config:
            meta[CONFIG_KEY] = json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()})
        return meta


def _set_distilled_training(model: nn.Module, enabled: bool) -> None:
    """Ask every distilled ViT inside ``model`` (DDP- or compile-wrapped) for both heads' logits in training."""
    for module in model.modules():
        if isinstance(module, DistilledVisionTransformer):
            module.distilled_training = enabled


def _temperature_bound(temperature: float, t_min: float = 0.05, t_max: float = 20.0) -> float | None:
    """The bound of :func:`vitlab.metrics.fit_temperature`'s bracket that ``temperature`` sits on, if any."""
    for bound in (t_min, t_max):
        if abs(math.log(temperature) - math.log(bound)) < 1e-3:
            return bound
    return None


def format_summary(summary: dict[str, Any]) -> str:
    """The final summary of an image run as an aligned two-column table."""
    rows = [("test top-1 accuracy", f"{summary['test_acc1']:.4f}")]
    if "test_acc5" in summary:
        rows.append(("test top-5 accuracy", f"{summary['test_acc5']:.4f}"))
    rows += [
        ("test loss (NLL)", f"{summary['test_loss']:.4f}"),
        ("test ECE (15 bins)", f"{summary['test_ece']:.4f}"),
        ("test ECE after temperature scaling",
         f"{summary['test_ece_temperature_scaled']:.4f} (T={summary['temperature']:.3f})"),
        ("validation top-1 accuracy", f"{summary['val_acc1']:.4f}"),
        ("training throughput", f"{summary['train_images_per_s']:.0f} images/s"),
        ("optimizer steps", f"{summary['steps']} ({summary['skipped_steps']} skipped)"),
        ("training time", f"{summary['train_seconds']:.1f} s"),
        ("parameters", f"{summary['num_params']:,}"),
        ("precision", summary.get("amp", "off")),
    ]
    notes = [("note", summary["temperature_note"])] if "temperature_note" in summary else []
    return aligned_table(rows + notes)


# ------------------------------------------------------------------------------------------ using a run
RUN_INFO_KEYS = ("classes", "image_shape", "mean", "std")  # what eval / predict read from run.json


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu", command: str = "eval"
) -> tuple[nn.Module, ImageConfig, dict[str, Any]]:
    """The trained model of an image run folder (in eval mode), its config and run info.

    ``command`` names the CLI command asking, for the message that a seq2seq run needs another one.

    Raises:
        CheckpointError: the folder is not an image run, has no finished model, or its files are damaged (run.json
            must hold :data:`RUN_INFO_KEYS`).
    """
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_FILE).is_file():
        require_task(run_dir, "image", command)
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / RUN_INFO_FILE).is_file():
        raise CheckpointError(f"{run_dir} is not a vitlab run folder (no {CONFIG_FILE}/{RUN_INFO_FILE}); "
                              "pass a folder that `vitlab train` wrote")
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{run_dir} has no {WEIGHTS_FILE}: the run has not finished; "
                              f"resume it with `vitlab train --resume {run_dir}`")
    cfg = config_from_dict(load_yaml(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))
    try:
        info = json.loads((run_dir / RUN_INFO_FILE).read_text(encoding="utf-8"))
    except ValueError:
        raise CheckpointError(f"{run_dir / RUN_INFO_FILE} is damaged (not JSON)") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{run_dir / RUN_INFO_FILE} is damaged (not a JSON object)")
    for key in RUN_INFO_KEYS:
        if key not in info:
            raise CheckpointError(f"{run_dir / RUN_INFO_FILE} has no '{key}' entry (damaged or edited); restore the "
                                  f"run.json that `vitlab train` wrote, or train the run again")
    model = build_model(cfg, tuple(info["image_shape"]), len(info["classes"]), info)
    try:  # a run finished before pooled_norm existed has its after-pooling norm under norm.*
        model.load_state_dict(migrate_vit_state_dict(load_weights(run_dir / WEIGHTS_FILE), model.state_dict()))
    except RuntimeError as error:
        raise CheckpointError(f"{run_dir / WEIGHTS_FILE} does not match the model in {CONFIG_FILE}: "
                              f"{str(error).splitlines()[0]}") from None
    return model.to(device).eval(), cfg, info


def resolved_amp(amp: str | bool) -> str:
    """``amp`` normalised; ``auto`` is refused: evaluation needs the precision a run actually used."""
    mode = normalize_amp(amp)
    if mode == "auto":
        raise ValueError("evaluation needs a resolved precision (off, bf16 or fp16), got auto; pass the run's "
                         "run.json 'amp' (run_amp(info, device))")
    return mode


def run_amp(info: dict[str, Any], device: str | torch.device = "cpu") -> str:
    """The precision to evaluate a run in on ``device``: the one it trained in (run.json's ``amp``), or float32
    where ``device`` cannot run that, with a one-line note on stderr (metrics may then differ slightly)."""
    mode, note = evaluation_amp(info.get("amp", "off"), torch.device(device))
    if note is not None:
        print(f"vitlab: note: {note}", file=sys.stderr)
    return mode


def run_transform(cfg: ImageConfig, info: dict[str, Any]) -> Any:
    """The evaluation transform of a run (its normalisation)."""
    return BatchTransform(crop_padding=0, hflip=False, mean=info["mean"], std=info["std"])
