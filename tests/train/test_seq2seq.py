"""Tests of vitlab.train.seq2seq: a tiny end-to-end run on the copy task (its reference is the task's
definition, y = x), the run folder, reloading, config validation and the non-finite-loss guard; the
`vitlab translate` command on the result."""

import csv
import math

import pytest
import torch
import yaml

from vitlab.cli import main
from vitlab.errors import CheckpointError, ConfigError, DataError, VitlabError
from vitlab.train import seq2seq
from vitlab.train.seq2seq import Seq2SeqConfig, evaluate, load_seq2seq, train_seq2seq, translate

TINY = dict(
    dataset="copy", min_len=1, max_len=4, num_train=2000, num_test=100, d_model=32, num_heads=2,
    num_encoder_layers=1, num_decoder_layers=1, dim_ff=64, dropout=0.0, batch_size=32, steps=220, warmup=100,
    lr_factor=0.5, eval_every=110, threads=1,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("seq2seq") / "copy"
    result = train_seq2seq(dict(TINY), run_dir, quiet=True)
    return run_dir, result


def test_tiny_copy_run_learns_and_writes_its_run_folder(tiny_run):
    run_dir, result = tiny_run
    assert {"config.yaml", "model.safetensors", "metrics.csv", "curves.png"} <= {p.name for p in run_dir.iterdir()}
    assert result["test_accuracy"] >= 0.5  # chance is ~0: a whole sequence must match
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert len(rows) == TINY["steps"]
    assert float(rows[-1]["loss"]) < 0.7 * float(rows[0]["loss"])
    evals = [float(r["test_accuracy"]) for r in rows if r["test_accuracy"]]
    assert len(evals) == 2 and evals[-1] == pytest.approx(result["test_accuracy"])
    # the learning rate follows eq. 3 (LambdaLR's step i uses step number i + 1)
    for r in rows[:3] + rows[-2:]:
        step = int(r["step"])
        expected = 0.5 * 32**-0.5 * min(step**-0.5, step * 100**-1.5)
        assert float(r["lr"]) == pytest.approx(expected)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["task"] == "seq2seq" and saved["d_model"] == 32 and saved["label_smoothing"] == 0.1


def test_reloaded_model_reproduces_the_reported_accuracy(tiny_run):
    run_dir, result = tiny_run
    model, task = load_seq2seq(run_dir)
    assert not model.training
    fresh = seq2seq.make_task("copy", 0, 100, 1, 4, seed=0)
    assert torch.equal(fresh.test.src, seq2seq.make_task("copy", 2000, 100, 1, 4, seed=0).test.src)
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


def test_non_finite_loss_names_the_step(tmp_path, monkeypatch):
    class NaNAfterTwo(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            self.calls = 0

        def forward(self, logits, target):
            self.calls += 1
            loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=0)
            return loss * (math.nan if self.calls == 3 else 1.0)

    monkeypatch.setattr(seq2seq, "LabelSmoothingCrossEntropy", NaNAfterTwo)
    config = dict(TINY, num_train=64, num_test=8, steps=5)
    with pytest.raises(VitlabError, match="at step 3"):
        train_seq2seq(config, tmp_path / "nan", quiet=True)


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
    with pytest.raises(ConfigError, match=r"run folder .*run already exists; choose another --out"):
        train_seq2seq(dict(TINY), run_dir, quiet=True)
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"]
