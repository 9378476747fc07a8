"""Tests of training on photos of any size and on tar shards (vitlab.train.tasks.image_stream), end to end.

Small folders the tests make: 3 classes of images of mixed sizes (12..70 px), modes (RGB, L, RGBA, P,
CMYK) and formats (JPEG, PNG); a 1-block ViT at img_size 32.

References:
- The reported test accuracy against an independent evaluation of the saved weights: the test split read
  with ``build_image_loader`` (evaluation pipeline) and normalised with run.json's statistics.
- A resumed run (killed mid-epoch right after a checkpoint) against the uninterrupted run: bit-identical
  weights on the CPU, with 0 and 2 decoding workers.
- Skipped bad images against counting by hand: a corrupt file in a split whose every sample is drawn each
  epoch (batch size divides the split) is skipped once per epoch in training and once per evaluation pass.
- A 2-process gloo run against a 1-process run of the same recipe: the per-sample pipeline is seeded by
  (seed, epoch, index), so the global batch of each step holds the same augmented images in both; weights
  agree to float32 summation order (same tolerance as tests/train/test_distributed.py), evaluation counts
  exactly.
- The in-memory path of the embedded sets is unchanged (tests/train/test_engine.py; the digits recipe's
  metrics.csv was compared bit for bit before and after this module, see the branch report).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.train.resume import crash_resume_compare
from vitlab.errors import ConfigError, DataError
from vitlab.train import engine
from vitlab.train.checkpoint import load_weights
from vitlab.train.tasks import task_for
from vitlab.train.tasks.image import load_run
from vitlab.train.tasks.image_config import ImageConfig
from vitlab.train.tasks.image_stream import StreamImageTask

MODES = ["RGB", "L", "RGBA", "P", "CMYK"]
TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}


def _photo(rng: np.random.Generator, label: int, mode: str) -> Image.Image:
    """A photo-like image whose dominant colour channel is its class, of a random size."""
    width, height = int(rng.integers(12, 70)), int(rng.integers(12, 70))
    pixels = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    pixels[..., label % 3] += 180
    rgb = Image.fromarray(pixels, "RGB")
    return rgb.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else rgb.convert(mode)


def make_photos(root: Path, per_class: int = 10, classes=("ant", "bee", "cat"), seed: int = 0) -> Path:
    """Class folders of mixed sizes, modes and formats (JPEG for RGB/CMYK/half the L, PNG for the rest)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            mode = MODES[(c + i) % len(MODES)]
            jpeg = mode in ("RGB", "CMYK") or (mode == "L" and i % 2 == 0)
            _photo(rng, c, mode).save(root / name / f"{i:03d}.{'jpg' if jpeg else 'png'}", format="JPEG" if jpeg else "PNG")
    return root


def stream_config(root: Path, **overrides) -> ImageConfig:
    base = dict(dataset="folder", data_root=str(root), img_size=32, model="vit_tiny_patch16_224", model_args=dict(TINY, patch_size=8),
                epochs=2, batch_size=4, warmup_epochs=0.5, threads=1, workers=0, device="cpu", log_every=2)
    base.update(overrides)
    return ImageConfig(**base)


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return path


# ------------------------------------------------------------------------------------------ end to end
def test_photo_folder_trains_end_to_end_and_the_summary_matches_an_independent_evaluation(tmp_path, capsys) -> None:
    photos = make_photos(tmp_path / "photos")
    cfg = stream_config(photos, augment={"policy": "randaugment", "erase_prob": 0.25}, mixup_alpha=0.2)
    assert isinstance(task_for(cfg), StreamImageTask)
    summary = engine.train(cfg, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    for name in ("config.yaml", "run.json", "metrics.csv", "model.safetensors", "summary.json", "curves.png", "confusion.png"):
        assert (run / name).is_file(), name
    assert summary["data_modes"] == {"train": "stream", "val": "stream", "test": "stream"}
    assert summary["skipped_images"] == {"train": 0, "val": 0, "test": 0}
    info = json.loads((run / "run.json").read_text())
    assert info["image_shape"] == [3, 32, 32] and info["classes"] == ["ant", "bee", "cat"]
    assert summary["steps"] == 2 * (info["splits"]["train"] // 4)

    from vitlab.data.stream import build_image_loader
    from vitlab.data.transforms import normalize

    model, _, _ = load_run(run)
    loader = build_image_loader(photos, "test", img_size=32, in_chans=3, batch_size=5, train=False, workers=0, mode="stream")
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            logits = model(normalize(images, info["mean"], info["std"]))
            correct += int((logits.argmax(1) == labels).sum())
            total += labels.numel()
    assert total == info["splits"]["test"]
    assert summary["test_acc1"] == pytest.approx(correct / total, abs=1e-12)

    # `vitlab predict` on photos of other sizes applies the run's evaluation pipeline (resize + centre crop).
    # Reference: the model on build_pipeline(False, ...) of the same file, normalised with the run's statistics.
    from vitlab.cli import main
    from vitlab.data.folder import open_image
    from vitlab.data.pipeline import build_pipeline

    photo = sorted(photos.rglob("*.jpg"))[0]
    with torch.no_grad():
        image = build_pipeline(False, 32, 3)(open_image(photo, lazy=True)).unsqueeze(0)
        probs = model(normalize(image.float() / 255, info["mean"], info["std"])).softmax(1)[0]
    capsys.readouterr()
    assert main(["predict", str(run), str(photo), "--topk", "1"]) == 0
    top = int(probs.argmax())
    assert capsys.readouterr().out.strip() == f"{photo}: {info['classes'][top]} {float(probs[top]):.3f}"


def test_folder_of_images_already_at_img_size_stays_in_memory_with_the_tensor_crop(tmp_path) -> None:
    rng = np.random.default_rng(1)
    for c, name in enumerate(("a", "b")):
        (tmp_path / "same" / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "same" / name / f"{i}.png")
    task = task_for(stream_config(tmp_path / "same", crop_padding=2))
    task.load_data(None)
    assert task.modes == {"train": "memory", "val": "memory", "test": "memory"}
    assert task.transform.crop_padding == 2  # the engine's augmentation, as for the embedded sets
    forced = task_for(stream_config(tmp_path / "same", data_mode="stream"))
    forced.load_data(None)
    assert set(forced.modes.values()) == {"stream"} and forced.transform.crop_padding == 0


@pytest.mark.parametrize("data_mode", ["memory", "stream"])
def test_rotate_and_scale_apply_to_streamed_training_batches_as_in_the_in_memory_task(tmp_path, data_mode) -> None:
    # Reference: the in-memory task's transform for the same recipe keys (image._make_transform), applied to the
    # same batch with the same generator: the streamed task's training batches must come out identical.
    from vitlab.train.tasks.image import _make_transform

    rng = np.random.default_rng(2)
    for name in ("a", "b"):
        (tmp_path / "same" / name).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "same" / name / f"{i}.png")
    cfg = stream_config(tmp_path / "same", rotate=20.0, scale=0.2, crop_padding=0, hflip=False, data_mode=data_mode)
    task = task_for(cfg)
    task.load_data(None)
    assert task.modes["train"] == data_mode
    reference, _, _ = _make_transform(cfg, None, {"mean": task.mean, "std": task.std})
    images = torch.from_numpy(rng.integers(0, 255, (4, 3, 32, 32), dtype=np.uint8))
    out = task.transform(images, torch.Generator().manual_seed(5), train=True)
    assert torch.equal(out, reference(images, torch.Generator().manual_seed(5), train=True))
    assert not torch.equal(out, task.transform(images, None, train=False))  # the batch was rotated and scaled


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_run_killed_mid_epoch_resumes_bit_identical(tmp_path, monkeypatch, workers: int) -> None:
    photos = make_photos(tmp_path / "photos")
    cfg = stream_config(photos, workers=workers, checkpoint_steps=3, augment={"policy": "trivialaugment"}, mixup_alpha=0.4)
    # crash after the first checkpoint: step 3 of the 5 of epoch 1, mid-epoch
    crash_resume_compare(cfg, tmp_path, monkeypatch, crash_after=1, expect_latest="step_00000003")
    assert (tmp_path / "straight" / "metrics.csv").read_text().splitlines()[1].split(",")[:5] == \
        (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()[1].split(",")[:5]


def test_shards_written_from_the_folder_train_end_to_end(tmp_path) -> None:
    from vitlab.data.shards import write_shards

    photos = make_photos(tmp_path / "photos")
    write_shards(photos, tmp_path / "shards", max_count=4)
    summary = engine.train(stream_config(tmp_path / "shards", workers=2), tmp_path / "run", quiet=True)
    assert summary["data_modes"] == {"train": "stream", "val": "stream", "test": "stream"}
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["splits"] == {"train": 21, "val": 6, "test": 3}  # folder_splits' stratified 70/15/15 of 30
    assert summary["steps"] == 2 * (21 // 4)


# ------------------------------------------------------------------------------------------ bad data
def _split_folder(root: Path) -> Path:
    """train/ (4 per class: every sample drawn each epoch at batch_size 4), val/, test/ (2 per class)."""
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        make_photos(root / split, per_class=count, seed={"train": 0, "val": 1, "test": 2}[split])
    return root


def test_a_corrupt_image_stops_the_run_naming_it_and_leaves_no_run_folder(tmp_path) -> None:
    photos = _split_folder(tmp_path / "photos")
    bad = _corrupt(photos / "train" / "bee" / "002.jpg")
    with pytest.raises(DataError, match="002.jpg"):
        engine.train(stream_config(photos), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
    # Without the statistics pass the file is met by a DataLoader worker during training.
    with pytest.raises(DataError, match=str(bad.name)):
        engine.train(stream_config(photos, normalize=False, workers=2), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_cli_corrupt_image_is_one_stderr_line_and_exit_2(tmp_path) -> None:
    photos = _split_folder(tmp_path / "photos")
    _corrupt(photos / "val" / "cat" / "001.png")  # met in the first evaluation, before any checkpoint
    command = [sys.executable, "-m", "vitlab", "train", "--quiet", "--out", str(tmp_path / "run"),
               "--set", "dataset=folder", "--set", f"data_root={photos}", "--set", "img_size=32",
               "--set", "model=vit_tiny_patch16_224", "--set", "model_args={depth: 1, embed_dim: 32, num_heads: 2, patch_size: 8}",
               "--set", "epochs=1", "--set", "batch_size=4", "--set", "workers=2", "--set", "normalize=false"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env={**_env(), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("vitlab: warning")]
    assert len(lines) == 1 and "001.png" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def _env() -> dict[str, str]:
    import os

    src = str(Path(__file__).resolve().parents[3] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_bad_images_skip_counts_each_skip_in_the_summary(tmp_path) -> None:
    photos = _split_folder(tmp_path / "photos")
    bad_train = _corrupt(photos / "train" / "ant" / "001.jpg")
    _corrupt(photos / "test" / "bee" / "000.jpg")
    summary = engine.train(stream_config(photos, bad_images="skip", epochs=3), tmp_path / "run", quiet=True)
    # 12 training files at batch_size 4: every file is drawn in each of the 3 epochs; one test pass at the end.
    assert summary["skipped_images"] == {"train": 3, "val": 0, "test": 1}
    assert str(bad_train) in summary["skipped_files"] and len(summary["skipped_files"]) == 2
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_images"]["train"] == 3
    # The epoch's training loss is averaged over the 11 images it used: train_row divides by the real count.
    task = task_for(stream_config(photos))
    assert task.train_row([22.0, 11.0, 11.0], 3) == {"train_loss": 2.0, "train_acc": 1.0}


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(("overrides", "match"), [
    ({"data_mode": "disk"}, "data_mode"),
    ({"bad_images": "ignore"}, "bad_images"),
    ({"workers": -1}, "workers"),
    ({"img_size": 0}, "img_size"),
    ({"augment": {"polcy": "randaugment"}}, "policy"),
    ({"img_size": None, "augment": {}}, "img_size"),
])
def test_bad_streaming_keys_are_config_errors(tmp_path, overrides, match) -> None:
    with pytest.raises(ConfigError, match=match):
        stream_config(tmp_path, **overrides)


def test_img_size_with_an_embedded_set_is_refused_and_digits_keep_the_in_memory_task() -> None:
    with pytest.raises(ConfigError, match="img_size is for dataset: folder"):
        ImageConfig(dataset="digits", img_size=32)
    assert type(task_for(ImageConfig())).__name__ == "ImageTask"


def test_shards_without_img_size_is_one_config_error_and_no_folder(tmp_path) -> None:
    from vitlab.data.shards import write_shards

    write_shards(make_photos(tmp_path / "photos", per_class=8), tmp_path / "shards")
    with pytest.raises(ConfigError, match="img_size"):
        engine.train(stream_config(tmp_path / "shards", img_size=None), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ DDP
@pytest.mark.slow
def test_two_gloo_processes_stream_their_own_parts_and_match_one(tmp_path) -> None:
    from tests.train.test_distributed import _torchrun
    from vitlab.data.folder import folder_splits

    photos = make_photos(tmp_path / "photos")
    splits, _ = folder_splits(photos, 0.1, 0)
    bad = _corrupt(splits["test"][0][0])  # a test image: it changes the evaluation counts, not the weights
    recipe = {"dataset": "folder", "data_root": str(photos), "img_size": 32, "model": "vit_tiny_patch16_224",
              "model_args": dict(TINY, patch_size=8), "epochs": 2, "batch_size": 4, "warmup_epochs": 0.5,
              "label_smoothing": 0.0, "threads": 1, "workers": 0, "device": "cpu", "bad_images": "skip", "amp": "off",
              "augment": {"policy": "randaugment", "erase_prob": 0.0}}
    engine.train(ImageConfig(**recipe), tmp_path / "one", quiet=True)
    _torchrun(tmp_path / "two", 2, recipe={**recipe, "model_args": recipe["model_args"], "augment": recipe["augment"]})
    one, two = load_weights(tmp_path / "one" / "model.safetensors"), load_weights(tmp_path / "two" / "model.safetensors")
    for name in one:
        diff = (one[name] - two[name]).abs().max()
        assert diff <= 1e-3, (name, float(diff))
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s2["world_size"] == 2 and s1["steps"] == s2["steps"]
    assert s1["skipped_images"] == s2["skipped_images"] and sum(s2["skipped_images"].values()) == 1
    assert s2["skipped_files"] == [str(bad)]
    info = json.loads((tmp_path / "one" / "run.json").read_text())
    for key, split in (("val_acc1", "val"), ("test_acc1", "test")):
        n = info["splits"][split] - s1["skipped_images"][split]
        assert round(s1[key] * n) == round(s2[key] * n), key


def test_fine_tuning_a_streamed_run_at_a_larger_img_size_from_photos(tmp_path) -> None:
    photos = make_photos(tmp_path / "photos")
    engine.train(stream_config(photos, epochs=1), tmp_path / "pre", quiet=True)
    cfg = stream_config(photos, epochs=1, img_size=48, init=str(tmp_path / "pre"), layer_decay=0.75,
                        augment={"policy": "trivialaugment"})
    summary = engine.train(cfg, tmp_path / "ft", quiet=True)
    info = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert "init" in info and info["image_shape"] == [3, 48, 48] and summary["data_modes"]["train"] == "stream"
    model, _, _ = load_run(tmp_path / "ft")
    assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 3)  # position embeddings resampled to the 6x6 grid
    with pytest.raises(ConfigError, match="train_per_class"):
        engine.train(stream_config(photos, train_per_class=2), tmp_path / "few", quiet=True)
    assert not (tmp_path / "few").exists()
