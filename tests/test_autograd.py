"""Tests of vitlab.autograd: the tutorial's LegendreP3 Function, legendre(x, n) with its analytic backward,
and the tutorial demo.

References: the closed forms of P0..P5 (Abramowitz & Stegun table 22.9) and their hand-differentiated
derivatives, numpy.polynomial.legendre.legval, finite differences (gradcheck / gradgradcheck in float64),
and the PyTorch tutorial's published output for the demo
(https://pytorch.org/tutorials/beginner/examples_autograd/polynomial_custom_function.html).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import legendre as npleg

from vitlab.autograd import LegendreP3, fit_legendre_p3, legendre, legendre_and_derivative
from vitlab.errors import ConfigError

CLOSED_FORMS = {
    0: (lambda x: torch.ones_like(x), lambda x: torch.zeros_like(x)),
    1: (lambda x: x, lambda x: torch.ones_like(x)),
    2: (lambda x: (3 * x**2 - 1) / 2, lambda x: 3 * x),
    3: (lambda x: (5 * x**3 - 3 * x) / 2, lambda x: (15 * x**2 - 3) / 2),
    4: (lambda x: (35 * x**4 - 30 * x**2 + 3) / 8, lambda x: (140 * x**3 - 60 * x) / 8),
    5: (lambda x: (63 * x**5 - 70 * x**3 + 15 * x) / 8, lambda x: (315 * x**4 - 210 * x**2 + 15) / 8),
}


def _points() -> torch.Tensor:
    """[−1.5, 1.5] including ±1 and 0 exactly."""
    return torch.cat([torch.linspace(-1.5, 1.5, 61, dtype=torch.float64), torch.tensor([-1.0, 0.0, 1.0])])


def test_legendre_p3_is_the_tutorial_function():
    x = _points().requires_grad_(True)
    y = LegendreP3.apply(x)
    torch.testing.assert_close(y, 0.5 * (5 * x**3 - 3 * x), rtol=0, atol=0)
    g = torch.randn_like(x)
    (grad,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(grad, g * 1.5 * (5 * x.detach() ** 2 - 1), rtol=0, atol=0)
    assert torch.autograd.gradcheck(LegendreP3.apply, (x,))


@pytest.mark.parametrize("n", sorted(CLOSED_FORMS))
def test_legendre_matches_closed_forms_and_their_derivatives(n):
    value, derivative = CLOSED_FORMS[n]
    x = _points().requires_grad_(True)
    y = legendre(x, n)
    torch.testing.assert_close(y, value(x.detach()), rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, derivative(x.detach()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12, 25])
def test_derivative_at_plus_minus_one_is_regular(n):
    """P'_n(±1) = (±1)^{n−1}·n(n+1)/2; the (1 − x²) closed form would divide by zero there."""
    x = torch.tensor([-1.0, 1.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(legendre(x, n).sum(), x)
    expected = torch.tensor([(-1.0) ** (n - 1), 1.0], dtype=torch.float64) * n * (n + 1) / 2
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6, 9])
def test_legendre_passes_gradcheck_and_gradgradcheck(n):
    x = _points().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: legendre(t, n), (x,))
    assert torch.autograd.gradgradcheck(lambda t: legendre(t, n), (x,))


@pytest.mark.parametrize("n", [0, 1, 4, 10, 20, 40])
def test_legendre_agrees_with_numpy_legval(n):
    x = np.linspace(-1.0, 1.0, 1001)
    coefficients = np.zeros(n + 1)
    coefficients[n] = 1.0
    expected = npleg.legval(x, coefficients)
    np.testing.assert_allclose(legendre(torch.from_numpy(x), n).numpy(), expected, rtol=1e-10, atol=1e-12)
    # derivative against numpy's legder
    np.testing.assert_allclose(
        legendre_and_derivative(torch.from_numpy(x), n)[1].numpy(),
        npleg.legval(x, npleg.legder(coefficients)),
        rtol=1e-10,
        atol=1e-9,
    )


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 30), x=st.floats(-2.0, 2.0, allow_nan=False))
def test_legendre_property_matches_legval(n, x):
    coefficients = np.zeros(n + 1)
    coefficients[n] = 1.0
    expected = npleg.legval(x, coefficients)
    got = legendre(torch.tensor([x], dtype=torch.float64), n).item()
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9 * max(1.0, abs(x)) ** n)


def test_legendre_saves_only_its_input():
    x = torch.randn(100, dtype=torch.float64, requires_grad=True)
    packed = []

    def pack(t):
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        legendre(x, 8)
    assert len(packed) == 1 and packed[0].data_ptr() == x.data_ptr()


@pytest.mark.parametrize("n", [-1, 2.5, True, "3"])
def test_invalid_degree_is_a_config_error(n):
    with pytest.raises(ConfigError, match="non-negative integer"):
        legendre(torch.zeros(3), n)


def test_fit_reproduces_the_tutorial_published_result(capsys):
    """The tutorial prints `1999 8.9436...` and `Result: y = ~0 + -2.208526849746704 * P3(~0 + 0.2554861009120941 x)`."""
    fit = fit_legendre_p3()
    out = capsys.readouterr().out.splitlines()
    assert len(fit["history"]) == 20 and [t for t, _ in fit["history"]] == list(range(99, 2000, 100))
    assert out[0].split()[0] == "99" and out[-1].startswith("Result: y = ")
    assert fit["history"][0][1] == pytest.approx(209.958, rel=1e-4)
    assert fit["loss"] == pytest.approx(8.94364, rel=1e-5)
    assert fit["b"] == pytest.approx(-2.208526849746704, rel=1e-5)
    assert fit["d"] == pytest.approx(0.2554861009120941, rel=1e-5)
    assert abs(fit["a"]) < 1e-6 and abs(fit["c"]) < 1e-6
    # the loss returned is the summed squared error of the run's last forward pass
    losses = [loss for _, loss in fit["history"]]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert math.isfinite(fit["loss"])


def test_cli_demo_legendre_writes_the_fit_png(tmp_path, capsys):
    from vitlab.cli import main

    assert main(["demo", "legendre", "--out", str(tmp_path)]) == 0
    png = tmp_path / "legendre_fit.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "1999 " in out and "Result: y = " in out and str(png) in out
