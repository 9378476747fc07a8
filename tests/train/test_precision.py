"""Tests of vitlab.train.precision: which precision ``amp: auto|off|bf16|fp16`` gives, and how ``auto`` decides.

References: the rule as the module states it (a probe only where the device has native bf16; bf16 only where
its step is at least BF16_MIN_SPEEDUP times faster), checked with the capability check and the timer replaced
(a CPU that has bf16 and where it is slower, one where it is faster, one without it), so that these tests
pass, and test the same thing, on every CPU; written-out /proc/cpuinfo texts for the flag reading; and for the
engine, a run with the precision set explicitly is the reference for ``auto`` choosing it (bit-identical).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

from tests.train.resume import crash_resume_compare
from vitlab.errors import ConfigError
from vitlab.train import engine, precision
from vitlab.train.checkpoint import load_weights
from vitlab.train.tasks.image_config import ImageConfig

FLAGS = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 {extra}\nbogomips\t: 4000\n"
CPU = torch.device("cpu")


@pytest.mark.parametrize("extra, native", [("", False), ("avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True),
                                           ("avx512f avx512bw", False)])
def test_cpu_bf16_is_read_from_the_cpuinfo_flags(tmp_path, monkeypatch, extra, native) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")  # the flags decide
    path = tmp_path / "cpuinfo"
    path.write_text(FLAGS.format(extra=extra))
    assert precision.cpu_has_native_bf16(path) is native


def test_unreadable_cpuinfo_means_no_native_bf16(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert precision.cpu_has_native_bf16(tmp_path / "missing") is False


@pytest.mark.parametrize("capability", ["DEFAULT", "AVX2", "SVE256", "VSX"])
def test_below_atens_avx512_level_there_is_no_native_bf16_whatever_the_flags(tmp_path, monkeypatch, capability) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    path = tmp_path / "cpuinfo"
    path.write_text(FLAGS.format(extra="avx512f avx512_bf16 amx_bf16"))
    assert precision.cpu_has_native_bf16(path) is False


def test_this_cpus_bf16_flags_come_with_atens_avx512_level() -> None:
    """Reference: this machine's own /proc/cpuinfo. What makes the capability a valid first check: a CPU whose
    flags list avx512_bf16 or amx_bf16 is at ATen's AVX512 level (unless ATEN_CPU_CAPABILITY caps it)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    flags = next((set(line.partition(":")[2].split()) for line in text.splitlines() if line.startswith("flags")), set())
    if not flags & {"avx512_bf16", "amx_bf16"}:
        pytest.skip("this CPU has no bf16 instructions")
    if os.environ.get("ATEN_CPU_CAPABILITY"):
        pytest.skip("ATEN_CPU_CAPABILITY caps ATen's level in this process")
    assert torch.backends.cpu.get_cpu_capability() == "AVX512"
    assert precision.cpu_has_native_bf16() is True


def _never_called(modes):  # noqa: ANN001, ANN202
    raise AssertionError("the probe ran where it must not")


def _native(monkeypatch: pytest.MonkeyPatch, value: bool) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda device: value)


def test_explicit_modes_never_probe_and_fp16_needs_cuda(monkeypatch) -> None:
    _native(monkeypatch, True)
    for setting, mode in (("off", "off"), ("bf16", "bf16"), (True, "bf16"), (False, "off")):
        choice = precision.choose_amp(setting, CPU, _never_called)
        assert choice.amp == mode and choice.step_seconds == {} and choice.probe_seconds == 0.0
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        precision.choose_amp("fp16", CPU, _never_called)
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        precision.choose_amp("fp8", CPU)


def test_auto_without_native_bf16_is_float32_without_a_probe(monkeypatch) -> None:
    _native(monkeypatch, False)
    choice = precision.choose_amp("auto", CPU, _never_called)
    assert choice.amp == "off" and choice.setting == "auto" and "no probe" in choice.reason


@pytest.mark.parametrize("off_s, bf16_s, picked", [
    (0.100, 0.240, "off"),   # bf16 2.4x slower: the default recipe's ViT on a bf16 CPU before the kernel rule
    (0.100, 0.098, "off"),   # bf16 barely faster (below BF16_MIN_SPEEDUP)
    (0.100, 0.100 / precision.BF16_MIN_SPEEDUP, "bf16"),  # exactly at the threshold
    (0.100, 0.060, "bf16"),  # clearly faster (ViT-Ti/4 at batch 128)
])
def test_auto_with_native_bf16_picks_bf16_only_where_clearly_faster(monkeypatch, off_s, bf16_s, picked) -> None:
    _native(monkeypatch, True)
    asked = []

    def timer(modes):  # noqa: ANN001, ANN202
        asked.append(tuple(modes))
        return {"off": off_s, "bf16": bf16_s}

    choice = precision.choose_amp("auto", CPU, timer)
    assert asked == [("off", "bf16")]
    assert choice.amp == picked and choice.step_seconds == {"off": off_s, "bf16": bf16_s}
    assert f"{off_s * 1e3:.1f} ms" in choice.reason and choice.probe_seconds >= 0.0
    assert choice.line.startswith(f"precision {'float32' if picked == 'off' else 'bf16'} (amp: auto): probe:")


def test_decision_is_cached_per_device_threads_and_key(monkeypatch) -> None:
    _native(monkeypatch, True)
    calls = []

    def timer(modes):  # noqa: ANN001, ANN202
        calls.append(1)
        return {"off": 0.1, "bf16": 0.05}

    first = precision.choose_amp("auto", CPU, timer, cache_key=("model A", (8, 3, 32, 32)))
    again = precision.choose_amp("auto", CPU, timer, cache_key=("model A", (8, 3, 32, 32)))
    assert len(calls) == 1 and again.amp == first.amp and "cached" in again.reason and again.probe_seconds == 0.0
    precision.choose_amp("auto", CPU, timer, cache_key=("model A", (16, 3, 32, 32)))  # another batch shape
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads != 1 else 2)
        precision.choose_amp("auto", CPU, timer, cache_key=("model A", (8, 3, 32, 32)))  # other threads
    finally:
        torch.set_num_threads(threads)
    precision.choose_amp("auto", CPU, timer)  # no key: never cached
    assert len(calls) == 4


def test_timing_steps_changes_no_parameter_optimizer_state_or_random_stream() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    F.cross_entropy(model(x), y).backward()
    optimizer.step()  # some optimizer state to keep
    params = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    state = {k: {n: t.clone() for n, t in s.items()} for k, s in optimizer.state_dict()["state"].items()}
    rng = torch.get_rng_state()
    seconds = precision.time_training_steps(model, optimizer, lambda m: F.cross_entropy(m(x), y), CPU, ("off", "bf16"))
    assert set(seconds) == {"off", "bf16"} and all(s > 0 for s in seconds.values())
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k]), k
    for k, s in optimizer.state_dict()["state"].items():
        for n, t in s.items():
            assert torch.equal(t, state[k][n]), (k, n)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_evaluation_uses_the_recorded_precision_or_says_why_not() -> None:
    assert precision.evaluation_amp("bf16", CPU) == ("bf16", None)
    assert precision.evaluation_amp("off", CPU) == ("off", None)
    mode, note = precision.evaluation_amp("fp16", CPU)
    assert mode == "off" and "fp16" in note and "float32" in note


def test_attention_kernel_rule_is_fixed_per_device_and_precision() -> None:
    assert precision.attention_backends(CPU, "bf16") == [SDPBackend.MATH]
    assert precision.attention_backends(CPU, "off") is None
    assert precision.attention_backends(torch.device("cuda"), "bf16") is None


def test_bf16_math_kernel_equals_the_default_kernel_within_bf16_tolerance() -> None:
    # Reference: PyTorch's default SDPA kernel choice under the same autocast; both against float64.
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 16) for _ in range(3))
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double()).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        default = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16()).float()
    with precision.autocast(CPU, "bf16"):
        ruled = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16()).float()
    torch.testing.assert_close(ruled, exact, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(ruled, default, rtol=2e-2, atol=2e-2)


def test_autocast_bf16_makes_matmuls_bf16_and_off_leaves_float32() -> None:
    x = torch.randn(4, 4)
    with precision.autocast(CPU, "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with precision.autocast(CPU, "off"):
        assert (x @ x).dtype == torch.float32
    assert precision.grad_scaler(CPU, "off") is None


# ---------------------------------------------------------------------------------------------- in the engine
TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}


def _tiny(**overrides) -> ImageConfig:  # noqa: ANN003
    base = dict(epochs=2, batch_size=64, model_args=dict(TINY), warmup_epochs=1.0, threads=1, log_every=5,
                checkpoint_every=1)
    base.update(overrides)
    return ImageConfig(**base)


def _force(monkeypatch: pytest.MonkeyPatch, picked: str) -> list[dict[str, float]]:
    """Native bf16, and the real probe (on copies of the run's model) with its result scaled so it picks ``picked``."""
    _native(monkeypatch, True)
    real = precision.time_training_steps
    measured: list[dict[str, float]] = []

    def timer(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seconds = real(*args, **kwargs)
        measured.append(seconds)
        other = "bf16" if picked == "off" else "off"
        return {**seconds, other: 10.0 * max(seconds.values())}

    monkeypatch.setattr(precision, "time_training_steps", timer)
    return measured


@pytest.mark.parametrize("picked", ["off", "bf16"])
def test_auto_choosing_a_precision_is_bit_identical_to_setting_it(tmp_path, monkeypatch, picked) -> None:
    measured = _force(monkeypatch, picked)
    auto = engine.train(_tiny(), tmp_path / "auto", quiet=True)
    assert len(measured) == 1 and auto["amp"] == picked and auto["amp_choice"]["setting"] == "auto"
    explicit = engine.train(_tiny(amp=picked), tmp_path / "explicit", quiet=True)
    assert explicit["amp_choice"]["step_seconds"] == {}
    a = load_weights(tmp_path / "auto" / "model.safetensors")
    b = load_weights(tmp_path / "explicit" / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert auto["test_acc1"] == explicit["test_acc1"] and auto["test_ece"] == explicit["test_ece"]
    info = json.loads((tmp_path / "auto" / "run.json").read_text())
    assert info["amp"] == picked and info["amp_choice"]["step_seconds"] == auto["amp_choice"]["step_seconds"]
    assert set(info["amp_choice"]["step_seconds"]) == {"off", "bf16"}


def test_the_choice_is_printed_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    _force(monkeypatch, "bf16")
    engine.train(_tiny(epochs=1), tmp_path / "run", quiet=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("vitlab: precision")]
    assert len(lines) == 1 and lines[0].startswith("vitlab: precision bf16 (amp: auto): probe: float32 step")


def test_resume_reuses_the_recorded_precision_even_where_a_new_probe_would_flip_it(tmp_path, monkeypatch) -> None:
    _force(monkeypatch, "bf16")

    def flip() -> None:
        _force(monkeypatch, "off")
        precision._CACHE.clear()

    crash_resume_compare(_tiny(epochs=3), tmp_path, monkeypatch, crash_after=1, expect_latest="step_00000019",
                         before_resume=flip)
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["amp"] == "bf16" and "recorded" in summary["amp_choice"]["reason"]
