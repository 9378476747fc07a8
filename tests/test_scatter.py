"""Tests of vitlab.scatter.

References: a plain Python loop over every element of ``src`` (the formulas of the module
docstring, written out, with pytorch_scatter's documented empty-segment values and integer floor
mean), ``torch.Tensor.scatter_reduce(include_self=False)``, ``torch.softmax`` / ``torch.logsumexp``
applied segment by segment, and ``torch.autograd.gradcheck`` in float64.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlab.errors import DataError
from vitlab.scatter import (
    REDUCTIONS,
    broadcast_index,
    gather_coo,
    gather_csr,
    scatter,
    scatter_log_softmax,
    scatter_logsumexp,
    scatter_max,
    scatter_mean,
    scatter_min,
    scatter_softmax,
    segment_coo,
    segment_csr,
    segment_max_coo,
    segment_max_csr,
    segment_mean_coo,
    segment_mean_csr,
    segment_min_coo,
    segment_min_csr,
    segment_sum_coo,
    segment_sum_csr,
)

SETTINGS = settings(max_examples=60, deadline=None)
DTYPE_SETTINGS = settings(max_examples=20, deadline=None)
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.int64]
LAYOUTS = ["contiguous", "strided", "transposed"]


# ------------------------------------------------------------------------------------------
# reference: a Python loop over the elements of src
# ------------------------------------------------------------------------------------------


def _index_of(index: torch.Tensor, src_ndim: int, dim: int, e: tuple[int, ...]) -> int:
    """The index value of element ``e`` under pytorch_scatter's broadcasting, read element-wise."""
    if index.dim() == 1 and src_ndim > 1:
        return int(index[e[dim] if index.shape[0] > 1 else 0])
    pos = tuple(e[d] if index.shape[d] > 1 else 0 for d in range(index.dim()))
    return int(index[pos])


def loop_segments(src: torch.Tensor, index: torch.Tensor, dim: int, dim_size: int) -> dict:
    """``{output position: [(position along dim, value), ...]}`` built one element at a time."""
    dim = dim % src.dim()
    segments: dict[tuple[int, ...], list[tuple[int, float]]] = {}
    out_shape = list(src.shape)
    out_shape[dim] = dim_size
    for p in itertools.product(*[range(s) for s in out_shape]):
        segments[p] = []
    for e in itertools.product(*[range(s) for s in src.shape]):
        p = list(e)
        p[dim] = _index_of(index, src.dim(), dim, e)
        segments[tuple(p)].append((e[dim], src[e].item()))
    return segments


def reduce_items(items: list, reduce: str, integer: bool, n: int) -> tuple[float, int]:
    """(value, arg) of one segment ``[(position, value), ...]``; empty: mul 1, others 0, arg ``n``.

    pytorch_scatter's documented semantics: the integer mean is ``floor(sum / count)``.
    """
    if not items:
        return (1 if reduce == "mul" else 0), n
    vals = [v for _, v in items]
    if reduce == "sum":
        return sum(vals), n
    if reduce == "mean":
        return (sum(vals) // len(vals) if integer else sum(vals) / len(vals)), n
    if reduce == "mul":
        return math.prod(vals), n
    best = max(vals) if reduce == "max" else min(vals)
    return best, min(pos for pos, v in items if v == best)


def loop_scatter(src, index, dim, dim_size, reduce):  # noqa: ANN001, ANN201 - test helper
    """Reference values (float64) and arg (max/min) of every reduction."""
    segments = loop_segments(src, index, dim, dim_size)
    out_shape = list(src.shape)
    out_shape[dim % src.dim()] = dim_size
    values = torch.zeros(out_shape, dtype=torch.float64)
    arg = torch.full(out_shape, src.shape[dim], dtype=torch.long)
    for p, items in segments.items():
        values[p], arg[p] = reduce_items(items, reduce, not src.is_floating_point(), src.shape[dim])
    return values, arg


def loop_segment_csr(src, indptr, reduce):  # noqa: ANN001, ANN201 - test helper
    """Reference of segment_csr: for every output position, reduce the slice its offsets name."""
    dim = indptr.dim() - 1
    num_segments = indptr.shape[-1] - 1
    out_shape = list(src.shape)
    out_shape[dim] = num_segments
    values = torch.zeros(out_shape, dtype=torch.float64)
    arg = torch.full(out_shape, src.shape[dim], dtype=torch.long)
    for p in itertools.product(*[range(s) for s in out_shape]):
        row = indptr[tuple(p[d] if indptr.shape[d] > 1 else 0 for d in range(dim))]
        lo, hi = int(row[p[dim]]), int(row[p[dim] + 1])
        items = [(j, src[p[:dim] + (j,) + p[dim + 1 :]].item()) for j in range(lo, hi)]
        values[p], arg[p] = reduce_items(items, reduce, not src.is_floating_point(), src.shape[dim])
    return values, arg


def assert_matches_reference(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, reduce: str) -> None:
    """``got`` in ``dtype`` equals the float64 reference rounded once to ``dtype``.

    Inputs are small integers, so sums, products, maxima and minima are exact in every dtype; only
    a floating mean is rounded, and float16/bfloat16 divide in float32 first (<= 1 ulp apart).
    """
    assert got.dtype == dtype
    rounded = expected.to(dtype).to(torch.float64)
    rtol = torch.finfo(dtype).eps if reduce == "mean" and dtype in (torch.float16, torch.bfloat16) else 0.0
    torch.testing.assert_close(got.detach().to(torch.float64), rounded, rtol=rtol, atol=0)


def with_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``t`` in another memory layout: a stride-2 view, or column-major."""
    if layout == "strided" and t.dim() >= 1:
        big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        big[..., ::2] = t
        out = big[..., ::2]
    elif layout == "transposed" and t.dim() >= 2:
        out = t.transpose(0, -1).contiguous().transpose(0, -1)
    else:
        out = t.clone()
    assert torch.equal(out, t)
    return out


def small_values(shape: list[int], dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    return torch.randint(-3, 4, shape, generator=g).to(dtype)


@st.composite
def problems(draw, min_ndim: int = 1, dtype: torch.dtype = torch.float64):  # noqa: ANN001, ANN201
    """Random src shape, dim (possibly negative), dim_size and an index in one of the broadcast forms.

    Values are small integers (in ``dtype``) so that ties are common and sums are exact; ``src``
    and ``index`` come contiguous, as a stride-2 view or column-major.
    """
    ndim = draw(st.integers(min_ndim, 3))
    shape = draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim))
    dim = draw(st.integers(-ndim, ndim - 1))
    d = dim % ndim
    dim_size = draw(st.integers(1, 5))
    form = draw(st.sampled_from(["full", "leading", "1d"]))
    if form == "1d" and ndim > 1:
        index_shape = [draw(st.sampled_from([shape[d], 1]))]
    elif form == "leading":
        k = draw(st.integers(2 if ndim > 1 else 1, ndim))
        index_shape = [draw(st.sampled_from([s, 1])) for s in shape[:k]]
    else:
        index_shape = list(shape)
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    src = small_values(shape, dtype, g)
    index = torch.randint(0, dim_size, index_shape, generator=g)
    layout = draw(st.sampled_from(LAYOUTS))
    return with_layout(src, layout), with_layout(index, layout), dim, dim_size


# ------------------------------------------------------------------------------------------
# forward semantics
# ------------------------------------------------------------------------------------------


@SETTINGS
@given(problems(), st.sampled_from(REDUCTIONS))
def test_scatter_matches_python_loop_reference(problem, reduce):
    src, index, dim, dim_size = problem
    expected, _ = loop_scatter(src, index, dim, dim_size, reduce)
    got = scatter(src, index, dim=dim, dim_size=dim_size, reduce=reduce)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(problems(), st.sampled_from(["max", "min"]), st.booleans())
def test_scatter_max_min_values_and_lowest_arg_match_loop(problem, which, grad):
    src, index, dim, dim_size = problem
    expected, expected_arg = loop_scatter(src, index, dim, dim_size, which)
    fn = scatter_max if which == "max" else scatter_min
    values, arg = fn(src.clone().requires_grad_(grad), index, dim=dim, dim_size=dim_size)
    torch.testing.assert_close(values.detach(), expected, rtol=0, atol=0)
    assert torch.equal(arg, expected_arg)


@SETTINGS
@given(problems(), st.sampled_from(["sum", "mean", "max", "min", "mul"]), st.sampled_from([torch.float32, torch.float64]))
def test_scatter_agrees_with_torch_scatter_reduce_include_self_false(problem, reduce, dtype):
    src, index, dim, dim_size = problem
    src = src.to(dtype) + torch.linspace(0, 0.5, src.numel(), dtype=dtype).view(src.shape)
    torch_name = {"max": "amax", "min": "amin", "mul": "prod"}.get(reduce, reduce)
    index_b = broadcast_index(index, src, dim)
    shape = list(src.shape)
    shape[dim] = dim_size
    start = torch.ones(shape, dtype=dtype) if reduce == "mul" else torch.zeros(shape, dtype=dtype)
    reference = start.scatter_reduce(dim, index_b, src, torch_name, include_self=False)
    torch.testing.assert_close(scatter(src, index, dim, dim_size, reduce), reference)


def test_scatter_example_from_docstring_and_empty_segment_fill():
    src = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    index = torch.tensor([0, 2, 0, 2])
    assert scatter(src, index, dim=1, dim_size=3).tolist() == [[4.0, 0.0, 6.0]]
    assert scatter(src, index, dim=1, dim_size=4, reduce="mul").tolist() == [[3.0, 1.0, 8.0, 1.0]]
    values, arg = scatter_max(src, index, dim=1, dim_size=4)
    assert values.tolist() == [[3.0, 0.0, 4.0, 0.0]] and arg.tolist() == [[2, 4, 3, 4]]


def test_documented_worked_examples():
    """The 3-D tables of docs/gather_scatter.md, recomputed (and checked against the formulas by hand)."""
    src = torch.arange(1.0, 9.0).view(2, 2, 2)
    cases = {
        0: ([[[1, 0], [0, 0]], [[1, 1], [0, 1]]], [[[5, 2], [3, 4]], [[5, 6], [3, 8]]], [[[0, 2], [10, 4]], [[6, 6], [0, 8]]]),
        1: ([[[1, 1], [0, 1]], [[0, 0], [0, 1]]], [[[3, 4], [1, 4]], [[5, 6], [5, 8]]], [[[3, 0], [1, 6]], [[12, 6], [0, 8]]]),
        2: ([[[1, 0], [1, 1]], [[0, 0], [1, 0]]], [[[2, 1], [4, 4]], [[5, 5], [8, 7]]], [[[2, 1], [0, 7]], [[11, 0], [8, 7]]]),
    }
    for dim, (index, gathered, summed) in cases.items():
        index = torch.tensor(index)
        assert torch.gather(src, dim, index).tolist() == gathered
        assert scatter(src, index, dim, 2).tolist() == summed
    values, arg = scatter_max(src, torch.tensor(cases[0][0]), 0, 3)
    assert values.tolist() == [[[0, 2], [7, 4]], [[5, 6], [0, 8]], [[0, 0], [0, 0]]]
    assert arg.tolist() == [[[2, 0], [1, 0]], [[1, 1], [2, 1]], [[2, 2], [2, 2]]]
    assert segment_csr(torch.arange(1.0, 6.0), torch.tensor([0, 2, 2, 5])).tolist() == [3, 0, 12]


def test_index_broadcast_scatters_whole_feature_vectors():
    src = torch.arange(24.0).view(2, 4, 3)  # (B, N, D)
    index = torch.tensor([[0, 1, 0, 1], [1, 1, 1, 0]])  # (B, N)
    out = scatter(src, index, dim=1, dim_size=2)
    assert out.shape == (2, 2, 3)
    torch.testing.assert_close(out[0, 0], src[0, 0] + src[0, 2])
    torch.testing.assert_close(out[1, 1], src[1, 0] + src[1, 1] + src[1, 2])
    one_d = scatter(src, torch.tensor([1, 0, 1, 1]), dim=-2, dim_size=2)  # 1-D index laid along dim
    torch.testing.assert_close(one_d[:, 0], src[:, 1])


def test_dim_size_none_is_index_max_plus_one():
    src = torch.ones(6)
    assert scatter(src, torch.tensor([0, 3, 3, 1, 0, 0])).tolist() == [3.0, 1.0, 0.0, 2.0]
    assert scatter(torch.ones(0), torch.zeros(0, dtype=torch.long)).shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce", REDUCTIONS)
@DTYPE_SETTINGS
@given(data=st.data())
def test_every_reduction_and_dtype_matches_python_loop(dtype, reduce, data):
    """scatter over 1-D to 3-D layouts (contiguous or not) in every dtype, against the loop."""
    src, index, dim, dim_size = data.draw(problems(dtype=dtype))
    expected, expected_arg = loop_scatter(src, index, dim, dim_size, reduce)
    assert_matches_reference(scatter(src, index, dim=dim, dim_size=dim_size, reduce=reduce), expected, dtype, reduce)
    if reduce in ("max", "min"):
        values, arg = (scatter_max if reduce == "max" else scatter_min)(src, index, dim=dim, dim_size=dim_size)
        assert_matches_reference(values, expected, dtype, reduce)
        assert torch.equal(arg, expected_arg)


def test_issue_example_mul_gives_the_multiplicative_identity_on_empty_segments():
    """pytorch_scatter's documented output [2, 60, 1, 6] for every dtype (segment 2 is empty)."""
    index = torch.tensor([0, 1, 0, 1, 1, 3])
    for dtype in DTYPES:
        src = torch.tensor([1, 3, 2, 4, 5, 6]).to(dtype)
        assert scatter(src, index, reduce="mul").tolist() == [2, 60, 1, 6]
        sorted_index, order = index.sort(stable=True)
        assert segment_coo(src[order], sorted_index, reduce="mul").tolist() == [2, 60, 1, 6]
        assert segment_csr(src[order], torch.tensor([0, 2, 5, 5, 6]), "mul").tolist() == [2, 60, 1, 6]


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_segment_values_and_args_per_reduction_and_dtype(dtype):
    """The table of docs/gather_scatter.md: mul 1, sum/mean/max/min 0, arg src.size(dim)."""
    src = torch.tensor([5, 7]).to(dtype)
    expected = {"sum": 0, "mean": 0, "mul": 1, "max": 0, "min": 0}
    index = torch.tensor([0, 0])  # segments 1 and 2 empty
    indptr = torch.tensor([0, 2, 2, 2])
    for reduce, value in expected.items():
        for out in (
            scatter(src, index, dim_size=3, reduce=reduce),
            segment_coo(src, index, dim_size=3, reduce=reduce),
            segment_csr(src, indptr, reduce),
        ):
            assert out.dtype == dtype and out[1:].tolist() == [value, value]
    for fn in (scatter_max, scatter_min, segment_max_coo, segment_min_coo):
        values, arg = fn(src, index, dim_size=3)
        assert values[1:].tolist() == [0, 0] and arg.tolist() == [1 if fn in (scatter_max, segment_max_coo) else 0, 2, 2]
    for fn in (segment_max_csr, segment_min_csr):
        values, arg = fn(src, indptr)
        assert values[1:].tolist() == [0, 0] and arg[1:].tolist() == [2, 2]


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_integer_mean_is_floor_division_in_the_input_dtype(dtype):
    """pytorch_scatter's scatter_mean: floor(sum / count), so [-3, 0] -> -2 (not -1.5 or -1)."""
    src = torch.tensor([-3, 0, 5, 6, 7, 1]).to(dtype)
    index = torch.tensor([0, 0, 1, 1, 1, 2])
    expected = [math.floor(-3 / 2), math.floor(18 / 3), 1, 0]
    assert expected == [-2, 6, 1, 0]
    for out in (
        scatter_mean(src, index, dim_size=4),
        segment_mean_coo(src, index, dim_size=4),
        segment_mean_csr(src, torch.tensor([0, 2, 5, 6, 6])),
    ):
        assert out.dtype == dtype and out.tolist() == expected


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_low_precision_dtypes_match_float32_computation(dtype, reduce):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(50, 3, generator=g).to(dtype)
    index = torch.randint(0, 7, (50,), generator=g)
    got = scatter(src, index, dim=0, dim_size=8, reduce=reduce)
    expected = scatter(src.float(), index, dim=0, dim_size=8, reduce=reduce)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), expected, rtol=2e-2, atol=5e-2)


def test_integer_counts_with_sum():
    counts = scatter(torch.ones(5, dtype=torch.long), torch.tensor([2, 2, 0, 2, 1]), dim=0, dim_size=4)
    assert counts.dtype == torch.long and counts.tolist() == [1, 1, 3, 0]


def test_nan_propagates_within_its_segment_and_arg_points_at_first_nan():
    src = torch.tensor([1.0, float("nan"), 3.0, float("nan"), 2.0], requires_grad=True)
    index = torch.tensor([0, 0, 1, 0, 1])
    values, arg = scatter_max(src, index, dim=0, dim_size=2)
    assert math.isnan(values[0].item()) and values[1].item() == 3.0
    assert arg.tolist() == [1, 2]


def test_repeated_calls_on_cpu_are_bitwise_equal():
    g = torch.Generator().manual_seed(5)
    src = torch.randn(20_000, 3, generator=g)
    index = torch.randint(0, 37, (20_000,), generator=g)
    for reduce in REDUCTIONS:
        first = scatter(src, index, dim=0, dim_size=37, reduce=reduce)
        assert torch.equal(first, scatter(src, index, dim=0, dim_size=37, reduce=reduce))
    assert torch.equal(scatter_softmax(src, index, 0, 37), scatter_softmax(src, index, 0, 37))


# ------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**31 - 1), st.sampled_from([0, 1, -1, -2]))
def test_gather_after_scatter_with_a_permutation_is_identity(n, m, seed, dim):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(n, m, generator=g, dtype=torch.float64)
    size = src.shape[dim]
    perm = torch.stack([torch.randperm(size, generator=g) for _ in range(src.numel() // size)])
    index = perm if dim % 2 == 1 else perm.T  # a permutation along dim for every other coordinate
    for reduce in REDUCTIONS:
        out = scatter(src, index, dim=dim, dim_size=size, reduce=reduce)
        assert torch.equal(out.gather(dim, index), src)


@SETTINGS
@given(problems(), st.sampled_from(["max", "min"]))
def test_values_equal_gather_of_src_at_arg_for_nonempty_segments(problem, which):
    src, index, dim, dim_size = problem
    values, arg = (scatter_max if which == "max" else scatter_min)(src, index, dim, dim_size)
    nonempty = arg < src.shape[dim]
    if src.shape[dim] > 0:
        picked = src.gather(dim, arg.clamp_max(src.shape[dim] - 1))
        assert torch.equal(picked[nonempty], values[nonempty])
    # and every element sent to a non-empty segment is <= (>=) its segment's value
    index_b = broadcast_index(index, src, dim)
    back = values.gather(dim, index_b)
    assert bool((src <= back).all() if which == "max" else (src >= back).all())


# ------------------------------------------------------------------------------------------
# softmax family
# ------------------------------------------------------------------------------------------


@SETTINGS
@given(problems())
def test_scatter_softmax_matches_per_segment_softmax_and_sums_to_one(problem):
    src, index, dim, dim_size = problem
    src = src * 0.7
    out = scatter_softmax(src, index, dim=dim, dim_size=dim_size)
    log_out = scatter_log_softmax(src, index, dim=dim, dim_size=dim_size)
    lse = scatter_logsumexp(src, index, dim=dim, dim_size=dim_size)
    index_b = broadcast_index(index, src, dim)
    d = dim % src.dim()
    sums = scatter(out, index, dim=dim, dim_size=dim_size)
    counts = scatter(torch.ones_like(src), index, dim=dim, dim_size=dim_size)
    torch.testing.assert_close(sums[counts > 0], torch.ones_like(sums[counts > 0]))
    torch.testing.assert_close(log_out, out.log())
    for p, items in loop_segments(src, index, dim, dim_size).items():
        if not items:
            assert lse[p].item() == 0.0
            continue
        vals = torch.tensor([v for _, v in items], dtype=torch.float64)
        torch.testing.assert_close(lse[p], torch.logsumexp(vals, 0))
        positions = [pos for pos, _ in items]
        for pos, expected in zip(positions, torch.softmax(vals, 0)):
            e = list(p)
            e[d] = pos
            assert int(index_b[tuple(e)]) == p[d]
            torch.testing.assert_close(out[tuple(e)], expected)


def test_softmax_family_is_stable_for_large_inputs():
    src = torch.tensor([1000.0, 1001.0, -1000.0, -1002.0])
    index = torch.tensor([0, 0, 1, 1])
    out = scatter_softmax(src, index, dim=0, dim_size=2)
    expected = torch.cat([torch.softmax(src[:2], 0), torch.softmax(src[2:], 0)])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(scatter_logsumexp(src, index, 0, 2), torch.stack([src[:2].logsumexp(0), src[2:].logsumexp(0)]))
    assert bool(torch.isfinite(scatter_log_softmax(src, index, 0, 2)).all())


# ------------------------------------------------------------------------------------------
# autograd (gradcheck in float64, with index broadcast and negative dim)
# ------------------------------------------------------------------------------------------


def _grad_problem(seed: int = 0):  # noqa: ANN202
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(3, 7, 2, generator=g, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([[0, 1, 0, 3, 3, 0, 1], [1, 1, 1, 1, 0, 0, 3], [3, 0, 1, 0, 1, 3, 0]])  # (3, 7): segment 2 empty
    return src, index


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_gradcheck_every_reduction_with_broadcast_index_and_negative_dim(reduce):
    src, index = _grad_problem()
    assert torch.autograd.gradcheck(lambda s: scatter(s, index, dim=-2, dim_size=5, reduce=reduce), (src,))
    assert torch.autograd.gradgradcheck(lambda s: scatter(s, index, dim=-2, dim_size=5, reduce=reduce), (src,))


@pytest.mark.parametrize("fn", [scatter_softmax, scatter_log_softmax, scatter_logsumexp])
def test_gradcheck_softmax_family(fn):
    src, index = _grad_problem(1)
    assert torch.autograd.gradcheck(lambda s: fn(s, index, dim=-2, dim_size=5), (src,))
    assert torch.autograd.gradgradcheck(lambda s: fn(s, index, dim=-2, dim_size=5), (src,))


def test_gradcheck_mul_with_zeros_in_segments():
    src, index = _grad_problem(2)
    src = src.detach().clone()
    src[0, 0, 0] = 0.0  # one zero in segment (0, 0, 0)
    src[1, 0, 1] = src[1, 1, 1] = 0.0  # two zeros in segment (1, 1, 1)
    src.requires_grad_()
    assert torch.autograd.gradcheck(lambda s: scatter(s, index, dim=1, dim_size=5, reduce="mul"), (src,))


@pytest.mark.parametrize("which", ["max", "min"])
def test_max_min_gradient_goes_to_the_lowest_tied_arg_element_only(which):
    src = torch.tensor([2.0, 5.0, 5.0, 1.0, 5.0, -1.0, -1.0], requires_grad=True)
    index = torch.tensor([0, 0, 0, 1, 0, 1, 1])
    out = scatter(src, index, dim=0, dim_size=3, reduce=which)
    out.backward(torch.tensor([1.0, 10.0, 100.0]))
    expected = torch.zeros(7)
    if which == "max":
        expected[1], expected[3] = 1.0, 10.0  # first 5.0 of segment 0; the 1.0 of segment 1
    else:
        expected[0], expected[5] = 1.0, 10.0  # 2.0 of segment 0; first -1.0 of segment 1
    assert torch.equal(src.grad, expected)


def test_empty_segments_get_identity_value_and_no_gradient_path():
    src = torch.randn(4, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 0, 3, 3])
    for reduce in REDUCTIONS:
        out = scatter(src, index, dim=0, dim_size=5, reduce=reduce)
        fill = 1.0 if reduce == "mul" else 0.0
        assert out[[1, 2, 4]].tolist() == [fill, fill, fill]
        (grad,) = torch.autograd.grad(out[[1, 2, 4]].sum(), src, allow_unused=True)
        assert grad is None or torch.equal(grad, torch.zeros(4, dtype=torch.float64))


# ------------------------------------------------------------------------------------------
# segment_csr
# ------------------------------------------------------------------------------------------


@st.composite
def csr_problems(draw):  # noqa: ANN001, ANN201
    """src (B, N, D) with per-row sorted offsets (possibly not covering [0, N]) or one shared row."""
    b, n, d = draw(st.integers(1, 3)), draw(st.integers(0, 8)), draw(st.integers(1, 3))
    num_segments = draw(st.integers(0, 4))
    batched = draw(st.booleans())
    rows = []
    for _ in range(b if batched else 1):
        cuts = sorted(draw(st.lists(st.integers(0, n), min_size=num_segments + 1, max_size=num_segments + 1)))
        rows.append(cuts)
    indptr = torch.tensor(rows) if batched else torch.tensor(rows[0]).view(1, -1)
    seed = draw(st.integers(0, 2**31 - 1))
    src = torch.randint(-3, 4, (b, n, d), generator=torch.Generator().manual_seed(seed)).to(torch.float64)
    return src, indptr


@SETTINGS
@given(csr_problems(), st.sampled_from(REDUCTIONS), st.booleans())
def test_segment_csr_matches_python_loop_over_slices(problem, reduce, grad):
    src, indptr = problem
    got = segment_csr(src.clone().requires_grad_(grad), indptr, reduce=reduce)
    b, _, d = src.shape
    ptr = indptr.expand(b, -1)
    expected = torch.zeros(b, ptr.shape[1] - 1, d, dtype=torch.float64)
    for i in range(b):
        for s in range(ptr.shape[1] - 1):
            part = src[i, int(ptr[i, s]) : int(ptr[i, s + 1])]
            if part.shape[0] == 0:
                expected[i, s] = 1.0 if reduce == "mul" else 0.0
                continue
            expected[i, s] = {
                "sum": part.sum(0),
                "mean": part.mean(0),
                "max": part.amax(0),
                "min": part.amin(0),
                "mul": part.prod(0),
            }[reduce]
    torch.testing.assert_close(got.detach(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_gradcheck_segment_csr(reduce):
    g = torch.Generator().manual_seed(3)
    src = torch.randn(2, 9, 2, generator=g, dtype=torch.float64, requires_grad=True)
    indptr = torch.tensor([[0, 2, 2, 6, 9], [1, 3, 4, 4, 7]])  # empty segments; row 1 skips ends
    assert torch.autograd.gradcheck(lambda s: segment_csr(s, indptr, reduce), (src,))


def test_segment_csr_equals_scatter_on_sorted_index_and_is_reproducible():
    g = torch.Generator().manual_seed(4)
    counts = torch.randint(0, 40, (50,), generator=g)
    index = torch.repeat_interleave(torch.arange(50), counts)
    src = torch.randn(index.numel(), 4, generator=g)
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    for reduce in REDUCTIONS:
        a = segment_csr(src, indptr, reduce)
        torch.testing.assert_close(a, scatter(src, index, dim=0, dim_size=50, reduce=reduce))
        assert torch.equal(a, segment_csr(src, indptr, reduce))


# ------------------------------------------------------------------------------------------
# every dtype and layout for the sorted-segment functions (segment_csr, segment_coo, gathers)
# ------------------------------------------------------------------------------------------


@st.composite
def csr_layouts(draw, dtype: torch.dtype):  # noqa: ANN001, ANN201
    """src 1-D to 3-D, indptr with 1 to src.dim() dims (leading dims full or 1), any layout."""
    ndim = draw(st.integers(1, 3))
    shape = draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim))
    k = draw(st.integers(1, ndim))
    dim = k - 1
    num_segments = draw(st.integers(0, 4))
    lead = [draw(st.sampled_from([s, 1])) for s in shape[:dim]]
    rows = []
    for _ in range(math.prod(lead)):
        cuts = draw(st.lists(st.integers(0, shape[dim]), min_size=num_segments + 1, max_size=num_segments + 1))
        rows.append(sorted(cuts))
    indptr = torch.tensor(rows, dtype=torch.long).view(*lead, num_segments + 1)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    layout = draw(st.sampled_from(LAYOUTS))
    return with_layout(small_values(shape, dtype, g), layout), with_layout(indptr, layout)


@st.composite
def coo_layouts(draw, dtype: torch.dtype):  # noqa: ANN001, ANN201
    """src 1-D to 3-D, an index sorted along its last dim (dim = index.dim() - 1), any layout."""
    ndim = draw(st.integers(1, 3))
    shape = draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim))
    k = draw(st.integers(1, ndim))
    dim_size = draw(st.integers(1, 5))
    index_shape = [draw(st.sampled_from([s, 1])) for s in shape[: k - 1]] + [shape[k - 1]]
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    index = torch.randint(0, dim_size, index_shape, generator=g).sort(dim=-1).values
    layout = draw(st.sampled_from(LAYOUTS))
    return with_layout(small_values(shape, dtype, g), layout), with_layout(index, layout), dim_size


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce", REDUCTIONS)
@DTYPE_SETTINGS
@given(data=st.data())
def test_segment_csr_every_reduction_and_dtype_matches_python_loop(dtype, reduce, data):
    src, indptr = data.draw(csr_layouts(dtype))
    expected, expected_arg = loop_segment_csr(src, indptr, reduce)
    assert_matches_reference(segment_csr(src, indptr, reduce), expected, dtype, reduce)
    if reduce in ("max", "min"):
        values, arg = (segment_max_csr if reduce == "max" else segment_min_csr)(src, indptr)
        assert_matches_reference(values, expected, dtype, reduce)
        assert torch.equal(arg, expected_arg)
    named = {"sum": segment_sum_csr, "mean": segment_mean_csr}.get(reduce)
    if named is not None:
        assert torch.equal(named(src, indptr), segment_csr(src, indptr, reduce))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce", REDUCTIONS)
@DTYPE_SETTINGS
@given(data=st.data())
def test_segment_coo_every_reduction_and_dtype_matches_python_loop(dtype, reduce, data):
    """The reference is the scatter loop with the same index along dim = index.dim() - 1."""
    src, index, dim_size = data.draw(coo_layouts(dtype))
    dim = index.dim() - 1
    expected, expected_arg = loop_scatter(src, index, dim, dim_size, reduce)
    assert_matches_reference(segment_coo(src, index, dim_size=dim_size, reduce=reduce), expected, dtype, reduce)
    if reduce in ("max", "min"):
        values, arg = (segment_max_coo if reduce == "max" else segment_min_coo)(src, index, dim_size)
        assert_matches_reference(values, expected, dtype, reduce)
        assert torch.equal(arg, expected_arg)
    named = {"sum": segment_sum_coo, "mean": segment_mean_coo}.get(reduce)
    if named is not None:
        assert torch.equal(named(src, index, dim_size), segment_coo(src, index, dim_size, reduce))


@pytest.mark.parametrize("dtype", DTYPES)
@DTYPE_SETTINGS
@given(data=st.data())
def test_gather_csr_and_gather_coo_match_python_loop(dtype, data):
    """gather_csr: each position reads its segment's row (0 outside every segment); gather_coo:
    out[..., e, ...] = src[..., index[..., e], ...]; both against a loop over output positions."""
    values, indptr = data.draw(csr_layouts(dtype))
    dim = indptr.dim() - 1
    src = segment_csr(values, indptr, "sum")  # one row per segment, as gather_csr expects
    out = gather_csr(src, indptr)
    n = int(indptr[..., -1].max()) if indptr[..., -1].numel() else 0  # no rows: nothing to place
    assert out.dtype == dtype and out.shape == src.shape[:dim] + (n,) + src.shape[dim + 1 :]
    for q in itertools.product(*[range(s) for s in out.shape]):
        row = indptr[tuple(q[d] if indptr.shape[d] > 1 else 0 for d in range(dim))].tolist()
        owners = [s for s in range(len(row) - 1) if row[s] <= q[dim] < row[s + 1]]
        expected = src[q[:dim] + (owners[0],) + q[dim + 1 :]].item() if owners else 0
        assert out[q].item() == expected
    src2, index, _ = data.draw(coo_layouts(dtype))
    dim = index.dim() - 1
    if src2.shape[dim] == 0:
        return
    index = index.clamp_max(src2.shape[dim] - 1)
    out = gather_coo(src2, index)
    for q in itertools.product(*[range(s) for s in out.shape]):
        e = list(q)
        e[dim] = _index_of(index, src2.dim(), dim, q)
        assert out[q].item() == src2[tuple(e)].item()


def test_segment_coo_dim_size_none_is_index_max_plus_one_and_broadcasts_leading_dims():
    src = torch.arange(24.0).view(2, 4, 3)
    index = torch.tensor([[0, 0, 1, 3]])  # (1, 4): shared by both rows, dim = 1
    out = segment_coo(src, index)
    assert out.shape == (2, 4, 3)
    torch.testing.assert_close(out, scatter(src, index, dim=1, dim_size=4))
    assert segment_coo(torch.ones(0), torch.zeros(0, dtype=torch.long)).shape == (0,)


def test_segment_coo_on_a_sorted_index_equals_scatter_and_is_reproducible():
    g = torch.Generator().manual_seed(7)
    index = torch.randint(0, 60, (3000,), generator=g).sort().values
    src = torch.randn(3000, 4, generator=g)
    for reduce in REDUCTIONS:
        a = segment_coo(src, index, dim_size=64, reduce=reduce)
        torch.testing.assert_close(a, scatter(src, index, dim=0, dim_size=64, reduce=reduce))
        assert torch.equal(a, segment_coo(src, index, dim_size=64, reduce=reduce))


def test_gather_csr_inverts_segment_reduction_and_matches_repeat_interleave():
    counts = torch.tensor([2, 0, 3, 1])
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    per_segment = torch.tensor([[1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [4.0, -4.0]])
    torch.testing.assert_close(gather_csr(per_segment, indptr), per_segment.repeat_interleave(counts, dim=0))
    index = torch.repeat_interleave(torch.arange(4), counts)
    torch.testing.assert_close(gather_coo(per_segment, index), per_segment.repeat_interleave(counts, dim=0))


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_gradcheck_segment_coo(reduce):
    g = torch.Generator().manual_seed(8)
    src = torch.randn(2, 7, 2, generator=g, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([[0, 0, 1, 1, 1, 4, 4], [0, 2, 2, 2, 3, 3, 4]])  # empty segments 2 and 3, 1
    assert torch.autograd.gradcheck(lambda s: segment_coo(s, index, dim_size=6, reduce=reduce), (src,))


@pytest.mark.parametrize("fn", [segment_max_csr, segment_min_csr, segment_max_coo, segment_min_coo])
def test_gradcheck_segment_max_min_values(fn):
    g = torch.Generator().manual_seed(9)
    src = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    if fn in (segment_max_csr, segment_min_csr):
        assert torch.autograd.gradcheck(lambda s: fn(s, torch.tensor([0, 3, 3, 7]))[0], (src,))
    else:
        assert torch.autograd.gradcheck(lambda s: fn(s, torch.tensor([0, 0, 0, 2, 2, 2, 2]), 4)[0], (src,))


def test_gradcheck_gather_csr_and_gather_coo():
    g = torch.Generator().manual_seed(10)
    src = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    batched = torch.tensor([[0, 2, 2, 5, 6], [1, 1, 3, 4, 5]])  # row 1 leaves positions 0 and 5 uncovered
    assert torch.autograd.gradcheck(lambda s: gather_csr(s, batched), (src,))
    assert torch.autograd.gradcheck(lambda s: gather_csr(s, torch.tensor([0, 1, 1, 4, 6])), (src[0].detach().clone().requires_grad_(),))
    index = torch.tensor([[0, 0, 3, 1, 1], [2, 2, 2, 3, 0]])
    assert torch.autograd.gradcheck(lambda s: gather_coo(s, index), (src,))
    # The adjoint: gather_csr's gradient is segment_sum_csr of the output gradient.
    leaf = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    indptr = torch.tensor([0, 2, 2, 5, 6])
    grad_out = torch.randn(6, 3, dtype=torch.float64)
    gather_csr(leaf, indptr).backward(grad_out)
    torch.testing.assert_close(leaf.grad, segment_sum_csr(grad_out, indptr))


# ------------------------------------------------------------------------------------------
# softmax family on non-finite inputs: the same as torch.softmax / log_softmax / logsumexp
# ------------------------------------------------------------------------------------------

INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "segment", [[INF, 1.0], [-INF, -INF], [INF, INF], [-INF, 2.0], [NAN, 1.0], [INF, -INF], [-INF], [INF]]
)
def test_softmax_family_on_non_finite_segments_equals_torch(segment):
    """E.g. scatter_softmax([inf, 1]) is [nan, nan] like torch.softmax; the finite segment beside it is untouched."""
    src = torch.tensor([0.5, *segment, -0.25], dtype=torch.float64)
    index = torch.tensor([0] + [1] * len(segment) + [0])
    part = torch.tensor(segment, dtype=torch.float64)
    finite = torch.tensor([0.5, -0.25], dtype=torch.float64)
    out = scatter_softmax(src, index, dim_size=2)
    torch.testing.assert_close(out[1:-1], torch.softmax(part, 0), equal_nan=True)
    torch.testing.assert_close(out[[0, -1]], torch.softmax(finite, 0))
    log_out = scatter_log_softmax(src, index, dim_size=2)
    torch.testing.assert_close(log_out[1:-1], torch.log_softmax(part, 0), equal_nan=True)
    lse = scatter_logsumexp(src, index, dim_size=2)
    torch.testing.assert_close(lse[1], torch.logsumexp(part, 0), equal_nan=True)
    torch.testing.assert_close(lse[0], torch.logsumexp(finite, 0))


# ------------------------------------------------------------------------------------------
# input validation
# ------------------------------------------------------------------------------------------


def test_errors_name_the_bad_value():
    src = torch.ones(4)
    with pytest.raises(DataError, match="index contains 7, outside \\[0, 3\\)"):
        scatter(src, torch.tensor([0, 7, 1, 2]), dim_size=3)
    with pytest.raises(DataError, match="index contains -1"):
        scatter(src, torch.tensor([0, -1, 1, 2]), dim_size=3)
    with pytest.raises(DataError, match="integer tensor, got torch.float32"):
        scatter(src, torch.zeros(4))
    with pytest.raises(DataError, match="did you mean 'mean'"):
        scatter(src, torch.zeros(4, dtype=torch.long), reduce="meen")
    with pytest.raises(DataError, match="does not broadcast"):
        scatter(torch.ones(3, 4), torch.zeros(2, 4, dtype=torch.long), dim=1)
    with pytest.raises(DataError, match="dim=2 is out of range"):
        scatter(torch.ones(3, 4), torch.zeros(3, 4, dtype=torch.long), dim=2)
    with pytest.raises(DataError, match="floating point"):
        scatter_softmax(torch.ones(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="non-decreasing"):
        segment_csr(torch.ones(5), torch.tensor([0, 3, 2, 5]))
    with pytest.raises(DataError, match="non-decreasing"):
        segment_csr(torch.ones(5), torch.tensor([0, 6]))
    with pytest.raises(DataError, match="must be sorted"):
        segment_coo(torch.ones(4), torch.tensor([0, 2, 1, 3]))
    with pytest.raises(DataError, match="index contains 5, outside \\[0, 3\\)"):
        segment_coo(torch.ones(4), torch.tensor([0, 1, 2, 5]), dim_size=3)
    with pytest.raises(DataError, match="index has 3 dims and src has 2"):
        segment_coo(torch.ones(2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(DataError, match="one src row per segment"):
        gather_csr(torch.ones(2), torch.tensor([0, 1, 2, 4]))
    with pytest.raises(DataError, match="index contains 3, outside \\[0, 3\\)"):
        gather_coo(torch.ones(3), torch.tensor([0, 3]))
    with pytest.raises(DataError, match="non-decreasing offsets in >= 0"):
        gather_csr(torch.ones(2), torch.tensor([0, 3, 1]))
    with pytest.raises(DataError, match="did you mean 'mul'"):
        segment_coo(torch.ones(2), torch.tensor([0, 1]), reduce="mull")
    assert torch.equal(scatter(torch.ones(3), torch.tensor([0, 0, 1]), reduce="add"), torch.tensor([2.0, 1.0]))


@st.composite
def any_tensor(draw, max_dims: int = 3):  # noqa: ANN001, ANN201
    """Any small tensor: float (with inf/nan), int (negative too) or bool, 0-D to 3-D."""
    shape = draw(st.lists(st.integers(0, 4), max_size=max_dims))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.int64, torch.int32, torch.bool]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    t = torch.randint(-3, 12, shape, generator=g)
    if dtype.is_floating_point:
        t = t.to(dtype)
        if t.numel() and draw(st.booleans()):
            t.view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    return t.to(dtype)


@settings(max_examples=150, deadline=None)
@given(any_tensor(), any_tensor(), st.integers(-1, 7), st.sampled_from(REDUCTIONS), st.booleans())
def test_sorted_segment_functions_raise_only_data_errors(src, index, dim_size, reduce, check):
    """Whatever the input (unsorted, out of range, wrong dims or dtypes, check on or off), the new
    functions return or raise DataError with a one-line message, never a raw torch error."""
    size = dim_size if dim_size >= 0 else None
    calls = [
        lambda: segment_coo(src, index, size, reduce, check=check),
        lambda: segment_max_coo(src, index, size, check=check),
        lambda: segment_csr(src, index, reduce, check=check),
        lambda: segment_min_csr(src, index, check=check),
        lambda: gather_csr(src, index, check=check),
        lambda: gather_coo(src, index, check=check),
        lambda: scatter(src, index, 0, size, reduce, check=check),
    ]
    for call in calls:
        try:
            call()
        except DataError as error:
            assert "\n" not in str(error)
