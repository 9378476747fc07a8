"""Tests of vitlab.models.transformer.

References: ``torch.nn.TransformerEncoderLayer`` / ``TransformerDecoderLayer`` (same weights copied in,
post-norm and pre-norm, ReLU) for the layers; recomputing the whole prefix for the key/value cache; greedy
decoding for beam size 1; an exhaustive search over all sequences for beam search's objective; eq. 3 of the
paper and GNMT eq. 14 written out for the schedule and the length penalty.
"""

import itertools
import math

import pytest
import torch
from torch import nn

from vitlab.errors import ConfigError
from vitlab.models.transformer import (
    DecoderLayer,
    EncoderLayer,
    Transformer,
    beam_search,
    greedy_decode,
    length_penalty,
    transformer_lr,
)

D, H, FF = 16, 4, 32


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster than two on a shared CPU (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
PAD, BOS, EOS = 0, 1, 2


def copy_attention(mine, theirs: nn.MultiheadAttention) -> None:
    """torch keeps q, k, v projections stacked in in_proj_weight (3D, D)."""
    wq, wk, wv = theirs.in_proj_weight.detach().chunk(3)
    bq, bk, bv = theirs.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for lin, w, b in ((mine.q_proj, wq, bq), (mine.k_proj, wk, bk), (mine.v_proj, wv, bv)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        mine.out_proj.weight.copy_(theirs.out_proj.weight)
        mine.out_proj.bias.copy_(theirs.out_proj.bias)


def randomize_norms(layer: nn.Module) -> nn.Module:
    """Random affine LayerNorm parameters in the torch layer, so that a swapped norm would show."""
    with torch.no_grad():
        for module in layer.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return layer


def copy_common(mine, theirs, norms: int) -> None:
    mine.ff.linear1.load_state_dict(theirs.linear1.state_dict())
    mine.ff.linear2.load_state_dict(theirs.linear2.state_dict())
    for i in range(1, norms + 1):
        getattr(mine, f"norm{i}").load_state_dict(getattr(theirs, f"norm{i}").state_dict())


def torch_causal(steps: int) -> torch.Tensor:
    """torch's boolean convention: True = may NOT attend."""
    return torch.ones(steps, steps, dtype=torch.bool).triu(1)


def padded_batch(gen: torch.Generator, lengths: list[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, width, D) inputs and the (B, width) key-padding mask (True = pad)."""
    x = torch.randn(len(lengths), width, D, generator=gen)
    pad = torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None]
    return x, pad


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch_encoder_layer_with_padding(norm_first):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first).train()
    randomize_norms(ref)
    mine = EncoderLayer(D, H, FF, dropout=0.0, norm_first=norm_first)
    copy_attention(mine.self_attn, ref.self_attn)
    copy_common(mine, ref, 2)
    x, pad = padded_batch(gen, [7, 4, 1], 7)
    # train mode with dropout 0 keeps torch off its fused fast path, whose padded rows are undefined
    expected = ref(x, src_key_padding_mask=pad)
    got = mine(x, attn_mask=(~pad)[:, None, None, :])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch_decoder_layer_with_causal_and_padding_masks(norm_first):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first).train()
    randomize_norms(ref)
    mine = DecoderLayer(D, H, FF, dropout=0.0, norm_first=norm_first)
    copy_attention(mine.self_attn, ref.self_attn)
    copy_attention(mine.cross_attn, ref.multihead_attn)
    copy_common(mine, ref, 3)
    y, tgt_pad = padded_batch(gen, [6, 3, 5], 6)
    memory, mem_pad = padded_batch(gen, [2, 8, 5], 8)
    expected = ref(y, memory, tgt_mask=torch_causal(6), tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=mem_pad)
    self_mask = torch.tril(torch.ones(6, 6, dtype=torch.bool)) & (~tgt_pad)[:, None, None, :]
    got = mine(y, memory, self_mask=self_mask, memory_mask=(~mem_pad)[:, None, None, :])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def small_model(**kw) -> Transformer:
    torch.manual_seed(0)
    args = dict(src_vocab=13, tgt_vocab=13, d_model=D, num_heads=H, num_encoder_layers=2, num_decoder_layers=2,
                dim_ff=FF, dropout=0.0, share_embeddings=True, tie_output=True, max_len=64)
    args.update(kw)
    return Transformer(**args).eval()


def batch(gen: torch.Generator, lengths: list[int], vocab: int = 13) -> torch.Tensor:
    width = max(lengths)
    x = torch.randint(3, vocab, (len(lengths), width), generator=gen)
    x[torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None]] = PAD
    return x


def test_whole_model_matches_torch_transformer_built_from_the_same_layers():
    """Embedding·√d + PE, then torch's encoder/decoder stacks (post-norm, no final norm), then the tied output."""
    model = small_model()
    ref_enc = randomize_norms(nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True).train())
    ref_dec = randomize_norms(nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True).train())
    for layer in model.encoder_layers:
        copy_attention(layer.self_attn, ref_enc.self_attn)
        copy_common(layer, ref_enc, 2)
    for layer in model.decoder_layers:
        copy_attention(layer.self_attn, ref_dec.self_attn)
        copy_attention(layer.cross_attn, ref_dec.multihead_attn)
        copy_common(layer, ref_dec, 3)
    gen = torch.Generator().manual_seed(2)
    src, tgt = batch(gen, [5, 3, 1]), batch(gen, [4, 4, 2])
    tgt[:, 0] = BOS
    pe = model.pos_enc.pe
    x = model.tgt_embed(src) * math.sqrt(D) + pe[: src.shape[1]]
    for _ in range(2):
        x = ref_enc(x, src_key_padding_mask=src == PAD)
    y = model.tgt_embed(tgt) * math.sqrt(D) + pe[: tgt.shape[1]]
    for _ in range(2):
        y = ref_dec(y, x, tgt_mask=torch_causal(tgt.shape[1]), tgt_key_padding_mask=tgt == PAD, memory_key_padding_mask=src == PAD)
    expected = y @ model.tgt_embed.weight.T
    keep = tgt != PAD  # torch leaves padded query rows defined too, but compare the real positions
    torch.testing.assert_close(model(src, tgt)[keep], expected[keep], rtol=1e-5, atol=1e-5)


def test_embeddings_are_scaled_by_sqrt_d_and_shared_tables_are_not_duplicated():
    model = small_model()
    ids = torch.tensor([[3, 4, 5]])
    expected = model.tgt_embed.weight[ids] * math.sqrt(D) + model.pos_enc.pe[:3]
    torch.testing.assert_close(model.embed_src(ids), expected)
    keys = set(model.state_dict())
    assert "src_embed.weight" not in keys and "generator.weight" not in keys
    untied = small_model(share_embeddings=False, tie_output=False)
    assert {"src_embed.weight", "tgt_embed.weight", "generator.weight"} <= set(untied.state_dict())


def test_share_embeddings_needs_one_vocabulary():
    with pytest.raises(ConfigError, match="share_embeddings needs src_vocab == tgt_vocab"):
        Transformer(10, 12, 16, 4, 1, 1, 32, share_embeddings=True)


def test_padding_does_not_change_the_outputs_of_real_positions():
    model = small_model()
    gen = torch.Generator().manual_seed(3)
    src = batch(gen, [4])
    tgt = torch.tensor([[BOS, 5, 6]])
    padded_src = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1)
    padded_tgt = torch.cat([tgt, torch.zeros(1, 2, dtype=torch.long)], 1)
    torch.testing.assert_close(model(padded_src, padded_tgt)[:, :3], model(src, tgt), rtol=1e-5, atol=1e-6)


def test_decoder_is_causal():
    model = small_model()
    src = torch.tensor([[3, 4, 5, 6]])
    a = torch.tensor([[BOS, 5, 6, 7, 8]])
    b = a.clone()
    b[0, 3:] = torch.tensor([9, 10])
    torch.testing.assert_close(model(src, a)[:, :3], model(src, b)[:, :3])
    assert not torch.allclose(model(src, a)[:, 3:], model(src, b)[:, 3:])


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_decoding_gives_the_logits_of_recomputing_the_prefix(norm_first):
    model = small_model(norm_first=norm_first)
    gen = torch.Generator().manual_seed(4)
    src = batch(gen, [6, 2, 4])
    tgt = batch(gen, [7, 7, 7])
    tgt[:, 0] = BOS
    full = model(src, tgt)  # (B, T, V), recomputed from the whole prefix
    state = model.start_decoding(src)
    steps = [model.decode_step(tgt[:, i : i + 1], state) for i in range(tgt.shape[1])]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    # several positions per call (prefix of 3, then 4 more) also agree: the causal mask is bottom-right aligned
    state = model.start_decoding(src)
    chunks = torch.cat([model.decode_step(tgt[:, :3], state), model.decode_step(tgt[:, 3:], state)], 1)
    torch.testing.assert_close(chunks, full, rtol=1e-5, atol=1e-5)


def test_beam_size_one_equals_greedy():
    model = small_model()
    gen = torch.Generator().manual_seed(5)
    src = batch(gen, [5, 3, 7, 1])
    for eos in (EOS, None):
        greedy = greedy_decode(model, src, BOS, eos, max_len=9)
        beam, _ = beam_search(model, src, BOS, eos, max_len=9, beam_size=1)
        assert torch.equal(beam, greedy)


def test_decoding_with_and_without_cache_agree():
    model = small_model()
    gen = torch.Generator().manual_seed(6)
    src = batch(gen, [5, 3, 6])
    assert torch.equal(greedy_decode(model, src, BOS, EOS, 8), greedy_decode(model, src, BOS, EOS, 8, use_cache=False))
    a, sa = beam_search(model, src, BOS, EOS, 8, beam_size=3)
    b, sb = beam_search(model, src, BOS, EOS, 8, beam_size=3, use_cache=False)
    assert torch.equal(a, b)
    torch.testing.assert_close(sa, sb)


def sequence_logprob(model: Transformer, src: torch.Tensor, ys: list[int]) -> float:
    """log P(ys | src) by teacher forcing, with padding forbidden as in decoding."""
    tgt = torch.tensor([[BOS, *ys]])
    logp = model(src, tgt[:, :-1]).log_softmax(-1)[0]
    return float(sum(logp[t, y] for t, y in enumerate(ys)).detach())


def test_batched_beam_search_finds_the_exhaustive_optimum_and_matches_single_source_runs():
    """With a beam as wide as the vocabulary and max_len 2, beam search is exhaustive: its answer must be
    the argmax over every sequence of length <= 2 of log P / lp, computed here by brute force."""
    torch.manual_seed(7)
    model = Transformer(6, 6, D, H, 1, 1, FF, dropout=0.0, share_embeddings=True, tie_output=True).eval()
    with torch.no_grad():  # make EOS likely, so some hypotheses finish early
        model.tgt_embed.weight[EOS] *= 3
    gen = torch.Generator().manual_seed(7)
    src = batch(gen, [4, 2, 3], vocab=6)
    alpha = 0.6
    tokens, scores = beam_search(model, src, BOS, EOS, max_len=2, beam_size=5, alpha=alpha)
    symbols = [1, 2, 3, 4, 5]  # everything but PAD
    for i in range(src.shape[0]):
        s = src[i : i + 1, : int((src[i] != PAD).sum())]
        candidates = [[EOS]] + [[a, b] for a, b in itertools.product(symbols, symbols) if a != EOS]
        best = max(
            candidates,
            key=lambda ys: sequence_logprob(model, s, ys) / length_penalty(torch.tensor(len(ys)), alpha).item(),
        )
        got = [t for t in tokens[i].tolist() if t != PAD]
        assert got == best
        expected = sequence_logprob(model, s, best) / length_penalty(torch.tensor(len(best)), alpha).item()
        assert scores[i].item() == pytest.approx(expected, abs=1e-4)
        alone, alone_score = beam_search(model, s, BOS, EOS, max_len=2, beam_size=5, alpha=alpha)
        assert [t for t in alone[0].tolist() if t != PAD] == got
        assert alone_score.item() == pytest.approx(scores[i].item(), abs=1e-5)


def test_finished_sequences_are_padded_stop_decoding_and_do_not_disturb_the_others():
    """Sources that finish at different steps: after its EOS a row holds only padding, decoding stops when the
    last row finishes, and each row equals decoding its source alone (batched = one at a time)."""
    model = small_model(tie_output=False)
    with torch.no_grad():  # raise EOS's logit so that rows finish at different steps
        model.generator.bias[EOS] = 2.0
    gen = torch.Generator().manual_seed(8)
    src = torch.randint(3, 13, (6, 5), generator=gen)
    src[2, 3:] = PAD
    out = greedy_decode(model, src, BOS, EOS, max_len=12)
    first_eos = (out == EOS).int().argmax(1)
    assert (out == EOS).any(1).all() and len(set(first_eos.tolist())) > 1  # precondition: staggered finishes
    assert out.shape[1] == int(first_eos.max()) + 1
    positions = torch.arange(out.shape[1])[None, :]
    assert (out[positions > first_eos[:, None]] == PAD).all()
    assert (out[positions < first_eos[:, None]] > EOS).all()
    beams, scores = beam_search(model, src, BOS, EOS, max_len=12, beam_size=3, alpha=0.6)
    for i in range(src.shape[0]):
        s = src[i : i + 1, : int((src[i] != PAD).sum())]
        alone = greedy_decode(model, s, BOS, EOS, max_len=12)[0]
        assert out[i, : alone.shape[0]].tolist() == alone.tolist()
        alone_beam, alone_score = beam_search(model, s, BOS, EOS, max_len=12, beam_size=3, alpha=0.6)
        row = beams[i].tolist()
        assert row[: alone_beam.shape[1]] == alone_beam[0].tolist() and set(row[alone_beam.shape[1] :]) <= {PAD}
        assert alone_score.item() == pytest.approx(scores[i].item(), abs=1e-5)


def test_length_penalty_is_gnmt():
    lengths = torch.tensor([1, 4, 10])
    torch.testing.assert_close(length_penalty(lengths, 0.6), ((5 + lengths.float()) / 6) ** 0.6)
    torch.testing.assert_close(length_penalty(lengths, 0.0), torch.ones(3))
    assert length_penalty(torch.tensor(1), 1.0).item() == pytest.approx(1.0)


def test_warmup_schedule_is_equation_3():
    d, warmup = 512, 4000
    for step in (1, 100, 3999, 4000, 4001, 100000):
        expected = d**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert transformer_lr(step, d, warmup) == pytest.approx(expected)
    assert transformer_lr(4000, d, warmup) == pytest.approx(d**-0.5 * 4000**-0.5)  # the peak
    lrs = [transformer_lr(s, d, warmup) for s in range(1, 8000, 50)]
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))  # rises linearly ...
    assert all(a > b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))  # ... then decays
