"""Tests of the seq2seq task (vitlab.train.tasks.seq2seq) on the engine: a tiny end-to-end run on the copy task
(its reference is the task's definition, y = x), the run folder, reloading, resume (reference: the
uninterrupted run, bit for bit), config validation and the non-finite-loss guard; `vitlab translate`,
`vitlab train --resume` and the task-aware messages of the commands on the result."""

import csv
import json
import math

import pytest
import torch
import yaml

from vitlab.cli import main
from vitlab.data import sequence
from vitlab.errors import CheckpointError, ConfigError, DataError
from vitlab.train import engine
from vitlab.train.checkpoint import latest_checkpoint, load_weights
from vitlab.train.engine import train
from vitlab.train.tasks import seq2seq
from vitlab.train.tasks import seq2seq as task_module
from vitlab.train.tasks.seq2seq import Seq2SeqConfig, evaluate, load_seq2seq, translate


def train_seq2seq(config: dict, run_dir, quiet: bool = True) -> dict:  # noqa: ANN001
    """A seq2seq recipe mapping (without ``task``) trained by the engine into ``run_dir``: its summary."""
    return train(Seq2SeqConfig.from_dict(dict(config)), run_dir, quiet=quiet)

TINY = dict(
    dataset="copy", min_len=1, max_len=4, num_train=2000, num_test=100, d_model=32, num_heads=2,
    num_encoder_layers=1, num_decoder_layers=1, dim_ff=64, dropout=0.0, batch_size=32, steps=220, warmup=100,
    lr_factor=0.5, eval_every=110, threads=1, grad_clip=0.0,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("seq2seq") / "copy"
    result = train_seq2seq(dict(TINY), run_dir, quiet=True)
    return run_dir, result


def test_tiny_copy_run_learns_and_writes_its_run_folder(tiny_run):
    run_dir, result = tiny_run
    names = {p.name for p in run_dir.iterdir()}
    # the same structure as an image run
    assert {"config.yaml", "run.json", "model.safetensors", "metrics.csv", "curves.png", "summary.json", "checkpoints"} <= names
    assert result["test_accuracy"] >= 0.5  # chance is ~0: a whole sequence must match
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert len(rows) == TINY["steps"] // TINY["eval_every"]  # one row per evaluation period
    assert float(rows[-1]["train_loss"]) < 0.7 * float(rows[0]["train_loss"])
    evals = [float(r["test_accuracy"]) for r in rows]
    assert len(evals) == 2 and evals[-1] == pytest.approx(result["test_accuracy"])
    # the lr column is the rate of the period's last step, eq. 3 (LambdaLR's step i uses step number i + 1)
    for r in rows:
        step = int(r["step"])
        expected = 0.5 * 32**-0.5 * min(step**-0.5, step * 100**-1.5)
        assert float(r["lr"]) == pytest.approx(expected)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == TINY["steps"] and summary["test_accuracy"] == result["test_accuracy"]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["task"] == "seq2seq" and saved["d_model"] == 32 and saved["label_smoothing"] == 0.1


def test_reloaded_model_reproduces_the_reported_accuracy(tiny_run):
    run_dir, result = tiny_run
    model, task = load_seq2seq(run_dir)
    assert not model.training
    fresh = sequence.make_task("copy", 0, 100, 1, 4, seed=0)
    assert torch.equal(fresh.test.src, sequence.make_task("copy", 2000, 100, 1, 4, seed=0).test.src)
    assert evaluate(model, fresh.test) == pytest.approx(result["test_accuracy"])


def test_translate_decodes_with_greedy_and_beam_search(tiny_run, capsys):
    run_dir, _ = tiny_run
    assert translate(run_dir, "1 2 3") == "1 2 3"  # copy: y = x
    assert translate(run_dir, "7 7 0", beam=3) == "7 7 0"
    assert main(["translate", str(run_dir), "4 2", "--beam", "2", "--max-len", "5"]) == 0
    assert capsys.readouterr().out.strip() == "4 2"
    assert len(translate(run_dir, "1 2 3", max_len=1).split()) <= 1
    assert main(["translate", str(run_dir), "1 x"]) == 2
    assert "unknown symbol 'x'" in capsys.readouterr().err
    with pytest.raises(DataError):
        translate(run_dir, "12a")


def test_translate_of_a_missing_run_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        translate(tmp_path / "nope", "1 2")


def test_unknown_key_and_bad_values_fail_before_the_run_folder_exists(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="unknown seq2seq config key 'd_modle'; did you mean 'd_model'"):
        train_seq2seq({"d_modle": 64}, run_dir, quiet=True)
    with pytest.raises(ConfigError, match="dataset: unknown sequence task 'revrse'"):
        train_seq2seq({"dataset": "revrse"}, run_dir, quiet=True)
    with pytest.raises(ConfigError, match=r"seq2seq config: steps must be int, got 'many' \(str\)"):
        train_seq2seq({"steps": "many"}, run_dir, quiet=True)
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        train_seq2seq({"d_model": 30, "num_heads": 4}, run_dir, quiet=True)
    assert not run_dir.exists()
    assert Seq2SeqConfig.from_dict({"lr_factor": 2}).lr_factor == 2.0


class NaNAtThirdCall(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.calls = 0

    def forward(self, logits, target):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=0, reduction="sum")
        return loss * (math.nan if self.calls == 3 else 1.0)


def test_non_finite_loss_names_the_step(tmp_path, monkeypatch):
    monkeypatch.setattr(task_module, "LabelSmoothingCrossEntropy", NaNAtThirdCall)
    config = dict(TINY, num_train=64, num_test=8, steps=5)
    with pytest.raises(engine.NonFiniteLossError, match="at step 3"):
        train_seq2seq(config, tmp_path / "nan", quiet=True)
    assert not (tmp_path / "nan").exists()


def test_nonfinite_skip_keeps_the_nan_step_out_of_the_loss_column(tmp_path, monkeypatch):
    monkeypatch.setattr(task_module, "LabelSmoothingCrossEntropy", NaNAtThirdCall)
    config = dict(TINY, num_train=64, num_test=8, steps=5, eval_every=5, nonfinite="skip")
    result = train_seq2seq(config, tmp_path / "skip", quiet=True)
    assert math.isfinite(result["final_loss"])
    assert json.loads((tmp_path / "skip" / "summary.json").read_text())["skipped_steps"] == 1


def test_training_leaves_the_global_rng_alone(tmp_path):
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    train_seq2seq(dict(TINY, num_train=64, num_test=8, steps=2), tmp_path / "rng", quiet=True)
    assert torch.equal(torch.rand(2), expected)


def test_cosine_decay_keeps_the_warmup_of_equation_3_then_falls_to_zero_at_the_last_step():
    cfg = Seq2SeqConfig.from_dict({"d_model": 64, "warmup": 100, "steps": 500, "lr_factor": 2, "lr_decay": "cosine"})
    paper = Seq2SeqConfig.from_dict({"d_model": 64, "warmup": 100, "steps": 500, "lr_factor": 2})
    for step in (1, 50, 100):  # identical warm-up, reference: eq. 3 written out
        assert seq2seq.seq2seq_lr(step, cfg) == pytest.approx(2 * 64**-0.5 * min(step**-0.5, step * 100**-1.5))
        assert seq2seq.seq2seq_lr(step, cfg) == pytest.approx(seq2seq.seq2seq_lr(step, paper))
    peak = 2 * 64**-0.5 * 100**-0.5
    for step in (200, 300, 450):  # reference: the half cosine of SGDR (eq. 5) with eta_min = 0
        expected = peak * 0.5 * (1 + math.cos(math.pi * (step - 100) / 400))
        assert seq2seq.seq2seq_lr(step, cfg) == pytest.approx(expected)
    assert seq2seq.seq2seq_lr(300, cfg) == pytest.approx(peak / 2)
    assert seq2seq.seq2seq_lr(500, cfg) == pytest.approx(0.0, abs=1e-12)
    assert seq2seq.seq2seq_lr(300, paper) == pytest.approx(2 * 64**-0.5 * 300**-0.5)  # the default is unchanged
    with pytest.raises(ConfigError, match="lr_decay: unknown learning-rate decay 'cosin'"):
        Seq2SeqConfig.from_dict({"lr_decay": "cosin"})


def test_existing_run_folder_is_refused_and_left_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"run folder .*run already exists; pass --resume"):
        train_seq2seq(dict(TINY), run_dir, quiet=True)
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"]


class _Crash(Exception):
    pass


def test_resumed_seq2seq_run_ends_with_bit_identical_weights(tmp_path, monkeypatch, capsys):
    """Reference: the same recipe trained without interruption (torch.equal on every tensor)."""
    config = dict(TINY, num_train=256, num_test=16, steps=24, eval_every=8, checkpoint_steps=3, dropout=0.1)
    train_seq2seq(config, tmp_path / "straight", quiet=True)
    real_save = engine.save_checkpoint
    calls = {"n": 0}

    def crash_after_third_checkpoint(*args, **kwargs):
        folder = real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # step 8: the end of the first period
            raise _Crash
        return folder

    monkeypatch.setattr(engine, "save_checkpoint", crash_after_third_checkpoint)
    with pytest.raises(_Crash):
        train_seq2seq(config, tmp_path / "resumed", quiet=True)
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    assert latest_checkpoint(tmp_path / "resumed").name == "step_00000008"
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {tmp_path / 'resumed'}" in out and "epoch=3" in out  # --quiet: one line per period
    straight = load_weights(tmp_path / "straight" / "model.safetensors")
    resumed = load_weights(tmp_path / "resumed" / "model.safetensors")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("epoch_seconds", "sequences_per_s")} for r in rows]  # noqa: E731
    assert strip(csv.DictReader((tmp_path / "resumed" / "metrics.csv").open())) == strip(
        csv.DictReader((tmp_path / "straight" / "metrics.csv").open()))


def test_translate_beam_uses_the_runs_length_penalty_unless_alpha_is_given(tiny_run, monkeypatch, capsys):
    run_dir, _ = tiny_run
    seen = []
    real = task_module.beam_search

    def recording(*args, **kwargs):
        seen.append(kwargs["alpha"])
        return real(*args, **kwargs)

    monkeypatch.setattr(task_module, "beam_search", recording)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["length_penalty"]
    translate(run_dir, "1 2", beam=2)
    assert main(["translate", str(run_dir), "1 2", "--beam", "2", "--alpha", "1.5"]) == 0
    assert seen == [saved, 1.5]
    assert main(["translate", str(run_dir), "1 2", "--beam", "2", "--alpha", "-1"]) == 2
    assert "--alpha must be a finite number >= 0" in capsys.readouterr().err


def test_each_command_names_the_command_that_fits_a_run_of_another_task(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    png = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (8, 8)).save(png)
    for argv in (["eval", str(run_dir)], ["predict", str(run_dir), str(png)]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "trained with task: seq2seq; use `vitlab translate" in err, err
    image_run = tmp_path / "image_run"
    image_run.mkdir()
    (image_run / "config.yaml").write_text("epochs: 1\n")
    assert main(["translate", str(image_run), "1 2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained with task: image; use `vitlab eval" in err and "unknown seq2seq config key" not in err


def test_seq2seq_train_prints_its_run_folder(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"task": "seq2seq", **dict(TINY, num_train=64, num_test=8, steps=4, eval_every=2)}))
    for quiet in ([], ["--quiet"]):
        out_dir = tmp_path / f"run{len(quiet)}"
        assert main(["train", "--config", str(config), "--out", str(out_dir), *quiet]) == 0
        out = capsys.readouterr().out
        assert f"run folder: {out_dir}" in out
        if quiet:
            assert out.count("epoch=") == 2  # one line per period
        else:
            assert "test exact-match accuracy" in out


def test_auto_resume_and_device_keys_work_for_seq2seq(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"task": "seq2seq", **TINY}))
    before = (run_dir / "model.safetensors").stat().st_mtime_ns
    assert main(["train", "--config", str(config), "--out", str(run_dir), "--auto-resume", "--set", "device=cpu"]) == 0
    assert "has already finished; nothing to do" in capsys.readouterr().out
    assert (run_dir / "model.safetensors").stat().st_mtime_ns == before
    assert Seq2SeqConfig.from_dict({"device": "cpu"}).device == "cpu"
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        Seq2SeqConfig.from_dict({"device": "tpu"})
