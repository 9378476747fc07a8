"""Tests of multi-process training (vitlab.train.distributed and the DDP path of vitlab.train.engine).

References:
- ``DistContext.shard_range`` / ``gather_rows``: the definition (contiguous shares that tile ``[0, n)``, rows
  reassembled in the original order), checked for every small (n, world) with a simulated world.
- A 2-process gloo run launched with ``torch.distributed.run`` (torchrun) against a 1-process run of the same
  recipe (same global batch and seed, no augmentation or dropout): the global batch of step t holds the same
  samples in both, and DDP's averaged gradient equals the full-batch mean gradient, so the weights agree up to
  float32 summation order. Stated tolerance: every weight within 1e-3 absolute and within 2% of the largest
  distance any weight of that tensor moved from its initial value; evaluation counts (val/test top-1 and top-5
  correct) and the training accuracy are equal exactly.
- The same for a seq2seq run (the Transformer on the copy task, no dropout, accum_steps=2): the loss of a step
  is the mean over every target token of the global batch, so it equals one process's at the same global
  batch; weights within the same tolerance, the same test exact-match accuracy.
- A 2-process run whose rank 1 kills itself (SIGKILL) after step 7, restarted by ``torchrun --max-restarts=1``
  with ``--auto-resume``, against the same 2-process run uninterrupted: bit-identical final weights.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlab import cli
from vitlab.errors import ConfigError
from vitlab.train import distributed as distributed_module
from vitlab.train import engine
from vitlab.train.checkpoint import latest_checkpoint, load_weights
from vitlab.train.distributed import DistContext
from vitlab.train.tasks.image import build_model
from vitlab.train.tasks.image_config import ImageConfig

# The recipe every run here shares: a 1-block ViT, no augmentation, no dropout, so that runs are comparable.
# accum_steps=2 and an EMA exercise DDP's no_sync and the EMA under DDP.
RECIPE = {
    "epochs": 2,
    "batch_size": 64,
    "threads": 1,
    "crop_padding": 0,
    "label_smoothing": 0.0,
    "warmup_epochs": 1.0,
    "accum_steps": 2,
    "ema_decay": 0.9,
    "checkpoint_steps": 5,
    "device": "cpu",
    "amp": "off",  # float32 everywhere: amp: auto would pick bf16 on a CPU that has it, beyond the tolerance
    "model_args": {"depth": 1, "embed_dim": 32, "num_heads": 2},
}


def _set_args(recipe: dict) -> list[str]:
    args = []
    for key, value in recipe.items():
        if isinstance(value, dict):  # the whole mapping: a dotted --set would keep the default's other keys
            args.append(f"--set={key}=" + "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}")
        else:
            args.append(f"--set={key}={str(value).lower() if isinstance(value, bool) else value}")
    return args


def _torchrun(
    out: Path, nproc: int, extra_env: dict[str, str] | None = None, restarts: int = 0, recipe: dict | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITLAB_TEST_")}
    # A fresh rendezvous store per attempt: with torchrun's shared store a restarted worker may read the
    # address of a dead one (PyTorch issue #135712; see vitlab.train.distributed).
    env.update(OMP_NUM_THREADS="1", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1", **(extra_env or {}))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        f"--max-restarts={restarts}", "--monitor-interval=0.1",
        "-m", "vitlab", "train", "--quiet", "--auto-resume", "--out", str(out), *_set_args(recipe or RECIPE),
    ]  # fmt: skip
    if (recipe or RECIPE).get("task", "image") == "image":  # ImageConfig(**RECIPE) = the digits_vit recipe + RECIPE
        command[command.index("--quiet"):command.index("--quiet")] = ["--config", "digits_vit"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        # SIGTERM first: torchrun passes it on to its workers (each in a session of its own) and waits for them.
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish in 240 s:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory) -> Path:
    """The reference: the recipe trained in this process (world size 1)."""
    run = tmp_path_factory.mktemp("ddp") / "one"
    engine.train(ImageConfig(**RECIPE), run, quiet=True)
    return run


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ddp") / "two"
    _torchrun(run, 2)
    return run


# ------------------------------------------------------------------------------------------ DistContext
@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 1000), world=st.integers(1, 9))
def test_shard_ranges_tile_the_samples_contiguously_and_evenly(n: int, world: int) -> None:
    ranges = [DistContext(world_size=world, rank=r).shard_range(n) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(ranges[r][1] == ranges[r + 1][0] for r in range(world - 1))  # no gap, no overlap
    sizes = [end - start for start, end in ranges]
    assert max(sizes) - min(sizes) <= 1  # no rank pads: counts are exact


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 64])
@pytest.mark.parametrize("world", [2, 3, 4])
def test_gather_rows_reassembles_every_rank_shard_in_original_order(monkeypatch, n: int, world: int) -> None:
    full = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    contexts = [DistContext(world_size=world, rank=r) for r in range(world)]
    shards = [full[slice(*ctx.shard_range(n))] for ctx in contexts]
    for ctx in contexts:
        # Simulated all_gather: rank r' contributes its shard padded the way gather_rows pads its own.
        def fake_all_gather(buckets, tensor):  # noqa: ANN001, ANN202
            assert tensor.shape == buckets[0].shape
            for bucket, shard in zip(buckets, shards):
                bucket.zero_()
                bucket[: shard.shape[0]] = shard
                bucket[shard.shape[0] :] = float("nan")  # padding must never reach the result

        monkeypatch.setattr(distributed_module.dist, "all_gather", fake_all_gather)
        gathered = ctx.gather_rows(shards[ctx.rank], n)
        assert torch.equal(gathered, full)


def test_one_process_context_collectives_are_identity() -> None:
    ctx = DistContext()
    x = torch.tensor([1.0, -2.0])
    assert not ctx.distributed and ctx.is_main
    assert ctx.all_reduce_sum(x) is x and ctx.all_reduce_max(x) is x
    assert ctx.gather_rows(x[:, None], 2) is not None and ctx.shard_range(10) == (0, 10)
    assert ctx.broadcast_object({"a": 1}) == {"a": 1}


def test_fault_hook_fires_only_on_the_named_rank_and_first_attempt(monkeypatch) -> None:
    monkeypatch.setenv("VITLAB_TEST_DIE_AT_STEP", "7")
    monkeypatch.setenv("VITLAB_TEST_DIE_RANK", "1")
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    assert engine._test_die_at_step(DistContext(world_size=2, rank=1)) == 7
    assert engine._test_die_at_step(DistContext(world_size=2, rank=0)) is None
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert engine._test_die_at_step(DistContext(world_size=2, rank=1)) is None
    monkeypatch.delenv("VITLAB_TEST_DIE_AT_STEP")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert engine._test_die_at_step(DistContext(world_size=2, rank=1)) is None


# ------------------------------------------------------------------------------------------ --auto-resume
def test_auto_resume_of_a_finished_run_returns_its_summary_without_training(one_process_run: Path) -> None:
    before = (one_process_run / "model.safetensors").stat().st_mtime_ns
    summary = engine.train(ImageConfig(**RECIPE), one_process_run, quiet=True, auto_resume=True)
    assert summary == json.loads((one_process_run / "summary.json").read_text())
    assert (one_process_run / "model.safetensors").stat().st_mtime_ns == before


def test_auto_resume_refuses_a_checkpoint_made_with_another_recipe(one_process_run: Path, tmp_path) -> None:
    run = tmp_path / "unfinished"
    shutil.copytree(one_process_run, run)
    (run / "summary.json").unlink()
    (run / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"lr: 0\.002 -> 0\.001"):
        engine.train(ImageConfig(**{**RECIPE, "lr": 1e-3}), run, quiet=True, auto_resume=True)


def test_auto_resume_starts_over_in_a_folder_killed_before_its_first_checkpoint(one_process_run: Path, tmp_path) -> None:
    run = tmp_path / "early_death"
    run.mkdir()
    for name in ("config.yaml", "run.json"):  # what rank 0 writes before the first step
        shutil.copy(one_process_run / name, run / name)
    assert latest_checkpoint(run) is None
    engine.train(ImageConfig(**RECIPE), run, quiet=True, auto_resume=True)
    reference, restarted = load_weights(one_process_run / "model.safetensors"), load_weights(run / "model.safetensors")
    for name in reference:
        assert torch.equal(reference[name], restarted[name]), name


def test_cli_auto_resume_needs_out_and_excludes_resume(tmp_path, capsys) -> None:
    assert cli.main(["train", "--auto-resume", "--set", "epochs=1"]) == 2
    assert "--auto-resume needs --out" in capsys.readouterr().err
    assert cli.main(["train", "--auto-resume", "--resume", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ torchrun
def _metrics(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


@pytest.mark.slow
def test_two_gloo_processes_end_with_the_weights_and_metrics_of_one(one_process_run: Path, two_process_run: Path) -> None:
    one, two = load_weights(one_process_run / "model.safetensors"), load_weights(two_process_run / "model.safetensors")
    with torch.random.fork_rng():
        torch.manual_seed(RECIPE.get("seed", 0))  # the initial weights, as the loop builds them
        initial = build_model(ImageConfig(**RECIPE), (1, 8, 8), 10).state_dict()
    assert one.keys() == two.keys()
    for name in one:
        moved = (one[name] - initial[name]).abs().max()
        diff = (one[name] - two[name]).abs().max()
        assert diff <= 1e-3 and diff <= 0.02 * moved + 1e-7, (name, float(diff), float(moved))
    s1 = json.loads((one_process_run / "summary.json").read_text())
    s2 = json.loads((two_process_run / "summary.json").read_text())
    assert s2["world_size"] == 2 and s1["world_size"] == 1 and s1["steps"] == s2["steps"]
    info = json.loads((one_process_run / "run.json").read_text())
    n_val, n_test = info["splits"]["val"], info["splits"]["test"]
    for key, n in (("val_acc1", n_val), ("test_acc1", n_test), ("test_acc5", n_test)):
        assert round(s1[key] * n) == round(s2[key] * n), key  # exact counts: no padded duplicates
    for r1, r2 in zip(_metrics(one_process_run), _metrics(two_process_run), strict=True):
        assert r1["train_acc"] == r2["train_acc"] and r1["val_acc1"] == r2["val_acc1"] and r1["val_acc5"] == r2["val_acc5"]
    # Rank 0 alone wrote files: one checkpoint pointer, no per-rank leftovers.
    assert sorted(p.name for p in two_process_run.iterdir()) == sorted(p.name for p in one_process_run.iterdir())


@pytest.mark.slow
def test_rank_killed_mid_run_is_restarted_by_torchrun_and_ends_bit_identical(two_process_run: Path, tmp_path) -> None:
    run = tmp_path / "killed"
    result = _torchrun(run, 2, {"VITLAB_TEST_DIE_AT_STEP": "7", "VITLAB_TEST_DIE_RANK": "1"}, restarts=1)
    assert "exitcode: -9" in result.stderr  # rank 1 did die (SIGKILL) on the first attempt
    straight, resumed = load_weights(two_process_run / "model.safetensors"), load_weights(run / "model.safetensors")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    assert _metrics(run)[-1]["val_acc1"] == _metrics(two_process_run)[-1]["val_acc1"]


# ------------------------------------------------------------------------------------------ seq2seq under torchrun
SEQ_RECIPE = {
    "task": "seq2seq", "grad_clip": 0.0, "dataset": "copy", "min_len": 1, "max_len": 4, "num_train": 512, "num_test": 32,
    "d_model": 32, "num_heads": 2, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_ff": 64, "dropout": 0.0,
    "batch_size": 32, "steps": 16, "warmup": 8, "lr_factor": 0.2, "eval_every": 8, "accum_steps": 2, "threads": 1,
    "device": "cpu",
    "checkpoint_steps": 5, "amp": "off",
}


@pytest.mark.slow
def test_two_gloo_processes_train_the_transformer_like_one(tmp_path) -> None:
    from vitlab.train.engine import train
    from vitlab.train.tasks import config_from_raw
    from vitlab.train.tasks.seq2seq import build_model

    train(config_from_raw(SEQ_RECIPE), tmp_path / "one", quiet=True)
    _torchrun(tmp_path / "two", 2, recipe=SEQ_RECIPE)
    one, two = load_weights(tmp_path / "one" / "model.safetensors"), load_weights(tmp_path / "two" / "model.safetensors")
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the initial weights, as the engine builds them
        initial = build_model(config_from_raw(SEQ_RECIPE), 14, 6).state_dict()
    for name in one:
        if name.endswith("k_proj.bias"):
            # q·(k + b) shifts every score of a query by the same q·b, which softmax ignores: the exact gradient
            # is 0, so Adam turns float noise into full-size steps of either sign. Nothing to compare.
            continue
        moved = (one[name] - initial[name]).abs().max()
        diff = (one[name] - two[name]).abs().max()
        assert diff <= 1e-3 and diff <= 0.02 * moved + 1e-7, (name, float(diff), float(moved))
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (s1["world_size"], s2["world_size"], s1["steps"]) == (1, 2, s2["steps"])
    assert s1["test_accuracy"] == s2["test_accuracy"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
