"""A finished image run as a deployable file: ONNX (for onnxruntime) or a ``torch.export`` program (``.pt2``),
verified against the eager model on the run's own test split before it is kept.

* **ONNX**: PyTorch's ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, which uses
  onnxscript), a dynamic batch axis, the preprocessing (:mod:`vitlab.deploy.preprocessing`) in the model's
  ``metadata_props`` under ``vitlab.preprocessing`` and in a JSON file beside it (``model.onnx.json``).
  ``--quantize int8``: onnxruntime's
  dynamic quantization of the float32 export (weights int8, activations quantized per batch).
* **pt2**: ``torch.export.export`` of the eval-mode model with a dynamic batch axis, saved by ``torch.export.save``
  (the JSON inside as ``extra_files``, and beside it); ``torch.export.load`` reads it without vitlab.

Verification: the exported file is loaded back (onnxruntime for ONNX, ``torch.export.load`` for pt2) and run on
every test image of the run; its logits are compared with the eager float32 model's. A float32 export is kept
only if the top-1 classes agree on 100 % of the images and ``max |Δlogit| <= atol`` (1e-4); otherwise nothing is
written. An int8 export is not held to that gate: its test accuracy, agreement and speed against float32 are
reported. Every figure goes into the JSON's ``verification`` entry.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vitlab.deploy.preprocessing import Preprocessing
from vitlab.errors import ConfigError, VitlabError
from vitlab.io import atomic_write_bytes, atomic_write_text
from vitlab.train.distributed import DistContext
from vitlab.train.runs import run_task
from vitlab.train.tasks.image import load_image_data, load_run, run_transform
from vitlab.train.tasks.image_config import ImageConfig
from vitlab.train.tasks.image_stream import StreamImageTask, uses_stream

__all__ = ["EXPORT_EXTRA", "FORMATS", "ExportError", "ExportReport", "export_run", "onnx_session", "preprocessing_path"]

FORMATS = ("onnx", "pt2")
QUANTIZE = ("int8",)
EXPORT_EXTRA = "pip install 'vitlab[export]' (onnx, onnxruntime, onnxscript)"
METADATA_KEY = "vitlab.preprocessing"
DEFAULT_ATOL = 1e-4


class ExportError(VitlabError):
    """An export that cannot be made, or that failed its verification (nothing was written)."""


@dataclass
class ExportReport:
    """What an export wrote and how it compared with the eager model on the run's test split."""

    format: str
    path: str
    preprocessing: str
    images: int
    top1_agreement: float
    max_abs_logit_diff: float
    accuracy_eager: float
    accuracy_exported: float
    atol: float
    quantize: str | None = None
    exported_images_per_s: float | None = None
    float32_images_per_s: float | None = None

    @property
    def line(self) -> str:
        """One line for the terminal."""
        text = (f"{self.format}{' ' + self.quantize if self.quantize else ''} export {self.path}: {self.images} test "
                f"images, top-1 agreement {self.top1_agreement:.2%}, max |Δlogit| {self.max_abs_logit_diff:.2e}, "
                f"accuracy {self.accuracy_exported:.4f} (eager {self.accuracy_eager:.4f})")
        if self.exported_images_per_s and self.float32_images_per_s:
            ratio = self.exported_images_per_s / self.float32_images_per_s
            text += f", {ratio:.2f}x the float32 export's speed"
        return text


def _require(module: str) -> Any:
    """Import an optional dependency of ONNX export, or say in one line what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"ONNX export needs {module}, which is not installed; {EXPORT_EXTRA}") from None


def preprocessing_path(model_file: str | Path) -> Path:
    """Where the preprocessing JSON of an exported model lives: ``MODEL_FILE.json`` (``model.onnx.json``)."""
    return Path(str(model_file) + ".json")


def onnx_session(path: str | Path):  # noqa: ANN201 - onnxruntime.InferenceSession
    """An onnxruntime CPU session of the model at ``path``."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------ the test split
def evaluation_inputs(cfg: ImageConfig, info: dict[str, Any], batch_size: int = 64) -> Iterator[tuple[Tensor, Tensor]]:
    """A run's test split (its config.yaml and run.json, as :func:`load_run` returns them) as model inputs
    ``(x (B, C, H, W) float32, labels (B,))``, as its evaluation read it."""
    held_in_memory = info.get("data_modes", {}).get("test") == "memory"
    if uses_stream(cfg) and not held_in_memory:
        task = StreamImageTask(cfg)
        task.load_data(info)
        task.modes.update({k: v for k, v in info.get("data_modes", {}).items() if k in task.modes})
        yield from task.eval_inputs("test", DistContext())
        return
    data = load_image_data(cfg)["test"]
    transform = run_transform(cfg, info)
    for start in range(0, len(data), batch_size):
        stop = start + batch_size
        yield transform(data.images[start:stop], None, train=False), data.labels[start:stop]


# ------------------------------------------------------------------------------------------ writers
def write_onnx(model: nn.Module, example: Tensor, path: Path, spec: Preprocessing, opset: int | None) -> None:
    """ONNX through the torch.export-based exporter, batch axis dynamic, the preprocessing in the metadata.

    The writers write ``path`` as given: :func:`export_run` stages them in a temporary folder and publishes the
    verified file with one atomic write."""
    onnx = _require("onnx")
    _require("onnxscript")
    batch = torch.export.Dim("batch", min=1, max=65536)
    kwargs = {"opset_version": opset} if opset is not None else {}
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                    input_names=[spec.input_name], output_names=[spec.output_name], verbose=False,
                                    **kwargs)
    except Exception as error:  # noqa: BLE001 - the exporter's many failure types, named in one line
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"torch.onnx.export could not express this model: {first}") from None
    program.save(str(path))
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {METADATA_KEY: spec.to_json()})
    onnx.save(proto, str(path))


def write_pt2(model: nn.Module, example: Tensor, path: Path, spec: Preprocessing) -> None:
    """``torch.export.export`` with a dynamic batch axis, saved with the preprocessing as an extra file."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception as error:  # noqa: BLE001
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"torch.export could not express this model: {first}") from None
    torch.export.save(program, str(path), extra_files={"preprocessing.json": spec.to_json()})


def quantize_int8(source: Path, path: Path) -> None:
    """onnxruntime's dynamic int8 quantization of the float32 ONNX model at ``source``."""
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic  # optional dependency (vitlab[export])

    logging.getLogger().disabled, was = True, logging.getLogger().disabled  # its advice to pre-process first
    try:
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().disabled = was


def _runner(fmt: str, path: Path) -> Callable[[Tensor], np.ndarray]:
    """The exported file loaded back: a function from model input to logits."""
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()

        def run_pt2(x: Tensor) -> np.ndarray:
            with torch.no_grad():
                return module(x).float().numpy()

        return run_pt2
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


# ------------------------------------------------------------------------------------------ verification
def _compare(model: nn.Module, run: Callable[[Tensor], np.ndarray], batches: Iterator[tuple[Tensor, Tensor]],
             ) -> dict[str, float]:
    """Eager float32 logits against the exported file's on every batch; the figures of :class:`ExportReport`."""
    n = agree = right_eager = right_exported = 0
    max_diff = 0.0
    exported_seconds = 0.0
    for x, labels in batches:
        with torch.no_grad():
            eager = model(x).float().numpy()
        start = time.perf_counter()
        exported = run(x)
        exported_seconds += time.perf_counter() - start
        max_diff = max(max_diff, float(np.abs(exported - eager).max()))
        agree += int((exported.argmax(1) == eager.argmax(1)).sum())
        right_eager += int((eager.argmax(1) == labels.numpy()).sum())
        right_exported += int((exported.argmax(1) == labels.numpy()).sum())
        n += len(labels)
    if n == 0:
        raise ExportError("the run's test split is empty: nothing to verify the export on")
    return {"images": n, "top1_agreement": agree / n, "max_abs_logit_diff": max_diff,
            "accuracy_eager": right_eager / n, "accuracy_exported": right_exported / n,
            "exported_images_per_s": n / max(exported_seconds, 1e-9)}


def _images_per_s(run: Callable[[Tensor], np.ndarray], batches: Iterator[tuple[Tensor, Tensor]]) -> float:
    n, seconds = 0, 0.0
    for x, labels in batches:
        start = time.perf_counter()
        run(x)
        seconds += time.perf_counter() - start
        n += len(labels)
    return n / max(seconds, 1e-9)


# ------------------------------------------------------------------------------------------ entry point
def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None, *, opset: int | None = None,
               quantize: str | None = None, atol: float = DEFAULT_ATOL, batch_size: int = 64) -> ExportReport:
    """Export the finished image run in ``run_dir`` as ``fmt`` (``onnx`` or ``pt2``), verified; see the module.

    Args:
        run_dir: a folder `vitlab train` wrote.
        fmt: ``"onnx"`` or ``"pt2"``.
        out: the model file (default ``RUN/model.onnx``, ``RUN/model.int8.onnx`` or ``RUN/model.pt2``); the
            preprocessing JSON goes beside it (same name, ``.json``).
        opset: ONNX opset (default: the exporter's).
        quantize: ``"int8"`` (ONNX only) for dynamic int8 quantization.
        atol: the largest |Δlogit| a float32 export may show against the eager model.
        batch_size: test images per verification batch.

    Returns:
        The :class:`ExportReport` (also written into the JSON).

    Raises:
        ExportError: unknown format, a model the exporter cannot express, a missing optional dependency, or a
            float32 export that fails its verification (nothing is written then).
        CheckpointError: not a finished image run.
    """
    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if quantize is not None and (quantize not in QUANTIZE or fmt != "onnx"):
        raise ConfigError(f"--quantize {quantize}: only --quantize int8 with --format onnx is supported")
    if (run_dir / "config.yaml").is_file() and run_task(run_dir) == "seq2seq":
        raise ExportError(f"{run_dir} is a seq2seq Transformer run: its output comes from autoregressive decoding "
                          "(greedy or beam search with a key/value cache), a loop with a data-dependent length that "
                          "vitlab does not export; use `vitlab translate` with the run folder")
    model, cfg, info = load_run(run_dir, command="export")
    model = model.float().eval()
    spec = Preprocessing.from_run(cfg, info)
    suffix = {"onnx": ".int8.onnx" if quantize else ".onnx", "pt2": ".pt2"}[fmt]
    out = Path(out) if out is not None else run_dir / f"model{suffix}"
    json_path = preprocessing_path(out)
    example = torch.zeros(2, spec.channels, *spec.required_size)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / f"model{suffix}"
        if fmt == "pt2":
            write_pt2(model, example, staged, spec)
        else:
            write_onnx(model, example, Path(tmp) / "model.onnx" if quantize else staged, spec, opset)
            if quantize:
                quantize_int8(Path(tmp) / "model.onnx", staged)
        figures = _compare(model, _runner(fmt, staged), evaluation_inputs(cfg, info, batch_size))
        report = ExportReport(format=fmt, path=str(out), preprocessing=str(json_path), atol=atol, quantize=quantize,
                              **figures)
        if quantize:
            report.float32_images_per_s = _images_per_s(_runner("onnx", Path(tmp) / "model.onnx"),
                                                        evaluation_inputs(cfg, info, batch_size))
        elif report.top1_agreement < 1.0 or report.max_abs_logit_diff > atol:
            raise ExportError(f"the {fmt} export disagrees with the eager model on the test split (top-1 agreement "
                              f"{report.top1_agreement:.2%}, max |Δlogit| {report.max_abs_logit_diff:.2e} > atol "
                              f"{atol:g} or below 100 %); nothing was written")
        atomic_write_bytes(out, staged.read_bytes())
    record = {**spec.to_dict(), "export": {"format": fmt, "quantize": quantize, "file": out.name,
                                           "opset": opset, "torch": torch.__version__},
              "verification": asdict(report)}
    atomic_write_text(json_path, json.dumps(record, indent=2) + "\n")
    return report
