"""Beam search with the key/value cache against recomputing the whole prefix at every step, in one run.

    python -m benchmarks.bench_decoding [--batch 4] [--beam 4] [--tokens 64] [--rounds 3] [--threads 1]

Both decoders run the same beam search (:func:`vitlab.models.transformer.beam_search`) on the same
randomly initialised Transformer and sources, with no end token so that each produces exactly ``--tokens``
tokens. With the cache a step feeds one new token per hypothesis and attends to the cached keys/values
(O(t) per step); without it each step re-runs the decoder over the whole prefix (O(t²) per step). The two
are timed in alternating rounds, so that a change in machine load hits both alike; each figure is the
median over rounds. The outputs are checked to be identical. Target: cached ≥ 3× faster.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.report import print_table
from vitlab.models.transformer import Transformer, beam_search

BOS, EOS = 1, 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="sources decoded at once")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per hypothesis")
    parser.add_argument("--src-len", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = Transformer(
        32, 32, d_model=256, num_heads=4, num_encoder_layers=3, num_decoder_layers=3, dim_ff=1024, dropout=0.0,
        share_embeddings=True, tie_output=True, max_len=max(args.tokens, args.src_len) + 1,
    ).eval()
    src = torch.randint(3, 32, (args.batch, args.src_len), generator=torch.Generator().manual_seed(1))

    def run(use_cache: bool) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        out, _ = beam_search(model, src, BOS, None, args.tokens, beam_size=args.beam, alpha=0.6, use_cache=use_cache)
        return time.perf_counter() - start, out

    run(True)  # warm-up
    cached_times, recompute_times = [], []
    for _ in range(args.rounds):
        t_cached, out_cached = run(True)
        t_recompute, out_recompute = run(False)
        cached_times.append(t_cached)
        recompute_times.append(t_recompute)
        if not torch.equal(out_cached, out_recompute):
            raise SystemExit("cached and recomputed beam search disagree")
        if out_cached.shape[1] != args.tokens:
            raise SystemExit(f"expected {args.tokens} tokens, got {out_cached.shape[1]}")
    cached, recompute = statistics.median(cached_times), statistics.median(recompute_times)
    print(
        f"beam {args.beam}, {args.tokens} tokens, batch {args.batch}, d_model 256, 3+3 layers, "
        f"threads {torch.get_num_threads()}, median of {args.rounds} alternating rounds"
    )
    print_table(
        [
            {
                "name": "beam search time (s): KV cache vs recompute prefix",
                "value": cached,
                "reference": recompute,
                "ratio": recompute / cached,
                "target": "ratio >= 3 (speed-up)",
            }
        ]
    )


if __name__ == "__main__":
    main()
