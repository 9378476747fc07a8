"""Shared by the resume tests: train straight through, then train again with a simulated crash right after a
chosen checkpoint, resume, and compare the final weights bit for bit (the uninterrupted run is the reference)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

from vitlab.train import engine
from vitlab.train.checkpoint import latest_checkpoint, load_weights
from vitlab.train.engine import train  # a name of this module: a test may replace resume.train
from vitlab.train.tasks.image_config import ImageConfig


class SimulatedCrash(Exception):
    """Raised right after the chosen checkpoint is written, as a kill at that moment would leave the run."""


def crash_resume_compare(
    cfg: ImageConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    crash_after: int,
    expect_latest: str,
    before_resume: Callable[[], None] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Run ``cfg`` into ``tmp_path/straight``; run it into ``tmp_path/resumed`` crashing after checkpoint number
    ``crash_after`` (whose folder must be ``expect_latest``), call ``before_resume``, resume, and assert the two
    final weight sets are ``torch.equal``. Returns (straight, resumed) weights."""
    train(cfg, tmp_path / "straight", quiet=True)
    real_save = engine.save_checkpoint
    calls = {"n": 0}

    def crash_after_checkpoint(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - save_checkpoint's signature
        folder = real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == crash_after:
            raise SimulatedCrash
        return folder

    monkeypatch.setattr(engine, "save_checkpoint", crash_after_checkpoint)
    with pytest.raises(SimulatedCrash):
        train(cfg, tmp_path / "resumed", quiet=True)
    assert latest_checkpoint(tmp_path / "resumed").name == expect_latest
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    if before_resume is not None:
        before_resume()
    train(None, tmp_path / "resumed", resume=True, quiet=True)

    straight = load_weights(tmp_path / "straight" / "model.safetensors")
    resumed = load_weights(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    return straight, resumed
