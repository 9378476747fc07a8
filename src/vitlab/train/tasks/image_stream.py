"""Image classification on photos of any size and on tar shards: :class:`ImageTask` fed by a streaming loader.

A recipe with ``dataset: folder`` and ``img_size`` set (or a ``data_root`` of tar shards written by
``vitlab shards``) trains through :func:`vitlab.data.stream.build_image_loader` instead of one in-memory
tensor; everything else (model, AdamW groups, warm-up/cosine, Mixup/CutMix + smoothing loss, temperature
scaling, the report) is :class:`~vitlab.train.tasks.image.ImageTask`'s.

* Training: the DeiT pipeline of :mod:`vitlab.data.pipeline` per image (RandomResizedCrop + flip + the
  ``augment`` policy + random erasing), decoded by DataLoader workers; the order of epoch e is
  ``DistributedSampler``'s (permutation seeded by ``seed + e``, every ``world``-th sample per rank), so the
  engine's resume (epoch, batch) restarts the loader at exactly the batch where the run stopped. When
  ``data_mode: auto`` keeps a split in memory (images already ``img_size``, no ``augment``), the engine's
  tensor crop/flip (``crop_padding``, ``hflip``) augments it, as for the embedded sets. The engine's random
  rotation and size change (``rotate``, ``scale``) act on every training batch in both modes, as in
  :class:`~vitlab.train.tasks.image.ImageTask`.
* Evaluation: resize + centre crop (``augment.crop_fraction``); rank r scores the contiguous range
  ``[r·n/world, (r+1)·n/world)`` and the logits and labels are gathered with their real sizes (a skipped
  bad image makes a rank's share smaller).
* Normalisation: per-channel mean and std of up to :data:`STATS_IMAGES` evenly spaced training images
  through the evaluation pipeline (channel_stats, Chan et al.'s merge), kept in run.json.
* Bad images: ``bad_images: error`` stops with one line naming the file (before the run folder is
  written when it shows up in the statistics pass); ``skip`` drops it and counts it in summary.json
  (``skipped_images`` per split, summed over ranks; ``skipped_files``: the first names).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.data.pipeline import AugmentConfig, build_pipeline
from vitlab.data.shards import SPLITS, shard_dir_for
from vitlab.data.stream import StreamDataset, build_image_loader, choose_mode, open_source
from vitlab.data.transforms import BatchTransform, channel_stats
from vitlab.errors import ConfigError, DataError
from vitlab.metrics import expected_calibration_error, topk_correct
from vitlab.train.distributed import DistContext
from vitlab.train.precision import autocast
from vitlab.train.tasks.image import TOP5_MIN_CLASSES, Evaluation, ImageTask, format_summary, resolved_amp
from vitlab.train.tasks.image_config import ImageConfig

STATS_IMAGES = 1000  # training images the normalisation statistics are measured on (at most)
KEEP_NAMES = 20  # bad file names kept in summary.json


def uses_stream(cfg: ImageConfig) -> bool:
    """Whether ``cfg`` trains through the streaming loader: a folder with ``img_size``, or a folder of shards."""
    if cfg.dataset != "folder":
        return False
    if cfg.img_size is not None:
        return True

    return cfg.data_root is not None and shard_dir_for(cfg.data_root, "train") is not None


def image_task(cfg: ImageConfig) -> ImageTask:
    """The task that trains ``cfg``: :class:`StreamImageTask` when :func:`uses_stream`, else :class:`ImageTask`."""
    return StreamImageTask(cfg) if uses_stream(cfg) else ImageTask(cfg)


class SplitInfo:
    """What :class:`ImageTask` reads of a split that is streamed: name, classes, shape, length (no image tensor)."""

    def __init__(self, name: str, classes: list[str], image_shape: tuple[int, int, int], size: int) -> None:
        self.name, self.classes, self.image_shape, self.size = name, list(classes), image_shape, size
        self.images = torch.empty((0, *image_shape), dtype=torch.uint8)  # (0, C, S, S): nothing held
        self.labels = torch.empty(0, dtype=torch.int64)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.size


def evaluation_from_logits(logits: Tensor, labels: Tensor) -> Evaluation:
    """NLL, top-1 (top-5 from 6 classes), 15-bin ECE of (N, K) float32 ``logits`` and (N,) ``labels`` on the CPU."""
    n, num_classes = logits.shape
    ks = (1, 5) if num_classes >= TOP5_MIN_CLASSES else (1,)
    counts = topk_correct(logits, labels, ks)
    return Evaluation(
        loss=float(F.cross_entropy(logits, labels)),
        acc1=float(counts[1]) / n,
        acc5=float(counts[5]) / n if 5 in counts else float("nan"),
        ece=float(expected_calibration_error(logits.softmax(1), labels)),
        logits=logits,
        labels=labels,
    )


class StreamImageTask(ImageTask):
    """Image classification from a folder of photos (any size and mode) or tar shards, at ``img_size``."""

    num_stats = 3  # summed loss × n, correct, n: batches differ in size when bad images are skipped

    # ---------------------------------------------------------------------------------- set-up
    def load_data(self, info: dict[str, Any] | None) -> None:
        cfg = self.cfg
        if cfg.data_root is None:
            raise ConfigError("the folder dataset needs a root: pass --set data_root=PATH (a folder of CLASS/ "
                              "subfolders of images, or of shards written by `vitlab shards`)")
        if cfg.img_size is None:
            raise ConfigError(f"{cfg.data_root} holds tar shards, which are streamed at the model's input size; "
                              "add --set img_size=N (e.g. 224)")
        if cfg.train_per_class:
            raise ConfigError("train_per_class applies to in-memory sets; for a streamed folder, copy the images to "
                              "keep into a folder of their own (or drop img_size if they share one size)")
        self.info = info  # what ImageTask.build_model reads (fine-tuning: init)
        self.init_record, self.init_notes = (info or {}).get("init"), []
        self.in_chans = int(cfg.model_args.get("in_chans", 3))
        if self.in_chans not in (1, 3):
            raise ConfigError(f"model_args.in_chans must be 1 or 3 for image files, got {self.in_chans}")
        shape = (self.in_chans, cfg.img_size, cfg.img_size)
        self.sources = {split: open_source(cfg.data_root, split, cfg.val_fraction, 0) for split in SPLITS}
        classes = self.sources["train"].classes
        for split, source in self.sources.items():
            if list(source.classes) != list(classes):
                raise DataError(f"{cfg.data_root}: the {split} split has classes {source.classes[:5]}..., the train "
                                f"split {classes[:5]}...; give every split the same class folders")
        self.splits = {split: SplitInfo(f"{cfg.data_root}/{split}", classes, shape, len(source))
                       for split, source in self.sources.items()}
        self.train_set, self.val_set, self.test_set = self.splits["train"], self.splits["val"], self.splits["test"]
        augment = AugmentConfig.from_dict(cfg.augment) if cfg.augment is not None else None
        self.modes = {}
        for split, source in self.sources.items():
            mode = cfg.data_mode
            if mode == "auto":
                mode, _ = choose_mode(source, cfg.img_size, augment if split == "train" else None,
                                      cfg.memory_limit_mb, self.in_chans)
            self.modes[split] = mode
        if info is not None:
            self.mean, self.std = info["mean"], info["std"]
        elif cfg.normalize:
            self.mean, self.std = self._channel_stats()
        else:
            self.mean, self.std = None, None

        in_memory = self.modes["train"] == "memory"  # no per-image pipeline: the tensor crop/flip augments
        # rotate/scale have no per-image counterpart: on every training batch, as in the in-memory task
        self.transform = BatchTransform(crop_padding=cfg.crop_padding if in_memory else 0,
                                        hflip=cfg.hflip if in_memory else False, mean=self.mean, std=self.std,
                                        rotate=cfg.rotate, scale=cfg.scale)
        self.eval_loaders: dict[str, Any] = {}
        self.eval_skipped = {"val": 0, "test": 0}

    def _channel_stats(self) -> tuple[list[float], list[float]]:
        """Mean and std of up to STATS_IMAGES evenly spaced training images through the evaluation pipeline."""
        cfg, source = self.cfg, self.sources["train"]
        augment = AugmentConfig.from_dict(cfg.augment) if cfg.augment is not None else AugmentConfig.minimal()
        pipeline = build_pipeline(False, cfg.img_size, self.in_chans, augment)
        dataset = StreamDataset(source, pipeline, cfg.seed, self.in_chans, cfg.img_size, torch.uint8)
        count = min(len(source), STATS_IMAGES)
        picks = [i * len(source) // count for i in range(count)]

        def batches():  # noqa: ANN202
            for start in range(0, count, 64):
                batch = dataset.__getitems__([(0, i) for i in picks[start : start + 64]])
                if batch.bad and cfg.bad_images == "error":
                    raise DataError(batch.bad[0][1] + " (or set bad_images: skip to drop such files)")
                yield batch.images

        try:
            mean, std = channel_stats(batches())
        finally:
            source.close()  # the shard files read here stay out of the DataLoader workers forked later
        return [float(v) for v in mean], [max(float(v), 1e-6) for v in std]

    def _loader(self, split: str, ctx: DistContext) -> Any:
        cfg = self.cfg
        train = split == "train"
        return build_image_loader(
            cfg.data_root, split, img_size=cfg.img_size, in_chans=self.in_chans,
            # eval uses augment's crop_fraction and interpolation
            batch_size=cfg.batch_size // ctx.world_size, train=train, augment=cfg.augment,
            seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size, workers=cfg.workers,
            pin_memory=ctx.device.type == "cuda", dtype=torch.uint8, bad_images=cfg.bad_images,
            mode=self.modes[split], memory_limit_mb=cfg.memory_limit_mb, val_fraction=cfg.val_fraction,
        )

    def setup_training(self, ctx: DistContext, generator: torch.Generator) -> None:
        super().setup_training(ctx, generator)  # mixing and loss (the split tensors are empty stand-ins)
        self.device = ctx.device
        self.train_loader = self._loader("train", ctx)

    def run_info(self) -> dict[str, Any]:
        return {**super().run_info(), "data_root": str(self.cfg.data_root), "img_size": self.cfg.img_size,
                "data_modes": dict(self.modes)}

    def rank_state(self) -> dict[str, Any]:
        return {"skipped": self.train_loader.skipped, "skipped_files": list(self.train_loader.skipped_files)}

    def load_rank_state(self, state: dict[str, Any]) -> None:
        if state:
            self.train_loader.skipped = int(state["skipped"])
            self.train_loader.skipped_files = list(state["skipped_files"])

    # ---------------------------------------------------------------------------------- training
    def epoch_batches(self, epoch: int, start_batch: int, ctx: DistContext) -> Any:
        self.train_loader.set_epoch(epoch, start_batch)
        return iter(self.train_loader)

    def micro_batches(self, index: Any, accum_steps: int, ctx: DistContext) -> list[Any]:
        images, labels = index
        return list(zip(images.tensor_split(accum_steps), labels.tensor_split(accum_steps)))

    def batch_loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        images, labels = (t.to(self.device, non_blocking=True) for t in batch)
        n = labels.numel()
        if n == 0:  # every image of this micro-batch was a skipped bad file: a zero loss that still runs the model
            loss = model(torch.zeros((1, *self.train_set.image_shape), device=self.device)).float().sum() * 0.0
            return loss, torch.zeros(self.num_stats, dtype=torch.float64, device=self.device)
        loss, correct = self.mixed_loss(model, self.transform(images, self.generator, train=True), labels)
        count = torch.full((), float(n), dtype=torch.float64, device=self.device)
        return loss, torch.stack([loss.detach().double() * n, correct, count])

    def train_row(self, totals: list[float], kept_steps: int) -> dict[str, float]:
        seen = max(totals[2], 1.0)
        return {"train_loss": totals[0] / seen, "train_acc": totals[1] / seen}

    # ---------------------------------------------------------------------------------- evaluation, report
    @torch.no_grad()
    def eval_inputs(self, split: str, ctx: DistContext) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's share of ``split`` as model inputs: ``(x (B, C, S, S) float32 on the device, labels (B,))``,
        through the evaluation pipeline and the run's normalisation, in loader order."""
        if split not in self.eval_loaders:
            self.eval_loaders[split] = self._loader(split, ctx)
        loader = self.eval_loaders[split]
        loader.set_epoch(0, 0)
        for images, y in loader:
            yield self.transform(images.to(ctx.device, non_blocking=True), None, train=False), y

    @torch.no_grad()
    def score(self, model: nn.Module, split: str, ctx: DistContext, amp: str) -> Evaluation:
        """Exact evaluation from the split's loader: each rank its contiguous range, gathered in rank order."""
        mode = resolved_amp(amp)
        was_training = model.training
        model.eval()
        before = self.eval_loaders[split].skipped if split in self.eval_loaders else 0
        logits, labels = [], []
        for x, y in self.eval_inputs(split, ctx):
            with autocast(ctx.device, mode):
                logits.append(model(x).float().cpu())
            labels.append(y)
        model.train(was_training)
        self.eval_skipped[split] = self.eval_loaders[split].skipped - before
        num_classes = self.train_set.num_classes
        local = (
            torch.cat(logits) if logits else torch.zeros(0, num_classes),
            torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64),
        )
        parts = ctx.all_gather_object(local) if ctx.distributed else [local]
        all_logits = torch.cat([p[0] for p in parts])
        all_labels = torch.cat([p[1] for p in parts])
        if all_labels.numel() == 0:
            raise DataError(
                f"{self.cfg.data_root}: every image of the {split} split was a skipped bad file; fix the files"
            )
        return evaluation_from_logits(all_logits, all_labels)

    def finish(
        self, model: nn.Module, ctx: DistContext, amp: str, history: list[dict[str, Any]], fresh: bool
    ) -> dict[str, Any]:
        summary = super().finish(model, ctx, amp, history, fresh)
        local = [self.train_loader.skipped, self.eval_skipped["val"], self.eval_skipped["test"]]
        names = [
            *self.train_loader.skipped_files,
            *(n for loader in self.eval_loaders.values() for n in loader.skipped_files),
        ]
        gathered = ctx.all_gather_object((local, names)) if ctx.distributed else [(local, names)]
        totals = [sum(g[0][i] for g in gathered) for i in range(3)]
        summary["data_modes"] = dict(self.modes)
        summary["skipped_images"] = dict(zip(("train", "val", "test"), totals))
        summary["skipped_files"] = sorted({n for g in gathered for n in g[1]})[:KEEP_NAMES]
        return summary

    def _figure_samples(self, count: int) -> tuple[Tensor, list[int]]:
        """As :class:`ImageTask`'s, with the first test image of each class read from the test loader."""
        loader = self.eval_loaders["test"]
        picked: dict[int, Tensor] = {}
        loader.set_epoch(0, 0)
        for images, labels in loader:
            for image, label in zip(images, labels.tolist()):
                if label not in picked and len(picked) < count:
                    picked[label] = image
            if len(picked) >= min(count, self.test_set.num_classes):
                break
        labels = sorted(picked)
        return (torch.stack([picked[c] for c in labels]) if labels else torch.empty(0)), labels

    def format_summary(self, summary: dict[str, Any]) -> str:
        text = format_summary(summary)
        skipped = summary.get("skipped_images", {})
        if any(skipped.values()):
            text += "\nskipped bad images: " + ", ".join(f"{k} {v}" for k, v in skipped.items())
        return text
