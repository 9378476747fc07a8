"""The teacher of DeiT's distillation (Touvron et al. 2021, Sec. 4): a finished model that scores the student's
training batch, frozen.

``distill: {teacher: PATH, kind: hard|soft|none, alpha: λ, tau: τ}`` in an image recipe (``--set
distill.teacher=runs/resnet``). The teacher is a vitlab image run folder (any model, the ResNet baseline
included) or a ViT checkpoint :func:`vitlab.load_pretrained` reads. It is loaded once, frozen (no gradients,
eval mode), and it sees the same augmented, mixed batch as the student, carried into its own input space: the
student's normalisation undone, the teacher's applied, resized (bilinear, antialiased) and converted in
channels (gray ↔ RGB) where its input differs. It runs in the student's precision (inside the engine's
autocast). It is never part of the student's checkpoints, EMA or exports: it is not a submodule of the model.

Its identity (path, resolved path, SHA-256 of its weights, its own test top-1 when it is a run) goes into run.json
under ``teacher``; ``--resume`` refuses a teacher whose weights changed since.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.distillation import DistillationLoss
from vitlab.errors import CheckpointError, ConfigError
from vitlab.io import sha256_file
from vitlab.models.pretrained import load_pretrained
from vitlab.train.config import dataclass_from_dict
from vitlab.train.runs import RUN_INFO_FILE, SUMMARY_FILE, WEIGHTS_FILE

__all__ = ["DistillSettings", "Teacher", "load_teacher"]


@dataclass
class DistillSettings:
    """The ``distill`` mapping of an image recipe (see the module docstring; λ and τ as in
    :class:`vitlab.distillation.DistillationLoss`)."""

    teacher: str = ""
    kind: str = "hard"
    alpha: float = 0.5
    tau: float = 1.0

    def __post_init__(self) -> None:
        if not str(self.teacher).strip():
            raise ConfigError("distill needs a teacher: --set distill.teacher=RUN_FOLDER (e.g. a ResNet-8 run of "
                              "`vitlab train --config mnist5k_resnet`) or a ViT checkpoint")
        DistillationLoss(nn.Identity(), self.kind, self.alpha, self.tau)  # checks kind, alpha, tau

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillSettings:
        return dataclass_from_dict(cls, data, "distill", "distill key")


class Teacher(nn.Module):
    """A frozen classifier scoring batches given in the student's input space: (B, C, H, W) -> (B, K) logits."""

    def __init__(self, model: nn.Module, student: dict[str, Any], own: dict[str, Any]) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.student_shape, self.own_shape = list(student["image_shape"]), list(own["image_shape"])
        for name, stats in (("student", student), ("own", own)):
            channels = stats["image_shape"][0]
            mean = torch.tensor(stats.get("mean") or [0.0] * channels).view(1, -1, 1, 1)
            std = torch.tensor(stats.get("std") or [1.0] * channels).view(1, -1, 1, 1)
            self.register_buffer(f"{name}_mean", mean, persistent=False)
            self.register_buffer(f"{name}_std", std, persistent=False)

    def train(self, mode: bool = True) -> Teacher:
        """Always in eval mode (dropout off, BatchNorm's running statistics): ``mode`` is ignored."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        pixels = x * self.student_std + self.student_mean  # the student's normalisation undone: [0, 1] pixels
        channels, height, width = self.own_shape
        if pixels.shape[1] != channels:  # gray -> RGB repeats; RGB -> gray averages
            pixels = pixels.repeat(1, channels, 1, 1) if pixels.shape[1] == 1 else pixels.mean(1, keepdim=True)
        if tuple(pixels.shape[2:]) != (height, width):
            pixels = F.interpolate(pixels, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        return self.model((pixels - self.own_mean) / self.own_std).float()


def _from_run(run: Path, load_run: Callable[..., Any]) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """A run folder's model (read by ``load_run``, the image task's), its input statistics and its identity."""
    model, cfg, info = load_run(run, command="train --set distill.teacher=")
    summary = run / SUMMARY_FILE
    accuracy = json.loads(summary.read_text(encoding="utf-8")).get("test_acc1") if summary.is_file() else None
    record = {"format": "vitlab run", "model": cfg.model, "sha256": sha256_file(run / WEIGHTS_FILE),
              "test_acc1": accuracy, "classes": len(info["classes"])}
    return model, info, record


def load_teacher(
    settings: DistillSettings, student: dict[str, Any], device: torch.device, load_run: Callable[..., Any],
    recorded: dict[str, Any] | None = None,
) -> tuple[Teacher, dict[str, Any]]:
    """The teacher ``settings.teacher`` names, ready on ``device``, and its run.json record.

    Args:
        settings: the recipe's ``distill``.
        student: the student run's info (``image_shape``, ``mean``, ``std``, ``classes``).
        device: where the student trains.
        load_run: the image task's reader of a run folder (:func:`vitlab.train.tasks.image.load_run`).
        recorded: the record of a resumed run: the teacher must still be the same file (SHA-256).

    Raises:
        ConfigError: no such file or folder, or another number of classes than the student's data.
        CheckpointError: a damaged teacher, a seq2seq run, or (resume) a teacher whose weights changed.
    """
    path = Path(str(settings.teacher)).expanduser()
    if not path.exists():
        raise ConfigError(f"distill.teacher {path} does not exist; train the teacher first, e.g. `vitlab train "
                          f"--config mnist5k_resnet --out {path}`, or pass another run folder or checkpoint")
    if (path / RUN_INFO_FILE).is_file():
        model, own, record = _from_run(path, load_run)
    else:
        model, report = load_pretrained(path)
        own = {"image_shape": [model.config["in_chans"], *model.config["img_size"]], "mean": student.get("mean"),
               "std": student.get("std")}
        record = {"format": report.format, "model": "pretrained ViT", "sha256": report.sha256, "test_acc1": None,
                  "classes": int(model.num_classes)}
    if record["classes"] != len(student["classes"]):
        raise ConfigError(f"distill.teacher {path} has {record['classes']} classes, but the data has "
                          f"{len(student['classes'])}; use a teacher trained on the same classes")
    record = {"path": str(settings.teacher), "resolved": str(path.resolve()), **record,
              "distill": asdict(settings)}
    if recorded is not None and recorded.get("sha256") != record["sha256"]:
        raise CheckpointError(f"distill.teacher {path} has changed since this run started (SHA-256 "
                              f"{record['sha256'][:12]}..., recorded {str(recorded.get('sha256'))[:12]}...); restore "
                              "the teacher the run used, or start a new run")
    return Teacher(model, student, own).to(device), record
