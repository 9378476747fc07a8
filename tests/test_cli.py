"""End-to-end tests of the `vitlab` command: train, eval and predict on the embedded digits (tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.cli import main

TINY = ["--config", "digits_vit", "--set", "model_args={depth: 1, embed_dim: 32, num_heads: 2}", "--set", "threads=1", "--set", "epochs=1"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(run), "--quiet", *TINY]) == 0
    return run


def test_train_then_eval_reports_the_summary_accuracy(trained_run, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", str(trained_run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    summary = json.loads((trained_run / "summary.json").read_text())
    assert metrics["n"] == 270 and metrics["split"] == "test"
    assert metrics["acc1"] == pytest.approx(summary["test_acc1"], abs=1e-12)
    assert metrics["ece"] == pytest.approx(summary["test_ece"], abs=1e-9)


@pytest.mark.parametrize("amp", ["off", "bf16", "auto"])
def test_eval_reproduces_the_summary_exactly_in_the_precision_the_run_used(tmp_path, capsys, monkeypatch, amp) -> None:
    # Reference: the run's own final evaluation (summary.json). `auto` here has native bf16 and a probe whose
    # result is scaled to pick bf16, so the run used bf16 while vitlab eval's default would be float32.
    from vitlab.train import precision

    if amp == "auto":
        monkeypatch.setattr(precision, "native_bf16", lambda device: True)
        real = precision.time_training_steps
        monkeypatch.setattr(precision, "time_training_steps",
                            lambda *a, **k: {**real(*a, **k), "off": 1e3})  # noqa: ARG005
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--quiet", *TINY, "--set", f"amp={amp}"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["amp"] == ("off" if amp == "off" else "bf16")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)  # eval must not depend on the machine's flags
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("loss", "acc1", "ece"):
        assert metrics[key] == summary[f"test_{key}"], key


def _write_digit_png(path, image: torch.Tensor) -> None:
    Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8), mode="L").save(path)


def test_predict_prints_topk_matching_the_model_on_the_same_pixels(trained_run, tmp_path, capsys) -> None:
    from vitlab.data.digits import load_digits_dataset
    from vitlab.data.folder import read_image
    from vitlab.train.tasks.image import load_run, run_transform

    test = load_digits_dataset()["test"]
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        _write_digit_png(path, test.images[i])
        paths.append(path)
    capsys.readouterr()
    assert main(["predict", str(trained_run), *map(str, paths), "--topk", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    # Reference: the run's model applied directly to the decoded PNG pixels.
    model, cfg, info = load_run(trained_run)
    for line, path in zip(lines, paths):
        image = read_image(path, 1).unsqueeze(0)
        with torch.no_grad():
            probs = model(run_transform(cfg, info)(image, None, train=False)).softmax(1)[0]
        top = probs.topk(2)
        expected = ", ".join(f"{c} {p:.3f}" for p, c in zip(top.values.tolist(), top.indices.tolist()))
        assert line == f"{path}: {expected}"


def test_predict_wrong_image_size_is_one_clear_line(trained_run, tmp_path, capsys) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (16, 16)).save(big)
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(big)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "16x16 but the model expects 8x8" in err


def test_resume_with_overrides_is_refused(trained_run, capsys) -> None:
    assert main(["train", "--resume", str(trained_run), "--set", "lr=1"]) == 2
    assert "drop --config/--set" in capsys.readouterr().err


def test_train_into_existing_run_folder_is_refused_and_leaves_it_alone(trained_run, capsys) -> None:
    before = sorted(p.name for p in trained_run.iterdir())
    assert main(["train", "--out", str(trained_run), "--quiet", *TINY]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in trained_run.iterdir()) == before


MNIST_TINY = ["--set", "model_args={depth: 1, embed_dim: 32, num_heads: 2, global_pool: avg}", "--set", "threads=1",
              "--set", "epochs=1", "--set", "batch_size=128"]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A tiny ViT trained for one epoch by the default recipe (the embedded 28×28 MNIST set)."""
    run = tmp_path_factory.mktemp("cli-mnist") / "run"
    assert main(["train", "--out", str(run), "--quiet", *MNIST_TINY]) == 0
    return run


def _mnist_pngs(tmp_path, count: int) -> list:
    from vitlab.data.mnist5k import load_mnist5k_dataset

    test = load_mnist5k_dataset()["test"]
    paths = []
    for i in range(count):
        path = tmp_path / f"mnist{i}.png"
        Image.fromarray(test.images[i, 0].numpy(), mode="L").save(path)
        paths.append(path)
    return paths


def test_default_recipe_predicts_28x28_grayscale_pngs_and_explains_them(mnist_run, tmp_path, capsys) -> None:
    from vitlab.train.tasks.image import load_run, run_transform

    paths = _mnist_pngs(tmp_path, 3)
    out = tmp_path / "explain.png"
    capsys.readouterr()
    assert main(["predict", str(mnist_run), *map(str, paths), "--topk", "1", "--explain", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"attention rollout: {out}" and len(lines) == 4
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model, cfg, info = load_run(mnist_run)
    assert cfg.dataset == "mnist5k" and tuple(info["image_shape"]) == (1, 28, 28)
    from vitlab.data.folder import read_image

    for line, path in zip(lines, paths):  # reference: the model applied to the decoded pixels directly
        with torch.no_grad():
            probs = model(run_transform(cfg, info)(read_image(path, 1).unsqueeze(0), None, train=False)).softmax(1)[0]
        assert line == f"{path}: {int(probs.argmax())} {float(probs.max()):.3f}"


def test_explain_refuses_a_cnn_run_and_a_non_png_name_in_one_line(mnist_run, tmp_path, capsys) -> None:
    paths = _mnist_pngs(tmp_path, 1)
    capsys.readouterr()
    assert main(["predict", str(mnist_run), str(paths[0]), "--explain", str(tmp_path / "x.jpg")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "*.png" in err and not (tmp_path / "x.jpg").exists()
    cnn = tmp_path / "cnn"
    assert main(["train", "--out", str(cnn), "--quiet", "--config", "mnist5k_resnet", "--set", "epochs=1",
                 "--set", "threads=1", "--set", "model_args={widths: [4, 8, 8]}"]) == 0
    assert (cnn / "confusion.png").is_file() and not (cnn / "attention_rollout.png").exists()  # ViT figures: ViTs only
    capsys.readouterr()
    assert main(["predict", str(cnn), str(paths[0]), "--explain", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds a resnet8" in err and not (tmp_path / "x.png").exists()


def test_version_prints_the_package_version(capsys) -> None:
    import vitlab

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"vitlab {vitlab.__version__}"


def test_models_lists_the_vits_and_the_transformer(capsys) -> None:
    from vitlab.models import list_models

    assert main(["models"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert names == [*list_models(), "transformer"]
    assert main(["models", "trans*"]) == 0
    assert capsys.readouterr().out.split()[0] == "transformer"


def test_train_help_names_the_seq2seq_task_and_how_to_list_keys(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "task: seq2seq" in text and "--list-keys" in text


def test_list_keys_prints_every_key_of_the_chosen_task(capsys) -> None:

    from vitlab.train.tasks.image_config import ImageConfig
    from vitlab.train.tasks.seq2seq import Seq2SeqConfig

    for extra, cls in (([], ImageConfig), (["--set", "task=seq2seq"], Seq2SeqConfig)):
        assert main(["train", "--list-keys", *extra]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert [line.split()[0] for line in lines[1:]] == cls.keys()  # the task's own keys, then the engine's


def test_shards_command_writes_readable_shards_refuses_bad_input_and_trains(tmp_path, capsys) -> None:
    from tests.train.tasks.test_image_stream import make_photos
    from vitlab.data.folder import folder_splits
    from vitlab.data.shards import ShardSource

    photos = make_photos(tmp_path / "photos")
    out = tmp_path / "shards"
    assert main(["shards", str(photos), str(out), "--max-count", "4"]) == 0
    splits, classes = folder_splits(photos, 0.1, 0)  # reference: the folder's own split
    for split, samples in splits.items():
        source = ShardSource(out / split)
        assert len(source) == len(samples) and source.classes == classes
        assert len(list((out / split).glob("*.tar"))) == -(-len(samples) // 4)
        assert sorted(source.labels.tolist()) == sorted(label for _, label in samples)
    assert "train on them with" in capsys.readouterr().out
    before = sorted(p.name for p in out.rglob("*"))
    assert main(["shards", str(photos), str(out)]) == 2  # not empty: refused, left alone
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert sorted(p.name for p in out.rglob("*")) == before
    assert main(["shards", str(tmp_path / "nowhere"), str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--out", str(run), "--set", "dataset=folder", "--set", f"data_root={out}",
                 "--set", "img_size=32", "--set", "model=vit_tiny_patch16_224", "--set", "workers=0",
                 "--set", "model_args={depth: 1, embed_dim: 32, num_heads: 2, patch_size: 8}",
                 "--set", "epochs=1", "--set", "batch_size=4", "--set", "threads=1"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data_modes"]["train"] == "stream" and summary["steps"] == len(splits["train"]) // 4


@pytest.mark.parametrize("source", ["photos", "shards"])
def test_eval_of_a_streamed_run_equals_its_summary(tmp_path, capsys, source) -> None:
    # Reference: the run's own final evaluation (summary.json), made through the streaming loader. A folder of
    # mixed-size photos cannot be held in memory at one size, and shards have no class sub-folders: both used
    # to fail in `vitlab eval` ("images differ in size" / "has no class sub-folders").
    from tests.train.tasks.test_image_stream import make_photos, stream_config
    from vitlab.data.shards import write_shards
    from vitlab.train import engine

    root = make_photos(tmp_path / "photos", per_class=8)
    if source == "shards":
        write_shards(root, tmp_path / "shards", max_count=4)
        root = tmp_path / "shards"
    run = tmp_path / "run"
    summary = engine.train(stream_config(root, epochs=1, amp="off"), run, quiet=True)
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("loss", "acc1", "ece"):
        assert metrics[key] == summary[f"test_{key}"], key
    assert main(["eval", str(run), "--split", "val", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["acc1"] == summary["val_acc1"]


def test_predict_on_a_run_held_in_memory_uses_the_raw_pixels_like_its_evaluation(tmp_path, capsys) -> None:
    # Reference: the run's model on the image's raw pixels with the run's normalisation, which is what its
    # evaluation saw (a folder already at img_size is held in memory: no resize, no centre crop). Before, predict
    # always resized and centre-cropped (crop fraction 0.875) and its top class could differ.
    from vitlab.train import engine
    from vitlab.train.tasks.image import load_run, run_transform

    rng = np.random.default_rng(0)
    for c, name in enumerate(("a", "b")):
        (tmp_path / "eights" / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
            pixels[: 4 * (c + 1), :, c] = 255
            Image.fromarray(pixels).save(tmp_path / "eights" / name / f"{i}.png")
    cfg = {"dataset": "folder", "data_root": str(tmp_path / "eights"), "img_size": 8, "model": "vit_tiny_patch16_224",
           "model_args": {"depth": 1, "embed_dim": 16, "num_heads": 2, "patch_size": 2}, "epochs": 1, "batch_size": 4,
           "warmup_epochs": 0.5, "threads": 1, "workers": 0, "amp": "off"}
    from vitlab.train.tasks.image_config import config_from_dict

    run = tmp_path / "run"
    engine.train(config_from_dict(cfg), run, quiet=True)
    assert json.loads((run / "run.json").read_text())["data_modes"]["test"] == "memory"
    image = tmp_path / "eights" / "a" / "0.png"
    capsys.readouterr()
    assert main(["predict", str(run), str(image), "--topk", "2"]) == 0
    printed = capsys.readouterr().out.strip().split(": ", 1)[1]
    model, run_cfg, info = load_run(run)
    pixels = torch.from_numpy(np.array(Image.open(image).convert("RGB"))).permute(2, 0, 1)
    with torch.no_grad():
        probs = model(run_transform(run_cfg, info)(pixels.unsqueeze(0), None, train=False)).softmax(1)[0]
    values, indices = probs.topk(2)
    assert printed == ", ".join(f"{info['classes'][i]} {p:.3f}" for p, i in zip(values.tolist(), indices.tolist()))
