"""Speed of vitlab.scatter against the bare PyTorch calls it is built on, measured in one run.

    python -m benchmarks.bench_scatter [--n 1000000] [--segments 10000] [--rounds 15] [--threads 1]

On a machine shared with other jobs, multi-threaded kernels wait at their barrier for whichever
thread was descheduled, which swamps the kernels' own cost; the default of one intra-op thread
keeps the ratios stable (pass ``--threads`` to measure with more).

Rows (ratio = vitlab time / reference time unless the row says otherwise; each figure is the
median over rounds, and the candidates of a row are timed alternately inside every round so that a
change in machine load hits both alike):

* ``scatter(reduce=sum|mean|max)`` of ``n`` random values into ``segments`` segments (random
  index) against the bare ``torch.zeros(S).scatter_reduce(0, index, src, r, include_self=False)``
  call with the same inputs; target ratio <= 1.2. vitlab's own checks (dtypes, broadcasting, the
  free CPU range check) are included in its time.
* ``segment_csr`` on sorted input against ``scatter`` with the equivalent sorted index; target
  ratio <= 1.0 (at least as fast).
* ``segment_coo`` on the sorted index (with its default ``check=True``, which reads back the
  index's range and order) against ``scatter`` with the same sorted index; target ratio <= 1.0.
  A ``check=False`` row shows the cost of that validation.
* ``gather_csr`` (per-segment values broadcast back to the elements, from ``indptr``) against
  ``index_select`` with the per-element segment ids precomputed outside the timing; the gap is the
  cost of expanding the offsets. ``gather_coo`` against the same ``index_select`` (target ~1).
* ``scatter_softmax`` against a Python loop applying ``torch.softmax`` segment by segment (with the
  per-segment positions precomputed outside the timing); the ratio is loop time / vitlab time,
  target >= 10.
* For information: forward + backward of ``scatter`` (max, with the gradient routed to the arg
  element) against ``scatter_reduce(amax)`` forward + backward (which splits ties).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.report import print_table
from vitlab.scatter import gather_coo, gather_csr, scatter, scatter_softmax, segment_coo, segment_csr


def time_alternating(fns: dict[str, Callable[[], object]], rounds: int, calls: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds after a warm-up."""
    for fn in fns.values():
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(v) for name, v in samples.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads (1: stable ratios on a shared, loaded machine)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, s = args.n, args.segments
    g = torch.Generator().manual_seed(0)
    src = torch.randn(n, generator=g)
    index = torch.randint(0, s, (n,), generator=g)
    rows: list[dict] = []
    ms = 1e3

    for reduce, torch_name in (("sum", "sum"), ("mean", "mean"), ("max", "amax")):
        t = time_alternating(
            {
                "vitlab": lambda r=reduce: scatter(src, index, dim=0, dim_size=s, reduce=r),
                "torch": lambda r=torch_name: torch.zeros(s).scatter_reduce(0, index, src, r, include_self=False),
            },
            args.rounds,
        )
        rows.append(
            dict(
                name=f"scatter {reduce}, {n:,} -> {s:,} (ms)",
                value=t["vitlab"] * ms,
                reference=t["torch"] * ms,
                ratio=t["vitlab"] / t["torch"],
                target="<= 1.2 (ref: bare scatter_reduce)",
            )
        )

    sorted_index, order = index.sort()
    sorted_src = src[order]
    indptr = torch.zeros(s + 1, dtype=torch.long)
    indptr[1:] = torch.bincount(sorted_index, minlength=s).cumsum(0)
    for reduce in ("sum", "mean", "max"):
        t = time_alternating(
            {
                "csr": lambda r=reduce: segment_csr(sorted_src, indptr, r),
                "scatter": lambda r=reduce: scatter(sorted_src, sorted_index, dim=0, dim_size=s, reduce=r),
            },
            args.rounds,
        )
        rows.append(
            dict(
                name=f"segment_csr {reduce}, sorted (ms)",
                value=t["csr"] * ms,
                reference=t["scatter"] * ms,
                ratio=t["csr"] / t["scatter"],
                target="<= 1.0 (ref: scatter, same sorted index)",
            )
        )

    for reduce, check in (("sum", True), ("mean", True), ("max", True), ("sum", False)):
        t = time_alternating(
            {
                "coo": lambda r=reduce, c=check: segment_coo(sorted_src, sorted_index, s, r, check=c),
                "scatter": lambda r=reduce: scatter(sorted_src, sorted_index, dim=0, dim_size=s, reduce=r),
            },
            args.rounds,
        )
        rows.append(
            dict(
                name=f"segment_coo {reduce}{'' if check else ', check=False'}, sorted (ms)",
                value=t["coo"] * ms,
                reference=t["scatter"] * ms,
                ratio=t["coo"] / t["scatter"],
                target="<= 1.0 (ref: scatter, same sorted index)" if check else "info (no validation)",
            )
        )

    per_segment = torch.randn(s, generator=g)
    torch.testing.assert_close(gather_csr(per_segment, indptr), per_segment.index_select(0, sorted_index))
    for name, fn in (
        ("gather_csr", lambda: gather_csr(per_segment, indptr)),
        ("gather_coo", lambda: gather_coo(per_segment, sorted_index)),
    ):
        t = time_alternating({"vitlab": fn, "index_select": lambda: per_segment.index_select(0, sorted_index)}, args.rounds)
        rows.append(
            dict(
                name=f"{name}, {s:,} -> {n:,} (ms)",
                value=t["vitlab"] * ms,
                reference=t["index_select"] * ms,
                ratio=t["vitlab"] / t["index_select"],
                target="info (ref: index_select, ids precomputed)" if name == "gather_csr" else "~1 (ref: index_select)",
            )
        )

    # scatter_softmax against a loop over segments (positions precomputed, not timed).
    counts = torch.bincount(index, minlength=s)
    positions = torch.split(order, counts.tolist())

    def loop_softmax() -> torch.Tensor:
        out = torch.empty_like(src)
        for pos in positions:
            out[pos] = torch.softmax(src[pos], dim=0)
        return out

    torch.testing.assert_close(scatter_softmax(src, index, 0, s), loop_softmax())
    t = time_alternating(
        {"vitlab": lambda: scatter_softmax(src, index, dim=0, dim_size=s), "loop": loop_softmax},
        max(3, args.rounds // 5),
    )
    rows.append(
        dict(
            name=f"scatter_softmax, {n:,} -> {s:,} (ms)",
            value=t["vitlab"] * ms,
            reference=t["loop"] * ms,
            ratio=t["loop"] / t["vitlab"],
            target=">= 10 (ratio = loop / vitlab)",
        )
    )

    # Information: forward + backward through max.
    leaf = src.clone().requires_grad_()

    def ours_fb() -> None:
        scatter(leaf, index, dim=0, dim_size=s, reduce="max").sum().backward()
        leaf.grad = None

    def torch_fb() -> None:
        torch.zeros(s).scatter_reduce(0, index, leaf, "amax", include_self=False).sum().backward()
        leaf.grad = None

    t = time_alternating({"vitlab": ours_fb, "torch": torch_fb}, args.rounds)
    rows.append(
        dict(
            name="scatter max fwd+bwd (ms)",
            value=t["vitlab"] * ms,
            reference=t["torch"] * ms,
            ratio=t["vitlab"] / t["torch"],
            target="info (arg-routed gradient vs tie-splitting)",
        )
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    print_table(rows)


if __name__ == "__main__":
    main()
