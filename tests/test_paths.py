"""The user paths walked end to end: for each data source × each ViT stem, train → eval → predict → resume →
fine-tune → export, on tiny data the test makes (docs/reliability.md, "The path matrix").

Sources: the embedded ``mnist5k`` and ``digits`` (10 per class), a folder of 8×8 PNGs at native size (held in
memory), a folder of mixed-size photos streamed at ``img_size`` 16, and ``vitlab shards`` output of it. Stems:
``linear`` (eq. 1's patch projection) and ``conv`` (Xiao et al. 2021). Every step either works or is refused
in one line; nothing ends in a traceback.

References, step by step:
- eval: ``vitlab eval RUN --json`` against the run's own final evaluation (summary.json), exactly;
- predict: ``vitlab predict`` on an image file of the source's kind (a PNG of a test image; for shards the
  member's bytes taken from the shard) against the run's evaluation logits of that image (same split order;
  for digits, whose 17 grey levels a PNG cannot hold, the evaluation of the PNG's pixels);
- resume: a run crashed right after its first checkpoint and resumed with ``vitlab train --resume`` against
  the uninterrupted run, bit-identical weights;
- fine-tune: ``init`` = the run folder, onto 4-class photos at ``img_size`` 32 (another size, class count and,
  for the grey sources, channel count): the run trains and its model takes 3×32×32 input;
- export: each checkpoint format loaded back (``load_pretrained``) gives the model's logits, or the export or
  the load is refused with a one-line ConvertError.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.train import resume
from tests.train.resume import crash_resume_compare
from tests.train.tasks.test_image_stream import make_photos
from vitlab.cli import _evaluate_streamed, _in_memory_split, main
from vitlab.models.convert.common import ConvertError
from vitlab.models.pretrained import FORMATS, export_pretrained, load_pretrained
from vitlab.train import engine
from vitlab.train.distributed import DistContext
from vitlab.train.tasks import task_for
from vitlab.train.tasks.image import evaluate, load_run, run_transform
from vitlab.train.tasks.image_config import ImageConfig

SOURCES = ("mnist5k", "digits", "folder", "photos", "shards")
STEMS = ("linear", "conv")
MODEL = {"depth": 1, "embed_dim": 16, "num_heads": 2, "global_pool": "avg"}
# What each checkpoint format can hold of these average-pooling ViTs (docs/reliability.md): timm has both
# pooling layouts but no conv stem; Hugging Face and torchvision pool the class token only; vitlab holds all.
EXPORTS = {
    "linear": {"timm": "ok", "huggingface": "refused", "torchvision": "refused", "vitlab": "ok"},
    "conv": {"timm": "refused", "huggingface": "refused", "torchvision": "refused", "vitlab": "ok"},
}


def _eights(root: Path) -> Path:
    """3 class folders of 12 random 8×8 RGB PNGs; class c brightens channel c (learnable, same size: in memory)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 120, (8, 8, 3)).astype(np.uint8)
            pixels[..., c] += 120
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


def _config(source: str, stem: str, tmp: Path) -> ImageConfig:
    common = dict(model="vit_tiny_patch4_32", epochs=2, batch_size=10, warmup_epochs=0.5, threads=1, amp="off",
                  checkpoint_every=1, log_every=1, crop_padding=0, seed=1)
    if source in ("mnist5k", "digits"):
        patch = 4 if source == "mnist5k" else 2
        return ImageConfig(dataset=source, train_per_class=3, model_args=dict(MODEL, stem=stem, patch_size=patch), **common)
    if source == "folder":
        return ImageConfig(dataset="folder", data_root=str(_eights(tmp / "eights")),
                           model_args=dict(MODEL, stem=stem, patch_size=2), **common)
    photos = make_photos(tmp / "photos", per_class=8)
    root = photos
    if source == "shards":
        from vitlab.data.shards import write_shards

        write_shards(photos, tmp / "shards", max_count=5)
        root = tmp / "shards"
    return ImageConfig(dataset="folder", data_root=str(root), img_size=16, workers=0,
                       model_args=dict(MODEL, stem=stem, patch_size=4), **common)


def _steps_per_epoch(cfg: ImageConfig) -> int:
    task = task_for(cfg)
    task.load_data(None)
    return task.schedule(1)[1]


def _evaluation(run: Path):  # noqa: ANN202 - an Evaluation and the file of its first test image
    """The run's evaluation of its test split (logits in split order) and an image file of the source's kind
    holding test image 0, as `vitlab eval` reads them."""
    model, cfg, info = load_run(run)
    ctx = DistContext()
    if cfg.img_size is not None:
        result, _ = _evaluate_streamed(model, cfg, info, "test", ctx, "off")
        from vitlab.data.stream import open_source

        source = open_source(cfg.data_root, "test", cfg.val_fraction, 0)
        described = source.describe(0)
        if ".tar:" not in described:
            return result, Path(described)
        shard, member = described.split(".tar:")
        with tarfile.open(shard + ".tar") as tar:
            data = tar.extractfile(member).read()  # the member's own bytes: the file a user would have
        path = run.parent / f"from-shard{Path(member).suffix}"
        path.write_bytes(data)
        return result, path
    data = _in_memory_split(cfg.dataset, cfg.data_root, cfg, info, "test")
    path = run.parent / "test0.png"
    if data.images.dtype != torch.uint8:  # digits: 17 grey levels v/16 that a PNG cannot hold exactly
        from vitlab.data.base import ImageDataset
        from vitlab.data.folder import read_image

        Image.fromarray((data.images[0, 0] * 255).round().byte().numpy()).save(path)
        one = ImageDataset(read_image(path, 1).unsqueeze(0), data.labels[:1], data.classes, "png")
        return evaluate(model, one, run_transform(cfg, info), ctx, amp="off"), path  # the evaluation of the file
    result = evaluate(model, data, run_transform(cfg, info), ctx, amp="off")
    pixels = data.images[0].permute(1, 2, 0).numpy()  # (H, W, C) uint8
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(path)
    return result, path


def _printed_topk(logits: torch.Tensor, classes: list[str], k: int = 2) -> str:
    values, indices = logits.softmax(0).topk(k)
    return ", ".join(f"{classes[i]} {p:.3f}" for p, i in zip(values.tolist(), indices.tolist()))


def _export_and_load_back(model: torch.nn.Module, tmp: Path) -> dict[str, str]:
    """For each format: "ok" (loaded back with equal logits) or the one-line refusal."""
    x = torch.randn(2, *_input_shape(model))
    outcome = {}
    config = dict(model.config)
    hints = dict(num_heads=config["num_heads"], global_pool=config["global_pool"], fc_norm=config.get("fc_norm"),
                 norm_eps=config.get("norm_eps"), act=config.get("act"))
    for fmt in FORMATS:
        path = tmp / ("hf" if fmt == "huggingface" else f"{fmt}.safetensors")
        try:
            export_pretrained(model, path, fmt)
            loaded, _ = load_pretrained(path, **{k: v for k, v in hints.items() if v is not None})
        except ConvertError as error:
            assert "\n" not in str(error), str(error)
            outcome[fmt] = f"refused: {error}"
            continue
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(x), model(x), rtol=0, atol=1e-6)
        outcome[fmt] = "ok"
    return outcome


def _input_shape(model: torch.nn.Module) -> tuple[int, int, int]:
    height, width = model.patch_embed.img_size
    return model.config["in_chans"], height, width


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("source", SOURCES)
def test_every_user_path_works_or_is_refused_in_one_line(tmp_path, monkeypatch, capsys, source, stem) -> None:
    cfg = _config(source, stem, tmp_path)
    # train (crashed after its first checkpoint) -> resume: bit-identical to the straight run
    steps = _steps_per_epoch(cfg)
    real_train = resume.train

    def train_via_cli_on_resume(config, run_dir, *, resume=False, quiet=False, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if resume:  # the resume a user types: vitlab train --resume RUN
            assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
            return json.loads((Path(run_dir) / "summary.json").read_text())
        return real_train(config, run_dir, quiet=quiet, **kwargs)

    monkeypatch.setattr(resume, "train", train_via_cli_on_resume)
    crash_resume_compare(cfg, tmp_path, monkeypatch, crash_after=1, expect_latest=f"step_{steps:08d}")
    monkeypatch.setattr(resume, "train", real_train)
    run = tmp_path / "resumed"
    summary = json.loads((run / "summary.json").read_text())

    # eval == the run's own final evaluation
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("loss", "acc1", "ece"):
        assert metrics[key] == summary[f"test_{key}"], key

    # predict on a file of the source's kind == the run's evaluation of that image
    result, image = _evaluation(run)
    info = json.loads((run / "run.json").read_text())
    assert main(["predict", str(run), str(image), "--topk", "2"]) == 0
    printed = capsys.readouterr().out.strip().split(": ", 1)[1]
    assert printed == _printed_topk(result.logits[0], info["classes"])

    # fine-tune from the run folder: 4 classes of photos at img_size 32 (3 channels)
    target = make_photos(tmp_path / "target", per_class=6, classes=("ant", "bee", "cat", "dog"), seed=3)
    tuned = ImageConfig(dataset="folder", data_root=str(target), img_size=32, init=str(run), epochs=1, batch_size=6,
                        warmup_epochs=0.5, threads=1, amp="off", workers=0, model="vit_tiny_patch4_32",
                        model_args={"global_pool": "avg"})
    engine.train(tuned, tmp_path / "tuned", quiet=True, plots=False)
    model, _, tuned_info = load_run(tmp_path / "tuned")
    assert tuned_info["image_shape"] == [3, 32, 32] and model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)

    # export to each format and load back
    model, _, _ = load_run(run)
    outcome = _export_and_load_back(model, tmp_path / "export")
    assert {fmt: result.split(":")[0] for fmt, result in outcome.items()} == EXPORTS[stem], outcome
