"""Tests of vitlab.nn.activations: Mish and Swish (modules, input-only-saving autograd Functions) and the
activation registry.

References: PyTorch's built-ins ``F.mish`` / ``F.silu`` (forward and their autograd gradients), the
formulas written out independently in float64 (Mish paper eq. 1, and its derivative eq. 2 in the
e^x·ω/δ² form, which is algebraically different from the tanh/σ form the code uses), finite differences
(``gradcheck`` / ``gradgradcheck`` in float64) and ``torch.autograd.graph.saved_tensors_hooks`` for what
autograd stores.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import vitlab
from vitlab.errors import ConfigError
from vitlab.nn import Mish, MishFunction, Swish, SwishFunction, get_activation, list_activations
from vitlab.nn.activations import mish_derivative, swish_derivative

MISH_PATHS = {
    "Mish()": Mish(),
    "Mish(memory_efficient=True)": Mish(memory_efficient=True),
    "MishFunction": MishFunction.apply,
}
SWISH_PATHS = {
    "Swish()": Swish(),
    "Swish(memory_efficient=True)": Swish(memory_efficient=True),
    "SwishFunction": SwishFunction.apply,
}


def _grid(dtype=torch.float64) -> torch.Tensor:
    return torch.cat([torch.linspace(-30, 30, 2001, dtype=dtype), torch.tensor([-100.0, 100.0], dtype=dtype)])


def _mish_paper(x: torch.Tensor) -> torch.Tensor:
    """Mish paper eq. 1 with softplus written as max(x, 0) + log1p(exp(−|x|)) (stable, no threshold)."""
    softplus = x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))
    return x * torch.tanh(softplus)


def _mish_derivative_paper(x: torch.Tensor) -> torch.Tensor:
    """Mish paper eq. 2: f'(x) = e^x·ω/δ², ω = 4(x+1) + 4e^{2x} + e^{3x} + e^x(4x+6), δ = 2e^x + e^{2x} + 2."""
    e = torch.exp(x)
    omega = 4 * (x + 1) + 4 * e**2 + e**3 + e * (4 * x + 6)
    delta = 2 * e + e**2 + 2
    return e * omega / delta**2


@pytest.fixture(params=["chunked-cpu", "fused-kernels"])
def cpu_path(request):
    """Run a test on both CPU implementations of MishFunction: the chunked exp-only path (taken with one
    intra-op thread) and PyTorch's fused kernels (taken with several)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1 if request.param == "chunked-cpu" else max(2, before))
    yield request.param
    torch.set_num_threads(before)



# ------------------------------------------------------------------------------------------ Mish values


@pytest.mark.parametrize("path", MISH_PATHS.values(), ids=MISH_PATHS.keys())
def test_mish_forward_equals_f_mish_and_the_paper_formula_in_float64(path, cpu_path):
    x = _grid()
    y = path(x)
    torch.testing.assert_close(y, F.mish(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, _mish_paper(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", MISH_PATHS.values(), ids=MISH_PATHS.keys())
def test_mish_gradient_equals_the_paper_derivative_and_f_mish_autograd(path, cpu_path):
    x = torch.linspace(-20, 20, 801, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(path(x).sum(), x)
    (reference,) = torch.autograd.grad(F.mish(x).sum(), x)
    torch.testing.assert_close(grad, _mish_derivative_paper(x.detach()), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, reference, rtol=1e-12, atol=1e-12)


def test_mish_derivative_formula_equals_paper_eq2():
    """The tanh/σ form used in backward, d/dx = tanh(sp) + x·σ(x)·(1 − tanh²(sp)), equals eq. 2."""
    x = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    torch.testing.assert_close(mish_derivative(x), _mish_derivative_paper(x), rtol=1e-12, atol=1e-12)


def test_fused_and_explicit_backward_paths_agree(cpu_path):
    """Backward without create_graph uses the fused kernel, with it the explicit formula: same numbers."""
    for function in (MishFunction, SwishFunction):
        x = torch.randn(1000, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(0))
        g = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        (fused,) = torch.autograd.grad(function.apply(x), x, g)
        (explicit,) = torch.autograd.grad(function.apply(x), x, g, create_graph=True)
        assert explicit.requires_grad and not fused.requires_grad
        torch.testing.assert_close(fused, explicit.detach(), rtol=1e-12, atol=1e-12)


def test_mish_function_passes_gradcheck_and_gradgradcheck(cpu_path):
    """Reference: central finite differences in float64, incl. the saturated regions and x = 0."""
    x = torch.cat([torch.linspace(-25, 25, 41, dtype=torch.float64), torch.tensor([0.0, -1.19, 19.9, 20.1])])
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(MishFunction.apply, (x,))
    assert torch.autograd.gradgradcheck(MishFunction.apply, (x,))


def test_mish_minimum_matches_the_root_of_the_closed_form_derivative(cpu_path):
    """Reference: the paper's minimum, mish(x*) ≈ −0.30884 at x* ≈ −1.1924, where x* is the root of eq. 2's
    numerator ω(x) = 4(x+1) + 4e^{2x} + e^{3x} + e^x(4x+6) (e^x/δ² > 0), found by bisection in float64."""

    def omega(x: float) -> float:
        e = math.exp(x)
        return 4 * (x + 1) + 4 * e**2 + e**3 + e * (4 * x + 6)

    lo, hi = -2.0, -1.0
    assert omega(lo) < 0 < omega(hi)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if omega(mid) < 0 else (lo, mid)
    x_star = 0.5 * (lo + hi)
    assert x_star == pytest.approx(-1.1924, abs=5e-5)

    x = torch.tensor([x_star], dtype=torch.float64, requires_grad=True)
    y = MishFunction.apply(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert y.item() == pytest.approx(-0.30884, abs=5e-6)
    assert abs(grad.item()) < 1e-12
    # and it is the global minimum over a fine grid
    grid = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
    values = Mish()(grid)
    assert values.min().item() >= y.item() - 1e-12
    assert grid[values.argmin()].item() == pytest.approx(x_star, abs=2e-4)


# ------------------------------------------------------------------------------------------------ Swish


@pytest.mark.parametrize("path", SWISH_PATHS.values(), ids=SWISH_PATHS.keys())
def test_swish_matches_f_silu_and_the_formula_in_float64(path):
    x = _grid().requires_grad_(True)
    y = path(x)
    torch.testing.assert_close(y, F.silu(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, x / (1 + torch.exp(-x)), rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(y.sum(), x)
    (reference,) = torch.autograd.grad(F.silu(x).sum(), x)
    torch.testing.assert_close(grad, reference, rtol=1e-12, atol=1e-12)
    s = 1 / (1 + torch.exp(-x.detach()))
    torch.testing.assert_close(swish_derivative(x.detach()), s + x.detach() * s * (1 - s), rtol=1e-12, atol=1e-12)


def test_swish_function_passes_gradcheck_and_gradgradcheck():
    x = torch.cat([torch.linspace(-25, 25, 41, dtype=torch.float64), torch.tensor([0.0])]).requires_grad_(True)
    assert torch.autograd.gradcheck(SwishFunction.apply, (x,))
    assert torch.autograd.gradgradcheck(SwishFunction.apply, (x,))


# ----------------------------------------------------------------------------------------------- memory


def _saved(fn, x: torch.Tensor) -> list[torch.Tensor]:
    packed: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return packed


@pytest.mark.parametrize("function", [MishFunction, SwishFunction])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_functions_save_only_their_input(function, dtype):
    x = torch.randn(3, 257, generator=torch.Generator().manual_seed(0)).to(dtype).requires_grad_(True)
    packed = _saved(function.apply, x)
    assert sum(t.numel() * t.element_size() for t in packed) == x.numel() * x.element_size()
    assert len(packed) == 1 and packed[0].data_ptr() == x.data_ptr()


def test_naive_composition_saves_more_than_the_function():
    """The comparison the Function is for: x·tanh(softplus(x)) also keeps tanh's output (and x twice)."""
    x = torch.randn(1000, requires_grad=True)
    naive = _saved(lambda t: t * torch.tanh(F.softplus(t)), x)
    distinct = {t.data_ptr() for t in naive}
    assert len(distinct) >= 2
    assert sum(t.numel() * t.element_size() for t in naive) >= 2 * x.numel() * x.element_size()


# --------------------------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("path", {**MISH_PATHS, **SWISH_PATHS}.values(), ids={**MISH_PATHS, **SWISH_PATHS}.keys())
def test_finite_at_plus_minus_100_in_every_precision(path, dtype, cpu_path):
    x = torch.tensor([-100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0], dtype=dtype, requires_grad=True)
    y = path(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert y.dtype == dtype and grad.dtype == dtype
    assert torch.isfinite(y).all() and torch.isfinite(grad).all()
    # the asymptotes: f(x) → x and f'(x) → 1 as x → +∞; f(x) → 0 and f'(x) → 0 as x → −∞
    assert y[-1].item() == 100.0 and grad[-1].item() == 1.0
    assert abs(y[0].item()) < 1e-30 and abs(grad[0].item()) < 1e-30


@pytest.mark.parametrize("function, reference", [(MishFunction, F.mish), (SwishFunction, F.silu)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32_and_rounded_once(function, reference, dtype, cpu_path):
    """Upcasting means the result is the Function's float32 value rounded to the input dtype, exactly; and
    that is within one rounding of the built-in's float32 value."""
    x = (torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 4).to(dtype).requires_grad_(True)
    g = torch.randn(4096, generator=torch.Generator().manual_seed(1)).to(dtype)
    y = function.apply(x)
    (grad,) = torch.autograd.grad(y, x, g)
    x32 = x.detach().float().requires_grad_(True)
    y32 = function.apply(x32)
    (grad32,) = torch.autograd.grad(y32, x32, g.float())
    torch.testing.assert_close(y, y32.to(dtype), rtol=0, atol=0)
    torch.testing.assert_close(grad, grad32.to(dtype), rtol=0, atol=0)
    x_ref = x.detach().float().requires_grad_(True)
    y_ref = reference(x_ref)
    (grad_ref,) = torch.autograd.grad(y_ref, x_ref, g.float())
    torch.testing.assert_close(y, y_ref.to(dtype))  # default tolerances of the low-precision dtype
    torch.testing.assert_close(grad, grad_ref.to(dtype))


@pytest.mark.parametrize("function", [MishFunction, SwishFunction])
def test_under_cpu_autocast_dtype_follows_the_input_and_gradients_match_float32(function, cpu_path):
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 16)
    x = torch.randn(8, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = linear(x)
        y = function.apply(h)
        assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
        loss = y.float().square().sum()
    (grad,) = torch.autograd.grad(loss, x)
    x_ref = x.detach().clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad(function.apply(linear(x_ref)).square().sum(), x_ref)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
    torch.testing.assert_close(grad, grad_ref, rtol=5e-2, atol=5e-2)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=4),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    scale=st.floats(0.1, 50.0),
)
def test_functions_match_builtins_for_any_shape(shape, dtype, scale):
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(len(shape))) * scale).to(dtype)
    for function, reference in ((MishFunction, F.mish), (SwishFunction, F.silu)):
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = function.apply(xa), reference(xb)
        assert ya.shape == x.shape and ya.dtype == dtype
        ya.sum().backward()
        yb.sum().backward()
        torch.testing.assert_close(ya, yb)
        torch.testing.assert_close(xa.grad, xb.grad)


# ---------------------------------------------------------------------------------------- torch.compile


def _compile_or_skip(fn, backend: str):
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this platform")
    return torch.compile(fn, backend=backend, fullgraph=True)


def _check_compiled(backend: str) -> None:
    compiled = _compile_or_skip(lambda t: MishFunction.apply(t) * 2 + SwishFunction.apply(t), backend)
    x = torch.randn(32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    try:
        y = compiled(x)
    except torch._dynamo.exc.BackendCompilerFailed as error:  # e.g. no C++ compiler for inductor
        pytest.skip(f"backend {backend} unavailable here: {str(error).splitlines()[0]}")
    (grad,) = torch.autograd.grad(y.sum(), x)
    x_ref = x.detach().clone().requires_grad_(True)
    y_ref = F.mish(x_ref) * 2 + F.silu(x_ref)
    (grad_ref,) = torch.autograd.grad(y_ref.sum(), x_ref)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(grad, grad_ref)


def test_functions_trace_under_torch_compile_without_graph_breaks():
    """fullgraph=True: dynamo + AOTAutograd capture forward and backward of the Functions (eager backend)."""
    torch._dynamo.reset()
    _check_compiled("aot_eager")


@pytest.mark.slow
def test_functions_compile_with_inductor():
    torch._dynamo.reset()
    _check_compiled("inductor")


# ------------------------------------------------------------------------------------------- registry


def test_registry_keeps_every_name_and_returns_vitlab_modules():
    assert {"relu", "gelu", "gelu_tanh", "silu", "swish", "mish"} <= set(list_activations())
    assert list_activations() == sorted(list_activations())
    for name in list_activations():
        module = get_activation(name)
        assert isinstance(module, torch.nn.Module)
        assert module is not get_activation(name)  # a fresh module each time
    assert type(get_activation("MISH")) is Mish and not get_activation("mish").memory_efficient
    assert get_activation("mish_memory_efficient").memory_efficient
    assert type(get_activation("swish")) is Swish and type(get_activation("silu")) is Swish
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    torch.testing.assert_close(get_activation("gelu_tanh")(x), F.gelu(x, approximate="tanh"))
    torch.testing.assert_close(get_activation("relu")(x), x.clamp_min(0))


def test_unknown_activation_is_a_config_error_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown activation 'mishh'; did you mean 'mish'\?"):
        get_activation("mishh")


def test_vit_passes_act_through_to_every_mlp():
    model = vitlab.create_model("vit_tiny_patch4_32", act="mish", depth=2)
    acts = [block.mlp.act for block in model.blocks]
    assert len(acts) == 2 and all(type(a) is Mish for a in acts)
    x = torch.randn(2, 3, 32, 32)
    assert torch.isfinite(model(x)).all()


# ------------------------------------------------------------------------------------------------- plot


def test_cli_plot_activations_writes_a_png(tmp_path, capsys):
    from vitlab.cli import main

    out = tmp_path / "act.png"
    assert main(["plot", "activations", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert str(out) in capsys.readouterr().out


def test_cpu_path_spans_chunks_and_non_contiguous_inputs(cpu_path):
    """More elements than one CPU chunk, and a transposed (non-contiguous) input: still F.mish, 1e-12."""
    from vitlab.nn import activations

    base = torch.randn(3, activations._CPU_CHUNK, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = (base * 8).T.requires_grad_(True)  # (CHUNK, 3), non-contiguous, 3 chunks
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = MishFunction.apply(x)
    (grad,) = torch.autograd.grad(y, x, g)
    (grad_ref,) = torch.autograd.grad(F.mish(x), x, g)
    assert y.shape == x.shape
    torch.testing.assert_close(y, F.mish(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)
