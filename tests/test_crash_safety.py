"""Crash safety of `vitlab train`: kill -9 at random points (mid-checkpoint included), resume, compare.

The harness starts ``python -m vitlab train`` as a subprocess, kills it with SIGKILL at 5 points chosen
by a seeded RNG, and resumes it each time with ``vitlab train --resume``. Four of the points are inside
the writing of a checkpoint (the test-only hook ``VITLAB_TEST_CHECKPOINT_PAUSE`` of
:mod:`vitlab.train.checkpoint` stops the process at a named stage: a file half-written, a file complete
but not yet renamed, the folder in place but the pointer not yet updated, ...); one is right after a random
optimizer step following a checkpoint (the loop's test-only hook ``VITLAB_TEST_DIE_AT_STEP``). After every kill, every checkpoint the run folder names must
load and verify, and no temporary file may be taken for a checkpoint.

Reference: an uninterrupted run of the same recipe (same seed) in this process. The resumed run must end
with bit-identical weights (``torch.equal`` on every tensor) and the same per-epoch metrics.

The same harness kills a seq2seq run (the Transformer on the copy task, with dropout) at 4 points (3 of them
mid-write) and resumes it: the engine is shared, so is the guarantee.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vitlab.train import engine
from vitlab.train.checkpoint import TEST_PAUSE_ENV, latest_checkpoint, load_checkpoint, load_weights
from vitlab.train.tasks.image_config import config_from_dict

RECIPE = {
    "epochs": 2,
    "batch_size": 64,
    "warmup_epochs": 1.0,
    "threads": 1,
    "checkpoint_steps": 3,
    "log_every": 5,
    "model_args": {"depth": 1, "embed_dim": 32, "num_heads": 2},
}
STEPS_PER_EPOCH = 1258 // 64  # the embedded digits' training split
MID_WRITE_STAGES = [
    "partial-model.safetensors",
    "model.safetensors",
    "partial-state.pt",
    "state.pt",
    "partial-manifest.json",
    "manifest.json",
    "renamed",
    "partial-latest",
    "latest",
]
TIMEOUT = 90.0  # seconds to wait for one crash point (the machine is shared)


def _overrides() -> list[str]:
    args = ["--config", "digits_vit"]  # the embedded digits: STEPS_PER_EPOCH below is theirs
    for key, value in RECIPE.items():
        if isinstance(value, dict):  # the whole mapping: a dotted --set would keep the default's other keys
            args += ["--set", f"{key}=" + "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"]
        else:
            args += ["--set", f"{key}={value}"]
    return args


def _checkpoint_steps() -> list[int]:
    """The steps at which the recipe writes a checkpoint (every 3 steps mid-epoch, and each epoch's end)."""
    steps = []
    for epoch in range(RECIPE["epochs"]):
        for batch in range(STEPS_PER_EPOCH):
            step = epoch * STEPS_PER_EPOCH + batch + 1
            if (step % RECIPE["checkpoint_steps"] == 0 and batch + 1 < STEPS_PER_EPOCH) or batch + 1 == STEPS_PER_EPOCH:
                steps.append(step)
    return steps


def _crash_plan(seed: int) -> list[tuple[int, str]]:
    """5 (checkpoint step, stage) kill points in increasing step order; 4 mid-write stages, 1 'between'."""
    rng = random.Random(seed)
    candidates = [s for s in _checkpoint_steps() if s > RECIPE["checkpoint_steps"]]  # a checkpoint exists already
    steps = sorted(rng.sample(candidates[:-2], 5))  # 'between' needs steps left after its checkpoint
    stages = rng.sample(MID_WRITE_STAGES, 4) + ["between"]
    rng.shuffle(stages)
    return list(zip(steps, stages))


def _start(args: list[str], env_extra: dict[str, str], log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(TEST_PAUSE_ENV, None)
    env.update(env_extra, PYTHONUNBUFFERED="1")
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "vitlab", "train", *args, "--quiet"], stdout=handle, stderr=handle, env=env)


def _wait_for(proc: subprocess.Popen, ready, log: Path, what: str) -> None:  # noqa: ANN001 - ready: () -> bool
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"training exited (code {proc.returncode}) before {what}:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _assert_run_folder_consistent(run: Path) -> int:
    """Every checkpoint the folder names loads and verifies; temporary files are hidden. Returns the step."""
    folder = latest_checkpoint(run)
    assert folder is not None and not folder.name.startswith(".")
    weights, state = load_checkpoint(folder)
    assert int(state["step"]) == int(folder.name.removeprefix("step_")) and weights
    root = run / "checkpoints"
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue  # staging folders and temp files of the killed write: never named by `latest`
        if entry.name == "latest":
            continue
        assert entry.is_dir() and entry.name.startswith("step_"), entry
        assert not any(p.name.startswith(".") for p in entry.iterdir()), f"temp file inside {entry}"
        load_checkpoint(entry)  # a renamed folder is always complete
    json.loads((run / "run.json").read_text())
    if (run / "metrics.csv").exists():
        list(csv.DictReader((run / "metrics.csv").open()))
    return int(state["step"])


def _metrics(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(path.open()))
    return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "images_per_s")} for row in rows]


@pytest.mark.slow
def test_kill_9_at_five_random_points_then_resume_gives_bit_identical_weights(tmp_path) -> None:
    threads = torch.get_num_threads()
    try:
        engine.train(config_from_dict(dict(RECIPE)), tmp_path / "straight", quiet=True)
    finally:
        torch.set_num_threads(threads)

    run, log, marker = tmp_path / "killed", tmp_path / "train.log", tmp_path / "marker"
    plan = _crash_plan(seed=10)
    assert sum(stage != "between" for _, stage in plan) == 4
    rng = random.Random(11)
    resumed_from: list[int] = []
    for i, (step, stage) in enumerate(plan):
        args = _overrides() + ["--out", str(run)] if i == 0 else ["--resume", str(run)]
        if stage == "between":
            # SIGKILL right after a random optimizer step following the checkpoint of `step`. The loop's
            # test-only hook VITLAB_TEST_DIE_AT_STEP sends it, so the point does not depend on how fast the
            # machine is (polling and sleeping let a fast run race past the next planned checkpoint).
            die_at = step + rng.randint(1, RECIPE["checkpoint_steps"] - 1)
            proc = _start(args, {"VITLAB_TEST_DIE_AT_STEP": str(die_at)}, log)
            try:
                proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"timed out waiting for the kill after step {die_at}")
            assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
        else:  # stopped by the hook inside the checkpoint write of `step` at `stage`
            marker.write_text("")
            proc = _start(args, {TEST_PAUSE_ENV: f"{step}:{stage}:{marker}"}, log)
            _wait_for(proc, lambda: stage in marker.read_text().split(), log, f"checkpoint {step} stage {stage}")
            _kill(proc)
        latest = _assert_run_folder_consistent(run)
        if stage == "between":
            assert latest >= step  # the next checkpoint may have been written before the kill
        elif stage == "latest":
            assert latest == step
        else:
            assert latest < step  # the pointer still names the previous checkpoint
        resumed_from.append(latest)

    proc = _start(["--resume", str(run)], {}, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-2000:]

    straight = load_weights(tmp_path / "straight" / "model.safetensors")
    resumed = load_weights(run / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    assert _metrics(run / "metrics.csv") == _metrics(tmp_path / "straight" / "metrics.csv")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == RECIPE["epochs"] * STEPS_PER_EPOCH
    assert summary["test_acc1"] == json.loads((tmp_path / "straight" / "summary.json").read_text())["test_acc1"]
    assert resumed_from == sorted(resumed_from) and len(set(resumed_from)) >= 3


def test_crash_plan_is_seeded_and_covers_mid_write_stages() -> None:
    plan = _crash_plan(seed=10)
    assert plan == _crash_plan(seed=10)
    steps = [s for s, _ in plan]
    assert steps == sorted(set(steps)) and len(steps) == 5
    assert set(steps) <= set(_checkpoint_steps())
    assert _checkpoint_steps()[:4] == [3, 6, 9, 12] and STEPS_PER_EPOCH in _checkpoint_steps()


SEQ_RECIPE = {
    "task": "seq2seq", "grad_clip": 0.0, "dataset": "copy", "min_len": 1, "max_len": 4, "num_train": 512, "num_test": 16,
    "d_model": 32, "num_heads": 2, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_ff": 64,
    "batch_size": 32, "steps": 24, "warmup": 8, "eval_every": 8, "checkpoint_steps": 3, "threads": 1,
}


@pytest.mark.slow
def test_kill_9_of_a_seq2seq_run_then_resume_gives_bit_identical_weights(tmp_path) -> None:
    from vitlab.train.engine import train
    from vitlab.train.tasks import config_from_raw

    train(config_from_raw(SEQ_RECIPE), tmp_path / "straight", quiet=True)
    run, log, marker = tmp_path / "killed", tmp_path / "train.log", tmp_path / "marker"
    rng = random.Random(12)
    stages = rng.sample(MID_WRITE_STAGES, 3)
    plan = [(6, stages[0]), (9, stages[1]), (12, "between"), (18, stages[2])]  # checkpoints: 3, 6, 8, 9, 12, 15, 16, ...
    for i, (step, stage) in enumerate(plan):
        args = [a for k, v in SEQ_RECIPE.items() for a in ("--set", f"{k}={v}")] + ["--out", str(run)] if i == 0 else [
            "--resume", str(run)]
        if stage == "between":
            proc = _start(args, {"VITLAB_TEST_DIE_AT_STEP": str(step + 2)}, log)
            proc.wait(timeout=TIMEOUT)
            assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
        else:
            marker.write_text("")
            proc = _start(args, {TEST_PAUSE_ENV: f"{step}:{stage}:{marker}"}, log)
            _wait_for(proc, lambda: stage in marker.read_text().split(), log, f"checkpoint {step} stage {stage}")
            _kill(proc)
        latest = _assert_run_folder_consistent(run)
        assert latest >= step if stage == "between" else (latest == step if stage == "latest" else latest < step)
    proc = _start(["--resume", str(run)], {}, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-2000:]
    straight, resumed = load_weights(tmp_path / "straight" / "model.safetensors"), load_weights(run / "model.safetensors")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    def rows(path: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "sequences_per_s")} for r in csv.DictReader(path.open())]

    assert rows(run / "metrics.csv") == rows(tmp_path / "straight" / "metrics.csv")
