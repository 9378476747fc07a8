"""CUDA checks, run by ``make gpu-check`` (``pytest -m gpu``); every ``gpu`` test is skipped without a CUDA GPU.

References: the same computation on the CPU in float64 (ViT forward/backward, attention), AdamW written
out from Loshchilov & Hutter 2019 (arXiv:1711.05101, Algorithm 2, decoupled weight decay) in float64,
and bitwise equality for a pinned host-to-device copy. Tolerances are stated per test with their reason.
The last tests run everywhere: they check ``benchmarks/gpu_check.py`` itself (the one-line refusal without
a GPU, the section it writes).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vitlab
from vitlab.nn.attention import Attention

ROOT = Path(__file__).resolve().parent.parent


def gpu(test):  # noqa: ANN001, ANN201 - a decorator
    """Mark ``test`` as a GPU test, skipped without CUDA."""
    test = pytest.mark.gpu(test)
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run by make gpu-check)")(test)


DEVICE = "cuda"


@pytest.fixture()
def no_tf32():  # noqa: ANN201 - a fixture
    """Full fp32 matmuls and convolutions (TF32 keeps 10 mantissa bits and would need 1e-3 tolerances)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """``||got - ref|| / ||ref||`` in float64 on the CPU."""
    got, ref = got.detach().cpu().double(), ref.detach().cpu().double()
    return float((got - ref).norm() / ref.norm().clamp_min(1e-30))


@gpu
def test_vit_forward_backward_on_cuda_matches_cpu_float64(no_tf32: None) -> None:
    """ViT-Ti/4 logits and every parameter gradient on CUDA (fp32) against the CPU in float64.

    fp32 has unit roundoff 6e-8; over 12 blocks of width 192 the relative error stays far below 1e-4
    (logits) and 1e-3 (gradients, which sum over the batch and the tokens).
    """
    torch.manual_seed(0)
    reference = vitlab.create_model("vit_tiny_patch4_32").double().eval()
    model = vitlab.create_model("vit_tiny_patch4_32").to(DEVICE).eval()
    model.load_state_dict({k: v.float() for k, v in reference.state_dict().items()})
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 10, (4,), generator=g)

    ref_logits = reference(images)
    torch.nn.functional.cross_entropy(ref_logits, labels).backward()
    logits = model(images.float().to(DEVICE))
    torch.nn.functional.cross_entropy(logits, labels.to(DEVICE)).backward()

    assert logits.device.type == "cuda" and logits.dtype == torch.float32
    assert _rel_err(logits, ref_logits) < 1e-4
    ref_params = dict(reference.named_parameters())
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert _rel_err(param.grad, ref_params[name].grad) < 1e-3, name


@gpu
def test_fused_adamw_step_on_cuda_matches_the_algorithm_in_float64() -> None:
    """Three steps of ``torch.optim.AdamW(fused=True)`` on CUDA against Loshchilov & Hutter's Algorithm 2.

    Per step: p <- p - lr*wd*p; m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
    p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps). fp32 state: relative error < 1e-5.
    """
    lr, betas, eps, wd = 1e-3, (0.9, 0.999), 1e-8, 0.05
    g = torch.Generator().manual_seed(2)
    start = torch.randn(1000, generator=g, dtype=torch.float64)
    grads = [torch.randn(1000, generator=g, dtype=torch.float64) for _ in range(3)]

    param = torch.nn.Parameter(start.float().to(DEVICE))
    optimizer = torch.optim.AdamW([param], lr=lr, betas=betas, eps=eps, weight_decay=wd, fused=True)
    for grad in grads:
        param.grad = grad.float().to(DEVICE)
        optimizer.step()

    p, m, v = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    for t, grad in enumerate(grads, start=1):
        p = p - lr * wd * p
        m = betas[0] * m + (1 - betas[0]) * grad
        v = betas[1] * v + (1 - betas[1]) * grad * grad
        p = p - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
    assert _rel_err(param, p) < 1e-5
    assert _rel_err(param - start.float().to(DEVICE), p - start) < 1e-4  # the update itself, not just p


@gpu
def test_attention_sdpa_under_bf16_autocast_on_cuda_matches_float64() -> None:
    """vitlab's Attention (F.scaled_dot_product_attention) under CUDA bf16 autocast against float64 on the CPU.

    bf16 keeps 8 significant bits (unit roundoff 2**-9 = 0.002); through the qkv projection, softmax and
    output projection the relative error stays below 3e-2. The output must be bf16 (autocast applied).
    """
    torch.manual_seed(3)
    reference = Attention(dim=192, num_heads=3).double()
    attn = Attention(dim=192, num_heads=3).to(DEVICE)
    attn.load_state_dict({k: v.float() for k, v in reference.state_dict().items()})
    x = torch.randn(8, 65, 192, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = attn(x.float().to(DEVICE))
    assert out.dtype == torch.bfloat16
    ref = reference(x)
    assert _rel_err(out, ref) < 3e-2
    # The manual path (explicit softmax weights) agrees with the fused kernel under the same autocast.
    with torch.autocast("cuda", dtype=torch.bfloat16):
        manual, weights = attn(x.float().to(DEVICE), need_weights=True)
    assert _rel_err(manual, ref) < 3e-2
    torch.testing.assert_close(weights.float().sum(-1), torch.ones(8, 3, 65, device=DEVICE), atol=2e-2, rtol=0)


@gpu
def test_pinned_host_to_device_transfer_is_exact_and_asynchronous_safe() -> None:
    """A pinned batch copied with non_blocking=True (as the training loop copies its batches) arrives bit-exact."""
    g = torch.Generator().manual_seed(5)
    host = torch.randn(64, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    pinned, pinned_labels = host.pin_memory(), labels.pin_memory()
    assert pinned.is_pinned() and pinned_labels.is_pinned()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        device_images = pinned.to(DEVICE, non_blocking=True)
        device_labels = pinned_labels.to(DEVICE, non_blocking=True)
    stream.synchronize()
    assert torch.equal(device_images.cpu(), host) and torch.equal(device_labels.cpu(), labels)
    # A model consumes it on the default stream after waiting for the copy stream.
    torch.cuda.current_stream().wait_stream(stream)
    total = float(device_images.double().sum())
    assert math.isclose(total, float(host.double().sum()), rel_tol=0, abs_tol=1e-9)


# ------------------------------------------------------------------------------------------
# benchmarks/gpu_check.py itself (no GPU needed)
# ------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU, so gpu_check would run")
def test_gpu_check_without_cuda_prints_one_line_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,  # importing torch is slow on a loaded machine
    )
    assert proc.returncode == 2
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "no CUDA GPU" in proc.stderr
    assert not out.exists()


def test_gpu_check_section_lists_every_step_and_the_benchmark_rows() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.gpu_check import render_section
    finally:
        sys.path.remove(str(ROOT))
    steps = [
        dict(name="pytest -m gpu", status="passed", seconds=20.4, result="4 passed in 20.00s"),
        dict(name="bench", status="passed", seconds=150.0, result="1 rows, below"),
        dict(name="torchrun", status="FAILED (exit 1)", seconds=12.0, result="world size n/a"),
        dict(name="default recipe", status="skipped (only 3 s of the budget left)", seconds=0.0),
    ]
    rows = [dict(name="ViT step", value=1000.0, reference=900.0, ratio=1.11, target="vitlab >= 1.1x timm")]
    section = render_section("H200", {"gpu": "H200"}, steps, rows, 480)
    assert section.startswith("## GPU check (H200)")
    assert "| pytest -m gpu | passed | 20 | 4 passed in 20.00s |" in section
    assert "| torchrun | FAILED (exit 1) | 12 |  |" in section
    assert "| default recipe | skipped (only 3 s of the budget left) | 0 |  |" in section
    assert "Total 182 s of the 480 s budget." in section
    assert "| ViT step | 1000 | 900 | 1.11 | vitlab >= 1.1x timm |" in section
