"""Deployment speed and memory: eager PyTorch against onnxruntime (float32 and int8) and batch prediction.

    python -m benchmarks.bench_deploy --run runs/RUN [--quick]

Rows, all measured in this process (or its children) on this machine:

* images/s at batch 1 and 64 of the run's model (the default recipe's, say): eager PyTorch (float32) against
  onnxruntime float32 and onnxruntime int8 (dynamic quantization), each with its test top-1 on the run's own
  test split; the same speeds for ViT-Ti/16 at 224×224 (random weights: no accuracy);
* ``vitlab predict RUN FOLDER --out preds.csv`` over 1,000 and 10,000 PNGs (the run's test images, repeated):
  peak RSS of the process (its ``VmHWM``) and images/s, beside ``vitlab eval RUN``'s images/s (both whole
  processes, start-up included).

Needs the export extra (``pip install 'vitlab[export]'``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vitlab
from vitlab.deploy.export import evaluation_inputs, onnx_session, quantize_int8, write_onnx
from vitlab.deploy.preprocessing import Preprocessing
from vitlab.train.tasks.image import load_image_data, load_run


def _images_per_s(run, x: torch.Tensor, rounds: int) -> float:  # noqa: ANN001 - a callable on a batch
    run(x)  # warm-up
    start = time.perf_counter()
    for _ in range(rounds):
        run(x)
    return rounds * len(x) / (time.perf_counter() - start)


def _accuracy(run, run_dir: Path) -> float:  # noqa: ANN001
    right = total = 0
    _, cfg, info = load_run(run_dir)
    for x, labels in evaluation_inputs(cfg, info):
        right += int((np.asarray(run(x)).argmax(1) == labels.numpy()).sum())
        total += len(labels)
    return right / total


def _runners(model: torch.nn.Module, onnx_fp32: Path, onnx_int8: Path) -> dict:
    sessions = {"onnxruntime float32": onnx_session(onnx_fp32), "onnxruntime int8": onnx_session(onnx_int8)}

    def ort_runner(session):  # noqa: ANN001, ANN202
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x.numpy()})[0]

    def eager(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(x).numpy()

    return {"eager PyTorch float32": eager, **{k: ort_runner(s) for k, s in sessions.items()}}


def speed_rows(model: torch.nn.Module, spec: Preprocessing, label: str, rounds: int,
               run_dir: Path | None = None) -> list[dict]:
    """images/s at batch 1 and 64 for eager / ORT float32 / ORT int8; with ``run_dir``, test top-1 of each."""
    model = model.float().eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "m.onnx", Path(tmp) / "m.int8.onnx"
        write_onnx(model, torch.zeros(2, spec.channels, *spec.required_size), fp32, spec, None)
        quantize_int8(fp32, int8)
        runners = _runners(model, fp32, int8)
        rows = []
        for batch in (1, 64):
            x = torch.randn(batch, spec.channels, *spec.required_size, generator=torch.Generator().manual_seed(0))
            speeds = {name: _images_per_s(run, x, max(1, rounds * 64 // batch // 4)) for name, run in runners.items()}
            for name in ("onnxruntime float32", "onnxruntime int8"):
                rows.append(dict(name=f"{label}, batch {batch}: {name} vs eager PyTorch (images/s)", value=speeds[name],
                                 reference=speeds["eager PyTorch float32"],
                                 ratio=speeds[name] / speeds["eager PyTorch float32"], target="info"))
        if run_dir is not None:
            acc = {name: _accuracy(run, run_dir) for name, run in runners.items()}
            for name in ("onnxruntime float32", "onnxruntime int8"):
                rows.append(dict(name=f"{label}: test top-1, {name} vs eager PyTorch (difference)", value=acc[name],
                                 reference=acc["eager PyTorch float32"], ratio=acc[name] - acc["eager PyTorch float32"],
                                 target="int8: within 0.005" if "int8" in name else "equal"))
    return rows


def vit_ti16() -> tuple[torch.nn.Module, Preprocessing]:
    """ViT-Ti/16 at 224x224 with random weights, and an RGB preprocessing for its export."""
    torch.manual_seed(0)
    spec = Preprocessing(color_mode="RGB", required_size=[224, 224], image_mean=[0.5] * 3, image_std=[0.5] * 3,
                         id2label={str(i): str(i) for i in range(1000)})
    return vitlab.create_model("vit_tiny_patch16_224"), spec


# The child's own peak: VmHWM of its memory map (ru_maxrss would carry the parent's high-water mark across exec).
_CHILD = ("import sys; from vitlab.cli import main; code = main(sys.argv[1:]); "
          "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
          "print('peak_rss_kib', hwm, file=sys.stderr); sys.exit(code)")


def _child_peak(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of ``vitlab ARGV`` in a child process (its own ``VmHWM``)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _CHILD, *argv], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("peak_rss_kib"))
    return wall, peak / 1024


def predict_rows(run_dir: Path, sizes: tuple[int, ...]) -> list[dict]:
    """``vitlab predict`` over folders of ``sizes`` PNGs: peak RSS and images/s; ``vitlab eval``'s images/s."""
    _, cfg, _ = load_run(run_dir)
    test = load_image_data(cfg)["test"]
    rows = []
    eval_wall, _ = _child_peak(["eval", str(run_dir)])
    eval_rate = len(test) / eval_wall
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            folder = Path(tmp) / f"png{size}"
            for i in range(size):
                image = test.images[i % len(test)]
                pixels = image.permute(1, 2, 0).numpy()
                sub = folder / f"{i // 1000:03d}"
                sub.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(sub / f"{i:05d}.png")
            wall, peak = _child_peak(["predict", str(run_dir), str(folder), "--out", str(Path(tmp) / "p.csv")])
            rows.append(dict(name=f"vitlab predict over {size:,} PNGs: peak RSS (MiB); images/s vs vitlab eval",
                             value=peak, reference=size / wall, ratio=(size / wall) / eval_rate,
                             target="RSS flat in the number of images"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished image run folder (e.g. `make demo`'s)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds; 100 and 1,000 PNGs; no ViT-Ti/16")
    args = parser.parse_args(argv)
    model, cfg, info = load_run(args.run)
    rows = speed_rows(model, Preprocessing.from_run(cfg, info), f"{cfg.model} ({args.run})",
                      rounds=4 if args.quick else 16, run_dir=Path(args.run))
    if not args.quick:
        rows += speed_rows(*vit_ti16(), "ViT-Ti/16 224x224 (random weights)", rounds=4)
    rows += predict_rows(Path(args.run), (100, 1000) if args.quick else (1000, 10000))
    from benchmarks.report import print_table

    print(f"vitlab {vitlab.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          "ratios from one run")
    print_table(rows)


if __name__ == "__main__":
    main()
