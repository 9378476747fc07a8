"""Batch prediction over files, folders and globs, with a run folder (PyTorch) or an exported ONNX model.

The inputs are expanded lazily (a folder recursively, in sorted order; a glob with ``**``), read in batches of
``batch_size`` through the run's evaluation preprocessing (:func:`vitlab.deploy.preprocessing.preprocess_file`),
and each image's row (path, top-k classes and probabilities) is written as soon as its batch is done, so memory
does not grow with the number of images. A file that cannot be read or has the wrong size gets a row with its
error and is counted; it never stops the batch.

With an ``.onnx`` file the model runs in onnxruntime with the preprocessing JSON `vitlab export` wrote beside
it; vitlab's model classes are not used.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from vitlab.data.folder import IMAGE_EXTENSIONS
from vitlab.deploy.export import onnx_session, preprocessing_path
from vitlab.deploy.preprocessing import Preprocessing, preprocess_file
from vitlab.errors import ConfigError, VitlabError
from vitlab.io import atomic_open
from vitlab.train.precision import autocast
from vitlab.train.tasks.image import load_run, run_amp

__all__ = ["PREDICTION_FORMATS", "PredictionSummary", "Predictor", "expand_inputs", "predict_files", "predict_to_file"]

PREDICTION_FORMATS = (".csv", ".jsonl")

_GLOB_CHARS = set("*?[")


def expand_inputs(inputs: Iterable[str]) -> Iterator[Path]:
    """Image files named by ``inputs``: files as given, folders recursively (image extensions, sorted), globs.

    Raises:
        ConfigError: an input that is neither an existing file or folder nor a glob matching something.
    """
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS):
                        yield Path(root) / name
        elif path.exists() or not _GLOB_CHARS & set(item):
            yield path  # a file (or a missing one, reported in its row)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise ConfigError(f"{item} matches no file; check the pattern (quote it so that the shell keeps it)")
            yield from (Path(m) for m in matches if Path(m).is_file())


@dataclass
class Predictor:
    """A model and its preprocessing: ``logits(x (B, C, H, W) float32) -> (B, K)``; for a run folder also the
    eager model and its registered name (``--explain`` draws its attention), ``None`` / ``""`` for ONNX."""

    spec: Preprocessing
    logits: Callable[[Tensor], Tensor]
    source: str
    model: nn.Module | None = None
    model_name: str = ""

    @classmethod
    def from_run(cls, run_dir: str | Path) -> Predictor:
        """The run's model in the precision it trained and evaluated in."""
        model, cfg, info = load_run(run_dir, command="predict")
        device = next(model.parameters()).device
        amp = run_amp(info, device)

        def run(x: Tensor) -> Tensor:
            with torch.no_grad(), autocast(device, amp):
                return model(x).float()

        return cls(Preprocessing.from_run(cfg, info), run, str(run_dir), model, cfg.model)

    @classmethod
    def from_onnx(cls, path: str | Path) -> Predictor:
        """An exported ONNX model and the preprocessing JSON beside it (``MODEL.onnx.json``)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path} does not exist; pass a run folder or the .onnx file `vitlab export` wrote")
        spec = Preprocessing.read(preprocessing_path(path))
        session = onnx_session(path)
        name = session.get_inputs()[0].name

        def run(x: Tensor) -> Tensor:
            return torch.from_numpy(np.asarray(session.run(None, {name: x.numpy()})[0], dtype=np.float32))

        return cls(spec, run, str(path))

    @classmethod
    def load(cls, source: str | Path) -> Predictor:
        """A run folder, or an ``.onnx`` file."""
        return cls.from_onnx(source) if str(source).lower().endswith(".onnx") else cls.from_run(source)


@dataclass
class PredictionSummary:
    """What a prediction pass did."""

    images: int
    failed: int
    seconds: float

    @property
    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else float("nan")
        failed = f", {self.failed} unreadable" if self.failed else ""
        return f"{self.images} images in {self.seconds:.1f} s ({rate:.0f} images/s){failed}"


def _batches(paths: Iterator[Path], size: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for path in paths:
        batch.append(path)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def top_classes(predictor: Predictor, images: list[Tensor], topk: int) -> list[list[list]]:
    """The ``topk`` ``[class, probability]`` pairs of each preprocessed (C, H, W) uint8 image, in one batch."""
    classes = predictor.spec.classes
    probs = predictor.logits(predictor.spec.transform()(torch.stack(images), None, train=False)).softmax(1)
    values, indices = probs.topk(min(topk, len(classes)))
    return [[[classes[c], v] for v, c in zip(p, i)] for p, i in zip(values.tolist(), indices.tolist())]


def predict_files(predictor: Predictor, paths: Iterable[Path], write: Callable[[dict], None], topk: int = 3,
                  batch_size: int = 64, progress: Callable[[int], None] | None = None) -> PredictionSummary:
    """Classify every image of ``paths``; ``write`` receives one row per image, in input order.

    A row is ``{"path", "top": [[class, probability], ...]}``, or ``{"path", "error": message}`` for a file that
    could not be used.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    images = failed = 0
    start = time.perf_counter()
    for batch in _batches(iter(paths), batch_size):
        rows: list[dict] = []
        kept, tensors = [], []
        for path in batch:
            try:
                tensors.append(preprocess_file(path, predictor.spec))
                kept.append(len(rows))
                rows.append({"path": str(path)})
            except (VitlabError, OSError) as error:
                rows.append({"path": str(path), "error": (str(error).splitlines() or [type(error).__name__])[0]})
                failed += 1
        if tensors:
            for row_index, top in zip(kept, top_classes(predictor, tensors, topk)):
                rows[row_index]["top"] = top
        for row in rows:
            write(row)
        images += len(batch)
        if progress is not None:
            progress(len(batch))
    return PredictionSummary(images=images, failed=failed, seconds=time.perf_counter() - start)


def prediction_format(out: str | Path) -> str:
    """``"csv"`` or ``"jsonl"``, from the suffix of a predictions file.

    Raises:
        ConfigError: another suffix.
    """
    suffix = Path(out).suffix.lower()
    if suffix not in PREDICTION_FORMATS:
        raise ConfigError(f"--out {out}: name a .csv or .jsonl file")
    return suffix[1:]


def row_writer(handle: IO[str], fmt: str, topk: int) -> Callable[[dict], None]:
    """A function that writes one row to ``handle`` as CSV (path, error, class_1, prob_1, ...) or JSON lines;
    probabilities rounded to 6 decimals."""
    def rounded(row: dict) -> dict:
        return {**row, "top": [[c, round(p, 6)] for c, p in row["top"]]} if "top" in row else row

    if fmt == "jsonl":
        return lambda row: handle.write(json.dumps(rounded(row)) + "\n")
    writer = csv.writer(handle)
    writer.writerow(["path", "error", *[f"{name}_{i}" for i in range(1, topk + 1) for name in ("class", "prob")]])

    def write(row: dict) -> None:
        top = [value for pair in rounded(row).get("top", []) for value in pair]
        writer.writerow([row["path"], row.get("error", ""), *top])

    return write


def predict_to_file(predictor: Predictor, paths: Iterable[Path], out: str | Path, topk: int = 3,
                    batch_size: int = 64) -> PredictionSummary:
    """:func:`predict_files` into ``out`` (``.csv`` or ``.jsonl``), written atomically, with a progress bar on a
    terminal's stderr.

    Raises:
        ConfigError: another suffix than .csv / .jsonl.
    """
    out = Path(out)
    fmt = prediction_format(out)
    with atomic_open(out) as raw:
        handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        bar = tqdm(unit="img", desc="predict", disable=None)  # None: shown only on a terminal
        try:
            summary = predict_files(predictor, paths, row_writer(handle, fmt, topk), topk,
                                    batch_size, progress=bar.update)
        finally:
            bar.close()
            handle.flush()
            handle.detach()  # atomic_open closes the file
    return summary
