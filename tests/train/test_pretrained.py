"""Fine-tuning runs (``init``, ``layer_decay``, ``linear_probe``, ``train_per_class``): vitlab.train.pretrained + the image task.

References: the library loader :func:`vitlab.load_pretrained` with the same adaptation arguments is the
reference for the model a run starts from; an uninterrupted run is the reference for a resumed one
(bit-identical weights on the CPU); the BEiT/MAE rule lr · decay^(L+1−i) times the warm-up/cosine multiplier
(:class:`WarmupCosine`, evaluated separately) is the reference for each group's rate; the initial weights are
the reference for what a linear probe may change; counting labels is the reference for the few-label subset.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.resume import crash_resume_compare
from vitlab.errors import CheckpointError, ConfigError, DataError
from vitlab.io import sha256_file as sha256_of
from vitlab.models.pretrained import export_pretrained, load_pretrained
from vitlab.models.vit import VisionTransformer
from vitlab.train import engine
from vitlab.train.checkpoint import load_weights
from vitlab.train.schedule import WarmupCosine
from vitlab.train.tasks.image import ImageTask, load_run
from vitlab.train.tasks.image_config import ImageConfig


def _pretrained(path, fmt="timm", **kw):
    """A small random "pretrained" ViT on 24x24 RGB images, patch 4 (a 6x6 grid), 5 classes, saved as ``fmt``."""
    torch.manual_seed(0)
    args = dict(img_size=24, patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
    args.update(kw)
    model = VisionTransformer(**args)
    return export_pretrained(model, path, fmt), model


def _cfg(init, **overrides) -> ImageConfig:
    base = dict(init=str(init), init_args={"num_heads": 2}, model_args={"patch_size": 2}, epochs=2, batch_size=64,
                warmup_epochs=1.0, threads=1, log_every=5)
    base.update(overrides)
    return ImageConfig(**base)


def _built(cfg: ImageConfig):
    task = ImageTask(cfg)
    task.load_data(None)
    return task, task.build_model()


def test_run_starts_from_the_adapted_checkpoint_and_records_it(tmp_path) -> None:
    path, _ = _pretrained(tmp_path / "w.safetensors")
    task, model = _built(_cfg(path))
    # Reference: the library loader with the adaptation the digits need (8x8 gray, 10 classes, patch 4 -> 2).
    reference, report = load_pretrained(path, num_heads=2, num_classes=10, img_size=8, patch_size=2, in_chans=1)
    assert model.state_dict().keys() == reference.state_dict().keys()
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert torch.count_nonzero(model.head.weight) == 0 and model.patch_embed.grid_size == (4, 4)
    info = task.run_info()["init"]
    assert info["sha256"] == sha256_of(path) and info["format"] == "timm" and info["path"] == str(path)
    assert set(info["report"]["resampled"]) == {"patch_embed.proj.weight", "pos_embed.weight"}
    assert set(info["report"]["new"]) == {"head.weight", "head.bias"}
    json.dumps(task.run_info())  # run.json must be JSON


def test_model_args_that_the_checkpoint_fixes_are_named_in_a_warning(tmp_path) -> None:
    path, _ = _pretrained(tmp_path / "w.safetensors")
    task, _ = _built(_cfg(path, model_args={"patch_size": 2, "embed_dim": 64, "stem": "conv", "drop_path_rate": 0.1}))
    notes = task.warnings()
    assert any("model_args.embed_dim=64 is not used: init" in n and "embed_dim=32" in n for n in notes)
    assert any("model_args.stem='conv' is not used" in n for n in notes)
    assert not any(n.startswith(("model_args.drop_path_rate", "model_args.patch_size")) for n in notes)
    assert len(notes) == 2


@pytest.mark.parametrize("extra", [{}, {"layer_decay": 0.7, "ema_decay": 0.9}])
def test_resumed_finetune_ends_with_bit_identical_weights_without_reading_init_again(tmp_path, monkeypatch, extra) -> None:
    path, _ = _pretrained(tmp_path / "w.pth")
    cfg = _cfg(path, checkpoint_steps=7, **extra)
    # crash after the second checkpoint (mid-epoch 1, step 14 of 19); delete the init file before resuming:
    # resume rebuilds the architecture from run.json, never from the init file
    crash_resume_compare(cfg, tmp_path, monkeypatch, crash_after=2, expect_latest="step_00000014", before_resume=path.unlink)
    # The finished fine-tuning run loads for eval without the init file, and can itself be an init.
    model, _, info = load_run(tmp_path / "resumed")
    assert info["init"]["sha256"] and isinstance(model, VisionTransformer)
    again, report = load_pretrained(tmp_path / "resumed" / "model.safetensors")  # its vitlab.config metadata
    assert report.format == "vitlab" and again.config["patch_size"] == 2


def test_init_from_a_vitlab_run_folder_needs_no_arguments(tmp_path) -> None:
    scratch = ImageConfig(epochs=1, threads=1, model_args={"depth": 1, "embed_dim": 32, "num_heads": 2})
    engine.train(scratch, tmp_path / "pre", quiet=True)
    weights = load_weights(tmp_path / "pre" / "model.safetensors")
    for init in (tmp_path / "pre", tmp_path / "pre" / "model.safetensors"):
        task, model = _built(ImageConfig(init=str(init), model_args={}, threads=1))
        state = model.state_dict()
        for name, value in weights.items():  # same data size and patch: the body is copied unchanged
            if not name.startswith("head."):
                assert torch.equal(state[name], value), name
        assert torch.count_nonzero(state["head.weight"]) == 0
        assert task.run_info()["init"]["format"] == "vitlab run"
        assert task.run_info()["init"]["sha256"] == sha256_of(tmp_path / "pre" / "model.safetensors")


def _rgb_folder(root, classes: int = 3, per_class: int = 10, side: int = 16):
    """Class folders of ``side`` x ``side`` RGB PNGs whose dominant channel is the class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (side, side, 3), dtype=np.uint8)
            pixels[..., c % 3] += 150
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    return root


def test_fine_tuning_from_a_conv_stem_run_at_another_image_size_channels_and_class_count(tmp_path) -> None:
    # The default recipe's model (vit_mnist_conv4_28: a conv stem, patch 4), tiny, trained one epoch on the
    # 8x8 grayscale digits (10 classes, a 2x2 grid), then fine-tuned on 16x16 RGB photos of 3 classes (a 4x4
    # grid). Reference: adapt_pretrained on the run's own model with the data's sizes, applied by hand.
    from vitlab.models.finetune import adapt_pretrained
    from vitlab.train.engine import train

    tiny = {"depth": 1, "embed_dim": 16, "num_heads": 2}
    train(ImageConfig(model="vit_mnist_conv4_28", model_args=tiny, epochs=1, warmup_epochs=0.5, threads=1, amp="off"),
          tmp_path / "pre", quiet=True)
    photos = _rgb_folder(tmp_path / "photos")
    cfg = ImageConfig(dataset="folder", data_root=str(photos), init=str(tmp_path / "pre"), model_args={}, epochs=1,
                      batch_size=7, warmup_epochs=0.5, threads=1, amp="off")
    task, model = _built(cfg)
    pretrained, _, _ = load_run(tmp_path / "pre")
    reference, _ = adapt_pretrained(pretrained, num_classes=3, img_size=(16, 16), in_chans=3)
    assert model.state_dict().keys() == reference.state_dict().keys()
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    report = task.run_info()["init"]["report"]
    assert sorted(report["resampled"]) == ["patch_embed.stem.0.weight", "pos_embed.weight"]
    assert "patch_embed.proj.weight" in report["loaded"]  # the stem's 1x1 projection is kept
    summary = train(cfg, tmp_path / "ft", quiet=True)
    assert summary["steps"] >= 1
    tuned, _, info = load_run(tmp_path / "ft")
    assert info["image_shape"] == [3, 16, 16] and len(info["classes"]) == 3
    assert tuned.config["stem"] == "conv" and tuned.patch_embed.grid_size == (4, 4)
    assert tuned(torch.zeros(1, 3, 16, 16)).shape == (1, 3)


def test_layer_decay_scales_every_groups_rate_along_the_schedule(tmp_path) -> None:
    path, _ = _pretrained(tmp_path / "w.safetensors")
    cfg = _cfg(path, layer_decay=0.5, lr=1e-3, min_lr=1e-5, warmup_epochs=1.0)
    task, model = _built(cfg)
    task.schedule(1)
    optimizer, lr_lambda = task.build_optimizer(model, torch.device("cpu"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    depth, steps = 2, 19
    reference = WarmupCosine(2 * steps, steps, 1e-3, 1e-5)
    for t in range(2 * steps):
        for group in optimizer.param_groups:
            names = group["param_names"]
            layer = 0 if names[0].startswith(("cls_token", "pos_embed", "patch_embed")) else (
                int(names[0].split(".")[1]) + 1 if names[0].startswith("blocks.") else depth + 1)
            expected = 1e-3 * 0.5 ** (depth + 1 - layer) * reference(t)
            assert group["lr"] == pytest.approx(expected, rel=1e-12), (t, names[0])
        optimizer.step()
        scheduler.step()
    assert {g["layer_id"] for g in optimizer.param_groups} == {0, 1, 2, 3}
    assert optimizer.param_groups[0]["lr_scale"] == 1.0  # the group the engine's "lr" column shows


def test_linear_probe_changes_only_the_head(tmp_path) -> None:
    path, _ = _pretrained(tmp_path / "w.safetensors")
    cfg = _cfg(path, linear_probe=True, epochs=1, model_args={"patch_size": 2})
    _, start = _built(cfg)
    engine.train(cfg, tmp_path / "probe", quiet=True)
    end = load_weights(tmp_path / "probe" / "model.safetensors")
    for name, value in start.state_dict().items():
        if name.startswith("head."):
            assert not torch.equal(end[name], value), name
        else:
            assert torch.equal(end[name], value), name


def test_train_per_class_keeps_n_images_of_every_class_seeded(tmp_path) -> None:
    from vitlab.data.digits import load_digits_dataset

    full = load_digits_dataset()

    def train_set(seed):
        task = ImageTask(ImageConfig(train_per_class=7, seed=seed))
        task.load_data(None)
        return task

    a, b, c = train_set(0), train_set(0), train_set(1)
    assert torch.bincount(a.train_set.labels).tolist() == [7] * 10
    assert torch.equal(a.train_set.images, b.train_set.images)
    assert not torch.equal(a.train_set.images, c.train_set.images)
    # every kept image is one of the full training split's
    rows = {bytes(x.numpy().tobytes()) for x in full["train"].images}
    assert all(bytes(x.numpy().tobytes()) in rows for x in a.train_set.images)
    assert len(a.val_set) == len(full["val"]) and len(a.test_set) == len(full["test"])
    assert a.run_info()["splits"]["train"] == 70 and a.run_info()["train_per_class"] == 7
    with pytest.raises(DataError, match="fewer than the 1000 per class"):
        train_set_big = ImageTask(ImageConfig(train_per_class=1000))
        train_set_big.load_data(None)


def test_bad_finetune_settings_raise_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown init argument 'heads'"):
        ImageConfig(init="x", init_args={"heads": 2})
    with pytest.raises(ConfigError, match=r"layer_decay must be in \(0, 1\]"):
        ImageConfig(layer_decay=1.5)
    with pytest.raises(ConfigError, match="linear_probe needs a ViT"):
        _built(ImageConfig(model="resnet8", model_args={}, linear_probe=True))
    path, _ = _pretrained(tmp_path / "w.safetensors", img_size=15, patch_size=5)
    with pytest.raises(CheckpointError, match=r"8x8 images do not split into 5x5 patches.*model_args.patch_size=4"):
        _built(_cfg(path, model_args={}))


def test_init_args_are_exactly_the_loaders_description_arguments() -> None:
    import inspect

    from vitlab.train.pretrained import INIT_ARGS, TUNABLE_MODEL_ARGS

    params = inspect.signature(load_pretrained).parameters
    assert set(INIT_ARGS) == {n for n in params if n not in ("path", "num_classes", "img_size", "patch_size", "in_chans", "overrides")}
    assert set(TUNABLE_MODEL_ARGS) <= set(inspect.signature(VisionTransformer).parameters)
