"""Tests of vitlab.train.precision: which autocast dtype ``amp: auto|off|bf16|fp16`` gives on which device.

Reference: the rule as the issue states it (bf16 where the CPU flags list avx512_bf16 or amx_bf16, or CUDA
with bf16 support; float32 elsewhere), checked on written-out /proc/cpuinfo texts.
"""

from __future__ import annotations

import pytest
import torch

from vitlab.errors import ConfigError
from vitlab.train import precision

FLAGS = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 {extra}\nbogomips\t: 4000\n"


@pytest.mark.parametrize("extra, native", [("", False), ("avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True),
                                           ("avx512f avx512bw", False)])
def test_cpu_bf16_is_read_from_the_cpuinfo_flags(tmp_path, extra, native) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(FLAGS.format(extra=extra))
    assert precision.cpu_has_native_bf16(path) is native


def test_unreadable_cpuinfo_means_no_native_bf16(tmp_path) -> None:
    assert precision.cpu_has_native_bf16(tmp_path / "missing") is False


def test_auto_follows_the_cpu_and_explicit_modes_are_kept(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_amp("auto", cpu) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_amp("auto", cpu) == "off"
    assert precision.resolve_amp("bf16", cpu) == "bf16" and precision.resolve_amp("off", cpu) == "off"
    assert precision.resolve_amp(True, cpu) == "bf16" and precision.resolve_amp(False, cpu) == "off"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        precision.resolve_amp("fp16", cpu)


def test_autocast_bf16_makes_matmuls_bf16_and_off_leaves_float32() -> None:
    x = torch.randn(4, 4)
    with precision.autocast(torch.device("cpu"), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with precision.autocast(torch.device("cpu"), "off"):
        assert (x @ x).dtype == torch.float32
    assert precision.grad_scaler(torch.device("cpu"), "off") is None
