"""Tests of vitlab.scatter.

References: a plain Python loop over every element of ``src`` (the formulas of the module
docstring, written out), ``torch.Tensor.scatter_reduce(include_self=False)``, ``torch.softmax`` /
``torch.logsumexp`` applied segment by segment, and ``torch.autograd.gradcheck`` in float64.
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
    scatter,
    scatter_log_softmax,
    scatter_logsumexp,
    scatter_max,
    scatter_min,
    scatter_softmax,
    segment_csr,
)

SETTINGS = settings(max_examples=60, deadline=None)


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
        segments[tuple(p)].append((e[dim], float(src[e])))
    return segments


def loop_scatter(src, index, dim, dim_size, reduce):  # noqa: ANN001, ANN201 - test helper
    """Reference values (and arg for max/min) of every reduction; empty segments -> 0 / src.size(dim)."""
    segments = loop_segments(src, index, dim, dim_size)
    out_shape = list(src.shape)
    out_shape[dim % src.dim()] = dim_size
    values = torch.zeros(out_shape, dtype=torch.float64)
    arg = torch.full(out_shape, src.shape[dim], dtype=torch.long)
    for p, items in segments.items():
        if not items:
            continue
        vals = [v for _, v in items]
        if reduce == "sum":
            values[p] = sum(vals)
        elif reduce == "mean":
            values[p] = sum(vals) / len(vals)
        elif reduce == "mul":
            values[p] = math.prod(vals)
        else:
            best = max(vals) if reduce == "max" else min(vals)
            values[p] = best
            arg[p] = min(pos for pos, v in items if v == best)
    return values, arg


@st.composite
def problems(draw, min_ndim: int = 1):  # noqa: ANN001, ANN201 - hypothesis strategy
    """Random src shape, dim (possibly negative), dim_size and an index in one of the broadcast forms.

    Values are small integers (as floats) so that ties are common and sums are exact.
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
    src = torch.randint(-3, 4, shape, generator=g).to(torch.float64)
    index = torch.randint(0, dim_size, index_shape, generator=g)
    return src, index, dim, dim_size


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
    reference = torch.zeros(shape, dtype=dtype).scatter_reduce(dim, index_b, src, torch_name, include_self=False)
    torch.testing.assert_close(scatter(src, index, dim, dim_size, reduce), reference)


def test_scatter_example_from_docstring_and_empty_segment_fill():
    src = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    index = torch.tensor([0, 2, 0, 2])
    assert scatter(src, index, dim=1, dim_size=3).tolist() == [[4.0, 0.0, 6.0]]
    assert scatter(src, index, dim=1, dim_size=4, reduce="mul").tolist() == [[3.0, 0.0, 8.0, 0.0]]
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


def test_empty_segments_get_zero_value_and_no_gradient_path():
    src = torch.randn(4, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 0, 3, 3])
    for reduce in REDUCTIONS:
        out = scatter(src, index, dim=0, dim_size=5, reduce=reduce)
        assert out[[1, 2, 4]].tolist() == [0.0, 0.0, 0.0]
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
        scatter(torch.ones(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), reduce="mean")
    with pytest.raises(DataError, match="non-decreasing"):
        segment_csr(torch.ones(5), torch.tensor([0, 3, 2, 5]))
    with pytest.raises(DataError, match="non-decreasing"):
        segment_csr(torch.ones(5), torch.tensor([0, 6]))
