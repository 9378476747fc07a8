"""What an exported model expects of its input, written down: the run's evaluation preprocessing as JSON.

An exported model (:mod:`vitlab.deploy.export`) takes the tensor the run evaluated on, ``x: (B, C, H, W)``
float32, and returns logits ``(B, K)``. The steps from an image file to ``x`` are those of the run's own
evaluation, in the key names of Hugging Face's ``preprocessor_config.json`` where it has them:

1. decode and convert to ``color_mode`` (``"L"``: C = 1, ``"RGB"``: C = 3; alpha dropped, palettes expanded);
2. ``do_resize``: scale so that the shorter side is ``size.shortest_edge`` (the other side
   ``int(shortest_edge · long / short)``), with ``resample`` (Pillow's filter number; ``resample_name``);
3. ``do_center_crop``: the centred ``crop_size`` box, ``left = round((w' − W) / 2)``, ``top = round((h' − H) / 2)``;
   a run that read its images into memory (no resize, no crop) needs every image at exactly ``required_size``;
4. ``do_rescale``: ``x = pixels · rescale_factor`` (1/255), then ``do_normalize``:
   ``(x − image_mean[c]) / image_std[c]``;
5. channels first: ``(C, H, W)``, batched ``(B, C, H, W)``.

``id2label`` names the logits. Steps 1–3 are the run's own pipeline (:class:`vitlab.data.pipeline.EvalPipeline`,
:func:`vitlab.data.folder.read_image`) and steps 4–5 its :class:`~vitlab.data.transforms.BatchTransform`, so
:func:`preprocess_file` gives bit for bit the tensor ``vitlab eval`` and ``vitlab predict`` feed the model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor

from vitlab.data.folder import open_image, read_image
from vitlab.data.pipeline import AugmentConfig, EvalPipeline, center_crop_box, resample_filter
from vitlab.data.transforms import BatchTransform
from vitlab.errors import CheckpointError, DataError
from vitlab.train.tasks.image_config import ImageConfig

__all__ = ["FORMAT", "Preprocessing", "preprocess_file"]

FORMAT = "vitlab-preprocessor"


@dataclass
class Preprocessing:
    """The evaluation preprocessing of an image run (see the module docstring for each step)."""

    color_mode: str
    required_size: list[int]  # (H, W) of the model's input
    image_mean: list[float]
    image_std: list[float]
    id2label: dict[str, str]
    do_resize: bool = False
    size: dict[str, int] = field(default_factory=dict)  # {"shortest_edge": s}
    resample: int = int(Image.Resampling.BICUBIC)
    resample_name: str = "bicubic"
    do_center_crop: bool = False
    crop_size: dict[str, int] = field(default_factory=dict)  # {"height": H, "width": W}
    crop_fraction: float | None = None
    do_rescale: bool = True
    rescale_factor: float = 1.0 / 255.0
    do_normalize: bool = True
    jpeg_draft: bool = False
    input_name: str = "images"
    output_name: str = "logits"
    format: str = FORMAT
    version: int = 1

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "L" else 3

    @property
    def classes(self) -> list[str]:
        return [self.id2label[str(i)] for i in range(len(self.id2label))]

    @classmethod
    def from_run(cls, cfg: ImageConfig, info: dict[str, Any]) -> Preprocessing:
        """The preprocessing a finished run evaluated with (its config.yaml and run.json)."""
        channels, height, width = (int(v) for v in info["image_shape"])
        classes = [str(c) for c in info["classes"]]
        mean, std = info.get("mean"), info.get("std")
        spec = cls(color_mode="L" if channels == 1 else "RGB", required_size=[height, width],
                   image_mean=[float(m) for m in mean] if mean is not None else [0.0] * channels,
                   image_std=[float(s) for s in std] if std is not None else [1.0] * channels,
                   do_normalize=mean is not None, id2label={str(i): c for i, c in enumerate(classes)})
        held_in_memory = info.get("data_modes", {}).get("test") == "memory"
        if cfg.img_size is not None and not held_in_memory:  # the streaming evaluation pipeline: resize + crop
            augment = AugmentConfig.from_dict(cfg.augment) if cfg.augment else AugmentConfig()
            short = center_crop_box(cfg.img_size, cfg.img_size, cfg.img_size, augment.crop_fraction)[0][0]
            spec.do_resize, spec.size = True, {"shortest_edge": short}
            spec.resample, spec.resample_name = int(resample_filter(augment.interpolation)), augment.interpolation
            spec.do_center_crop, spec.crop_size = True, {"height": cfg.img_size, "width": cfg.img_size}
            spec.crop_fraction, spec.jpeg_draft = augment.crop_fraction, augment.jpeg_draft
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "preprocessing") -> Preprocessing:
        """Read what :meth:`to_dict` wrote.

        Raises:
            CheckpointError: not a vitlab preprocessing record, or a field missing.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{source} is not a vitlab preprocessing file (format: {FORMAT}); pass the .json "
                                  "that `vitlab export` wrote beside the model")
        try:
            return cls(**{k: v for k, v in data.items() if k not in ("verification", "export")})
        except TypeError as error:
            raise CheckpointError(f"{source} is damaged ({error}); export the run again") from None

    @classmethod
    def read(cls, path: str | Path) -> Preprocessing:
        """The preprocessing JSON at ``path``."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist: an exported model needs the .json `vitlab export` wrote "
                                  "beside it")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise CheckpointError(f"{path} is damaged (not JSON); export the run again") from None
        return cls.from_dict(data, str(path))

    def transform(self) -> BatchTransform:
        """Steps 4–5 as the run's :class:`~vitlab.data.transforms.BatchTransform` (uint8 batch -> model input)."""
        if not self.do_normalize:
            return BatchTransform(crop_padding=0, hflip=False)
        return BatchTransform(crop_padding=0, hflip=False, mean=self.image_mean, std=self.image_std)


def preprocess_file(path: str | Path, spec: Preprocessing) -> Tensor:
    """Steps 1–3 for one file: a (C, H, W) uint8 tensor at the model's size.

    Raises:
        DataError: not an image, corrupt, or (no resize) of another size than the model's.
    """
    height, width = spec.required_size
    if spec.do_resize or spec.do_center_crop:
        size = int(spec.crop_size["height"])
        pipeline = EvalPipeline(size, spec.channels, float(spec.crop_fraction or 1.0), spec.resample_name,
                                spec.jpeg_draft)
        image = pipeline(open_image(path, lazy=True), name=str(path))
    else:
        image = read_image(path, spec.channels)
    if tuple(image.shape[1:]) != (height, width):
        raise DataError(f"{path} is {image.shape[2]}x{image.shape[1]} but the model expects {width}x{height}; "
                        "resize it first")
    return image
