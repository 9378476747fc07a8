"""Training the encoder-decoder Transformer on a sequence task (Vaswani et al. 2017, Sec. 5).

* Optimizer (Sec. 5.3): Adam with β1 = 0.9, β2 = 0.98, ε = 1e-9.
* Learning rate (eq. 3): lr = factor · d_model^−0.5 · min(step^−0.5, step · warmup^−1.5)
  (``lr_decay: inverse_sqrt``, the default). With ``lr_decay: cosine`` the warm-up and its peak
  lr_peak = factor · d_model^−0.5 · warmup^−0.5 are the same, and after it the rate follows a half cosine to
  zero at the last step (Loshchilov & Hutter 2017, eq. 5, one cycle, η_min = 0):
  lr = lr_peak · ½ (1 + cos(π · (step − warmup) / (steps − warmup))).
* Regularisation (Sec. 5.4): dropout P_drop and label smoothing ε_ls = 0.1, with padding positions
  ignored by the loss (:class:`vitlab.losses.LabelSmoothingCrossEntropy` with ``ignore_index=PAD``).
* Metric: exact-match sequence accuracy of greedy (or beam) decoding on the task's fixed test split.

A run folder holds ``config.yaml`` (the resolved config), ``model.safetensors``, ``metrics.csv`` and
``curves.png``. :func:`load_seq2seq` and :func:`translate` read it back.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from vitlab.data.sequence import TASKS, SequenceSplit, SequenceTask, Vocab, iterate_batches, make_task
from vitlab.errors import CheckpointError, ConfigError, VitlabError, unknown_name_message
from vitlab.losses import LabelSmoothingCrossEntropy
from vitlab.models.transformer import Transformer, beam_search, greedy_decode, transformer_lr
from vitlab.train.config import dataclass_from_dict

__all__ = ["LR_DECAYS", "Seq2SeqConfig", "evaluate", "load_seq2seq", "seq2seq_lr", "train_seq2seq", "translate"]

LR_DECAYS = ("inverse_sqrt", "cosine")


@dataclass
class Seq2SeqConfig:
    """Configuration of a seq2seq run (the YAML keys, without ``task: seq2seq``)."""

    # data
    dataset: str = "reverse"
    min_len: int = 1
    max_len: int = 20
    num_train: int = 20000
    num_test: int = 1000
    seed: int = 0
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
    batch_size: int = 64
    steps: int = 3000
    warmup: int = 400
    lr_factor: float = 1.0
    lr_decay: str = "inverse_sqrt"
    label_smoothing: float = 0.1
    grad_clip: float = 0.0
    # evaluation
    eval_every: int = 500
    eval_beam: int = 1
    length_penalty: float = 0.6
    threads: int = 0

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Seq2SeqConfig:
        """Validate ``config``: unknown keys and bad values raise :class:`ConfigError`."""
        cfg = dataclass_from_dict(cls, config, "seq2seq config", "seq2seq config key")
        cfg.check()
        return cfg

    def check(self) -> None:
        """Range checks, one ConfigError naming the first bad value."""
        if self.dataset not in TASKS:
            raise ConfigError("dataset: " + unknown_name_message("sequence task", self.dataset, TASKS))
        positive = ("min_len", "max_len", "num_train", "num_test", "d_model", "num_heads", "num_encoder_layers",
                    "num_decoder_layers", "dim_ff", "batch_size", "steps", "warmup", "eval_every", "eval_beam")
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
        for name in ("grad_clip", "length_penalty", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"seq2seq config '{name}' must be >= 0, got {getattr(self, name)}")


def seq2seq_lr(step: int, cfg: Seq2SeqConfig) -> float:
    """Learning rate at ``step`` (counting from 1): eq. 3, or its warm-up then a cosine to zero at ``cfg.steps``."""
    if cfg.lr_decay == "inverse_sqrt" or step <= cfg.warmup:
        return transformer_lr(step, cfg.d_model, cfg.warmup, cfg.lr_factor)
    peak = transformer_lr(cfg.warmup, cfg.d_model, cfg.warmup, cfg.lr_factor)
    progress = min((step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1), 1.0)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


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
def evaluate(model: Transformer, split: SequenceSplit, beam: int = 1, alpha: float = 0.6, batch_size: int = 500) -> float:
    """Exact-match accuracy: the fraction of sources whose decoded target equals the reference (EOS included).

    Args:
        model: the Transformer (switched to eval mode here and back after).
        split: src (N, S), tgt (N, T) = [BOS, y..., EOS] padded.
        beam: 1 for greedy decoding, else the beam size.
        alpha: length penalty α for beam search.
    """
    was_training = model.training
    model.eval()
    correct = 0
    for src, tgt in iterate_batches(split, batch_size):
        ref = tgt[:, 1:]  # (B, T-1) y..., EOS, PAD...
        out = _decode(model, src, ref.shape[1], beam, alpha)  # (B, L <= T-1)
        out = torch.nn.functional.pad(out, (0, ref.shape[1] - out.shape[1]), value=Vocab.PAD)
        correct += int((out == ref).all(dim=1).sum())
    model.train(was_training)
    return correct / max(len(split), 1)


def _write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    from vitlab.train.checkpoint import atomic_write_text

    fields = ["step", "loss", "lr", "test_accuracy", "elapsed_s"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in fields})
    atomic_write_text(path, buffer.getvalue())


def _fit(cfg: Seq2SeqConfig, task: SequenceTask, quiet: bool) -> tuple[Transformer, list[dict[str, float]], float, float]:
    """The training loop; returns (model, metric rows, last test accuracy, last loss)."""
    from tqdm import tqdm

    model = build_model(cfg, len(task.vocab), max_len=max(task.max_src_len, task.max_tgt_len) + 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: seq2seq_lr(i + 1, cfg)
    )
    criterion = LabelSmoothingCrossEntropy(cfg.label_smoothing, ignore_index=Vocab.PAD)
    shuffle = torch.Generator().manual_seed(cfg.seed + 1)

    def batches():  # noqa: ANN202 - endless stream of shuffled epochs
        while True:
            yield from iterate_batches(task.train, cfg.batch_size, shuffle, drop_last=len(task.train) >= cfg.batch_size)

    rows: list[dict[str, float]] = []
    stream = batches()
    start = time.perf_counter()
    accuracy = float("nan")
    loss_value = float("nan")
    model.train()
    bar = tqdm(range(1, cfg.steps + 1), disable=quiet, desc=f"seq2seq {cfg.dataset}", leave=False)
    for step in bar:
        src, tgt = next(stream)
        logits = model(src, tgt[:, :-1])  # (B, T-1, V): predict y_1.. from BOS, y_1, ...
        loss = criterion(logits.transpose(1, 2), tgt[:, 1:])
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise VitlabError(
                f"loss became {loss_value} at step {step}; lower lr_factor or raise warmup, or set grad_clip: 1.0"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step()
        row: dict[str, float] = {"step": step, "loss": loss_value, "lr": lr}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            accuracy = evaluate(model, task.test, cfg.eval_beam, cfg.length_penalty)
            row["test_accuracy"] = accuracy
            bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{accuracy:.3f}")
        row["elapsed_s"] = time.perf_counter() - start
        rows.append(row)
    bar.close()
    return model, rows, accuracy, loss_value


def train_seq2seq(config: dict[str, Any], run_dir: Path, quiet: bool = False) -> dict[str, float]:
    """Train a Transformer on a sequence task and write the run folder.

    Args:
        config: the YAML dict without ``task: seq2seq`` (keys of :class:`Seq2SeqConfig`).
        run_dir: output folder (created after the config is validated).
        quiet: no progress bar.

    Returns:
        {"test_accuracy", "final_loss", "steps", "train_time_s"}.

    Raises:
        ConfigError: bad config, or ``run_dir`` already holds files (before anything is written).
        VitlabError: the loss became non-finite (names the step).
    """
    from vitlab.train.checkpoint import atomic_write_text, save_weights
    from vitlab.viz import plot_seq2seq_curves

    cfg = Seq2SeqConfig.from_dict(dict(config))
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run folder {run_dir} already exists; choose another --out")
    task = make_task(cfg.dataset, cfg.num_train, cfg.num_test, cfg.min_len, cfg.max_len, cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump({"task": "seq2seq", **dataclasses.asdict(cfg)}, sort_keys=False))

    # Parameter init and dropout draw from torch's default generator: fork it so the caller's RNG state is
    # left as it was, and seed the fork so that a run is reproducible.
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.threads:  # intra-op threads for this run only (1 is fastest on a CPU shared with other jobs)
            torch.set_num_threads(cfg.threads)
        try:
            model, rows, accuracy, loss_value = _fit(cfg, task, quiet)
        finally:
            torch.set_num_threads(threads)
    elapsed = rows[-1]["elapsed_s"]

    save_weights(model.state_dict(), run_dir / "model.safetensors")
    _write_metrics(run_dir / "metrics.csv", rows)
    plot_seq2seq_curves(rows, run_dir / "curves.png", title=f"Transformer on {cfg.dataset}")
    result = {"test_accuracy": accuracy, "final_loss": loss_value, "steps": float(cfg.steps), "train_time_s": elapsed}
    if not quiet:
        print(f"{cfg.dataset}: test exact-match accuracy {accuracy:.4f} after {cfg.steps} steps ({elapsed:.1f} s)")
    return result


def load_seq2seq(run_dir: str | Path) -> tuple[Transformer, SequenceTask]:
    """Rebuild the trained model and its task (vocabulary, splits) from a run folder.

    Returns:
        (model in eval mode, task).

    Raises:
        CheckpointError: missing or damaged files.
    """
    from vitlab.train.checkpoint import load_weights

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{config_path} does not exist; pass the folder written by `vitlab train`")
    config = yaml.safe_load(config_path.read_text()) or {}
    if config.pop("task", "seq2seq") != "seq2seq":
        raise CheckpointError(f"{run_dir} is not a seq2seq run (its config.yaml has another task)")
    cfg = Seq2SeqConfig.from_dict(config)
    task = make_task(cfg.dataset, 0, 0, cfg.min_len, cfg.max_len, cfg.seed)
    model = build_model(cfg, len(task.vocab), max_len=max(task.max_src_len, task.max_tgt_len) + 2)
    try:
        model.load_state_dict(load_weights(run_dir / "model.safetensors"))
    except RuntimeError as error:
        raise CheckpointError(f"model.safetensors does not match config.yaml in {run_dir}: {error}".splitlines()[0]) from None
    return model.eval(), task


def translate(run_dir: str | Path, text: str, beam: int = 1, max_len: int | None = None, alpha: float = 0.6) -> str:
    """Decode one source string with a trained run, e.g. ``translate(run, "3 1 2") == "2 1 3"`` on reverse.

    Args:
        run_dir: a seq2seq run folder.
        text: source symbols (whitespace ignored).
        beam: 1 for greedy, else the beam size.
        max_len: most output tokens (default: the task's longest target + 1).
        alpha: length penalty α for beam search.
    """
    if beam < 1:
        raise ConfigError(f"--beam must be >= 1, got {beam}")
    model, task = load_seq2seq(run_dir)
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
