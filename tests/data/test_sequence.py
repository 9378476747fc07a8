"""Tests of vitlab.data.sequence: the targets against each task's definition recomputed here in plain Python
(list reversal, ``sorted``, integer addition), split disjointness, seeding, padding and batching."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlab.data.sequence import TASKS, Vocab, iterate_batches, make_task, pad_sequences
from vitlab.errors import ConfigError, DataError

V = Vocab()


def unpad(row: torch.Tensor) -> list[int]:
    return [t for t in row.tolist() if t != Vocab.PAD]


def source(row: torch.Tensor) -> list[int]:
    """The source symbols of a padded [x..., EOS, PAD...] row, checking the frame."""
    ids = unpad(row)
    assert ids[-1] == Vocab.EOS and Vocab.EOS not in ids[:-1]
    return ids[:-1]


def as_text(ids: list[int]) -> str:
    return "".join(V.itos[i] for i in ids)


def reference_target(name: str, src: list[int]) -> list[int]:
    text = as_text(src)
    if name == "copy":
        out = text
    elif name == "reverse":
        out = text[::-1]
    elif name == "sort":
        out = "".join(sorted(text))
    else:
        a, b = text.split("+")
        out = str(int(a) + int(b))
    return [V.stoi[c] for c in out]


@pytest.mark.parametrize("name", TASKS)
def test_targets_follow_the_task_definition_and_are_framed_by_bos_eos(name):
    task = make_task(name, num_train=200, num_test=50, min_len=1, max_len=6, seed=3)
    for split in (task.train, task.test):
        for src_row, tgt_row in zip(split.src, split.tgt):
            src, tgt = source(src_row), unpad(tgt_row)
            assert tgt[0] == Vocab.BOS and tgt[-1] == Vocab.EOS
            assert tgt[1:-1] == reference_target(name, src)
            assert task.target_of(src) == tgt[1:-1]
            # padding only at the end
            n = len(src) + 1
            assert src_row[:n].tolist() == [*src, Vocab.EOS] and (src_row[n:] == Vocab.PAD).all()


@pytest.mark.parametrize("name", TASKS)
def test_test_split_is_distinct_and_disjoint_from_train(name):
    task = make_task(name, num_train=2000, num_test=300, min_len=1, max_len=4, seed=0)
    test = [tuple(source(r)) for r in task.test.src]
    train = {tuple(source(r)) for r in task.train.src}
    assert len(set(test)) == len(test) == 300
    assert not train & set(test)
    assert len(task.train) == 2000


def test_lengths_cover_the_requested_range():
    task = make_task("reverse", 3000, 100, min_len=2, max_len=9, seed=1)
    lengths = (task.train.src != Vocab.PAD).sum(1) - 1  # minus the EOS
    assert int(lengths.min()) == 2 and int(lengths.max()) == 9
    assert task.train.src.shape[1] == 10 and task.train.tgt.shape[1] == 11
    digits = make_task("addition", 500, 10, min_len=1, max_len=3, seed=1)
    operands = [as_text(source(r)).split("+") for r in digits.train.src]
    assert {len(a) for a, _ in operands} == {1, 2, 3}
    assert all(len(a) == 1 or a[0] != "0" for pair in operands for a in pair)  # no leading zeros


def test_same_seed_same_data_other_seed_other_data():
    a = make_task("sort", 100, 20, 1, 8, seed=5)
    b = make_task("sort", 100, 20, 1, 8, seed=5)
    c = make_task("sort", 100, 20, 1, 8, seed=6)
    assert torch.equal(a.train.src, b.train.src) and torch.equal(a.test.tgt, b.test.tgt)
    assert not torch.equal(a.test.src, c.test.src)


def test_make_task_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    make_task("copy", 50, 10, 1, 5, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'reverse'"):
        make_task("revers", 10, 10)
    with pytest.raises(ConfigError, match="min_len"):
        make_task("copy", 10, 10, min_len=5, max_len=2)
    with pytest.raises(ConfigError, match="distinct test sequences"):
        make_task("copy", 10, 200, min_len=1, max_len=2)  # only 110 sequences exist


def test_vocab_encodes_and_decodes_text():
    assert V.PAD == 0 and len(V) == 14
    ids = V.encode("3 1 2")
    assert ids == V.encode("312") == [V.digit(3), V.digit(1), V.digit(2)]
    assert V.decode([Vocab.BOS, *ids, Vocab.EOS, V.digit(7), Vocab.PAD]) == "3 1 2"
    assert V.decode(V.encode("12+7"), sep="") == "12+7"
    with pytest.raises(DataError, match="unknown symbol 'x'"):
        V.encode("1x")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(1, 13), min_size=0, max_size=6), min_size=1, max_size=5))
def test_pad_sequences_round_trips(seqs):
    padded = pad_sequences(seqs)
    assert padded.shape == (len(seqs), max(len(s) for s in seqs))
    assert [unpad(r) for r in padded] == seqs


def test_batches_cover_the_split_once_and_are_trimmed():
    task = make_task("copy", 103, 5, 1, 12, seed=2)
    seen = []
    for src, tgt in iterate_batches(task.train, 16, torch.Generator().manual_seed(0)):
        assert src.shape[0] == tgt.shape[0] <= 16
        assert (src[:, -1] != Vocab.PAD).any() and (tgt[:, -1] != Vocab.PAD).any()  # trimmed to the longest
        seen += [tuple(unpad(r)) for r in src]
    assert sorted(seen) == sorted(tuple(unpad(r)) for r in task.train.src)
    full = list(iterate_batches(task.train, 16, drop_last=True))
    assert len(full) == 103 // 16
