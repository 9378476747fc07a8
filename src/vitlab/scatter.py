"""Gather / scatter segment reductions with autograd.

References:
    PyTorch documentation of ``torch.gather`` and ``Tensor.scatter_`` (the 3-D index formulas below
    are theirs), and the functional API of rusty1s/pytorch_scatter (Fey & Lenssen, "Fast Graph
    Representation Learning with PyTorch Geometric", ICLR 2019 RLGM workshop, arXiv:1903.02428),
    whose semantics (index broadcasting, ``dim_size``, ``segment_csr``) this module follows. The
    code is our own, built on ``Tensor.scatter_add``, ``Tensor.scatter_reduce``, ``Tensor.gather``
    and ``torch.segment_reduce``.

Gather (``torch.gather(input, dim, index)``), for a 3-D tensor::

    out[i][j][k] = input[index[i][j][k]][j][k]   # dim == 0
    out[i][j][k] = input[i][index[i][j][k]][k]   # dim == 1
    out[i][j][k] = input[i][j][index[i][j][k]]   # dim == 2

Scatter is its adjoint: every element of ``src`` is sent to the output position obtained by
replacing its coordinate along ``dim`` with its index, and the elements that land on the same
position (a *segment*) are combined by a reduction ``R`` (sum, mean, max, min, mul)::

    out[index[i][j][k]][j][k] = R(src[i][j][k])   # dim == 0
    out[i][index[i][j][k]][k] = R(src[i][j][k])   # dim == 1
    out[i][j][index[i][j][k]] = R(src[i][j][k])   # dim == 2

Conventions shared by every function here:

* **Index broadcasting** (pytorch_scatter's rule): a 1-D ``index`` is laid along ``dim``;
  otherwise ``index``'s dimensions align with the leading dimensions of ``src`` and trailing
  ones are added; the result is expanded (a view, no copy) to ``src.shape``. So ``src`` (B, N, D)
  with ``index`` (B, N) and ``dim=1`` scatters whole D-vectors. ``dim`` may be negative.
* **Output shape**: ``src.shape`` with the size along ``dim`` replaced by ``dim_size``.
* **Empty segments** (output positions no element is sent to) hold the value pytorch_scatter
  gives them: **1** (the empty product) for ``mul``, **0** for every other reduction; they get a
  zero gradient, and :func:`scatter_max` / :func:`scatter_min` (and the segment max/min) give
  them the arg index ``src.size(dim)``.
* **dtypes**: every reduction accepts float16, bfloat16, float32, float64 and the integer dtypes;
  an integer ``mean`` is the floor-divided mean in the input dtype
  (``floor(sum / count)``, as ``scatter_mean`` and ``torch.scatter_reduce(mean)`` do). The softmax
  family needs floating point. ``out=`` is not supported: every function returns a new tensor.
* **dim_size**: when ``None`` it is ``index.max() + 1``, computed with **one host
  synchronisation**; vitlab's own callers always pass it.
* **Index range**: with ``check=True`` an index outside ``[0, dim_size)`` raises
  :class:`vitlab.errors.DataError`. On CPU this check is free (the scatter kernel bounds-checks
  and its error is translated); on accelerators it costs one extra host synchronisation, which
  ``check=False`` skips (an out-of-range index then triggers a device-side assert).
* **Autograd**: every reduction is differentiable and checked with ``gradcheck`` in float64.
  Gradients of ``max``/``min`` go to the single arg element (ties: the lowest index along
  ``dim``); see the individual docstrings for ``mul`` and the softmax family.
* **Determinism**: on CPU the kernels used reduce in a fixed order, so repeated calls give
  bitwise-equal results (tested). On CUDA the scatter-add behind ``sum``/``mean``/softmax uses
  atomic adds, so float results may differ in the last bits from run to run; ``max``/``min``
  are exact whatever the order. :func:`segment_csr` uses ``torch.segment_reduce``, whose kernels
  use no atomics (each segment is reduced by one thread or one block in a fixed order), so it is
  reproducible on every device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitlab.errors import DataError, unknown_name_message

__all__ = [
    "REDUCTIONS",
    "broadcast_index",
    "scatter",
    "scatter_logsumexp",
    "scatter_log_softmax",
    "scatter_max",
    "scatter_mean",
    "scatter_min",
    "scatter_mul",
    "scatter_softmax",
    "scatter_sum",
    "gather_coo",
    "gather_csr",
    "segment_coo",
    "segment_csr",
    "segment_max_coo",
    "segment_max_csr",
    "segment_mean_coo",
    "segment_mean_csr",
    "segment_min_coo",
    "segment_min_csr",
    "segment_sum_coo",
    "segment_sum_csr",
]

REDUCTIONS = ("sum", "mean", "max", "min", "mul")
_ALIASES = {"add": "sum"}  # pytorch_scatter accepts "add" for "sum"

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


# --------------------------------------------------------------------------------------------
# validation and broadcasting
# --------------------------------------------------------------------------------------------


def _check_src(src: Tensor, what: str = "src", need_float: bool = False) -> None:
    if not isinstance(src, Tensor):
        raise DataError(f"{what} must be a torch.Tensor, got {type(src).__name__}")
    if src.dtype == torch.bool or src.is_complex():
        raise DataError(f"{what} must be a real-valued tensor, got {src.dtype}; convert with .float()")
    if need_float and not src.is_floating_point():
        raise DataError(f"{what} must be floating point for this reduction, got {src.dtype}; convert with .float()")


def _reduction(reduce: str) -> str:
    """The canonical name of ``reduce`` (one of :data:`REDUCTIONS`), or a DataError naming it."""
    name = _ALIASES.get(reduce, reduce) if isinstance(reduce, str) else reduce
    if name not in REDUCTIONS:
        raise DataError(unknown_name_message("reduction", str(reduce), REDUCTIONS))
    return name


def _check_index(index: Tensor, what: str = "index") -> None:
    if not isinstance(index, Tensor):
        raise DataError(f"{what} must be an integer torch.Tensor, got {type(index).__name__}")
    if index.dtype not in _INT_DTYPES:
        raise DataError(f"{what} must be an integer tensor, got {index.dtype}; use {what}.long()")


def _normalize_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise DataError(f"dim={dim} is out of range for a {ndim}-D src; use a dim in [{-ndim}, {ndim - 1}]")
    return dim % ndim


def _index_view(index: Tensor, src: Tensor, dim: int) -> Tensor:
    """``index`` reshaped (no expansion yet) so that it broadcasts against ``src``."""
    if index.dim() == 1 and src.dim() > 1:
        shape = [1] * src.dim()
        shape[dim] = index.numel()
        index = index.view(shape)
    elif index.dim() > src.dim():
        raise DataError(
            f"index has {index.dim()} dims but src has {src.dim()}; index must have at most as many dims as src"
        )
    else:
        index = index.view(*index.shape, *([1] * (src.dim() - index.dim())))
    return index


def broadcast_index(index: Tensor, src: Tensor, dim: int) -> Tensor:
    """Broadcast ``index`` to ``src.shape`` (pytorch_scatter's rule), as an int64 view.

    A 1-D ``index`` is laid along ``dim``; otherwise its dimensions align with the leading
    dimensions of ``src`` and size-1 dimensions are appended. The result is ``expand``-ed, so no
    memory is copied (apart from a dtype conversion to int64 when needed).

    Args:
        index: (n_0, ..., n_{m-1}) integer tensor with ``m <= src.dim()``, or (src.size(dim),).
        src: (s_0, ..., s_{d-1}) tensor.
        dim: the scatter dimension (may be negative).

    Returns:
        (s_0, ..., s_{d-1}) int64 tensor.

    Raises:
        DataError: ``index`` is not an integer tensor or does not broadcast to ``src``.
    """
    _check_index(index)
    dim = _normalize_dim(dim, max(src.dim(), 1))
    view = _index_view(index, src, dim)
    try:
        expanded = view.expand(src.shape)
    except RuntimeError:
        raise DataError(
            f"index of shape {tuple(index.shape)} does not broadcast to src {tuple(src.shape)} along dim={dim}; "
            "give index the leading shape of src (or a 1-D index of length src.size(dim))"
        ) from None
    return expanded.long()


def _first_bad(index: Tensor, dim_size: int) -> int:
    bad = (index < 0) | (index >= dim_size)
    return int(index[bad].flatten()[0])


def _range_error(index: Tensor, dim_size: int, fix: str = "") -> DataError:
    bad = _first_bad(index, dim_size)
    fix = fix or "pass dim_size larger than index.max() (or leave it None) and use non-negative indices"
    return DataError(f"index contains {bad}, outside [0, {dim_size}); {fix}")


def _resolve_dim_size(index: Tensor, dim_size: int | None, check: bool) -> int:
    """``dim_size`` (inferred with one host sync when ``None``), range-checked on accelerators."""
    if dim_size is not None:
        dim_size = int(dim_size)
        if dim_size < 0:
            raise DataError(f"dim_size must be >= 0, got {dim_size}")
        if check and not index.is_cpu and index.numel():
            # CPU kernels bounds-check for free; elsewhere one sync reads back both extremes.
            lo, hi = torch.aminmax(index)
            if int(lo) < 0 or int(hi) >= dim_size:
                raise _range_error(index, dim_size)
        return dim_size
    if index.numel() == 0:
        return 0
    if index.is_cpu:
        return max(int(index.max()) + 1, 0)  # the one documented host sync (negatives: the kernel's range error)
    lo, hi = torch.aminmax(index)  # one sync for both the size and the negative-index check
    if check and int(lo) < 0:
        raise _range_error(index, int(hi) + 1)
    return max(int(hi) + 1, 0)


def _out_shape(src: Tensor, dim: int, dim_size: int) -> list[int]:
    shape = list(src.shape)
    shape[dim] = dim_size
    return shape


def _count(view: Tensor, src: Tensor, dim: int, dim_size: int, dtype: torch.dtype) -> Tensor:
    """Number of elements sent to each output position, broadcastable to the output.

    Computed on the index as given (only expanded along ``dim``), so a 1-D index over a wide
    ``src`` costs one small scatter.
    """
    shape = list(view.shape)
    shape[dim] = src.shape[dim]
    view = view.expand(shape)
    count_shape = list(shape)
    count_shape[dim] = dim_size
    count = torch.zeros(count_shape, dtype=dtype, device=src.device)
    ones = torch.ones((), dtype=dtype, device=src.device).expand(shape)  # stride 0: no N-sized buffer
    return _run(lambda: count.scatter_add_(dim, view, ones), view, dim_size)


def _prepare(
    src: Tensor, index: Tensor, dim: int, dim_size: int | None, check: bool, need_float: bool = False
) -> tuple[Tensor, Tensor, int, int]:
    """Validate and return ``(index_view, index_b, dim, dim_size)``."""
    _check_src(src, need_float=need_float)
    _check_index(index)
    if src.dim() == 0:
        raise DataError("src is 0-dimensional; scatter needs at least one dimension (use src.reshape(1))")
    dim = _normalize_dim(dim, src.dim())
    view = _index_view(index, src, dim)
    try:
        index_b = view.expand(src.shape)
    except RuntimeError:
        raise DataError(
            f"index of shape {tuple(index.shape)} does not broadcast to src {tuple(src.shape)} along dim={dim}; "
            "give index the leading shape of src (or a 1-D index of length src.size(dim))"
        ) from None
    index_b = index_b.long()
    dim_size = _resolve_dim_size(index, dim_size, check)
    return view.long(), index_b, dim, dim_size


def _run(kernel, index: Tensor, dim_size: int) -> Tensor:  # noqa: ANN001 - a zero-arg callable
    """Call a scatter kernel, translating its out-of-bounds error into a DataError."""
    try:
        return kernel()
    except RuntimeError as err:
        if "out of bounds" in str(err) or "out of range" in str(err):
            raise _range_error(index, dim_size) from None
        raise


# --------------------------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------------------------


def scatter_sum(src: Tensor, index: Tensor, dim: int = -1, dim_size: int | None = None, check: bool = True) -> Tensor:
    """Segment sum (``Tensor.scatter_add``)::

        out[index[i][j][k]][j][k] += src[i][j][k]   # dim == 0
        out[i][index[i][j][k]][k] += src[i][j][k]   # dim == 1
        out[i][j][index[i][j][k]] += src[i][j][k]   # dim == 2

    starting from ``out = 0``. Gradient: ``d out[p] / d src[e] = [index(e) == p]``, i.e. the
    backward is ``grad_out.gather(dim, index)``. Integer ``src`` is allowed (counts).

    Args:
        src: (s_0, ..., s_{d-1}) tensor.
        index: integer tensor broadcastable to ``src`` (see :func:`broadcast_index`).
        dim: dimension to scatter along (negative allowed).
        dim_size: output size along ``dim`` (``None``: ``index.max() + 1``, one host sync).
        check: raise :class:`DataError` for indices outside ``[0, dim_size)`` (see module doc).

    Returns:
        ``src.shape`` with ``dim_size`` along ``dim``.
    """
    _, index_b, dim, dim_size = _prepare(src, index, dim, dim_size, check)
    out = src.new_zeros(_out_shape(src, dim, dim_size))
    return _run(lambda: out.scatter_add(dim, index_b, src), index, dim_size)


def _divide_mean(total: Tensor, count: Tensor) -> Tensor:
    """``total / count`` in ``total``'s dtype; ``count`` is an int64 count already clamped to >= 1.

    Integers: ``floor(total / count)`` (pytorch_scatter's ``scatter_mean`` and
    ``torch.scatter_reduce(mean)``). float16 / bfloat16: divided in float32 and rounded once, which
    equals a division in the low-precision dtype whenever the count is exact there (<= 2048 /
    <= 256) and stays correct beyond.
    """
    if not total.is_floating_point():
        return torch.div(total, count, rounding_mode="floor").to(total.dtype)
    if total.dtype in (torch.float16, torch.bfloat16):
        return (total.float() / count).to(total.dtype)
    return total / count.to(total.dtype)


def scatter_mean(src: Tensor, index: Tensor, dim: int = -1, dim_size: int | None = None, check: bool = True) -> Tensor:
    """Segment mean: ``out[p] = sum_{e: index(e) = p} src[e] / max(1, |{e: index(e) = p}|)``.

    With the 3-D formulas of :func:`scatter_sum` for the numerator and ``count`` the number of
    elements sent to each position (computed on the un-broadcast index, so a 1-D index costs one
    small scatter). Empty segments give ``0 / 1 = 0``. Gradient: ``grad_out[index(e)] / count``.
    Integer ``src`` gives the floor-divided mean ``floor(sum / count)`` in its own dtype
    (pytorch_scatter's rule), e.g. the mean of ``[-3, 0]`` is ``-2``.

    Args:
        src: (s_0, ..., s_{d-1}) tensor (floating point or integer).
        index, dim, dim_size, check: as in :func:`scatter_sum`.

    Returns:
        ``src.shape`` with ``dim_size`` along ``dim``, ``src.dtype``.
    """
    view, index_b, dim, dim_size = _prepare(src, index, dim, dim_size, check)
    total = src.new_zeros(_out_shape(src, dim, dim_size))
    total = _run(lambda: total.scatter_add(dim, index_b, src), index, dim_size)
    return _divide_mean(total, _count(view, src, dim, dim_size, torch.long).clamp_min_(1))


def scatter_mul(src: Tensor, index: Tensor, dim: int = -1, dim_size: int | None = None, check: bool = True) -> Tensor:
    """Segment product (``Tensor.scatter_reduce(reduce='prod', include_self=False)`` into ones)::

        out[index[i][j][k]][j][k] *= src[i][j][k]   # dim == 0   (and likewise for dim 1, 2)

    starting from ``out = 1``, so an empty segment gives **1**, the empty product (as in
    pytorch_scatter: ``src=[1, 3, 2, 4, 5, 6]``, ``index=[0, 1, 0, 1, 1, 3]`` gives
    ``[2, 60, 1, 6]``). Gradient ``d out[p] / d src[e] = prod_{e' != e in p} src[e']``: PyTorch's
    backward handles zeros exactly (one zero in a segment: only that element gets a non-zero
    gradient; two or more: all zero), which the tests check with ``gradcheck`` on inputs containing
    zeros. Integer products wrap around on overflow, like ``torch.prod``.

    Args:
        src: (s_0, ..., s_{d-1}) tensor.
        index, dim, dim_size, check: as in :func:`scatter_sum`.

    Returns:
        ``src.shape`` with ``dim_size`` along ``dim``.
    """
    _, index_b, dim, dim_size = _prepare(src, index, dim, dim_size, check)
    out = src.new_ones(_out_shape(src, dim, dim_size))
    return _run(lambda: out.scatter_reduce(dim, index_b, src, "prod", include_self=False), index, dim_size)


def _gather(t: Tensor, dim: int, index_b: Tensor) -> Tensor:
    """``t.gather(dim, index_b)``; ``index_select`` when both are 1-D (same values, faster kernel)."""
    if t.dim() == 1 and index_b.dim() == 1:
        return t.index_select(0, index_b)
    return t.gather(dim, index_b)


def _reduce_from_identity(plain: Tensor, index_b: Tensor, dim: int, dim_size: int, which: str, index: Tensor) -> Tensor:
    """``scatter_reduce(amax|amin, include_self=True)`` into a tensor filled with the reduction's
    identity (-inf / +inf, or the integer extremes), so empty segments keep that identity.

    Same values as ``include_self=False`` on every non-empty segment, and about twice as fast on CPU.
    """
    if plain.is_floating_point():
        fill = float("-inf") if which == "amax" else float("inf")
    else:
        info = torch.iinfo(plain.dtype)
        fill = info.min if which == "amax" else info.max
    out = torch.full(_out_shape(plain, dim, dim_size), fill, dtype=plain.dtype, device=plain.device)
    return _run(lambda: out.scatter_reduce_(dim, index_b, plain, which, include_self=True), index, dim_size)


def _scatter_extreme(
    src: Tensor, index: Tensor, dim: int, dim_size: int | None, check: bool, which: str, need_arg: bool
) -> tuple[Tensor, Tensor | None]:
    view, index_b, dim, dim_size = _prepare(src, index, dim, dim_size, check)
    shape = _out_shape(src, dim, dim_size)
    n = src.shape[dim]
    plain = src.detach()
    extreme = _reduce_from_identity(plain, index_b, dim, dim_size, which, index)
    if not need_arg:
        empty = _count(view, src, dim, dim_size, torch.int32) == 0  # tells "empty" from "all -inf"
        return extreme.masked_fill_(empty, 0), None
    if n == 0 or src.numel() == 0:
        arg = torch.full(shape, n, dtype=torch.long, device=src.device)
        return src.new_zeros(shape) + src.reshape(-1)[:0].sum(), arg
    # arg[p] = the lowest position along dim among p's elements equal to the extreme (NaN counts
    # as equal, so a segment holding NaN points at its first NaN, whose value is NaN).
    hit = plain == _gather(extreme, dim, index_b)
    if plain.is_floating_point():
        hit |= plain.isnan()
    pos_shape = [1] * src.dim()
    pos_shape[dim] = n
    pos = torch.arange(n, device=src.device).view(pos_shape).expand(src.shape)
    candidate = torch.where(hit, pos, torch.full_like(pos, n))
    arg = torch.full(shape, n, dtype=torch.long, device=src.device)
    arg = arg.scatter_reduce(dim, index_b, candidate, "amin", include_self=True)
    empty = arg == n
    # Reading the value back through gather routes the gradient to the arg element only.
    values = _gather(src, dim, arg.clamp_max(n - 1))
    values = torch.where(empty, torch.zeros_like(values), values)
    return values, arg


def _needs_grad(src: Tensor) -> bool:
    return src.requires_grad and torch.is_grad_enabled()


def scatter_max(
    src: Tensor, index: Tensor, dim: int = -1, dim_size: int | None = None, check: bool = True
) -> tuple[Tensor, Tensor]:
    """Segment maximum and its arg index::

        out[index[i][j][k]][j][k] = max(out[...], src[i][j][k])   # dim == 0 (likewise dim 1, 2)
        arg[p] = min{ e_dim : index(e) = p and src[e] = out[p] }   # position along dim

    Ties go to the **lowest** position along ``dim``; a segment holding NaN gives NaN and points
    at its first NaN. Empty segments: value 0, arg ``src.size(dim)``. The values are read back
    as ``src.gather(dim, arg)``, so the gradient reaches the arg element only (zero for empty
    segments).

    Args:
        src, index, dim, dim_size, check: as in :func:`scatter_sum`.

    Returns:
        ``(values, arg)``, both ``src.shape`` with ``dim_size`` along ``dim``; ``arg`` is int64.
    """
    values, arg = _scatter_extreme(src, index, dim, dim_size, check, "amax", need_arg=True)
    assert arg is not None
    return values, arg


def scatter_min(
    src: Tensor, index: Tensor, dim: int = -1, dim_size: int | None = None, check: bool = True
) -> tuple[Tensor, Tensor]:
    """Segment minimum and its arg index; :func:`scatter_max` with ``min`` in place of ``max``::

        out[i][index[i][j][k]][k] = min(out[...], src[i][j][k])   # dim == 1 (likewise dim 0, 2)

    Returns:
        ``(values, arg)``, both ``src.shape`` with ``dim_size`` along ``dim``.
    """
    values, arg = _scatter_extreme(src, index, dim, dim_size, check, "amin", need_arg=True)
    assert arg is not None
    return values, arg


def scatter(
    src: Tensor,
    index: Tensor,
    dim: int = -1,
    dim_size: int | None = None,
    reduce: str = "sum",
    check: bool = True,
) -> Tensor:
    """Reduce the elements of ``src`` that share an index, along ``dim``::

        out[index[i][j][k]][j][k] = R(src[i][j][k])   # dim == 0
        out[i][index[i][j][k]][k] = R(src[i][j][k])   # dim == 1
        out[i][j][index[i][j][k]] = R(src[i][j][k])   # dim == 2

    with ``R`` in ``'sum' | 'mean' | 'max' | 'min' | 'mul'`` (see :func:`scatter_sum`,
    :func:`scatter_mean`, :func:`scatter_max`, :func:`scatter_min`, :func:`scatter_mul`). For
    ``max``/``min`` only the values are returned; when no gradient is needed they come straight
    from ``scatter_reduce(amax/amin)`` into a tensor filled with the identity (-inf / +inf) plus a
    count to zero the empty segments, otherwise through the arg index so the gradient goes to the
    arg element (lowest position on ties).

    Example (dim 1, sum)::

        src = [[1, 2, 3, 4]], index = [0, 2, 0, 2]  ->  out = [[4, 0, 6]]   (dim_size=3)

    Args:
        src: (s_0, ..., s_{d-1}) tensor, floating point or integer.
        index: integer tensor broadcastable to ``src`` (see :func:`broadcast_index`).
        dim: dimension to scatter along (negative allowed).
        dim_size: output size along ``dim`` (``None``: ``index.max() + 1``, one host sync).
        reduce: the reduction ``R`` (``'add'`` is accepted as pytorch_scatter's alias of ``'sum'``).
        check: raise :class:`DataError` for indices outside ``[0, dim_size)``.

    Returns:
        ``src.shape`` with ``dim_size`` along ``dim``; empty segments hold 1 for ``mul``, else 0.
    """
    reduce = _reduction(reduce)
    if reduce == "sum":
        return scatter_sum(src, index, dim, dim_size, check)
    if reduce == "mean":
        return scatter_mean(src, index, dim, dim_size, check)
    if reduce == "mul":
        return scatter_mul(src, index, dim, dim_size, check)
    if reduce in ("max", "min"):
        which = "amax" if reduce == "max" else "amin"
        values, _ = _scatter_extreme(src, index, dim, dim_size, check, which, need_arg=_needs_grad(src))
        return values
    raise AssertionError(reduce)  # unreachable: _reduction validated it


# --------------------------------------------------------------------------------------------
# softmax family
# --------------------------------------------------------------------------------------------


def _segment_max_shift(
    src: Tensor, index_b: Tensor, dim: int, dim_size: int, index: Tensor, keep_inf: bool = False
) -> Tensor:
    """Per-segment maximum of ``src`` (no gradient), the shift that stabilises exp.

    Empty and all ``-inf`` segments (maximum ``-inf``) are shifted by 0 instead, so nothing
    computes ``-inf - (-inf)``. A segment whose maximum is ``+inf`` keeps the ``+inf`` shift when
    ``keep_inf`` (softmax: ``inf - inf = NaN`` over the segment, exactly as ``torch.softmax`` gives
    ``[nan, nan]`` for ``[inf, 1]``); otherwise it is shifted by 0 too (logsumexp: ``log(inf) = inf``,
    as ``torch.logsumexp``).
    """
    seg_max = _reduce_from_identity(src.detach(), index_b, dim, dim_size, "amax", index)
    bad = seg_max == float("-inf") if keep_inf else ~torch.isfinite(seg_max)
    return torch.where(bad, torch.zeros_like(seg_max), seg_max)


class _SegmentSoftmax(torch.autograd.Function):
    """``y = softmax within segments``; backward ``dx = y * (g - sum_{segment} g * y)`` (exact)."""

    @staticmethod
    def forward(  # noqa: ANN001 - ctx
        ctx, src: Tensor, index_b: Tensor, dim: int, dim_size: int, log: bool, index: Tensor
    ) -> Tensor:
        shape = _out_shape(src, dim, dim_size)
        seg_max = _segment_max_shift(src, index_b, dim, dim_size, index, keep_inf=True)
        y = _gather(seg_max, dim, index_b)  # the one N-sized buffer, reused in place below
        torch.sub(src, y, out=y)  # shifted = src - m
        if log:
            seg_sum = y.new_zeros(shape).scatter_add_(dim, index_b, y.exp())
            y.sub_(_gather(seg_sum.log_(), dim, index_b))
        else:
            y.exp_()
            seg_sum = y.new_zeros(shape).scatter_add_(dim, index_b, y)
            y.div_(_gather(seg_sum, dim, index_b))
        ctx.dim, ctx.dim_size, ctx.log = dim, dim_size, log
        ctx.save_for_backward(y, index_b)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: ANN001, ANN205
        y, index_b = ctx.saved_tensors
        dim, shape = ctx.dim, _out_shape(y, ctx.dim, ctx.dim_size)
        if ctx.log:  # y = log p: dx = g - p * sum_seg g
            seg = grad.new_zeros(shape).scatter_add(dim, index_b, grad)
            grad_src = grad - y.exp() * _gather(seg, dim, index_b)
        else:  # y = p: dx = p * (g - sum_seg g * p)
            gy = grad * y
            seg = gy.new_zeros(shape).scatter_add(dim, index_b, gy)
            grad_src = gy - y * _gather(seg, dim, index_b)
        return grad_src, None, None, None, None, None


def scatter_softmax(
    src: Tensor, index: Tensor, dim: int = -1, dim_size: int | None = None, check: bool = True
) -> Tensor:
    """Softmax within each segment::

        out[e] = exp(src[e] - m[p]) / sum_{e': index(e') = p} exp(src[e'] - m[p]),   p = index(e),

    where ``m[p]`` is the segment maximum (subtracted for numerical stability; the result does not
    depend on it). Each non-empty segment sums to 1. In 3-D with ``dim == 1`` the segment of
    ``src[i][j][k]`` is ``(i, index[i][j][k], k)``. A custom autograd Function computes the
    forward with a single N-sized buffer and the exact backward
    ``d src[e] = out[e] * (g[e] - sum_{e' in p} g[e'] * out[e'])`` (checked by ``gradcheck`` and
    ``gradgradcheck``).

    Args:
        src: (s_0, ..., s_{d-1}) floating-point tensor.
        index, dim, dim_size, check: as in :func:`scatter_sum` (``dim_size`` only sizes the
            intermediate per-segment tensors).

    Returns:
        ``src.shape``.
    """
    _, index_b, dim, dim_size = _prepare(src, index, dim, dim_size, check, need_float=True)
    return _SegmentSoftmax.apply(src, index_b, dim, dim_size, False, index)


def scatter_log_softmax(
    src: Tensor, index: Tensor, dim: int = -1, dim_size: int | None = None, check: bool = True
) -> Tensor:
    """Log-softmax within each segment: ``out[e] = src[e] - m[p] - log sum_{e' in p} exp(src[e'] - m[p])``.

    Same segments, stabilisation and arguments as :func:`scatter_softmax`; backward
    ``d src[e] = g[e] - exp(out[e]) * sum_{e' in p} g[e']``.

    Returns:
        ``src.shape``.
    """
    _, index_b, dim, dim_size = _prepare(src, index, dim, dim_size, check, need_float=True)
    return _SegmentSoftmax.apply(src, index_b, dim, dim_size, True, index)


def scatter_logsumexp(
    src: Tensor, index: Tensor, dim: int = -1, dim_size: int | None = None, check: bool = True
) -> Tensor:
    """Per-segment log-sum-exp: ``out[p] = m[p] + log sum_{e: index(e) = p} exp(src[e] - m[p])``.

    In 3-D with ``dim == 0``: ``out[index[i][j][k]][j][k] = logsumexp over those src[i][j][k]``.
    Empty segments give 0; a segment of only ``-inf`` gives ``-inf``. Gradient: the segment
    softmax of ``src``.

    Args:
        src, index, dim, dim_size, check: as in :func:`scatter_softmax`.

    Returns:
        ``src.shape`` with ``dim_size`` along ``dim``.
    """
    view, index_b, dim, dim_size = _prepare(src, index, dim, dim_size, check, need_float=True)
    seg_max = _segment_max_shift(src, index_b, dim, dim_size, index)
    e = (src - _gather(seg_max, dim, index_b)).exp()
    seg_sum = e.new_zeros(_out_shape(src, dim, dim_size)).scatter_add(dim, index_b, e)
    empty = (_count(view, src, dim, dim_size, torch.long) == 0).expand_as(seg_sum)
    safe_sum = torch.where(empty, torch.ones_like(seg_sum), seg_sum)
    return torch.where(empty, torch.zeros_like(seg_sum), safe_sum.log() + seg_max)


# --------------------------------------------------------------------------------------------
# sorted segments: CSR (offsets ``indptr``) and COO (a sorted index)
# --------------------------------------------------------------------------------------------

_SEGMENT_REDUCE = {"sum": "sum", "mean": "mean", "max": "max", "min": "min", "mul": "prod"}


def _leading_index(src: Tensor, index: Tensor, what: str, last: int | None = None) -> tuple[Tensor, int]:
    """``index`` (..., m) as int64 expanded to ``(*src.shape[:dim], last)``, with ``dim = index.dim() - 1``.

    ``last=None`` keeps ``index``'s own last size.
    """
    _check_src(src)
    _check_index(index, what)
    if index.dim() == 0 or index.dim() > src.dim():
        raise DataError(
            f"{what} has {index.dim()} dims and src has {src.dim()}; {what} needs 1 to src.dim() dims "
            f"(the segments run along {what}.dim() - 1)"
        )
    dim = index.dim() - 1
    try:
        return index.long().expand(*src.shape[:dim], index.shape[-1] if last is None else last), dim
    except RuntimeError:
        raise DataError(
            f"{what} of shape {tuple(index.shape)} does not broadcast to src {tuple(src.shape)}: its leading dims "
            f"must match (or be 1 against) src's first {dim} dims"
        ) from None


def _csr_offsets(src: Tensor, indptr: Tensor, check: bool, bounded: bool) -> tuple[Tensor, int, int]:
    """Validated offsets expanded to ``(*src.shape[:dim], S + 1)``, with ``dim`` and ``S``.

    ``bounded``: offsets may not exceed ``src.size(dim)`` (a reduction; not so for gather).
    """
    if isinstance(indptr, Tensor) and (indptr.dim() == 0 or indptr.shape[-1] == 0):
        raise DataError(f"indptr must have shape (..., S + 1) with S >= 0, got {tuple(indptr.shape)}; e.g. [0, n]")
    offsets, dim = _leading_index(src, indptr, "indptr")
    limit = src.shape[dim] if bounded else None
    num_segments = offsets.shape[-1] - 1
    if check and offsets.numel():
        bad = (offsets[..., 0] < 0).any()
        if limit is not None:
            bad = bad | (offsets[..., -1] > limit).any()
        if num_segments:
            bad = bad | (offsets.diff(dim=-1) < 0).any()
        if bool(bad):
            shown = indptr.flatten()[:12].tolist()
            span = f"[0, {limit}] (src.size({dim}))" if limit is not None else ">= 0"
            raise DataError(
                f"indptr must be non-decreasing offsets in {span}, got "
                f"{shown}{' ...' if indptr.numel() > 12 else ''}; build it as cat([0], counts.cumsum(0))"
            )
    return offsets, dim, num_segments


def _segment_ids(offsets: Tensor, n: int) -> Tensor:
    """(..., n) int64: the segment ``s`` with ``offsets[s] <= e < offsets[s + 1]`` of each position ``e``.

    ``S`` (one past the last segment) marks positions before ``offsets[0]`` or from ``offsets[S]`` on.
    Counting the offsets ``<= e`` with one scatter-add and one cumsum costs O(n + S), no search.
    """
    num_segments = offsets.shape[-1] - 1
    hist = torch.zeros(*offsets.shape[:-1], n + 1, dtype=torch.long, device=offsets.device)
    ones = torch.ones((), dtype=torch.long, device=offsets.device).expand(offsets.shape)
    hist.scatter_add_(-1, offsets.clamp(0, n), ones)
    seg = hist.cumsum(-1)[..., :n] - 1  # (number of offsets <= e) - 1, in [-1, S]
    return seg.masked_fill_(seg < 0, num_segments)


def _empty_result(src: Tensor, shape: list[int], reduce: str) -> Tensor:
    """A result with no element reduced: the empty-segment value, still attached to ``src``'s graph."""
    fill = src.new_ones(shape) if reduce == "mul" else src.new_zeros(shape)
    return fill + src.reshape(-1)[:0].sum()


def _segment_csr(
    src: Tensor, indptr: Tensor, reduce: str, check: bool, need_arg: bool
) -> tuple[Tensor, Tensor | None]:
    reduce = _reduction(reduce)
    offsets, dim, num_segments = _csr_offsets(src, indptr, check, bounded=True)
    n = src.shape[dim]
    extreme = reduce in ("max", "min")
    if need_arg or not src.is_floating_point() or (extreme and _needs_grad(src)):
        # Integers (torch.segment_reduce has no integer kernels), arg indices and max/min gradients:
        # the same reduction as a scatter over the segment ids, with a dummy segment S for the
        # positions outside every segment, dropped afterwards.
        seg = _segment_ids(offsets, n)
        if extreme:
            which = "amax" if reduce == "max" else "amin"
            values, arg = _scatter_extreme(src, seg, dim, num_segments + 1, False, which, need_arg=True)
            assert arg is not None
            return values.narrow(dim, 0, num_segments), arg.narrow(dim, 0, num_segments)
        return scatter(src, seg, dim, num_segments + 1, reduce, check=False).narrow(dim, 0, num_segments), None
    shape = _out_shape(src, dim, num_segments)
    if src.numel() == 0 or num_segments == 0:
        return _empty_result(src, shape, reduce), None
    try:
        out = torch.segment_reduce(src, _SEGMENT_REDUCE[reduce], offsets=offsets, axis=dim)
    except RuntimeError:  # only reachable with check=False and bad offsets
        raise DataError(
            f"indptr must be non-decreasing offsets in [0, {n}] (src.size({dim})); "
            "call with check=True to see the bad values"
        ) from None
    if reduce == "sum":
        return out, None
    lengths = offsets.diff(dim=-1)  # (..., S)
    empty = (lengths == 0).view(*lengths.shape, *([1] * (src.dim() - dim - 1)))  # broadcasts to out
    fill = torch.ones_like(out) if reduce == "mul" else torch.zeros_like(out)
    return torch.where(empty, fill, out), None


def segment_csr(src: Tensor, indptr: Tensor, reduce: str = "sum", check: bool = True) -> Tensor:
    """Reduce sorted segments given by offsets ``indptr`` (compressed sparse row form).

    With ``dim = indptr.dim() - 1`` and ``S = indptr.size(-1) - 1`` segments, for a 3-D ``src``
    and 1-D ``indptr`` (``dim == 0``)::

        out[s][j][k] = R(src[indptr[s] : indptr[s + 1]][j][k])

    and for a 2-D ``indptr`` (``dim == 1``, one offset row per leading index)::

        out[i][s][k] = R(src[i][indptr[i][s] : indptr[i][s + 1]][k])

    The leading dimensions of ``indptr`` broadcast to ``src.shape[:dim]``. Elements before
    ``indptr[..., 0]`` or from ``indptr[..., -1]`` on belong to no segment and are ignored; empty
    segments (``indptr[s] == indptr[s + 1]``) give 1 for ``mul`` and 0 otherwise. ``R`` is one of
    :data:`REDUCTIONS` (pytorch_scatter's ``segment_csr`` has no ``mul``; it is kept here).
    Integer ``src`` works for every reduction (``mean``: floor division, as :func:`scatter_mean`).

    Determinism: floating-point ``sum``/``mean``/``mul``, and ``max``/``min`` without gradient,
    use ``torch.segment_reduce``, which reduces each segment in order, so results are bitwise
    reproducible (no atomics); its backward is exact (``gradcheck``). Integer inputs, and
    ``max``/``min`` with gradient, go through :func:`scatter` on the segment ids (exact whatever
    the order); the max/min gradient reaches the arg element (lowest position on ties).

    Args:
        src: (s_0, ..., s_{d-1}) tensor with ``d > indptr.dim() - 1``.
        indptr: (..., S + 1) non-decreasing integer offsets into ``src.size(dim)``.
        reduce: the reduction.
        check: validate ``indptr`` (sorted, within ``[0, src.size(dim)]``); reads one boolean back
            from the device.

    Returns:
        ``src.shape`` with ``S`` along ``dim``.
    """
    return _segment_csr(src, indptr, reduce, check, need_arg=False)[0]


def segment_sum_csr(src: Tensor, indptr: Tensor, check: bool = True) -> Tensor:
    """:func:`segment_csr` with ``reduce='sum'``: (..., n, ...) -> (..., S, ...)."""
    return segment_csr(src, indptr, "sum", check)


def segment_mean_csr(src: Tensor, indptr: Tensor, check: bool = True) -> Tensor:
    """:func:`segment_csr` with ``reduce='mean'`` (integers: floor division): (..., n, ...) -> (..., S, ...)."""
    return segment_csr(src, indptr, "mean", check)


def segment_max_csr(src: Tensor, indptr: Tensor, check: bool = True) -> tuple[Tensor, Tensor]:
    """Per-segment maximum and its arg index, the CSR counterpart of :func:`scatter_max`.

    ``arg[..., s, ...]`` is the position along ``dim`` (in ``[indptr[s], indptr[s + 1])``) of the
    first maximal element; an empty segment gives value 0 and arg ``src.size(dim)``.

    Args:
        src, indptr, check: as in :func:`segment_csr`.

    Returns:
        ``(values, arg)``, both ``src.shape`` with ``S`` along ``dim``; ``arg`` is int64.
    """
    values, arg = _segment_csr(src, indptr, "max", check, need_arg=True)
    assert arg is not None
    return values, arg


def segment_min_csr(src: Tensor, indptr: Tensor, check: bool = True) -> tuple[Tensor, Tensor]:
    """Per-segment minimum and its arg index; :func:`segment_max_csr` with ``min``.

    Returns:
        ``(values, arg)``, both ``src.shape`` with ``S`` along ``dim``.
    """
    values, arg = _segment_csr(src, indptr, "min", check, need_arg=True)
    assert arg is not None
    return values, arg


def _coo_offsets(src: Tensor, index: Tensor, dim_size: int | None, check: bool) -> Tensor:
    """The CSR offsets ``(..., dim_size + 1)`` of a sorted COO ``index`` (leading dims unexpanded)."""
    _, dim = _leading_index(src, index, "index")  # validates the dims and the broadcast
    # Expand along dim only: leading size-1 dims stay, so a shared index costs one row.
    try:
        idx = index.long().expand(*index.shape[:-1], src.shape[dim])
    except RuntimeError:
        raise DataError(
            f"index of shape {tuple(index.shape)} must have src.size({dim}) = {src.shape[dim]} entries "
            "along its last dim (one per element)"
        ) from None
    if dim_size is not None:
        dim_size = int(dim_size)
        if dim_size < 0:
            raise DataError(f"dim_size must be >= 0, got {dim_size}")
    if idx.numel() == 0:
        dim_size = dim_size or 0
    elif idx.dim() == 1 and (check or dim_size is None):
        # One pass gives the runs of equal values and their lengths: the index is sorted iff the run
        # values increase strictly, its range is their ends, and the offsets are the cumulated lengths.
        values, lengths = torch.unique_consecutive(idx, return_counts=True)
        unsorted = (values[1:] <= values[:-1]).any()
        lo_v, hi_v, unsorted_v = torch.stack([values[0], values[-1], unsorted.to(torch.long)]).tolist()
        if dim_size is None:
            dim_size = max((hi_v if not unsorted_v else int(values.max())) + 1, 0)
        _check_coo(index, dim, dim_size, check, lo_v, hi_v, bool(unsorted_v), idx)
        if not unsorted_v and lo_v >= 0 and hi_v < dim_size:
            counts = torch.zeros(dim_size + 1, dtype=torch.long, device=idx.device)
            counts[values + 1] = lengths
            return counts.cumsum(0)
    elif check or dim_size is None:
        # One read-back for the size, the range and the order (comparisons of neighbours, no diff
        # buffer). A sorted index has its extremes at the ends of its rows, so no full min/max pass.
        unsorted = (idx[..., 1:] < idx[..., :-1]).any()
        if check:
            lo, hi = idx[..., 0].min(), idx[..., -1].max()  # exact when sorted; unsorted raises below
        else:
            lo, hi = torch.aminmax(idx)
        lo_v, hi_v, unsorted_v = torch.stack([lo, hi, unsorted.to(torch.long)]).tolist()
        if dim_size is None:
            dim_size = max(hi_v + 1, 0)
        _check_coo(index, dim, dim_size, check, lo_v, hi_v, bool(unsorted_v), idx)
    boundaries = torch.arange(dim_size + 1, device=idx.device).expand(*idx.shape[:-1], dim_size + 1)
    return torch.searchsorted(idx.contiguous(), boundaries.contiguous())  # offsets[s] = #{e: idx[e] < s}


def _check_coo(
    index: Tensor, dim: int, dim_size: int, check: bool, lo: int, hi: int, unsorted: bool, idx: Tensor
) -> None:
    """Raise for an unsorted or out-of-range COO index (when ``check``), from values already read back."""
    if check and unsorted:
        raise DataError(
            f"index must be sorted (non-decreasing) along dim {dim} for segment_coo, got "
            f"{index.flatten()[:12].tolist()}{' ...' if index.numel() > 12 else ''}; "
            "sort it first (index, perm = index.sort(); src = src[perm]) or use scatter"
        )
    if check and (lo < 0 or hi >= dim_size):
        raise _range_error(idx, dim_size)


def segment_coo(
    src: Tensor, index: Tensor, dim_size: int | None = None, reduce: str = "sum", check: bool = True
) -> Tensor:
    """Reduce segments given by a **sorted** index (coordinate form), along ``dim = index.dim() - 1``.

    ``index`` has shape ``(x_0, ..., x_{m-1}, x_m)`` against ``src`` ``(x_0, ..., x_m, ...)``
    (leading dims may be 1 and broadcast) and is non-decreasing along its last dim; for a 3-D
    ``src`` and a 2-D ``index`` (``dim == 1``)::

        out[i][index[i][j]][k] = R(src[i][j][k])

    which is :func:`scatter` with the same index, computed instead as :func:`segment_csr` on the
    offsets ``indptr[s] = #{j: index[j] < s}`` (for a 1-D index from the runs of equal values found by
    the validating pass, otherwise one ``searchsorted`` of ``dim_size + 1`` values per row).
    Empty segments give 1 for ``mul`` and 0 otherwise.

    Args:
        src: (x_0, ..., x_m, ...) tensor, floating point or integer.
        index: (x_0, ..., x_m) integer tensor, sorted along its last dim.
        dim_size: output size along ``dim`` (``None``: ``index.max() + 1``).
        reduce: one of :data:`REDUCTIONS`.
        check: raise :class:`DataError` for an unsorted index or an index outside
            ``[0, dim_size)`` (one host read-back); with ``check=False`` such elements give
            undefined segment results (out-of-range ones are dropped).

    Returns:
        ``src.shape`` with ``dim_size`` along ``dim``.
    """
    offsets = _coo_offsets(src, index, dim_size, check)
    return _segment_csr(src, offsets, reduce, False, need_arg=False)[0]


def segment_sum_coo(src: Tensor, index: Tensor, dim_size: int | None = None, check: bool = True) -> Tensor:
    """:func:`segment_coo` with ``reduce='sum'``."""
    return segment_coo(src, index, dim_size, "sum", check)


def segment_mean_coo(src: Tensor, index: Tensor, dim_size: int | None = None, check: bool = True) -> Tensor:
    """:func:`segment_coo` with ``reduce='mean'`` (integers: floor division)."""
    return segment_coo(src, index, dim_size, "mean", check)


def segment_max_coo(
    src: Tensor, index: Tensor, dim_size: int | None = None, check: bool = True
) -> tuple[Tensor, Tensor]:
    """Per-segment maximum and arg index over a sorted index (see :func:`segment_max_csr`).

    Returns:
        ``(values, arg)``, ``src.shape`` with ``dim_size`` along ``dim``; empty: 0 and ``src.size(dim)``.
    """
    values, arg = _segment_csr(src, _coo_offsets(src, index, dim_size, check), "max", False, need_arg=True)
    assert arg is not None
    return values, arg


def segment_min_coo(
    src: Tensor, index: Tensor, dim_size: int | None = None, check: bool = True
) -> tuple[Tensor, Tensor]:
    """Per-segment minimum and arg index over a sorted index (see :func:`segment_max_csr`).

    Returns:
        ``(values, arg)``, ``src.shape`` with ``dim_size`` along ``dim``.
    """
    values, arg = _segment_csr(src, _coo_offsets(src, index, dim_size, check), "min", False, need_arg=True)
    assert arg is not None
    return values, arg


# --------------------------------------------------------------------------------------------
# gathering segment results back to the elements
# --------------------------------------------------------------------------------------------


def gather_csr(src: Tensor, indptr: Tensor, check: bool = True) -> Tensor:
    """Broadcast one value per segment back to the segment's elements (the adjoint of ``segment_sum_csr``).

    With ``dim = indptr.dim() - 1``, ``src.size(dim) == S`` (one row per segment) and
    ``n = indptr[..., -1].max()`` (over ``indptr`` as given), for a 3-D ``src`` and 1-D ``indptr``::

        out[e][j][k] = src[s][j][k]   for indptr[s] <= e < indptr[s + 1]

    Positions before ``indptr[..., 0]`` or from a row's ``indptr[..., -1]`` on belong to no
    segment and hold 0 (pytorch_scatter leaves them uninitialised). Reading ``n`` costs one host
    synchronisation. Gradient: ``segment_sum_csr`` of the output gradient (via ``gather``'s
    backward), checked with ``gradcheck``.

    Args:
        src: (s_0, ..., S, ..., s_{d-1}) tensor, ``S`` at ``dim``.
        indptr: (..., S + 1) non-decreasing non-negative integer offsets.
        check: validate ``indptr``.

    Returns:
        ``src.shape`` with ``n`` along ``dim``.
    """
    offsets, dim, num_segments = _csr_offsets(src, indptr, check, bounded=False)
    if src.shape[dim] != num_segments:
        raise DataError(
            f"gather_csr needs one src row per segment: src.size({dim}) = {src.shape[dim]} but indptr "
            f"describes {num_segments} segments; pass the output of segment_csr with the same indptr"
        )
    given_last = indptr[..., -1]
    if given_last.numel() == 0:  # indptr has no rows at all
        return src.new_zeros(_out_shape(src, dim, 0)) + src.reshape(-1)[:0].sum()
    top = given_last.max().long()
    partial = (offsets[..., 0] != 0).any() | (offsets[..., -1] != top).any()
    n, partial_v = torch.stack([top, partial.long()]).tolist()  # one read-back
    if n < 0:
        raise DataError(
            f"indptr must be non-negative offsets, got a last offset of {n}; build it as cat([0], counts.cumsum(0))"
        )
    shape = _out_shape(src, dim, n)
    if n == 0 or src.numel() == 0:
        return src.new_zeros(shape) + src.reshape(-1)[:0].sum()
    if offsets.dim() == 1 and not partial_v:
        # One shared row covering [0, n): repeat each segment's slice by its length.
        try:
            return src.repeat_interleave(offsets.diff(), dim=dim, output_size=n)
        except RuntimeError:  # only reachable with check=False and decreasing offsets
            raise DataError(
                "indptr must be non-decreasing offsets; call gather_csr with check=True to see the bad values"
            ) from None
    seg = _segment_ids(offsets, n)  # (..., n) in [0, S]
    idx = seg.clamp_max(num_segments - 1)
    if idx.dim() == 1:
        out = src.index_select(dim, idx)
    else:
        out = src.gather(dim, idx.view(*idx.shape, *([1] * (src.dim() - dim - 1))).expand(shape))
    if partial_v:
        covered = (seg < num_segments).view(*seg.shape, *([1] * (src.dim() - dim - 1)))
        out = torch.where(covered, out, torch.zeros_like(out))
    return out


def gather_coo(src: Tensor, index: Tensor, check: bool = True) -> Tensor:
    """Read each element's segment value: ``out[..., e, ...] = src[..., index[..., e], ...]``.

    With ``dim = index.dim() - 1`` and the leading dims of ``index`` broadcasting to
    ``src.shape[:dim]``; for a 3-D ``src`` and a 2-D ``index`` (``dim == 1``)::

        out[i][e][k] = src[i][index[i][e]][k]

    the inverse direction of :func:`segment_coo` (its gradient is ``segment_sum_coo`` of the
    output gradient). pytorch_scatter requires ``index`` sorted here; the formula does not, so
    vitlab accepts any order.

    Args:
        src: (s_0, ..., s_{d-1}) tensor.
        index: (s_0, ..., s_{dim-1}, E) integer tensor with values in ``[0, src.size(dim))``.
        check: raise :class:`DataError` for an index outside that range (free on CPU, one host
            synchronisation elsewhere).

    Returns:
        ``src.shape`` with ``E`` along ``dim``.
    """
    idx, dim = _leading_index(src, index, "index")
    n = src.shape[dim]
    shape = _out_shape(src, dim, idx.shape[-1])
    if idx.numel() and n == 0:
        raise _range_error(idx, n, "gather_coo needs values in [0, src.size(dim))")
    if check and not idx.is_cpu and idx.numel():
        lo, hi = torch.aminmax(idx)
        if int(lo) < 0 or int(hi) >= n:
            raise _range_error(idx, n, "gather_coo needs values in [0, src.size(dim))")
    if idx.dim() == 1:
        kernel = lambda: src.index_select(dim, idx)  # noqa: E731
    else:
        kernel = lambda: src.gather(dim, idx.view(*idx.shape, *([1] * (src.dim() - dim - 1))).expand(shape))  # noqa: E731
    try:
        return kernel()
    except (RuntimeError, IndexError) as err:
        if "out of" in str(err):
            raise _range_error(idx, n, "gather_coo needs values in [0, src.size(dim))") from None
        raise
