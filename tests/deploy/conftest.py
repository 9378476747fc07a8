"""Tiny finished runs of every kind an export must handle, shared by the deploy tests (module scope per file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.train.tasks.test_image_stream import make_photos
from vitlab.train import engine
from vitlab.train.tasks.image_config import ImageConfig

TINY_VIT = {"depth": 1, "embed_dim": 32, "num_heads": 2}
RUNS = {
    # the default recipe's kind: 28x28 grayscale in memory, convolutional stem, average pooling
    "mnist-conv-avg": dict(dataset="mnist5k", model="vit_mnist_conv4_28", model_args={**TINY_VIT, "global_pool": "avg"},
                           batch_size=128, train_per_class=30),
    # the linear patch stem with the class token pooled, 8x8 digits
    "digits-linear-token": dict(dataset="digits", model="vit_digits_patch2_8",
                                model_args={**TINY_VIT, "global_pool": "token", "class_token": True}),
    # DeiT's distilled ViT (class and distillation tokens, two heads averaged in eval), trained without a teacher
    "mnist-deit": dict(dataset="mnist5k", model="deit_mnist_conv4_28", model_args=TINY_VIT, batch_size=128,
                       train_per_class=30),
    # the CNN baseline
    "digits-resnet": dict(dataset="digits", model="resnet8", model_args={}),
    # photos of any size streamed at img_size 32 (resize + centre crop), RGB
    "photos-stream": dict(dataset="folder", img_size=32, model="vit_tiny_patch4_32",
                          model_args={**TINY_VIT, "global_pool": "avg"}, batch_size=6, workers=0),
}


def train_run(kind: str, root: Path) -> Path:
    """Train the tiny run ``kind`` of :data:`RUNS` for one epoch into ``root / kind``."""
    settings = dict(RUNS[kind])
    if settings["dataset"] == "folder":
        settings["data_root"] = str(make_photos(root / "photos", per_class=8))
    run = root / kind
    threads = torch.get_num_threads()
    try:
        engine.train(ImageConfig(epochs=1, threads=1, amp="off", warmup_epochs=0.5, **settings), run, quiet=True,
                     plots=False)
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="session")
def deploy_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deploy-runs")
    return {kind: train_run(kind, root) for kind in RUNS}


def write_test_pngs(run: Path, folder: Path, count: int) -> list[Path]:
    """``count`` PNGs of the run's own test images (in memory runs: exact pixels) under ``folder`` and a sub-folder."""
    from vitlab.train.tasks.image import load_image_data, load_run

    _, cfg, _ = load_run(run)
    data = load_image_data(cfg)["test"]
    paths = []
    for i in range(count):
        target = folder / ("sub" if i % 2 else "") / f"img{i:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        image = data.images[i]
        image = image if image.dtype == torch.uint8 else (image * 255).round().to(torch.uint8)
        pixels = image.permute(1, 2, 0).numpy()
        Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(target)
        paths.append(target)
    return paths
