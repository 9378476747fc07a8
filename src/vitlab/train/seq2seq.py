"""Seq2seq training, by its historical import path: the names of :mod:`vitlab.train.tasks.seq2seq`.

Training runs on the engine (:mod:`vitlab.train.engine`) like every task; this module re-exports the
config, the schedule, evaluation and the run readers so that ``from vitlab.train.seq2seq import ...`` keeps
working.
"""

from __future__ import annotations

from vitlab.data.sequence import make_task
from vitlab.train.tasks.seq2seq import (
    LR_DECAYS,
    Seq2SeqConfig,
    Seq2SeqTask,
    build_model,
    evaluate,
    load_seq2seq,
    seq2seq_lr,
    train_seq2seq,
    translate,
)

__all__ = ["LR_DECAYS", "Seq2SeqConfig", "Seq2SeqTask", "build_model", "evaluate", "load_seq2seq", "make_task",
           "seq2seq_lr", "train_seq2seq", "translate"]
