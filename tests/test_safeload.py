"""Tests of vitlab.safeload: PyTorch pickles loaded with weights_only=True, refusals in one line."""

from __future__ import annotations

import os
import pickle
import warnings

import pytest
import torch

from vitlab.errors import CheckpointError
from vitlab.safeload import load_torch_file


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_plain_tensors_load_from_zip_and_legacy_files(tmp_path, legacy):
    # Reference: the tensors that were saved.
    state = {"w": torch.arange(6.0).reshape(2, 3), "n": 3, "names": ["a", "b"]}
    path = tmp_path / "s.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    loaded = load_torch_file(path)
    assert torch.equal(loaded["w"], state["w"]) and loaded["n"] == 3 and loaded["names"] == ["a", "b"]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_code_is_refused_in_vitlabs_words_without_warnings(tmp_path, protocol):
    # Reference: torch.load(weights_only=True) refuses a pickle naming os.system; the message must be one
    # line in vitlab's words, with none of torch's advice and no UserWarning.
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps({"x": _Evil(marker)}, protocol=protocol))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError) as info:
            load_torch_file(path, what="weights file")
    assert str(info.value) == (f"weights file {path} refused: it contains code or objects that weights_only loading "
                               "does not allow; do not load it unless you trust its source")
    assert not marker.exists()


def test_missing_and_damaged_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint file .*nope.pt does not exist"):
        load_torch_file(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match=r"junk.pt is damaged or not a PyTorch file \(\w+\)"):
        load_torch_file(junk)
