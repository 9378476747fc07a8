"""Synthetic sequence transduction tasks for the encoder-decoder Transformer: copy, reverse, sort, addition.

Each task maps a source sequence of symbols to a target sequence:

* ``copy``: y = x;  ``reverse``: y = x reversed;  ``sort``: y = x in ascending order, with x a random
  string of digits whose length is uniform in [min_len, max_len];
* ``addition``: x = "a+b" with a and b having a number of digits uniform in [min_len, max_len] (no
  leading zeros), y = the decimal digits of a + b.

Sequences are drawn with a seeded :class:`torch.Generator`, never the global RNG. The test split is drawn
first, without duplicates; training examples equal to a test source are rejected, so the splits are
disjoint. Tensors are padded with ``PAD = 0``; sources end with EOS (x..., EOS), which marks the end of the
sequence for the encoder (so that, e.g., reversing can find the last symbol), and targets are framed as
[BOS, y..., EOS].
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from vitlab.errors import ConfigError, DataError, unknown_name_message

__all__ = ["TASKS", "SequenceSplit", "SequenceTask", "Vocab", "iterate_batches", "make_task", "pad_sequences"]

TASKS = ("copy", "reverse", "sort", "addition")


class Vocab:
    """Token ids of the sequence tasks: PAD = 0, BOS = 1, EOS = 2, then the digits 0-9, then '+'.

    Every symbol is one character, so :meth:`encode` reads a string character by character, ignoring
    whitespace ("3 1 2" and "312" are the same source).
    """

    PAD = 0
    BOS = 1
    EOS = 2
    SPECIALS = ("<pad>", "<bos>", "<eos>")
    SYMBOLS = tuple("0123456789+")

    def __init__(self) -> None:
        self.itos: list[str] = [*self.SPECIALS, *self.SYMBOLS]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def digit(self, d: int) -> int:
        """Id of the digit ``d`` (0-9)."""
        return 3 + d

    def encode(self, text: str) -> list[int]:
        """Ids of the symbols of ``text`` (whitespace ignored); an unknown symbol raises DataError."""
        ids = []
        for ch in text:
            if ch.isspace():
                continue
            if ch not in self.stoi or ch in self.SPECIALS:
                raise DataError(f"unknown symbol {ch!r} in {text!r}; the symbols are {''.join(self.SYMBOLS)}")
            ids.append(self.stoi[ch])
        return ids

    def decode(self, ids: Sequence[int] | Tensor, sep: str = " ") -> str:
        """Symbols of ``ids`` up to the first EOS, skipping PAD and BOS, joined with ``sep``."""
        out = []
        for i in ids.tolist() if isinstance(ids, Tensor) else ids:
            if i == self.EOS:
                break
            if i in (self.PAD, self.BOS):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else "?")
        return sep.join(out)


@dataclass
class SequenceSplit:
    """One split. ``src``: (N, S) [x..., EOS] padded with PAD; ``tgt``: (N, T) [BOS, y..., EOS] padded with PAD."""

    src: Tensor
    tgt: Tensor

    def __len__(self) -> int:
        return int(self.src.shape[0])


@dataclass
class SequenceTask:
    """A generated task: its name, vocabulary, train and test splits, and the longest lengths."""

    name: str
    vocab: Vocab
    train: SequenceSplit
    test: SequenceSplit
    max_src_len: int  # with the EOS
    max_tgt_len: int  # without BOS/EOS

    @property
    def sep(self) -> str:
        """How decoded symbols are joined for display ("" for addition, spaces otherwise)."""
        return "" if self.name == "addition" else " "

    def target_of(self, src: Sequence[int]) -> list[int]:
        """The correct target symbols (no BOS/EOS) for the source symbols ``src`` (no EOS): the task's definition."""
        return _target(self.name, list(src), self.vocab)


def _target(name: str, src: list[int], vocab: Vocab) -> list[int]:
    if name == "copy":
        return list(src)
    if name == "reverse":
        return src[::-1]
    if name == "sort":
        return sorted(src)
    plus = vocab.stoi["+"]
    if src.count(plus) != 1:
        raise DataError("an addition source needs exactly one '+', e.g. '12+345'")
    cut = src.index(plus)
    a = int("".join(vocab.itos[i] for i in src[:cut]) or "0")
    b = int("".join(vocab.itos[i] for i in src[cut + 1 :]) or "0")
    return [vocab.stoi[c] for c in str(a + b)]


def _draw_source(name: str, min_len: int, max_len: int, vocab: Vocab, g: torch.Generator) -> list[int]:
    if name == "addition":
        parts = []
        for _ in range(2):
            n = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
            digits = torch.randint(0, 10, (n,), generator=g)
            if n > 1:
                digits[0] = int(torch.randint(1, 10, (1,), generator=g))
            parts.append([vocab.digit(int(d)) for d in digits])
        return parts[0] + [vocab.stoi["+"]] + parts[1]
    n = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
    return [vocab.digit(int(d)) for d in torch.randint(0, 10, (n,), generator=g)]


def pad_sequences(seqs: Sequence[Sequence[int]], pad: int = Vocab.PAD) -> Tensor:
    """Stack variable-length id lists into (N, max_len) with ``pad`` after each sequence."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out


def _split(name: str, sources: list[tuple[int, ...]], vocab: Vocab) -> SequenceSplit:
    srcs = [[*s, Vocab.EOS] for s in sources]
    tgts = [[Vocab.BOS, *_target(name, list(s), vocab), Vocab.EOS] for s in sources]
    return SequenceSplit(pad_sequences(srcs), pad_sequences(tgts))


def make_task(
    name: str,
    num_train: int,
    num_test: int,
    min_len: int = 1,
    max_len: int = 20,
    seed: int = 0,
) -> SequenceTask:
    """Generate a task with a fixed, disjoint test split.

    Args:
        name: ``copy``, ``reverse``, ``sort`` or ``addition``.
        num_train: training examples (may repeat each other; never equal to a test source).
        num_test: distinct test examples.
        min_len, max_len: sequence length range (for addition: digits per operand).
        seed: seed of the generator; the same arguments give the same tensors.

    Returns:
        :class:`SequenceTask` with train and test splits.
    """
    if name not in TASKS:
        raise ConfigError(unknown_name_message("sequence task", str(name), TASKS))
    if not 1 <= min_len <= max_len:
        raise ConfigError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if num_train < 0 or num_test < 0:
        raise ConfigError(f"num_train and num_test must be >= 0, got {num_train} and {num_test}")
    vocab = Vocab()
    g = torch.Generator().manual_seed(int(seed))
    test: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    tries = 0
    while len(test) < num_test:
        tries += 1
        if tries > 50 * num_test + 1000:
            raise ConfigError(
                f"could not draw {num_test} distinct test sequences of length {min_len}..{max_len}; "
                "lower num_test or raise max_len"
            )
        s = tuple(_draw_source(name, min_len, max_len, vocab, g))
        if s not in seen:
            seen.add(s)
            test.append(s)
    train: list[tuple[int, ...]] = []
    tries = 0
    while len(train) < num_train:
        tries += 1
        if tries > 50 * num_train + 1000:
            raise ConfigError(
                f"could not draw {num_train} training sequences outside the test split; lower num_test or raise max_len"
            )
        s = tuple(_draw_source(name, min_len, max_len, vocab, g))
        if s not in seen:
            train.append(s)
    max_src = (max_len if name != "addition" else 2 * max_len + 1) + 1
    max_tgt = max_len if name != "addition" else max_len + 1
    return SequenceTask(name, vocab, _split(name, train, vocab), _split(name, test, vocab), max_src, max_tgt)


def iterate_batches(
    split: SequenceSplit,
    batch_size: int,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One pass over ``split`` in batches, shuffled with ``generator`` (in order when None).

    Each batch is trimmed to its own longest source and target, so short batches carry little padding.

    Yields:
        (src (B, S_b), tgt (B, T_b)) long tensors.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if drop_last and idx.numel() < batch_size:
            break
        src, tgt = split.src[idx], split.tgt[idx]
        s_len = int((src != Vocab.PAD).sum(1).max()) if idx.numel() else 0
        t_len = int((tgt != Vocab.PAD).sum(1).max()) if idx.numel() else 0
        yield src[:, :s_len], tgt[:, :t_len]
