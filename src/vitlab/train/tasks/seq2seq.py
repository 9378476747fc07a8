"""Training the encoder-decoder Transformer on a sequence task (Vaswani et al. 2017, Sec. 5), as an engine task.

* Optimizer (Sec. 5.3): Adam with β1 = 0.9, β2 = 0.98, ε = 1e-9.
* Learning rate (eq. 3): lr = factor · d_model^−0.5 · min(step^−0.5, step · warmup^−1.5)
  (``lr_decay: inverse_sqrt``, the default). With ``lr_decay: cosine`` the warm-up and its peak
  lr_peak = factor · d_model^−0.5 · warmup^−0.5 are the same, and after it the rate follows a half cosine to
  zero at the last step (Loshchilov & Hutter 2017, eq. 5, one cycle, η_min = 0):
  lr = lr_peak · ½ (1 + cos(π · (step − warmup) / (steps − warmup))).
* Regularisation (Sec. 5.4): dropout P_drop and label smoothing ε_ls = 0.1, with padding positions
  ignored by the loss (:class:`vitlab.losses.LabelSmoothingCrossEntropy` with ``ignore_index=PAD``).
* Loss of a step: the mean over every target token of the global batch (all micro-batches and ranks),
  so a run on N processes equals one process at the same global batch.
* Sample order: pass k over the training set is ``randperm(N)`` seeded with ``seed + 1 + k``; global step t
  takes batch ``t mod (N // batch_size)`` of pass ``t // (N // batch_size)`` (the rest of a pass is dropped),
  and rank r the r-th contiguous share of it. A function of (seed, t): resume needs no sampler state.
* Metric: exact-match sequence accuracy of greedy (or beam) decoding on the task's fixed test split,
  every ``eval_every`` steps (one engine epoch and one metrics row).

:func:`load_seq2seq` and :func:`translate` read a finished run back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vitlab.data.sequence import TASKS, SequenceSplit, SequenceTask, Vocab, iterate_batches, make_task
from vitlab.errors import CheckpointError, ConfigError, unknown_name_message
from vitlab.io import load_yaml
from vitlab.losses import LabelSmoothingCrossEntropy
from vitlab.models.transformer import Transformer, beam_search, greedy_decode, transformer_lr
from vitlab.train.checkpoint import load_weights
from vitlab.train.config import EngineConfig, dataclass_from_dict
from vitlab.train.distributed import DistContext
from vitlab.train.runs import CONFIG_FILE, WEIGHTS_FILE, require_task
from vitlab.train.tasks.base import Task, aligned_table
from vitlab.viz.training import plot_seq2seq_curves

__all__ = ["LR_DECAYS", "Seq2SeqConfig", "Seq2SeqTask", "evaluate", "load_seq2seq", "seq2seq_lr", "translate"]

LR_DECAYS = ("inverse_sqrt", "cosine")


@dataclass
class Seq2SeqConfig(EngineConfig):
    """Configuration of a seq2seq run (the YAML keys, without ``task: seq2seq``).

    The engine's keys (batch_size, accum_steps, grad_clip, ema_decay, amp, compile, nonfinite, seed, device,
    threads, checkpoint_every in evaluation periods, checkpoint_steps, log_every) are
    :class:`vitlab.train.config.EngineConfig`'s; ``seed`` also draws the task's data.
    """

    # data
    dataset: str = "reverse"
    min_len: int = 1
    max_len: int = 20
    num_train: int = 20000
    num_test: int = 1000
    # model
    d_model: int = 128
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    dim_ff: int = 256
    dropout: float = 0.1
    norm_first: bool = False
    share_embeddings: bool = True
    tie_output: bool = True
    # optimisation
    steps: int = 3000
    warmup: int = 400
    lr_factor: float = 1.0
    lr_decay: str = "inverse_sqrt"
    label_smoothing: float = 0.1
    # evaluation
    eval_every: int = 500
    eval_beam: int = 1
    length_penalty: float = 0.6

    @classmethod
    def from_dict(cls, config: dict[str, Any], source: str = "seq2seq config") -> Seq2SeqConfig:
        """Validate ``config``: unknown keys and bad values raise :class:`ConfigError`."""
        return dataclass_from_dict(cls, config, "seq2seq config", "seq2seq config key")

    def validate(self) -> None:
        """Range checks (the engine's keys first), one ConfigError naming the first bad value."""
        super().validate()
        if self.dataset not in TASKS:
            raise ConfigError("dataset: " + unknown_name_message("sequence task", self.dataset, TASKS))
        positive = ("min_len", "max_len", "num_train", "num_test", "d_model", "num_heads", "num_encoder_layers",
                    "num_decoder_layers", "dim_ff", "steps", "warmup", "eval_every", "eval_beam")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"seq2seq config '{name}' must be >= 1, got {getattr(self, name)}")
        if self.min_len > self.max_len:
            raise ConfigError(f"min_len {self.min_len} is larger than max_len {self.max_len}; swap them")
        if self.d_model % self.num_heads or self.d_model % 2:
            raise ConfigError(
                f"d_model {self.d_model} must be even and divisible by num_heads {self.num_heads}; e.g. d_model: 128"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}; the paper uses 0.1")
        if self.lr_decay not in LR_DECAYS:
            raise ConfigError("lr_decay: " + unknown_name_message("learning-rate decay", self.lr_decay, LR_DECAYS))
        if self.lr_factor <= 0:
            raise ConfigError(f"lr_factor must be > 0, got {self.lr_factor}; 1.0 is the paper's schedule")
        if self.length_penalty < 0:
            raise ConfigError(f"seq2seq config 'length_penalty' must be >= 0, got {self.length_penalty}")


def seq2seq_lr(step: int, cfg: Seq2SeqConfig) -> float:
    """Learning rate at ``step`` (counting from 1): eq. 3, or its warm-up then a cosine to zero at ``cfg.steps``."""
    if cfg.lr_decay == "inverse_sqrt" or step <= cfg.warmup:
        return transformer_lr(step, cfg.d_model, cfg.warmup, cfg.lr_factor)
    peak = transformer_lr(cfg.warmup, cfg.d_model, cfg.warmup, cfg.lr_factor)
    progress = min((step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1), 1.0)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


class Seq2SeqSchedule:
    """:func:`seq2seq_lr` of optimizer step t (from 0) for ``LambdaLR`` (plain fields, so its state saves safely)."""

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        self.d_model, self.warmup, self.steps = cfg.d_model, cfg.warmup, cfg.steps
        self.lr_factor, self.lr_decay = cfg.lr_factor, cfg.lr_decay

    def __call__(self, step: int) -> float:
        return seq2seq_lr(step + 1, self)  # type: ignore[arg-type]  # the fields seq2seq_lr reads


def build_model(cfg: Seq2SeqConfig, vocab_size: int, max_len: int) -> Transformer:
    """The Transformer of ``cfg`` for a joint vocabulary of ``vocab_size`` ids."""
    return Transformer(
        vocab_size,
        vocab_size,
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        num_encoder_layers=cfg.num_encoder_layers,
        num_decoder_layers=cfg.num_decoder_layers,
        dim_ff=cfg.dim_ff,
        dropout=cfg.dropout,
        norm_first=cfg.norm_first,
        share_embeddings=cfg.share_embeddings,
        tie_output=cfg.tie_output,
        pad_idx=Vocab.PAD,
        max_len=max_len,
    )


def _decode(model: Transformer, src: Tensor, max_len: int, beam: int, alpha: float) -> Tensor:
    if beam == 1:
        return greedy_decode(model, src, Vocab.BOS, Vocab.EOS, max_len)
    return beam_search(model, src, Vocab.BOS, Vocab.EOS, max_len, beam_size=beam, alpha=alpha)[0]


@torch.no_grad()
def evaluate(
    model: Transformer, split: SequenceSplit, beam: int = 1, alpha: float = 0.6, batch_size: int = 500,
    ctx: DistContext | None = None,
) -> float:
    """Exact-match accuracy: the fraction of sources whose decoded target equals the reference (EOS included).

    Args:
        model: the Transformer (switched to eval mode here and back after).
        split: src (N, S), tgt (N, T) = [BOS, y..., EOS] padded.
        beam: 1 for greedy decoding, else the beam size.
        alpha: length penalty α for beam search.
        ctx: with several processes each scores its contiguous shard and the counts are summed.
    """
    ctx = ctx or DistContext()
    device = next(model.parameters()).device
    start, end = ctx.shard_range(len(split))
    shard = SequenceSplit(split.src[start:end], split.tgt[start:end])
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for src, tgt in iterate_batches(shard, batch_size):
        src, ref = src.to(device), tgt[:, 1:].to(device)  # ref: (B, T-1) y..., EOS, PAD...
        out = _decode(model, src, ref.shape[1], beam, alpha)  # (B, L <= T-1)
        out = torch.nn.functional.pad(out, (0, ref.shape[1] - out.shape[1]), value=Vocab.PAD)
        correct += (out == ref).all(dim=1).sum()
    model.train(was_training)
    return int(ctx.all_reduce_sum(correct)) / max(len(split), 1)


# ------------------------------------------------------------------------------------------ the task
class Seq2SeqTask(Task):
    """A Transformer on a generated sequence task (:class:`Seq2SeqConfig`)."""

    name = "seq2seq"
    unit = "sequences"
    headline = "test_accuracy"

    cfg: Seq2SeqConfig

    def config_dict(self) -> dict[str, Any]:
        return {"task": "seq2seq", **self.cfg.to_dict()}

    def load_data(self, info: dict[str, Any] | None) -> None:
        cfg = self.cfg
        self.data = make_task(cfg.dataset, cfg.num_train, cfg.num_test, cfg.min_len, cfg.max_len, cfg.seed)

    def schedule(self, world_size: int) -> tuple[int, int, int]:
        cfg = self.cfg
        if cfg.num_train < cfg.batch_size:
            raise ConfigError(
                f"batch_size {cfg.batch_size} is larger than the training set ({cfg.num_train} sequences); "
                f"lower batch_size to at most {cfg.num_train} or raise num_train"
            )
        return math.ceil(cfg.steps / cfg.eval_every), min(cfg.eval_every, cfg.steps), cfg.steps

    def build_model(self) -> nn.Module:
        return build_model(
            self.cfg, len(self.data.vocab), max_len=max(self.data.max_src_len, self.data.max_tgt_len) + 2
        )

    def build_optimizer(self, model: nn.Module, device: torch.device) -> tuple[torch.optim.Optimizer, Any]:
        optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
        return optimizer, Seq2SeqSchedule(self.cfg)

    def run_info(self) -> dict[str, Any]:
        return {"task": self.name, "dataset": self.cfg.dataset, "vocab_size": len(self.data.vocab),
                "splits": {"train": len(self.data.train), "test": len(self.data.test)}}

    def setup_training(self, ctx: DistContext, generator: torch.Generator) -> None:
        self.ctx = ctx
        self.criterion = LabelSmoothingCrossEntropy(self.cfg.label_smoothing, ignore_index=Vocab.PAD, reduction="sum")
        self._perms: dict[int, Tensor] = {}

    def synthetic_batch(self, batch_size: int, device: torch.device) -> tuple[tuple[Tensor, ...], Tensor]:
        generator = torch.Generator().manual_seed(0)
        vocab = len(self.data.vocab)
        src = torch.randint(Vocab.EOS + 1, vocab, (batch_size, self.data.max_src_len), generator=generator)
        tgt = torch.randint(Vocab.EOS + 1, vocab, (batch_size, self.data.max_tgt_len + 2), generator=generator)
        return (src.to(device), tgt[:, :-1].to(device)), tgt[:, 1:].to(device)

    # ---------------------------------------------------------------------------------- training
    def _perm(self, data_pass: int) -> Tensor:
        if data_pass not in self._perms:
            self._perms = {data_pass: torch.randperm(len(self.data.train), generator=torch.Generator().manual_seed(
                self.cfg.seed + 1 + data_pass))}
        return self._perms[data_pass]

    def epoch_indices(self, epoch: int, ctx: DistContext) -> Tensor:
        cfg = self.cfg
        per_pass = len(self.data.train) // cfg.batch_size
        first = epoch * min(cfg.eval_every, cfg.steps)
        share = cfg.batch_size // ctx.world_size
        parts = []
        for t in range(first, min(first + cfg.eval_every, cfg.steps)):
            j = t % per_pass
            batch = self._perm(t // per_pass)[j * cfg.batch_size : (j + 1) * cfg.batch_size]
            parts.append(batch[ctx.rank * share : (ctx.rank + 1) * share])
        return torch.cat(parts)

    def micro_batches(self, index: Tensor, accum_steps: int, ctx: DistContext) -> list[Any]:
        """Micro-batches ``(src, tgt, norm)`` trimmed to their longest sequences; ``norm`` makes the step's loss
        the mean over all target tokens of the global batch (one all-reduce of the token count)."""
        index = index.cpu()
        split = SequenceSplit(self.data.train.src[index], self.data.train.tgt[index])
        micro = index.numel() // accum_steps
        batches = [(src.to(ctx.device), tgt.to(ctx.device)) for src, tgt in iterate_batches(split, micro)]
        tokens = torch.tensor([float((tgt[:, 1:] != Vocab.PAD).sum()) for _, tgt in batches], dtype=torch.float64)
        total = float(ctx.all_reduce_sum(tokens.sum().to(ctx.device)))
        norm = total / (accum_steps * ctx.world_size)  # the mean token count of a micro-batch
        return [(src, tgt, norm) for src, tgt in batches]

    def batch_loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        src, tgt, norm = batch
        logits = model(src, tgt[:, :-1])  # (B, T-1, V): predict y_1.. from BOS, y_1, ...
        target = tgt[:, 1:]
        loss_sum = self.criterion(logits.float().transpose(1, 2), target)
        tokens = (target != Vocab.PAD).sum().double()
        return loss_sum / norm, torch.stack([loss_sum.detach().double(), tokens])

    def train_row(self, totals: list[float], kept_steps: int) -> dict[str, float]:
        return {"train_loss": totals[0] / max(totals[1], 1.0)}

    # ---------------------------------------------------------------------------------- evaluation, report
    def eval_due(self, epoch: int, last: bool) -> bool:
        return True  # an epoch is eval_every steps

    def evaluate(self, model: nn.Module, ctx: DistContext, amp: str) -> dict[str, float]:
        self.accuracy = evaluate(model, self.data.test, self.cfg.eval_beam, self.cfg.length_penalty, ctx=ctx)
        return {"test_accuracy": self.accuracy}

    def finish(
        self, model: nn.Module, ctx: DistContext, amp: str, history: list[dict[str, Any]], fresh: bool
    ) -> dict[str, Any]:
        accuracy = (
            self.accuracy
            if fresh
            else evaluate(model, self.data.test, self.cfg.eval_beam, self.cfg.length_penalty, ctx=ctx)
        )
        final_loss = history[-1]["train_loss"] if history else float("nan")
        return {
            "test_accuracy": accuracy, "final_loss": final_loss, "dataset": self.cfg.dataset, "beam": self.cfg.eval_beam
        }

    def write_report(self, run_dir: Path, history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        rows = [{**row, "loss": row["train_loss"]} for row in history]
        plot_seq2seq_curves(rows, run_dir / "curves.png", title=f"Transformer on {self.cfg.dataset}")

    def format_summary(self, summary: dict[str, Any]) -> str:
        decoding = "greedy" if summary["beam"] == 1 else f"beam {summary['beam']}"
        return aligned_table([
            (f"{summary['dataset']}: test exact-match accuracy", f"{summary['test_accuracy']:.4f} ({decoding})"),
            ("final training loss (per token)", f"{summary['final_loss']:.4f}"),
            ("training throughput", f"{summary['train_sequences_per_s']:.0f} sequences/s"),
            ("optimizer steps", f"{summary['steps']} ({summary['skipped_steps']} skipped)"),
            ("training time", f"{summary['train_seconds']:.1f} s"),
            ("parameters", f"{summary['num_params']:,}"),
            ("precision", summary.get("amp", "off")),
        ])


# ------------------------------------------------------------------------------------------ using a run
def _config_of_run(run_dir: Path) -> Seq2SeqConfig:
    """The config a seq2seq run folder was started with (its config.yaml, whose ``task`` key is seq2seq)."""
    path = Path(run_dir) / CONFIG_FILE
    data = load_yaml(path)
    data.pop("task", None)
    return Seq2SeqConfig.from_dict(data, str(path))


def load_seq2seq(run_dir: str | Path) -> tuple[Transformer, SequenceTask]:
    """Rebuild the trained model and its task (vocabulary, splits) from a run folder.

    Returns:
        (model in eval mode, task).

    Raises:
        CheckpointError: missing or damaged files, or a run of another task.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise CheckpointError(f"{run_dir / CONFIG_FILE} does not exist; pass the folder written by `vitlab train`")
    require_task(run_dir, "seq2seq", "translate")
    cfg = _config_of_run(run_dir)
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise CheckpointError(
            f"{run_dir} has no {WEIGHTS_FILE}: the run has not finished; "
            f"resume it with `vitlab train --resume {run_dir}`"
        )
    task = make_task(cfg.dataset, 0, 0, cfg.min_len, cfg.max_len, cfg.seed)
    model = build_model(cfg, len(task.vocab), max_len=max(task.max_src_len, task.max_tgt_len) + 2)
    try:
        model.load_state_dict(load_weights(run_dir / WEIGHTS_FILE))
    except RuntimeError as error:
        raise CheckpointError(
            f"{WEIGHTS_FILE} does not match {CONFIG_FILE} in {run_dir}: {error}".splitlines()[0]
        ) from None
    return model.eval(), task


def translate(
    run_dir: str | Path, text: str, beam: int = 1, max_len: int | None = None, alpha: float | None = None
) -> str:
    """Decode one source string with a trained run, e.g. ``translate(run, "3 1 2") == "2 1 3"`` on reverse.

    Args:
        run_dir: a seq2seq run folder.
        text: source symbols (whitespace ignored).
        beam: 1 for greedy, else the beam size.
        max_len: most output tokens (default: the task's longest target + 1).
        alpha: length penalty α for beam search (default: the run's ``length_penalty``).
    """
    if beam < 1:
        raise ConfigError(f"--beam must be >= 1, got {beam}")
    if alpha is not None and not (math.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"--alpha must be a finite number >= 0, got {alpha}; e.g. --alpha 0.6")
    model, task = load_seq2seq(run_dir)
    if alpha is None:
        alpha = _config_of_run(run_dir).length_penalty
    ids = task.vocab.encode(text)
    if not ids:
        raise ConfigError("the source is empty; give symbols, e.g. \"3 1 2\"")
    limit = model.pos_enc.max_len
    if len(ids) + 1 > limit:
        raise ConfigError(f"the source has {len(ids)} symbols but this model handles at most {limit - 1}")
    max_len = task.max_tgt_len + 1 if max_len is None else int(max_len)
    if not 1 <= max_len <= limit:
        raise ConfigError(f"--max-len must be in 1..{limit}, got {max_len}")
    src = torch.tensor([[*ids, Vocab.EOS]], dtype=torch.long)  # sources end with EOS, as in training
    out = _decode(model, src, max_len, beam, alpha)
    return task.vocab.decode(out[0], sep=task.sep)
