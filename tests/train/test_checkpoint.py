"""Tests of vitlab.train.checkpoint: atomic files, verified weights, damaged and unsafe files refused."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from vitlab.errors import CheckpointError
from vitlab.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_state,
    load_weights,
    save_checkpoint,
    save_weights,
)


def _weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"w": torch.randn(4, 3), "b": torch.arange(5), "h": torch.randn(2).half()}


def test_weights_roundtrip_exactly(tmp_path) -> None:
    path = save_weights(_weights(), tmp_path / "m.safetensors")
    loaded = load_weights(path)
    for name, tensor in _weights().items():
        assert torch.equal(loaded[name], tensor) and loaded[name].dtype == tensor.dtype


def test_flipped_byte_in_tensor_data_is_detected(tmp_path) -> None:
    path = save_weights(_weights(), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data, past the header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_weights(path)


def test_truncated_or_foreign_weights_file_is_refused(tmp_path) -> None:
    path = save_weights(_weights(), tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="damaged or not a safetensors"):
        load_weights(path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not safetensors")
    with pytest.raises(CheckpointError, match="damaged or not a safetensors"):
        load_weights(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(tmp_path / "missing.safetensors")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + str(os.environ.get("VITLAB_PWNED", "/nonexistent/pwned")),))


REFUSAL = "refused: it contains code or objects that weights_only loading does not allow; do not load it unless you trust its source"


@pytest.mark.parametrize("protocol", [None, 2, 4])
def test_pickle_that_would_run_code_is_refused_in_one_line_without_warnings(tmp_path, monkeypatch, protocol) -> None:
    # Reference: torch.load(weights_only=True) refuses these files (an UnpicklingError naming torch's advice);
    # vitlab must say so in one line of its own words, and torch's UserWarning (pickle protocol 4) must not leak.
    import warnings

    marker = tmp_path / "pwned"
    monkeypatch.setenv("VITLAB_PWNED", str(marker))
    evil = tmp_path / "state.pt"
    if protocol is None:
        torch.save({"payload": _Evil()}, evil)  # torch.save pickles the object, as an attacker would
    else:
        evil.write_bytes(pickle.dumps({"payload": _Evil()}, protocol=protocol))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning torch emits fails the test
        with pytest.raises(CheckpointError) as info:
            load_state(evil)
    message = str(info.value)
    assert message == f"checkpoint file {evil} {REFUSAL}"
    assert "\n" not in message and "weights_only` set to `False" not in message
    assert not marker.exists()


def test_truncated_state_file_is_named_as_damaged(tmp_path) -> None:
    path = tmp_path / "state.pt"
    torch.save({"step": 1, "w": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"state.pt is damaged or not a PyTorch file \(RuntimeError\)"):
        load_state(path)


def test_checkpoint_folder_roundtrip_and_pointer(tmp_path) -> None:
    state = {"step": 3, "rng": torch.get_rng_state(), "history": [{"epoch": 1, "loss": 0.5}]}
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path, 3, _weights(), state)
    save_checkpoint(tmp_path, 7, _weights(), {**state, "step": 7})
    folder = latest_checkpoint(tmp_path)
    assert folder is not None and folder.name == "step_00000007"
    assert not (tmp_path / "checkpoints" / "step_00000003").exists()  # keep=1
    weights, loaded = load_checkpoint(folder)
    assert loaded["step"] == 7 and torch.equal(loaded["rng"], state["rng"])
    assert torch.equal(weights["w"], _weights()["w"])


def test_damaged_checkpoint_state_is_refused(tmp_path) -> None:
    folder = save_checkpoint(tmp_path, 1, _weights(), {"step": 1})
    state = folder / "state.pt"
    state.write_bytes(state.read_bytes()[:-5])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(folder)


def test_old_checkpoints_are_hidden_before_their_files_are_deleted(tmp_path, monkeypatch) -> None:
    """A kill while deleting an old checkpoint must never leave a visible step_* folder missing files."""
    import shutil

    import vitlab.train.checkpoint as checkpoint

    removed: list[str] = []
    real_rmtree = shutil.rmtree

    def recording_rmtree(path, *args, **kwargs):
        removed.append(os.path.basename(str(path)))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.shutil, "rmtree", recording_rmtree)
    save_checkpoint(tmp_path, 1, _weights(), {"step": 1})
    save_checkpoint(tmp_path, 2, _weights(), {"step": 2})  # retires step 1
    save_checkpoint(tmp_path, 2, _weights(), {"step": 2})  # the same step again (after a resume)
    assert removed and all(name.startswith(".") for name in removed), removed
    visible = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert visible == ["latest", "step_00000002"]


def test_zero_dim_tensors_save_and_load_exactly(tmp_path) -> None:
    # BatchNorm's num_batches_tracked is a 0-dim int64 tensor; the digest once failed on it.
    bn = torch.nn.BatchNorm2d(4)
    bn(torch.randn(2, 4, 3, 3))
    state = bn.state_dict()
    assert state["num_batches_tracked"].dim() == 0
    path = save_weights(state, tmp_path / "bn.safetensors")
    loaded = load_weights(path)
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor) and loaded[name].dtype == tensor.dtype, name
