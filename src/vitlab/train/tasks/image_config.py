"""The image-classification task's config: its keys beside the engine's (:class:`~vitlab.train.config.EngineConfig`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vitlab.data.pipeline import AugmentConfig
from vitlab.errors import ConfigError, unknown_name_message
from vitlab.train.config import EngineConfig, dataclass_from_dict
from vitlab.train.pretrained import check_init_args
from vitlab.train.tasks.teacher import DistillSettings

__all__ = ["BAD_IMAGES", "DATA_MODES", "ImageConfig", "config_from_dict", "config_keys"]

DATA_MODES = ("auto", "memory", "stream")
BAD_IMAGES = ("error", "skip")


@dataclass
class ImageConfig(EngineConfig):
    """The image-classification task's recipe (the defaults train the embedded digits).

    Data:
        dataset: registered dataset name (``vitlab.data.registry.list_datasets()``).
        data_root: folder of the dataset files (not needed for the embedded digits).
        download: fetch missing dataset files (users who are online).
        val_fraction: share of the training files held out for validation where a dataset has no
            validation split of its own.
        crop_padding: random-crop padding in pixels (0 = off).
        rotate, scale: random rotation up to ±``rotate`` degrees and size change up to ±``scale`` (a fraction)
            per training image (:func:`vitlab.data.transforms.random_rotate_scale`; 0 = off).
        hflip: random horizontal flips (off for digits: a flipped digit is another symbol).
        normalize: subtract the training set's per-channel mean and divide by its std.
    Streaming image data (``dataset: folder`` only; :mod:`vitlab.data.stream`, docs/data.md):
        img_size: the model's input side S; set it to train on a folder of photos of any size and mode
            (RandomResizedCrop + flip + the ``augment`` policy for training, resize + centre crop for
            evaluation), or on tar shards (a ``data_root`` written by ``vitlab shards``, which needs it).
            None (default): the folder is read into memory as before and must hold one image size.
        augment: the training pipeline's settings (:class:`vitlab.data.pipeline.AugmentConfig` keys,
            e.g. ``{policy: randaugment, erase_prob: 0.25}``); null: RandomResizedCrop + flip only.
        data_mode: ``auto`` (memory when the split fits ``memory_limit_mb``, is a folder, has no
            ``augment`` and every image already has the size; else stream), ``memory`` or ``stream``.
        workers: DataLoader decoding processes (null: min(4, CPU count); 0: decode in the training process).
        bad_images: ``error`` (a file that does not decode stops the run naming it) or ``skip`` (dropped
            and counted in summary.json's ``skipped_images``).
        memory_limit_mb: the decoded split size up to which ``data_mode: auto`` keeps a split in memory.
    Model:
        model: registered model name; ``img_size``, ``in_chans`` and ``num_classes`` come from the data.
        model_args: constructor overrides, e.g. ``{act: mish, pos_embed: sincos, drop_path_rate: 0.1}``.
    Fine-tuning (:mod:`vitlab.train.pretrained`, docs/finetune.md):
        init: a pretrained ViT to start from (a timm / Hugging Face / torchvision / vitlab weights file or
            model folder, or a vitlab run folder); the architecture then comes from the checkpoint, not from
            ``model``, and is adapted to the data (new zero-initialised head, position embeddings resampled
            to the new grid, channels). Of ``model_args`` only ``patch_size`` (PI-resize of the patch kernel)
            and the regularisers ``drop_rate``, ``attn_drop_rate``, ``drop_path_rate`` apply.
        init_args: what the checkpoint does not record, passed to :func:`vitlab.load_pretrained`:
            ``num_heads``, ``global_pool``, ``fc_norm``, ``norm_eps``, ``act``, ``source_img_size``.
        layer_decay: layer-wise lr decay in (0, 1] (BEiT / MAE; 1 = off): layer i of L gets
            ``lr · layer_decay^(L + 1 − i)``, the warm-up/cosine schedule scaling every group alike.
        linear_probe: train the head only (everything else frozen).
        train_per_class: keep a seeded stratified subset of N training images per class (0 = all; the
            subset's seed is ``seed``; validation and test splits unchanged).
    Optimisation:
        epochs, lr (peak), min_lr (end of the cosine), weight_decay (AdamW, not applied to
        ``no_weight_decay()`` parameters, biases and norms), warmup_epochs (linear warm-up from 0),
        label_smoothing, and the mixing keys of :func:`vitlab.mixing.build_mixing` (mixup_alpha,
        cutmix_alpha, cutout_size, mix_prob, switch_prob, mix_mode: batch, pair or elem).
    Run:
        eval_every (epochs between evaluations).
        distill: DeiT's distillation from a teacher (:mod:`vitlab.train.tasks.teacher`):
            ``{teacher: RUN_OR_CHECKPOINT, kind: hard|soft|none, alpha: 0.5, tau: 1.0}``; with a distilled ViT
            (``deit_*``) the distillation head learns from the teacher, with another model its one head does.
        The engine's keys (batch_size, accum_steps, grad_clip,
        ema_decay, amp, compile, nonfinite, seed, device, threads, checkpoint_every, checkpoint_steps,
        log_every) are :class:`vitlab.train.config.EngineConfig`'s.
    """

    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    val_fraction: float = 0.1
    crop_padding: int = 1
    rotate: float = 0.0
    scale: float = 0.0
    hflip: bool = False
    normalize: bool = True

    # streaming image data (vitlab.data.stream); inactive while img_size is None
    img_size: int | None = None
    augment: dict[str, Any] | None = None
    data_mode: str = "auto"
    workers: int | None = None
    bad_images: str = "error"
    memory_limit_mb: float = 1024.0

    model: str = "vit_digits_patch2_8"
    model_args: dict[str, Any] = field(default_factory=lambda: {"global_pool": "avg", "drop_path_rate": 0.1})

    init: str | None = None
    init_args: dict[str, Any] = field(default_factory=dict)
    layer_decay: float = 1.0
    linear_probe: bool = False
    train_per_class: int = 0

    epochs: int = 150
    lr: float = 2e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 3.0
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    cutout_size: int = 0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    mix_mode: str = "batch"
    eval_every: int = 1
    distill: dict[str, Any] | None = None

    @property
    def has_init(self) -> bool:
        """Whether the run starts from pretrained weights (``init``) rather than ``model``'s initialisation."""
        return self.init is not None

    def validate(self) -> None:
        """Check every value's range (the engine's keys first); raise :class:`ConfigError` naming the key and the
        fix."""
        super().validate()
        for key in ("epochs", "eval_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)}; e.g. --set {key}=1")
        for key in ("crop_padding", "cutout_size", "train_per_class"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if (not (math.isfinite(self.rotate) and self.rotate >= 0)
                or not (math.isfinite(self.scale) and 0 <= self.scale < 1)):
            raise ConfigError(f"rotate must be >= 0 (degrees) and scale in [0, 1), "
                              f"got rotate={self.rotate}, scale={self.scale}")
        for key in ("lr",):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{key} must be a positive finite number, got {value}; e.g. --set {key}=1e-3")
        for key in ("min_lr", "weight_decay", "warmup_epochs", "mixup_alpha", "cutmix_alpha"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{key} must be a finite number >= 0, got {value}")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr {self.min_lr} is larger than lr {self.lr}; lower min_lr")
        for key in ("val_fraction", "label_smoothing"):
            value = getattr(self, key)
            if not (0.0 <= value < 1.0):
                raise ConfigError(f"{key} must be in [0, 1), got {value}")
        for key in ("mix_prob", "switch_prob"):
            value = getattr(self, key)
            if not (0.0 <= value <= 1.0):
                raise ConfigError(f"{key} must be in [0, 1], got {value}")
        if not (math.isfinite(self.layer_decay) and 0.0 < self.layer_decay <= 1.0):
            raise ConfigError(
                f"layer_decay must be in (0, 1] (1 = off), got {self.layer_decay}; MAE uses 0.65 for ViT-B"
            )
        if self.init is not None and not str(self.init).strip():
            raise ConfigError(
                "init is empty; pass the path of a pretrained checkpoint or run folder, or leave init out"
            )
        check_init_args(self.init_args)
        if self.distill is not None:
            if not isinstance(self.distill, dict):
                raise ConfigError(f"distill must be a mapping (teacher, kind, alpha, tau), got {self.distill!r}")
            DistillSettings.from_dict(self.distill)  # raises ConfigError naming a bad key or value
        self.validate_streaming()

    def validate_streaming(self) -> None:
        """Check the streaming keys (img_size, augment, data_mode, workers, bad_images, memory_limit_mb)."""
        if self.img_size is not None and self.img_size < 1:
            raise ConfigError(f"img_size must be a positive integer (the model's input side), got {self.img_size}; "
                              "e.g. --set img_size=224")
        if self.data_mode not in DATA_MODES:
            raise ConfigError(unknown_name_message("data_mode", self.data_mode, DATA_MODES))
        if self.bad_images not in BAD_IMAGES:
            raise ConfigError(unknown_name_message("bad_images setting", self.bad_images, BAD_IMAGES))
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0 = decode in the training process), got {self.workers}")
        if not (math.isfinite(self.memory_limit_mb) and self.memory_limit_mb > 0):
            raise ConfigError(f"memory_limit_mb must be a positive number, got {self.memory_limit_mb}")
        if self.augment is not None:
            try:
                AugmentConfig.from_dict(self.augment)  # raises ConfigError naming a bad setting
            except ConfigError:
                raise
            except (TypeError, ValueError, OverflowError) as error:  # a value of the wrong kind, e.g. scale: abc
                first = (str(error).splitlines() or [type(error).__name__])[0]
                raise ConfigError(
                    f"augment has a value of the wrong type ({first}); see docs/data.md for the settings"
                ) from None
        streaming = self.augment is not None or self.data_mode == "stream"
        if streaming and self.img_size is None:
            raise ConfigError(
                "augment and data_mode: stream need the model's input size; add --set img_size=N (e.g. 224)"
            )
        if self.img_size is not None and self.dataset != "folder":
            raise ConfigError(f"img_size is for dataset: folder (photos or shards); "
                              f"'{self.dataset}' keeps its own size; remove img_size")


def config_keys() -> list[str]:
    """The valid keys of an image recipe."""
    return ImageConfig.keys()


def config_from_dict(data: dict[str, Any], source: str = "config") -> ImageConfig:
    """Build an :class:`ImageConfig` from a dict, checking every key and type
    (:func:`vitlab.train.config.dataclass_from_dict`).

    Raises:
        ConfigError: an unknown key (naming the nearest valid one), a value of the wrong type, or a
            value out of range.
    """
    return dataclass_from_dict(ImageConfig, data, source)
