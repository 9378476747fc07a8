"""Custom autograd Functions: Legendre polynomials with analytic backward passes.

The PyTorch tutorial "Defining New autograd Functions"
(https://pytorch.org/tutorials/beginner/examples_autograd/polynomial_custom_function.html) fits
y = a + b·P3(c + d·x) to sin(x) on [−π, π] with a hand-written Function for the Legendre polynomial

    P3(x)  = ½(5x³ − 3x),        P3'(x) = 3/2·(5x² − 1).

:class:`LegendreP3` is that Function. :func:`legendre` generalises it to any degree n ≥ 0 with
Bonnet's three-term recurrence (Abramowitz & Stegun 22.7.10)

    P₀ = 1,  P₁ = x,  (k+1)·P_{k+1} = (2k+1)·x·P_k − k·P_{k−1},

and an analytic backward from the derivative recurrence (A&S 22.8.5 combined with 22.7.10)

    P'₀ = 0,  P'₁ = 1,  P'_{k+1} = P'_{k−1} + (2k+1)·P_k,

which, unlike the closed form P'_n = n·(P_{n−1} − x·P_n)/(1 − x²), is regular at x = ±1
(where P'_n(±1) = (±1)^{n−1}·n(n+1)/2). Both Functions save only their input.
"""

from __future__ import annotations

import math

import torch

from vitlab.errors import ConfigError


class LegendreP3(torch.autograd.Function):
    """P3(x) = ½(5x³ − 3x), backward grad·3/2·(5x² − 1), exactly as in the PyTorch tutorial.

    ``LegendreP3.apply(x)``; x: any shape. Output: same shape.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - ctx is autograd's
        ctx.save_for_backward(x)
        return 0.5 * (5 * x**3 - 3 * x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        return grad_output * 1.5 * (5 * x**2 - 1)


def legendre_and_derivative(x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """P_n(x) and P'_n(x) by the value and derivative recurrences (plain, differentiable tensor ops).

    Args:
        x: points, any shape.
        n: degree, n ≥ 0.

    Returns:
        (P_n(x), P'_n(x)), each of x's shape and dtype.
    """
    p_prev, p = torch.ones_like(x), x.clone()  # P₀, P₁
    d_prev, d = torch.zeros_like(x), torch.ones_like(x)  # P'₀, P'₁
    if n == 0:
        return p_prev, d_prev
    for k in range(1, n):
        p_next = ((2 * k + 1) * x * p - k * p_prev) / (k + 1)
        d_next = d_prev + (2 * k + 1) * p
        p_prev, p, d_prev, d = p, p_next, d, d_next
    return p, d


class LegendreFunction(torch.autograd.Function):
    """P_n(x) with the analytic backward grad·P'_n(x); saves only x and recomputes in backward.

    ``LegendreFunction.apply(x, n)``; x: any shape, n: int ≥ 0. Output: x's shape.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, n: int) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x)
        ctx.degree = n
        return legendre_and_derivative(x, n)[0]

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        # Plain tensor ops: with create_graph=True autograd differentiates this backward too.
        return grad_output * legendre_and_derivative(x, ctx.degree)[1], None


def legendre(x: torch.Tensor, n: int) -> torch.Tensor:
    """Legendre polynomial P_n(x) of degree ``n`` ≥ 0, differentiable in x (analytic backward).

    Args:
        x: points, any shape, floating dtype.
        n: degree, a non-negative int.

    Returns:
        P_n(x), x's shape and dtype.

    Raises:
        ConfigError: ``n`` is not a non-negative integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"legendre degree n={n!r} is invalid; pass a non-negative integer, e.g. n=3")
    return LegendreFunction.apply(x, n)


def fit_legendre_p3(
    steps: int = 2000,
    points: int = 2000,
    learning_rate: float = 5e-6,
    log_every: int = 100,
    verbose: bool = True,
) -> dict:
    """The tutorial's run: plain gradient descent on Σ(a + b·P3(c + d·x) − sin x)², x ∈ [−π, π].

    Starts from a = 0, b = −1, c = 0, d = 0.3 in float32, as the tutorial does; each step computes the
    summed squared error, backpropagates through :class:`LegendreP3`, and updates θ ← θ − lr·∂L/∂θ.

    Args:
        steps: gradient-descent steps (tutorial: 2000).
        points: evenly spaced x in [−π, π] (tutorial: 2000).
        learning_rate: step size (tutorial: 5e-6).
        log_every: print ``step loss`` every this many steps (at steps 99, 199, ... as the tutorial).
        verbose: print the log lines and the final polynomial.

    Returns:
        dict with ``a, b, c, d`` (floats), ``loss`` (loss at the last step, as the tutorial prints it),
        ``history`` (list of (step, loss)), ``x``, ``y``, ``y_pred`` (tensors (points,)).
    """
    x = torch.linspace(-math.pi, math.pi, points, dtype=torch.float32)
    y = torch.sin(x)
    params = {
        name: torch.full((), value, dtype=torch.float32, requires_grad=True)
        for name, value in (("a", 0.0), ("b", -1.0), ("c", 0.0), ("d", 0.3))
    }
    a, b, c, d = params.values()
    history: list[tuple[int, float]] = []
    loss = torch.tensor(float("nan"))
    for t in range(steps):
        y_pred = a + b * LegendreP3.apply(c + d * x)
        loss = (y_pred - y).pow(2).sum()
        if t % log_every == log_every - 1:
            history.append((t, loss.item()))
            if verbose:
                print(t, loss.item())
        loss.backward()
        with torch.no_grad():
            for p in params.values():
                p -= learning_rate * p.grad
                p.grad = None
    result = {name: p.item() for name, p in params.items()}
    if verbose:
        print(f"Result: y = {result['a']} + {result['b']} * P3({result['c']} + {result['d']} x)")
    with torch.no_grad():
        y_pred = a + b * LegendreP3.apply(c + d * x)
    return {**result, "loss": loss.item(), "history": history, "x": x, "y": y, "y_pred": y_pred}
