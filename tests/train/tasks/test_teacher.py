"""DeiT's teacher in the image task (vitlab.train.tasks.teacher): loaded frozen from a run folder or a checkpoint,
scoring the student's own (mixed) batch in its input space, recorded in run.json and checked on resume; the loss
the task computes is vitlab.distillation's on the student's two heads (reference: the loss recomputed by hand)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.train import resume
from tests.train.resume import crash_resume_compare
from vitlab.cli import main
from vitlab.data.folder import read_image
from vitlab.distillation import DistillationLoss
from vitlab.errors import CheckpointError, ConfigError
from vitlab.io import sha256_file
from vitlab.models.deit import DistilledVisionTransformer
from vitlab.train import engine
from vitlab.train.distributed import DistContext
from vitlab.train.runs import WEIGHTS_FILE
from vitlab.train.tasks.image import ImageTask, load_image_data, load_run, run_transform
from vitlab.train.tasks.image_config import ImageConfig
from vitlab.train.tasks.teacher import DistillSettings, Teacher, load_teacher

TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    """A ResNet-8 trained one epoch on the digits: the CNN teacher."""
    run = tmp_path_factory.mktemp("teacher") / "resnet"
    engine.train(ImageConfig(model="resnet8", model_args={}, epochs=1, threads=1, amp="off"), run, quiet=True,
                 plots=False)
    return run


def _student(teacher: Path, **distill) -> ImageConfig:
    return ImageConfig(model="deit_mnist_conv4_28", model_args=TINY, epochs=1, threads=1, amp="off",
                       distill={"teacher": str(teacher), **distill})


def test_a_distilled_run_records_its_teacher_and_keeps_it_out_of_the_weights(teacher_run, tmp_path) -> None:
    run = tmp_path / "student"
    summary = engine.train(_student(teacher_run), run, quiet=True, plots=False)
    info = json.loads((run / "run.json").read_text())
    record = info["teacher"]
    assert record["sha256"] == sha256_file(teacher_run / "model.safetensors") and record["model"] == "resnet8"
    assert record["test_acc1"] == json.loads((teacher_run / "summary.json").read_text())["test_acc1"]
    assert record["distill"] == {"teacher": str(teacher_run), "kind": "hard", "alpha": 0.5, "tau": 1.0}
    model, _, _ = load_run(run)
    assert isinstance(model, DistilledVisionTransformer)
    from safetensors.torch import load_file

    assert set(load_file(str(run / "model.safetensors"))) == set(model.state_dict())  # no teacher tensors
    assert 0.0 <= summary["test_acc1"] <= 1.0


def test_the_task_loss_is_deits_on_both_heads_with_the_teacher_on_the_same_batch(teacher_run) -> None:
    # Reference: DistillationLoss applied by hand to the student's two heads and the teacher's logits.
    task = ImageTask(_student(teacher_run, kind="soft", alpha=0.3, tau=2.0))
    task.load_data(None)
    model = task.build_model()
    task.setup_training(DistContext(), torch.Generator().manual_seed(0))
    images = task.transform(task.train_images[:16], None, train=False)
    labels = task.train_labels[:16]
    seen: list[torch.Tensor] = []
    real_forward = task.teacher.model.forward
    task.teacher.model.forward = lambda x: (seen.append(x), real_forward(x))[1]
    loss, correct = task.mixed_loss(model, images, labels)
    cls_logits, dist_logits = model(images)
    base = DistillationLoss(task.loss_fn.base, "none")((cls_logits, dist_logits), labels, None)
    teacher_logits = task.teacher(images)
    expected = DistillationLoss(task.loss_fn.base, "soft", 0.3, 2.0)((cls_logits, dist_logits), labels, teacher_logits)
    torch.testing.assert_close(loss, expected)
    assert loss.item() != pytest.approx(base.item())
    assert len(seen) >= 1 and not task.teacher.model.training
    assert all(not p.requires_grad for p in task.teacher.parameters())


def test_the_precision_probe_times_the_teachers_forward_too(teacher_run) -> None:
    # Reference: the default probe loss (cross-entropy of the model's output); the teacher is called on the batch.
    task = ImageTask(_student(teacher_run))
    task.load_data(None)
    model = task.build_model()
    task.setup_training(DistContext(), torch.Generator().manual_seed(0))
    inputs, targets = task.synthetic_batch(8, torch.device("cpu"))
    seen: list[torch.Tensor] = []
    real_forward = task.teacher.model.forward
    task.teacher.model.forward = lambda x: (seen.append(x), real_forward(x))[1]
    loss = task.probe_loss(model, inputs, targets)
    assert len(seen) == 1 and seen[0].shape == inputs[0].shape
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(model(*inputs).float(), targets))
    loss.backward()  # the teacher adds no gradient path and no parameter gradient
    assert all(p.grad is None for p in task.teacher.parameters())


def test_the_teacher_gets_its_own_input_space() -> None:
    inner = torch.nn.Identity()
    student = {"image_shape": [1, 8, 8], "mean": [0.3], "std": [0.2]}
    own = {"image_shape": [3, 16, 16], "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.1]}
    teacher = Teacher(inner, student, own)
    teacher.train()
    assert not teacher.training  # always evaluates
    pixels = torch.rand(2, 1, 8, 8)
    out = teacher((pixels - 0.3) / 0.2)
    resized = torch.nn.functional.interpolate(pixels.repeat(1, 3, 1, 1), size=(16, 16), mode="bilinear",
                                              antialias=True, align_corners=False)
    expected = (resized - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.25, 0.2, 0.1]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_a_distilled_run_walks_every_user_path(teacher_run, tmp_path, monkeypatch, capsys) -> None:
    """train (crashed after its first checkpoint) -> vitlab train --resume, bit-identical to the straight run ->
    vitlab eval == the run's summary -> vitlab predict == the eval model on that PNG -> vitlab export (onnx, verified
    on the test split by onnxruntime) -> fine-tune from the distilled run (both heads replaced)."""
    cfg = ImageConfig(model="deit_mnist_conv4_28", model_args=TINY, epochs=2, threads=1, amp="off", batch_size=10,
                      train_per_class=3, warmup_epochs=0.5, checkpoint_every=1, log_every=1, seed=1,
                      distill={"teacher": str(teacher_run), "kind": "soft", "alpha": 0.5, "tau": 2.0})
    real_train = resume.train

    def train_via_cli_on_resume(config, run_dir, *, resume=False, quiet=False, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if resume:  # the resume a user types; the teacher is loaded again and its SHA-256 checked
            assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
            return json.loads((Path(run_dir) / "summary.json").read_text())
        return real_train(config, run_dir, quiet=quiet, **kwargs)

    monkeypatch.setattr(resume, "train", train_via_cli_on_resume)
    crash_resume_compare(cfg, tmp_path, monkeypatch, crash_after=1, expect_latest="step_00000003")
    run = tmp_path / "resumed"
    summary = json.loads((run / "summary.json").read_text())
    assert json.loads((run / "run.json").read_text())["teacher"]["sha256"] == sha256_file(teacher_run / WEIGHTS_FILE)

    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert (metrics["acc1"], metrics["loss"]) == (summary["test_acc1"], summary["test_loss"])

    model, run_cfg, info = load_run(run)
    pixels = load_image_data(run_cfg)["test"].images[0, 0]  # the digits' grey levels v/16, which a PNG rounds
    Image.fromarray((pixels * 255).round().byte().numpy()).save(tmp_path / "digit.png")
    image = read_image(tmp_path / "digit.png", 1)
    with torch.no_grad():  # reference: the eval-mode model (the mean of both heads) on the run's own transform
        expected = model.eval()(run_transform(run_cfg, info)(image.unsqueeze(0), None, train=False))[0].softmax(0)
    assert main(["predict", str(run), str(tmp_path / "digit.png"), "--topk", "1"]) == 0
    best = int(expected.argmax())
    assert capsys.readouterr().out.strip().endswith(f"{info['classes'][best]} {expected[best]:.3f}")

    if importlib.util.find_spec("onnxruntime") is not None:
        assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "deit.onnx")]) == 0
        record = json.loads((tmp_path / "deit.onnx.json").read_text())
        assert record["verification"]["top1_agreement"] == 1.0

    tuned = ImageConfig(dataset="mnist5k", model="deit_mnist_conv4_28", init=str(run), epochs=1, threads=1, amp="off",
                        batch_size=10, train_per_class=3, warmup_epochs=0.5)
    engine.train(tuned, tmp_path / "tuned", quiet=True, plots=False)
    tuned_model, _, tuned_info = load_run(tmp_path / "tuned")
    assert isinstance(tuned_model, DistilledVisionTransformer) and tuned_info["image_shape"] == [1, 28, 28]
    assert "teacher" not in tuned_info  # the fine-tuned run has no teacher of its own
    # the distillation token carried over (a few AdamW steps move it by ~lr each; a fresh one would be unrelated)
    assert (tuned_model.dist_token - model.dist_token).norm() < 0.5 * model.dist_token.norm()


def test_a_changed_teacher_is_refused_on_resume_and_a_wrong_class_count_on_start(teacher_run, tmp_path) -> None:
    settings = DistillSettings(teacher=str(teacher_run))
    student = {"image_shape": [1, 8, 8], "mean": [0.3], "std": [0.3], "classes": [str(i) for i in range(10)]}
    with pytest.raises(CheckpointError, match="has changed since this run started"):
        load_teacher(settings, student, torch.device("cpu"), load_run, recorded={"sha256": "0" * 64})
    with pytest.raises(ConfigError, match="has 10 classes, but the data has 3"):
        load_teacher(settings, {**student, "classes": ["a", "b", "c"]}, torch.device("cpu"), load_run)


@pytest.mark.parametrize("distill, message", [
    ({"teacher": "nowhere"}, r"distill.teacher nowhere does not exist; train the teacher first"),
    ({"teacher": "x", "kind": "hrad"}, r"unknown distillation kind 'hrad'"),
    ({"teacher": "x", "alpha": 2}, r"distillation alpha must be in \[0, 1\]"),
    ({"teacher": "x", "temperature": 3}, r"unknown distill key 'temperature'"),
    ({}, r"distill needs a teacher"),
])
def test_bad_distill_settings_are_one_line_and_leave_nothing(tmp_path, monkeypatch, capsys, distill, message) -> None:
    monkeypatch.chdir(tmp_path)
    overrides = [f"distill.{k}={v}" for k, v in distill.items()] or ["distill={}"]
    args = ["train", "--config", "digits_vit", "--set", "epochs=1", "--out", "run"]
    for item in overrides:
        args += ["--set", item]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and __import__("re").search(message, err), err
    assert not (tmp_path / "run").exists()
