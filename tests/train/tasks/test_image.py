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


def test_class_token_and_position_embedding_take_no_weight_decay_in_ordinary_training() -> None:
    # References: timm's VisionTransformer.no_weight_decay() (test-only dependency), which names cls_token and
    # pos_embed (vitlab's learned table is pos_embed.weight); and decoupled weight decay by its definition
    # (Loshchilov & Hutter 2019): with all-zero gradients one AdamW step moves a parameter only by its decay,
    # p <- p·(1 − lr·wd), so parameters without decay stay exactly where they are.
    # Fails if parameter_groups drops the ``name in skip`` test (cls_token (1, 1, D) and pos_embed.weight
    # (1, N, D) are not 1-D, so without no_weight_decay() they land in the decayed group).
    from vitlab.models.registry import create_model
    from vitlab.train.tasks.image_config import ImageConfig

    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    reference = timm_vit.VisionTransformer(img_size=8, patch_size=2, embed_dim=16, depth=1, num_heads=2, num_classes=3)
    timm_params = dict(reference.named_parameters())
    assert {"cls_token", "pos_embed"} <= set(reference.no_weight_decay()) & set(timm_params)
    assert timm_params["cls_token"].ndim == 3 and timm_params["pos_embed"].ndim == 3  # not exempt for being 1-D

    model = create_model("vit_tiny_patch4_32", img_size=8, patch_size=2, embed_dim=16, depth=1, num_heads=2,
                         num_classes=3)
    params = dict(model.named_parameters())
    cfg = ImageConfig(lr=0.1, weight_decay=0.5, layer_decay=1.0)
    optimizer = image.build_optimizer(model, cfg, torch.device("cpu"))
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert decay_of[id(params["cls_token"])] == 0.0 and decay_of[id(params["pos_embed.weight"])] == 0.0
    assert decay_of[id(params["patch_embed.proj.weight"])] == 0.5  # a weight matrix does decay
    assert decay_of.keys() == {id(p) for p in params.values()}  # every parameter in exactly one group

    with torch.no_grad():  # non-zero values everywhere, so that a decay would show (a zero init would hide it)
        for p in params.values():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    before = {name: p.detach().clone() for name, p in params.items()}
    for p in params.values():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.equal(params["cls_token"], before["cls_token"])
    assert torch.equal(params["pos_embed.weight"], before["pos_embed.weight"])
    torch.testing.assert_close(params["blocks.0.mlp.fc1.weight"], before["blocks.0.mlp.fc1.weight"] * (1 - 0.1 * 0.5))


# ------------------------------------------------- issue 25: run folders written before pooled_norm existed
def _to_old_names(state: dict) -> dict:
    """The names vitlab used before issue 25: a ViT's after-pooling norm under norm.* (now pooled_norm.*)."""
    return {("norm." + k[len("pooled_norm."):] if k.startswith("pooled_norm.") else k): v for k, v in state.items()}


def _rewrite_weights_file(path, state: dict) -> None:
    """Write ``state`` to the safetensors file ``path`` in place, keeping its metadata (model name, config)."""
    from safetensors import safe_open

    from vitlab.train.checkpoint import DIGEST_KEY, save_weights

    with safe_open(str(path), framework="pt") as handle:
        metadata = {k: v for k, v in (handle.metadata() or {}).items() if k != DIGEST_KEY}
    save_weights(state, path, metadata=metadata)


def _rewrite_checkpoint_to_old_names(run) -> None:
    """Turn the run's latest checkpoint (weights and EMA state) into the pre-issue-25 names, manifest updated."""
    import io

    from vitlab.io import atomic_write_bytes, sha256_file
    from vitlab.train.checkpoint import (
        MANIFEST,
        STATE,
        WEIGHTS,
        latest_checkpoint,
        load_checkpoint,
    )

    folder = latest_checkpoint(run)
    weights, state = load_checkpoint(folder)
    assert "pooled_norm.weight" in weights and "pooled_norm.weight" in state["ema"]
    _rewrite_weights_file(folder / WEIGHTS, _to_old_names(weights))
    state["ema"] = _to_old_names(state["ema"])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(folder / STATE, buffer.getvalue())
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    weights, state = load_checkpoint(folder)  # still verifies, now in the old names
    assert "norm.weight" in weights and "pooled_norm.weight" not in weights and "norm.weight" in state["ema"]


def test_a_run_folder_written_before_pooled_norm_still_loads_evaluates_and_resumes(tmp_path, monkeypatch) -> None:
    # References: (1) for resume, the same recipe trained without interruption: a run crashed after its step-14
    # checkpoint, whose weights and EMA state are then rewritten to the pre-issue-25 names (the mean-pooling
    # ViT's after-pooling norm under norm.*), resumes and ends bit-identical to it (so the optimizer state, keyed
    # by parameter order, still lines up, with layer-decay groups); (2) for load_run / eval, the finished run's
    # own model and the test accuracy its summary reports, before its model.safetensors was rewritten likewise.
    from tests.train.resume import crash_resume_compare
    from vitlab.data.digits import load_digits_dataset
    from vitlab.train.checkpoint import load_weights
    from vitlab.train.runs import WEIGHTS_FILE
    from vitlab.train.tasks.image_config import ImageConfig

    cfg = ImageConfig(epochs=1, batch_size=64, amp="off", threads=1, log_every=5, warmup_epochs=0.5,
                      checkpoint_steps=7, ema_decay=0.9, layer_decay=0.75,
                      model_args={"depth": 1, "embed_dim": 32, "num_heads": 2, "global_pool": "avg"})
    straight, resumed = crash_resume_compare(
        cfg, tmp_path, monkeypatch, crash_after=2, expect_latest="step_00000014",
        before_resume=lambda: _rewrite_checkpoint_to_old_names(tmp_path / "resumed"))
    assert "pooled_norm.weight" in resumed and "norm.weight" not in resumed  # the resumed run writes today's names

    run = tmp_path / "straight"
    model, run_cfg, info = image.load_run(run)
    test_set = load_digits_dataset()["test"]
    x = image.run_transform(run_cfg, info)(test_set.images[:16], None, False)
    with torch.no_grad():
        expected = model(x)
    _rewrite_weights_file(run / WEIGHTS_FILE, _to_old_names(straight))
    fresh = image.build_model(run_cfg, tuple(info["image_shape"]), len(info["classes"]), info)
    with pytest.raises(RuntimeError, match="pooled_norm.weight"):  # the old file really is in the old names
        fresh.load_state_dict(load_weights(run / WEIGHTS_FILE))
    model, run_cfg, info = image.load_run(run)
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    result = image.evaluate(model, test_set, image.run_transform(run_cfg, info), DistContext())
    summary = json.loads((run / "summary.json").read_text())
    assert result.acc1 == pytest.approx(summary["test_acc1"], abs=1e-12)
