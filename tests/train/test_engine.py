"""Tests of the training engine (vitlab.train.engine) through the image task on the embedded digits with a tiny ViT.

References: an uninterrupted run is the reference for a resumed one (bit-identical weights on the CPU);
one optimizer step over the whole batch is the reference for gradient accumulation over micro-batches.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from tests.train.resume import crash_resume_compare
from vitlab.errors import CheckpointError, ConfigError
from vitlab.train import engine
from vitlab.train.checkpoint import latest_checkpoint, load_weights
from vitlab.train.tasks.image import evaluate, load_run, run_transform
from vitlab.train.tasks.image_config import ImageConfig

TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}


def tiny_config(**overrides) -> ImageConfig:
    base = dict(epochs=2, batch_size=64, model_args=dict(TINY), warmup_epochs=1.0, threads=1, log_every=5)
    base.update(overrides)
    return ImageConfig(**base)


def test_run_folder_holds_config_weights_metrics_plots_and_summary(tmp_path) -> None:
    run = tmp_path / "run"
    summary = engine.train(tiny_config(), run, quiet=True)
    for name in ("config.yaml", "run.json", "metrics.csv", "model.safetensors", "summary.json", "curves.png", "confusion.png",
                 "patch_embedding_pcs.png", "position_similarity.png", "attention_rollout.png"):  # the last three: ViT runs
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "val_acc1", "val_ece", "lr", "images_per_s"} <= set(rows[0])
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["steps"] == 2 * (1258 // 64) == summary["steps"]
    assert 0.0 <= summary["test_acc1"] <= 1.0 and summary["train_images_per_s"] > 0
    # The saved model reproduces the reported test accuracy (reference: the summary the loop computed).
    model, cfg, info = load_run(run)
    from vitlab.data.digits import load_digits_dataset
    from vitlab.train.distributed import DistContext

    result = evaluate(model, load_digits_dataset()["test"], run_transform(cfg, info), DistContext())
    assert result.acc1 == pytest.approx(summary["test_acc1"], abs=1e-12)


@pytest.mark.parametrize("extra", [
    {},
    {"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "ema_decay": 0.9, "label_smoothing": 0.1},
    # the CNN baseline: BatchNorm's running statistics and its 0-dim num_batches_tracked go through the checkpoint
    {"model": "resnet8", "model_args": {"widths": [8, 8, 16]}, "ema_decay": 0.9},
], ids=["vit", "vit-mixing-ema", "resnet8-bn-ema"])
def test_resumed_run_ends_with_bit_identical_weights(tmp_path, monkeypatch, extra) -> None:
    cfg = tiny_config(checkpoint_steps=7, **extra)
    # crash after the second checkpoint: mid-epoch 1 (step 14 of 19)
    straight, _ = crash_resume_compare(cfg, tmp_path, monkeypatch, crash_after=2, expect_latest="step_00000014")
    if extra.get("model") == "resnet8":
        assert int(straight["stem.1.num_batches_tracked"]) == 2 * (1258 // 64)  # every step's BN update counted once
    assert (tmp_path / "straight" / "metrics.csv").read_text().count("\n") == (tmp_path / "resumed" / "metrics.csv").read_text().count("\n")


def test_gradient_accumulation_equals_one_big_batch(tmp_path) -> None:
    common = dict(epochs=1, crop_padding=0, label_smoothing=0.0, grad_clip=0.0, checkpoint_every=1, amp="off")  # float32 tolerance
    engine.train(tiny_config(accum_steps=1, **common), tmp_path / "one", quiet=True)
    engine.train(tiny_config(accum_steps=4, **common), tmp_path / "four", quiet=True)
    one = load_weights(tmp_path / "one" / "model.safetensors")
    four = load_weights(tmp_path / "four" / "model.safetensors")
    # Same samples per step, summed in another order: float reassociation only, which Adam's per-parameter
    # normalisation amplifies for parameters whose gradients are near zero (seen: 1.2e-5 after 19 steps).
    for name in one:
        torch.testing.assert_close(four[name], one[name], rtol=1e-3, atol=1e-4)


def test_existing_folder_and_resume_without_checkpoint_are_refused(tmp_path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ConfigError, match="already exists; pass --resume"):
        engine.train(tiny_config(), tmp_path / "taken", quiet=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        engine.train(None, tmp_path / "nowhere", resume=True, quiet=True)
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "empty_run" / "config.yaml").write_text("epochs: 1\n")
    with pytest.raises(CheckpointError, match="has no checkpoint yet"):
        engine.train(None, tmp_path / "empty_run", resume=True, quiet=True)


def _nan_loss_at(call_number: int, monkeypatch) -> None:
    """Make the training loss NaN on its ``call_number``-th evaluation (the loop looks build_mixing up per run)."""
    import vitlab.mixing as mixing

    real = mixing.build_mixing
    calls = {"n": 0}

    def build(*args, **kwargs):
        mixer, loss_fn = real(*args, **kwargs)

        def poisoned(logits, target):
            calls["n"] += 1
            loss = loss_fn(logits, target)
            return loss * float("nan") if calls["n"] == call_number else loss

        return mixer, poisoned

    monkeypatch.setattr(mixing, "build_mixing", build)


def test_nonfinite_loss_stops_naming_the_step_and_leaves_no_half_run(tmp_path, monkeypatch) -> None:
    _nan_loss_at(3, monkeypatch)
    with pytest.raises(engine.NonFiniteLossError, match="at step 3; no checkpoint had been written yet") as info:
        engine.train(tiny_config(), tmp_path / "run", quiet=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_nonfinite_loss_after_a_checkpoint_keeps_it(tmp_path, monkeypatch) -> None:
    _nan_loss_at(25, monkeypatch)  # epoch 2; the epoch-1 checkpoint (step 19) is on disk
    with pytest.raises(engine.NonFiniteLossError, match="at step 25; the last good checkpoint is .*step_00000019"):
        engine.train(tiny_config(), tmp_path / "run", quiet=True)
    assert latest_checkpoint(tmp_path / "run").name == "step_00000019"


def test_nonfinite_skip_drops_the_step_and_finishes(tmp_path, monkeypatch) -> None:
    _nan_loss_at(4, monkeypatch)
    summary = engine.train(tiny_config(nonfinite="skip"), tmp_path / "run", quiet=True)
    assert summary["skipped_steps"] == 1 and summary["steps"] == 38
    assert all(torch.isfinite(t).all() for t in load_weights(tmp_path / "run" / "model.safetensors").values())


def test_a_skipped_step_stays_out_of_the_epoch_mean_train_loss(tmp_path, monkeypatch) -> None:
    """Reference: the mean of the per-step losses of the 18 kept steps of epoch 1, recorded as they were computed."""
    import vitlab.mixing as mixing

    real = mixing.build_mixing
    seen: list[float] = []

    def build(*args, **kwargs):
        mixer, loss_fn = real(*args, **kwargs)

        def recording(logits, target):
            loss = loss_fn(logits, target)
            if len(seen) == 3:
                loss = loss * float("nan")
            seen.append(float(loss.detach()))
            return loss

        return mixer, recording

    monkeypatch.setattr(mixing, "build_mixing", build)
    engine.train(tiny_config(nonfinite="skip", epochs=1, warmup_epochs=0.5), tmp_path / "run", quiet=True)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    epoch1 = seen[:19]  # 19 steps of one batch each; the evaluation does not call the training loss
    kept = [v for v in epoch1 if v == v]
    assert len(kept) == 18
    assert float(rows[0]["train_loss"]) == pytest.approx(sum(kept) / len(kept), rel=1e-5)


def test_bad_model_args_fail_before_any_folder_is_made(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unexpected keyword argument .depthh."):
        engine.train(tiny_config(model_args={"depthh": 2}), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_bf16_autocast_and_ema_run_and_save_float32_weights(tmp_path) -> None:
    summary = engine.train(tiny_config(epochs=2, amp=True, ema_decay=0.9), tmp_path / "run", quiet=True)
    weights = load_weights(tmp_path / "run" / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())
    assert summary["steps"] == 2 * (1258 // 64)
    assert summary["amp"] == "bf16"  # amp: true of older recipes means bf16
    assert json.loads((tmp_path / "run" / "run.json").read_text())["amp"] == "bf16"


def test_metrics_lr_is_the_rate_the_epochs_last_step_used(tmp_path) -> None:
    """Reference: the warm-up/cosine formula of vitlab.train.schedule written out for the last step of each epoch."""
    import math

    cfg = tiny_config(epochs=3, warmup_epochs=1.0)
    engine.train(cfg, tmp_path / "run", quiet=True)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    steps, total, warmup = 19, 57, 19
    for epoch, row in enumerate(rows, start=1):
        t = epoch * steps - 1  # the last step of the epoch, counted from 0
        expected = cfg.lr * (t + 1) / warmup if t < warmup else cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (
            1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
        assert float(row["lr"]) == pytest.approx(expected, rel=1e-5)


def test_warmup_covering_the_whole_run_is_a_one_line_warning(tmp_path, capsys) -> None:
    summary = engine.train(tiny_config(epochs=1, warmup_epochs=3.0), tmp_path / "run", quiet=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warmup_epochs 3 >= epochs 1: the whole run is warm-up" in err[0]
    assert summary["warnings"] and "warm-up" in summary["warnings"][0]


def test_size1_parameter_gradients_get_the_parameters_strides_for_ddp() -> None:
    """Reference: the parameter's own strides (what DDP's bucket view has). With one image, the class token's
    gradient is otherwise a view into the concatenated gradient, with other strides (DDP warns and copies)."""
    from vitlab.models import create_model

    def grad_strides(hooked: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
        model = create_model("vit_digits_patch2_8", depth=1, embed_dim=32, num_heads=2)
        if hooked:
            engine.match_grad_strides(model)
        model(torch.randn(1, 1, 8, 8)).sum().backward()
        return model.cls_token.grad.stride(), model.cls_token.stride()

    plain, param = grad_strides(False)
    assert plain != param  # the case the hook is for (if PyTorch changes, the hook is merely unused)
    hooked, param = grad_strides(True)
    assert hooked == param


def _recorded_training_views(run, monkeypatch) -> list[tuple[torch.Tensor, bytes, torch.Tensor, int]]:
    """Train a tiny in-memory run (2 epochs of 5 steps) and record every training batch's transform call:
    (sample indices, the augmentation generator's state before the call, the augmented batch, the generator's id)."""
    from vitlab.train.tasks.image import ImageTask

    records = []
    real_batch_loss = ImageTask.batch_loss

    def spy(self, model, batch):
        transform = self.transform

        def recording(images, generator, train):
            state = bytes(generator.get_state().tolist())
            out = transform(images, generator, train)
            records.append((batch.cpu().clone(), state, out.detach().cpu().clone(), id(generator)))
            return out

        self.transform = recording
        try:
            return real_batch_loss(self, model, batch)
        finally:
            self.transform = transform

    monkeypatch.setattr(ImageTask, "batch_loss", spy)
    cfg = tiny_config(batch_size=8, train_per_class=4, crop_padding=2, amp="off", warmup_epochs=0.5,
                      model_args={"depth": 1, "embed_dim": 16, "num_heads": 2})
    engine.train(cfg, run, quiet=True)
    monkeypatch.setattr(ImageTask, "batch_loss", real_batch_loss)
    return records


def _views_by_sample(records) -> dict[int, torch.Tensor]:
    return {int(i): out[row] for batch, _, out, _ in records for row, i in enumerate(batch.tolist())}


def test_in_memory_augmentation_of_a_sample_differs_between_epochs_and_repeats_in_a_rerun(tmp_path,
                                                                                       monkeypatch) -> None:
    # Reference: the definition of per-epoch augmentation (He et al. 2016's random crop is redrawn every time a
    # sample is seen) and the engine's determinism contract (one augmentation generator for the whole run,
    # seeded once; a rerun with the same seed repeats every draw). 40 digits, batch 8: 5 steps per epoch.
    # Fails if BatchTransform draws from a copy of the engine's generator instead of advancing it (every
    # batch and epoch then draws the same numbers), or if the engine reseeds that generator at each epoch start
    # (epoch 1 then repeats epoch 0's draws, position for position): either way the states seen by the
    # transform repeat. The view comparison fails if the crop stops depending on the generator at all.
    first = _recorded_training_views(tmp_path / "a", monkeypatch)
    assert len(first) == 10 and len({r[3] for r in first}) == 1  # one generator object for the whole run
    assert len({r[1] for r in first}) == 10  # every batch of every epoch starts from a new generator state
    epoch0, epoch1 = _views_by_sample(first[:5]), _views_by_sample(first[5:])
    assert epoch0.keys() == epoch1.keys() and len(epoch0) == 40
    changed = sum(not torch.equal(epoch0[k], epoch1[k]) for k in epoch0)
    # 25 crop offsets: a sample keeps its offset with probability 1/25, so ~38 of 40 change (P(< 30) < 1e-6)
    assert changed >= 30, changed
    second = _recorded_training_views(tmp_path / "b", monkeypatch)  # the same epochs again, same seed
    assert [r[1] for r in second] == [r[1] for r in first]
    again0, again1 = _views_by_sample(second[:5]), _views_by_sample(second[5:])
    assert all(torch.equal(again0[k], epoch0[k]) and torch.equal(again1[k], epoch1[k]) for k in epoch0)
