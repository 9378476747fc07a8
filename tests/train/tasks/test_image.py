"""Tests of the image task (vitlab.train.tasks.image): what it reports for few classes and a temperature on its bound.

References: top-k accuracy by its definition with ``torch.topk``; with K <= 5 classes top-5 is 1 for every
model, so it is not reported. The temperature fit's bracket is [0.05, 20] (vitlab.metrics.fit_temperature);
on perfectly separated, correct validation logits the NLL falls as T -> 0, so the fit sits on 0.05.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.data.base import ImageDataset
from vitlab.metrics import fit_temperature
from vitlab.train.distributed import DistContext
from vitlab.train.tasks import image


def _dataset(num_classes: int, n: int = 40) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 4, 4, generator=g)
    labels = torch.arange(n) % num_classes
    return ImageDataset(images, labels, [str(k) for k in range(num_classes)], "toy")


@pytest.mark.parametrize("num_classes", [3, 5, 6, 10])
def test_top5_is_reported_only_when_it_can_be_below_one(num_classes) -> None:
    data = _dataset(num_classes)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, num_classes))
    result = image.evaluate(model, data, lambda x, g, train: x, DistContext())
    row = result.row("val")
    logits = model(data.images).detach()
    assert result.acc1 == pytest.approx(float((logits.argmax(1) == data.labels).float().mean()))
    if num_classes <= 5:
        assert "val_acc5" not in row
    else:
        top5 = (logits.topk(5, dim=1).indices == data.labels[:, None]).any(1).float().mean()
        assert row["val_acc5"] == pytest.approx(float(top5))


def test_a_temperature_on_its_bound_is_named_in_the_summary() -> None:
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    temperature = fit_temperature(logits, torch.tensor([0, 1, 2]))
    assert image._temperature_bound(temperature) == 0.05
    assert image._temperature_bound(1.3) is None and image._temperature_bound(20.0) == 20.0


def _folder(root, classes: int = 3, per_class: int = 10):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(root / f"c{c}" / f"{i}.png")
    return root


def test_three_class_run_has_no_top5_and_says_when_the_temperature_is_on_its_bound(tmp_path, capsys) -> None:
    from vitlab.cli import main

    data = _folder(tmp_path / "data")
    argv = ["train", "--out", str(tmp_path / "run"), "--set", "dataset=folder", "--set", f"data_root={data}",
            "--set", "batch_size=7", "--set", "epochs=2", "--set", "warmup_epochs=0.5", "--set", "threads=1",
            "--set", "model_args={depth: 1, embed_dim: 16, num_heads: 2}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "test_acc5" not in summary and "top-5" not in out
    bound = image._temperature_bound(summary["temperature"])
    assert ("temperature_note" in summary) == (bound is not None)
    if bound is not None:
        assert "sits on its search bound" in out
